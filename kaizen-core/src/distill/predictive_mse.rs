//! `predictive_mse`: mean over the views of `mse(p_v, o_v)` (paired with VICReg; default weight 25, since
//! its MSE is small next to the VICReg loss it accompanies).

use super::traits::{check_inputs, per_view_mean};
use super::traits::{DistillParams, Distiller, DistillerFactory};
use crate::loss;
use candle_core::{Result, Tensor};

/// The `predictive_mse` factory.
pub struct PredictiveMseFactory;

impl DistillerFactory for PredictiveMseFactory {
    fn name(&self) -> &'static str {
        "predictive_mse"
    }
    fn default_weight(&self) -> f64 {
        25.0
    }
    fn build(&self, _params: &DistillParams) -> Box<dyn Distiller> {
        Box::new(PredictiveMseDistiller)
    }
}

/// `predictive_mse`: mean over views of [`loss::mse`]`(p_v, o_v)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PredictiveMseDistiller;

impl Distiller for PredictiveMseDistiller {
    fn name(&self) -> &str {
        "predictive_mse"
    }
    fn loss(&self, p1: &Tensor, p2: &Tensor, o1: &Tensor, o2: &Tensor) -> Result<Tensor> {
        check_inputs(self.name(), p1, p2, o1, o2)?;
        per_view_mean(p1, p2, o1, o2, loss::mse)
    }
}
