//! `predictive`: mean over the views of BYOL's loss `byol(p_v, o_v)` (paired with BYOL and SimSiam).

use super::traits::{check_inputs, per_view_mean};
use super::traits::{DistillParams, Distiller, DistillerFactory};
use crate::loss;
use candle_core::{Result, Tensor};

/// The `predictive` factory.
pub struct PredictiveFactory;

impl DistillerFactory for PredictiveFactory {
    fn name(&self) -> &'static str {
        "predictive"
    }
    fn build(&self, _params: &DistillParams) -> Box<dyn Distiller> {
        Box::new(PredictiveDistiller)
    }
}

/// `predictive`: mean over views of [`loss::byol`]`(p_v, o_v)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PredictiveDistiller;

impl Distiller for PredictiveDistiller {
    fn name(&self) -> &str {
        "predictive"
    }
    fn loss(&self, p1: &Tensor, p2: &Tensor, o1: &Tensor, o2: &Tensor) -> Result<Tensor> {
        check_inputs(self.name(), p1, p2, o1, o2)?;
        per_view_mean(p1, p2, o1, o2, loss::byol)
    }
}
