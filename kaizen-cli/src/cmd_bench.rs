//! `kaizen bench`: times training steps doing exactly the work per step of
//! `../shared/tools/torch_reference.py` (see its docstring), on seeded random CIFAR-shaped inputs.
//!
//! - `supervised`: ResNet-18 (train-mode BN) -> linear head -> cross-entropy -> backward ->
//!   SGD(momentum 0.9, weight decay 5e-4) step.
//! - `kaizen`: one Kaizen/BYOL step on two views: online backbone + projector + predictor; momentum
//!   target (backbone + projector, train-mode BN, no grad); frozen previous backbone + projector +
//!   classifier (eval mode, no grad); distillation predictor; classifier MLP on detached features
//!   with cross-entropy + soft cross-entropy against the frozen classifier; sum, backward, SGD step,
//!   EMA update of the target (tau 0.99).
use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use clap::{Args, ValueEnum};
use kaizen_models::linear::Linear;
use kaizen_models::optim::{OptimConfig, Optimizer, OptimizerKind, ParamGroup};
use kaizen_models::{ema, frozen, init, ops, params, BnMode, Mlp, MlpConfig, ResNet, ResNetConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which step to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Supervised ResNet-18 + linear head step.
    Supervised,
    /// One Kaizen (BYOL) step on two views.
    Kaizen,
}

/// Arguments of `kaizen bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Step to time (see torch_reference.py).
    #[arg(long, value_enum, default_value = "kaizen")]
    mode: BenchMode,
    /// ResNet-18 width (64 = the paper's).
    #[arg(long, default_value_t = 16)]
    width: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Number of classes of the heads.
    #[arg(long, default_value_t = 100)]
    classes: usize,
    /// Use candle's own conv / batch-norm compositions instead of the fast kernels (A/B comparison).
    #[arg(long)]
    reference_kernels: bool,
    /// Update the parameters with the fused in-place SGD kernel (`ops::sgd_momentum_update`) instead
    /// of `kaizen_models::optim::Optimizer` (same arithmetic; shows what the fused update saves).
    #[arg(long)]
    fused_sgd: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const LR: f64 = 0.05;
const MOMENTUM: f64 = 0.9;
const WEIGHT_DECAY: f64 = 5e-4;
const TAU: f64 = 0.99;
const SEED: u64 = 0;

/// Seeded uniform [0, 1) host data of the given shape.
fn uniform(rng: &mut ChaCha8Rng, dims: &[usize], dev: &Device) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
    Ok(Tensor::from_vec(v, dims, dev)?)
}

/// `2 - 2 * mean_i cos(p_i, z_i)` with `z` detached (BYOL loss).
fn byol(p: &Tensor, z: &Tensor) -> candle_core::Result<Tensor> {
    let z = z.detach();
    let eps = 1e-8;
    let pn = p.broadcast_div(&(p.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + eps)?)?;
    let zn = z.broadcast_div(&(z.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + eps)?)?;
    let cos = (pn * zn)?.sum(D::Minus1)?.mean_all()?;
    (cos * -2.0)? + 2.0
}

/// `-mean_i sum_c softmax(target)_ic * log_softmax(logits)_ic`.
fn soft_ce(logits: &Tensor, target_logits: &Tensor) -> candle_core::Result<Tensor> {
    let p = candle_nn::ops::softmax_last_dim(&target_logits.detach())?;
    let lp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (p * lp)?.sum(D::Minus1)?.mean_all()?.neg()
}

/// The parameter update of a bench step: the project's optimiser or the fused kernel.
enum Sgd {
    Optim(Optimizer),
    /// (parameter, zero-initialised momentum buffer) pairs.
    Fused(Vec<(Var, Tensor)>),
}

impl Sgd {
    fn new(vm: &VarMap, prefixes: &[&str], fused: bool) -> Result<Self> {
        if !fused {
            return Ok(Self::Optim(sgd(vm, prefixes)));
        }
        let mut pairs = Vec::new();
        for (_, v) in prefixes.iter().flat_map(|p| params::trainable(vm, p)) {
            let buf = v.as_tensor().zeros_like()?;
            pairs.push((v, buf));
        }
        Ok(Self::Fused(pairs))
    }

    fn step(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        match self {
            Self::Optim(o) => o.step(grads, LR)?,
            Self::Fused(pairs) => {
                for (v, buf) in pairs.iter() {
                    if let Some(g) = grads.get(v.as_tensor()) {
                        ops::sgd_momentum_update(
                            v.as_tensor(),
                            g,
                            buf,
                            LR,
                            MOMENTUM,
                            WEIGHT_DECAY,
                            1.0,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// SGD with momentum and weight decay on every trainable tensor under `prefixes` (as torch's SGD).
fn sgd(vm: &VarMap, prefixes: &[&str]) -> Optimizer {
    let cfg = OptimConfig {
        kind: OptimizerKind::Sgd,
        momentum: MOMENTUM,
        weight_decay: WEIGHT_DECAY,
        exclude_bias_n_norm: false,
        ..OptimConfig::default()
    };
    let vars = prefixes
        .iter()
        .flat_map(|p| params::trainable(vm, p))
        .collect();
    let group = ParamGroup {
        name: "all".into(),
        vars,
        lr_scale: 1.0,
        weight_decay: WEIGHT_DECAY,
        lars: false,
    };
    Optimizer::new(cfg, vec![group])
}

/// A model built from plain-tensor copies of `prefix` in `vm` (the frozen previous-task model).
fn frozen_vb(vm: &VarMap, prefix: &str, dev: &Device) -> Result<VarBuilder<'static>> {
    let snap: HashMap<String, Tensor> = frozen::snapshot(vm, prefix)?;
    Ok(VarBuilder::from_tensors(snap, DType::F32, dev))
}

/// One step: returns the loss and the time of its phases [forward, backward, optimiser, EMA] in ms.
type StepFn = Box<dyn FnMut() -> Result<(f32, [f64; 4])>>;

fn ms_since(t: &mut Instant) -> f64 {
    let now = Instant::now();
    let ms = (now - *t).as_secs_f64() * 1e3;
    *t = now;
    ms
}

fn supervised_step(a: &BenchArgs, dev: &Device) -> Result<StepFn> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, dev);
    let cfg = ResNetConfig {
        width: a.width,
        ..ResNetConfig::default()
    };
    let backbone = ResNet::new(&cfg, vb.pp("backbone"))?;
    let head = Linear::new(cfg.out_dim(), a.classes, vb.pp("head"))?;
    init::init_vars(&vm, SEED)?;
    let mut opt = Sgd::new(&vm, &[""], a.fused_sgd)?;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let x = uniform(&mut rng, &[a.batch, 3, 32, 32], dev)?;
    let y = labels(a, dev)?;
    Ok(Box::new(move || {
        let mut t = Instant::now();
        let logits = head.forward(&backbone.forward(&x, BnMode::Train)?)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let fwd = ms_since(&mut t);
        let grads = loss.backward()?;
        let bwd = ms_since(&mut t);
        opt.step(&grads)?;
        let loss = loss.to_scalar::<f32>()?;
        Ok((loss, [fwd, bwd, ms_since(&mut t), 0.0]))
    }))
}

fn labels(a: &BenchArgs, dev: &Device) -> Result<Tensor> {
    let y: Vec<u32> = (0..a.batch).map(|i| (i % a.classes) as u32).collect();
    Ok(Tensor::from_vec(y, a.batch, dev)?)
}

fn kaizen_step(a: &BenchArgs, dev: &Device) -> Result<StepFn> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, dev);
    let cfg = ResNetConfig {
        width: a.width,
        ..ResNetConfig::default()
    };
    let f = cfg.out_dim();
    let proj_cfg = MlpConfig::projector(f, 4096, 256);
    let pred_cfg = MlpConfig::projector(256, 4096, 256);
    let dist_cfg = MlpConfig::projector(256, 2048, 256);
    let cls_cfg = MlpConfig::projector(f, 1000, a.classes);
    let backbone = ResNet::new(&cfg, vb.pp("backbone"))?;
    let projector = Mlp::new(&proj_cfg, vb.pp("projector"))?;
    let predictor = Mlp::new(&pred_cfg, vb.pp("predictor"))?;
    let distill = Mlp::new(&dist_cfg, vb.pp("distill"))?;
    let classifier = Mlp::new(&cls_cfg, vb.pp("classifier"))?;
    init::init_vars(&vm, SEED)?;
    // Momentum target: its own VarMap, initialised as a copy of the online backbone + projector.
    let tvm = VarMap::new();
    let tvb = VarBuilder::from_varmap(&tvm, DType::F32, dev);
    let t_backbone = ResNet::new(&cfg, tvb.pp("backbone"))?;
    let t_projector = Mlp::new(&proj_cfg, tvb.pp("projector"))?;
    let pairs = vec![
        ("backbone.".to_string(), "backbone.".to_string()),
        ("projector.".to_string(), "projector.".to_string()),
    ];
    ema::copy_into(&tvm, &vm, &pairs)?;
    // Frozen previous-task model: plain tensors, eval mode.
    let f_backbone = ResNet::new(&cfg, frozen_vb(&vm, "backbone.", dev)?)?;
    let f_projector = Mlp::new(&proj_cfg, frozen_vb(&vm, "projector.", dev)?)?;
    let f_classifier = Mlp::new(&cls_cfg, frozen_vb(&vm, "classifier.", dev)?)?;
    let prefixes = [
        "backbone.",
        "projector.",
        "predictor.",
        "distill.",
        "classifier.",
    ];
    let mut opt = Sgd::new(&vm, &prefixes, a.fused_sgd)?;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let x1 = uniform(&mut rng, &[a.batch, 3, 32, 32], dev)?;
    let x2 = uniform(&mut rng, &[a.batch, 3, 32, 32], dev)?;
    let y = labels(a, dev)?;
    let tr = BnMode::Train;
    Ok(Box::new(move || {
        let mut t = Instant::now();
        let (f1, f2) = (backbone.forward(&x1, tr)?, backbone.forward(&x2, tr)?);
        let (z1, z2) = (projector.forward(&f1, tr)?, projector.forward(&f2, tr)?);
        let (p1, p2) = (predictor.forward(&z1, tr)?, predictor.forward(&z2, tr)?);
        let t1 = t_projector
            .forward(&t_backbone.forward(&x1, tr)?, tr)?
            .detach();
        let t2 = t_projector
            .forward(&t_backbone.forward(&x2, tr)?, tr)?
            .detach();
        let g1 = f_backbone.forward(&x1, BnMode::Eval)?;
        let g2 = f_backbone.forward(&x2, BnMode::Eval)?;
        let o1 = f_projector.forward(&g1, BnMode::Eval)?;
        let o2 = f_projector.forward(&g2, BnMode::Eval)?;
        let old_logits = f_classifier.forward(&g1, BnMode::Eval)?;
        let ssl = (byol(&p1, &t2)? + byol(&p2, &t1)?)?;
        let dist =
            (byol(&distill.forward(&z1, tr)?, &o1)? + byol(&distill.forward(&z2, tr)?, &o2)?)?;
        let logits = classifier.forward(&f1.detach(), tr)?;
        let ce = candle_nn::loss::cross_entropy(&logits, &y)?;
        let loss = (((ssl + dist)? + ce)? + soft_ce(&logits, &old_logits)?)?;
        let fwd = ms_since(&mut t);
        let grads = loss.backward()?;
        let bwd = ms_since(&mut t);
        opt.step(&grads)?;
        let loss = loss.to_scalar::<f32>()?;
        let opt_ms = ms_since(&mut t);
        ema::ema_update(&tvm, &vm, &pairs, TAU)?;
        Ok((loss, [fwd, bwd, opt_ms, ms_since(&mut t)]))
    }))
}

/// Runs `kaizen bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    anyhow::ensure!(
        a.batch >= 2,
        "--batch must be at least 2 (train-mode BatchNorm), got {}",
        a.batch
    );
    anyhow::ensure!(
        a.width >= 1 && a.classes >= 1 && a.steps >= 1,
        "--width, --classes and --steps must be at least 1"
    );
    ops::set_fast_kernels(!a.reference_kernels);
    let dev = Device::Cpu;
    let mut step = match a.mode {
        BenchMode::Supervised => supervised_step(&a, &dev),
        BenchMode::Kaizen => kaizen_step(&a, &dev),
    }
    .context("building the benchmark models")?;
    let mut times = Vec::with_capacity(a.steps);
    let mut phases: Vec<[f64; 4]> = Vec::with_capacity(a.steps);
    let mut last_loss = f32::NAN;
    for i in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        let (loss, ph) = step().with_context(|| format!("training step {i}"))?;
        last_loss = loss;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i >= a.warmup {
            times.push(ms);
            phases.push(ph);
        }
    }
    let phase_median = |k: usize| {
        let mut v: Vec<f64> = phases.iter().map(|p| p[k]).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2] * 10.0).round() / 10.0
    };
    anyhow::ensure!(last_loss.is_finite(), "the loss became {last_loss}");
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let med = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    let threads = candle_core::utils::get_num_threads();
    let mode = match a.mode {
        BenchMode::Supervised => "supervised",
        BenchMode::Kaizen => "kaizen",
    };
    let kernels = if a.reference_kernels {
        "candle-reference"
    } else {
        "kaizen-fast"
    };
    let ips = a.batch as f64 * 1e3 / med;
    if a.json {
        let out = serde_json::json!({
            "framework": "kaizen-rs (candle 0.11.1)",
            "kernels": kernels,
            "mode": mode,
            "width": a.width,
            "batch": a.batch,
            "threads": threads,
            "candle_elementwise_threads": std::env::var("CANDLE_NUM_THREADS").unwrap_or_default(),
            "step_ms_median": (med * 100.0).round() / 100.0,
            "step_ms_min": (sorted[0] * 100.0).round() / 100.0,
            "phase_ms_median": {
                "forward": phase_median(0),
                "backward": phase_median(1),
                "optimizer": phase_median(2),
                "ema": phase_median(3),
            },
            "images_per_s": (ips * 10.0).round() / 10.0,
            "steps_ms": times.iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>(),
            "final_loss": last_loss,
        });
        println!("{out}");
    } else {
        println!(
            "kaizen-rs ({kernels}) mode={mode} width={} batch={} threads={threads} step_ms_median={med:.2} images_per_s={ips:.1} \
             (forward {} / backward {} / optimizer {} / ema {} ms)",
            a.width,
            a.batch,
            phase_median(0),
            phase_median(1),
            phase_median(2),
            phase_median(3)
        );
    }
    Ok(())
}
