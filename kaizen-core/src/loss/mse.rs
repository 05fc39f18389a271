//! Mean squared error (the `predictive_mse` distiller's loss and VICReg's invariance term).

use super::ops::check_same_matrices;
use candle_core::{Result, Tensor};

/// Mean squared error, reference key `mse`:
///
/// `mse(p, z) = mean over all N*D entries of (p - z)^2`.
///
/// - `p`: (N, D) predictions.
/// - `z`: (N, D) targets. **Not** detached (both inputs get a gradient); callers that need a
///   stop-gradient (the distillers) detach `z` themselves.
pub fn mse(p: &Tensor, z: &Tensor) -> Result<Tensor> {
    check_same_matrices("mse", &[("p", p), ("z", z)])?;
    (p - z)?.sqr()?.mean_all()
}
