//! [`BatchNorm`] over [`crate::ops`], with PyTorch's running-statistics semantics, and [`BnMode`].

use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use crate::ops;

/// How batch normalisation layers behave in a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BnMode {
    /// Normalise with the batch statistics and update the running statistics in place:
    /// `running_mean <- (1 - m) * running_mean + m * mean`, `running_var <- (1 - m) * running_var + m * var * n / (n - 1)`
    /// with `m = 0.1` and `n` the number of values per channel (PyTorch `BatchNorm` in `train()` mode).
    Train,
    /// Normalise with the batch statistics and leave the running statistics untouched (e.g. a frozen teacher run with
    /// `teacher_bn = "train"`). Works on models built from plain tensors.
    BatchStats,
    /// Normalise with the running statistics (PyTorch `eval()` mode).
    Eval,
}

/// PyTorch's default BatchNorm epsilon.
pub const BN_EPS: f64 = 1e-5;
/// PyTorch's default BatchNorm momentum (weight of the new batch statistic).
pub const BN_MOMENTUM: f64 = 0.1;

/// Batch normalisation over channel dimension 1 of `(B, C)` or `(B, C, H, W)` inputs.
///
/// Tensor names (relative to the `VarBuilder` it was built from) are PyTorch's: `weight` (gamma, trainable),
/// `bias` (beta, trainable), `running_mean`, `running_var` (state, never trainable: see [`crate::params`]).
/// All four live in the `VarMap` when built from one, so checkpoints and the EMA see the running statistics.
/// Built from plain tensors (`VarBuilder::from_tensors`, a frozen copy) the layer has no `Train` mode.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    /// The running statistics as `Var`s, present only when they are `VarMap` variables (so `Train` can update them).
    stats: Option<(Var, Var)>,
    num_features: usize,
    label: String,
}

impl BatchNorm {
    /// Builds the layer for `num_features` channels. `label` names the layer in error messages (e.g. `layer1.0.bn1`).
    /// New `VarMap` entries start at weight 1, bias 0, running mean 0, running var 1.
    pub fn new(num_features: usize, vb: VarBuilder, label: &str) -> Result<Self> {
        let weight = vb.get_with_hints(num_features, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(num_features, "bias", Init::Const(0.0))?;
        Self::with_affine(num_features, vb, label, weight, bias)
    }

    /// A layer without learnable scale and shift (PyTorch's `affine=False`): it only standardises, with batch
    /// statistics in `Train`/`BatchStats` and running statistics in `Eval`. Only `running_mean` and `running_var`
    /// are tensors of the `VarBuilder`.
    pub fn new_no_affine(num_features: usize, vb: VarBuilder, label: &str) -> Result<Self> {
        let weight = Tensor::ones(num_features, vb.dtype(), vb.device())?;
        let bias = Tensor::zeros(num_features, vb.dtype(), vb.device())?;
        Self::with_affine(num_features, vb, label, weight, bias)
    }

    /// The layer with the given scale and shift; the running statistics come from `vb`.
    fn with_affine(
        num_features: usize,
        vb: VarBuilder,
        label: &str,
        weight: Tensor,
        bias: Tensor,
    ) -> Result<Self> {
        let running_mean = vb.get_with_hints(num_features, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(num_features, "running_var", Init::Const(1.0))?;
        let stats = if running_mean.is_variable() && running_var.is_variable() {
            Some((
                Var::from_tensor(&running_mean)?,
                Var::from_tensor(&running_var)?,
            ))
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            running_mean,
            running_var,
            stats,
            num_features,
            label: label.to_string(),
        })
    }

    /// Number of channels.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// The running mean `(C,)` (detached view of the current values).
    pub fn running_mean(&self) -> Tensor {
        self.running_mean.detach()
    }

    /// The running (unbiased) variance `(C,)` (detached view of the current values).
    pub fn running_var(&self) -> Tensor {
        self.running_var.detach()
    }

    /// Normalises `x` (`(B, C)` or `(B, C, H, W)`), then applies ReLU when `relu` is set.
    /// `Train` errors on a layer built from plain tensors, and `Train`/`BatchStats` error when a channel has fewer
    /// than two values (PyTorch refuses that too).
    pub fn forward(&self, x: &Tensor, mode: BnMode, relu: bool) -> Result<Tensor> {
        let c = x.dim(1)?;
        if c != self.num_features {
            candle_core::bail!(
                "BatchNorm `{}` expects {} channels, got input of shape {:?}",
                self.label,
                self.num_features,
                x.dims()
            );
        }
        match mode {
            BnMode::Eval => ops::batch_norm_eval(
                x,
                &self.weight,
                &self.bias,
                &self.running_mean.detach(),
                &self.running_var.detach(),
                BN_EPS,
                relu,
            ),
            BnMode::BatchStats | BnMode::Train => {
                let n = x.elem_count() / c.max(1);
                if n < 2 {
                    candle_core::bail!(
                        "BatchNorm `{}`: batch statistics need more than 1 value per channel, input shape {:?}",
                        self.label,
                        x.dims()
                    );
                }
                if mode == BnMode::Train && self.stats.is_none() {
                    candle_core::bail!(
                        "BatchNorm `{}` was built from plain tensors (a frozen copy): it cannot run in Train mode, \
                         use Eval or BatchStats",
                        self.label
                    );
                }
                let (y, mean, var) =
                    ops::batch_norm_train(x, &self.weight, &self.bias, BN_EPS, relu)?;
                if let (BnMode::Train, Some((rm, rv))) = (mode, &self.stats) {
                    let unbias = n as f64 / (n as f64 - 1.0);
                    let new_mean = ((rm.as_detached_tensor() * (1.0 - BN_MOMENTUM))?
                        + (mean.detach() * BN_MOMENTUM)?)?;
                    let new_var = ((rv.as_detached_tensor() * (1.0 - BN_MOMENTUM))?
                        + (var.detach() * (BN_MOMENTUM * unbias))?)?;
                    rm.set(&new_mean.to_dtype(rm.dtype())?)?;
                    rv.set(&new_var.to_dtype(rv.dtype())?)?;
                }
                Ok(y)
            }
        }
    }
}
