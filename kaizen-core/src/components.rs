//! The trainable parts of a run built from a config and a [`Registry`]: network sizes, the online model,
//! the SSL method, the strategy and its loss terms. The trainer, `kaizen bench`, the step twin and the
//! examples all build them here, so a step outside the trainer is the trainer's step.

use crate::config::ExperimentConfig;
use crate::error::CoreError;
use crate::methods::{MethodContext, SslMethod};
use crate::network::{Frozen, NetworkSpec, Online};
use crate::registry::Registry;
use crate::strategy::Strategy;
use crate::terms::{LossTerm, StepModels, TermSetup};
use candle_core::Device;
use std::sync::Arc;

/// The trainable parts of one run.
pub struct RunModels {
    /// Sizes of every part.
    pub spec: NetworkSpec,
    /// The online model, initialised from the config's seed.
    pub online: Online,
    /// The SSL method (momentum target, queue).
    pub method: Box<dyn SslMethod>,
    /// The strategy.
    pub strategy: Arc<dyn Strategy>,
    /// The strategy's loss terms, in order.
    pub terms: Vec<Box<dyn LossTerm>>,
    /// The resolved feature distiller's name.
    pub distiller: &'static str,
}

impl RunModels {
    /// Build every part for images of `in_channels` channels and a stream of `num_classes` classes. The
    /// config is checked against the registry first.
    pub fn build(
        registry: &Registry,
        cfg: &ExperimentConfig,
        in_channels: usize,
        num_classes: usize,
        device: &Device,
    ) -> Result<Self, CoreError> {
        registry.validate(cfg)?;
        let spec = NetworkSpec::new(cfg, registry.heads(cfg)?, in_channels, num_classes)?;
        let online = Online::new(&spec, cfg.seed, device)?;
        let method = registry.method(&cfg.method)?.build(&MethodContext {
            cfg,
            online: &online,
            spec: &spec,
            device,
        })?;
        let strategy = registry.strategy(&cfg.strategy)?;
        let distiller = registry.distiller_for(cfg)?;
        let terms = strategy.terms(&TermSetup { cfg, distiller });
        Ok(Self {
            spec,
            online,
            method,
            strategy,
            terms,
            distiller: distiller.name(),
        })
    }

    /// The models of a step (with `frozen`, the previous-task model if any) and the terms, borrowed
    /// together.
    pub fn step_parts<'a>(
        &'a mut self,
        frozen: Option<&'a Frozen>,
    ) -> (StepModels<'a>, &'a mut [Box<dyn LossTerm>]) {
        (
            StepModels {
                online: &self.online,
                method: self.method.as_mut(),
                frozen,
            },
            &mut self.terms,
        )
    }
}
