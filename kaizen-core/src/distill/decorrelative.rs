//! `decorrelative`: mean over the views of the Barlow Twins loss between h(z_v) and the frozen projection
//! (paired with Barlow Twins), lambda `loss.barlow_lambda`, scale `loss.barlow_scale`. Needs N >= 2.

use super::traits::{check_inputs, per_view_mean};
use super::traits::{DistillParams, Distiller, DistillerFactory};
use crate::loss;
use candle_core::{Result, Tensor};

/// The `decorrelative` factory.
pub struct DecorrelativeFactory;

impl DistillerFactory for DecorrelativeFactory {
    fn name(&self) -> &'static str {
        "decorrelative"
    }
    fn build(&self, params: &DistillParams) -> Box<dyn Distiller> {
        Box::new(DecorrelativeDistiller {
            lambda: params.barlow_lambda,
            scale: params.barlow_scale,
        })
    }
}

/// `decorrelative`: mean over views of [`loss::barlow_twins`]`(p_v, o_v, lambda, scale)`.
#[derive(Debug, Clone, Copy)]
pub struct DecorrelativeDistiller {
    /// Off-diagonal weight.
    pub lambda: f64,
    /// Overall scale.
    pub scale: f64,
}

impl Distiller for DecorrelativeDistiller {
    fn name(&self) -> &str {
        "decorrelative"
    }
    fn loss(&self, p1: &Tensor, p2: &Tensor, o1: &Tensor, o2: &Tensor) -> Result<Tensor> {
        check_inputs(self.name(), p1, p2, o1, o2)?;
        per_view_mean(p1, p2, o1, o2, |p, o| {
            loss::barlow_twins(p, o, self.lambda, self.scale)
        })
    }
}
