//! Compute kernels the models call: convolution, batch normalisation and a fused SGD update.
//!
//! Every layer of the model zoo goes through these functions. On the CPU with f32 tensors they run
//! the fast CPU kernels (candle custom ops with their own backward): an im2col/col2im + gemm
//! convolution with a fixed-width im2col for the ResNet plane sizes ([`conv2d`]), a fused training-mode batch norm
//! with optional ReLU ([`batch_norm_train`]) and a fused no-grad eval batch norm ([`batch_norm_eval`]). On other
//! devices or dtypes they fall back to the `reference_*` compositions of candle ops, which are also
//! what the tests compare the fast kernels against. [`set_fast_kernels`] switches globally (A/B).
//!
//! Threads: the kernels split work over the rayon pool they are called from, with candle's thread
//! count (`RAYON_NUM_THREADS`, default: the cores). Run the caller inside [`on_kernel_pool`] (the
//! `kaizen` binary runs every command there) so that it works alongside the pool instead of
//! waking it and sleeping at every kernel; outside it the kernels use rayon's global pool.
//! `KAIZEN_POOL=global` keeps the caller outside (A/B); `KAIZEN_POOL=candle` uses candle's barrier
//! pool instead. candle's own element-wise ops use that spin-waiting barrier pool: on shared 2-core
//! machines set `CANDLE_NUM_THREADS=1` before the first candle op (as `kaizen bench` does).
//! The first fast call tunes glibc's allocator once ([`tune_allocator`]).

mod bn;
mod conv;
mod direct;
mod eltwise;
mod host;
mod im2col;
mod linear;
pub mod profile;
mod sgd;
mod wgrad;
mod winograd;

pub use host::{on_kernel_pool, tune_allocator};

/// The host-slice kernels behind the custom ops, for the per-layer profiler
/// (`cargo run --release -p kaizen-models --example layer_prof`). Not a stable API.
#[doc(hidden)]
pub mod raw {
    pub use super::bn::{bn_bwd, bn_fwd, BnStats};
    pub use super::conv::{conv_bwd_input, conv_fwd, ConvGeom};
    pub use super::direct::{
        available as direct_conv_available, conv_same_bwd_weight, conv_same_fwd,
    };
    pub use super::host::{sgemm, Mat};
    pub use super::wgrad::conv_bwd_weight;
    pub use super::winograd::{available as winograd_available, conv3x3_fwd};
}

use candle_core::{DType, Device, Result, Tensor, D};
use profile::Kernel;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Process-wide switch between the fast kernels and the reference compositions (default: fast).
static FAST_KERNELS: AtomicBool = AtomicBool::new(true);

/// Enables (default) or disables the fast CPU kernels for every later call of [`conv2d`],
/// [`batch_norm_train`] and [`batch_norm_eval`] in this process. Disabling them runs the
/// `reference_*` candle compositions instead (for benchmarks and A/B checks); results agree to ~1e-5.
pub fn set_fast_kernels(enabled: bool) {
    FAST_KERNELS.store(enabled, Ordering::Relaxed);
}

/// Whether the fast CPU kernels are enabled (see [`set_fast_kernels`]).
pub fn fast_kernels_enabled() -> bool {
    FAST_KERNELS.load(Ordering::Relaxed)
}

/// True when the fast CPU kernels apply to these tensors (enabled, all f32 on the CPU).
fn fast_path(ts: &[&Tensor]) -> bool {
    fast_kernels_enabled()
        && ts
            .iter()
            .all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32)
}

/// 2-D convolution without bias, dilation 1, groups 1.
/// x: (B, Cin, H, W), w: (Cout, Cin, K, K) -> (B, Cout, H', W') with
/// H' = (H + 2 * padding - K) / stride + 1 (same for W').
/// On the CPU (f32) this is [`fast_conv2d`]; elsewhere candle's conv2d ([`reference_conv2d`]).
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    if fast_path(&[x, w]) {
        fast_conv2d(x, w, stride, padding)
    } else {
        profile::timed_on_device(Kernel::ConvFwd, x.device(), || {
            reference_conv2d(x, w, stride, padding)
        })
    }
}

/// The CPU kernel behind [`conv2d`]: a candle custom op (im2col + gemm forward; col2im + gemm input
/// gradient; gemm weight gradient), split over candle's thread pool. Requires f32 CPU tensors.
/// The first call tunes the process allocator once ([`tune_allocator`]).
/// Errors on non-square kernels, channel mismatch, or a kernel larger than the padded input.
pub fn fast_conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    // Validate shapes up front so the error names the problem before any work is done.
    conv::ConvGeom::new(x.dims(), w.dims(), stride, padding)?;
    tune_allocator();
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    x.apply_op2(
        &w,
        conv::Conv2dOp {
            stride,
            pad: padding,
        },
    )
}

/// candle's own conv2d: the reference the fast kernels are checked against.
pub fn reference_conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    x.conv2d(w, padding, stride, 1, 1)
}

/// The residual join of a ResNet block, `relu(a + b)` (same shapes). On the CPU (f32) one fused
/// custom op ([`fast_add_relu`]); elsewhere candle's add and ReLU ([`reference_add_relu`]).
/// At exactly `a + b == 0` the fused op passes no gradient, as PyTorch does (`y > 0`); candle's ReLU
/// backward passes it (`x >= 0`). Elsewhere the two agree.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if fast_path(&[a, b]) {
        fast_add_relu(a, b)
    } else {
        profile::timed_on_device(Kernel::AddRelu, a.device(), || reference_add_relu(a, b))
    }
}

/// The CPU kernel behind [`add_relu`]: one parallel pass forward, one backward.
pub fn fast_add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    tune_allocator();
    if a.dims() != b.dims() {
        candle_core::bail!("add_relu: shapes differ: {:?} and {:?}", a.dims(), b.dims())
    }
    a.contiguous()?
        .apply_op2(&b.contiguous()?, eltwise::AddReluOp)
}

/// Composition of candle ops for [`add_relu`]: the reference for the fused kernel.
pub fn reference_add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (a + b)?.relu()
}

/// Fully connected layer `y = x w^T + b`: x (B, I), w (O, I), b (O,) -> (B, O). On the CPU (f32)
/// one custom op with its own parallel backward ([`fast_linear`]); elsewhere candle's matmul and
/// broadcast add ([`reference_linear`]).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if fast_path(&[x, w, b]) {
        fast_linear(x, w, b)
    } else {
        profile::timed_on_device(Kernel::Linear, x.device(), || reference_linear(x, w, b))
    }
}

/// The CPU kernel behind [`linear`].
pub fn fast_linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    tune_allocator();
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, linear::LinearOp)
}

/// Composition of candle ops for [`linear`]: the reference for the fused kernel.
pub fn reference_linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.matmul(&w.t()?)?.broadcast_add(b)
}

/// Training-mode batch normalisation over the batch (and spatial) dimensions, optionally followed by ReLU.
/// x: (B, C) or (B, C, H, W); gamma, beta: (C,).
/// Returns (y, batch mean (C,), biased batch variance (C,)); the statistics are detached (they feed the
/// running statistics, never the gradient).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    if fast_path(&[x, gamma, beta]) {
        fast_batch_norm_train(x, gamma, beta, eps, relu)
    } else {
        profile::timed_on_device(Kernel::BnFwd, x.device(), || {
            reference_batch_norm_train(x, gamma, beta, eps, relu)
        })
    }
}

/// The CPU kernel behind [`batch_norm_train`]: one fused custom op (statistics, normalisation,
/// affine, ReLU) with a fused backward for x, gamma and beta. Requires f32 CPU tensors.
pub fn fast_batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    tune_allocator();
    let x = x.contiguous()?;
    let gamma = gamma.contiguous()?;
    let beta = beta.contiguous()?;
    let stats = Arc::new(OnceLock::new());
    let op = bn::BnTrainOp {
        eps,
        relu,
        stats: stats.clone(),
    };
    let y = x.apply_op3(&gamma, &beta, op)?;
    let Some(st) = stats.get() else {
        candle_core::bail!("batch_norm_train: the fused kernel produced no statistics")
    };
    let c = st.mean.len();
    let mean = Tensor::from_slice(&st.mean, c, x.device())?;
    let var = Tensor::from_slice(&st.var, c, x.device())?;
    Ok((y, mean, var))
}

/// Composition of candle ops for [`batch_norm_train`]: the reference for the fused kernel, and the GPU path.
/// The input stays in its (B, C, S) layout (S = H*W, or 1 for (B, C)): each statistic sums the contiguous S
/// values of every (sample, channel) row first, then the B rows, and the normalisation broadcasts (1, C, 1)
/// factors. No permuted copy, and every reduction runs over a contiguous last dimension, which candle's CUDA
/// reduction spreads over B*C blocks (a reduction over dimension 0 of an (N, C) view gets only C blocks).
pub fn reference_batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dims = x.dims().to_vec();
    let (b, c) = (x.dim(0)?, x.dim(1)?);
    let x3 = x.reshape((b, c, ()))?;
    let n = (b * x3.dim(2)?) as f64;
    let channel_mean = |t: &Tensor| -> Result<Tensor> { t.sum_keepdim(2)?.sum_keepdim(0)? / n };
    let mean = channel_mean(&x3)?; // (1, C, 1)
    let centered = x3.broadcast_sub(&mean)?;
    let var = channel_mean(&centered.sqr()?)?; // biased
    let scale = ((var.clone() + eps)?.sqrt()?.recip()? * gamma.reshape((1, c, 1))?)?;
    let y = centered
        .broadcast_mul(&scale)?
        .broadcast_add(&beta.reshape((1, c, 1))?)?;
    let y = if relu { y.relu()? } else { y };
    Ok((
        y.reshape(dims)?,
        mean.flatten_all()?.detach(),
        var.flatten_all()?.detach(),
    ))
}

/// Eval-mode batch normalisation with given statistics, optionally followed by ReLU:
/// `y = [relu]((x - mean) / sqrt(var + eps) * gamma + beta)` per channel (dimension 1).
/// Fused on the CPU when nothing needs a gradient ([`fast_batch_norm_eval`]), else candle ops.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let tracked = [x, gamma, beta, mean, var].iter().any(|t| t.track_op());
    if !tracked && fast_path(&[x, gamma, beta, mean, var]) {
        return fast_batch_norm_eval(x, gamma, beta, mean, var, eps, relu);
    }
    profile::timed_on_device(Kernel::BnFwd, x.device(), || {
        reference_batch_norm_eval(x, gamma, beta, mean, var, eps, relu)
    })
}

/// The CPU kernel behind [`batch_norm_eval`] when no input needs a gradient (frozen and target
/// models): one fused pass `y = [relu](x * scale + shift)`. The result carries no gradient.
pub fn fast_batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let host = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
    let (g, b, m, v) = (host(gamma)?, host(beta)?, host(mean)?, host(var)?);
    let c = g.len();
    if b.len() != c || m.len() != c || v.len() != c {
        candle_core::bail!("batch_norm_eval: gamma, beta, mean, var must all have {c} values")
    }
    let scale: Vec<f32> = (0..c)
        .map(|i| (g[i] as f64 / (v[i] as f64 + eps).sqrt()) as f32)
        .collect();
    let shift: Vec<f32> = (0..c).map(|i| b[i] - m[i] * scale[i]).collect();
    x.contiguous()?
        .apply_op1_no_bwd(&bn::BnEvalOp { scale, shift, relu })
}

/// Composition of candle ops for [`batch_norm_eval`]: the reference for the fused kernel.
#[allow(clippy::too_many_arguments)]
pub fn reference_batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    let scale = ((var + eps)?.sqrt()?.recip()? * gamma)?;
    let shift = (beta - (mean * &scale)?)?;
    let shape: Vec<usize> = if x.rank() == 4 {
        vec![1, x.dim(1)?, 1, 1]
    } else {
        vec![1, x.dim(D::Minus1)?]
    };
    let y = x
        .broadcast_mul(&scale.reshape(shape.as_slice())?)?
        .broadcast_add(&shift.reshape(shape.as_slice())?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// Whether [`sgd_momentum_update`] can run on these tensors (fast kernels enabled, f32, CPU).
/// Optimisers use it when true and their candle-op update otherwise.
pub fn sgd_fused_available(param: &Tensor) -> bool {
    fast_path(&[param])
}

/// Fused in-place SGD-momentum step (torch.optim.SGD semantics), two passes and no allocation:
/// `d = grad_scale * (grad + weight_decay * param)`, `buf = momentum * buf + d`,
/// `param = param - lr * buf`. `param` is a parameter's tensor (e.g. `var.as_tensor()`: the update
/// writes its storage in place, like `Var::set`); `buf` a contiguous f32 tensor of the same shape
/// that starts at zero (then the first step gives `buf = d`, as torch). LARS passes its trust ratio
/// as `grad_scale`. Requires [`sgd_fused_available`]; errors on shape mismatch or another device.
#[allow(clippy::too_many_arguments)]
pub fn sgd_momentum_update(
    param: &Tensor,
    grad: &Tensor,
    buf: &Tensor,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    grad_scale: f64,
) -> Result<()> {
    if !fast_path(&[param, grad, buf]) {
        candle_core::bail!(
            "sgd_momentum_update: needs f32 CPU tensors with the fast kernels enabled"
        )
    }
    if param.dims() != grad.dims() || param.dims() != buf.dims() {
        candle_core::bail!(
            "sgd_momentum_update: param {:?}, grad {:?}, buf {:?} must have one shape",
            param.dims(),
            grad.dims(),
            buf.dims()
        )
    }
    if !param.is_contiguous() || !buf.is_contiguous() {
        candle_core::bail!(
            "sgd_momentum_update: param and buf must be contiguous (they are written in place)"
        )
    }
    let grad = grad.contiguous()?;
    let op = sgd::MomentumOp {
        momentum: momentum as f32,
        weight_decay: weight_decay as f32,
        scale: grad_scale as f32,
    };
    profile::timed(Kernel::Sgd, || {
        buf.inplace_op3(&grad, param, &op)?;
        param.inplace_op2(buf, &sgd::ApplyOp { lr: lr as f32 })
    })
}
