//! Readers on real bytes (embedded Fashion-MNIST subset, the full Debian Fashion-MNIST, CIFAR fixtures
//! converted from foolbox's PNGs) and every corruption case, each of which must name the file.

use anyhow::Result;
use kaizen_data::cifar::{CIFAR100_FINE_TO_COARSE, CIFAR10_CLASSES};
use kaizen_data::{load_dataset, DataError, DatasetName, ImageShape};
use std::io::Write;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

const FULL_FMNIST: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn embedded_subset_has_the_documented_counts_and_stats() -> Result<()> {
    let d = load_dataset(DatasetName::FashionMnistMini, None)?;
    assert_eq!(d.name, "fashion-mnist-mini");
    assert_eq!(
        d.shape,
        ImageShape {
            channels: 1,
            height: 28,
            width: 28
        }
    );
    assert_eq!(d.num_classes, 10);
    assert_eq!(d.class_names[0], "T-shirt/top");
    assert_eq!(d.class_names[9], "Ankle boot");
    let ins = d.inspect();
    assert_eq!(ins.train.images, 10_000);
    assert_eq!(ins.test.images, 2_000);
    assert_eq!(ins.train.per_class, vec![1000; 10]);
    assert_eq!(ins.test.per_class, vec![200; 10]);
    assert_eq!(ins.train.classes, 10);
    // The first Fashion-MNIST training labels (all kept: no class reaches 1000 this early).
    assert_eq!(&d.train.labels()[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(&d.test.labels()[..5], &[9, 2, 1, 1, 6]);
    // Fashion-MNIST statistics are about mean 0.286, std 0.353.
    assert!((d.mean[0] - 0.286).abs() < 0.02, "mean {}", d.mean[0]);
    assert!((d.std[0] - 0.353).abs() < 0.02, "std {}", d.std[0]);
    let json = serde_json::to_value(&ins)?;
    assert_eq!(json["train"]["images"], 10_000);
    assert_eq!(json["test"]["per_class"][3], 200);
    assert_eq!(json["test"]["classes"], 10);
    assert!(kaizen_data::FASHION_MNIST_LICENSE.contains("Zalando"));
    assert!(kaizen_data::FASHION_MNIST_LICENSE.contains("MIT"));
    Ok(())
}

#[test]
fn full_fashion_mnist_from_debian_package_and_subset_is_its_prefix() -> Result<()> {
    let root = Path::new(FULL_FMNIST);
    assert!(
        root.join("train-images-idx3-ubyte.gz").is_file(),
        "{FULL_FMNIST} is missing: install it with `apt-get install dataset-fashion-mnist`"
    );
    let full = load_dataset(DatasetName::FashionMnist, Some(root))?;
    let ins = full.inspect();
    assert_eq!(ins.train.images, 60_000);
    assert_eq!(ins.test.images, 10_000);
    assert_eq!(ins.train.per_class, vec![6000; 10]);
    assert_eq!(ins.test.per_class, vec![1000; 10]);
    // The embedded subset is exactly the first 1000 / 200 images of each class, in original order.
    let mini = load_dataset(DatasetName::FashionMnistMini, None)?;
    assert_eq!(full.train.cap_per_class(1000), mini.train);
    assert_eq!(full.test.cap_per_class(200), mini.test);
    Ok(())
}

fn png_pixels(path: &Path) -> Result<Vec<u8>> {
    Ok(image::open(path)?.to_rgb8().into_raw())
}

fn foolbox_pngs(prefix: &str) -> Result<Vec<(PathBuf, u16)>> {
    let mut v: Vec<(PathBuf, u16)> = Vec::new();
    for e in std::fs::read_dir(fixtures().join("foolbox"))? {
        let p = e?.path();
        let name = p
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let parts: Vec<&str> = name.split('_').collect();
        if parts.len() == 3 && parts[0] == prefix {
            v.push((p.clone(), parts[2].parse()?));
        }
    }
    v.sort();
    Ok(v)
}

#[test]
fn cifar10_fixture_matches_the_foolbox_pngs() -> Result<()> {
    // Root is the parent of `cifar-10-batches-bin/`: the archive layout.
    let d = load_dataset(DatasetName::Cifar10, Some(&fixtures()))?;
    assert_eq!(
        d.shape,
        ImageShape {
            channels: 3,
            height: 32,
            width: 32
        }
    );
    assert_eq!(d.class_names, CIFAR10_CLASSES.map(String::from).to_vec());
    assert_eq!(d.train.len(), 20); // 5 data batches of 4 records
    assert_eq!(d.test.len(), 20);
    assert_eq!(&d.test.labels()[..10], &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    let pngs = foolbox_pngs("cifar10")?;
    assert_eq!(pngs.len(), 20);
    for (i, (p, label)) in pngs.iter().enumerate() {
        assert_eq!(d.test.label(i), *label, "{}", p.display());
        assert_eq!(d.test.image(i), &png_pixels(p)?[..], "{}", p.display());
        assert_eq!(d.train.image(i), d.test.image(i));
    }
    // A couple of hard-coded bytes, read independently from the PNG of image 0 (a cat).
    let px0 = d.test.image(0);
    let png0 = png_pixels(&pngs[0].0)?;
    assert_eq!(&px0[..3], &png0[..3]);
    Ok(())
}

#[test]
fn cifar100_fixture_matches_the_foolbox_pngs() -> Result<()> {
    // Root is the data folder itself.
    let d = load_dataset(
        DatasetName::Cifar100,
        Some(&fixtures().join("cifar-100-binary")),
    )?;
    assert_eq!(d.num_classes, 100);
    assert_eq!(d.class_names[49], "mountain");
    assert_eq!(d.test.len(), 20);
    let pngs = foolbox_pngs("cifar100")?;
    assert_eq!(pngs.len(), 20);
    for (i, (p, fine)) in pngs.iter().enumerate() {
        assert_eq!(d.test.label(i), *fine, "{}", p.display());
        assert_eq!(d.test.image(i), &png_pixels(p)?[..], "{}", p.display());
    }
    // The coarse byte on disk is the table's value (first record: mountain -> large natural outdoor scenes).
    let raw = std::fs::read(fixtures().join("cifar-100-binary/test.bin"))?;
    assert_eq!((raw[0], raw[1]), (10, 49));
    assert_eq!(CIFAR100_FINE_TO_COARSE[49], 10);
    Ok(())
}

#[test]
fn dataset_names_parse_display_and_serde() -> Result<()> {
    for n in DatasetName::ALL {
        assert_eq!(n.to_string().parse::<DatasetName>()?, n);
        assert_eq!(serde_json::to_string(&n)?, format!("\"{n}\""));
        assert_eq!(serde_json::from_str::<DatasetName>(&format!("\"{n}\""))?, n);
    }
    assert_eq!("cifar100".parse::<DatasetName>()?, DatasetName::Cifar100);
    let e = "cifar-10".parse::<DatasetName>().unwrap_err();
    assert!(matches!(e, DataError::UnknownDataset { .. }));
    assert!(e
        .to_string()
        .contains("fashion-mnist-mini, fashion-mnist, mnist, cifar10, cifar100, image-folder"));
    Ok(())
}

// ---------- corruption cases ----------

fn idx_bytes(dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("in-memory write");
    e.finish().expect("in-memory gzip")
}

/// Writes a valid tiny IDX dataset (3 train / 2 test images of 2x2) into `dir`, uncompressed.
fn write_idx_set(dir: &Path) -> Result<()> {
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx_bytes(&[3, 2, 2], &[7u8; 12]),
    )?;
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx_bytes(&[3], &[0, 1, 9]),
    )?;
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte.gz"),
        gz(&idx_bytes(&[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8])),
    )?;
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte.gz"),
        gz(&idx_bytes(&[2], &[4, 5])),
    )?;
    Ok(())
}

fn assert_names(e: &DataError, file: &Path) {
    let msg = e.to_string();
    assert!(
        msg.contains(&file.display().to_string()),
        "error `{msg}` does not name {}",
        file.display()
    );
}

#[test]
fn idx_valid_tiny_set_loads_gz_and_plain() -> Result<()> {
    let t = tempfile::tempdir()?;
    write_idx_set(t.path())?;
    let d = load_dataset(DatasetName::Mnist, Some(t.path()))?;
    assert_eq!(
        d.shape,
        ImageShape {
            channels: 1,
            height: 2,
            width: 2
        }
    );
    assert_eq!(d.train.labels(), &[0, 1, 9]);
    assert_eq!(d.test.image(1), &[5, 6, 7, 8]);
    assert_eq!(d.class_names[3], "3");
    Ok(())
}

#[test]
fn idx_wrong_magic_names_the_file() -> Result<()> {
    let t = tempfile::tempdir()?;
    write_idx_set(t.path())?;
    let f = t.path().join("train-images-idx3-ubyte");
    let mut b = std::fs::read(&f)?;
    b[2] = 0x0D; // float data type, not unsigned bytes
    std::fs::write(&f, b)?;
    let e = load_dataset(DatasetName::Mnist, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, reason } if path == &f && reason.contains("wrong magic")),
        "{e}"
    );
    assert_names(&e, &f);
    Ok(())
}

#[test]
fn idx_gz_name_without_gzip_content_says_so() -> Result<()> {
    let t = tempfile::tempdir()?;
    write_idx_set(t.path())?;
    let plain = t.path().join("train-labels-idx1-ubyte");
    let f = t.path().join("train-labels-idx1-ubyte.gz");
    std::fs::write(&f, b"this is not gzip")?;
    std::fs::remove_file(&plain)?;
    let e = load_dataset(DatasetName::Mnist, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, reason } if path == &f && reason.contains("not a gzip file")),
        "{e}"
    );
    Ok(())
}

#[test]
fn idx_truncated_plain_and_gzip_name_the_file() -> Result<()> {
    let t = tempfile::tempdir()?;
    write_idx_set(t.path())?;
    let f = t.path().join("train-images-idx3-ubyte");
    let b = std::fs::read(&f)?;
    std::fs::write(&f, &b[..b.len() - 1])?;
    let e = load_dataset(DatasetName::Mnist, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, reason } if path == &f && reason.contains("truncated")),
        "{e}"
    );

    write_idx_set(t.path())?;
    let g = t.path().join("t10k-images-idx3-ubyte.gz");
    let b = std::fs::read(&g)?;
    std::fs::write(&g, &b[..b.len() / 2])?;
    let e = load_dataset(DatasetName::Mnist, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, .. } if path == &g),
        "{e}"
    );
    assert_names(&e, &g);
    Ok(())
}

#[test]
fn idx_label_out_of_range_names_the_label_file() -> Result<()> {
    let t = tempfile::tempdir()?;
    write_idx_set(t.path())?;
    let f = t.path().join("train-labels-idx1-ubyte");
    std::fs::write(&f, idx_bytes(&[3], &[0, 10, 1]))?;
    let e = load_dataset(DatasetName::FashionMnist, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, reason } if path == &f && reason.contains("label 10")),
        "{e}"
    );
    Ok(())
}

#[test]
fn idx_inconsistent_counts_name_both_files() -> Result<()> {
    let t = tempfile::tempdir()?;
    write_idx_set(t.path())?;
    let f = t.path().join("train-labels-idx1-ubyte");
    std::fs::write(&f, idx_bytes(&[2], &[0, 1]))?;
    let e = load_dataset(DatasetName::Mnist, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::Inconsistent { other, reason, .. } if other == &f && reason.contains("3 images but 2 labels")),
        "{e}"
    );
    assert_names(&e, &t.path().join("train-images-idx3-ubyte"));
    Ok(())
}

#[test]
fn idx_missing_files_and_missing_root() -> Result<()> {
    let t = tempfile::tempdir()?;
    let e = load_dataset(DatasetName::FashionMnist, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::NotFound { what, .. } if what.contains("train-images-idx3-ubyte")),
        "{e}"
    );
    let e = load_dataset(DatasetName::FashionMnist, None).unwrap_err();
    assert!(matches!(e, DataError::NeedsDataRoot { .. }));
    assert!(e.to_string().contains("dataset-fashion-mnist"));
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let p = e?.path();
        std::fs::copy(&p, to.join(p.file_name().unwrap_or_default()))?;
    }
    Ok(())
}

#[test]
fn cifar_truncated_file_is_named() -> Result<()> {
    let t = tempfile::tempdir()?;
    let dir = t.path().join("cifar-10-batches-bin");
    copy_dir(&fixtures().join("cifar-10-batches-bin"), &dir)?;
    let f = dir.join("data_batch_3.bin");
    let b = std::fs::read(&f)?;
    std::fs::write(&f, &b[..b.len() - 100])?;
    let e = load_dataset(DatasetName::Cifar10, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, reason } if path == &f && reason.contains("truncated by 100 bytes")),
        "{e}"
    );
    // one byte too long: said so, not only "truncated"
    let mut longer = b.clone();
    longer.push(0);
    std::fs::write(&f, &longer)?;
    let e = load_dataset(DatasetName::Cifar10, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, reason } if path == &f && reason.contains("1 byte extra")
            && reason.contains("1 byte too long")),
        "{e}"
    );
    std::fs::write(&f, b"")?;
    let e = load_dataset(DatasetName::Cifar10, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, reason } if path == &f && reason.contains("empty")),
        "{e}"
    );
    Ok(())
}

#[test]
fn cifar_label_out_of_range_is_named() -> Result<()> {
    let t = tempfile::tempdir()?;
    copy_dir(&fixtures().join("cifar-10-batches-bin"), t.path())?;
    let f = t.path().join("test_batch.bin");
    let mut b = std::fs::read(&f)?;
    b[3073] = 10; // label of record 1
    std::fs::write(&f, &b)?;
    let e = load_dataset(DatasetName::Cifar10, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, reason } if path == &f && reason.contains("record 1") && reason.contains("label 10")),
        "{e}"
    );

    let t = tempfile::tempdir()?;
    copy_dir(&fixtures().join("cifar-100-binary"), t.path())?;
    let f = t.path().join("train.bin");
    let mut b = std::fs::read(&f)?;
    b[1] = 100; // fine label of record 0
    std::fs::write(&f, &b)?;
    let e = load_dataset(DatasetName::Cifar100, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, reason } if path == &f && reason.contains("fine label 100")),
        "{e}"
    );
    b[1] = 49;
    b[0] = 3; // wrong coarse label for "mountain"
    std::fs::write(&f, &b)?;
    let e = load_dataset(DatasetName::Cifar100, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, reason } if path == &f && reason.contains("coarse")),
        "{e}"
    );
    Ok(())
}

#[test]
fn cifar_missing_files_and_no_root_say_where_to_point() -> Result<()> {
    let t = tempfile::tempdir()?;
    copy_dir(&fixtures().join("cifar-10-batches-bin"), t.path())?;
    std::fs::remove_file(t.path().join("data_batch_4.bin"))?;
    let e = load_dataset(DatasetName::Cifar10, Some(t.path())).unwrap_err();
    assert!(
        matches!(&e, DataError::NotFound { what, .. } if what.contains("data_batch_4.bin")),
        "{e}"
    );
    let e = load_dataset(DatasetName::Cifar100, None).unwrap_err();
    assert!(matches!(e, DataError::NeedsDataRoot { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("cifar-100-binary") && msg.contains("cifar-100-binary.tar.gz"),
        "{msg}"
    );
    Ok(())
}
