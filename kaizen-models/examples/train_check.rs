//! Two SGD training steps of a CIFAR ResNet-18 + linear head, for the PyTorch cross-check in
//! `scripts/compare_features.py --train-check` (which writes the input file and compares the output).
//!
//! Usage: `cargo run --release -p kaizen-models --example train_check -- IN.safetensors OUT.safetensors WIDTH [LR]`
//! IN holds `backbone.*` and `head.0.*` tensors (torch names), `x` [B,3,H,W] f32 and `y` [B] i64. OUT holds `loss0`,
//! `loss1`, `feats0` (train-mode features of step 0), `grad0.<param>` (gradients of step 0) and every model tensor after the two steps (running statistics
//! included). Set `KAIZEN_TRAIN_CHECK_F64=1` to train in f64 (reference ops), and `KAIZEN_REFERENCE_KERNELS=1` to run candle's reference ops instead of the fast kernels. SGD: lr LR (default 0.1), momentum 0.9, weight decay 5e-4 on every parameter (torch.optim.SGD semantics).

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use kaizen_models::checkpoint::{load_plain, restore_varmap, save_plain, varmap_tensors};
use kaizen_models::optim::{OptimConfig, Optimizer, OptimizerKind, ParamGroup};
use kaizen_models::params::trainable;
use kaizen_models::{BnMode, Mlp, MlpConfig, ResNet, ResNetConfig};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 4 || args.len() == 5,
        "usage: train_check IN.safetensors OUT.safetensors WIDTH [LR]"
    );
    let lr: f64 = args
        .get(4)
        .map(|s| s.parse())
        .transpose()
        .context("LR")?
        .unwrap_or(0.1);
    let (input, out) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let width: usize = args[3].parse().context("WIDTH")?;
    if std::env::var_os("KAIZEN_REFERENCE_KERNELS").is_some() {
        // A/B check: candle compositions instead of the fast kernels (conv, BN and the fused SGD update).
        kaizen_models::ops::set_fast_kernels(false);
    }
    // KAIZEN_TRAIN_CHECK_F64=1: run in f64 (candle's reference ops; the fast kernels are f32-only).
    let dtype = if std::env::var_os("KAIZEN_TRAIN_CHECK_F64").is_some() {
        DType::F64
    } else {
        DType::F32
    };
    let dev = Device::Cpu;
    let mut t = load_plain(&input, &dev)?;
    for v in t.values_mut() {
        if v.dtype().is_float() {
            *v = v.to_dtype(dtype)?;
        }
    }
    let x = t.remove("x").context("no x")?;
    let y = t.remove("y").context("no y")?.to_dtype(DType::U32)?;
    let classes = t["head.0.weight"].dim(0)?;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, dtype, &dev);
    let cfg = ResNetConfig {
        width,
        in_channels: x.dim(1)?,
        ..Default::default()
    };
    let net = ResNet::new(&cfg, vb.pp("backbone"))?;
    let head_cfg = MlpConfig {
        in_dim: cfg.out_dim(),
        hidden: 0,
        out_dim: classes,
        hidden_layers: 0,
        batch_norm: false,
        input_norm: false,
    };
    let head = Mlp::new(&head_cfg, vb.pp("head"))?;
    restore_varmap(&vm, &t, "", &input.display().to_string())?;
    let mut opt = Optimizer::new(
        OptimConfig {
            kind: OptimizerKind::Sgd,
            momentum: 0.9,
            weight_decay: 5e-4,
            exclude_bias_n_norm: false,
            ..Default::default()
        },
        vec![ParamGroup {
            name: "all".into(),
            vars: trainable(&vm, ""),
            lr_scale: 1.0,
            weight_decay: 5e-4,
            lars: false,
        }],
    );
    let mut outs = varmap_tensors(&vm, "__none__");
    for step in 0..2 {
        let feats = net.forward(&x, BnMode::Train)?;
        let loss = candle_nn::loss::cross_entropy(&head.forward(&feats, BnMode::Train)?, &y)?;
        if step == 0 {
            outs.insert("feats0".into(), feats.detach());
        }
        outs.insert(format!("loss{step}"), loss.detach());
        let grads = loss.backward()?;
        if step == 0 {
            for (name, var) in trainable(&vm, "") {
                if let Some(g) = grads.get(var.as_tensor()) {
                    outs.insert(format!("grad0.{name}"), g.copy()?);
                }
            }
        }
        opt.step(&grads, lr)?;
    }
    for (k, v) in varmap_tensors(&vm, "") {
        outs.insert(k, v.copy()?);
    }
    save_plain(&out, &outs)?;
    Ok(())
}
