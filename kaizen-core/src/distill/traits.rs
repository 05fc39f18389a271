//! The distiller traits ([`Distiller`], [`DistillerFactory`]), their parameters and the helpers the
//! distiller files share.

use crate::config::ExperimentConfig;
use crate::error::CoreError;
use crate::loss::ops::check_same_matrices;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// A feature distiller: given the distillation-predictor outputs and the frozen projections of both
/// views, returns its loss (a scalar, mean over the views).
pub trait Distiller: Send + Sync {
    /// The distiller's registry name.
    fn name(&self) -> &str;

    /// The distillation loss.
    ///
    /// - `p1`, `p2`: (N, D) distillation-predictor outputs h(z_1), h(z_2) (get gradients).
    /// - `o1`, `o2`: (N, D) frozen projections of views 1 and 2 (detached inside).
    ///
    /// All four must have the same shape; an error names the mismatching argument.
    fn loss(&self, p1: &Tensor, p2: &Tensor, o1: &Tensor, o2: &Tensor) -> Result<Tensor>;
}

/// A registered distiller: its name, its default weight and its builder.
pub trait DistillerFactory: Send + Sync {
    /// Registry name (config value `distiller = "..."`).
    fn name(&self) -> &'static str;
    /// The default weight lambda_FE of L_FE^KD with this distiller (`loss.feature_distill < 0`).
    fn default_weight(&self) -> f64 {
        1.0
    }
    /// Build the distiller (parameters it does not use are ignored).
    fn build(&self, params: &DistillParams) -> Box<dyn Distiller>;
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
    /// The parameters a run's config gives: `loss.distill_contrastive_temperature`, `loss.barlow_lambda`,
    /// `loss.barlow_scale`.
    pub fn from_config(cfg: &ExperimentConfig) -> Self {
        Self {
            temperature: cfg.loss.distill_contrastive_temperature,
            barlow_lambda: cfg.loss.barlow_lambda,
            barlow_scale: cfg.loss.barlow_scale,
        }
    }

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

/// Checks that the four inputs of distiller `name` are matrices of one shape.
pub(super) fn check_inputs(
    name: &str,
    p1: &Tensor,
    p2: &Tensor,
    o1: &Tensor,
    o2: &Tensor,
) -> Result<()> {
    let op = format!("{name} distiller");
    check_same_matrices(&op, &[("p1", p1), ("p2", p2), ("o1", o1), ("o2", o2)])?;
    Ok(())
}

/// Mean over the two views of `f(p_v, detach(o_v))`.
pub(super) fn per_view_mean(
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
