//! In-memory dataset types: [`ImageShape`], [`Split`] (u8 HWC pixels + u16 labels), [`Dataset`] (train + test +
//! metadata), the counts [`SplitCounts`] / [`Inspect`], and [`channel_stats`].

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// The shape of one image: `channels` (1 = grayscale, 3 = RGB), `height`, `width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageShape {
    /// Number of channels (1 or 3).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl std::fmt::Display for ImageShape {
    /// `CxHxW`, e.g. `1x28x28`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

impl ImageShape {
    /// Bytes (= values) per image: `channels * height * width`.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// `true` when an image has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One split of a dataset, held in memory: `len()` images of [`ImageShape`], stored as u8 pixels in HWC order
/// (channel fastest), contiguous, plus one u16 class label per image.
///
/// Cloning is cheap (the buffers are shared through `Arc`), which lets the prefetch thread own a handle.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    shape: ImageShape,
    pixels: Arc<[u8]>,
    labels: Arc<[u16]>,
}

impl Split {
    /// Builds a split; `pixels.len()` must equal `labels.len() * shape.len()` and the shape must be non-empty.
    pub fn new(shape: ImageShape, pixels: Vec<u8>, labels: Vec<u16>) -> Result<Self> {
        if shape.is_empty() || !matches!(shape.channels, 1 | 3) {
            return Err(DataError::config(
                "shape",
                format!("unsupported image shape {shape} (CxHxW; need 1 or 3 channels, non-empty)"),
            ));
        }
        if pixels.len() != labels.len() * shape.len() {
            return Err(DataError::config(
                "pixels",
                format!(
                    "{} pixel bytes for {} images of {} bytes",
                    pixels.len(),
                    labels.len(),
                    shape.len()
                ),
            ));
        }
        Ok(Split {
            shape,
            pixels: pixels.into(),
            labels: labels.into(),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// `true` when the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The HWC u8 pixels of image `i` (`shape().len()` bytes). Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.len();
        &self.pixels[i * n..(i + 1) * n]
    }
    /// The class of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u16 {
        self.labels[i]
    }
    /// All labels, in dataset order.
    pub fn labels(&self) -> &[u16] {
        &self.labels
    }
    /// All pixels, `len() * shape().len()` bytes.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }
    /// The image shape.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }
    /// Images per class id, a vector of length `num_classes` (labels `>= num_classes` are not counted).
    pub fn per_class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut c = vec![0usize; num_classes];
        for &l in self.labels.iter() {
            if let Some(x) = c.get_mut(l as usize) {
                *x += 1;
            }
        }
        c
    }
    /// The first `n` images of each class, original order kept.
    pub fn cap_per_class(&self, n: usize) -> Split {
        let mut seen = std::collections::HashMap::<u16, usize>::new();
        let keep: Vec<usize> = (0..self.len())
            .filter(|&i| {
                let k = seen.entry(self.labels[i]).or_insert(0);
                *k += 1;
                *k <= n
            })
            .collect();
        self.select(&keep)
    }
    /// The images at `indices` (in that order). Panics if an index is `>= len()`.
    pub fn select(&self, indices: &[usize]) -> Split {
        let mut pixels = Vec::with_capacity(indices.len() * self.shape.len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Split {
            shape: self.shape,
            pixels: pixels.into(),
            labels: labels.into(),
        }
    }
    /// Per-split counts for [`Dataset::inspect`].
    pub fn counts(&self, num_classes: usize) -> SplitCounts {
        let per_class = self.per_class_counts(num_classes);
        SplitCounts {
            images: self.len(),
            classes: per_class.iter().filter(|&&c| c > 0).count(),
            per_class,
        }
    }
}

/// Image counts of one split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    /// Number of images.
    pub images: usize,
    /// Number of classes with at least one image.
    pub classes: usize,
    /// Images per class, indexed by class id (length = the dataset's `num_classes`).
    pub per_class: Vec<usize>,
}

/// What `kaizen data inspect` prints: `{"train": SplitCounts, "test": SplitCounts}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspect {
    /// Training split counts.
    pub train: SplitCounts,
    /// Test split counts.
    pub test: SplitCounts,
}

/// A loaded dataset: both splits plus metadata.
///
/// Invariants (checked by the loaders): both splits have `shape`; every label is `< num_classes`;
/// `class_names.len() == num_classes`; `mean`/`std` have `shape.channels` entries.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The dataset's name (its CLI name).
    pub name: String,
    /// Shape of every image.
    pub shape: ImageShape,
    /// Number of classes; labels are `0..num_classes`.
    pub num_classes: usize,
    /// Human-readable class names, indexed by class id.
    pub class_names: Vec<String>,
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
    /// Per-channel mean of the training pixels, in `[0, 1]` units (pixel / 255).
    pub mean: Vec<f32>,
    /// Per-channel population standard deviation of the training pixels, in `[0, 1]` units (> 0).
    pub std: Vec<f32>,
}

impl Dataset {
    /// Builds a dataset from its splits, validating labels and shapes and computing `mean`/`std` from
    /// the training split. `source` names the file/folder reported if a label is out of range.
    pub fn from_splits(
        name: &str,
        class_names: Vec<String>,
        train: Split,
        test: Split,
        source: &Path,
    ) -> Result<Dataset> {
        let num_classes = class_names.len();
        if train.shape() != test.shape() {
            return Err(DataError::bad(
                source,
                format!(
                    "train images are {} but test images are {} (CxHxW)",
                    train.shape(),
                    test.shape()
                ),
            ));
        }
        for (split, s) in [("train", &train), ("test", &test)] {
            if s.is_empty() {
                return Err(DataError::bad(
                    source,
                    format!("the {split} split holds no image"),
                ));
            }
            if let Some((i, &l)) = s
                .labels()
                .iter()
                .enumerate()
                .find(|(_, &l)| l as usize >= num_classes)
            {
                return Err(DataError::bad(
                    source,
                    format!(
                        "{split} image {i} has label {l}, out of range for {num_classes} classes"
                    ),
                ));
            }
        }
        let (mean, std) = channel_stats(&train);
        Ok(Dataset {
            name: name.to_string(),
            shape: train.shape(),
            num_classes,
            class_names,
            train,
            test,
            mean,
            std,
        })
    }

    /// What makes some results meaningless without being an error, as sentences: a class with no training or no
    /// test image, and (`label_fraction == 0`) no labels at all.
    pub fn warnings(&self, label_fraction: f64) -> Vec<String> {
        let mut w = Vec::new();
        for (split, s, effect) in [
            (
                "training",
                &self.train,
                "train on fewer classes than they list",
            ),
            (
                "test",
                &self.test,
                "are evaluated on fewer classes (a task without test images scores 0)",
            ),
        ] {
            let empty: Vec<String> = s
                .per_class_counts(self.num_classes)
                .iter()
                .enumerate()
                .filter(|(_, n)| **n == 0)
                .map(|(k, _)| match self.class_names.get(k) {
                    Some(name) if name != &k.to_string() => format!("{k} ({name})"),
                    _ => k.to_string(),
                })
                .collect();
            if !empty.is_empty() {
                w.push(format!(
                    "{} {} no {split} image: their tasks {effect}",
                    if empty.len() == 1 { "class" } else { "classes" },
                    empty.join(", ") + if empty.len() == 1 { " has" } else { " have" }
                ));
            }
        }
        if label_fraction == 0.0 {
            w.push(
                "data.label_fraction = 0: no image keeps its label, so the classifier learns nothing (its accuracy \
                 is chance) and the labelled replay memory stays empty; the knn and linear protocols still measure \
                 the features"
                    .into(),
            );
        }
        w
    }

    /// Per-split and per-class counts.
    pub fn inspect(&self) -> Inspect {
        Inspect {
            train: self.train.counts(self.num_classes),
            test: self.test.counts(self.num_classes),
        }
    }
}

/// Exact per-channel mean and population std of a split's pixels, in `[0, 1]` units. The std is floored at
/// `1/255` so normalisation never divides by zero (a constant channel).
pub fn channel_stats(split: &Split) -> (Vec<f32>, Vec<f32>) {
    let c = split.shape().channels;
    let mut sum = vec![0u64; c];
    let mut sq = vec![0u64; c];
    for px in split.pixels().chunks_exact(c) {
        for ch in 0..c {
            let v = px[ch] as u64;
            sum[ch] += v;
            sq[ch] += v * v;
        }
    }
    let n = (split.pixels().len() / c).max(1) as f64;
    let mut mean = Vec::with_capacity(c);
    let mut std = Vec::with_capacity(c);
    for ch in 0..c {
        let m = sum[ch] as f64 / n;
        let var = (sq[ch] as f64 / n - m * m).max(0.0);
        mean.push((m / 255.0) as f32);
        std.push(((var.sqrt() / 255.0).max(1.0 / 255.0)) as f32);
    }
    (mean, std)
}
