//! A user-defined strategy with a loss term of its own, plugged into the trainer: LwF-style (the SSL loss,
//! the classifier's cross-entropy and Kaizen's classifier distillation, no feature distillation, no
//! replay) plus `feat_l2`, a new term pulling the online features of both views towards the frozen
//! model's features (`mse`, weight 0.5). One `Strategy` and one `LossTerm`, registered with
//! `Registry::with_strategy`.

use anyhow::Result;
use candle_core::Tensor;
use kaizen_core::strategy::Strategy;
use kaizen_core::terms::{ClassifierCe, ClassifierDistill, LossTerm, Ssl, StepContext, TermSetup};
use kaizen_core::{loss, CoreError, Registry};
use kaizen_examples::{out_dir, smoke_config, train_and_report};

/// `feat_l2`: mean over the views of `mse(h_v, h_old_v)` (only from the second task on).
struct FeatureL2 {
    weight: f64,
}

impl LossTerm for FeatureL2 {
    fn name(&self) -> &'static str {
        "feat_l2"
    }
    fn weight(&self) -> f64 {
        self.weight
    }
    fn needs_frozen(&self) -> bool {
        true
    }
    fn loss(&mut self, cx: &mut StepContext<'_, '_>) -> Result<Option<Tensor>, CoreError> {
        let Some([old1, old2]) = cx.frozen_pair(|o| &o.h)? else {
            return Ok(None);
        };
        let l = ((loss::mse(&cx.h[0], &old1)? + loss::mse(&cx.h[1], &old2)?)? * 0.5)?;
        Ok(Some(l))
    }
}

/// The strategy: every phase is one task, as the defaults of `Strategy` say.
struct LwfFeatures;

impl Strategy for LwfFeatures {
    fn name(&self) -> &'static str {
        "lwf_feat"
    }
    fn about(&self) -> &'static str {
        "SSL + CE + classifier distillation + an L2 pull towards the frozen features"
    }
    fn terms(&self, setup: &TermSetup<'_>) -> Vec<Box<dyn LossTerm>> {
        vec![
            Box::new(Ssl::new(setup)),
            Box::new(ClassifierCe::new(setup)),
            Box::new(ClassifierDistill::new(setup)),
            Box::new(FeatureL2 { weight: 0.5 }),
        ]
    }
}

fn main() -> Result<()> {
    let registry = Registry::builtin().with_strategy(LwfFeatures);
    let mut cfg = smoke_config();
    cfg.strategy = "lwf_feat".into();
    train_and_report(&registry, cfg, &out_dir("example-custom-strategy"))
}
