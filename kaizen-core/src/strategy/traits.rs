//! The [`Strategy`] trait.

use crate::eval::EvalPoint;
use crate::terms::{LossTerm, TermSetup};
use std::ops::Range;

/// A continual-learning strategy: what a run trains, on which images, with which terms, and how its
/// evaluations map onto the accuracy matrices. Defaults describe a plain class-incremental strategy: one
/// phase per task, trained on that task's images, evaluated after each task, no replay.
pub trait Strategy: Send + Sync {
    /// Registry name (config value `strategy = "..."`).
    fn name(&self) -> &'static str;
    /// One line for help texts.
    fn about(&self) -> &'static str;
    /// The loss terms summed at every step, in order (a term of weight 0 is skipped).
    fn terms(&self, setup: &TermSetup<'_>) -> Vec<Box<dyn LossTerm>>;
    /// Training phases over a stream of `num_tasks` tasks (each ends with one evaluation).
    fn phases(&self, num_tasks: usize) -> usize {
        num_tasks
    }
    /// Whether the phases train at all (false: only the initial model is evaluated).
    fn trains(&self) -> bool {
        true
    }
    /// The tasks whose training images phase `phase` trains on (a contiguous range of task indices).
    fn phase_tasks(&self, phase: usize, _num_tasks: usize) -> Range<usize> {
        phase..phase + 1
    }
    /// Whether the strategy keeps a labelled replay memory (filled after each phase, sampled into every
    /// later batch).
    fn replay(&self) -> bool {
        false
    }
    /// Which model state phase `phase`'s evaluation measures.
    fn eval_point(&self, phase: usize, _num_tasks: usize) -> EvalPoint {
        EvalPoint::AfterTask(phase)
    }
    /// Whether the results are one row per protocol (`<strategy>_accuracy_<protocol>.csv`) rather than
    /// accuracy matrices (upper and lower bounds).
    fn single_row(&self) -> bool {
        false
    }
}
