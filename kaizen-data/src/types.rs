//! In-memory dataset types: [`ImageShape`], [`Split`] (u8 HWC pixels + u16 labels), [`Dataset`] (train + test +
//! metadata), the counts [`SplitCounts`] / [`Inspect`], and [`channel_stats`].

use crate::encoded::{EncodedImages, SourceImage};
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

/// One split of a dataset: `len()` images of [`ImageShape`] plus one u16 class label per image.
///
/// The images are either held in memory as u8 pixels in HWC order (channel fastest), contiguous (the IDX and
/// CIFAR readers), or kept encoded and decoded on demand at their own size ([`EncodedImages`]: image folders
/// and parquet files; [`Split::is_streamed`]). [`Split::source`] and [`Split::eval_pixels`] work for both;
/// [`Split::image`] and [`Split::pixels`] only for the in-memory kind.
///
/// Cloning is cheap (the buffers are shared through `Arc`), which lets the prefetch thread own a handle.
#[derive(Clone, Debug)]
pub struct Split {
    shape: ImageShape,
    storage: Storage,
    labels: Arc<[u16]>,
}

#[derive(Clone, Debug)]
enum Storage {
    Memory(Arc<[u8]>),
    /// Image `k` of the split is image `index[k]` of `images`.
    Encoded {
        images: Arc<EncodedImages>,
        index: Arc<[u32]>,
    },
}

impl PartialEq for Split {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape
            && self.labels == other.labels
            && match (&self.storage, &other.storage) {
                (Storage::Memory(a), Storage::Memory(b)) => a == b,
                (
                    Storage::Encoded {
                        images: a,
                        index: i,
                    },
                    Storage::Encoded {
                        images: b,
                        index: j,
                    },
                ) => Arc::ptr_eq(a, b) && i == j,
                _ => false,
            }
    }
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
            storage: Storage::Memory(pixels.into()),
            labels: labels.into(),
        })
    }

    /// A split of encoded images decoded on demand, one label per image.
    pub fn encoded(images: EncodedImages, labels: Vec<u16>) -> Result<Self> {
        if labels.len() != images.len() {
            return Err(DataError::config(
                "labels",
                format!("{} labels for {} images", labels.len(), images.len()),
            ));
        }
        if images.len() > u32::MAX as usize {
            return Err(DataError::config(
                "images",
                format!("{} images, at most {} supported", images.len(), u32::MAX),
            ));
        }
        Ok(Split {
            shape: images.shape(),
            storage: Storage::Encoded {
                index: (0..images.len() as u32).collect(),
                images: Arc::new(images),
            },
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
    /// `true` when the images are kept encoded and decoded on demand (image folders, parquet).
    pub fn is_streamed(&self) -> bool {
        matches!(self.storage, Storage::Encoded { .. })
    }
    /// The encoded images behind a streamed split (`None` for an in-memory one).
    pub fn encoded_images(&self) -> Option<&EncodedImages> {
        match &self.storage {
            Storage::Encoded { images, .. } => Some(images),
            Storage::Memory(_) => None,
        }
    }
    /// The HWC u8 pixels of image `i` (`shape().len()` bytes) of an in-memory split. Panics if `i >= len()`,
    /// like slice indexing, and on a streamed split (use [`Split::source`]).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.len();
        match &self.storage {
            Storage::Memory(px) => &px[i * n..(i + 1) * n],
            Storage::Encoded { .. } => {
                panic!("Split::image on a streamed split; use Split::source")
            }
        }
    }
    /// Image `i` at its own size: borrowed from memory, or decoded (streamed splits; a file that does not
    /// decode is an error naming it, or a black image under `bad_files = skip`). Panics if `i >= len()`.
    pub fn source(&self, i: usize) -> Result<SourceImage<'_>> {
        match &self.storage {
            Storage::Memory(_) => Ok(SourceImage {
                pixels: std::borrow::Cow::Borrowed(self.image(i)),
                height: self.shape.height,
                width: self.shape.width,
            }),
            Storage::Encoded { images, index } => images.decode(index[i] as usize),
        }
    }
    /// The evaluation view of image `i` as HWC f32 in `[0, 1]` (`shape().len()` values into `out`): the pixels
    /// of an in-memory image, the resize + centre crop of a streamed one. Panics if `i >= len()`.
    pub fn eval_pixels(&self, i: usize, out: &mut [f32]) -> Result<()> {
        match &self.storage {
            Storage::Memory(_) => {
                for (o, &p) in out.iter_mut().zip(self.image(i)) {
                    *o = p as f32 * (1.0 / 255.0);
                }
                Ok(())
            }
            Storage::Encoded { images, index } => images.eval_pixels(index[i] as usize, out),
        }
    }
    /// The class of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u16 {
        self.labels[i]
    }
    /// All labels, in dataset order.
    pub fn labels(&self) -> &[u16] {
        &self.labels
    }
    /// All pixels of an in-memory split, `len() * shape().len()` bytes. Panics on a streamed split.
    pub fn pixels(&self) -> &[u8] {
        match &self.storage {
            Storage::Memory(px) => px,
            Storage::Encoded { .. } => panic!("Split::pixels on a streamed split"),
        }
    }
    /// The image shape (for a streamed split: the size every image is brought to).
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
        let labels: Arc<[u16]> = indices.iter().map(|&i| self.labels[i]).collect();
        let storage = match &self.storage {
            Storage::Memory(_) => {
                let mut pixels = Vec::with_capacity(indices.len() * self.shape.len());
                for &i in indices {
                    pixels.extend_from_slice(self.image(i));
                }
                Storage::Memory(pixels.into())
            }
            Storage::Encoded { images, index } => Storage::Encoded {
                images: images.clone(),
                index: indices.iter().map(|&i| index[i]).collect(),
            },
        };
        Split {
            shape: self.shape,
            storage,
            labels,
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

/// What `kaizen data inspect` prints: `{"train": SplitCounts, "test": SplitCounts, "streamed", "image_sizes",
/// "bad_files"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspect {
    /// Training split counts.
    pub train: SplitCounts,
    /// Test split counts.
    pub test: SplitCounts,
    /// `true` when the images are decoded on demand (image folders, parquet).
    pub streamed: bool,
    /// The image sizes found on disk, most common first (in-memory datasets: their one size).
    pub image_sizes: Vec<SizeCount>,
    /// Files left out (`data.bad_files = skip`) or found bad by a full decode, with the reason.
    pub bad_files: Vec<BadFile>,
}

/// How many images (train + test) have one size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeCount {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Number of images of this size.
    pub count: usize,
}

/// A file that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadFile {
    /// The file (or `file.parquet row N`).
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What a streamed reader found while listing and scanning (empty for in-memory readers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The image sizes found, most common first.
    pub image_sizes: Vec<SizeCount>,
    /// Files left out because they could not be read (`data.bad_files = skip`).
    pub skipped: Vec<BadFile>,
}

impl LoadReport {
    /// Counts sizes into [`SizeCount`]s, most common first (ties: smaller first).
    pub fn count_sizes(sizes: impl IntoIterator<Item = (u32, u32)>) -> Vec<SizeCount> {
        let mut m = std::collections::BTreeMap::<(u32, u32), usize>::new();
        for s in sizes {
            *m.entry(s).or_insert(0) += 1;
        }
        let mut v: Vec<SizeCount> = m
            .into_iter()
            .map(|((width, height), count)| SizeCount {
                width,
                height,
                count,
            })
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.count));
        v
    }
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
    /// What a streamed reader found (image sizes, skipped files); empty for in-memory readers.
    pub report: LoadReport,
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
            report: LoadReport::default(),
        })
    }

    /// What makes some results meaningless without being an error, as sentences: a class with no training or no
    /// test image, files left out as unreadable, and (`label_fraction == 0`) no labels at all.
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
        if let Some(first) = self.report.skipped.first() {
            let n = self.report.skipped.len();
            w.push(format!(
                "{n} unreadable {} left out (data.bad_files = skip), e.g. {}: {}; the run's manifest.json lists \
                 them (`kaizen data inspect` too)",
                if n == 1 { "file was" } else { "files were" },
                first.path,
                first.reason
            ));
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

    /// Per-split and per-class counts, the image sizes and the files left out.
    pub fn inspect(&self) -> Inspect {
        let streamed = self.train.is_streamed() || self.test.is_streamed();
        let image_sizes = if self.report.image_sizes.is_empty() {
            vec![SizeCount {
                width: self.shape.width as u32,
                height: self.shape.height as u32,
                count: self.train.len() + self.test.len(),
            }]
        } else {
            self.report.image_sizes.clone()
        };
        Inspect {
            train: self.train.counts(self.num_classes),
            test: self.test.counts(self.num_classes),
            streamed,
            image_sizes,
            bad_files: self.report.skipped.clone(),
        }
    }
}

/// Images [`channel_stats`] reads from a streamed split (evenly spaced; decoding them all could take minutes).
pub const STATS_SAMPLE: usize = 2048;

/// Per-channel mean and population std of a split's pixels, in `[0, 1]` units: exact over every pixel of an
/// in-memory split; over the evaluation views of [`STATS_SAMPLE`] evenly spaced images of a streamed one
/// (images that fail to decode are left out). The std is floored at `1/255` so normalisation never divides by
/// zero (a constant channel).
pub fn channel_stats(split: &Split) -> (Vec<f32>, Vec<f32>) {
    let c = split.shape().channels;
    if split.is_streamed() {
        return sampled_stats(split);
    }
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

fn sampled_stats(split: &Split) -> (Vec<f32>, Vec<f32>) {
    use rayon::prelude::*;
    let shape = split.shape();
    let c = shape.channels;
    let n = split.len();
    let k = n.min(STATS_SAMPLE);
    let picks: Vec<usize> = (0..k).map(|j| j * n / k.max(1)).collect();
    let sums: Vec<(Vec<f64>, Vec<f64>)> = picks
        .par_iter()
        .filter_map(|&i| {
            let mut buf = vec![0f32; shape.len()];
            split.eval_pixels(i, &mut buf).ok()?;
            let (mut s, mut q) = (vec![0f64; c], vec![0f64; c]);
            for px in buf.chunks_exact(c) {
                for ch in 0..c {
                    s[ch] += px[ch] as f64;
                    q[ch] += px[ch] as f64 * px[ch] as f64;
                }
            }
            Some((s, q))
        })
        .collect();
    let (mut s, mut q) = (vec![0f64; c], vec![0f64; c]);
    for (a, b) in &sums {
        for ch in 0..c {
            s[ch] += a[ch];
            q[ch] += b[ch];
        }
    }
    let px = (sums.len() * shape.height * shape.width).max(1) as f64;
    let mean: Vec<f64> = s.iter().map(|v| v / px).collect();
    let sq: Vec<f64> = q.iter().map(|v| v / px).collect();
    finish_stats(&mean, &sq)
}

/// Mean and floored std from per-channel `E[x]` and `E[x^2]` (in `[0, 1]` units).
fn finish_stats(mean: &[f64], sq: &[f64]) -> (Vec<f32>, Vec<f32>) {
    let std = mean
        .iter()
        .zip(sq)
        .map(|(m, q)| ((q - m * m).max(0.0).sqrt().max(1.0 / 255.0)) as f32)
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), std)
}
