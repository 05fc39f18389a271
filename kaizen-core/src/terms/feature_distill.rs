//! `fe_kd`: CaSSLe's feature distillation (L_FE^KD): the distillation predictor h maps each online
//! projection z_v towards the frozen model's projection of the same view, through the configured
//! distiller ([`crate::distill`]); weight `loss.feature_distill`, or the distiller's default when negative.

use super::context::{LossTerm, StepContext, TermSetup};
use crate::distill::{DistillParams, Distiller};
use crate::error::CoreError;
use candle_core::Tensor;
use kaizen_models::BnMode;

/// The feature-distillation term, owning its distiller.
pub struct FeatureDistill {
    /// Weight in the total.
    pub weight: f64,
    /// The distiller.
    pub distiller: Box<dyn Distiller>,
}

impl FeatureDistill {
    /// The term with the config's weight (the distiller's default when `loss.feature_distill` < 0).
    pub fn new(setup: &TermSetup<'_>) -> Self {
        let weight = if setup.cfg.loss.feature_distill < 0.0 {
            setup.distiller.default_weight()
        } else {
            setup.cfg.loss.feature_distill
        };
        Self {
            weight,
            distiller: setup
                .distiller
                .build(&DistillParams::from_config(setup.cfg)),
        }
    }
}

impl LossTerm for FeatureDistill {
    fn name(&self) -> &'static str {
        "fe_kd"
    }
    fn weight(&self) -> f64 {
        self.weight
    }
    fn needs_frozen(&self) -> bool {
        true
    }
    fn loss(&mut self, cx: &mut StepContext<'_, '_>) -> Result<Option<Tensor>, CoreError> {
        let Some([o1, o2]) = cx.frozen_pair(|o| &o.z)? else {
            return Ok(None);
        };
        let h = &cx.models.online.distill_predictor;
        let p1 = h.forward(&cx.z[0], BnMode::Train)?;
        let p2 = h.forward(&cx.z[1], BnMode::Train)?;
        Ok(Some(self.distiller.loss(&p1, &p2, &o1, &o2)?))
    }
}
