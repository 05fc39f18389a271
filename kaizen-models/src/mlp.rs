//! [`Mlp`] heads (projector, predictor, distillation predictor, classifier) and [`mask_unseen`].

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::batch_norm::{BatchNorm, BnMode};
use crate::error::{CandleContext, ModelError, Result};
use crate::linear::Linear;

/// MLP head configuration. JSON/TOML: `{"in_dim": 512, "hidden": 4096, "out_dim": 256, "hidden_layers": 1, "batch_norm": true}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Input dimension.
    pub in_dim: usize,
    /// Hidden dimension (ignored when `hidden_layers == 0`).
    pub hidden: usize,
    /// Output dimension.
    pub out_dim: usize,
    /// Number of hidden Linear-(BN)-ReLU blocks: 0 (a single linear layer), 1 or 2.
    pub hidden_layers: usize,
    /// Whether every hidden Linear is followed by BatchNorm.
    pub batch_norm: bool,
    /// Standardise the input first with a BatchNorm without scale and shift (batch statistics while training,
    /// running statistics in eval mode). Absent in older checkpoints' manifests: `false`.
    #[serde(default)]
    pub input_norm: bool,
}

impl MlpConfig {
    /// The BYOL-style head `Linear(in, hidden)-BN-ReLU-Linear(hidden, out)`.
    pub fn projector(in_dim: usize, hidden: usize, out_dim: usize) -> Self {
        Self {
            in_dim,
            hidden,
            out_dim,
            hidden_layers: 1,
            batch_norm: true,
            input_norm: false,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: &str| {
            Err(ModelError::Config {
                key: key.into(),
                reason: reason.into(),
            })
        };
        if self.in_dim == 0 || self.out_dim == 0 || (self.hidden_layers > 0 && self.hidden == 0) {
            return bad("mlp", "in_dim, out_dim and hidden must be at least 1");
        }
        if self.hidden_layers > 2 {
            return bad("hidden_layers", "must be 0, 1 or 2");
        }
        Ok(())
    }
}

/// `Linear-(BN)-ReLU-...-Linear`, named like a PyTorch `nn.Sequential`: with BN and one hidden layer the tensors are
/// `0.weight/bias` (Linear), `1.weight/bias/running_mean/running_var` (BN), `3.weight/bias` (Linear); two hidden layers
/// add `4.*` (BN) and end with `6.*`; without BN the indices are `0`, `2` (and `4`). Zero hidden layers: just `0.*`.
/// With `input_norm`, index `0` is the input BatchNorm (`0.running_mean`, `0.running_var`; PyTorch's
/// `BatchNorm1d(in_dim, affine=False)`) and every other index moves up by one.
#[derive(Clone, Debug)]
pub struct Mlp {
    input_norm: Option<BatchNorm>,
    hidden: Vec<(Linear, Option<BatchNorm>)>,
    last: Linear,
    cfg: MlpConfig,
}

impl Mlp {
    /// Builds the head; new `VarMap` entries need [`crate::init::init_vars`].
    pub fn new(cfg: &MlpConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let build = || -> candle_core::Result<Self> {
            let step = if cfg.batch_norm { 3 } else { 2 };
            let first = usize::from(cfg.input_norm);
            let input_norm = if cfg.input_norm {
                Some(BatchNorm::new_no_affine(cfg.in_dim, vb.pp(0), "mlp.0")?)
            } else {
                None
            };
            let mut hidden = Vec::with_capacity(cfg.hidden_layers);
            let mut din = cfg.in_dim;
            for i in 0..cfg.hidden_layers {
                let idx = first + i * step;
                let lin = Linear::new(din, cfg.hidden, vb.pp(idx))?;
                let bn = if cfg.batch_norm {
                    Some(BatchNorm::new(
                        cfg.hidden,
                        vb.pp(idx + 1),
                        &format!("mlp.{}", idx + 1),
                    )?)
                } else {
                    None
                };
                hidden.push((lin, bn));
                din = cfg.hidden;
            }
            let last = Linear::new(din, cfg.out_dim, vb.pp(first + cfg.hidden_layers * step))?;
            Ok(Self {
                input_norm,
                hidden,
                last,
                cfg: cfg.clone(),
            })
        };
        build().ctx("building MLP head")
    }

    /// The configuration.
    pub fn config(&self) -> &MlpConfig {
        &self.cfg
    }

    /// `x: (B, in_dim) -> (B, out_dim)`.
    pub fn forward(&self, x: &Tensor, mode: BnMode) -> candle_core::Result<Tensor> {
        self.last.forward(&self.hidden_activations(x, mode)?)
    }

    /// The input of the last linear layer: the last hidden block's output after its ReLU, `(B, hidden)`
    /// (`x` itself when the head has no hidden layer). Dead units show as columns that are zero for every input.
    pub fn hidden_activations(&self, x: &Tensor, mode: BnMode) -> candle_core::Result<Tensor> {
        let mut h = match &self.input_norm {
            Some(bn) => bn.forward(x, mode, false)?,
            None => x.clone(),
        };
        for (lin, bn) in &self.hidden {
            h = lin.forward(&h)?;
            h = match bn {
                Some(bn) => bn.forward(&h, mode, true)?,
                None => h.relu()?,
            };
        }
        Ok(h)
    }
}

/// Value given to the logits of not-yet-seen classes by [`mask_unseen`] (finite, so softmax never produces NaN).
pub const MASKED_LOGIT: f64 = -1e9;

/// Replaces the logits of classes with `seen[c] == false` by [`MASKED_LOGIT`]; `logits: (B, C)`, `seen.len() == C`.
/// Masked entries get zero gradient.
pub fn mask_unseen(logits: &Tensor, seen: &[bool]) -> candle_core::Result<Tensor> {
    let (b, c) = logits.dims2()?;
    if seen.len() != c {
        candle_core::bail!(
            "mask_unseen: {} class flags for logits of shape ({b}, {c})",
            seen.len()
        );
    }
    let mask: Vec<u8> = seen.iter().map(|&s| u8::from(s)).collect();
    let mask = Tensor::from_vec(mask, (1, c), logits.device())?.broadcast_as((b, c))?;
    let fill = Tensor::full(MASKED_LOGIT, (b, c), logits.device())?.to_dtype(logits.dtype())?;
    mask.where_cond(logits, &fill)
}
