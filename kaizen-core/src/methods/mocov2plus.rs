//! MoCo v2+ (Chen et al. 2020): symmetric InfoNCE of the online projections against the momentum keys of
//! the other view and a queue of past keys (temperature 0.2 unless `loss.temperature` is set, queue
//! `loss.queue_size`); after each step both views' keys enter the queue. Distiller: `contrastive`.

use super::momentum::MomentumTarget;
use super::traits::{temperature, MethodContext, MethodFactory, SslInputs, SslMethod};
use crate::config::{ConfigError, ExperimentConfig};
use crate::error::CoreError;
use crate::loss;
use crate::network::{Online, ProjectorShape};
use crate::queue::KeyQueue;
use candle_core::Tensor;
use std::collections::HashMap;

/// The MoCo v2+ factory (`method = "mocov2plus"`).
pub struct MocoV2PlusFactory;

impl MethodFactory for MocoV2PlusFactory {
    fn name(&self) -> &'static str {
        "mocov2plus"
    }
    fn about(&self) -> &'static str {
        "MoCo v2+: momentum key encoder and a queue of negatives"
    }
    fn projector(&self) -> ProjectorShape {
        ProjectorShape {
            hidden_layers: 1,
            batch_norm: false,
        }
    }
    fn default_distiller(&self) -> &'static str {
        "contrastive"
    }
    fn default_temperature(&self) -> f64 {
        0.2
    }
    fn validate(&self, cfg: &ExperimentConfig) -> Result<(), ConfigError> {
        if cfg.loss.queue_size == 0 {
            return Err(ConfigError {
                key: "loss.queue_size".into(),
                reason: "MoCoV2+ needs a queue of at least 1 key".into(),
            });
        }
        Ok(())
    }
    fn build(&self, cx: &MethodContext<'_>) -> Result<Box<dyn SslMethod>, CoreError> {
        Ok(Box::new(MocoV2Plus {
            target: MomentumTarget::new(cx.cfg, cx.online, cx.spec, cx.device)?,
            queue: KeyQueue::new(
                cx.cfg.loss.queue_size,
                cx.spec.projector.out_dim,
                cx.cfg.seed,
                cx.device,
            )?,
            pending: None,
            temperature: temperature(self, cx.cfg),
        }))
    }
}

/// MoCo v2+ during a run: momentum target, queue, and the keys of the last step waiting to enter it.
pub struct MocoV2Plus {
    target: MomentumTarget,
    queue: KeyQueue,
    pending: Option<Tensor>,
    temperature: f64,
}

impl MocoV2Plus {
    /// The queue's keys (K, D), oldest slot first in storage order.
    pub fn queue_keys(&self) -> Tensor {
        self.queue.keys()
    }
}

impl SslMethod for MocoV2Plus {
    fn name(&self) -> &str {
        "mocov2plus"
    }
    fn loss(&mut self, _online: &Online, x: &SslInputs<'_>) -> candle_core::Result<Tensor> {
        let k1 = self.target.project(x.x1)?;
        let k2 = self.target.project(x.x2)?;
        let queue = self.queue.keys();
        let t = self.temperature;
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
        self.target.update(online, step, total)
    }
    fn state(&self) -> Result<Vec<(String, Tensor)>, CoreError> {
        let mut v = self.target.state()?;
        for (k, t) in self.queue.state()? {
            v.push((format!("queue.{k}"), t));
        }
        Ok(v)
    }
    fn load_state(&mut self, t: &HashMap<String, Tensor>) -> Result<(), CoreError> {
        self.target.load_state(t)?;
        let q: HashMap<String, Tensor> = t
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("queue.").map(|s| (s.to_string(), v.clone())))
            .collect();
        self.queue = KeyQueue::from_state(&q)?;
        Ok(())
    }
}
