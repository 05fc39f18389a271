//! `cls_kd`: Kaizen's soft-label distillation of the frozen previous classifier (L_C^KD):
//! `(soft_ce(l_1, l_old_1, T) + soft_ce(l_2, l_old_2, T)) / 2`, temperature `loss.distill_temperature`,
//! weight `loss.classifier_distill`.

use super::context::{LossTerm, StepContext, TermSetup};
use crate::error::CoreError;
use crate::loss;
use candle_core::Tensor;

/// The classifier-distillation term.
pub struct ClassifierDistill {
    /// Weight in the total.
    pub weight: f64,
    /// Softmax temperature T.
    pub temperature: f64,
}

impl ClassifierDistill {
    /// The term with the config's `loss.classifier_distill` and `loss.distill_temperature`.
    pub fn new(setup: &TermSetup<'_>) -> Self {
        Self {
            weight: setup.cfg.loss.classifier_distill,
            temperature: setup.cfg.loss.distill_temperature,
        }
    }
}

impl LossTerm for ClassifierDistill {
    fn name(&self) -> &'static str {
        "cls_kd"
    }
    fn weight(&self) -> f64 {
        self.weight
    }
    fn needs_frozen(&self) -> bool {
        true
    }
    fn loss(&mut self, cx: &mut StepContext<'_, '_>) -> Result<Option<Tensor>, CoreError> {
        let Some([old1, old2]) = cx.frozen_pair(|o| &o.logits)? else {
            return Ok(None);
        };
        let [l1, l2] = cx.logits()?;
        let t = self.temperature;
        let kd = ((loss::soft_ce(&l1, &old1, t)? + loss::soft_ce(&l2, &old2, t)?)? * 0.5)?;
        Ok(Some(kd))
    }
}
