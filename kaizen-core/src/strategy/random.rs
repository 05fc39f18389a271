//! `random`: no training; the randomly initialised model is evaluated once (the lower bound, and the b_j
//! of forward transfer), written as one row per protocol.

use super::traits::Strategy;
use crate::eval::EvalPoint;
use crate::terms::{LossTerm, TermSetup};

/// The `random` strategy.
pub struct Random;

impl Strategy for Random {
    fn name(&self) -> &'static str {
        "random"
    }
    fn about(&self) -> &'static str {
        "the initial model, untrained (lower bound)"
    }
    fn terms(&self, _setup: &TermSetup<'_>) -> Vec<Box<dyn LossTerm>> {
        Vec::new()
    }
    fn phases(&self, _num_tasks: usize) -> usize {
        1
    }
    fn trains(&self) -> bool {
        false
    }
    fn eval_point(&self, _phase: usize, _num_tasks: usize) -> EvalPoint {
        EvalPoint::BeforeTraining
    }
    fn single_row(&self) -> bool {
        true
    }
}
