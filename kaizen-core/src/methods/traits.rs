//! The method traits ([`SslMethod`], [`MethodFactory`]) and the helpers the method files share.

use crate::config::{ConfigError, ExperimentConfig};
use crate::error::CoreError;
use crate::network::{NetworkSpec, Online, ProjectorShape};
use candle_core::{Device, Tensor};
use kaizen_models::BnMode;
use std::collections::HashMap;

/// What a method sees of one step: the two augmented views and the online projections.
pub struct SslInputs<'a> {
    /// View 1 images (B, C, H, W).
    pub x1: &'a Tensor,
    /// View 2 images (B, C, H, W).
    pub x2: &'a Tensor,
    /// Online projection of view 1 (B, D).
    pub z1: &'a Tensor,
    /// Online projection of view 2 (B, D).
    pub z2: &'a Tensor,
}

/// One self-supervised method during a run (built by its [`MethodFactory`]).
pub trait SslMethod: Send {
    /// The method's registry name.
    fn name(&self) -> &str;
    /// L_FE^CT on the two views (scalar, differentiable w.r.t. the online model).
    fn loss(&mut self, online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor>;
    /// Called after every optimiser step; `step` of `total_steps` of the current task (EMA tau schedule).
    fn after_step(
        &mut self,
        _online: &Online,
        _step: usize,
        _total_steps: usize,
    ) -> Result<(), CoreError> {
        Ok(())
    }
    /// Tensors to checkpoint (target weights, queue), with names unique to the method.
    fn state(&self) -> Result<Vec<(String, Tensor)>, CoreError> {
        Ok(Vec::new())
    }
    /// Restore from [`SslMethod::state`]'s tensors.
    fn load_state(&mut self, _tensors: &HashMap<String, Tensor>) -> Result<(), CoreError> {
        Ok(())
    }
}

/// What a factory needs to build the per-run method object.
pub struct MethodContext<'a> {
    /// The run's config (hyper-parameters: `loss.*`, `train.base_tau`, ...).
    pub cfg: &'a ExperimentConfig,
    /// The online model (a momentum target starts as its copy).
    pub online: &'a Online,
    /// The sizes of every part.
    pub spec: &'a NetworkSpec,
    /// Device of the model.
    pub device: &'a Device,
}

/// A registered SSL method: its name, the heads it needs, its defaults and its builder.
pub trait MethodFactory: Send + Sync {
    /// Registry name (config value `method = "..."`).
    fn name(&self) -> &'static str;
    /// One line for help texts.
    fn about(&self) -> &'static str;
    /// The projector shape of the released scripts for this method.
    fn projector(&self) -> ProjectorShape;
    /// Whether the online model has a predictor on top of the projector (BYOL, SimSiam).
    fn has_predictor(&self) -> bool {
        false
    }
    /// The CaSSLe feature distiller paired with the method (`distiller = "auto"`).
    fn default_distiller(&self) -> &'static str;
    /// The temperature used when `loss.temperature` is negative (contrastive methods).
    fn default_temperature(&self) -> f64 {
        0.1
    }
    /// Method-specific config checks (e.g. a queue size).
    fn validate(&self, _cfg: &ExperimentConfig) -> Result<(), ConfigError> {
        Ok(())
    }
    /// Settings that are valid but known to go wrong with this method, as messages for the user.
    fn warnings(&self, _cfg: &ExperimentConfig) -> Vec<String> {
        Vec::new()
    }
    /// Build the per-run method object.
    fn build(&self, cx: &MethodContext<'_>) -> Result<Box<dyn SslMethod>, CoreError>;
}

/// The temperature of a method in a config: `loss.temperature` if positive, else the method's default.
pub fn temperature(factory: &dyn MethodFactory, cfg: &ExperimentConfig) -> f64 {
    if cfg.loss.temperature > 0.0 {
        cfg.loss.temperature
    } else {
        factory.default_temperature()
    }
}

/// The online predictor applied to a projection (train-mode BatchNorm); an error if the model has none.
pub fn predict(online: &Online, z: &Tensor) -> candle_core::Result<Tensor> {
    match &online.predictor {
        Some(p) => p.forward(z, BnMode::Train),
        None => candle_core::bail!("this method needs a predictor but the model has none"),
    }
}
