//! SSL methods behind one small trait, so an ablation swaps them by name (`--set method=simclr`).
//!
//! A method owns what is specific to it: its predictor (created in the online `VarMap` by
//! [`crate::network::Online`]), its momentum target (BYOL, MoCoV2+), its queue (MoCoV2+) and its loss on
//! the two views. The trainer calls [`SslMethod::loss`] once per step and [`SslMethod::after_step`] after
//! every optimiser step (EMA update, queue update).

use crate::error::CoreError;
use crate::kinds::{DistillerKind, MethodKind};
use crate::loss;
use crate::network::{NetworkSpec, Online, Target};
use crate::queue::KeyQueue;
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

/// One self-supervised method.
pub trait SslMethod: Send {
    /// Which method this is.
    fn kind(&self) -> MethodKind;
    /// The CaSSLe distiller paired with the method.
    fn default_distiller(&self) -> DistillerKind {
        self.kind().default_distiller()
    }
    /// L_FE^CT on the two views (scalar, differentiable w.r.t. the online model).
    fn loss(&mut self, online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor>;
    /// Called after every optimiser step; `step` of `total_steps` of the current task (EMA tau schedule).
    fn after_step(
        &mut self,
        online: &Online,
        step: usize,
        total_steps: usize,
    ) -> Result<(), CoreError>;
    /// Tensors to checkpoint (target weights, queue), with names unique to the method.
    fn state(&self) -> Result<Vec<(String, Tensor)>, CoreError>;
    /// Restore from [`SslMethod::state`]'s tensors.
    fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<(), CoreError>;
}

/// Hyper-parameters of the methods (from the config).
#[derive(Debug, Clone)]
pub struct MethodParams {
    /// NT-Xent / InfoNCE temperature.
    pub temperature: f64,
    /// EMA tau at the start of a task.
    pub base_tau: f64,
    /// EMA tau at the end of a task.
    pub final_tau: f64,
    /// MoCoV2+ queue size.
    pub queue_size: usize,
    /// Seed (queue initialisation).
    pub seed: u64,
}

impl MethodParams {
    /// The parameters a run's config gives (temperature: the method's default unless set).
    pub fn from_config(cfg: &crate::config::ExperimentConfig) -> Self {
        Self {
            temperature: cfg.ssl_temperature(),
            base_tau: cfg.train.base_tau,
            final_tau: cfg.train.final_tau,
            queue_size: cfg.loss.queue_size,
            seed: cfg.seed,
        }
    }
}

/// Build the method `kind` for an online model.
pub fn build_method(
    kind: MethodKind,
    params: &MethodParams,
    online: &Online,
    spec: &NetworkSpec,
    device: &Device,
) -> Result<Box<dyn SslMethod>, CoreError> {
    Ok(match kind {
        MethodKind::Byol => Box::new(Byol {
            target: Target::copy_of(online, spec, device)?,
            params: params.clone(),
        }),
        MethodKind::SimSiam => Box::new(Plain {
            kind,
            params: params.clone(),
        }),
        MethodKind::SimClr | MethodKind::VicReg | MethodKind::Barlow => Box::new(Plain {
            kind,
            params: params.clone(),
        }),
        MethodKind::MocoV2Plus => Box::new(MocoV2Plus {
            target: Target::copy_of(online, spec, device)?,
            queue: KeyQueue::new(
                params.queue_size,
                spec.projector.out_dim,
                params.seed,
                device,
            )?,
            pending: None,
            params: params.clone(),
        }),
    })
}

fn predict(online: &Online, z: &Tensor) -> candle_core::Result<Tensor> {
    match &online.predictor {
        Some(p) => p.forward(z, BnMode::Train),
        None => candle_core::bail!("this method needs a predictor but the model has none"),
    }
}

fn ema(
    target: &Target,
    online: &Online,
    p: &MethodParams,
    step: usize,
    total: usize,
) -> Result<(), CoreError> {
    let tau = kaizen_models::ema::cosine_tau(p.base_tau, p.final_tau, step, total);
    kaizen_models::ema::ema_update(&target.varmap, &online.varmap, &Target::ema_pairs(), tau)?;
    Ok(())
}

fn target_state(target: &Target) -> Result<Vec<(String, Tensor)>, CoreError> {
    Ok(crate::network::sorted_tensors(&target.varmap)?
        .into_iter()
        .map(|(k, t)| (format!("target.{k}"), t))
        .collect())
}

/// BYOL: byol(p1, z'2) + byol(p2, z'1) against the momentum target (a sum of both directions, as the official code).
struct Byol {
    target: Target,
    params: MethodParams,
}

impl SslMethod for Byol {
    fn kind(&self) -> MethodKind {
        MethodKind::Byol
    }
    fn loss(&mut self, online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor> {
        let p1 = predict(online, x.z1)?;
        let p2 = predict(online, x.z2)?;
        let t1 = self.target.project(x.x1)?;
        let t2 = self.target.project(x.x2)?;
        loss::byol(&p1, &t2)? + loss::byol(&p2, &t1)?
    }
    fn after_step(&mut self, online: &Online, step: usize, total: usize) -> Result<(), CoreError> {
        ema(&self.target, online, &self.params, step, total)
    }
    fn state(&self) -> Result<Vec<(String, Tensor)>, CoreError> {
        target_state(&self.target)
    }
    fn load_state(&mut self, t: &HashMap<String, Tensor>) -> Result<(), CoreError> {
        crate::network::load_vars(&self.target.varmap, t, "target.")
    }
}

/// Methods without a target or queue: SimCLR (NT-Xent), SimSiam (symmetric negative cosine with
/// stop-gradient, halved), VICReg (25/25/1), Barlow Twins (lambda 0.0051, scale 0.1).
struct Plain {
    kind: MethodKind,
    params: MethodParams,
}

impl SslMethod for Plain {
    fn kind(&self) -> MethodKind {
        self.kind
    }
    fn loss(&mut self, online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor> {
        match self.kind {
            MethodKind::SimClr => loss::nt_xent(x.z1, x.z2, self.params.temperature),
            MethodKind::SimSiam => {
                let p1 = predict(online, x.z1)?;
                let p2 = predict(online, x.z2)?;
                (loss::simsiam(&p1, x.z2)? + loss::simsiam(&p2, x.z1)?)? * 0.5
            }
            MethodKind::VicReg => loss::vicreg(x.z1, x.z2, 25.0, 25.0, 1.0),
            MethodKind::Barlow => loss::barlow_twins(x.z1, x.z2, 0.0051, 0.1),
            MethodKind::Byol | MethodKind::MocoV2Plus => {
                candle_core::bail!("{} needs a momentum target", self.kind)
            }
        }
    }
    fn after_step(
        &mut self,
        _online: &Online,
        _step: usize,
        _total: usize,
    ) -> Result<(), CoreError> {
        Ok(())
    }
    fn state(&self) -> Result<Vec<(String, Tensor)>, CoreError> {
        Ok(Vec::new())
    }
    fn load_state(&mut self, _t: &HashMap<String, Tensor>) -> Result<(), CoreError> {
        Ok(())
    }
}

/// MoCoV2+: symmetric InfoNCE of the online projections against the momentum keys of the other view and
/// a queue of past keys; after each step both views' keys enter the queue.
struct MocoV2Plus {
    target: Target,
    queue: KeyQueue,
    pending: Option<Tensor>,
    params: MethodParams,
}

impl SslMethod for MocoV2Plus {
    fn kind(&self) -> MethodKind {
        MethodKind::MocoV2Plus
    }
    fn loss(&mut self, _online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor> {
        let k1 = self.target.project(x.x1)?;
        let k2 = self.target.project(x.x2)?;
        let queue = self.queue.keys();
        let t = self.params.temperature;
        let l = ((loss::info_nce_queue(x.z1, &k2, &queue, t)?
            + loss::info_nce_queue(x.z2, &k1, &queue, t)?)?
            * 0.5)?;
        self.pending = Some(Tensor::cat(&[&k1, &k2], 0)?);
        Ok(l)
    }
    fn after_step(&mut self, online: &Online, step: usize, total: usize) -> Result<(), CoreError> {
        if let Some(k) = self.pending.take() {
            self.queue.push(&k)?;
        }
        ema(&self.target, online, &self.params, step, total)
    }
    fn state(&self) -> Result<Vec<(String, Tensor)>, CoreError> {
        let mut v = target_state(&self.target)?;
        for (k, t) in self.queue.state()? {
            v.push((format!("queue.{k}"), t));
        }
        Ok(v)
    }
    fn load_state(&mut self, t: &HashMap<String, Tensor>) -> Result<(), CoreError> {
        crate::network::load_vars(&self.target.varmap, t, "target.")?;
        let q: HashMap<String, Tensor> = t
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("queue.").map(|s| (s.to_string(), v.clone())))
            .collect();
        self.queue = KeyQueue::from_state(&q)?;
        Ok(())
    }
}
