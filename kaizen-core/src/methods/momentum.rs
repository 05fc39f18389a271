//! The momentum (EMA) target shared by BYOL and MoCo v2+: a copy of the online backbone + projector updated
//! with a cosine tau schedule after every step, checkpointed under `target.`.

use crate::config::ExperimentConfig;
use crate::error::CoreError;
use crate::network::{load_vars, sorted_tensors, NetworkSpec, Online, Target};
use candle_core::{Device, Tensor};
use std::collections::HashMap;

/// A momentum target with its tau schedule.
pub struct MomentumTarget {
    /// The target network.
    pub target: Target,
    /// tau at the start of a task.
    pub base_tau: f64,
    /// tau at the end of a task.
    pub final_tau: f64,
}

impl MomentumTarget {
    /// A target that starts as an exact copy of the online backbone + projector (`train.base_tau`,
    /// `train.final_tau` from the config).
    pub fn new(
        cfg: &ExperimentConfig,
        online: &Online,
        spec: &NetworkSpec,
        device: &Device,
    ) -> Result<Self, CoreError> {
        Ok(Self {
            target: Target::copy_of(online, spec, device)?,
            base_tau: cfg.train.base_tau,
            final_tau: cfg.train.final_tau,
        })
    }

    /// Detached projection of a batch by the target.
    pub fn project(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.target.project(x)
    }

    /// EMA update after step `step` of `total` of the current task.
    pub fn update(&self, online: &Online, step: usize, total: usize) -> Result<(), CoreError> {
        let tau = kaizen_models::ema::cosine_tau(self.base_tau, self.final_tau, step, total);
        kaizen_models::ema::ema_update(
            &self.target.varmap,
            &online.varmap,
            &Target::ema_pairs(),
            tau,
        )?;
        Ok(())
    }

    /// The target's tensors, named `target.<name>`.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>, CoreError> {
        Ok(sorted_tensors(&self.target.varmap)?
            .into_iter()
            .map(|(k, t)| (format!("target.{k}"), t))
            .collect())
    }

    /// Restore from [`MomentumTarget::state`]'s tensors.
    pub fn load_state(&self, tensors: &HashMap<String, Tensor>) -> Result<(), CoreError> {
        load_vars(&self.target.varmap, tensors, "target.")
    }
}
