//! End-to-end tests of the `kaizen` binary on users' data: an ImageNet-style folder of real images of mixed sizes
//! run through the `imagenet100-paper` preset at smoke size, `kaizen data inspect` on it (sizes, bad files), and a
//! Hugging Face parquet dataset (the pyarrow-written CIFAR-100 fixture) run as `hf:uoft-cs/cifar100`.

mod common;

use common::{kaizen, ok, s, tmp};
use kaizen_data::{load_dataset, DatasetName};
use std::path::Path;

/// ImageNet's layout for the 100 classes of `builtin:imagenet100`: `train/<wnid>/` with 2 images and
/// `val/<wnid>/` with 1, real Fashion-MNIST images tinted to RGB and resized to mixed sizes (PNG and JPEG), plus
/// `extra` classes that are not in the list (ImageNet has 1000).
fn write_imagenet_like(root: &Path, extra: usize) -> std::io::Result<()> {
    let list = kaizen_data::options::resolve_class_list("builtin:imagenet100")
        .map_err(std::io::Error::other)?;
    let fm = load_dataset(DatasetName::FashionMnistMini, None).map_err(std::io::Error::other)?;
    let names: Vec<String> = list
        .into_iter()
        .chain((0..extra).map(|k| format!("n9999{k:04}")))
        .collect();
    let sizes = [(36u32, 30u32), (48, 48), (40, 56)];
    let mut k = 0usize;
    for (c, wnid) in names.iter().enumerate() {
        for (part, n) in [("train", 2), ("val", 1)] {
            for j in 0..n {
                let px = fm
                    .train
                    .image((c * 3 + j + if part == "val" { 2 } else { 0 }) % fm.train.len());
                let tint = [(c * 37 % 200) as u8, (c * 91 % 200) as u8, 255];
                let rgb: Vec<u8> = px
                    .iter()
                    .flat_map(|&v| tint.map(|t| ((v as u32 * (55 + t as u32)) / 310) as u8))
                    .collect();
                let img = image::RgbImage::from_raw(28, 28, rgb)
                    .ok_or_else(|| std::io::Error::other("size"))?;
                let (w, h) = sizes[k % 3];
                let img =
                    image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
                let ext = if k.is_multiple_of(2) { "png" } else { "JPEG" };
                let p = root.join(format!("{part}/{wnid}/{wnid}_{j}.{ext}"));
                std::fs::create_dir_all(p.parent().unwrap_or(root))?;
                img.save_with_format(
                    &p,
                    if ext == "png" {
                        image::ImageFormat::Png
                    } else {
                        image::ImageFormat::Jpeg
                    },
                )
                .map_err(std::io::Error::other)?;
                k += 1;
            }
        }
    }
    Ok(())
}

/// The preset's own settings, shrunk to seconds: 32x32 images, width 2, one epoch, small heads.
const SMOKE_SIZE: [&str; 30] = [
    "--set",
    "data.image_size=32",
    "--set",
    "model.width=2",
    "--set",
    "model.proj_hidden=32",
    "--set",
    "model.proj_out=16",
    "--set",
    "model.pred_hidden=32",
    "--set",
    "model.distill_hidden=32",
    "--set",
    "model.classifier_hidden=16",
    "--set",
    "train.epochs=1",
    "--set",
    "train.batch_size=16",
    "--set",
    "train.warmup_epochs=0.0",
    "--set",
    "data.replay_count=8",
    "--set",
    "data.replay_batch=8",
    "--set",
    "eval.linear=false",
    "--set",
    "eval.knn_k=5",
    "--set",
    "train.checkpoint_every=0",
];

fn json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn imagenet100_preset_runs_at_smoke_size_on_an_imagenet_like_folder() {
    let t = tmp();
    let data = t.path().join("imagenet");
    write_imagenet_like(&data, 3).expect("write images");
    // A file that is not an image: stop names it, skip leaves it out and counts it.
    std::fs::write(data.join("train/n02869837/broken.JPEG"), b"not a jpeg").expect("write");
    let out = t.path().join("run");
    let mut args = vec![
        "run",
        "--preset",
        "imagenet100-paper",
        "--data-root",
        s(&data),
        "--out",
        s(&out),
        "-q",
    ];
    args.extend(SMOKE_SIZE);
    let o = kaizen(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("broken.JPEG") && err.contains("bad_files"),
        "{err}"
    );
    args.extend(["--set", "data.bad_files=\"skip\""]);
    ok(&args);
    let m = json(&out.join("manifest.json"));
    let d = &m["dataset"];
    assert_eq!(d["num_classes"], 100, "{d}");
    assert_eq!(d["train_images"], 200, "{d}");
    assert_eq!(d["test_images"], 100, "{d}");
    assert_eq!(d["shape"], "3x32x32", "{d}");
    assert_eq!(d["streamed"], true, "{d}");
    assert_eq!(d["skipped_files"], 1, "{d}");
    assert!(
        d["skipped"][0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("broken.JPEG")),
        "{d}"
    );
    assert_eq!(m["class_order"].as_array().map(Vec::len), Some(100));
    assert_eq!(m["config"]["model"]["arch"], "resnet18_imagenet");
    // Every task trained (40 images per task, batches of 16: 2 steps each).
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics.jsonl");
    let epochs: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "epoch")
        .collect();
    assert_eq!(epochs.len(), 5, "{log}");
    assert!(epochs.iter().all(|v| v["steps"] == 2), "{log}");
    assert!(
        epochs
            .iter()
            .all(|v| v["loss"]["total"].as_f64().is_some_and(f64::is_finite)),
        "{log}"
    );
    let summary = json(&out.join("summary.json"));
    let acc = summary.to_string();
    assert!(acc.contains("classifier") && acc.contains("knn"), "{acc}");
}

#[test]
fn data_inspect_reports_sizes_and_bad_files() {
    let t = tmp();
    let data = t.path().join("imagenet");
    write_imagenet_like(&data, 0).expect("write images");
    std::fs::write(data.join("val/n01749939/empty.png"), b"").expect("write");
    let o = ok(&[
        "data",
        "inspect",
        "--dataset",
        "image-folder",
        "--data-root",
        s(&data),
        "--class-list",
        "builtin:imagenet100",
        "--image-size",
        "32",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("100 classes") && text.contains("3x32x32"),
        "{text}"
    );
    assert!(
        text.contains("36x30 (100)")
            && text.contains("48x48 (100)")
            && text.contains("40x56 (100)"),
        "{text}"
    );
    assert!(
        text.contains("bad files: 1") && text.contains("empty.png"),
        "{text}"
    );
    let o = ok(&[
        "data",
        "inspect",
        "--dataset",
        "image-folder",
        "--data-root",
        s(&data),
        "--json",
        "--verify",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["train"]["images"], 200);
    assert_eq!(v["streamed"], true);
    assert_eq!(v["bad_files"].as_array().map(Vec::len), Some(1));
    let o = kaizen(&[
        "data",
        "inspect",
        "--dataset",
        "image-folder",
        "--data-root",
        s(&data),
        "--bad-files",
        "stop",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("empty.png"));
}

#[test]
fn a_hugging_face_parquet_dataset_runs_from_a_local_folder() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kaizen-data/tests/fixtures/hf-cifar100");
    let o = ok(&[
        "data",
        "inspect",
        "--dataset",
        "hf:uoft-cs/cifar100",
        "--data-root",
        s(&fixture),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("hf:uoft-cs/cifar100: 100 classes") && text.contains("mountain"),
        "{text}"
    );
    let t = tmp();
    let out = t.path().join("run");
    ok(&[
        "run",
        "--preset",
        "smoke",
        "--dataset",
        "hf:uoft-cs/cifar100",
        "--data-root",
        s(&fixture),
        "--set",
        "data.label_column=\"coarse_label\"",
        "--set",
        "data.num_tasks=2",
        "--set",
        "data.train_per_class=0",
        "--set",
        "data.test_per_class=0",
        "--set",
        "data.replay_count=2",
        "--set",
        "data.replay_batch=2",
        "--set",
        "train.batch_size=8",
        "--set",
        "eval.knn_k=3",
        "--out",
        s(&out),
        "-q",
    ]);
    let m = json(&out.join("manifest.json"));
    assert_eq!(m["dataset"]["name"], "hf:uoft-cs/cifar100");
    assert_eq!(m["dataset"]["num_classes"], 20);
    assert_eq!(m["dataset"]["shape"], "3x32x32");
    // No cache and no --data-root: the message says what to download.
    let o = common::kaizen_env(
        &["data", "inspect", "--dataset", "hf:someone/nothing"],
        &[("HF_HUB_CACHE", s(&t.path().join("empty")))],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("huggingface-cli download"),
        "{err}"
    );
}
