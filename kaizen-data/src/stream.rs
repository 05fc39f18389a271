//! The class-incremental task stream and per-task label availability.

use crate::error::{DataError, Result};
use crate::rng::{choose_prefix, rng_for, shuffle, RngStream};
use crate::types::Split;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How classes are ordered before being cut into tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassOrder {
    /// A seeded permutation of `0..num_classes` (Fisher–Yates on `rng_for(seed, ClassOrder, 0, 0, 0)`),
    /// the counterpart of the PyTorch originals' `randperm`.
    Seeded(u64),
    /// An explicit order; must be a permutation of `0..num_classes`.
    Explicit(Vec<u16>),
}

/// The serialisable description of a stream, recorded by every run: the realised class order and the
/// classes of each task (`tasks[t]` = the classes of task `t`, in class-order order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDescription {
    /// The realised class order.
    pub class_order: Vec<u16>,
    /// The classes of each task.
    pub tasks: Vec<Vec<u16>>,
}

/// A class-incremental stream: `num_classes` classes cut, in `class_order`, into `num_tasks` tasks of
/// `num_classes / num_tasks` classes each.
///
/// Serialises as its [`StreamDescription`]; deserialising validates it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StreamDescription", into = "StreamDescription")]
pub struct TaskStream {
    class_order: Vec<u16>,
    per_task: usize,
    task_of: Vec<usize>,
}

impl TaskStream {
    /// Builds the stream. Errors if `num_tasks == 0`, `num_classes == 0`, `num_classes` is not divisible by
    /// `num_tasks`, `num_classes > 65536`, or an explicit order is not a permutation of `0..num_classes`.
    pub fn new(num_classes: usize, num_tasks: usize, order: ClassOrder) -> Result<Self> {
        let bad = |reason: String| DataError::InvalidStream { reason };
        if num_classes == 0 || num_tasks == 0 {
            return Err(bad(format!("need at least one class and one task (got {num_classes} classes, {num_tasks} tasks)")));
        }
        if num_classes > u16::MAX as usize + 1 {
            return Err(bad(format!(
                "{num_classes} classes; at most 65536 supported"
            )));
        }
        if !num_classes.is_multiple_of(num_tasks) {
            return Err(bad(format!(
                "{num_classes} classes cannot be split evenly into {num_tasks} tasks (choose a divisor of {num_classes})"
            )));
        }
        let class_order = match order {
            ClassOrder::Seeded(seed) => {
                let mut v: Vec<u16> = (0..num_classes).map(|c| c as u16).collect();
                shuffle(&mut v, &mut rng_for(seed, RngStream::ClassOrder, 0, 0, 0));
                v
            }
            ClassOrder::Explicit(v) => {
                if v.len() != num_classes {
                    return Err(bad(format!("explicit class order has {} entries, the dataset has {num_classes} classes", v.len())));
                }
                let mut seen = vec![false; num_classes];
                for &c in &v {
                    match seen.get_mut(c as usize) {
                        None => {
                            return Err(bad(format!(
                            "explicit class order names class {c}, valid ids are 0..{num_classes}"
                        )))
                        }
                        Some(s) if *s => {
                            return Err(bad(format!("explicit class order names class {c} twice")))
                        }
                        Some(s) => *s = true,
                    }
                }
                v
            }
        };
        let per_task = num_classes / num_tasks;
        let mut task_of = vec![0usize; num_classes];
        for (pos, &c) in class_order.iter().enumerate() {
            task_of[c as usize] = pos / per_task;
        }
        Ok(TaskStream {
            class_order,
            per_task,
            task_of,
        })
    }

    /// Number of tasks.
    pub fn num_tasks(&self) -> usize {
        self.class_order.len() / self.per_task
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_order.len()
    }
    /// The realised class order.
    pub fn class_order(&self) -> &[u16] {
        &self.class_order
    }
    /// The classes of task `t` (a slice of the class order). Panics if `t >= num_tasks()`.
    pub fn task_classes(&self, t: usize) -> &[u16] {
        &self.class_order[t * self.per_task..(t + 1) * self.per_task]
    }
    /// The task that introduces class `c`, or `None` for an unknown class.
    pub fn task_of_class(&self, c: u16) -> Option<usize> {
        self.task_of.get(c as usize).copied()
    }
    /// The indices of `split`'s images whose class belongs to task `t`, in dataset order.
    pub fn indices(&self, split: &Split, t: usize) -> Vec<u32> {
        split
            .labels()
            .iter()
            .enumerate()
            .filter(|(_, &l)| self.task_of_class(l) == Some(t))
            .map(|(i, _)| i as u32)
            .collect()
    }
    /// The indices of `split`'s images of tasks `0..=t` (the "seen so far" test set), in dataset order.
    pub fn indices_up_to(&self, split: &Split, t: usize) -> Vec<u32> {
        split
            .labels()
            .iter()
            .enumerate()
            .filter(|(_, &l)| self.task_of_class(l).is_some_and(|k| k <= t))
            .map(|(i, _)| i as u32)
            .collect()
    }
    /// The serialisable description (class order + classes of each task).
    pub fn describe(&self) -> StreamDescription {
        StreamDescription {
            class_order: self.class_order.clone(),
            tasks: (0..self.num_tasks())
                .map(|t| self.task_classes(t).to_vec())
                .collect(),
        }
    }
}

impl TryFrom<StreamDescription> for TaskStream {
    type Error = DataError;
    fn try_from(d: StreamDescription) -> Result<Self> {
        let s = TaskStream::new(
            d.class_order.len(),
            d.tasks.len(),
            ClassOrder::Explicit(d.class_order),
        )?;
        if s.describe().tasks != d.tasks {
            return Err(DataError::InvalidStream {
                reason: "task lists do not match the class order".into(),
            });
        }
        Ok(s)
    }
}

impl From<TaskStream> for StreamDescription {
    fn from(s: TaskStream) -> Self {
        s.describe()
    }
}

/// Groups positions of `indices` by the label of the image they point at (classes in ascending order,
/// positions in order). Out-of-range indices are skipped.
pub(crate) fn positions_by_class(split: &Split, indices: &[u32]) -> BTreeMap<u16, Vec<usize>> {
    let mut m: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (pos, &i) in indices.iter().enumerate() {
        if (i as usize) < split.len() {
            m.entry(split.label(i as usize)).or_default().push(pos);
        }
    }
    m
}

/// Seeded choice of which training images of task `task` keep their label.
///
/// For each class `c` among the images `indices` point at (`n_c` images), exactly `round(fraction * n_c)`
/// of them are labelled (so the labelled set is class-balanced in proportion), chosen by a partial
/// Fisher–Yates on `rng_for(seed, LabelFraction, task, c, 0)`. Returns a mask aligned with `indices`.
/// `fraction` is clamped to `[0, 1]` (NaN counts as 0): 1.0 labels everything, 0.0 nothing.
/// Indices out of range for `split` are never labelled.
pub fn labelled_mask(
    split: &Split,
    indices: &[u32],
    fraction: f64,
    seed: u64,
    task: usize,
) -> Vec<bool> {
    let f = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let mut mask = vec![false; indices.len()];
    for (c, mut pos) in positions_by_class(split, indices) {
        let k = (f * pos.len() as f64).round() as usize;
        choose_prefix(
            &mut pos,
            k,
            &mut rng_for(seed, RngStream::LabelFraction, task as u64, c as u64, 0),
        );
        for &p in &pos[..k.min(pos.len())] {
            mask[p] = true;
        }
    }
    mask
}
