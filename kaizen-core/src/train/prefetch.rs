//! The batches of one epoch: the seeded batch order, the visible labels, the replay draw, one augmentation
//! key per step, and a background thread that builds the two-view batches two ahead of the trainer.

use candle_core::Device;
use kaizen_data::{shuffled_batches, two_view_batch, Augmenter, Batch, Item, ReplayMemory, Split};
use std::collections::HashMap;

/// What an epoch's batch plan reads.
pub(super) struct EpochPlan<'a> {
    /// The training split.
    pub split: &'a Split,
    /// The phase's training indices.
    pub indices: &'a [u32],
    /// Label visible to the trainer per index (-1 = unlabelled).
    pub visible: &'a HashMap<u32, i64>,
    /// Replay memory and the replay images per batch (0 = none).
    pub replay: (&'a ReplayMemory, usize),
    /// Current-task images per batch.
    pub batch_size: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// The run's seed.
    pub seed: u64,
}

/// Augmentation key of step `s` of epoch `e` of task `t` (distinct for every step of a run).
pub(super) fn step_key(t: usize, e: usize, s: usize) -> u64 {
    ((t as u64) << 48) | ((e as u64) << 24) | s as u64
}

impl EpochPlan<'_> {
    /// The items of each step of epoch `e` of task `t` from step `first` on, with their augmentation keys.
    pub(super) fn batches(&self, t: usize, e: usize, first: usize) -> Vec<(Vec<Item>, u64)> {
        let drop_last = self.indices.len() >= self.batch_size;
        let batches = shuffled_batches(self.indices, self.batch_size, self.seed, t, e, drop_last);
        let (replay, replay_batch) = self.replay;
        batches
            .iter()
            .enumerate()
            .skip(first)
            .map(|(s, b)| {
                let mut items: Vec<Item> = b
                    .iter()
                    .map(|&i| Item {
                        index: i,
                        label: self.visible[&i],
                    })
                    .collect();
                if replay_batch > 0 {
                    let key = (e * self.steps_per_epoch + s) as u64;
                    for i in replay.sample(replay_batch, self.seed, t, key) {
                        items.push(Item {
                            index: i,
                            label: i64::from(self.split.label(i as usize)),
                        });
                    }
                }
                // One augmentation key per step: a replayed image drawn at two steps gets two views.
                (items, step_key(t, e, s))
            })
            .collect()
    }
}

/// Build the batches on a background thread, two ahead of the trainer; each with its own augmentation key.
/// Dropping the iterator early stops the thread at its next send.
pub(super) fn prefetch(
    split: &Split,
    batches: Vec<(Vec<Item>, u64)>,
    aug: &Augmenter,
    seed: u64,
    device: &Device,
) -> impl Iterator<Item = Result<Batch, kaizen_data::DataError>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    let (split, aug, device) = (split.clone(), aug.clone(), device.clone());
    std::thread::spawn(move || {
        for (items, key) in batches {
            if tx
                .send(two_view_batch(&split, &items, &aug, seed, key, &device))
                .is_err()
            {
                return;
            }
        }
    });
    rx.into_iter()
}
