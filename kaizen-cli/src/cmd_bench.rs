//! `kaizen bench`: times training steps doing exactly the work per step of
//! `../shared/tools/torch_reference.py` (see its docstring), on seeded random CIFAR-shaped inputs.
//!
//! - `supervised`: ResNet-18 (train-mode BN) -> linear head -> cross-entropy -> backward ->
//!   SGD(momentum 0.9, weight decay 5e-4) step.
//! - `kaizen`: the trainer's own Kaizen/BYOL step ([`kaizen_core::step`], built by
//!   [`kaizen_core::RunModels`]) on two views: online backbone + projector + predictor; momentum target
//!   (backbone + projector, no grad); frozen previous backbone + projector + classifier (running
//!   statistics, no grad); distillation predictor; classifier on detached features with cross-entropy +
//!   soft cross-entropy against the frozen classifier; weighted sum, backward, SGD step, EMA update of the
//!   target (tau 0.99). See [`kaizen_config`] for where it differs from the reference script.
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use clap::{Args, ValueEnum};
use kaizen_core::config::{CeClasses, ExperimentConfig, OptimizerName, TeacherBn};
use kaizen_core::network::Frozen;
use kaizen_core::optim::build_optimizer;
use kaizen_core::step::{self, StepPosition, StepSettings};
use kaizen_core::terms::StepBatch;
use kaizen_core::{Registry, RunModels};
use kaizen_models::linear::Linear;
use kaizen_models::optim::{OptimConfig, Optimizer, OptimizerKind, ParamGroup};
use kaizen_models::{init, ops, params, BnMode, ResNet, ResNetConfig};
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
    /// Supervised mode: update the parameters with the fused in-place SGD kernel (`ops::sgd_momentum_update`)
    /// instead of `kaizen_models::optim::Optimizer` (same arithmetic; shows what the fused update saves).
    /// The Kaizen mode always uses the trainer's optimiser.
    #[arg(long)]
    fused_sgd: bool,
    /// Device: cpu, or cuda[:N] (needs a build with `--features cuda`; on a GPU every phase ends with a device
    /// synchronisation, so that the step and its phases are charged their own kernels).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// With --device cuda: let cuBLAS use TF32 tensor cores for f32 matrix products (10-bit mantissa), as
    /// PyTorch does for convolutions by default. Off by default: plain fp32, as the trainer computes.
    #[arg(long)]
    tf32: bool,
    /// Also time the CPU kernels inside the timed steps (convolution forward / input gradient / weight gradient,
    /// batch norm, linear, add+ReLU, SGD) and report their milliseconds per step and what remains outside them
    /// (candle's own ops, autograd bookkeeping, allocation, waiting threads). On a GPU: the forward convolution,
    /// batch norm, linear and add+ReLU compositions, each between two device synchronisations (which slow the
    /// step a little); the backward passes run inside candle's autograd and count as outside.
    #[arg(long)]
    kernel_profile: bool,
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

/// One step: returns the loss and the time of its phases [forward, backward, optimiser, EMA] in ms.
type StepFn = Box<dyn FnMut() -> Result<(f32, [f64; 4])>>;

/// Milliseconds since `t`, and resets `t`. On a GPU it first waits for the queued kernels, so that each phase is
/// charged its own work (kernels run asynchronously; without the wait the first phase that reads a value back
/// would absorb all of it).
fn ms_since(t: &mut Instant, dev: &Device) -> Result<f64> {
    if !dev.is_cpu() {
        dev.synchronize()?;
    }
    let now = Instant::now();
    let ms = (now - *t).as_secs_f64() * 1e3;
    *t = now;
    Ok(ms)
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
    let dev = dev.clone();
    Ok(Box::new(move || {
        let mut t = Instant::now();
        let logits = head.forward(&backbone.forward(&x, BnMode::Train)?)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let fwd = ms_since(&mut t, &dev)?;
        let grads = loss.backward()?;
        let bwd = ms_since(&mut t, &dev)?;
        opt.step(&grads)?;
        let loss = loss.to_scalar::<f32>()?;
        Ok((loss, [fwd, bwd, ms_since(&mut t, &dev)?, 0.0]))
    }))
}

fn labels(a: &BenchArgs, dev: &Device) -> Result<Tensor> {
    let y: Vec<u32> = (0..a.batch).map(|i| (i % a.classes) as u32).collect();
    Ok(Tensor::from_vec(y, a.batch, dev)?)
}

/// The Kaizen step of the trainer itself ([`kaizen_core::step`]), on a config with the reference script's
/// sizes: BYOL, projector 4096-256, predictor 4096, distillation predictor 2048, classifier hidden 1000,
/// SGD (lr 0.05, momentum 0.9, weight decay 5e-4), EMA tau 0.99, frozen model with running statistics.
/// Where it differs from torch_reference.py it follows the trainer: both classifier terms on both views
/// (the reference: view 1), the classifier Linear-ReLU-Linear behind a standardising BN (the reference:
/// Linear-BN-ReLU-Linear), no weight decay on the classifier, biases and norms.
fn kaizen_config(a: &BenchArgs) -> ExperimentConfig {
    let mut cfg = ExperimentConfig {
        seed: SEED,
        method: "byol".into(),
        strategy: "kaizen".into(),
        ..ExperimentConfig::default()
    };
    let m = &mut cfg.model;
    (m.width, m.proj_hidden, m.proj_out) = (a.width, 4096, 256);
    (m.pred_hidden, m.distill_hidden, m.classifier_hidden) = (4096, 2048, 1000);
    let t = &mut cfg.train;
    t.optimizer = OptimizerName::Sgd;
    (t.lr, t.classifier_lr, t.momentum, t.weight_decay) = (LR, LR, MOMENTUM, WEIGHT_DECAY);
    (t.base_tau, t.final_tau) = (TAU, TAU);
    t.teacher_bn = TeacherBn::Eval;
    cfg.loss.ce_classes = CeClasses::All;
    cfg
}

fn kaizen_step(a: &BenchArgs, dev: &Device) -> Result<StepFn> {
    let cfg = kaizen_config(a);
    let mut parts = RunModels::build(&Registry::builtin(), &cfg, 3, a.classes, dev)?;
    let frozen = Frozen::snapshot(&parts.online, &parts.spec, BnMode::Eval, dev)?;
    let mut opt = build_optimizer(&cfg.train, &parts.online);
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let x1 = uniform(&mut rng, &[a.batch, 3, 32, 32], dev)?;
    let x2 = uniform(&mut rng, &[a.batch, 3, 32, 32], dev)?;
    let y = labels(a, dev)?.to_dtype(DType::I64)?;
    let seen = vec![true; a.classes];
    // Tau stays 0.99 (base = final); a long horizon keeps the schedule position irrelevant.
    let total_steps = a.warmup + a.steps + 1;
    let mut k = 0;
    let dev = dev.clone();
    Ok(Box::new(move || {
        let settings = StepSettings {
            seen: &seen,
            classifier_detach: true,
        };
        let batch = StepBatch {
            view1: &x1,
            view2: &x2,
            labels: &y,
        };
        let pos = StepPosition {
            task: 1,
            step_in_task: k,
            total_steps,
            lr: LR,
        };
        k += 1;
        let mut t = Instant::now();
        let (models, terms) = parts.step_parts(Some(&frozen));
        let computed = step::loss_terms(models, terms, &batch, &settings)?;
        let fwd = ms_since(&mut t, &dev)?;
        let (models, _) = parts.step_parts(Some(&frozen));
        let values = step::apply(&computed, models, Some(&mut opt), pos)?;
        let loss = values
            .iter()
            .find(|v| v.term == "total")
            .map_or(f32::NAN, |v| v.value as f32);
        Ok((loss, [fwd, ms_since(&mut t, &dev)?, 0.0, 0.0]))
    }))
}

/// The median time of each phase of a step, by name: supervised steps time forward / backward / optimizer;
/// Kaizen steps time the loss terms (forward) and the rest of the trainer's step (backward, optimiser, EMA).
fn phases_json(mode: BenchMode, median: &dyn Fn(usize) -> f64) -> serde_json::Value {
    match mode {
        BenchMode::Supervised => serde_json::json!({
            "forward": median(0),
            "backward": median(1),
            "optimizer": median(2),
        }),
        BenchMode::Kaizen => serde_json::json!({
            "forward": median(0),
            "backward_optimizer_ema": median(1),
        }),
    }
}

/// The process's peak resident memory in MiB (`VmHWM` of /proc/self/status, what `getrusage`'s ru_maxrss
/// reports), or None where /proc is not available.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
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
    let dev = crate::cmd_run::device(&a.device)?;
    anyhow::ensure!(
        !a.tf32 || dev.is_cuda(),
        "--tf32 applies to --device cuda only (the CPU has no TF32 arithmetic)"
    );
    candle_core::cuda::set_gemm_reduced_precision_f32(a.tf32);
    let mut step = match a.mode {
        BenchMode::Supervised => supervised_step(&a, &dev),
        BenchMode::Kaizen => kaizen_step(&a, &dev),
    }
    .context("building the benchmark models")?;
    let mut times = Vec::with_capacity(a.steps);
    let mut phases: Vec<[f64; 4]> = Vec::with_capacity(a.steps);
    let mut last_loss = f32::NAN;
    for i in 0..a.warmup + a.steps {
        if i == a.warmup {
            ops::profile::set_kernel_profile(a.kernel_profile);
            ops::profile::reset_kernel_profile();
        }
        let t0 = Instant::now();
        let (loss, ph) = step().with_context(|| format!("training step {i}"))?;
        // Kernels on a GPU run asynchronously: wait for them so the step's time is complete.
        dev.synchronize()?;
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
    ops::profile::set_kernel_profile(false);
    let kernel_ms = a.kernel_profile.then(|| kernel_profile_json(&times));
    if a.json {
        let out = serde_json::json!({
            "framework": "kaizen-rs (candle 0.11.1)",
            "kernels": kernels,
            "mode": mode,
            "width": a.width,
            "batch": a.batch,
            "threads": threads,
            "device": a.device,
            "tf32": a.tf32,
            "candle_elementwise_threads": std::env::var("CANDLE_NUM_THREADS").unwrap_or_default(),
            "step_ms_median": (med * 100.0).round() / 100.0,
            "step_ms_min": (sorted[0] * 100.0).round() / 100.0,
            "phase_ms_median": phases_json(a.mode, &phase_median),
            "images_per_s": (ips * 10.0).round() / 10.0,
            "peak_rss_mb": peak_rss_mb(),
            "kernel_ms_per_step": kernel_ms,
            "steps_ms": times.iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>(),
            "final_loss": last_loss,
        });
        println!("{out}");
    } else {
        println!(
            "kaizen-rs ({kernels}) mode={mode} width={} batch={} threads={threads} step_ms_median={med:.2} images_per_s={ips:.1} \
             (ms: {})",
            a.width,
            a.batch,
            phases_json(a.mode, &phase_median)
        );
        if let Some(k) = kernel_ms {
            println!("kernel ms per step (mean over the timed steps): {k}");
        }
    }
    Ok(())
}

/// The kernels' mean milliseconds per timed step, and the mean step time they leave outside them.
fn kernel_profile_json(times: &[f64]) -> serde_json::Value {
    let n = times.len().max(1) as f64;
    let mut m = serde_json::Map::new();
    let mut inside = 0.0;
    for (name, ms, calls) in ops::profile::kernel_profile() {
        inside += ms;
        m.insert(
            name.into(),
            serde_json::json!((ms / n * 10.0).round() / 10.0),
        );
        m.insert(
            format!("{name}_calls"),
            serde_json::json!((calls as f64 / n * 10.0).round() / 10.0),
        );
    }
    let mean_step = times.iter().sum::<f64>() / n;
    m.insert(
        "outside_kernels".into(),
        serde_json::json!(((mean_step - inside / n) * 10.0).round() / 10.0),
    );
    serde_json::Value::Object(m)
}
