//! SimCLR (Chen et al. 2020): NT-Xent over both views' projections (temperature 0.1 unless
//! `loss.temperature` is set). Distiller: `contrastive`.

use super::traits::{temperature, MethodContext, MethodFactory, SslInputs, SslMethod};
use crate::error::CoreError;
use crate::loss;
use crate::network::{Online, ProjectorShape};
use candle_core::Tensor;

/// The SimCLR factory (`method = "simclr"`).
pub struct SimClrFactory;

impl MethodFactory for SimClrFactory {
    fn name(&self) -> &'static str {
        "simclr"
    }
    fn about(&self) -> &'static str {
        "SimCLR: NT-Xent over both views"
    }
    fn projector(&self) -> ProjectorShape {
        ProjectorShape {
            hidden_layers: 1,
            batch_norm: false,
        }
    }
    fn default_distiller(&self) -> &'static str {
        "contrastive"
    }
    fn build(&self, cx: &MethodContext<'_>) -> Result<Box<dyn SslMethod>, CoreError> {
        Ok(Box::new(SimClr {
            temperature: temperature(self, cx.cfg),
        }))
    }
}

/// SimCLR during a run.
pub struct SimClr {
    temperature: f64,
}

impl SslMethod for SimClr {
    fn name(&self) -> &str {
        "simclr"
    }
    fn loss(&mut self, _online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor> {
        loss::nt_xent(x.z1, x.z2, self.temperature)
    }
}
