//! The optimiser of a task: the parameter groups of the online model.

use crate::config::{OptimizerName, TrainConfig};
use crate::network::{prefix, Online};
use kaizen_models::optim::{OptimConfig, Optimizer, OptimizerKind, ParamGroup};

/// The optimiser of one task: group `main` (backbone, projector, predictor, distillation predictor) at the
/// scheduled lr with weight decay and LARS (when `optimizer = "lars"`), and group `classifier` at
/// `classifier_lr` without weight decay (as the official code), with LARS only when `classifier_lars`.
pub fn build_optimizer(tc: &TrainConfig, online: &Online) -> Optimizer {
    let mut main = Vec::new();
    for p in [
        prefix::BACKBONE,
        prefix::PROJECTOR,
        prefix::PREDICTOR,
        prefix::DISTILL_PREDICTOR,
    ] {
        main.extend(kaizen_models::params::trainable(
            &online.varmap,
            &format!("{p}."),
        ));
    }
    let groups = vec![
        ParamGroup {
            name: "main".into(),
            vars: main,
            lr_scale: 1.0,
            weight_decay: tc.weight_decay,
            lars: tc.optimizer == OptimizerName::Lars,
        },
        ParamGroup {
            name: "classifier".into(),
            vars: kaizen_models::params::trainable(
                &online.varmap,
                &format!("{}.", prefix::CLASSIFIER),
            ),
            lr_scale: if tc.lr > 0.0 {
                tc.classifier_lr / tc.lr
            } else {
                0.0
            },
            weight_decay: 0.0,
            lars: tc.optimizer == OptimizerName::Lars && tc.classifier_lars,
        },
    ];
    let cfg = OptimConfig {
        kind: match tc.optimizer {
            OptimizerName::Sgd => OptimizerKind::Sgd,
            OptimizerName::Lars => OptimizerKind::Lars,
        },
        momentum: tc.momentum,
        weight_decay: tc.weight_decay,
        lars_eta: tc.lars_eta,
        lars_clip: true,
        exclude_bias_n_norm: true,
    };
    Optimizer::new(cfg, groups)
}
