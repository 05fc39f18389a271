//! Labelled replay memory: a class-balanced, seeded sample of each past task's labelled images.

use crate::rng::{choose_prefix, rng_for, shuffle, RngStream};
use crate::stream::positions_by_class;
use crate::types::Split;
use serde::{Deserialize, Serialize};

/// How many labelled images of a task enter the memory.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaySize {
    /// A fraction of the task (Kaizen's default is 0.01): `round(f * n)` where `n` is the number of
    /// training images of the task, i.e. the images of `split` whose class occurs among the labelled indices
    /// passed to [`ReplayMemory::add_task`]; capped at the number of labelled images. Clamped to `[0, 1]`.
    Fraction(f64),
    /// A fixed number of images per task (at most the number available).
    Count(usize),
}

/// The replay memory: dataset indices (into the training split) of stored labelled images.
///
/// Its whole state is [`ReplayMemory::indices`], so a checkpoint stores it as one u32 tensor and restores it
/// with [`ReplayMemory::from_indices`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayMemory {
    indices: Vec<u32>,
}

impl ReplayMemory {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds task `task`'s sample.
    ///
    /// The budget `n` (from `size`) is split over the classes present in `labelled_indices` as evenly as
    /// possible (water-filling: a class with fewer images than its share gives the rest to the others; when
    /// the budget does not divide evenly, the classes that get one extra are chosen with
    /// `rng_for(seed, ReplayFill, task, u64::MAX, 0)`). So class counts differ by at most one wherever
    /// availability allows. Within class `c` the images are a partial Fisher–Yates sample with
    /// `rng_for(seed, ReplayFill, task, c, 0)`. The chosen indices are appended in ascending order.
    pub fn add_task(
        &mut self,
        split: &Split,
        labelled_indices: &[u32],
        size: ReplaySize,
        seed: u64,
        task: usize,
    ) {
        let by_class = positions_by_class(split, labelled_indices);
        let total: usize = by_class.values().map(|v| v.len()).sum();
        let n = match size {
            ReplaySize::Fraction(f) => {
                let f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
                let task_size = split
                    .labels()
                    .iter()
                    .filter(|l| by_class.contains_key(l))
                    .count();
                ((f * task_size as f64).round() as usize).min(total)
            }
            ReplaySize::Count(c) => c.min(total),
        };
        if n == 0 {
            return;
        }
        // Water-filling quotas.
        let avail: Vec<usize> = by_class.values().map(|v| v.len()).collect();
        let mut quota = vec![0usize; avail.len()];
        let mut left = n;
        loop {
            let open: Vec<usize> = (0..avail.len()).filter(|&k| quota[k] < avail[k]).collect();
            if left == 0 || open.is_empty() {
                break;
            }
            let share = left / open.len();
            if share == 0 {
                // Fewer images left than open classes: a seeded choice of which classes get one more.
                let mut o = open;
                choose_prefix(
                    &mut o,
                    left,
                    &mut rng_for(seed, RngStream::ReplayFill, task as u64, u64::MAX, 0),
                );
                for &k in &o[..left] {
                    quota[k] += 1;
                }
                break;
            }
            for &k in &open {
                let add = share.min(avail[k] - quota[k]);
                quota[k] += add;
                left -= add;
            }
        }
        let mut chosen = Vec::with_capacity(n);
        for ((&c, pos), &q) in by_class.iter().zip(quota.iter()) {
            let mut p = pos.clone();
            choose_prefix(
                &mut p,
                q,
                &mut rng_for(seed, RngStream::ReplayFill, task as u64, c as u64, 0),
            );
            chosen.extend(p[..q].iter().map(|&k| labelled_indices[k]));
        }
        chosen.sort_unstable();
        self.indices.extend(chosen);
    }

    /// A replay mini-batch of `min(n, len())` distinct stored indices (no repeats within a call), chosen with
    /// `rng_for(seed, ReplaySample, task, step, 0)`. Empty when the memory is empty.
    pub fn sample(&self, n: usize, seed: u64, task: usize, step: u64) -> Vec<u32> {
        let mut rng = rng_for(seed, RngStream::ReplaySample, task as u64, step, 0);
        let mut v = self.indices.clone();
        if n >= v.len() {
            shuffle(&mut v, &mut rng);
            return v;
        }
        choose_prefix(&mut v, n, &mut rng);
        v.truncate(n);
        v
    }

    /// Every stored index, task by task (ascending within a task).
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }
    /// Restores a memory from [`ReplayMemory::indices`].
    pub fn from_indices(v: Vec<u32>) -> Self {
        ReplayMemory { indices: v }
    }
    /// `true` when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
    /// Number of stored indices.
    pub fn len(&self) -> usize {
        self.indices.len()
    }
}
