//! Hugging Face parquet datasets, offline: the test writes the 20 real CIFAR-100 test images (foolbox's PNG files,
//! as they are) into parquet files with the hub's CIFAR-100 schema (`img` struct of bytes + path, `fine_label`,
//! `coarse_label`, the `huggingface` metadata with the class names), lays them out as an hf-hub cache, and reads
//! them back as `hf:uoft-cs/cifar100`.

use anyhow::Result;
use kaizen_data::cifar::CIFAR100_FINE_TO_COARSE;
use kaizen_data::{
    eval_batch, load_dataset, load_named, two_view_batch, AugmentConfig, Augmenter, DatasetName,
    Item, LoadOptions,
};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The foolbox CIFAR-100 PNGs in name order with their fine labels (the last number of the name).
fn foolbox_cifar100() -> Result<Vec<(Vec<u8>, i64)>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures().join("foolbox"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cifar100_"))
        })
        .collect();
    v.sort();
    v.iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let fine: i64 = stem.rsplit('_').next().unwrap_or("").parse()?;
            Ok((std::fs::read(p)?, fine))
        })
        .collect()
}

/// Writes `rows` (PNG bytes, fine label) as the hub writes CIFAR-100: optional `img {bytes, path}`, optional
/// int64 labels, snappy, the `huggingface` metadata naming the fine classes.
fn write_parquet(path: &Path, rows: &[(Vec<u8>, i64)], fine_names: &[String]) -> Result<()> {
    let schema = Arc::new(parse_message_type(
        "message schema {
            OPTIONAL group img {
                OPTIONAL BYTE_ARRAY bytes;
                OPTIONAL BYTE_ARRAY path (UTF8);
            }
            OPTIONAL INT64 fine_label;
            OPTIONAL INT64 coarse_label;
        }",
    )?);
    let meta = serde_json::json!({"info": {"features": {
        "img": {"_type": "Image"},
        "fine_label": {"names": fine_names, "_type": "ClassLabel"},
        "coarse_label": {"_type": "ClassLabel"},
    }}});
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "huggingface".into(),
            meta.to_string(),
        )]))
        .build();
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let mut w = SerializedFileWriter::new(std::fs::File::create(path)?, schema, Arc::new(props))?;
    let mut rg = w.next_row_group()?;
    let n = rows.len();
    let mut col = 0;
    while let Some(mut c) = rg.next_column()? {
        match col {
            0 => {
                let v: Vec<ByteArray> = rows
                    .iter()
                    .map(|(b, _)| ByteArray::from(b.clone()))
                    .collect();
                c.typed::<ByteArrayType>()
                    .write_batch(&v, Some(&vec![2; n]), None)?;
            }
            1 => {
                // path = null: the group is present (level 1), the value is not.
                c.typed::<ByteArrayType>()
                    .write_batch(&[], Some(&vec![1; n]), None)?;
            }
            2 => {
                let v: Vec<i64> = rows.iter().map(|r| r.1).collect();
                c.typed::<Int64Type>()
                    .write_batch(&v, Some(&vec![1; n]), None)?;
            }
            _ => {
                let v: Vec<i64> = rows
                    .iter()
                    .map(|r| match usize::try_from(r.1) {
                        Ok(f) => CIFAR100_FINE_TO_COARSE[f] as i64,
                        Err(_) => -1, // unlabelled
                    })
                    .collect();
                c.typed::<Int64Type>()
                    .write_batch(&v, Some(&vec![1; n]), None)?;
            }
        }
        c.close()?;
        col += 1;
    }
    rg.close()?;
    w.close()?;
    Ok(())
}

#[test]
fn hub_cifar100_parquet_reads_offline_and_matches_the_binary_version() -> Result<()> {
    let bin = load_dataset(
        DatasetName::Cifar100,
        Some(&fixtures().join("cifar-100-binary")),
    )?;
    let rows = foolbox_cifar100()?;
    assert_eq!(rows.len(), 20);
    let t = tempfile::tempdir()?;
    let cache = t.path().join("hub");
    let repo = cache.join("datasets--uoft-cs--cifar100");
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(sha);
    write_parquet(
        &snap.join("cifar100/train-00000-of-00001.parquet"),
        &rows[..12],
        &bin.class_names,
    )?;
    write_parquet(
        &snap.join("cifar100/test-00000-of-00001.parquet"),
        &rows[12..],
        &bin.class_names,
    )?;
    std::fs::create_dir_all(repo.join("refs"))?;
    std::fs::write(repo.join("refs/main"), sha)?;

    // Offline, nothing cached: the message says what to download and where.
    std::env::set_var("HF_HUB_CACHE", t.path().join("empty"));
    let e = load_named("hf:uoft-cs/cifar100", None, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("huggingface-cli download --repo-type dataset uoft-cs/cifar100")
            && e.contains("datasets--uoft-cs--cifar100")
            && e.contains("--data-root"),
        "{e}"
    );
    let e = load_dataset(DatasetName::Cifar100, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("huggingface-cli download --repo-type dataset uoft-cs/cifar100")
            && e.contains("cifar-100-binary"),
        "{e}"
    );
    let e = load_named("hf:not a repo", None, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("hf:<owner>/<name>"), "{e}");

    std::env::set_var("HF_HUB_CACHE", &cache);
    // `--dataset cifar100` without --data-root finds the hub's parquet version in the cache.
    let c = load_dataset(DatasetName::Cifar100, None)?;
    assert_eq!((c.name.as_str(), c.train.len()), ("cifar100", 12));
    assert_eq!(c.train.image(3), bin.test.image(3));
    let d = load_named("hf:uoft-cs/cifar100", None, &LoadOptions::default())?;
    assert_eq!(d.name, "hf:uoft-cs/cifar100");
    assert_eq!((d.num_classes, d.train.len(), d.test.len()), (100, 12, 8));
    assert_eq!(d.class_names[49], "mountain");
    assert_eq!(d.shape, bin.shape);
    // All 32x32: decoded once into memory, like the binary version (exact statistics).
    assert!(!d.train.is_streamed());
    let first12 = bin.test.select(&(0..12).collect::<Vec<_>>());
    assert_eq!(
        (d.mean.clone(), d.std.clone()),
        kaizen_data::dataset::channel_stats(&first12)
    );
    for i in 0..12 {
        assert_eq!(d.train.label(i), bin.test.label(i));
        assert_eq!(&d.train.source(i)?.pixels[..], bin.test.image(i), "row {i}");
    }
    for i in 0..8 {
        assert_eq!(d.test.label(i), bin.test.label(12 + i));
    }
    // The same images give the same training views and evaluation inputs as the binary version.
    let aug = Augmenter::new(AugmentConfig::default(), bin.shape, &bin.mean, &bin.std)?;
    let dev = candle_core::Device::Cpu;
    let items: Vec<Item> = (0..12u32)
        .map(|i| Item {
            index: i,
            label: -1,
        })
        .collect();
    let a = two_view_batch(&d.train, &items, &aug, 11, 3, &dev)?;
    let b = two_view_batch(&bin.test, &items, &aug, 11, 3, &dev)?;
    let v = |t: &candle_core::Tensor| t.flatten_all().and_then(|x| x.to_vec1::<f32>());
    assert_eq!(v(&a.view1)?, v(&b.view1)?);
    assert_eq!(v(&a.view2)?, v(&b.view2)?);
    let idx: Vec<u32> = (0..12).collect();
    let (x, _) = eval_batch(&d.train, &idx, &bin.mean, &bin.std, &dev)?;
    let (y, _) = eval_batch(&bin.test, &idx, &bin.mean, &bin.std, &dev)?;
    assert_eq!(v(&x)?, v(&y)?);

    // Coarse labels by column name (no names in the metadata: named by number); a wrong column is an error.
    let coarse = LoadOptions {
        label_column: "coarse_label".into(),
        ..LoadOptions::default()
    };
    let d = load_named("hf:uoft-cs/cifar100", None, &coarse)?;
    assert_eq!(d.train.label(0), CIFAR100_FINE_TO_COARSE[49] as u16);
    assert_eq!(d.class_names[0], "0");
    let bad = LoadOptions {
        image_column: "picture".into(),
        ..LoadOptions::default()
    };
    let e = load_named("hf:uoft-cs/cifar100", None, &bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no image column `picture`") && e.contains("fine_label"),
        "{e}"
    );

    // Another model size: streamed, decoded and resized per batch.
    let big = LoadOptions {
        image_size: 40,
        ..LoadOptions::default()
    };
    let d = load_named("hf:uoft-cs/cifar100", None, &big)?;
    assert!(d.train.is_streamed());
    assert_eq!((d.shape.height, d.shape.width), (40, 40));
    let aug = Augmenter::new(AugmentConfig::default(), d.shape, &d.mean, &d.std)?;
    let b = two_view_batch(&d.train, &items, &aug, 11, 3, &dev)?;
    assert_eq!(b.view1.dims(), &[12, 3, 40, 40]);
    assert!(v(&b.view1)?.iter().all(|x| x.is_finite()));

    // --data-root pointing at a folder of the parquet files works without any cache.
    std::env::set_var("HF_HUB_CACHE", t.path().join("empty"));
    let d = load_named("hf:uoft-cs/cifar100", Some(&snap), &LoadOptions::default())?;
    assert_eq!(d.train.len(), 12);
    // Unlabelled test files (-1, as the hub's ImageNet): the validation files are the test split. A class list
    // keeps the listed classes.
    let split3 = t.path().join("split3");
    write_parquet(
        &split3.join("data/train-0.parquet"),
        &rows[..12],
        &bin.class_names,
    )?;
    let unlabelled: Vec<(Vec<u8>, i64)> = rows[12..].iter().map(|(b, _)| (b.clone(), -1)).collect();
    write_parquet(
        &split3.join("data/test-0.parquet"),
        &unlabelled,
        &bin.class_names,
    )?;
    write_parquet(
        &split3.join("data/validation-0.parquet"),
        &rows[12..],
        &bin.class_names,
    )?;
    let d = load_named("hf:x/y", Some(&split3), &LoadOptions::default())?;
    assert_eq!(d.test.len(), 8);
    assert_eq!(d.test.label(0), bin.test.label(12));
    let wanted: Vec<String> = vec![
        bin.class_names[bin.test.label(0) as usize].clone(),
        bin.class_names[bin.test.label(12) as usize].clone(),
    ];
    let listed = LoadOptions {
        class_list: wanted.clone(),
        ..LoadOptions::default()
    };
    let d = load_named("hf:x/y", Some(&split3), &listed)?;
    assert_eq!(d.num_classes, 2);
    let mut names = d.class_names.clone();
    names.sort();
    let mut w = wanted.clone();
    w.sort();
    assert_eq!(names, w);
    assert!(
        d.train.len() < 12 && !d.test.is_empty(),
        "{}",
        d.train.len()
    );
    let bad_list = LoadOptions {
        class_list: vec!["unicorn".into()],
        ..LoadOptions::default()
    };
    let e = load_named("hf:x/y", Some(&split3), &bad_list)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unicorn"), "{e}");

    // A truncated parquet file is an error naming it.
    let broken = t.path().join("broken");
    std::fs::create_dir_all(&broken)?;
    let full = std::fs::read(snap.join("cifar100/train-00000-of-00001.parquet"))?;
    std::fs::write(broken.join("train.parquet"), &full[..full.len() / 2])?;
    std::fs::write(broken.join("test.parquet"), &full)?;
    let e = load_named(
        "hf:uoft-cs/cifar100",
        Some(&broken),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("train.parquet") && e.contains("parquet"), "{e}");
    Ok(())
}

/// The same images written by pyarrow (an independent writer, `scripts/make_hf_parquet_fixture.py`), with the hub's
/// exact schema and metadata, read as a folder of parquet files.
#[test]
fn a_pyarrow_written_hub_dataset_reads_with_fine_and_coarse_names() -> Result<()> {
    let bin = load_dataset(
        DatasetName::Cifar100,
        Some(&fixtures().join("cifar-100-binary")),
    )?;
    let dir = fixtures().join("hf-cifar100");
    let d = load_named("hf:uoft-cs/cifar100", Some(&dir), &LoadOptions::default())?;
    assert_eq!((d.num_classes, d.train.len(), d.test.len()), (100, 12, 8));
    assert_eq!(d.class_names, bin.class_names);
    for i in 0..12 {
        assert_eq!(d.train.label(i), bin.test.label(i));
        assert_eq!(&d.train.source(i)?.pixels[..], bin.test.image(i), "row {i}");
    }
    for i in 0..8 {
        assert_eq!(
            &d.test.source(i)?.pixels[..],
            bin.test.image(12 + i),
            "test row {i}"
        );
    }
    let coarse = LoadOptions {
        label_column: "coarse_label".into(),
        ..LoadOptions::default()
    };
    let d = load_named("hf:uoft-cs/cifar100", Some(&dir), &coarse)?;
    assert_eq!(d.num_classes, 20);
    assert_eq!(d.class_names[10], "large_natural_outdoor_scenes");
    assert_eq!(d.train.label(0), 10); // the first image is a mountain
    let ins = d.inspect();
    assert_eq!(ins.image_sizes.len(), 1);
    assert_eq!(
        (ins.image_sizes[0].width, ins.image_sizes[0].count),
        (32, 20)
    );
    Ok(())
}

#[test]
fn parquet_files_go_to_the_split_their_last_split_word_names() -> Result<()> {
    let t = tempfile::tempdir()?;
    for f in [
        "cifar100/train-00000-of-00002.parquet",
        "cifar100/train-00001-of-00002.parquet",
        "train_test/test-0.parquet",
        "data/val/0.parquet",
        "notes/contest.parquet",
        "README.md",
    ] {
        let p = t.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap_or(t.path()))?;
        std::fs::write(p, b"")?;
    }
    let s = kaizen_data::parquet::split_files(t.path())?;
    let names = |v: &[PathBuf]| -> Vec<String> {
        v.iter()
            .map(|p| p.strip_prefix(t.path()).unwrap_or(p).display().to_string())
            .collect()
    };
    assert_eq!(
        names(&s.train),
        vec![
            "cifar100/train-00000-of-00002.parquet",
            "cifar100/train-00001-of-00002.parquet"
        ]
    );
    assert_eq!(names(&s.test), vec!["train_test/test-0.parquet"]);
    assert_eq!(names(&s.validation), vec!["data/val/0.parquet"]);
    Ok(())
}
