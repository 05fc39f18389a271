//! ResNet-18 with a width multiplier and torchvision tensor names, with the CIFAR stem (`resnet18`) or the ImageNet
//! stem (`resnet18_imagenet`).
//!
//! Layout: `conv1` 3x3 stride 1 (padding `stem_padding`) -> `bn1` -> ReLU (no max-pool) for `resnet18`; `conv1` 7x7
//! stride 2 padding 3 -> `bn1` -> ReLU -> 3x3 max-pool stride 2 padding 1 for `resnet18_imagenet` (torchvision's
//! `resnet18` exactly, at width 64: 224x224 inputs give 112x112 after the stem, 56x56 after the max-pool and 7x7
//! before the global average pool); then `layer1..layer4`, two
//! `BasicBlock`s each, widths `w, 2w, 4w, 8w`, first-block strides `1, 2, 2, 2`, a 1x1 conv + BN shortcut
//! (`downsample.0`, `downsample.1`) wherever the shape changes, and a global average pool: `(B, C, H, W) -> (B, 8w)`.
//! At `width = 64`, `in_channels = 3` the tensors are exactly torchvision's `resnet18` with the CIFAR stem
//! (`conv1.weight`, `bn1.running_mean`, `layer1.0.conv1.weight`, `layer2.0.downsample.0.weight`, ...) without `fc`
//! and without `num_batches_tracked`.

use std::collections::BTreeMap;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::batch_norm::{BatchNorm, BnMode};
use crate::error::{CandleContext, ModelError, Result};
use crate::ops;

/// Backbone architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arch {
    /// CIFAR ResNet-18 (`"resnet18"` in configs and on the command line): 3x3 stride-1 stem, no max-pool.
    #[serde(rename = "resnet18")]
    ResNet18,
    /// ImageNet ResNet-18 (`"resnet18_imagenet"`): 7x7 stride-2 stem and a 3x3 stride-2 max-pool, as torchvision.
    #[serde(rename = "resnet18_imagenet")]
    ResNet18ImageNet,
}

impl Arch {
    /// Every architecture's name, for help texts and errors.
    pub const NAMES: [&'static str; 2] = ["resnet18", "resnet18_imagenet"];
}

impl FromStr for Arch {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "resnet18" => Ok(Arch::ResNet18),
            "resnet18_imagenet" => Ok(Arch::ResNet18ImageNet),
            other => Err(ModelError::Config {
                key: "arch".into(),
                reason: format!(
                    "unknown architecture `{other}` (known: {})",
                    Arch::NAMES.join(", ")
                ),
            }),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arch::ResNet18 => f.write_str("resnet18"),
            Arch::ResNet18ImageNet => f.write_str("resnet18_imagenet"),
        }
    }
}

/// Backbone configuration. JSON/TOML layout: `{"arch": "resnet18", "width": 64, "in_channels": 3, "stem_padding": 1}`
/// (missing keys take these defaults; unknown keys are rejected).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResNetConfig {
    /// Architecture.
    pub arch: Arch,
    /// Width of the first stage `w`; stages are `w, 2w, 4w, 8w` and the feature dimension is `8w` (paper: 64).
    pub width: usize,
    /// Input channels (3 for CIFAR, 1 for Fashion-MNIST).
    pub in_channels: usize,
    /// Padding of the 3x3 stem convolution of `resnet18` (1 keeps the spatial size); the ImageNet stem's is 3.
    pub stem_padding: usize,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self {
            arch: Arch::ResNet18,
            width: 64,
            in_channels: 3,
            stem_padding: 1,
        }
    }
}

impl ResNetConfig {
    /// Checks that every size is usable.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 {
            return Err(ModelError::Config {
                key: "width".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.in_channels == 0 {
            return Err(ModelError::Config {
                key: "in_channels".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.stem_padding > 3 {
            return Err(ModelError::Config {
                key: "stem_padding".into(),
                reason: format!(
                    "{} is larger than the 3x3 kernel allows (0..=3)",
                    self.stem_padding
                ),
            });
        }
        Ok(())
    }

    /// Feature dimension `8 * width`.
    pub fn out_dim(&self) -> usize {
        8 * self.width
    }

    /// Every tensor of the backbone with its shape, sorted by (torchvision) name, without any prefix.
    pub fn tensor_shapes(&self) -> Result<BTreeMap<String, Vec<usize>>> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        ResNet::new(self, vb)?;
        let data = varmap.data().lock().map_err(|_| ModelError::Config {
            key: "backbone".into(),
            reason: "VarMap lock poisoned".into(),
        })?;
        Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.dims().to_vec()))
            .collect())
    }
}

/// A 3x3 (or 1x1) convolution without bias: tensor `weight` `(Cout, Cin, K, K)`.
#[derive(Clone, Debug)]
struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints((cout, cin, k, k), "weight", Init::Const(0.0))?;
        Ok(Self {
            weight,
            stride,
            padding,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::conv2d(x, &self.weight, self.stride, self.padding)
    }
}

/// torchvision `BasicBlock`: conv3x3-BN-ReLU-conv3x3-BN, plus identity or 1x1-conv+BN shortcut, then ReLU.
#[derive(Clone, Debug)]
struct BasicBlock {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    downsample: Option<(Conv, BatchNorm)>,
}

impl BasicBlock {
    fn new(
        cin: usize,
        cout: usize,
        stride: usize,
        vb: VarBuilder,
        label: &str,
    ) -> candle_core::Result<Self> {
        let conv1 = Conv::new(cin, cout, 3, stride, 1, vb.pp("conv1"))?;
        let bn1 = BatchNorm::new(cout, vb.pp("bn1"), &format!("{label}.bn1"))?;
        let conv2 = Conv::new(cout, cout, 3, 1, 1, vb.pp("conv2"))?;
        let bn2 = BatchNorm::new(cout, vb.pp("bn2"), &format!("{label}.bn2"))?;
        let downsample = if stride != 1 || cin != cout {
            let ds = vb.pp("downsample");
            Some((
                Conv::new(cin, cout, 1, stride, 0, ds.pp("0"))?,
                BatchNorm::new(cout, ds.pp("1"), &format!("{label}.downsample.1"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1,
            bn1,
            conv2,
            bn2,
            downsample,
        })
    }

    fn forward(&self, x: &Tensor, mode: BnMode) -> candle_core::Result<Tensor> {
        let h = self.bn1.forward(&self.conv1.forward(x)?, mode, true)?;
        let h = self.bn2.forward(&self.conv2.forward(&h)?, mode, false)?;
        let skip = match &self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(x)?, mode, false)?,
            None => x.clone(),
        };
        ops::add_relu(&h, &skip)
    }
}

/// torchvision's stem max-pool (3x3, stride 2, padding 1) on a non-negative input (it follows a ReLU): padding with
/// zeros is then the same as PyTorch's padding with -inf, since no window's maximum is below 0. Written as the
/// element-wise maximum of the nine stride-2 shifted views, because candle's own max-pool has no backward pass for
/// overlapping windows.
fn max_pool_3x3_s2_p1(h: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, height, width) = h.dims4()?;
    let (ho, wo) = ((height - 1) / 2 + 1, (width - 1) / 2 + 1);
    // Pad 1 before and enough after that every shifted view has 2 * out rows / columns.
    let p = h
        .pad_with_zeros(2, 1, (2 * ho + 1).saturating_sub(height))?
        .pad_with_zeros(3, 1, (2 * wo + 1).saturating_sub(width))?;
    let mut out: Option<Tensor> = None;
    for di in 0..3 {
        let rows = every_other(&p.narrow(2, di, 2 * ho)?, 2)?;
        for dj in 0..3 {
            let v = every_other(&rows.narrow(3, dj, 2 * wo)?, 3)?;
            out = Some(match out {
                None => v,
                Some(m) => m.maximum(&v)?,
            });
        }
    }
    out.ok_or_else(|| candle_core::Error::Msg("empty max-pool".into()))
}

/// Elements 0, 2, 4, ... of dimension `dim` (of even length) of a 4-D tensor.
fn every_other(x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let n = dims[dim] / 2;
    dims[dim] = n;
    dims.insert(dim + 1, 2);
    x.reshape(dims)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
}

/// ResNet-18 backbone (see the module docs for the layout and names).
#[derive(Clone, Debug)]
pub struct ResNet {
    cfg: ResNetConfig,
    conv1: Conv,
    bn1: BatchNorm,
    blocks: Vec<BasicBlock>,
}

impl ResNet {
    /// Builds the backbone. Tensor names are torchvision's relative to `vb` (use `vb.pp("backbone")` for checkpoints).
    /// On a `VarMap` new tensors start at zero (BN weight/var at one): call [`crate::init::init_vars`] afterwards.
    /// From plain tensors (`VarBuilder::from_tensors`) a missing or misshapen tensor is an error naming it.
    pub fn new(cfg: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let build = || -> candle_core::Result<Self> {
            let w = cfg.width;
            let (k, stride, pad) = match cfg.arch {
                Arch::ResNet18 => (3, 1, cfg.stem_padding),
                Arch::ResNet18ImageNet => (7, 2, 3),
            };
            let conv1 = Conv::new(cfg.in_channels, w, k, stride, pad, vb.pp("conv1"))?;
            let bn1 = BatchNorm::new(w, vb.pp("bn1"), "bn1")?;
            let mut blocks = Vec::with_capacity(8);
            let mut cin = w;
            for (i, (mult, stride)) in [(1, 1), (2, 2), (4, 2), (8, 2)].into_iter().enumerate() {
                let cout = w * mult;
                let layer = vb.pp(format!("layer{}", i + 1));
                for b in 0..2 {
                    let label = format!("layer{}.{b}", i + 1);
                    let (bin, bstride) = if b == 0 { (cin, stride) } else { (cout, 1) };
                    blocks.push(BasicBlock::new(bin, cout, bstride, layer.pp(b), &label)?);
                }
                cin = cout;
            }
            Ok(Self {
                cfg: cfg.clone(),
                conv1,
                bn1,
                blocks,
            })
        };
        build().with_ctx(|| format!("building {} width {}", cfg.arch, cfg.width))
    }

    /// The configuration this backbone was built from.
    pub fn config(&self) -> &ResNetConfig {
        &self.cfg
    }

    /// Feature dimension `8 * width`.
    pub fn out_dim(&self) -> usize {
        self.cfg.out_dim()
    }

    /// `x: (B, in_channels, H, W) f32 -> (B, 8w)` pooled features. Any `H, W >= 1` works (28x28, 32x32, ...).
    pub fn forward(&self, x: &Tensor, mode: BnMode) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != self.cfg.in_channels {
            candle_core::bail!(
                "ResNet expects input (B, {}, H, W), got shape {:?}",
                self.cfg.in_channels,
                dims
            );
        }
        let mut h = self.bn1.forward(&self.conv1.forward(x)?, mode, true)?;
        if self.cfg.arch == Arch::ResNet18ImageNet {
            h = max_pool_3x3_s2_p1(&h)?;
        }
        for block in &self.blocks {
            h = block.forward(&h, mode)?;
        }
        h.flatten_from(2)?.mean(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stem_pool_on_a_relu_output_is_torch_s_pool_with_minus_infinity_padding() {
        let dev = Device::Cpu;
        let h = Tensor::randn(0f32, 1.0, (2, 3, 9, 8), &dev)
            .unwrap()
            .relu()
            .unwrap();
        let got = max_pool_3x3_s2_p1(&h).unwrap();
        // PyTorch pads with -inf: build that padding explicitly.
        let inf = |dims: (usize, usize, usize, usize)| {
            Tensor::full(f32::NEG_INFINITY, dims, &dev).unwrap()
        };
        let rows = Tensor::cat(&[&inf((2, 3, 1, 8)), &h, &inf((2, 3, 1, 8))], 2).unwrap();
        let padded = Tensor::cat(&[&inf((2, 3, 11, 1)), &rows, &inf((2, 3, 11, 1))], 3).unwrap();
        let want = padded.max_pool2d_with_stride((3, 3), (2, 2)).unwrap();
        assert_eq!(got.dims(), [2, 3, 5, 4]);
        assert_eq!(
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
