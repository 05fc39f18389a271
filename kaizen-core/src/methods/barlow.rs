//! Barlow Twins (Zbontar et al. 2021): cross-correlation of the two views' projections pulled to the
//! identity, off-diagonal weight `loss.barlow_lambda` (0.0051), overall scale `loss.barlow_scale` (0.1).
//! Distiller: `decorrelative`.

use super::traits::{MethodContext, MethodFactory, SslInputs, SslMethod};
use crate::error::CoreError;
use crate::loss;
use crate::network::{Online, ProjectorShape};
use candle_core::Tensor;

/// The Barlow Twins factory (`method = "barlow"`).
pub struct BarlowFactory;

impl MethodFactory for BarlowFactory {
    fn name(&self) -> &'static str {
        "barlow"
    }
    fn about(&self) -> &'static str {
        "Barlow Twins: cross-correlation to the identity"
    }
    fn projector(&self) -> ProjectorShape {
        ProjectorShape {
            hidden_layers: 2,
            batch_norm: true,
        }
    }
    fn default_distiller(&self) -> &'static str {
        "decorrelative"
    }
    fn build(&self, cx: &MethodContext<'_>) -> Result<Box<dyn SslMethod>, CoreError> {
        Ok(Box::new(Barlow {
            lambda: cx.cfg.loss.barlow_lambda,
            scale: cx.cfg.loss.barlow_scale,
        }))
    }
}

/// Barlow Twins during a run.
pub struct Barlow {
    lambda: f64,
    scale: f64,
}

impl SslMethod for Barlow {
    fn name(&self) -> &str {
        "barlow"
    }
    fn loss(&mut self, _online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor> {
        loss::barlow_twins(x.z1, x.z2, self.lambda, self.scale)
    }
}
