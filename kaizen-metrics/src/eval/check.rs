//! Shared input checks of the evaluation protocols: rank-2 tensors and label ranges, plus the module's `Result`.

use crate::MetricsError;
use candle_core::Tensor;

pub(super) type Result<T> = std::result::Result<T, MetricsError>;

/// Checks that `t` is a rank-2 tensor and returns `(rows, cols)`.
pub(super) fn dims2(t: &Tensor, name: &str) -> Result<(usize, usize)> {
    match t.dims() {
        &[n, d] => Ok((n, d)),
        other => Err(MetricsError::BadTensor {
            name: name.into(),
            problem: format!("expected rank 2 (N, D), got shape {other:?}"),
        }),
    }
}

/// Checks that every label is `< num_classes`.
pub(super) fn check_labels(labels: &[u16], num_classes: usize, name: &str) -> Result<()> {
    if let Some((n, &y)) = labels
        .iter()
        .enumerate()
        .find(|(_, &y)| y as usize >= num_classes)
    {
        return Err(MetricsError::BadIndex {
            what: format!("{name}[{n}]"),
            index: y as usize,
            bound: num_classes,
        });
    }
    Ok(())
}
