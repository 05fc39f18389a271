//! BYOL and SimSiam: (negative) cosine between the online prediction and a stop-gradient target.

use super::ops::{check_same_matrices, cosine};
use candle_core::{Result, Tensor};

/// BYOL loss (Grill et al. 2020), reference key `byol`:
///
/// `byol(p, z) = 2 - 2 * mean_i cos(p_i, z_i)`, with `cos(a, b) = a.b / max(|a| |b|, 1e-12)`.
///
/// - `p`: (N, D) online predictions.
/// - `z`: (N, D) target projections; **detached** here (stop-gradient), so only `p` gets a gradient.
///
/// Returns a scalar in [0, 4]; invariant to positive scaling of any row. N >= 1. Zero rows give
/// cos = 0 (value 2 for that row), with finite gradients.
pub fn byol(p: &Tensor, z: &Tensor) -> Result<Tensor> {
    check_same_matrices("byol", &[("p", p), ("z", z)])?;
    cosine(p, &z.detach())?.mean_all()?.affine(-2.0, 2.0)
}

/// SimSiam loss (Chen & He 2021), reference key `simsiam`:
///
/// `simsiam(p, z) = - mean_i cos(p_i, z_i)`.
///
/// - `p`: (N, D) predictions.
/// - `z`: (N, D) projections of the other view; **detached** here (stop-gradient).
///
/// Returns a scalar in [-1, 1]. N >= 1.
pub fn simsiam(p: &Tensor, z: &Tensor) -> Result<Tensor> {
    check_same_matrices("simsiam", &[("p", p), ("z", z)])?;
    cosine(p, &z.detach())?.mean_all()?.neg()
}
