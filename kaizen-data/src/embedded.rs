//! The built-in `fashion-mnist-mini` dataset, embedded in the binary.
//!
//! Built by `scripts/make_fmnist_mini.py` from the official Fashion-MNIST files (Debian package
//! `dataset-fashion-mnist`): the first 1000 training and the first 200 test images of each class, in their
//! original order (10,000 train + 2,000 test, 28x28 grayscale, 10 classes), stored as gzipped IDX files in
//! `kaizen-data/data/fashion-mnist-mini/`. Fashion-MNIST is MIT-licensed by Zalando SE; see
//! [`FASHION_MNIST_LICENSE`].

use crate::error::Result;
use crate::idx::{split_from_idx, FASHION_MNIST_CLASSES};
use crate::types::Dataset;
use std::path::Path;

/// The licence notice of the embedded Fashion-MNIST subset (MIT, Zalando SE).
pub const FASHION_MNIST_LICENSE: &str = include_str!("../data/fashion-mnist-mini/LICENSE");

const TRAIN_IMAGES: &[u8] = include_bytes!("../data/fashion-mnist-mini/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../data/fashion-mnist-mini/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../data/fashion-mnist-mini/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../data/fashion-mnist-mini/t10k-labels-idx1-ubyte.gz");

/// Images per class in the embedded training split.
pub const MINI_TRAIN_PER_CLASS: usize = 1000;
/// Images per class in the embedded test split.
pub const MINI_TEST_PER_CLASS: usize = 200;

/// Decodes the embedded subset (about 0.1 s). Errors only if the embedded bytes were corrupted at build time.
pub fn fashion_mnist_mini() -> Result<Dataset> {
    let p = |n: &str| Path::new("<embedded fashion-mnist-mini>").join(n);
    let train = split_from_idx(
        TRAIN_IMAGES.to_vec(),
        &p("train-images-idx3-ubyte.gz"),
        TRAIN_LABELS.to_vec(),
        &p("train-labels-idx1-ubyte.gz"),
        10,
    )?;
    let test = split_from_idx(
        TEST_IMAGES.to_vec(),
        &p("t10k-images-idx3-ubyte.gz"),
        TEST_LABELS.to_vec(),
        &p("t10k-labels-idx1-ubyte.gz"),
        10,
    )?;
    let names = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    Dataset::from_splits("fashion-mnist-mini", names, train, test, &p(""))
}
