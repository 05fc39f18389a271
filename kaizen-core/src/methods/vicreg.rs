//! VICReg (Bardes et al. 2022): invariance / variance / covariance with weights `loss.vicreg_sim_weight`,
//! `loss.vicreg_var_weight`, `loss.vicreg_cov_weight` (25 / 25 / 1, the official values). Distiller:
//! `predictive_mse`.

use super::traits::{MethodContext, MethodFactory, SslInputs, SslMethod};
use crate::config::ExperimentConfig;
use crate::error::CoreError;
use crate::loss;
use crate::network::{Online, ProjectorShape};
use candle_core::Tensor;

/// The VICReg factory (`method = "vicreg"`).
pub struct VicRegFactory;

impl MethodFactory for VicRegFactory {
    fn name(&self) -> &'static str {
        "vicreg"
    }
    fn about(&self) -> &'static str {
        "VICReg: invariance / variance / covariance"
    }
    fn projector(&self) -> ProjectorShape {
        ProjectorShape {
            hidden_layers: 2,
            batch_norm: true,
        }
    }
    fn default_distiller(&self) -> &'static str {
        "predictive_mse"
    }
    fn warnings(&self, cfg: &ExperimentConfig) -> Vec<String> {
        // The official VICReg script: LARS lr 0.3 per 256 images, classifier lr 0.05, weight decay 1e-4.
        let vicreg_lr = 0.3 * cfg.train.batch_size as f64 / 256.0;
        if cfg.train.lr > 2.0 * vicreg_lr {
            return vec![format!(
                "method vicreg with train.lr = {}: the official VICReg recipe uses lr 0.3 per 256 images ({vicreg_lr} \
                 at batch {}), train.classifier_lr = 0.05 and train.weight_decay = 1e-4; VICReg diverged (NaN at task \
                 1) with the mini preset's BYOL lr 0.25",
                cfg.train.lr, cfg.train.batch_size
            )];
        }
        Vec::new()
    }
    fn build(&self, cx: &MethodContext<'_>) -> Result<Box<dyn SslMethod>, CoreError> {
        let l = &cx.cfg.loss;
        Ok(Box::new(VicReg {
            weights: [
                l.vicreg_sim_weight,
                l.vicreg_var_weight,
                l.vicreg_cov_weight,
            ],
        }))
    }
}

/// VICReg during a run.
pub struct VicReg {
    /// Invariance, variance and covariance weights.
    weights: [f64; 3],
}

impl SslMethod for VicReg {
    fn name(&self) -> &str {
        "vicreg"
    }
    fn loss(&mut self, _online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor> {
        let [sim, var, cov] = self.weights;
        loss::vicreg(x.z1, x.z2, sim, var, cov)
    }
}
