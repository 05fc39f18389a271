//! Batches: seeded epoch shuffling, two-view augmented training batches (rayon), a background prefetcher,
//! and the deterministic eval transform.

use crate::augment::{normalisation, write_normalised_chw, Augmenter};
use crate::error::{DataError, Result};
use crate::rng::{rng_for, shuffle, RngStream};
use crate::types::Split;
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

/// One training item: dataset index and the label the learner may see (`-1` = unlabelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Item {
    /// Index into the training split.
    pub index: u32,
    /// The visible label, or `-1` when the image is unlabelled.
    pub label: i64,
}

/// A two-view training batch.
#[derive(Clone, Debug)]
pub struct Batch {
    /// First views, `(B, C, H, W)` f32, normalised.
    pub view1: Tensor,
    /// Second views, `(B, C, H, W)` f32, normalised.
    pub view2: Tensor,
    /// `(B,)` i64 visible labels, `-1` = unlabelled.
    pub labels: Tensor,
    /// The same labels on the host.
    pub label_vec: Vec<i64>,
    /// The dataset indices of the batch, in batch order.
    pub indices: Vec<u32>,
}

/// The items of a batch of dataset indices: the true label of `split` where `is_labelled(index)`, else `-1`.
/// Panics if an index is out of range for `split` (use indices produced from the same split).
pub fn items_for(split: &Split, batch: &[u32], is_labelled: impl Fn(u32) -> bool) -> Vec<Item> {
    batch
        .iter()
        .map(|&i| Item {
            index: i,
            label: if is_labelled(i) {
                split.label(i as usize) as i64
            } else {
                -1
            },
        })
        .collect()
}

/// The augmentation key of an epoch: `(task << 32) | epoch`. Use it as `epoch_key` so that every
/// `(task, epoch)` sees fresh, reproducible augmentations.
pub fn epoch_key(task: usize, epoch: usize) -> u64 {
    ((task as u64) << 32) | (epoch as u64 & 0xFFFF_FFFF)
}

fn check_indices<'a>(split: &Split, idx: impl Iterator<Item = &'a u32>) -> Result<()> {
    for &i in idx {
        if i as usize >= split.len() {
            return Err(DataError::IndexOutOfRange {
                index: i,
                len: split.len(),
            });
        }
    }
    Ok(())
}

/// Two augmented views of each item (see [`crate::augment`]); view `v` of item `k` uses the generator
/// `rng_for(seed, Augment, epoch_key, items[k].index, v)`, so the batch is bit-identical on any thread
/// count. Work is spread over the current rayon pool. Errors on an index out of range or a shape mismatch
/// between `split` and `aug`.
pub fn two_view_batch(
    split: &Split,
    items: &[Item],
    aug: &Augmenter,
    seed: u64,
    epoch_key: u64,
    device: &Device,
) -> Result<Batch> {
    let shape = split.shape();
    if aug.shape() != shape {
        return Err(DataError::config(
            "augmenter",
            format!(
                "built for {} images, the split has {} (CxHxW)",
                aug.shape(),
                shape
            ),
        ));
    }
    check_indices(split, items.iter().map(|it| &it.index))?;
    let n = shape.len();
    let b = items.len();
    let mut v1 = vec![0f32; b * n];
    let mut v2 = vec![0f32; b * n];
    v1.par_chunks_mut(n)
        .zip(v2.par_chunks_mut(n))
        .zip(items.par_iter())
        .try_for_each(|((o1, o2), it)| -> Result<()> {
            let src = split.source(it.index as usize)?;
            let (h, w) = (src.height, src.width);
            aug.augment_sized(&src.pixels, h, w, seed, epoch_key, it.index, 0, o1);
            aug.augment_sized(&src.pixels, h, w, seed, epoch_key, it.index, 1, o2);
            Ok(())
        })?;
    let dims = (b, shape.channels, shape.height, shape.width);
    let label_vec: Vec<i64> = items.iter().map(|it| it.label).collect();
    Ok(Batch {
        view1: Tensor::from_vec(v1, dims, device)?,
        view2: Tensor::from_vec(v2, dims, device)?,
        labels: Tensor::from_vec(label_vec.clone(), b, device)?,
        label_vec,
        indices: items.iter().map(|it| it.index).collect(),
    })
}

/// Deterministic eval transform (normalisation; for streamed splits first the resize + centre crop of
/// [`Split::eval_pixels`]): `(B, C, H, W)` f32 images and `(B,)` i64 labels
/// for `indices`.
pub fn eval_batch(
    split: &Split,
    indices: &[u32],
    mean: &[f32],
    std: &[f32],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let shape = split.shape();
    let inv_std = normalisation(shape, mean, std)?;
    check_indices(split, indices.iter())?;
    let n = shape.len();
    let mut out = vec![0f32; indices.len() * n];
    out.par_chunks_mut(n)
        .zip(indices.par_iter())
        .try_for_each(|(o, &i)| -> Result<()> {
            let mut buf = vec![0f32; n];
            split.eval_pixels(i as usize, &mut buf)?;
            write_normalised_chw(&buf, shape, mean, &inv_std, o);
            Ok(())
        })?;
    let labels: Vec<i64> = indices
        .iter()
        .map(|&i| split.label(i as usize) as i64)
        .collect();
    let b = indices.len();
    Ok((
        Tensor::from_vec(out, (b, shape.channels, shape.height, shape.width), device)?,
        Tensor::from_vec(labels, b, device)?,
    ))
}

/// Shuffles `indices` with `rng_for(seed, Shuffle, task, epoch, 0)` (Fisher–Yates) and cuts them into
/// batches of `batch_size` (the last one shorter unless `drop_last`). `batch_size == 0` gives no batch.
pub fn shuffled_batches(
    indices: &[u32],
    batch_size: usize,
    seed: u64,
    task: usize,
    epoch: usize,
    drop_last: bool,
) -> Vec<Vec<u32>> {
    if batch_size == 0 {
        return Vec::new();
    }
    let mut v = indices.to_vec();
    shuffle(
        &mut v,
        &mut rng_for(seed, RngStream::Shuffle, task as u64, epoch as u64, 0),
    );
    v.chunks(batch_size)
        .filter(|c| !drop_last || c.len() == batch_size)
        .map(|c| c.to_vec())
        .collect()
}

/// Background-thread prefetcher: builds the [`two_view_batch`] of each entry of `batches`, in order, up to
/// `ahead` batches before they are consumed (a bounded channel). Dropping it early stops the worker: the
/// worker's next send fails and it exits; `drop` then joins it.
pub struct Prefetcher {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Prefetcher {
    /// Starts the worker. The split and augmenter are cloned (the split's buffers are shared, not copied).
    /// `ahead` is clamped to at least 1.
    pub fn new(
        split: &Split,
        batches: Vec<Vec<Item>>,
        aug: &Augmenter,
        seed: u64,
        epoch_key: u64,
        device: &Device,
        ahead: usize,
    ) -> Self {
        let (tx, rx) = sync_channel(ahead.max(1));
        let (split, aug, device) = (split.clone(), aug.clone(), device.clone());
        let remaining = batches.len();
        let handle = std::thread::Builder::new()
            .name("kaizen-prefetch".into())
            .spawn(move || {
                for items in batches {
                    let b = two_view_batch(&split, &items, &aug, seed, epoch_key, &device);
                    if tx.send(b).is_err() {
                        return; // consumer dropped: stop early
                    }
                }
            });
        match handle {
            Ok(h) => Prefetcher {
                rx: Some(rx),
                handle: Some(h),
                remaining,
            },
            Err(e) => {
                // No thread: report the failure once through the iterator.
                let (tx, rx) = sync_channel(1);
                let _ = tx.send(Err(DataError::Worker {
                    reason: format!("cannot spawn the prefetch thread: {e}"),
                }));
                Prefetcher {
                    rx: Some(rx),
                    handle: None,
                    remaining: 1,
                }
            }
        }
    }
}

impl Iterator for Prefetcher {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let rx = self.rx.as_ref()?;
        match rx.recv() {
            Ok(b) => {
                self.remaining -= 1;
                Some(b)
            }
            Err(_) => {
                // The worker ended before sending every batch: it panicked.
                self.remaining = 0;
                let reason = match self.handle.take().map(|h| h.join()) {
                    Some(Err(p)) => p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into()),
                    _ => "the worker exited early".into(),
                };
                Some(Err(DataError::Worker { reason }))
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        drop(self.rx.take()); // unblocks a worker waiting on a full channel
        if let Some(h) = self.handle.take() {
            let _ = h.join(); // a worker panic was already reported (or is irrelevant once dropped)
        }
    }
}
