//! [`Layer`]: the one call shape of every part of a model, candle's `ModuleT` with a three-state BatchNorm
//! mode instead of a `train: bool` (training with running-statistics updates, batch statistics only, or
//! running statistics; see [`BnMode`]). The backbone, the heads and BatchNorm implement it, so an online
//! model, a momentum target and a frozen model run through the same code with different modes.

use crate::batch_norm::{BatchNorm, BnMode};
use crate::linear::Linear;
use crate::mlp::Mlp;
use crate::resnet::ResNet;
use candle_core::{Result, Tensor};

/// A model part run with a BatchNorm mode.
pub trait Layer {
    /// The part's output on `x` with BatchNorm layers in `mode`.
    fn forward_mode(&self, x: &Tensor, mode: BnMode) -> Result<Tensor>;
}

impl Layer for ResNet {
    fn forward_mode(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.forward(x, mode)
    }
}

impl Layer for Mlp {
    fn forward_mode(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.forward(x, mode)
    }
}

impl Layer for BatchNorm {
    fn forward_mode(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.forward(x, mode, false)
    }
}

/// A linear layer has no BatchNorm: the mode is ignored.
impl Layer for Linear {
    fn forward_mode(&self, x: &Tensor, _mode: BnMode) -> Result<Tensor> {
        self.forward(x)
    }
}

/// Layers in sequence, each with the same mode (e.g. a backbone then a projector).
impl<A: Layer, B: Layer> Layer for (A, B) {
    fn forward_mode(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.1.forward_mode(&self.0.forward_mode(x, mode)?, mode)
    }
}

/// A borrowed layer is a layer.
impl<L: Layer + ?Sized> Layer for &L {
    fn forward_mode(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        (**self).forward_mode(x, mode)
    }
}
