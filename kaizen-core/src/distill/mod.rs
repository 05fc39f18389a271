//! CaSSLe feature distillers (Fini et al. 2022), as Kaizen uses them for L_FE^KD.
//!
//! A distiller receives, for both augmented views v = 1, 2 of the batch:
//! - `p_v` (N, D): the **distillation predictor's** output h(z_v) on the online projection z_v (the
//!   caller applies h);
//! - `o_v` (N, D): the **frozen** previous-task model's projection of the same view. It is treated as a
//!   constant: every distiller detaches it.
//!
//! and returns the scalar loss, already averaged over the two views (the weight lambda_FE is applied by
//! the caller, see [`DistillerKind::default_weight`]). Implementations (`kaizen-spec.md`):
//!
//! | kind | loss |
//! |---|---|
//! | predictive | `(byol(p1, o1) + byol(p2, o2)) / 2` |
//! | contrastive | `contrastive_distill(p1, p2, o1, o2, t)` (InfoNCE against the frozen projections of both views) |
//! | predictive_mse | `(mse(p1, o1) + mse(p2, o2)) / 2` |
//! | decorrelative | `(barlow_twins(p1, o1, lambda, scale) + barlow_twins(p2, o2, lambda, scale)) / 2` |

use crate::error::CoreError;
use crate::kinds::DistillerKind;
use crate::loss::{self, ops::check_same_matrices};
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// A feature distiller: given the distillation-predictor outputs and the frozen projections of both
/// views, returns its loss (a scalar, mean over the views).
pub trait Distiller: Send + Sync {
    /// Which distiller this is.
    fn kind(&self) -> DistillerKind;

    /// The distillation loss.
    ///
    /// - `p1`, `p2`: (N, D) distillation-predictor outputs h(z_1), h(z_2) (get gradients).
    /// - `o1`, `o2`: (N, D) frozen projections of views 1 and 2 (detached inside).
    ///
    /// All four must have the same shape; an error names the mismatching argument.
    fn loss(&self, p1: &Tensor, p2: &Tensor, o1: &Tensor, o2: &Tensor) -> Result<Tensor>;
}

/// Parameters of the distillers (only the ones a distiller uses are read).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistillParams {
    /// Temperature of the contrastive distiller (0.2: the MoCoV2+ value and CaSSLe's default; the
    /// SimCLR scripts use 0.1).
    pub temperature: f64,
    /// Barlow Twins' off-diagonal weight lambda in the decorrelative distiller (0.0051).
    pub barlow_lambda: f64,
    /// Barlow Twins' overall scale in the decorrelative distiller (0.1).
    pub barlow_scale: f64,
}

impl Default for DistillParams {
    fn default() -> Self {
        DistillParams {
            temperature: 0.2,
            barlow_lambda: 0.0051,
            barlow_scale: 0.1,
        }
    }
}

impl DistillParams {
    /// Checks the ranges: temperature finite and > 0, lambda and scale finite and >= 0.
    pub fn validate(&self) -> std::result::Result<(), CoreError> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(CoreError::BadParam {
                name: "temperature",
                value: self.temperature,
                reason: "must be finite and > 0",
            });
        }
        for (name, value) in [
            ("barlow_lambda", self.barlow_lambda),
            ("barlow_scale", self.barlow_scale),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(CoreError::BadParam {
                    name,
                    value,
                    reason: "must be finite and >= 0",
                });
            }
        }
        Ok(())
    }
}

/// Builds the distiller of `kind` with `params` (parameters a kind does not use are ignored).
/// Parameter ranges are checked by [`DistillParams::validate`] and again by the loss functions.
pub fn build_distiller(kind: DistillerKind, params: &DistillParams) -> Box<dyn Distiller> {
    match kind {
        DistillerKind::Predictive => Box::new(PredictiveDistiller),
        DistillerKind::Contrastive => Box::new(ContrastiveDistiller {
            temperature: params.temperature,
        }),
        DistillerKind::PredictiveMse => Box::new(PredictiveMseDistiller),
        DistillerKind::Decorrelative => Box::new(DecorrelativeDistiller {
            lambda: params.barlow_lambda,
            scale: params.barlow_scale,
        }),
    }
}

fn check_inputs(
    kind: DistillerKind,
    p1: &Tensor,
    p2: &Tensor,
    o1: &Tensor,
    o2: &Tensor,
) -> Result<()> {
    let op = format!("{kind} distiller");
    check_same_matrices(&op, &[("p1", p1), ("p2", p2), ("o1", o1), ("o2", o2)])?;
    Ok(())
}

/// Mean over the two views of `f(p_v, detach(o_v))`.
fn per_view_mean(
    p1: &Tensor,
    p2: &Tensor,
    o1: &Tensor,
    o2: &Tensor,
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let l1 = f(p1, &o1.detach())?;
    let l2 = f(p2, &o2.detach())?;
    (l1 + l2)?.affine(0.5, 0.0)
}

/// `predictive`: mean over views of [`loss::byol`]`(p_v, o_v)` (BYOL, SimSiam).
#[derive(Debug, Clone, Copy, Default)]
pub struct PredictiveDistiller;

impl Distiller for PredictiveDistiller {
    fn kind(&self) -> DistillerKind {
        DistillerKind::Predictive
    }
    fn loss(&self, p1: &Tensor, p2: &Tensor, o1: &Tensor, o2: &Tensor) -> Result<Tensor> {
        check_inputs(self.kind(), p1, p2, o1, o2)?;
        per_view_mean(p1, p2, o1, o2, loss::byol)
    }
}

/// `contrastive`: [`loss::contrastive_distill`]`(p1, p2, o1, o2, temperature)` (SimCLR, MoCoV2+).
#[derive(Debug, Clone, Copy)]
pub struct ContrastiveDistiller {
    /// The InfoNCE temperature (> 0).
    pub temperature: f64,
}

impl Distiller for ContrastiveDistiller {
    fn kind(&self) -> DistillerKind {
        DistillerKind::Contrastive
    }
    fn loss(&self, p1: &Tensor, p2: &Tensor, o1: &Tensor, o2: &Tensor) -> Result<Tensor> {
        check_inputs(self.kind(), p1, p2, o1, o2)?;
        loss::contrastive_distill(p1, p2, &o1.detach(), &o2.detach(), self.temperature)
    }
}

/// `predictive_mse`: mean over views of [`loss::mse`]`(p_v, o_v)` (VICReg).
#[derive(Debug, Clone, Copy, Default)]
pub struct PredictiveMseDistiller;

impl Distiller for PredictiveMseDistiller {
    fn kind(&self) -> DistillerKind {
        DistillerKind::PredictiveMse
    }
    fn loss(&self, p1: &Tensor, p2: &Tensor, o1: &Tensor, o2: &Tensor) -> Result<Tensor> {
        check_inputs(self.kind(), p1, p2, o1, o2)?;
        per_view_mean(p1, p2, o1, o2, loss::mse)
    }
}

/// `decorrelative`: mean over views of [`loss::barlow_twins`]`(p_v, o_v, lambda, scale)` (Barlow Twins).
/// Needs N >= 2.
#[derive(Debug, Clone, Copy)]
pub struct DecorrelativeDistiller {
    /// Off-diagonal weight.
    pub lambda: f64,
    /// Overall scale.
    pub scale: f64,
}

impl Distiller for DecorrelativeDistiller {
    fn kind(&self) -> DistillerKind {
        DistillerKind::Decorrelative
    }
    fn loss(&self, p1: &Tensor, p2: &Tensor, o1: &Tensor, o2: &Tensor) -> Result<Tensor> {
        check_inputs(self.kind(), p1, p2, o1, o2)?;
        per_view_mean(p1, p2, o1, o2, |p, o| {
            loss::barlow_twins(p, o, self.lambda, self.scale)
        })
    }
}
