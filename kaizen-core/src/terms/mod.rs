//! Loss terms: the unit a training step is composed of. Each term owns its weight, reads what it needs
//! from the [`StepContext`] (the two views, the online forward pass, the frozen model) and has a logged
//! name; a step is "the weighted sum of the enabled terms". A strategy lists its terms
//! ([`crate::strategy::Strategy::terms`]); a new term is one file implementing [`LossTerm`].
//!
//! The terms of Kaizen at task t (`kaizen-spec.md`, "Loss at task t"):
//!
//! | term | file | value | weight |
//! |---|---|---|---|
//! | `ssl` | [`ssl`] | the method's loss on the two views (against its momentum target, if any) | `loss.ssl` |
//! | `cls_ce` | [`classifier_ce`] | masked CE of g(f(x_1)) + masked CE of g(f(x_2)) (a SUM over the views, as the official code) | `loss.classifier_ce` |
//! | `fe_kd` | [`feature_distill`] | distiller(h(z_1), h(z_2), z_old_1, z_old_2), the mean over the two views | `loss.feature_distill` (< 0: the distiller's default) |
//! | `cls_kd` | [`classifier_distill`] | (soft_ce(l_1, l_old_1, T) + soft_ce(l_2, l_old_2, T)) / 2 | `loss.classifier_distill` |
//!
//! The two distillation terms apply only with a frozen model (t >= 1). The classifier reads detached
//! features unless `train.classifier_detach = false`.

pub mod classifier_ce;
pub mod classifier_distill;
mod context;
pub mod feature_distill;
pub mod ssl;

pub use classifier_ce::ClassifierCe;
pub use classifier_distill::ClassifierDistill;
pub use context::{LossTerm, StepBatch, StepContext, StepModels, TermSetup};
pub use feature_distill::FeatureDistill;
pub use ssl::Ssl;
