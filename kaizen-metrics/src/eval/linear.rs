//! Linear probe on frozen, standardised features (protocol `linear`): [`LinearProbeConfig`], [`LinearProbe`] and
//! its standardisation helpers.

use super::check::{check_labels, dims2, Result};
use super::classifier::argmax_predictions;
use crate::MetricsError;
use candle_core::{DType, Device, Tensor};
use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Linear-probe settings: softmax regression on standardised frozen features, trained by mini-batch SGD with
/// momentum, L2 weight decay and a cosine learning-rate schedule (lr_s = lr * (1 + cos(pi * s / S)) / 2 at step s of
/// S), from zero weights. Batch order per epoch: Fisher-Yates shuffle from `ChaCha8Rng::seed_from_u64(seed)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearProbeConfig {
    /// Passes over the training features. Default 30.
    pub epochs: usize,
    /// Peak learning rate. Default 0.1.
    pub lr: f64,
    /// Mini-batch size (the last batch of an epoch may be smaller). Default 256.
    pub batch_size: usize,
    /// L2 weight decay on the weights (not the bias), added to the gradient. Default 5e-4.
    pub weight_decay: f64,
    /// SGD momentum (heavy ball). Default 0.9.
    pub momentum: f64,
    /// Seed of the batch order. Default 0.
    pub seed: u64,
    /// Standardise features with the training mean and std (per dimension) before the linear layer. Default true.
    pub standardize: bool,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        LinearProbeConfig {
            epochs: 30,
            lr: 0.1,
            batch_size: 256,
            weight_decay: 5e-4,
            momentum: 0.9,
            seed: 0,
            standardize: true,
        }
    }
}

impl LinearProbeConfig {
    /// Checks epochs >= 1, batch_size >= 1, lr > 0, weight_decay >= 0, momentum in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, problem: String| {
            Err(MetricsError::BadConfig {
                field: format!("linear_probe.{field}"),
                problem,
            })
        };
        if self.epochs == 0 {
            return bad("epochs", "must be >= 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be >= 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("must be > 0, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            );
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(
                "momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            );
        }
        Ok(())
    }
}

/// A trained linear probe: logits = ((x - mean) / std) W^T + b.
#[derive(Debug, Clone)]
pub struct LinearProbe {
    /// Weights `(C, D)`, f32.
    pub weight: Tensor,
    /// Bias `(C,)`, f32.
    pub bias: Tensor,
    /// Per-dimension training mean `(1, D)` (zeros without standardisation).
    pub mean: Tensor,
    /// Per-dimension training std `(1, D)`, dimensions with std < 1e-6 use 1 (ones without standardisation).
    pub std: Tensor,
}

impl LinearProbe {
    /// Trains a probe on frozen `features (N, D)` with `labels` (N entries `< num_classes`); see
    /// [`LinearProbeConfig`]. Deterministic for a given config, input and device. Errors on bad shapes, labels,
    /// config, or no training rows.
    pub fn train(
        features: &Tensor,
        labels: &[u16],
        num_classes: usize,
        cfg: &LinearProbeConfig,
    ) -> Result<LinearProbe> {
        cfg.validate()?;
        let (n, d) = dims2(features, "features")?;
        if n == 0 {
            return Err(MetricsError::BadTensor {
                name: "features".into(),
                problem: "no training rows".into(),
            });
        }
        if labels.len() != n {
            return Err(MetricsError::LengthMismatch {
                what: "labels (one per feature row)".into(),
                expected: n,
                found: labels.len(),
            });
        }
        check_labels(labels, num_classes, "labels")?;
        let dev = features.device().clone();
        let x = features
            .to_dtype(DType::F32)
            .map_err(MetricsError::candle("probe features to f32"))?;
        let (mean, std) = if cfg.standardize {
            column_stats(&x)?
        } else {
            unit_stats(d, &dev)?
        };
        let x = standardize(&x, &mean, &std)?;
        let c = MetricsError::candle;
        let mut w = Tensor::zeros((num_classes, d), DType::F32, &dev).map_err(c("probe init"))?;
        let mut b = Tensor::zeros(num_classes, DType::F32, &dev).map_err(c("probe init"))?;
        let mut vw = w.zeros_like().map_err(c("probe init"))?;
        let mut vb = b.zeros_like().map_err(c("probe init"))?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut order: Vec<u32> = (0..n as u32).collect();
        let steps_per_epoch = n.div_ceil(cfg.batch_size);
        let total = (cfg.epochs * steps_per_epoch) as f64;
        let mut step = 0usize;
        for _ in 0..cfg.epochs {
            for i in (1..n).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            for batch in order.chunks(cfg.batch_size) {
                let lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos());
                step += 1;
                let bsz = batch.len();
                let mut onehot = vec![0f32; bsz * num_classes];
                for (r, &idx) in batch.iter().enumerate() {
                    onehot[r * num_classes + labels[idx as usize] as usize] = 1.0;
                }
                let ctx = || c("probe SGD step");
                let idx = Tensor::from_slice(batch, bsz, &dev).map_err(ctx())?;
                let xb = x.index_select(&idx, 0).map_err(ctx())?;
                let yb = Tensor::from_vec(onehot, (bsz, num_classes), &dev).map_err(ctx())?;
                // z = xb W^T + b; softmax cross-entropy gradient G = (softmax(z) - y) / B.
                let z = xb
                    .matmul(&w.t().map_err(ctx())?)
                    .and_then(|z| z.broadcast_add(&b))
                    .map_err(ctx())?;
                let g = candle_nn::ops::softmax_last_dim(&z)
                    .and_then(|p| p - &yb)
                    .and_then(|g| g.affine(1.0 / bsz as f64, 0.0))
                    .map_err(ctx())?;
                // dW = G^T xb + wd * W; db = sum_n G.
                let gw = g
                    .t()
                    .and_then(|gt| gt.matmul(&xb))
                    .and_then(|gw| gw + w.affine(cfg.weight_decay, 0.0)?)
                    .map_err(ctx())?;
                let gb = g.sum(0).map_err(ctx())?;
                vw = (vw.affine(cfg.momentum, 0.0).and_then(|v| v + gw)).map_err(ctx())?;
                vb = (vb.affine(cfg.momentum, 0.0).and_then(|v| v + gb)).map_err(ctx())?;
                w = (&w - vw.affine(lr, 0.0).map_err(ctx())?).map_err(ctx())?;
                b = (&b - vb.affine(lr, 0.0).map_err(ctx())?).map_err(ctx())?;
            }
        }
        Ok(LinearProbe {
            weight: w,
            bias: b,
            mean,
            std,
        })
    }

    /// Logits `(N, C)` f32 for `features (N, D)`.
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        let (_, d) = dims2(features, "features")?;
        let (_, dw) = dims2(&self.weight, "probe weight")?;
        if d != dw {
            return Err(MetricsError::BadTensor {
                name: "features".into(),
                problem: format!("feature dimension {d}, the probe was trained on {dw}"),
            });
        }
        let x = features
            .to_dtype(DType::F32)
            .map_err(MetricsError::candle("probe features to f32"))?;
        let x = standardize(&x, &self.mean, &self.std)?;
        x.matmul(
            &self
                .weight
                .t()
                .map_err(MetricsError::candle("probe logits"))?,
        )
        .and_then(|z| z.broadcast_add(&self.bias))
        .map_err(MetricsError::candle("probe logits"))
    }

    /// Top-1 predictions over all classes for `features (N, D)`.
    pub fn predict(&self, features: &Tensor) -> Result<Vec<u16>> {
        argmax_predictions(&self.logits(features)?, None)
    }
}

/// Per-column mean and std (population) of `x (N, D)`; std < 1e-6 is replaced by 1.
fn column_stats(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let c = MetricsError::candle("probe standardisation stats");
    let n = x.dims()[0] as f64;
    let mean = x
        .sum_keepdim(0)
        .and_then(|s| s.affine(1.0 / n, 0.0))
        .map_err(MetricsError::candle("probe standardisation stats"))?;
    let var = x
        .broadcast_sub(&mean)
        .and_then(|d| d.sqr())
        .and_then(|s| s.sum_keepdim(0))
        .and_then(|s| s.affine(1.0 / n, 0.0))
        .map_err(MetricsError::candle("probe standardisation stats"))?;
    let std: Vec<f32> = var
        .flatten_all()
        .and_then(|v| v.to_vec1::<f32>())
        .map_err(MetricsError::candle("probe standardisation stats"))?
        .into_iter()
        .map(|v| if v.sqrt() < 1e-6 { 1.0 } else { v.sqrt() })
        .collect();
    let d = std.len();
    let std = Tensor::from_vec(std, (1, d), x.device()).map_err(c)?;
    Ok((mean, std))
}

/// Mean 0 and std 1 for every dimension (no standardisation).
fn unit_stats(d: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
    let c = || MetricsError::candle("probe unit stats");
    Ok((
        Tensor::zeros((1, d), DType::F32, dev).map_err(c())?,
        Tensor::ones((1, d), DType::F32, dev).map_err(c())?,
    ))
}

/// (x - mean) / std, broadcasting `(1, D)` over rows.
fn standardize(x: &Tensor, mean: &Tensor, std: &Tensor) -> Result<Tensor> {
    x.broadcast_sub(mean)
        .and_then(|d| d.broadcast_div(std))
        .map_err(MetricsError::candle("probe standardise"))
}
