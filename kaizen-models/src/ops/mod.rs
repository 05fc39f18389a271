//! Compute kernels the models call: convolution and batch normalisation.
//!
//! Every layer of the model zoo goes through these functions, so a faster kernel (issue 7) replaces the
//! body here and nothing else changes. Today they are plain compositions of candle ops (the reference
//! implementation the fast kernels are tested against).

use candle_core::{Result, Tensor, D};

/// 2-D convolution without bias, dilation 1, groups 1.
/// x: (B, Cin, H, W), w: (Cout, Cin, K, K) -> (B, Cout, H', W').
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    reference_conv2d(x, w, stride, padding)
}

/// candle's own conv2d: the reference the fast kernels are checked against.
pub fn reference_conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    x.conv2d(w, padding, stride, 1, 1)
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
    reference_batch_norm_train(x, gamma, beta, eps, relu)
}

/// Composition of candle ops for [`batch_norm_train`]: the reference for the fused kernel.
pub fn reference_batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let c = x.dim(1)?;
    // Move channels last and flatten everything else: (N, C).
    let flat = if x.rank() == 4 {
        x.permute((0, 2, 3, 1))?.reshape(((), c))?
    } else {
        x.clone()
    };
    let mean = flat.mean(0)?; // (C,)
    let centered = flat.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean(0)?; // biased
    let inv = (var.clone() + eps)?.sqrt()?.recip()?;
    let y = centered.broadcast_mul(&(inv * gamma)?)?.broadcast_add(beta)?;
    let y = if relu { y.relu()? } else { y };
    let y = if x.rank() == 4 {
        let (b, _, h, w) = x.dims4()?;
        y.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous()?
    } else {
        y
    };
    Ok((y, mean.detach(), var.detach()))
}

/// Eval-mode batch normalisation with given statistics, optionally followed by ReLU.
pub fn batch_norm_eval(
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
