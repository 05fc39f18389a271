//! Backbone export / import in torchvision's layout.
//!
//! Our checkpoints hold the backbone under [`BACKBONE_PREFIX`] (`backbone.conv1.weight`, ...). The torchvision layout
//! is the same names without the prefix, plus one int64 scalar `num_batches_tracked` per BatchNorm and a `fc` head.
//! [`export_backbone`] writes the former into the latter (with `num_batches_tracked = 0`, no `fc`), which a PyTorch
//! CIFAR ResNet-18 loads with `load_state_dict(strict=True)`; [`import_backbone`] does the reverse, ignoring
//! `num_batches_tracked` and `fc.*`.

use candle_core::{DType, Tensor};

use crate::checkpoint::{add_prefix, check_against, expected_backbone, strip_prefix, NamedTensors};
use crate::error::{CandleContext, Result};
use crate::resnet::ResNetConfig;

/// Prefix of the backbone tensors in kaizen checkpoints.
pub const BACKBONE_PREFIX: &str = "backbone.";

/// The torchvision-named backbone of a kaizen checkpoint's tensors (any other prefixes are ignored), checked against
/// `cfg`; `origin` names the checkpoint in errors. Adds `<bn>.num_batches_tracked` (int64 scalar 0) for every BN.
pub fn export_backbone(
    tensors: &NamedTensors,
    cfg: &ResNetConfig,
    origin: &str,
) -> Result<NamedTensors> {
    let bb = strip_prefix(tensors, BACKBONE_PREFIX);
    check_against(origin, &bb, &expected_backbone(cfg, "")?)?;
    let mut out = NamedTensors::new();
    for (name, t) in bb {
        if let Some(stem) = name.strip_suffix("running_mean") {
            let nbt = Tensor::new(0i64, t.device())
                .with_ctx(|| format!("{origin}: num_batches_tracked"))?;
            out.insert(format!("{stem}num_batches_tracked"), nbt);
        }
        out.insert(name, t);
    }
    Ok(out)
}

/// Reads a torchvision-named backbone (as PyTorch's `state_dict()` saved to safetensors): drops `fc.*` and
/// `*.num_batches_tracked`, strips a leading `backbone.` or `module.` if every remaining name carries it, converts
/// floating tensors to f32, checks the result against `cfg` (error naming the first missing, extra or misshapen
/// tensor, with `origin` = the file) and returns it under [`BACKBONE_PREFIX`].
pub fn import_backbone(
    tensors: &NamedTensors,
    cfg: &ResNetConfig,
    origin: &str,
) -> Result<NamedTensors> {
    let mut kept: NamedTensors = tensors
        .iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    for p in [BACKBONE_PREFIX, "module."] {
        if !kept.is_empty() && kept.keys().all(|n| n.starts_with(p)) {
            kept = strip_prefix(&kept, p);
        }
    }
    let mut out = NamedTensors::new();
    for (name, t) in kept {
        if name.starts_with("fc.") {
            continue;
        }
        let t = match t.dtype() {
            DType::F16 | DType::BF16 | DType::F64 => t
                .to_dtype(DType::F32)
                .with_ctx(|| format!("{origin}: converting `{name}` to f32"))?,
            _ => t,
        };
        out.insert(name, t);
    }
    check_against(origin, &out, &expected_backbone(cfg, "")?)?;
    Ok(add_prefix(&out, BACKBONE_PREFIX))
}
