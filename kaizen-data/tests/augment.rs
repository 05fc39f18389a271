//! Augmentation and batching: determinism on 1 vs 2 threads, shapes, value ranges, each operation's
//! effect, config validation, the prefetcher and the eval transform.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use kaizen_data::augment::{color, crop};
use kaizen_data::rng::{rng_for, RngStream};
use kaizen_data::{
    eval_batch, load_dataset, two_view_batch, AugmentConfig, Augmenter, Batch, DataError, Dataset,
    DatasetName, Item, Prefetcher, Split,
};
use std::path::Path;

fn cifar() -> Result<Dataset> {
    Ok(load_dataset(
        DatasetName::Cifar10,
        Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")),
    )?)
}

fn mini() -> Result<Dataset> {
    Ok(load_dataset(DatasetName::FashionMnistMini, None)?)
}

fn items(n: u32, step: u32) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            index: (i * step) % 20,
            label: if i % 3 == 0 { -1 } else { i as i64 },
        })
        .collect()
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn batch_in_pool(
    threads: usize,
    split: &Split,
    it: &[Item],
    aug: &Augmenter,
    key: u64,
) -> Result<Batch> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    Ok(pool.install(|| two_view_batch(split, it, aug, 42, key, &Device::Cpu))?)
}

#[test]
fn two_view_batches_are_bit_identical_on_1_and_2_threads() -> Result<()> {
    for d in [cifar()?, mini()?] {
        let aug = Augmenter::new(AugmentConfig::default(), d.shape, &d.mean, &d.std)?;
        let it = items(40, 7);
        let a = batch_in_pool(1, &d.train, &it, &aug, 3)?;
        let b = batch_in_pool(2, &d.train, &it, &aug, 3)?;
        assert_eq!(bits(&flat(&a.view1)?), bits(&flat(&b.view1)?), "{}", d.name);
        assert_eq!(bits(&flat(&a.view2)?), bits(&flat(&b.view2)?), "{}", d.name);
        // A sample's views do not depend on its batch neighbours either.
        let single = batch_in_pool(2, &d.train, &it[5..6], &aug, 3)?;
        assert_eq!(
            bits(&flat(&single.view1)?),
            bits(&flat(&a.view1.narrow(0, 5, 1)?)?)
        );
        // Another epoch key gives other views; the two views differ.
        let c = batch_in_pool(2, &d.train, &it, &aug, 4)?;
        assert_ne!(bits(&flat(&a.view1)?), bits(&flat(&c.view1)?));
        assert_ne!(bits(&flat(&a.view1)?), bits(&flat(&a.view2)?));
    }
    Ok(())
}

#[test]
fn batch_shapes_labels_and_value_ranges() -> Result<()> {
    for d in [cifar()?, mini()?] {
        let aug = Augmenter::new(AugmentConfig::default(), d.shape, &d.mean, &d.std)?;
        let it = items(16, 3);
        let b = two_view_batch(&d.train, &it, &aug, 1, 0, &Device::Cpu)?;
        let dims = [16, d.shape.channels, d.shape.height, d.shape.width];
        assert_eq!(b.view1.dims(), &dims);
        assert_eq!(b.view2.dims(), &dims);
        assert_eq!(b.view1.dtype(), DType::F32);
        assert_eq!(b.labels.dtype(), DType::I64);
        assert_eq!(b.labels.to_vec1::<i64>()?, b.label_vec);
        assert_eq!(b.label_vec[0], -1);
        assert_eq!(b.label_vec[1], 1);
        assert_eq!(b.indices, it.iter().map(|i| i.index).collect::<Vec<_>>());
        let hw = d.shape.height * d.shape.width;
        for v in [&b.view1, &b.view2] {
            let x = flat(v)?;
            for (k, val) in x.iter().enumerate() {
                let ch = (k / hw) % d.shape.channels;
                let (lo, hi) = (
                    (0.0 - d.mean[ch]) / d.std[ch],
                    (1.0 - d.mean[ch]) / d.std[ch],
                );
                assert!(
                    val.is_finite() && *val >= lo - 1e-4 && *val <= hi + 1e-4,
                    "{val} outside [{lo}, {hi}]"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn identity_config_equals_the_eval_transform_and_flip_mirrors() -> Result<()> {
    let d = cifar()?;
    let idx: Vec<u32> = (0..20).collect();
    let it: Vec<Item> = idx.iter().map(|&i| Item { index: i, label: 0 }).collect();
    let (ev, lab) = eval_batch(&d.train, &idx, &d.mean, &d.std, &Device::Cpu)?;
    assert_eq!(
        lab.to_vec1::<i64>()?,
        d.train
            .labels()
            .iter()
            .map(|&l| l as i64)
            .collect::<Vec<_>>()
    );
    // The eval transform is (pixel / 255 - mean) / std in CHW order.
    let e = flat(&ev)?;
    let px = d.train.image(0);
    let want = (px[3 * 5 + 1] as f32 / 255.0 - d.mean[1]) / d.std[1]; // pixel 5, green
    assert!((e[1024 + 5] - want).abs() < 1e-6);

    let aug = Augmenter::new(AugmentConfig::identity(), d.shape, &d.mean, &d.std)?;
    let b = two_view_batch(&d.train, &it, &aug, 9, 9, &Device::Cpu)?;
    assert_eq!(bits(&flat(&b.view1)?), bits(&e));
    assert_eq!(bits(&flat(&b.view2)?), bits(&e));

    let flip = Augmenter::new(
        AugmentConfig {
            flip_p: 1.0,
            ..AugmentConfig::identity()
        },
        d.shape,
        &d.mean,
        &d.std,
    )?;
    let f = two_view_batch(&d.train, &it, &flip, 9, 9, &Device::Cpu)?;
    assert_eq!(bits(&flat(&f.view1)?), bits(&flat(&ev.flip_last()?)?));
    Ok(())
}

trait FlipLast {
    fn flip_last(&self) -> candle_core::Result<Tensor>;
}
impl FlipLast for Tensor {
    /// Mirror along the last (width) axis with an index_select.
    fn flip_last(&self) -> candle_core::Result<Tensor> {
        let w = self.dim(3)?;
        let rev: Vec<u32> = (0..w as u32).rev().collect();
        self.index_select(&Tensor::new(rev.as_slice(), self.device())?, 3)
    }
}

#[test]
fn grayscale_and_solarize_do_what_they_say() -> Result<()> {
    let d = cifar()?;
    let it: Vec<Item> = (0..20).map(|i| Item { index: i, label: 0 }).collect();
    let g = Augmenter::new(
        AugmentConfig {
            grayscale_p: 1.0,
            ..AugmentConfig::identity()
        },
        d.shape,
        &d.mean,
        &d.std,
    )?;
    let b = two_view_batch(&d.train, &it, &g, 0, 0, &Device::Cpu)?;
    let x = flat(&b.view1)?;
    for k in 0..20 * 1024 {
        let (img, p) = (k / 1024, k % 1024);
        let v: Vec<f32> = (0..3)
            .map(|c| x[img * 3072 + c * 1024 + p] * d.std[c] + d.mean[c])
            .collect();
        assert!(
            (v[0] - v[1]).abs() < 1e-5 && (v[1] - v[2]).abs() < 1e-5,
            "{v:?}"
        );
    }
    let s = Augmenter::new(
        AugmentConfig {
            solarize_p: [0.0, 1.0],
            ..AugmentConfig::identity()
        },
        d.shape,
        &d.mean,
        &d.std,
    )?;
    let b = two_view_batch(&d.train, &it, &s, 0, 0, &Device::Cpu)?;
    let (ev, _) = eval_batch(
        &d.train,
        &(0..20).collect::<Vec<_>>(),
        &d.mean,
        &d.std,
        &Device::Cpu,
    )?;
    assert_eq!(
        bits(&flat(&b.view1)?),
        bits(&flat(&ev)?),
        "view 1 has solarize_p 0"
    );
    let x = flat(&b.view2)?;
    let mut changed = 0;
    for (k, (&a, &e)) in x.iter().zip(flat(&ev)?.iter()).enumerate() {
        let c = (k / 1024) % 3;
        let v = a * d.std[c] + d.mean[c];
        assert!(v <= 128.0 / 255.0 + 1e-5, "solarised value {v}");
        changed += usize::from(a != e);
    }
    assert!(changed > 1000, "bright pixels must be inverted");
    Ok(())
}

#[test]
fn color_operations() {
    // Hue: a third of a turn maps pure red to pure green; zero shift is the identity.
    let mut px = vec![1.0f32, 0.0, 0.0, 0.2, 0.5, 0.9];
    color::hue(&mut px, 0.0);
    assert!(
        px.iter()
            .zip([1.0f32, 0.0, 0.0, 0.2, 0.5, 0.9])
            .all(|(a, b)| (a - b).abs() < 1e-6),
        "{px:?}"
    );
    let mut red = vec![1.0f32, 0.0, 0.0];
    color::hue(&mut red, 1.0 / 3.0);
    assert!(
        (red[0]).abs() < 1e-5 && (red[1] - 1.0).abs() < 1e-5 && red[2].abs() < 1e-5,
        "{red:?}"
    );
    // Contrast 0 collapses to the mean; brightness clamps; saturation 0 = luma.
    let mut g = vec![0.0f32, 0.5, 1.0];
    color::contrast(&mut g, 1, 0.0);
    assert!(g.iter().all(|v| (v - 0.5).abs() < 1e-6));
    let mut b = vec![0.8f32, 0.2];
    color::brightness(&mut b, 1.4);
    assert_eq!(b[0], 1.0);
    assert!((b[1] - 0.28).abs() < 1e-6, "{b:?}");
    let mut s = vec![1.0f32, 0.0, 0.0];
    color::saturation(&mut s, 0.0);
    assert!(s.iter().all(|v| (v - 0.299).abs() < 1e-6), "{s:?}");
    let mut sol = vec![0.2f32, 0.6];
    color::solarize(&mut sol);
    assert_eq!(sol[0], 0.2);
    assert!((sol[1] - 0.4).abs() < 1e-6, "{sol:?}");
}

#[test]
fn crops_stay_inside_the_image_and_scale_bounds() {
    for k in 0..500u64 {
        let mut rng = rng_for(7, RngStream::Augment, 0, k, 0);
        let r = crop::sample_crop(32, 28, 0.08, 1.0, &mut rng);
        assert!(
            r.h >= 1 && r.w >= 1 && r.i + r.h <= 32 && r.j + r.w <= 28,
            "{r:?}"
        );
        let area = (r.h * r.w) as f64 / (32.0 * 28.0);
        assert!((0.05..=1.0 + 1e-9).contains(&area), "{r:?}");
    }
    let mut rng = rng_for(7, RngStream::Augment, 0, 0, 0);
    assert_eq!(
        crop::sample_crop(32, 32, 1.0, 1.0, &mut rng),
        crop::Rect {
            i: 0,
            j: 0,
            h: 32,
            w: 32
        }
    );
}

#[test]
fn grayscale_datasets_only_get_brightness_and_contrast() -> Result<()> {
    let cfg = AugmentConfig::default();
    let mut rng = rng_for(1, RngStream::Augment, 0, 0, 0);
    let j = color::Jitter::sample(&cfg, 1, &mut rng);
    assert_eq!(j.order.len(), 2);
    assert_eq!((j.saturation, j.hue), (1.0, 0.0));
    assert!(j.brightness >= 0.6 && j.brightness <= 1.4 && j.contrast >= 0.6 && j.contrast <= 1.4);
    let j3 = color::Jitter::sample(&cfg, 3, &mut rng);
    assert_eq!(j3.order.len(), 4);
    assert!(j3.hue.abs() <= 0.1 && j3.saturation >= 0.8 && j3.saturation <= 1.2);
    Ok(())
}

#[test]
fn config_serde_defaults_and_validation() -> Result<()> {
    let d: AugmentConfig = serde_json::from_str(r#"{"flip_p": 0.25}"#)?;
    assert_eq!(
        d,
        AugmentConfig {
            flip_p: 0.25,
            ..AugmentConfig::default()
        }
    );
    assert_eq!(d.solarize_p, [0.0, 0.2]);
    assert!(
        serde_json::from_str::<AugmentConfig>(r#"{"flip": 0.25}"#).is_err(),
        "unknown key rejected"
    );
    let back: AugmentConfig =
        serde_json::from_str(&serde_json::to_string(&AugmentConfig::default())?)?;
    assert_eq!(back, AugmentConfig::default());
    let shape = kaizen_data::ImageShape {
        channels: 1,
        height: 4,
        width: 4,
    };
    let e = Augmenter::new(
        AugmentConfig {
            jitter_p: 1.5,
            ..AugmentConfig::default()
        },
        shape,
        &[0.5],
        &[0.5],
    )
    .unwrap_err();
    assert!(
        matches!(&e, DataError::InvalidConfig { key, .. } if key == "jitter_p"),
        "{e}"
    );
    let e = Augmenter::new(
        AugmentConfig {
            crop_min_scale: 0.0,
            ..AugmentConfig::default()
        },
        shape,
        &[0.5],
        &[0.5],
    )
    .unwrap_err();
    assert!(
        matches!(&e, DataError::InvalidConfig { key, .. } if key == "crop_min_scale"),
        "{e}"
    );
    let e = Augmenter::new(AugmentConfig::default(), shape, &[0.5, 0.5], &[0.5]).unwrap_err();
    assert!(matches!(e, DataError::InvalidConfig { .. }));
    let e = Augmenter::new(AugmentConfig::default(), shape, &[0.5], &[0.0]).unwrap_err();
    assert!(
        matches!(&e, DataError::InvalidConfig { key, .. } if key == "std"),
        "{e}"
    );
    Ok(())
}

#[test]
fn bad_indices_and_mismatched_shapes_are_errors() -> Result<()> {
    let d = cifar()?;
    let aug = Augmenter::new(AugmentConfig::default(), d.shape, &d.mean, &d.std)?;
    let e = two_view_batch(
        &d.train,
        &[Item {
            index: 20,
            label: 0,
        }],
        &aug,
        0,
        0,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        DataError::IndexOutOfRange { index: 20, len: 20 }
    ));
    let e = eval_batch(&d.test, &[0, 99], &d.mean, &d.std, &Device::Cpu).unwrap_err();
    assert!(matches!(e, DataError::IndexOutOfRange { index: 99, .. }));
    let m = mini()?;
    let e = two_view_batch(
        &m.train,
        &[Item { index: 0, label: 0 }],
        &aug,
        0,
        0,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(e, DataError::InvalidConfig { .. }));
    Ok(())
}

#[test]
fn prefetcher_yields_the_same_batches_in_order_and_stops_when_dropped() -> Result<()> {
    let d = cifar()?;
    let aug = Augmenter::new(AugmentConfig::default(), d.shape, &d.mean, &d.std)?;
    let batches: Vec<Vec<Item>> = (0..6u32).map(|b| items(8, b + 1)).collect();
    let got: Vec<Batch> = Prefetcher::new(&d.train, batches.clone(), &aug, 5, 11, &Device::Cpu, 2)
        .collect::<Result<_, _>>()?;
    assert_eq!(got.len(), 6);
    for (b, items) in got.iter().zip(&batches) {
        let want = two_view_batch(&d.train, items, &aug, 5, 11, &Device::Cpu)?;
        assert_eq!(bits(&flat(&b.view1)?), bits(&flat(&want.view1)?));
        assert_eq!(b.indices, want.indices);
    }
    // Dropped after one batch while the worker is blocked on the full channel: must not hang.
    let many: Vec<Vec<Item>> = (0..50u32).map(|b| items(8, b + 1)).collect();
    let mut p = Prefetcher::new(&d.train, many, &aug, 5, 11, &Device::Cpu, 1);
    assert!(p.next().is_some_and(|b| b.is_ok()));
    drop(p);
    // An out-of-range index surfaces as an Err item, not a panic.
    let mut p = Prefetcher::new(
        &d.train,
        vec![vec![Item {
            index: 999,
            label: 0,
        }]],
        &aug,
        5,
        11,
        &Device::Cpu,
        1,
    );
    assert!(matches!(
        p.next(),
        Some(Err(DataError::IndexOutOfRange { .. }))
    ));
    assert!(p.next().is_none());
    Ok(())
}

/// torchvision's `_rgb2hsv` / `_hsv2rgb` written piecewise (the sector `i = floor(6H)` picks the channel
/// pattern), as an independent reference for the branch-free `color::hue`.
fn hue_reference(p: [f32; 3], shift: f32) -> [f32; 3] {
    let [r, g, b] = p;
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    if cr == 0.0 {
        return p;
    }
    let s = cr / maxc;
    let (rc, gc, bc) = ((maxc - r) / cr, (maxc - g) / cr, (maxc - b) / cr);
    let hh = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let h = ((hh / 6.0).rem_euclid(1.0) + shift).rem_euclid(1.0);
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let v = maxc;
    let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as i32 % 6 {
        0 => [v, t, pp],
        1 => [q, v, pp],
        2 => [pp, v, t],
        3 => [pp, q, v],
        4 => [t, pp, v],
        _ => [v, pp, q],
    }
}

#[test]
fn hue_matches_the_piecewise_torchvision_formulas() {
    use rand::Rng;
    let mut rng = rng_for(3, RngStream::Augment, 1, 2, 3);
    for &shift in &[-0.1f32, -0.03, 0.0, 0.05, 0.1, 0.5] {
        for _ in 0..2000 {
            let p = [
                rng.random::<f32>(),
                rng.random::<f32>(),
                rng.random::<f32>(),
            ];
            let mut got = p.to_vec();
            color::hue(&mut got, shift);
            let want = hue_reference(p, shift);
            for k in 0..3 {
                assert!(
                    (got[k] - want[k]).abs() < 2e-5,
                    "pixel {p:?} shift {shift}: {got:?} vs {want:?}"
                );
            }
        }
    }
}

#[test]
fn gaussian_blur_is_normalised_keeps_constants_and_smooths_real_images() -> Result<()> {
    use kaizen_data::augment::blur;
    let k = blur::kernel(1.5, 100);
    assert_eq!(k.len(), 2 * 5 + 1); // radius ceil(3 * 1.5) = 5
    assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!((0..k.len()).all(|i| k[i] == k[k.len() - 1 - i]));
    assert_eq!(blur::kernel(4.0, 3).len(), 7); // capped by the image
    let mut flat_img = vec![0.25f32; 6 * 5 * 3];
    blur::gaussian_blur(&mut flat_img, 6, 5, 3, 2.0);
    assert!(flat_img.iter().all(|&v| (v - 0.25).abs() < 1e-6));

    // On real CIFAR images: the blurred view (everything else the identity) varies less between neighbours.
    let d = cifar()?;
    let tv = |v: &[f32], w: usize| -> f32 {
        v.windows(2)
            .enumerate()
            .filter(|(i, _)| (i + 1) % w != 0)
            .map(|(_, p)| (p[1] - p[0]).abs())
            .sum()
    };
    let plain = Augmenter::new(AugmentConfig::identity(), d.shape, &d.mean, &d.std)?;
    let blurred = Augmenter::new(
        AugmentConfig {
            blur_p: [1.0, 1.0],
            blur_sigma: [1.5, 1.5],
            ..AugmentConfig::identity()
        },
        d.shape,
        &d.mean,
        &d.std,
    )?;
    let n = d.shape.len();
    let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
    for i in 0..5u32 {
        plain.augment(d.test.image(i as usize), 1, 0, i, 0, &mut a);
        blurred.augment(d.test.image(i as usize), 1, 0, i, 0, &mut b);
        let (ta, tb) = (tv(&a, 32), tv(&b, 32));
        assert!(tb < 0.7 * ta, "image {i}: {tb} vs {ta}");
        let (ma, mb) = (
            a.iter().sum::<f32>() / n as f32,
            b.iter().sum::<f32>() / n as f32,
        );
        assert!((ma - mb).abs() < 0.02, "blur keeps the mean: {ma} vs {mb}");
    }
    // Probability 0 draws nothing: the default pipeline's views are those of a config without the keys.
    let cfg: AugmentConfig = serde_json::from_str(r#"{"blur_p": [0.0, 0.0]}"#)?;
    assert_eq!(cfg, AugmentConfig::default());
    for bad in [
        r#"{"blur_p": [1.5, 0.0]}"#,
        r#"{"blur_sigma": [0.0, 1.0]}"#,
        r#"{"blur_sigma": [2.0, 1.0]}"#,
    ] {
        let c: AugmentConfig = serde_json::from_str(bad)?;
        assert!(c.validate().is_err(), "{bad}");
    }
    Ok(())
}
