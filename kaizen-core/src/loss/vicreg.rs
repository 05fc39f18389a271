//! VICReg (Bardes et al. 2022): invariance, variance and covariance terms, and their weighted sum.
//!
//! As in solo-learn, the composite loss only weights named parts; each part is public so a method can
//! log it. The parts follow `shared/reference/README.md` exactly (single-process: no gather across
//! devices, which the official code does before the variance and covariance terms).

use super::mse::mse;
use super::ops::{check_matrix, check_same_matrices, column_mean};
use candle_core::{bail, Result, Tensor};

/// The epsilon inside VICReg's standard deviation, `sqrt(var + 1e-4)`.
pub const VICREG_VAR_EPS: f64 = 1e-4;

/// Checks that `z` is a matrix with N >= 2 (the unbiased variance over the batch divides by N - 1).
fn check_batch2(op: &str, name: &str, z: &Tensor) -> Result<(usize, usize)> {
    let (n, d) = check_matrix(op, name, z)?;
    if n < 2 {
        bail!("{op}: `{name}` has batch size N = {n}; the unbiased variance over the batch needs N >= 2");
    }
    Ok((n, d))
}

/// Invariance term: `mean((z1 - z2)^2)` over all N*D entries (= [`super::mse()`]).
///
/// - `z1`, `z2`: (N, D) projections of the two views. Both get gradients.
pub fn invariance(z1: &Tensor, z2: &Tensor) -> Result<Tensor> {
    check_same_matrices("vicreg invariance", &[("z1", z1), ("z2", z2)])?;
    mse(z1, z2)
}

/// Variance term of one view: `v(z) = mean_d relu(1 - sqrt(var_d(z) + 1e-4))`, with `var_d` the
/// **unbiased** variance of column d over the batch.
///
/// - `z`: (N, D) projections, N >= 2 (error otherwise).
pub fn variance(z: &Tensor) -> Result<Tensor> {
    let (n, _) = check_batch2("vicreg variance", "z", z)?;
    let zc = z.broadcast_sub(&column_mean(z)?)?;
    let var = column_mean(&zc.sqr()?)?.affine(n as f64 / (n as f64 - 1.0), VICREG_VAR_EPS)?;
    var.sqrt()?.affine(-1.0, 1.0)?.relu()?.mean_all()
}

/// Covariance term of one view: `c(z) = sum_{d != e} cov(z)_de^2 / D`, with
/// `cov(z) = (z - mean)^T (z - mean) / (N - 1)`.
///
/// - `z`: (N, D) projections, N >= 2 (error otherwise).
pub fn covariance(z: &Tensor) -> Result<Tensor> {
    let (n, d) = check_batch2("vicreg covariance", "z", z)?;
    let zc = z.broadcast_sub(&column_mean(z)?)?;
    let cov = zc.t()?.matmul(&zc)?.affine(1.0 / (n as f64 - 1.0), 0.0)?;
    // Off-diagonal sum = sum(cov^2) - sum(var^2), with the diagonal (the unbiased variances)
    // computed directly (no D x D mask to build).
    let var = column_mean(&zc.sqr()?)?.affine(n as f64 / (n as f64 - 1.0), 0.0)?;
    let off = (cov.sqr()?.sum_all()? - var.sqr()?.sum_all()?)?;
    off.affine(1.0 / d as f64, 0.0)
}

/// VICReg loss, reference key `vicreg`:
///
/// `sim_w * invariance(z1, z2) + var_w * (v(z1) + v(z2)) + cov_w * (c(z1) + c(z2))`
/// (see [`invariance`], [`variance`], [`covariance`]; official weights 25 / 25 / 1).
///
/// - `z1`, `z2`: (N, D) projections of the two views, N >= 2 (a batch of 1 is an error: the unbiased
///   variance is undefined). Both get gradients.
pub fn vicreg(z1: &Tensor, z2: &Tensor, sim_w: f64, var_w: f64, cov_w: f64) -> Result<Tensor> {
    check_same_matrices("vicreg", &[("z1", z1), ("z2", z2)])?;
    check_batch2("vicreg", "z1", z1)?;
    let inv = invariance(z1, z2)?.affine(sim_w, 0.0)?;
    let var = (variance(z1)? + variance(z2)?)?.affine(var_w, 0.0)?;
    let cov = (covariance(z1)? + covariance(z2)?)?.affine(cov_w, 0.0)?;
    (inv + var)? + cov
}
