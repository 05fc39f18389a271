//! Optimisers candle lacks, with exportable state: SGD with momentum and weight decay, LARS (solo-learn / CaSSLe
//! variant), and the linear-warm-up + cosine learning-rate schedule.
//!
//! Per parameter `p` with gradient `g` (parameters without a gradient in the `GradStore` are skipped entirely), with
//! `lr_g = lr * group.lr_scale`, `wd = group.weight_decay`, and `excluded = exclude_bias_n_norm && is_bias_or_norm(p)`:
//! - SGD, or a group with `lars == false`: `d = g + wd * p` (`d = g` when excluded);
//! - LARS: when not excluded and `|p| != 0` and `|g| != 0`: `r = eta * |p| / (|g| + wd * |p| + 1e-8)`, with
//!   `lars_clip`: `r = min(r / lr_g, 1)`; then `d = (g + wd * p) * r`. Otherwise `d = g` (no weight decay), exactly as
//!   solo-learn's `LARS` (`solo/utils/lars.py`), which CaSSLe and Kaizen use;
//! - momentum as `torch.optim.SGD`: `buf = d` on the first step, then `buf = momentum * buf + d`; `d = buf`;
//! - `p <- p - lr_g * d`.
//!
//! With momentum on f32 CPU tensors and the fast kernels enabled, the update runs in place through
//! [`crate::ops::sgd_momentum_update`] (same formula, no allocation); otherwise through candle ops.
//!
//! BN running statistics must never be given to an optimiser: build groups from [`crate::params::trainable`].

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{CandleContext, ModelError, Result};
use crate::ops;
use crate::params::is_bias_or_norm;

/// A set of parameters sharing a learning-rate scale and weight decay (e.g. the classifier with its own lr).
#[derive(Clone, Debug)]
pub struct ParamGroup {
    /// Group name (for logs and errors).
    pub name: String,
    /// `(full name, Var)` pairs; names must be unique across all groups (they key the optimiser state).
    pub vars: Vec<(String, Var)>,
    /// Multiplier of the scheduled learning rate for this group.
    pub lr_scale: f64,
    /// Weight decay of this group.
    pub weight_decay: f64,
    /// Whether LARS adaptation applies to this group (only with [`OptimizerKind::Lars`]).
    pub lars: bool,
}

/// Which update rule to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum and (coupled) weight decay, as `torch.optim.SGD`.
    Sgd,
    /// LARS as solo-learn: SGD momentum over trust-ratio-scaled gradients.
    Lars,
}

/// Optimiser hyper-parameters. TOML/JSON: `{kind = "lars", momentum = 0.9, weight_decay = 1e-5, lars_eta = 0.02,
/// lars_clip = true, exclude_bias_n_norm = true}`; missing keys take these defaults (solo-learn's CIFAR BYOL preset).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Update rule.
    pub kind: OptimizerKind,
    /// Momentum factor (0 disables the buffer).
    pub momentum: f64,
    /// Default weight decay for groups built with [`ParamGroup::with_defaults`].
    pub weight_decay: f64,
    /// LARS trust coefficient `eta`.
    pub lars_eta: f64,
    /// Clip the LARS ratio to `min(ratio / lr, 1)`.
    pub lars_clip: bool,
    /// Exclude biases and normalisation parameters from LARS adaptation and weight decay.
    pub exclude_bias_n_norm: bool,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Lars,
            momentum: 0.9,
            weight_decay: 1e-5,
            lars_eta: 0.02,
            lars_clip: true,
            exclude_bias_n_norm: true,
        }
    }
}

impl ParamGroup {
    /// A group with `cfg.weight_decay`, LARS on, and the given lr scale.
    pub fn with_defaults(
        name: &str,
        vars: Vec<(String, Var)>,
        lr_scale: f64,
        cfg: &OptimConfig,
    ) -> Self {
        Self {
            name: name.to_string(),
            vars,
            lr_scale,
            weight_decay: cfg.weight_decay,
            lars: true,
        }
    }
}

/// SGD-momentum / LARS optimiser over named parameter groups (see the module docs for the exact update).
#[derive(Debug)]
pub struct Optimizer {
    cfg: OptimConfig,
    groups: Vec<ParamGroup>,
    /// Momentum buffers keyed by parameter name.
    buffers: BTreeMap<String, Tensor>,
}

/// Suffix of momentum-buffer names in [`Optimizer::state`].
pub const MOMENTUM_SUFFIX: &str = ".momentum_buffer";

/// The squared L2 norm as an f64 scalar tensor, still on the tensor's device.
fn sq_norm(t: &Tensor) -> candle_core::Result<Tensor> {
    t.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()
}

fn norm(t: &Tensor) -> candle_core::Result<f64> {
    Ok(sq_norm(t)?.to_scalar::<f64>()?.sqrt())
}

impl Optimizer {
    /// Builds the optimiser; no state until the first step.
    pub fn new(cfg: OptimConfig, groups: Vec<ParamGroup>) -> Self {
        Self {
            cfg,
            groups,
            buffers: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    /// The parameter groups.
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// One update with scheduled learning rate `lr` (each group uses `lr * lr_scale`).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let cfg = self.cfg.clone();
        let gpu_norms = self.device_lars_norms(grads)?;
        for group in &self.groups {
            let lr_g = lr * group.lr_scale;
            let wd = group.weight_decay;
            for (name, var) in &group.vars {
                let Some(g) = grads.get(var.as_tensor()) else {
                    continue;
                };
                let ctx = || format!("optimiser step on `{name}` (group {})", group.name);
                let p = var.as_detached_tensor();
                let g = g.detach();
                let excluded = self.excluded(name, var);
                // The update is d = scale * (g + wd_eff * p): (wd_eff, scale) encode every rule of the module docs.
                let (wd_eff, scale) = if excluded {
                    (0.0, 1.0)
                } else if cfg.kind == OptimizerKind::Lars && group.lars {
                    let (pn, gn) = match gpu_norms.get(name.as_str()) {
                        Some(&norms) => norms,
                        None => (norm(&p).with_ctx(ctx)?, norm(&g).with_ctx(ctx)?),
                    };
                    if pn != 0.0 && gn != 0.0 {
                        let mut r = cfg.lars_eta * pn / (gn + wd * pn + 1e-8);
                        if cfg.lars_clip {
                            r = if lr_g > 0.0 { (r / lr_g).min(1.0) } else { 1.0 };
                        }
                        (wd, r)
                    } else {
                        (0.0, 1.0)
                    }
                } else {
                    (wd, 1.0)
                };
                let param = var.as_tensor();
                if cfg.momentum != 0.0 && param.is_contiguous() && ops::sgd_fused_available(param) {
                    // Fused in-place kernel; a zero buffer makes the first step buf = d, as torch.
                    if !self.buffers.contains_key(name) {
                        let zeros = p.zeros_like().with_ctx(ctx)?;
                        self.buffers.insert(name.clone(), zeros);
                    }
                    if let Some(buf) = self.buffers.get(name) {
                        ops::sgd_momentum_update(param, &g, buf, lr_g, cfg.momentum, wd_eff, scale)
                            .with_ctx(ctx)?;
                    }
                    continue;
                }
                let d = decayed(&g, &p, wd_eff)
                    .and_then(|d| if scale == 1.0 { Ok(d) } else { d * scale })
                    .with_ctx(ctx)?;
                let d = if cfg.momentum != 0.0 {
                    let buf = match self.buffers.get(name) {
                        Some(b) => ((b * cfg.momentum).and_then(|b| b + &d)).with_ctx(ctx)?,
                        None => d.copy().with_ctx(ctx)?,
                    };
                    self.buffers.insert(name.clone(), buf.clone());
                    buf
                } else {
                    d
                };
                let new = (d * lr_g).and_then(|u| &p - u).with_ctx(ctx)?;
                var.set(&new).with_ctx(ctx)?;
            }
        }
        Ok(())
    }

    /// Whether `exclude_bias_n_norm` leaves this parameter out of LARS adaptation and weight decay.
    fn excluded(&self, name: &str, var: &Var) -> bool {
        self.cfg.exclude_bias_n_norm && is_bias_or_norm(name, var.rank())
    }

    /// `(|p|, |g|)` of every LARS-adapted parameter that lives on a GPU, read back in one transfer: reading each
    /// norm on its own would wait for the device twice per parameter. Empty on the CPU with the fast kernels on
    /// (and without LARS), where [`Optimizer::step`] computes each norm where it needs it; the values are the same
    /// either way. With the fast kernels off the CPU takes this path too, so that the tests exercise it.
    fn device_lars_norms(&self, grads: &GradStore) -> Result<HashMap<String, (f64, f64)>> {
        let mut names = Vec::new();
        let mut sums = Vec::new();
        if self.cfg.kind != OptimizerKind::Lars {
            return Ok(HashMap::new());
        }
        for group in self.groups.iter().filter(|g| g.lars) {
            for (name, var) in &group.vars {
                let Some(g) = grads.get(var.as_tensor()) else {
                    continue;
                };
                if self.excluded(name, var)
                    || (var.device().is_cpu() && ops::fast_kernels_enabled())
                {
                    continue;
                }
                let ctx = || format!("LARS norms of `{name}` (group {})", group.name);
                sums.push(sq_norm(&var.as_detached_tensor()).with_ctx(ctx)?);
                sums.push(sq_norm(&g.detach()).with_ctx(ctx)?);
                names.push(name.clone());
            }
        }
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        let ctx = || "reading the LARS norms back from the device".to_string();
        let v = Tensor::stack(&sums, 0)
            .and_then(|t| t.to_vec1::<f64>())
            .with_ctx(ctx)?;
        Ok(names
            .into_iter()
            .zip(v.chunks_exact(2))
            .map(|(n, pg)| (n, (pg[0].sqrt(), pg[1].sqrt())))
            .collect())
    }

    /// The optimiser state: one `(param name + ".momentum_buffer", buffer)` per parameter that has one, sorted.
    /// The tensors share storage with the live buffers (the fused kernel updates them in place): serialise them before
    /// the next [`Optimizer::step`].
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.buffers
            .iter()
            .map(|(k, v)| (format!("{k}{MOMENTUM_SUFFIX}"), v.clone()))
            .collect()
    }

    /// Restores state written by [`Optimizer::state`]. Errors on a key that names no parameter of the groups or whose
    /// shape differs from the parameter's; parameters without a key start with no buffer (as before their first step).
    pub fn load_state(&mut self, s: &HashMap<String, Tensor>) -> Result<()> {
        let params: HashMap<&str, &Var> = self
            .groups
            .iter()
            .flat_map(|g| g.vars.iter().map(|(n, v)| (n.as_str(), v)))
            .collect();
        let mut buffers = BTreeMap::new();
        let mut keys: Vec<&String> = s.keys().collect();
        keys.sort();
        for key in keys {
            let origin = "optimiser state".to_string();
            let pname =
                key.strip_suffix(MOMENTUM_SUFFIX)
                    .ok_or_else(|| ModelError::UnexpectedTensor {
                        origin: origin.clone(),
                        name: key.clone(),
                    })?;
            let var = params
                .get(pname)
                .ok_or_else(|| ModelError::UnexpectedTensor {
                    origin: origin.clone(),
                    name: key.clone(),
                })?;
            let t = &s[key];
            if t.dims() != var.dims() {
                return Err(ModelError::ShapeMismatch {
                    origin,
                    name: key.clone(),
                    expected: var.dims().to_vec(),
                    got: t.dims().to_vec(),
                });
            }
            let t = t
                .to_device(var.device())
                .and_then(|t| t.to_dtype(var.dtype()))
                .and_then(|t| t.detach().contiguous()?.copy())
                .with_ctx(|| format!("loading optimiser state `{key}`"))?;
            buffers.insert(pname.to_string(), t);
        }
        self.buffers = buffers;
        Ok(())
    }
}

fn decayed(g: &Tensor, p: &Tensor, wd: f64) -> candle_core::Result<Tensor> {
    if wd == 0.0 {
        Ok(g.clone())
    } else {
        g + (p * wd)?
    }
}

/// Linear warm-up then cosine annealing, per step (pl_bolts' `LinearWarmupCosineAnnealingLR`, as solo-learn uses):
/// - `step < warmup_steps`: `warmup_start_lr + step * (base_lr - warmup_start_lr) / max(1, warmup_steps - 1)`
///   (reaches `base_lr` at `warmup_steps - 1`);
/// - otherwise: `min_lr + (base_lr - min_lr) * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps))) / 2`,
///   so `lr(warmup_steps) = base_lr` and `lr(total_steps) = min_lr`; steps past the end stay at `min_lr`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Number of warm-up steps (0: none).
    pub warmup_steps: usize,
    /// Total number of steps of the schedule.
    pub total_steps: usize,
    /// Learning rate at step 0 of the warm-up.
    pub warmup_start_lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
}

impl WarmupCosine {
    /// Learning rate at `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            let denom = self.warmup_steps.saturating_sub(1).max(1) as f64;
            return self.warmup_start_lr
                + step as f64 * (self.base_lr - self.warmup_start_lr) / denom;
        }
        if step >= self.total_steps {
            return self.min_lr;
        }
        let frac =
            (step - self.warmup_steps) as f64 / (self.total_steps - self.warmup_steps) as f64;
        self.min_lr
            + (self.base_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * frac).cos()) / 2.0
    }
}
