//! A user-defined dataset plugged into the trainer: built in code from real images (the built-in
//! Fashion-MNIST subset, 2x2 average-pooled to 14x14, its first six classes), registered under a name
//! with `Registry::with_dataset`, and trained as three tasks of two classes. The per-class caps of the
//! config (`data.train_per_class`, `data.test_per_class`) apply to it like to the built-in datasets.

use anyhow::Result;
use kaizen_core::config::ExperimentConfig;
use kaizen_core::{CoreError, Registry};
use kaizen_data::{DataError, Dataset, ImageShape, Split};
use kaizen_examples::{out_dir, smoke_config, train_and_report};
use std::path::Path;

const CLASSES: usize = 6;

/// The images of `split` whose label is below [`CLASSES`], each 2x2 average-pooled.
fn pooled(split: &Split) -> Result<Split, DataError> {
    let s = split.shape();
    let (h, w) = (s.height / 2, s.width / 2);
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, &label) in split.labels().iter().enumerate() {
        if usize::from(label) >= CLASSES {
            continue;
        }
        let img = split.image(i);
        for y in 0..h {
            for x in 0..w {
                let at = |dy: usize, dx: usize| u32::from(img[(2 * y + dy) * s.width + 2 * x + dx]);
                pixels.push(((at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1) + 2) / 4) as u8);
            }
        }
        labels.push(label);
    }
    let shape = ImageShape {
        channels: 1,
        height: h,
        width: w,
    };
    Split::new(shape, pixels, labels)
}

/// The dataset loader the registry calls for `data.dataset = "fmnist-pooled6"` (its signature is the
/// registry's, whose error type is large).
#[allow(clippy::result_large_err)]
fn load(_cfg: &ExperimentConfig) -> Result<Dataset, CoreError> {
    let source = kaizen_data::embedded::fashion_mnist_mini()?;
    let names = source.class_names[..CLASSES].to_vec();
    let (train, test) = (pooled(&source.train)?, pooled(&source.test)?);
    Ok(Dataset::from_splits(
        "fmnist-pooled6",
        names,
        train,
        test,
        Path::new("the built-in Fashion-MNIST subset, pooled in code"),
    )?)
}

fn main() -> Result<()> {
    let registry = Registry::builtin().with_dataset("fmnist-pooled6", load);
    let mut cfg = smoke_config();
    cfg.data.dataset = "fmnist-pooled6".into();
    cfg.data.num_tasks = 3;
    train_and_report(&registry, cfg, &out_dir("example-custom-dataset"))
}
