//! `cls_ce`: cross-entropy of the classifier on the labelled images of both views (L_C^CT), the SUM over
//! the views as the official code, weight `loss.classifier_ce`. Unlabelled images (label -1) are left
//! out. With `loss.ce_classes = "seen"` the softmax covers only the classes of the tasks trained so far
//! (the others' logits are masked out and get no gradient from it); `"all"` is the official softmax over
//! every class.

use super::context::{LossTerm, StepContext, TermSetup};
use crate::config::CeClasses;
use crate::error::CoreError;
use crate::loss;
use candle_core::Tensor;

/// The classifier cross-entropy term.
pub struct ClassifierCe {
    /// Weight in the total.
    pub weight: f64,
    /// Classes inside the softmax.
    pub classes: CeClasses,
}

impl ClassifierCe {
    /// The term with the config's `loss.classifier_ce` and `loss.ce_classes`.
    pub fn new(setup: &TermSetup<'_>) -> Self {
        Self {
            weight: setup.cfg.loss.classifier_ce,
            classes: setup.cfg.loss.ce_classes,
        }
    }
}

impl LossTerm for ClassifierCe {
    fn name(&self) -> &'static str {
        "cls_ce"
    }
    fn weight(&self) -> f64 {
        self.weight
    }
    fn loss(&mut self, cx: &mut StepContext<'_, '_>) -> Result<Option<Tensor>, CoreError> {
        let [l1, l2] = cx.logits()?;
        let labels = cx.batch.labels;
        let ce = match self.classes {
            CeClasses::All => (loss::masked_ce(&l1, labels)? + loss::masked_ce(&l2, labels)?)?,
            CeClasses::Seen => {
                let m1 = kaizen_models::mask_unseen(&l1, cx.seen)?;
                let m2 = kaizen_models::mask_unseen(&l2, cx.seen)?;
                (loss::masked_ce(&m1, labels)? + loss::masked_ce(&m2, labels)?)?
            }
        };
        Ok(Some(ce))
    }
}
