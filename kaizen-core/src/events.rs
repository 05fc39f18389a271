//! What the training loop reports while it runs. Libraries never print: the CLI implements
//! [`EventSink`] (progress bars on a TTY, plain lines otherwise) and the run directory's
//! `metrics.jsonl` is written from the same events.

use serde::Serialize;

/// One loss term's value at a step.
#[derive(Debug, Clone, Serialize)]
pub struct TermValue {
    /// `ssl`, `fe_kd`, `cls_ce`, `cls_kd` or `total`.
    pub term: &'static str,
    /// Unweighted value of the term (the total is the weighted sum).
    pub value: f64,
}

/// A training-loop event.
#[derive(Debug, Clone)]
pub enum Event {
    /// A run (one strategy) starts or resumes.
    RunStart {
        /// Strategy name.
        strategy: String,
        /// Number of tasks.
        num_tasks: usize,
        /// Task the run starts at (non-zero when resumed).
        start_task: usize,
        /// Whether this is a resume.
        resumed: bool,
    },
    /// Training of a task starts.
    TaskStart {
        /// Task index.
        task: usize,
        /// Optimiser steps in this task.
        total_steps: usize,
        /// Steps already done (resume).
        done_steps: usize,
        /// Training images of the task.
        images: usize,
    },
    /// One optimiser step finished.
    Step {
        /// Task index.
        task: usize,
        /// Epoch within the task.
        epoch: usize,
        /// Step within the task.
        step: usize,
        /// Steps of the task.
        total_steps: usize,
        /// Learning rate used.
        lr: f64,
        /// Loss terms.
        terms: Vec<TermValue>,
        /// Training images (both views counted once) per second over this step.
        images_per_s: f64,
    },
    /// An epoch finished; mean of each term over its steps.
    EpochEnd {
        /// Task index.
        task: usize,
        /// Epoch within the task.
        epoch: usize,
        /// Mean of each term over the epoch.
        terms: Vec<TermValue>,
        /// Seconds the epoch took.
        seconds: f64,
    },
    /// Evaluation after a task: one row of each protocol's accuracy matrix.
    Eval {
        /// Row index (the task just trained).
        task: usize,
        /// Protocol name.
        protocol: String,
        /// Accuracy per evaluated task (None where the protocol is undefined).
        row: Vec<Option<f64>>,
        /// Seconds the protocol took (its share of the features extraction is in `eval_features`).
        seconds: f64,
    },
    /// Seconds spent per phase (`train`, `eval_features`, `eval_<protocol>`, `checkpoint`, `report`): after each
    /// task (`task` = Some) and for the whole attempt at the end (`task` = None).
    Timing {
        /// The task, or None for the totals of this attempt (since the start or the resume).
        task: Option<usize>,
        /// Phase name and seconds, in a fixed order.
        phases: Vec<(String, f64)>,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Path written.
        path: String,
    },
    /// A task finished (training and evaluation).
    TaskEnd {
        /// Task index.
        task: usize,
    },
    /// A free-form notice for the user (e.g. what a resume skipped).
    Notice(String),
}

/// Receiver of [`Event`]s.
pub trait EventSink {
    /// Handle one event.
    fn event(&mut self, e: &Event);
}

/// A sink that drops everything (tests, library use).
pub struct NullSink;

impl EventSink for NullSink {
    fn event(&mut self, _e: &Event) {}
}
