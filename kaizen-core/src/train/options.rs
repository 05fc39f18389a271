//! How a run is executed and how it ended, and the position counters a checkpoint stores.

use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// How a run is executed (not part of the experiment's identity).
pub struct RunOptions {
    /// Run directory.
    pub dir: PathBuf,
    /// Device to train on.
    pub device: Device,
    /// Set (e.g. by Ctrl-C) to stop at the next step boundary after writing a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Versions and provenance recorded in the manifest (crate versions, git revision).
    pub provenance: serde_json::Value,
    /// Log every N-th step to metrics.jsonl (epoch and eval lines are always written).
    pub log_every: usize,
    /// Stop after this many optimiser steps of the run as if interrupted (tests of resume; None = never).
    pub stop_after_steps: Option<u64>,
    /// Developer tool: write the classifier's inputs of every step and evaluation to this folder
    /// ([`crate::dump`]).
    pub dump_classifier_inputs: Option<PathBuf>,
}

impl RunOptions {
    /// Options for a run in `dir` on `device`: no stop flag set, no provenance, a step line every 10 steps.
    pub fn new(dir: impl Into<PathBuf>, device: Device) -> Self {
        Self {
            dir: dir.into(),
            device,
            stop: Arc::new(AtomicBool::new(false)),
            provenance: serde_json::Value::Null,
            log_every: 10,
            stop_after_steps: None,
            dump_classifier_inputs: None,
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum RunStatus {
    /// Every task trained and evaluated; `summary.json` and `report.md` are written.
    Finished,
    /// Stopped on request; the checkpoint to resume from was written.
    Interrupted {
        /// The checkpoint `kaizen resume` will continue from.
        checkpoint: PathBuf,
    },
}

/// Position in the stream: the next step to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Task (phase) being trained.
    pub task: usize,
    /// Epoch within the task.
    pub epoch: usize,
    /// Step within the epoch.
    pub step_in_epoch: usize,
    /// Optimiser steps over the whole run.
    pub global_step: u64,
    /// Whether the evaluation of `task` is still to do (all its epochs are done).
    pub eval_pending: bool,
}
