//! End-to-end tests of the `kaizen` binary on the `smoke` preset (real embedded Fashion-MNIST images).

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn smoke_run_writes_the_whole_run_directory() {
    let t = tmp();
    let dir = t.path().join("run");
    ok(&smoke_run(&dir, &[]));
    for f in [
        "manifest.json",
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "report.md",
        "acc_matrix_classifier.csv",
        "acc_matrix_classifier_seen.csv",
        "acc_matrix_knn.csv",
        "acc_matrix_linear.csv",
        "checkpoints/task_0.safetensors",
        "checkpoints/task_1.safetensors",
        "checkpoints/latest.safetensors",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&dir.join("manifest.json"))).expect("manifest JSON");
    assert_eq!(manifest["seed"], 5);
    let mut order: Vec<u64> = manifest["class_order"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
        .unwrap_or_default();
    order.sort_unstable();
    assert_eq!(
        order,
        (0..10).collect::<Vec<u64>>(),
        "class order must be a permutation of the 10 classes"
    );
    assert!(manifest["end_time"].is_string());
    let summary: serde_json::Value =
        serde_json::from_str(&read(&dir.join("summary.json"))).expect("summary JSON");
    for p in ["classifier", "classifier_seen", "knn", "linear"] {
        let s = &summary["protocols"][p];
        let f = s["final_accuracy"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&f), "{p}: final accuracy {f}");
        assert_eq!(s["per_task_forgetting"].as_array().map(Vec::len), Some(1));
    }
    // the accuracy matrix is 2 x 2 and re-reads through `kaizen metrics`
    let m = ok(&[
        "metrics",
        "--acc-matrix",
        s(&dir.join("acc_matrix_knn.csv")),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&m.stdout).expect("metrics JSON");
    assert_eq!(
        v["final_accuracy"],
        summary["protocols"]["knn"]["final_accuracy"]
    );
    let log = read(&dir.join("metrics.jsonl"));
    assert!(log.lines().any(|l| l.contains("\"event\":\"eval\"")));
    // Where the time went: per task and in total, by phase.
    let finished: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "finished")
        .expect("a finished line");
    for phase in [
        "train",
        "eval_features",
        "eval_knn",
        "eval_linear",
        "checkpoint",
        "report",
    ] {
        let secs = finished["phase_seconds"][phase].as_f64();
        assert!(secs.is_some_and(|x| x >= 0.0), "{phase}: {finished}");
    }
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"event\":\"task_end\""))
            .count(),
        2
    );
    // The accuracy CSVs and scalars.csv have a header row (pandas.read_csv reads them without options).
    assert!(read(&dir.join("acc_matrix_knn.csv")).starts_with("task_0,task_1\n"));
    let scalars = read(&dir.join("scalars.csv"));
    let mut lines = scalars.lines();
    assert_eq!(
        lines.next(),
        Some("run_id,event,task,epoch,step,term,value")
    );
    let run_id: String = manifest["config_hash"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(12)
        .collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(
        rows.iter().all(|r| r.len() == 7 && r[0] == run_id),
        "{scalars}"
    );
    assert!(
        rows.iter().all(|r| r[6].parse::<f64>().is_ok()),
        "{scalars}"
    );
    // Every defined cell of every accuracy matrix is an eval row.
    let eval_rows = rows.iter().filter(|r| r[1] == "eval").count();
    let defined: usize = ["classifier", "classifier_seen", "knn", "linear"]
        .iter()
        .map(|p| {
            read(&dir.join(format!("acc_matrix_{p}.csv")))
                .lines()
                .skip(1)
                .flat_map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
                .filter(|c| c != "NA")
                .count()
        })
        .sum();
    assert_eq!(eval_rows, defined);
    let epoch_cls = rows
        .iter()
        .filter(|r| r[1] == "epoch" && r[5] == "cls_ce")
        .count();
    assert_eq!(epoch_cls, 2, "one epoch per task: {scalars}");
    // The trained model exports from any checkpoint the run wrote, and from the run directory (its final model,
    // which is the last task's): same torchvision tensors.
    let ex = |ckpt: &Path, out: &str| {
        let out = t.path().join(out);
        ok(&["export", "--checkpoint", s(ckpt), "--out", s(&out)]);
        std::fs::read(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
    };
    let from_dir = ex(&dir, "final.safetensors");
    let from_task = ex(
        &dir.join("checkpoints/task_1.safetensors"),
        "task1.safetensors",
    );
    assert_eq!(from_dir, from_task);
    let from_task0 = ex(
        &dir.join("checkpoints/task_0.safetensors"),
        "task0.safetensors",
    );
    assert_ne!(
        from_task0, from_task,
        "task 0 and task 1 backbones should differ"
    );
    fails_with(
        &[
            "export",
            "--checkpoint",
            s(t.path()),
            "--out",
            s(&t.path().join("x")),
        ],
        "without checkpoints/latest.safetensors",
    );
    // ... and computes features from the run directory.
    let imgs = t.path().join("imgs.safetensors");
    let x = candle_core::Tensor::zeros(
        (3, 1, 28, 28),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .and_then(|x| {
        candle_core::safetensors::save(&std::collections::HashMap::from([("images", x)]), &imgs)
    });
    x.unwrap_or_else(|e| panic!("writing {}: {e}", imgs.display()));
    let feats = t.path().join("feats.safetensors");
    ok(&[
        "features",
        "--checkpoint",
        s(&dir),
        "--input",
        s(&imgs),
        "--out",
        s(&feats),
    ]);
    let f = candle_core::safetensors::load(&feats, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("reading {}: {e}", feats.display()));
    assert_eq!(f["features"].dims(), &[3, 16], "width 2 -> 16 features");
}

#[test]
fn interrupted_and_resumed_runs_match_an_uninterrupted_run_bit_for_bit() {
    let t = tmp();
    let full = t.path().join("full");
    ok(&smoke_run(&full, &[]));
    // stop in the middle of task 0's epoch, then in task 1 (with the frozen model), then finish
    let cut = t.path().join("cut");
    stopped(&smoke_run(&cut, &["--stop-after-steps", "1"]));
    assert!(!cut.join("summary.json").exists());
    stopped(&["resume", s(&cut), "--quiet", "--stop-after-steps", "3"]);
    assert!(!cut.join("summary.json").exists());
    ok(&["resume", s(&cut), "--quiet"]);
    assert_eq!(summary_of(&full), summary_of(&cut));
}

#[test]
fn a_killed_run_resumes_to_the_same_result() {
    let t = tmp();
    let full = t.path().join("full");
    ok(&smoke_run(&full, &["--set", "train.checkpoint_every=1"]));
    let killed = t.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .args(smoke_run(&killed, &["--set", "train.checkpoint_every=1"]))
        .env("RAYON_NUM_THREADS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn kaizen");
    let latest = killed.join("checkpoints/latest.safetensors");
    let start = std::time::Instant::now();
    while !latest.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    ok(&["resume", s(&killed), "--quiet"]);
    assert_eq!(summary_of(&full), summary_of(&killed));
}

#[test]
fn ctrl_c_checkpoints_exits_130_and_resumes_to_the_same_result() {
    let t = tmp();
    let full = t.path().join("full");
    let args = |out: &Path| {
        vec![
            "run".to_string(),
            "--preset".into(),
            "smoke".into(),
            "--out".into(),
            s(out).into(),
            "--quiet".into(),
            "--set".into(),
            "train.epochs=3".into(),
        ]
    };
    let full_args = args(&full);
    ok(&full_args.iter().map(String::as_str).collect::<Vec<_>>());
    let cut = t.path().join("cut");
    let child = Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .args(args(&cut))
        .env("RAYON_NUM_THREADS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kaizen");
    // SIGINT once the run is training (its config is written before the first step).
    let start = std::time::Instant::now();
    while !cut.join("metrics.jsonl").exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait for kaizen");
    let err = String::from_utf8_lossy(&out.stderr);
    if cut.join("summary.json").exists() {
        // The run finished before the signal arrived: nothing to check but a clean exit.
        assert_eq!(out.status.code(), Some(0), "{err}");
        return;
    }
    assert_eq!(out.status.code(), Some(130), "stderr:\n{err}");
    assert!(err.contains("kaizen resume"), "{err}");
    ok(&["resume", s(&cut), "--quiet"]);
    assert_eq!(summary_of(&full), summary_of(&cut));
}

#[test]
fn one_process_at_a_time_writes_a_run_directory() {
    let t = tmp();
    let dir = t.path().join("run");
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kaizen"))
            .args(args)
            .env("RAYON_NUM_THREADS", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn kaizen")
    };
    let run = smoke_run(&dir, &["--set", "train.epochs=4"]);
    // Two runs started at the same instant: one trains, the other is refused and writes nothing.
    let (a, b) = (spawn(&run), spawn(&run));
    let (a, b) = (
        a.wait_with_output().expect("wait"),
        b.wait_with_output().expect("wait"),
    );
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(2)),
        "exit codes {codes:?}\n{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let refused = if a.status.code() == Some(2) { &a } else { &b };
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("in use by another kaizen process (pid") || err.contains("is not empty"),
        "{err}"
    );
    let config = read(&dir.join("config.toml"));
    assert!(config.contains("epochs = 4"), "{config}");
    // A resume while a run trains in the directory is refused, naming the holder's pid.
    let dir2 = t.path().join("run2");
    let mut run2 = run;
    run2[4] = s(&dir2);
    let child = spawn(&run2);
    let pid = child.id();
    let start = std::time::Instant::now();
    while !dir2.join("metrics.jsonl").exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let o = kaizen(&["resume", s(&dir2), "--quiet"]);
    let finished_first = dir2.join("summary.json").exists();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    if !finished_first {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("in use by another kaizen process (pid {pid})")),
            "{err}"
        );
    }
}

#[test]
fn a_diverged_run_keeps_its_last_finite_checkpoint() {
    let t = tmp();
    let dir = t.path().join("run");
    let args = smoke_run(
        &dir,
        &[
            "--set",
            "train.lr=1e18",
            "--set",
            "train.epochs=30",
            "--set",
            "train.checkpoint_every=1",
        ],
    );
    fails_with(&args, "lower learning rate");
    let latest = dir.join("checkpoints/latest.safetensors");
    let tensors = candle_core::safetensors::load(&latest, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("the last good checkpoint {}: {e}", latest.display()));
    for (name, t) in &tensors {
        if t.dtype().is_float() {
            let v = t
                .to_dtype(candle_core::DType::F32)
                .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(v.iter().all(|x| x.is_finite()), "{name} is not finite");
        }
    }
    // Resuming starts from that finite state (and diverges again with this learning rate, with the same advice).
    fails_with(&["resume", s(&dir), "--quiet"], "lower learning rate");
}

#[test]
fn resume_falls_back_to_the_newest_intact_checkpoint() {
    let t = tmp();
    let full = t.path().join("full");
    ok(&smoke_run(&full, &[]));
    for damage in ["delete", "truncate"] {
        // Stopped in task 1: task_0.safetensors and latest.safetensors exist.
        let dir = t.path().join(damage);
        stopped(&smoke_run(&dir, &["--stop-after-steps", "3"]));
        let latest = dir.join("checkpoints/latest.safetensors");
        assert!(dir.join("checkpoints/task_0.safetensors").exists());
        if damage == "delete" {
            std::fs::remove_file(&latest).expect("delete latest");
        } else {
            let bytes = std::fs::read(&latest).expect("read latest");
            std::fs::write(&latest, &bytes[..bytes.len() / 3]).expect("truncate latest");
        }
        let o = ok(&["resume", s(&dir)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("resuming from") && err.contains("task_0.safetensors"),
            "{err}"
        );
        // Same result as the uninterrupted run, and the log marks where the resumed attempt starts.
        assert_eq!(summary_of(&full), summary_of(&dir));
        let log = read(&dir.join("metrics.jsonl"));
        assert!(
            log.lines()
                .any(|l| l.contains("\"event\":\"resume\"") && l.contains("task_0.safetensors")),
            "{log}"
        );
    }
}

#[test]
fn runs_without_labels_are_warned_about() {
    let t = tmp();
    let o = ok(&smoke_run(
        &t.path().join("run"),
        &["--set", "data.label_fraction=0"],
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("warning: data.label_fraction = 0"), "{err}");
    assert!(read(&t.path().join("run/metrics.jsonl")).contains("\"event\":\"warning\""));
}

#[test]
fn compare_writes_a_comparison_with_transfer_metrics() {
    let t = tmp();
    let dir = t.path().join("cmp");
    ok(&smoke_run(
        &dir,
        &["--compare", "random,joint,kaizen,finetune"],
    ));
    let v: serde_json::Value =
        serde_json::from_str(&read(&dir.join("comparison.json"))).expect("comparison JSON");
    let text = v.to_string();
    assert!(
        text.contains("kaizen") && text.contains("finetune"),
        "{text}"
    );
    assert!(dir.join("comparison.md").exists());
    assert!(dir.join("random/random_accuracy_knn.csv").exists());
    assert!(dir.join("joint/joint_accuracy_knn.csv").exists());
}

#[test]
fn seeds_write_mean_and_std_over_seeds_and_a_rerun_skips_finished_runs() {
    let t = tmp();
    let dir = t.path().join("seeds");
    let args = smoke_run(
        &dir,
        &[
            "--compare",
            "kaizen,finetune",
            "--seeds",
            "3,4",
            "--set",
            "eval.linear=false",
        ],
    );
    ok(&args);
    let v: serde_json::Value =
        serde_json::from_str(&read(&dir.join("comparison.json"))).expect("comparison JSON");
    assert_eq!(v["seeds"], serde_json::json!([3, 4]));
    // The aggregate must be the mean and sample std of the per-seed summaries, recomputed here.
    let mut finals = Vec::new();
    for seed in [3, 4] {
        let summary: serde_json::Value =
            serde_json::from_str(&read(&dir.join(format!("seed-{seed}/kaizen/summary.json"))))
                .expect("summary JSON");
        let config = read(&dir.join(format!("seed-{seed}/kaizen/config.toml")));
        assert!(config.contains(&format!("seed = {seed}")), "{config}");
        finals.push(
            summary["protocols"]["knn"]["final_accuracy"]
                .as_f64()
                .expect("final accuracy"),
        );
    }
    let st = &v["protocols"]["knn"]["kaizen"]["final_accuracy"];
    let mean = (finals[0] + finals[1]) / 2.0;
    let std = ((finals[0] - mean).powi(2) + (finals[1] - mean).powi(2)).sqrt();
    assert!(
        (st["mean"].as_f64().expect("mean") - mean).abs() < 1e-12,
        "{st}"
    );
    assert!(
        (st["std"].as_f64().expect("std") - std).abs() < 1e-12,
        "{st}"
    );
    assert_eq!(st["values"], serde_json::json!(finals));
    let md = read(&dir.join("comparison.md"));
    assert!(md.contains("--seeds 3,4") && md.contains(" ± "), "{md}");
    assert!(dir.join("seed-4/comparison.md").exists());
    // Running the same command again trains nothing and keeps the results.
    let before = read(&dir.join("seed-3/kaizen/summary.json"));
    let o = ok(&args);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already finished"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(read(&dir.join("seed-3/kaizen/summary.json")), before);
    // Another configuration in the same folder is refused.
    let mut other = args.to_vec();
    other.extend(["--set", "train.epochs=2"]);
    fails_with(&other, "holds a run of another configuration");
}

#[test]
fn bad_inputs_are_clear_errors_with_exit_code_2() {
    let t = tmp();
    fails_with(
        &["run", "--preset", "smoke", "--set", "train.epoch=3"],
        "unknown config key `train.epoch`",
    );
    fails_with(&["run", "--preset", "nope"], "valid presets");
    fails_with(&["run", "--preset", "smoke", "--set", "method=byo"], "byo");
    fails_with(
        &["run", "--compare", "kaizen,nope"],
        "valid names: kaizen, cassle",
    );
    // a truncated CIFAR-10 file
    let root = t.path().join("cifar");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("data_batch_1.bin"), vec![3u8; 3073 + 100]).expect("write");
    fails_with(
        &[
            "run",
            "--preset",
            "smoke",
            "--dataset",
            "cifar10",
            "--data-root",
            s(&root),
            "--out",
            s(&t.path().join("c")),
        ],
        "data_batch",
    );
    // a run whose config was changed after its checkpoints were written
    let dir = t.path().join("run");
    stopped(&smoke_run(&dir, &["--stop-after-steps", "1"]));
    let cfg = read(&dir.join("config.toml")).replace("width = 2", "width = 4");
    std::fs::write(dir.join("config.toml"), cfg).expect("write config");
    fails_with(&["resume", s(&dir)], "model.width: 2 -> 4");
    // a corrupt checkpoint
    let dir2 = t.path().join("run2");
    stopped(&smoke_run(&dir2, &["--stop-after-steps", "1"]));
    let ck = dir2.join("checkpoints/latest.safetensors");
    let bytes = std::fs::read(&ck).expect("read checkpoint");
    std::fs::write(&ck, &bytes[..bytes.len() / 2]).expect("truncate");
    fails_with(&["resume", s(&dir2)], "latest.safetensors");
    // the run directory of an existing run is never overwritten
    fails_with(
        &["run", "--preset", "smoke", "--out", s(&dir2)],
        "not empty",
    );
}

/// `kaizen bench` times both step kinds and reports time, loss and peak memory; a CUDA device needs a CUDA build.
#[test]
fn bench_reports_step_time_loss_and_peak_memory() {
    for mode in ["kaizen", "supervised"] {
        let o = ok(&[
            "bench",
            "--mode",
            mode,
            "--width",
            "2",
            "--batch",
            "4",
            "--classes",
            "10",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("bench JSON");
        assert!(v["step_ms_median"].as_f64().is_some_and(|x| x > 0.0), "{v}");
        assert!(v["peak_rss_mb"].as_f64().is_some_and(|x| x > 1.0), "{v}");
        assert!(v["final_loss"].as_f64().is_some_and(f64::is_finite), "{v}");
        assert_eq!(v["mode"], mode);
        assert_eq!(v["tf32"], false);
    }
    fails_with(&["bench", "--tf32", "--steps", "1"], "--device cuda only");
    if !cfg!(feature = "cuda") {
        fails_with(
            &["bench", "--device", "cuda", "--steps", "1"],
            "without CUDA",
        );
    }
}

/// `model.arch = "resnet18_imagenet"` (7x7 stride-2 stem + max-pool) trains, evaluates and exports like the CIFAR
/// ResNet; an unknown architecture is refused at configuration time.
#[test]
fn the_imagenet_resnet_trains_and_exports() {
    let t = tmp();
    let dir = t.path().join("run");
    ok(&smoke_run(&dir, &["--set", "model.arch=resnet18_imagenet"]));
    let m: serde_json::Value = serde_json::from_str(&read(&dir.join("manifest.json"))).unwrap();
    assert_eq!(m["network"]["backbone"]["arch"], "resnet18_imagenet");
    assert_eq!(m["device"], "cpu");
    let out = t.path().join("tv.safetensors");
    let e = ok(&[
        "export",
        "--checkpoint",
        s(&dir.join("checkpoints/task_1.safetensors")),
        "--out",
        s(&out),
    ]);
    assert!(String::from_utf8_lossy(&e.stdout).contains("resnet18_imagenet width 2"));
    fails_with(
        &["run", "--set", "model.arch=resnet50", "--print-config"],
        "valid: resnet18, resnet18_imagenet",
    );
}
