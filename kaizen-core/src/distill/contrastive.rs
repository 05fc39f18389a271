//! `contrastive`: InfoNCE of h(z) against the frozen projections of both views (paired with SimCLR and
//! MoCo v2+), temperature `loss.distill_contrastive_temperature`.

use super::traits::check_inputs;
use super::traits::{DistillParams, Distiller, DistillerFactory};
use crate::loss;
use candle_core::{Result, Tensor};

/// The `contrastive` factory.
pub struct ContrastiveFactory;

impl DistillerFactory for ContrastiveFactory {
    fn name(&self) -> &'static str {
        "contrastive"
    }
    fn build(&self, params: &DistillParams) -> Box<dyn Distiller> {
        Box::new(ContrastiveDistiller {
            temperature: params.temperature,
        })
    }
}

/// `contrastive`: [`loss::contrastive_distill`]`(p1, p2, o1, o2, temperature)`.
#[derive(Debug, Clone, Copy)]
pub struct ContrastiveDistiller {
    /// The InfoNCE temperature (> 0).
    pub temperature: f64,
}

impl Distiller for ContrastiveDistiller {
    fn name(&self) -> &str {
        "contrastive"
    }
    fn loss(&self, p1: &Tensor, p2: &Tensor, o1: &Tensor, o2: &Tensor) -> Result<Tensor> {
        check_inputs(self.name(), p1, p2, o1, o2)?;
        loss::contrastive_distill(p1, p2, &o1.detach(), &o2.detach(), self.temperature)
    }
}
