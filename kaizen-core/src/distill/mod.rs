//! CaSSLe feature distillers (Fini et al. 2022), as Kaizen uses them for L_FE^KD.
//!
//! A distiller receives, for both augmented views v = 1, 2 of the batch:
//! - `p_v` (N, D): the **distillation predictor's** output h(z_v) on the online projection z_v (the
//!   caller applies h);
//! - `o_v` (N, D): the **frozen** previous-task model's projection of the same view. It is treated as a
//!   constant: every distiller detaches it.
//!
//! and returns the scalar loss, already averaged over the two views (the weight lambda_FE is applied by
//! the caller; its default is [`DistillerFactory::default_weight`]). One file per distiller; the registry
//! ([`crate::registry::Registry`]) maps names to factories. Implementations (`kaizen-spec.md`):
//!
//! | kind | loss |
//! |---|---|
//! | predictive | `(byol(p1, o1) + byol(p2, o2)) / 2` |
//! | contrastive | `contrastive_distill(p1, p2, o1, o2, t)` (InfoNCE against the frozen projections of both views) |
//! | predictive_mse | `(mse(p1, o1) + mse(p2, o2)) / 2` |
//! | decorrelative | `(barlow_twins(p1, o1, lambda, scale) + barlow_twins(p2, o2, lambda, scale)) / 2` |

pub mod contrastive;
pub mod decorrelative;
pub mod predictive;
pub mod predictive_mse;

pub use contrastive::ContrastiveDistiller;
pub use decorrelative::DecorrelativeDistiller;
pub use predictive::PredictiveDistiller;
pub use predictive_mse::PredictiveMseDistiller;
pub use traits::{DistillParams, Distiller, DistillerFactory};

mod traits;
