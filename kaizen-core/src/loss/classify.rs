//! Classifier terms: cross-entropy on the labelled samples only, and Kaizen's soft-label distillation.

use super::ops::{
    check_matrix, check_same_matrices, check_temperature, cross_entropy_rows, log_softmax, softmax,
};
use candle_core::{bail, DType, Result, Tensor};

/// The label that marks an unlabelled sample in [`masked_ce`].
pub const UNLABELLED: i64 = -1;

/// Cross-entropy over the labelled samples only, reference key `masked_ce`:
///
/// `mean over {i : labels_i >= 0} of -log_softmax(logits_i)[labels_i]`.
///
/// - `logits`: (N, C) classifier outputs.
/// - `labels`: (N,) int64 class indices in `[0, C)`, or -1 ([`UNLABELLED`]) for an unlabelled sample.
///
/// A batch without any labelled sample gives an exact 0 (a scalar still connected to `logits`, so
/// `backward` works and yields a zero gradient), never NaN. A label `< -1` or `>= C` is an error.
/// The labels are read on the host (N integers) to validate them and select the labelled rows.
pub fn masked_ce(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (n, c) = check_matrix("masked_ce", "logits", logits)?;
    if labels.dtype() != DType::I64 {
        bail!(
            "masked_ce: `labels` must be int64, got {:?}",
            labels.dtype()
        );
    }
    if labels.dims() != [n] {
        bail!(
            "masked_ce: `labels` must have shape ({n},) to match `logits` {:?}, got {:?}",
            logits.dims(),
            labels.dims()
        );
    }
    let labels = labels.to_vec1::<i64>()?;
    let mut rows = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for (i, &y) in labels.iter().enumerate() {
        if y == UNLABELLED {
            continue;
        }
        if y < 0 || y >= c as i64 {
            bail!("masked_ce: label {y} of sample {i} is out of range (classes 0..{c}, or -1 = unlabelled)");
        }
        rows.push(i as u32);
        targets.push(y as u32);
    }
    if rows.is_empty() {
        // No labelled sample: an exact zero that is still a node of the graph over `logits`
        // (an empty slice sums to 0, and its gradient is all zeros).
        return logits.narrow(0, 0, 0)?.sum_all();
    }
    let labelled = if rows.len() == n {
        logits.clone()
    } else {
        let idx = Tensor::from_vec(rows, (targets.len(),), logits.device())?;
        logits.index_select(&idx, 0)?
    };
    cross_entropy_rows(&labelled, &targets)?.mean_all()
}

/// Soft-label distillation (Kaizen's L_C^KD), reference key `soft_ce`:
///
/// `mean_i sum_c - softmax(target_logits_i / T)_c * log_softmax(logits_i / T)_c`
/// (no T^2 factor).
///
/// - `logits`: (N, C) current classifier logits (get gradients).
/// - `target_logits`: (N, C) frozen previous classifier's logits; **detached** here.
/// - `temperature`: T > 0 (Kaizen default 1).
///
/// `soft_ce(x, x, T)` equals the mean entropy of `softmax(x / T)`.
pub fn soft_ce(logits: &Tensor, target_logits: &Tensor, temperature: f64) -> Result<Tensor> {
    check_same_matrices(
        "soft_ce",
        &[("logits", logits), ("target_logits", target_logits)],
    )?;
    check_temperature("soft_ce", temperature)?;
    let inv_t = 1.0 / temperature;
    let target = softmax(&target_logits.detach().affine(inv_t, 0.0)?)?;
    let log_p = log_softmax(&logits.affine(inv_t, 0.0)?)?;
    (target * log_p)?.sum(1)?.mean_all()?.neg()
}
