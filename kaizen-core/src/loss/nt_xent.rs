//! SimCLR's NT-Xent (normalised temperature-scaled cross-entropy).

use super::ops::{
    check_same_matrices, check_temperature, cross_entropy_rows, diagonal_mask, l2_normalize,
};
use candle_core::{Result, Tensor};

/// NT-Xent loss (Chen et al. 2020, SimCLR), reference key `nt_xent`:
///
/// `u = normalize([z1; z2])` (2N rows), `s = u u^T / t` with the diagonal removed; row k's positive is
/// its other view, column `(k + N) mod 2N`; the loss is the mean over the 2N rows of the
/// cross-entropy of row k over its remaining 2N - 1 columns.
///
/// - `z1`, `z2`: (N, D) projections of the two views of the same N images. Both get gradients.
/// - `temperature`: t > 0 (SimCLR default 0.1).
///
/// N = 1 is allowed: each row then has only its positive left and the loss is exactly 0.
/// Symmetric in the two views and invariant to a joint permutation of the batch.
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> Result<Tensor> {
    let (n, _) = check_same_matrices("nt_xent", &[("z1", z1), ("z2", z2)])?;
    check_temperature("nt_xent", temperature)?;
    let u = l2_normalize(&Tensor::cat(&[z1, z2], 0)?)?;
    let s = u.matmul(&u.t()?)?.affine(1.0 / temperature, 0.0)?;
    let mask = diagonal_mask(2 * n, s.dtype(), s.device())?;
    let logits = (s + mask)?;
    let targets: Vec<u32> = (0..2 * n).map(|k| ((k + n) % (2 * n)) as u32).collect();
    cross_entropy_rows(&logits, &targets)?.mean_all()
}
