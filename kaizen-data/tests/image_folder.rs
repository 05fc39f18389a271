//! Image folders of any size, streamed: real Fashion-MNIST images written out as PNG / JPEG / WebP / BMP files of
//! mixed sizes, the CSV / JSON lists, class lists, bad files (stop / skip), the decoded cache, and the shrinking
//! resize against PIL's.

use anyhow::Result;
use kaizen_data::augment::crop::{centre_crop_rect, resized_crop, Rect};
use kaizen_data::{
    eval_batch, load_dataset, load_dataset_with, two_view_batch, AugmentConfig, Augmenter,
    BadFiles, DataError, DatasetName, ImageShape, Item, LoadOptions,
};
use std::path::Path;

fn save_gray(p: &Path, w: u32, h: u32, v: u8) -> Result<()> {
    std::fs::create_dir_all(p.parent().unwrap_or(Path::new(".")))?;
    image::GrayImage::from_pixel(w, h, image::Luma([v])).save(p)?;
    Ok(())
}

fn save_rgb(p: &Path, w: u32, h: u32, v: [u8; 3]) -> Result<()> {
    std::fs::create_dir_all(p.parent().unwrap_or(Path::new(".")))?;
    image::RgbImage::from_pixel(w, h, image::Rgb(v)).save(p)?;
    Ok(())
}

/// Writes `n` real Fashion-MNIST images of each of `classes` classes (train and test) as files of mixed sizes and
/// formats: image k of a class is resized to one of four sizes and saved as PNG or JPEG.
fn write_fashion_folder(root: &Path, classes: usize, n: usize) -> Result<()> {
    let d = load_dataset(DatasetName::FashionMnistMini, None)?;
    let sizes = [(28, 28), (40, 33), (20, 24), (64, 48)];
    let exts = ["png", "jpg", "png", "jpg"]; // WebP and BMP store gray as colour: see the RGB test
    for (split, part) in [(&d.train, "train"), (&d.test, "test")] {
        let mut seen = vec![0usize; classes];
        for i in 0..split.len() {
            let c = split.label(i) as usize;
            if c >= classes || seen[c] >= n {
                continue;
            }
            let k = seen[c];
            seen[c] += 1;
            let img = image::GrayImage::from_raw(28, 28, split.image(i).to_vec())
                .ok_or_else(|| anyhow::anyhow!("bad image"))?;
            let (w, h) = sizes[k % 4];
            let img = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
            let p = root.join(format!("{part}/class{c}/{k:03}.{}", exts[k % 4]));
            std::fs::create_dir_all(p.parent().unwrap_or(root))?;
            img.save(&p)?;
        }
    }
    Ok(())
}

fn opts(size: usize) -> LoadOptions {
    LoadOptions {
        image_size: size,
        ..LoadOptions::default()
    }
}

#[test]
fn gray_and_rgb_folders_keep_their_pixels() -> Result<()> {
    let t = tempfile::tempdir()?;
    let r = t.path();
    save_gray(&r.join("train/zebra/a.png"), 4, 3, 10)?;
    save_gray(&r.join("train/zebra/b.png"), 4, 3, 20)?;
    save_gray(&r.join("train/ant/x.png"), 4, 3, 30)?;
    std::fs::write(r.join("train/ant/notes.txt"), "ignored")?;
    save_gray(&r.join("test/zebra/c.png"), 4, 3, 40)?;
    let d = load_dataset(DatasetName::ImageFolder, Some(r))?;
    assert_eq!(d.class_names, vec!["ant".to_string(), "zebra".to_string()]);
    let shape = ImageShape {
        channels: 1,
        height: 3,
        width: 4,
    };
    assert_eq!(d.shape, shape);
    assert!(d.train.is_streamed());
    assert_eq!(d.train.labels(), &[0, 1, 1]);
    assert_eq!(&d.train.source(1)?.pixels[..], &[10u8; 12]);
    let mut px = vec![0f32; 12];
    d.train.eval_pixels(1, &mut px)?; // same size and eval_crop 1: the pixels as they are
    assert!(px.iter().all(|&v| v == 10.0 / 255.0), "{px:?}");
    assert_eq!(d.test.labels(), &[1]);
    assert_eq!(d.inspect().test.per_class, vec![0, 1]);
    // Exact mean over the (sampled = all three) training images: (30 + 10 + 20) / 3.
    assert!((d.mean[0] - 20.0 / 255.0).abs() < 1e-6, "{:?}", d.mean);

    // One RGB image turns the whole dataset into 3 channels.
    save_rgb(&r.join("test/ant/d.png"), 4, 3, [1, 2, 3])?;
    let d = load_dataset(DatasetName::ImageFolder, Some(r))?;
    assert_eq!(d.shape.channels, 3);
    assert_eq!(&d.test.source(0)?.pixels[..6], &[1, 2, 3, 1, 2, 3]);
    assert_eq!(&d.train.source(0)?.pixels[..3], &[30, 30, 30]);
    // WebP (lossless) and BMP are read too.
    image::RgbImage::from_pixel(4, 3, image::Rgb([9, 8, 7])).save(r.join("test/ant/e.webp"))?;
    image::RgbImage::from_pixel(4, 3, image::Rgb([6, 5, 4])).save(r.join("test/ant/f.bmp"))?;
    let d = load_dataset(DatasetName::ImageFolder, Some(r))?;
    assert_eq!(&d.test.source(1)?.pixels[..3], &[9, 8, 7]);
    assert_eq!(&d.test.source(2)?.pixels[..3], &[6, 5, 4]);
    Ok(())
}

#[test]
fn a_class_without_test_images_and_no_labels_are_warned_about() -> Result<()> {
    let t = tempfile::tempdir()?;
    let r = t.path();
    save_gray(&r.join("train/ant/a.png"), 4, 4, 10)?;
    save_gray(&r.join("train/bee/b.png"), 4, 4, 20)?;
    save_gray(&r.join("test/bee/c.png"), 4, 4, 30)?;
    let d = load_dataset(DatasetName::ImageFolder, Some(r))?;
    let w = d.warnings(1.0);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("class 0 (ant) has no test image"), "{w:?}");
    let w = d.warnings(0.0);
    assert!(w.iter().any(|m| m.contains("label_fraction = 0")), "{w:?}");
    save_gray(&r.join("test/ant/d.png"), 4, 4, 40)?;
    let d = load_dataset(DatasetName::ImageFolder, Some(r))?;
    assert!(d.warnings(0.5).is_empty());
    Ok(())
}

#[test]
fn mixed_sizes_and_formats_of_real_images_stream_at_the_configured_size() -> Result<()> {
    let t = tempfile::tempdir()?;
    write_fashion_folder(t.path(), 3, 8)?;
    let d = load_dataset_with(DatasetName::ImageFolder, Some(t.path()), &opts(32))?;
    assert_eq!(
        d.shape,
        ImageShape {
            channels: 1,
            height: 32,
            width: 32
        }
    );
    assert_eq!((d.train.len(), d.test.len(), d.num_classes), (24, 24, 3));
    let ins = d.inspect();
    assert!(ins.streamed);
    // Four sizes, 12 images each (train + test).
    let mut sizes: Vec<(u32, u32, usize)> = ins
        .image_sizes
        .iter()
        .map(|s| (s.width, s.height, s.count))
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        vec![(20, 24, 12), (28, 28, 12), (40, 33, 12), (64, 48, 12)]
    );
    // Fashion-MNIST's dark background: a mean well below mid-gray, a real spread.
    assert!(
        d.mean[0] > 0.1 && d.mean[0] < 0.5 && d.std[0] > 0.1,
        "{:?} {:?}",
        d.mean,
        d.std
    );

    // Two views of every image at 32x32, identical for the same seed, different across epochs.
    let aug = Augmenter::new(AugmentConfig::default(), d.shape, &d.mean, &d.std)?;
    let items: Vec<Item> = (0..8u32).map(|i| Item { index: i, label: 0 }).collect();
    let dev = candle_core::Device::Cpu;
    let a = two_view_batch(&d.train, &items, &aug, 7, 0, &dev)?;
    let b = two_view_batch(&d.train, &items, &aug, 7, 0, &dev)?;
    let c = two_view_batch(&d.train, &items, &aug, 7, 1, &dev)?;
    assert_eq!(a.view1.dims(), &[8, 1, 32, 32]);
    let v = |t: &candle_core::Tensor| t.flatten_all().and_then(|x| x.to_vec1::<f32>());
    assert_eq!(v(&a.view1)?, v(&b.view1)?);
    assert_ne!(v(&a.view1)?, v(&c.view1)?);
    assert!(v(&a.view2)?.iter().all(|x| x.is_finite()));
    let (x, y) = eval_batch(&d.test, &[0, 9, 23], &d.mean, &d.std, &dev)?;
    assert_eq!(x.dims(), &[3, 1, 32, 32]);
    assert_eq!(y.to_vec1::<i64>()?, vec![0, 1, 2]);

    // Without image_size the first training image's size is used (class0/000.png: 28x28).
    let d = load_dataset(DatasetName::ImageFolder, Some(t.path()))?;
    assert_eq!((d.shape.height, d.shape.width), (28, 28));
    Ok(())
}

#[test]
fn csv_and_json_lists_val_folders_and_class_lists() -> Result<()> {
    let t = tempfile::tempdir()?;
    let r = t.path();
    for (p, v) in [
        ("img/a1.png", 10),
        ("img/a2.png", 20),
        ("img/b1.png", 30),
        ("img/c1.png", 40),
    ] {
        save_gray(&r.join(p), 5, 6, v)?;
    }
    // Excel's "CSV UTF-8": a byte-order mark and spaces in the header.
    std::fs::write(
        r.join("train.csv"),
        "\u{feff}path, label\nimg/a1.png,cat\nimg/b1.png,dog\nimg/a2.png,cat\n",
    )?;
    std::fs::write(r.join("test.csv"), "img/c1.png,dog\r\n")?;
    let d = load_dataset(DatasetName::ImageFolder, Some(r))?;
    assert_eq!(d.class_names, vec!["cat", "dog"]);
    assert_eq!(d.train.labels(), &[0, 1, 0]);
    assert_eq!(d.train.source(2)?.pixels[0], 20);
    assert_eq!(d.test.labels(), &[1]);

    // JSON with numeric labels; CSV wins when both exist, so remove it.
    std::fs::remove_file(r.join("train.csv"))?;
    std::fs::remove_file(r.join("test.csv"))?;
    std::fs::write(
        r.join("train.json"),
        r#"[{"path": "img/a1.png", "label": 10}, {"path": "img/b1.png", "label": 9}]"#,
    )?;
    std::fs::write(
        r.join("test.json"),
        r#"[{"path": "img/c1.png", "label": 9}]"#,
    )?;
    let d = load_dataset(DatasetName::ImageFolder, Some(r))?;
    assert_eq!(d.class_names, vec!["9", "10"]); // by value, not as text
    assert_eq!(d.train.labels(), &[1, 0]);
    std::fs::write(
        r.join("train.json"),
        r#"[{"path": "img/a1.png", "label": 3}, {"path": "img/b1.png", "label": 7}]"#,
    )?;
    std::fs::write(
        r.join("test.json"),
        r#"[{"path": "img/c1.png", "label": 7}]"#,
    )?;
    let d = load_dataset(DatasetName::ImageFolder, Some(r))?;
    assert_eq!(d.class_names, vec!["3", "7"]);
    std::fs::write(
        r.join("test.json"),
        r#"[{"path": "img/c1.png", "label": 9}]"#,
    )?;
    let e = load_dataset(DatasetName::ImageFolder, Some(r))
        .unwrap_err()
        .to_string();
    assert!(e.contains("test class `9`") && e.contains("c1.png"), "{e}");
    std::fs::write(r.join("test.json"), r#"{"path": "x"}"#)?;
    let e = load_dataset(DatasetName::ImageFolder, Some(r))
        .unwrap_err()
        .to_string();
    assert!(e.contains("test.json") && e.contains("JSON array"), "{e}");
    std::fs::remove_file(r.join("train.json"))?;
    std::fs::remove_file(r.join("test.json"))?;

    // ImageNet's layout: val/ instead of test/, and a class list keeping 2 of 3 classes.
    for c in ["n01", "n02", "n03"] {
        save_gray(&r.join(format!("train/{c}/1.png")), 5, 5, 1)?;
        save_gray(&r.join(format!("val/{c}/1.png")), 5, 5, 2)?;
    }
    std::fs::create_dir_all(r.join("train/n04"))?; // empty, but not listed: never read
    let list = r.join("classes.txt");
    std::fs::write(&list, "# two of three\nn03\nn01\n")?;
    let o = LoadOptions {
        class_list: kaizen_data::options::resolve_class_list(&list.display().to_string())?,
        ..LoadOptions::default()
    };
    let d = load_dataset_with(DatasetName::ImageFolder, Some(r), &o)?;
    assert_eq!(d.class_names, vec!["n01", "n03"]);
    assert_eq!((d.train.len(), d.test.len()), (2, 2));
    std::fs::write(&list, "n01\nn09\n")?;
    let o = LoadOptions {
        class_list: kaizen_data::options::resolve_class_list(&list.display().to_string())?,
        ..LoadOptions::default()
    };
    let e = load_dataset_with(DatasetName::ImageFolder, Some(r), &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("n09") && e.contains("no training image"), "{e}");
    let inet = kaizen_data::options::resolve_class_list("builtin:imagenet100")?;
    assert_eq!((inet.len(), inet[0].as_str()), (100, "n02869837"));
    Ok(())
}

#[test]
fn bad_files_stop_or_are_skipped_and_counted() -> Result<()> {
    let t = tempfile::tempdir()?;
    let r = t.path();
    save_gray(&r.join("train/a/1.png"), 4, 4, 1)?;
    save_gray(&r.join("test/a/1.png"), 4, 4, 1)?;
    std::fs::create_dir_all(r.join("train/b"))?;
    let e = load_dataset(DatasetName::ImageFolder, Some(r)).unwrap_err();
    assert!(
        matches!(&e, DataError::EmptyClass { path } if path == &r.join("train/b")),
        "{e}"
    );
    save_gray(&r.join("train/b/2.png"), 5, 4, 1)?;
    std::fs::write(r.join("train/b/3.png"), b"not a png")?;
    let e = load_dataset(DatasetName::ImageFolder, Some(r)).unwrap_err();
    assert!(
        matches!(&e, DataError::BadFile { path, .. } if path == &r.join("train/b/3.png")),
        "{e}"
    );
    assert!(e.to_string().contains("bad_files"), "{e}");
    assert_eq!(
        e.to_string().matches("3.png").count(),
        1,
        "the path once: {e}"
    );
    let skip = LoadOptions {
        bad_files: BadFiles::Skip,
        ..LoadOptions::default()
    };
    let d = load_dataset_with(DatasetName::ImageFolder, Some(r), &skip)?;
    assert_eq!(d.train.len(), 2);
    assert_eq!(d.report.skipped.len(), 1);
    assert!(d.report.skipped[0].path.ends_with("3.png"));
    assert_eq!(d.inspect().bad_files, d.report.skipped);
    let w = d.warnings(1.0);
    assert!(
        w.iter()
            .any(|m| m.starts_with("1 unreadable file was left out") && m.contains("3.png")),
        "{w:?}"
    );

    // A header that reads but no pixel data: found when a batch needs the image.
    std::fs::write(r.join("train/b/3.png"), png_header_only(4, 4, 0))?;
    let d = load_dataset(DatasetName::ImageFolder, Some(r))?;
    assert_eq!(d.train.len(), 3);
    let aug = Augmenter::new(AugmentConfig::identity(), d.shape, &d.mean, &d.std)?;
    let items = [Item { index: 2, label: 1 }];
    let dev = candle_core::Device::Cpu;
    let e = two_view_batch(&d.train, &items, &aug, 0, 0, &dev).unwrap_err();
    assert!(e.to_string().contains("3.png"), "{e}");
    let d = load_dataset_with(DatasetName::ImageFolder, Some(r), &skip)?;
    let b = two_view_batch(&d.train, &items, &aug, 0, 0, &dev)?;
    assert_eq!(b.view1.dims(), &[1, 1, 4, 4]);
    let failures = d.train.encoded_images().map(|e| e.decode_failures());
    assert_eq!(failures, Some(1));

    // A header declaring more than 256 MiB decoded (12000 x 12000 RGB) is refused by the scan, not mid-training.
    std::fs::write(r.join("train/b/3.png"), png_header_only(12_000, 12_000, 2))?;
    let e = load_dataset(DatasetName::ImageFolder, Some(r))
        .unwrap_err()
        .to_string();
    assert!(e.contains("3.png") && e.contains("MB decoded"), "{e}");

    std::fs::remove_file(r.join("train/b/3.png"))?;
    save_gray(&r.join("test/c/1.png"), 4, 4, 1)?;
    let e = load_dataset(DatasetName::ImageFolder, Some(r))
        .unwrap_err()
        .to_string();
    assert!(e.contains("test class `c`"), "{e}");
    std::fs::remove_dir_all(r.join("test"))?;
    let e = load_dataset(DatasetName::ImageFolder, Some(r)).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }), "{e}");
    Ok(())
}

#[test]
fn the_decoded_cache_gives_the_same_batches_and_is_rebuilt_when_a_file_changes() -> Result<()> {
    let t = tempfile::tempdir()?;
    let data = t.path().join("data");
    write_fashion_folder(&data, 2, 6)?;
    let cache = t.path().join("cache");
    let with = LoadOptions {
        image_size: 24,
        decoded_cache: Some(cache.clone()),
        ..LoadOptions::default()
    };
    let plain = load_dataset_with(DatasetName::ImageFolder, Some(&data), &opts(24))?;
    let cached = load_dataset_with(DatasetName::ImageFolder, Some(&data), &with)?;
    let path = cached
        .train
        .encoded_images()
        .and_then(|e| e.cache_path())
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("no cache"))?;
    assert!(path.is_file());
    let aug = Augmenter::new(
        AugmentConfig::default(),
        plain.shape,
        &plain.mean,
        &plain.std,
    )?;
    let items: Vec<Item> = (0..12u32)
        .map(|i| Item {
            index: i,
            label: -1,
        })
        .collect();
    let dev = candle_core::Device::Cpu;
    let v = |d: &kaizen_data::Dataset| -> Result<Vec<f32>> {
        let b = two_view_batch(&d.train, &items, &aug, 3, 5, &dev)?;
        Ok(b.view2.flatten_all()?.to_vec1::<f32>()?)
    };
    assert_eq!(v(&plain)?, v(&cached)?);
    assert_eq!(
        (plain.mean.clone(), plain.std.clone()),
        (cached.mean.clone(), cached.std.clone())
    );
    // Loading again reuses the file; changing an image gives a new one.
    let again = load_dataset_with(DatasetName::ImageFolder, Some(&data), &with)?;
    assert_eq!(
        again.train.encoded_images().and_then(|e| e.cache_path()),
        Some(path.as_path())
    );
    save_gray(&data.join("train/class0/000.png"), 28, 28, 255)?;
    let changed = load_dataset_with(DatasetName::ImageFolder, Some(&data), &with)?;
    let new_path = changed.train.encoded_images().and_then(|e| e.cache_path());
    assert!(new_path.is_some_and(|p| p != path), "{new_path:?}");
    assert_eq!(changed.train.source(0)?.pixels[0], 255);
    Ok(())
}

#[test]
fn the_shrinking_resize_matches_pil_bilinear() -> Result<()> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize/pil_bilinear.json");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p)?)?;
    let u = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as usize)
                    .collect()
            })
            .unwrap_or_default()
    };
    let src: Vec<u8> = u(&doc["src"]).into_iter().map(|x| x as u8).collect();
    let width = doc["width"].as_u64().unwrap_or(0) as usize;
    let cases = doc["cases"].as_array().cloned().unwrap_or_default();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let (r, o) = (u(&c["rect"]), u(&c["out"]));
        let want = u(&c["pixels"]);
        let shape = ImageShape {
            channels: 3,
            height: o[0],
            width: o[1],
        };
        let mut out = vec![0f32; shape.len()];
        let rect = Rect {
            i: r[0],
            j: r[1],
            h: r[2],
            w: r[3],
        };
        resized_crop(&src, width, shape, rect, false, &mut out);
        let worst = out
            .iter()
            .zip(&want)
            .map(|(a, &b)| (a * 255.0 - b as f32).abs())
            .fold(0f32, f32::max);
        // PIL rounds to 8 bits after each of its two passes.
        assert!(worst <= 1.5, "rect {r:?} -> {o:?}: worst {worst}");
    }
    // The evaluation crop: ImageNet's 256 -> 224 on a 500x375 image keeps a centred 328x328 square.
    let rc = centre_crop_rect(375, 500, 224, 224, 0.875);
    assert_eq!((rc.h, rc.w, rc.i, rc.j), (328, 328, 24, 86));
    Ok(())
}

/// A PNG whose header declares `w x h` 8-bit pixels of PNG colour type `color` (0 gray, 2 RGB) but carries no
/// pixel rows.
fn png_header_only(w: u32, h: u32, color: u8) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        // CRC-32 (IEEE) over type + data, bit by bit: a test needs no table.
        let mut crc = 0xffff_ffffu32;
        for &b in &out[start..] {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        out.extend_from_slice(&(!crc).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, color, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of nothing: the pixel rows are missing.
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn an_image_declaring_a_huge_size_is_refused_before_allocating() -> Result<()> {
    use kaizen_data::image_folder::{decode_image, MAX_IMAGE_SIDE};
    // 100 000 x 100 000 grayscale would be 10 GB decoded; the file is 77 bytes.
    let path = Path::new("huge.png");
    let err = |bytes: Vec<u8>| {
        decode_image(&bytes, path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    // 100 000 x 100 000 grayscale would be 10 GB decoded; the file is 77 bytes.
    let e = err(png_header_only(100_000, 100_000, 0));
    assert!(
        e.contains("huge.png") && e.contains("cannot decode image"),
        "{e}"
    );
    assert!(e.to_lowercase().contains("limit"), "{e}");
    // Sides within MAX_IMAGE_SIDE, but 12000 x 12000 RGB is 432 MB decoded: over our 256 MiB (the image crate's
    // own default, 512 MiB, would let it through).
    const { assert!(12_000 <= MAX_IMAGE_SIDE) };
    let e = err(png_header_only(12_000, 12_000, 2));
    assert!(e.to_lowercase().contains("limit"), "{e}");
    // The same header at a small size is only missing its data: another error.
    let e = err(png_header_only(4, 4, 2));
    assert!(
        e.contains("cannot decode image") && !e.to_lowercase().contains("limit"),
        "{e}"
    );
    Ok(())
}
