//! `joint`: one phase on the images of every task at once (the upper bound); its single evaluation is the
//! model after the last task, written as one row per protocol.

use super::traits::Strategy;
use crate::eval::EvalPoint;
use crate::terms::{ClassifierCe, LossTerm, Ssl, TermSetup};
use std::ops::Range;

/// The `joint` strategy.
pub struct Joint;

impl Strategy for Joint {
    fn name(&self) -> &'static str {
        "joint"
    }
    fn about(&self) -> &'static str {
        "SSL + CE on all tasks at once (upper bound)"
    }
    fn terms(&self, setup: &TermSetup<'_>) -> Vec<Box<dyn LossTerm>> {
        vec![
            Box::new(Ssl::new(setup)),
            Box::new(ClassifierCe::new(setup)),
        ]
    }
    fn phases(&self, _num_tasks: usize) -> usize {
        1
    }
    fn phase_tasks(&self, _phase: usize, num_tasks: usize) -> Range<usize> {
        0..num_tasks
    }
    fn eval_point(&self, _phase: usize, num_tasks: usize) -> EvalPoint {
        EvalPoint::AfterTask(num_tasks - 1)
    }
    fn single_row(&self) -> bool {
        true
    }
}
