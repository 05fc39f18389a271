//! Barlow Twins (Zbontar et al. 2021): the cross-correlation matrix of the two views pulled to identity.

use super::ops::{check_same_matrices, column_mean};
use candle_core::{bail, Result, Tensor};

/// The epsilon of Barlow Twins' per-dimension standardisation (that of an affine-free BatchNorm1d).
pub const BARLOW_BN_EPS: f64 = 1e-5;

/// Standardises each column of `z` (N, D) over the batch: `(z - mean) / sqrt(var + 1e-5)` with the
/// **biased** variance (what `BatchNorm1d(affine=False)` does in training mode).
pub fn standardize(z: &Tensor) -> Result<Tensor> {
    let zc = z.broadcast_sub(&column_mean(z)?)?;
    let std = column_mean(&zc.sqr()?)?
        .affine(1.0, BARLOW_BN_EPS)?
        .sqrt()?;
    zc.broadcast_div(&std)
}

/// Barlow Twins loss, reference key `barlow_twins`:
///
/// each z standardised per dimension over the batch ([`standardize`]); `C = z1n^T z2n / N` (D x D);
/// `loss = scale * (sum_d (C_dd - 1)^2 + lambda * sum_{d != e} C_de^2)`.
///
/// - `z1`, `z2`: (N, D) projections of the two views. Both get gradients.
/// - `lambda`: weight of the redundancy-reduction (off-diagonal) term (solo-learn default 0.0051).
/// - `scale`: overall scale (solo-learn default 0.1).
///
/// N >= 2 is required: with one sample the standardised features are all zero and C carries no
/// information (PyTorch's BatchNorm1d also refuses a batch of 1 in training mode).
pub fn barlow_twins(z1: &Tensor, z2: &Tensor, lambda: f64, scale: f64) -> Result<Tensor> {
    let (n, _) = check_same_matrices("barlow_twins", &[("z1", z1), ("z2", z2)])?;
    if n < 2 {
        bail!("barlow_twins: batch size N = {n}; standardising over the batch needs N >= 2");
    }
    let z1n = standardize(z1)?;
    let z2n = standardize(z2)?;
    let c = z1n.t()?.matmul(&z2n)?.affine(1.0 / n as f64, 0.0)?;
    // The diagonal C_dd = mean_n z1n_nd z2n_nd, computed directly; the off-diagonal sum is
    // sum(C^2) - sum(C_dd^2) (no D x D mask to build).
    let c_dd = column_mean(&(&z1n * &z2n)?)?;
    let on = c_dd.affine(1.0, -1.0)?.sqr()?.sum_all()?;
    let off = (c.sqr()?.sum_all()? - c_dd.sqr()?.sum_all()?)?;
    (on + off.affine(lambda, 0.0)?)?.affine(scale, 0.0)
}
