//! [`Linear`]: `y = x W^T + b` with PyTorch's tensor names and layout.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// Fully connected layer. Tensors: `weight` `(out, in)`, `bias` `(out,)` (PyTorch `nn.Linear` layout).
/// New `VarMap` entries start at zero; fill them with [`crate::init::init_vars`].
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Builds a `in_dim -> out_dim` layer with bias.
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", Init::Const(0.0))?;
        let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    /// `x: (B, in) -> (B, out)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::ops::linear(x, &self.weight, &self.bias)
    }
}
