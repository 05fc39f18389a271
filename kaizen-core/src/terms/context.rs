//! The [`LossTerm`] trait and the [`StepContext`] it reads: the batch, the models, and the forward
//! passes shared between terms (computed once, on first use).

use crate::config::ExperimentConfig;
use crate::distill::DistillerFactory;
use crate::error::CoreError;
use crate::methods::SslMethod;
use crate::network::{Frozen, FrozenOut, Online};
use candle_core::Tensor;
use kaizen_models::{BnMode, Layer};

/// One loss term of a training step.
pub trait LossTerm: Send {
    /// Name in logs and `metrics.jsonl` (`ssl`, `cls_ce`, ...).
    fn name(&self) -> &'static str;
    /// Weight in the step's total; a term of weight 0 is not computed.
    fn weight(&self) -> f64;
    /// Whether the term reads the frozen previous-task model (the trainer snapshots one at task t >= 1
    /// when any enabled term needs it).
    fn needs_frozen(&self) -> bool {
        false
    }
    /// The unweighted value (a differentiable scalar), or `None` when the term does not apply to this
    /// step (e.g. no frozen model at task 0).
    fn loss(&mut self, cx: &mut StepContext<'_, '_>) -> Result<Option<Tensor>, CoreError>;
}

/// What the term constructors read: the run's config and its feature distiller.
pub struct TermSetup<'a> {
    /// The run's config.
    pub cfg: &'a ExperimentConfig,
    /// The factory of the configured feature distiller (`distiller`, `auto` resolved).
    pub distiller: &'a dyn DistillerFactory,
}

/// The inputs of one step: two augmented views of the same images and their labels (-1 = unlabelled).
pub struct StepBatch<'a> {
    /// View 1 (B, C, H, W).
    pub view1: &'a Tensor,
    /// View 2 (B, C, H, W).
    pub view2: &'a Tensor,
    /// Labels (B,) int64.
    pub labels: &'a Tensor,
}

/// The models a step reads and updates.
pub struct StepModels<'a> {
    /// The online model (trained).
    pub online: &'a Online,
    /// The SSL method (its target and queue).
    pub method: &'a mut dyn SslMethod,
    /// The frozen previous-task model (None at task 0 and when no term needs it).
    pub frozen: Option<&'a Frozen>,
}

/// Everything a term can read in one step. The online backbone and projector run on both views up front
/// (train-mode BatchNorm); the classifier logits and the frozen model's outputs run on first use.
pub struct StepContext<'m, 'b> {
    /// The models.
    pub models: StepModels<'m>,
    /// The batch.
    pub batch: &'b StepBatch<'b>,
    /// Classes of the tasks trained so far, this one included (`seen[c]`).
    pub seen: &'b [bool],
    /// Online features of views 1 and 2.
    pub h: [Tensor; 2],
    /// Online projections of views 1 and 2.
    pub z: [Tensor; 2],
    classifier_detach: bool,
    logits: Option<[Tensor; 2]>,
    frozen_out: Option<[FrozenOut; 2]>,
}

impl<'m, 'b> StepContext<'m, 'b> {
    /// Run the online backbone and projector on both views.
    pub fn new(
        models: StepModels<'m>,
        batch: &'b StepBatch<'b>,
        seen: &'b [bool],
        classifier_detach: bool,
    ) -> Result<Self, CoreError> {
        let on = models.online;
        let h1 = on.backbone.forward_mode(batch.view1, BnMode::Train)?;
        let h2 = on.backbone.forward_mode(batch.view2, BnMode::Train)?;
        let z1 = on.projector.forward_mode(&h1, BnMode::Train)?;
        let z2 = on.projector.forward_mode(&h2, BnMode::Train)?;
        Ok(Self {
            models,
            batch,
            seen,
            h: [h1, h2],
            z: [z1, z2],
            classifier_detach,
            logits: None,
            frozen_out: None,
        })
    }

    /// The online classifier's logits on both views (on detached features unless
    /// `train.classifier_detach = false`).
    pub fn logits(&mut self) -> Result<[Tensor; 2], CoreError> {
        if self.logits.is_none() {
            let [h1, h2] = &self.h;
            let (f1, f2) = if self.classifier_detach {
                (h1.detach(), h2.detach())
            } else {
                (h1.clone(), h2.clone())
            };
            let c = &self.models.online.classifier;
            self.logits = Some([
                c.forward(&f1, BnMode::Train)?,
                c.forward(&f2, BnMode::Train)?,
            ]);
        }
        self.logits
            .clone()
            .ok_or_else(|| CoreError::Invalid("logits were not computed".into()))
    }

    /// One output of the frozen model on both views (e.g. `|o| &o.z`), or `None` without a frozen model.
    pub fn frozen_pair(
        &mut self,
        pick: impl Fn(&FrozenOut) -> &Tensor,
    ) -> Result<Option<[Tensor; 2]>, CoreError> {
        Ok(self
            .frozen()?
            .map(|[o1, o2]| [pick(o1).clone(), pick(o2).clone()]))
    }

    /// The frozen model's outputs on both views, or `None` without a frozen model.
    pub fn frozen(&mut self) -> Result<Option<&[FrozenOut; 2]>, CoreError> {
        let Some(frozen) = self.models.frozen else {
            return Ok(None);
        };
        if self.frozen_out.is_none() {
            let o1 = frozen.forward(self.batch.view1)?;
            let o2 = frozen.forward(self.batch.view2)?;
            self.frozen_out = Some([o1, o2]);
        }
        Ok(self.frozen_out.as_ref())
    }
}
