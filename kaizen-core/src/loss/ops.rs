//! Building blocks shared by the losses: input checks, L2 normalisation, cosine similarity,
//! column means, a max-subtracted log-softmax, row-wise cross-entropy, the diagonal mask.
//!
//! Conventions (those of `shared/reference/README.md`): `normalize(x) = x / max(|x|, 1e-12)` row-wise and
//! `cos(a, b) = a.b / max(|a| |b|, 1e-12)`. Both are written as `sqrt(max(squared, 1e-24))`, which has
//! the same value but never evaluates the derivative of `sqrt` at 0, so zero rows give finite values
//! and finite (zero) gradients through the norm. This needs f32 or f64 (1e-24 underflows in f16).

use candle_core::{bail, DType, Device, Result, Tensor, D};

/// The floor of a norm (or of a product of norms) in [`l2_normalize`] and [`cosine`]: 1e-12.
pub const NORM_EPS: f64 = 1e-12;

/// A logit value that stands for "excluded" in an additive mask: `exp(MASKED - max)` is exactly 0 in
/// f32, yet no infinity ever enters the graph (so no `inf * 0` in a backward pass).
pub const MASKED: f32 = -1e30;

/// Checks that `t` is a floating-point matrix (rank 2) with at least one row and one column and
/// returns `(rows, cols)`. `op` and `name` go into the error message.
pub fn check_matrix(op: &str, name: &str, t: &Tensor) -> Result<(usize, usize)> {
    let dims = t.dims();
    if dims.len() != 2 {
        bail!("{op}: `{name}` must be a matrix (N, D), got shape {dims:?}");
    }
    if dims[0] == 0 || dims[1] == 0 {
        bail!("{op}: `{name}` must have at least one row and one column, got shape {dims:?}");
    }
    if !t.dtype().is_float() {
        bail!("{op}: `{name}` must be a float tensor, got {:?}", t.dtype());
    }
    Ok((dims[0], dims[1]))
}

/// Checks that every `(name, tensor)` is a matrix ([`check_matrix`]) of one common shape and dtype and
/// returns that shape `(N, D)`. `tensors` must not be empty.
pub fn check_same_matrices(op: &str, tensors: &[(&str, &Tensor)]) -> Result<(usize, usize)> {
    let Some(&(first_name, first)) = tensors.first() else {
        bail!("{op}: no input tensors");
    };
    let shape = check_matrix(op, first_name, first)?;
    for &(name, t) in &tensors[1..] {
        check_matrix(op, name, t)?;
        if t.dims() != first.dims() {
            bail!(
                "{op}: `{name}` has shape {:?} but `{first_name}` has shape {:?}; they must match",
                t.dims(),
                first.dims()
            );
        }
        if t.dtype() != first.dtype() {
            bail!(
                "{op}: `{name}` is {:?} but `{first_name}` is {:?}; they must match",
                t.dtype(),
                first.dtype()
            );
        }
    }
    Ok(shape)
}

/// Checks that a temperature is finite and > 0.
pub fn check_temperature(op: &str, temperature: f64) -> Result<()> {
    if !(temperature.is_finite() && temperature > 0.0) {
        bail!("{op}: temperature must be finite and > 0, got {temperature}");
    }
    Ok(())
}

/// Mean of each column over the batch: `z` (N, D) -> (1, D), computed as `ones(1, N) z / N` (a
/// matrix product: candle reduces over a non-last dimension with a slow strided loop on CPU).
pub fn column_mean(z: &Tensor) -> Result<Tensor> {
    let (n, _) = z.dims2()?;
    Tensor::ones((1, n), z.dtype(), z.device())?
        .matmul(z)?
        .affine(1.0 / n as f64, 0.0)
}

/// Squared L2 norm of each row: `x` (N, D) -> (N, 1).
pub fn row_sq_norm(x: &Tensor) -> Result<Tensor> {
    x.sqr()?.sum_keepdim(D::Minus1)
}

/// Row-wise L2 normalisation `x / max(|x|, 1e-12)`: `x` (N, D) -> (N, D). A zero row stays zero, with
/// a finite gradient.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = row_sq_norm(x)?.maximum(NORM_EPS * NORM_EPS)?.sqrt()?;
    x.broadcast_div(&norm)
}

/// Row-wise cosine similarity `a_i.b_i / max(|a_i| |b_i|, 1e-12)`: `a`, `b` (N, D) -> (N,).
/// Finite value and gradient when a row is zero.
pub fn cosine(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dot = (a * b)?.sum(D::Minus1)?;
    let sq = (row_sq_norm(a)? * row_sq_norm(b)?)?.squeeze(D::Minus1)?;
    let denom = sq.maximum(NORM_EPS * NORM_EPS)?.sqrt()?;
    dot / denom
}

/// Log-softmax over the last dimension, `x - max - log(sum(exp(x - max)))`, with the row maximum
/// detached (it cancels analytically; detaching keeps it out of the backward pass).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let diff = x.broadcast_sub(&max)?;
    let lse = diff.exp()?.sum_keepdim(D::Minus1)?.log()?;
    diff.broadcast_sub(&lse)
}

/// Softmax over the last dimension, as `exp(log_softmax(x))`.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    log_softmax(x)?.exp()
}

/// Cross-entropy of each row of `logits` (R, C) against the class index `targets[r]`:
/// `-log_softmax(logits)[r, targets[r]]` -> (R,). Every target must be `< C` (checked).
pub fn cross_entropy_rows(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (rows, cols) = logits.dims2()?;
    if targets.len() != rows {
        bail!("cross_entropy: {} targets for {rows} rows", targets.len());
    }
    if let Some(bad) = targets.iter().find(|&&t| t as usize >= cols) {
        bail!("cross_entropy: target {bad} out of range for {cols} classes");
    }
    let idx = Tensor::from_slice(targets, (rows, 1), logits.device())?;
    log_softmax(logits)?.gather(&idx, 1)?.squeeze(1)?.neg()
}

/// An additive mask (n, n) in `dtype`: [`MASKED`] on the diagonal, 0 elsewhere. Add it to a square
/// logit matrix to drop each row's own column from its softmax.
pub fn diagonal_mask(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    Tensor::eye(n, dtype, device)?.affine(MASKED as f64, 0.0)
}
