//! BYOL (Grill et al. 2020): predictor + momentum target; `byol(p1, z'2) + byol(p2, z'1)`, the sum of both
//! directions as the official code. Distiller: `predictive`.

use super::momentum::MomentumTarget;
use super::traits::{predict, MethodContext, MethodFactory, SslInputs, SslMethod};
use crate::error::CoreError;
use crate::loss;
use crate::network::{Online, ProjectorShape};
use candle_core::Tensor;
use std::collections::HashMap;

/// The BYOL factory (`method = "byol"`).
pub struct ByolFactory;

impl MethodFactory for ByolFactory {
    fn name(&self) -> &'static str {
        "byol"
    }
    fn about(&self) -> &'static str {
        "BYOL: predictor + momentum target, 2 - 2 cos"
    }
    fn projector(&self) -> ProjectorShape {
        ProjectorShape {
            hidden_layers: 1,
            batch_norm: true,
        }
    }
    fn has_predictor(&self) -> bool {
        true
    }
    fn default_distiller(&self) -> &'static str {
        "predictive"
    }
    fn build(&self, cx: &MethodContext<'_>) -> Result<Box<dyn SslMethod>, CoreError> {
        Ok(Box::new(Byol {
            target: MomentumTarget::new(cx.cfg, cx.online, cx.spec, cx.device)?,
        }))
    }
}

/// BYOL during a run: the momentum target.
pub struct Byol {
    target: MomentumTarget,
}

impl SslMethod for Byol {
    fn name(&self) -> &str {
        "byol"
    }
    fn loss(&mut self, online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor> {
        let p1 = predict(online, x.z1)?;
        let p2 = predict(online, x.z2)?;
        let t1 = self.target.project(x.x1)?;
        let t2 = self.target.project(x.x2)?;
        loss::byol(&p1, &t2)? + loss::byol(&p2, &t1)?
    }
    fn after_step(&mut self, online: &Online, step: usize, total: usize) -> Result<(), CoreError> {
        self.target.update(online, step, total)
    }
    fn state(&self) -> Result<Vec<(String, Tensor)>, CoreError> {
        self.target.state()
    }
    fn load_state(&mut self, t: &HashMap<String, Tensor>) -> Result<(), CoreError> {
        self.target.load_state(t)
    }
}
