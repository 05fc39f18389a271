//! One training step as functions a test (or the PyTorch step twin) can call on given tensors: the loss
//! terms of Kaizen and its baselines, their weighted sum with the NaN guard, and the optimiser's parameter
//! groups. The trainer ([`crate::train`]) calls exactly these; nothing here reads a dataset or a run directory.
//!
//! The terms at task t (`kaizen-spec.md`, "Loss at task t"):
//!
//! | term | value | weight |
//! |---|---|---|
//! | `ssl` | the method's loss on the two views (against its momentum target, if any) | `loss.ssl` |
//! | `fe_kd` | distiller(h(z_1), h(z_2), z_old_1, z_old_2), the mean over the two views | `feature_distill_weight` |
//! | `cls_ce` | masked CE of g(f(x_1)) + masked CE of g(f(x_2)) (a SUM over the views, as the official code) | `loss.classifier_ce` |
//! | `cls_kd` | (soft_ce(l_1, l_old_1, T) + soft_ce(l_2, l_old_2, T)) / 2 | `classifier_distill_weight` |
//!
//! The two distillation terms exist only with a frozen model (t >= 1, distilling strategies). The classifier
//! reads detached features unless `train.classifier_detach = false`. With `loss.ce_classes = "seen"`, the
//! cross-entropy's softmax covers only the classes of the tasks trained so far (the others' logits are
//! masked out of it and get no gradient from it); `"all"` is the official code's softmax over every class.

use crate::config::{CeClasses, ExperimentConfig, OptimizerName, StrategyKind, TrainConfig};
use crate::distill::Distiller;
use crate::error::CoreError;
use crate::events::TermValue;
use crate::loss;
use crate::method::{SslInputs, SslMethod};
use crate::network::{prefix, Frozen, Online};
use candle_core::{DType, Tensor};
use kaizen_data::TaskStream;
use kaizen_models::optim::{OptimConfig, Optimizer, OptimizerKind, ParamGroup};
use kaizen_models::BnMode;

/// Weights and switches of one step, resolved from the config for one task.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSettings {
    /// Weight of `ssl`.
    pub ssl: f64,
    /// Weight of `fe_kd`.
    pub fe_kd: f64,
    /// Weight of `cls_ce`.
    pub cls_ce: f64,
    /// Weight of `cls_kd`.
    pub cls_kd: f64,
    /// Temperature T of `cls_kd`.
    pub kd_temperature: f64,
    /// Feed the classifier detached features.
    pub classifier_detach: bool,
    /// Classes inside the cross-entropy's softmax (`None`: all of them).
    pub ce_classes: Option<Vec<bool>>,
}

impl StepSettings {
    /// The settings of task `t` of a run (`stream` gives the classes trained so far).
    pub fn for_task(
        cfg: &ExperimentConfig,
        stream: &TaskStream,
        t: usize,
    ) -> Result<Self, CoreError> {
        let ce_classes = match cfg.loss.ce_classes {
            CeClasses::All => None,
            CeClasses::Seen => {
                let last = if cfg.strategy == StrategyKind::Joint {
                    stream.num_tasks() - 1
                } else {
                    t
                };
                let mut seen = vec![false; stream.num_classes()];
                for k in 0..=last.min(stream.num_tasks() - 1) {
                    for &c in stream.task_classes(k) {
                        seen[usize::from(c)] = true;
                    }
                }
                Some(seen)
            }
        };
        Ok(Self {
            ssl: cfg.loss.ssl,
            fe_kd: cfg.feature_distill_weight()?,
            cls_ce: cfg.loss.classifier_ce,
            cls_kd: cfg.classifier_distill_weight(),
            kd_temperature: cfg.loss.distill_temperature,
            classifier_detach: cfg.train.classifier_detach,
            ce_classes,
        })
    }
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

/// One loss term of a step: its logged name, its weight and its unweighted value (a scalar tensor).
pub struct Term {
    /// `ssl`, `fe_kd`, `cls_ce` or `cls_kd`.
    pub name: &'static str,
    /// Weight in the total.
    pub weight: f64,
    /// Unweighted value, differentiable.
    pub loss: Tensor,
}

/// The models a step reads and updates.
pub struct StepModels<'a> {
    /// The online model (trained).
    pub online: &'a Online,
    /// The SSL method (its target and queue).
    pub method: &'a mut dyn SslMethod,
    /// The feature distiller.
    pub distiller: &'a dyn Distiller,
    /// The frozen previous-task model (None at task 0 and for strategies that do not distil).
    pub frozen: Option<&'a Frozen>,
}

/// The enabled loss terms of one step (weight > 0), in the order `ssl`, `cls_ce`, `fe_kd`, `cls_kd`.
pub fn loss_terms(
    m: &mut StepModels<'_>,
    s: &StepSettings,
    b: &StepBatch<'_>,
) -> Result<Vec<Term>, CoreError> {
    let on = m.online;
    let h1 = on.backbone.forward(b.view1, BnMode::Train)?;
    let h2 = on.backbone.forward(b.view2, BnMode::Train)?;
    let z1 = on.projector.forward(&h1, BnMode::Train)?;
    let z2 = on.projector.forward(&h2, BnMode::Train)?;
    let mut terms = Vec::with_capacity(4);
    if s.ssl > 0.0 {
        let ssl = m.method.loss(
            on,
            &SslInputs {
                x1: b.view1,
                x2: b.view2,
                z1: &z1,
                z2: &z2,
            },
        )?;
        terms.push(Term {
            name: "ssl",
            weight: s.ssl,
            loss: ssl,
        });
    }
    let frozen = m.frozen;
    let need_logits = s.cls_ce > 0.0 || (s.cls_kd > 0.0 && frozen.is_some());
    let logits = if need_logits {
        let (f1, f2) = if s.classifier_detach {
            (h1.detach(), h2.detach())
        } else {
            (h1.clone(), h2.clone())
        };
        Some((
            on.classifier.forward(&f1, BnMode::Train)?,
            on.classifier.forward(&f2, BnMode::Train)?,
        ))
    } else {
        None
    };
    if let (true, Some((l1, l2))) = (s.cls_ce > 0.0, &logits) {
        let ce = match &s.ce_classes {
            None => (loss::masked_ce(l1, b.labels)? + loss::masked_ce(l2, b.labels)?)?,
            Some(seen) => {
                let m1 = kaizen_models::mask_unseen(l1, seen)?;
                let m2 = kaizen_models::mask_unseen(l2, seen)?;
                (loss::masked_ce(&m1, b.labels)? + loss::masked_ce(&m2, b.labels)?)?
            }
        };
        terms.push(Term {
            name: "cls_ce",
            weight: s.cls_ce,
            loss: ce,
        });
    }
    if let Some(frozen) = frozen {
        let o1 = frozen.forward(b.view1)?;
        let o2 = frozen.forward(b.view2)?;
        if s.fe_kd > 0.0 {
            let p1 = on.distill_predictor.forward(&z1, BnMode::Train)?;
            let p2 = on.distill_predictor.forward(&z2, BnMode::Train)?;
            terms.push(Term {
                name: "fe_kd",
                weight: s.fe_kd,
                loss: m.distiller.loss(&p1, &p2, &o1.z, &o2.z)?,
            });
        }
        if let (true, Some((l1, l2))) = (s.cls_kd > 0.0, &logits) {
            let t = s.kd_temperature;
            let kd =
                ((loss::soft_ce(l1, &o1.logits, t)? + loss::soft_ce(l2, &o2.logits, t)?)? * 0.5)?;
            terms.push(Term {
                name: "cls_kd",
                weight: s.cls_kd,
                loss: kd,
            });
        }
    }
    Ok(terms)
}

/// The weighted sum of `terms` and their values (plus `total`) for the log. A non-finite term is an error
/// naming the term, `task` and `step`, raised before anything is updated.
pub fn weighted_total(
    terms: &[Term],
    task: usize,
    step: usize,
) -> Result<(Tensor, Vec<TermValue>), CoreError> {
    let mut values = Vec::with_capacity(terms.len() + 1);
    let mut total: Option<Tensor> = None;
    let mut total_value = 0.0;
    for term in terms {
        let v = f64::from(term.loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
        if !v.is_finite() {
            return Err(CoreError::NonFinite {
                term: term.name.to_string(),
                task,
                step,
                value: v,
            });
        }
        total_value += term.weight * v;
        values.push(TermValue {
            term: term.name,
            value: v,
        });
        let weighted = (&term.loss * term.weight)?;
        total = Some(match total {
            None => weighted,
            Some(acc) => (acc + weighted)?,
        });
    }
    values.push(TermValue {
        term: "total",
        value: total_value,
    });
    let Some(total) = total else {
        return Err(CoreError::Invalid(
            "every loss term is switched off (all weights are 0): nothing to train".into(),
        ));
    };
    Ok((total, values))
}

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
