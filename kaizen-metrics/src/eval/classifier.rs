//! The model's own classifier: top-1 predictions from logits (optionally masked to the seen classes) and its
//! per-task accuracy (protocols `classifier` and `classifier_seen`).

use super::accuracy::per_task_accuracy;
use super::check::{dims2, Result};
use crate::MetricsError;
use candle_core::{DType, Tensor};

/// Top-1 predictions from logits `(N, C)` (any float dtype, any device): `argmax_c logits[n][c]`, restricted to the
/// classes with `class_mask[c] == true` when a mask (C entries, at least one true) is given. Ties go to the lower
/// class id; NaN logits never win.
pub fn argmax_predictions(logits: &Tensor, class_mask: Option<&[bool]>) -> Result<Vec<u16>> {
    let (_, c) = dims2(logits, "logits")?;
    if c == 0 || c > usize::from(u16::MAX) + 1 {
        return Err(MetricsError::BadTensor {
            name: "logits".into(),
            problem: format!("{c} classes (need 1..=65536)"),
        });
    }
    if let Some(mask) = class_mask {
        if mask.len() != c {
            return Err(MetricsError::LengthMismatch {
                what: "class mask (one entry per logit column)".into(),
                expected: c,
                found: mask.len(),
            });
        }
        if !mask.iter().any(|&m| m) {
            return Err(MetricsError::BadConfig {
                field: "class mask".into(),
                problem: "no class is selected".into(),
            });
        }
    }
    let rows = logits
        .to_dtype(DType::F32)
        .and_then(|l| l.to_vec2::<f32>())
        .map_err(MetricsError::candle("logits to host"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let mut best: Option<(usize, f32)> = None;
            for (k, &v) in row.iter().enumerate() {
                if class_mask.is_some_and(|m| !m[k]) || v.is_nan() {
                    continue;
                }
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((k, v));
                }
            }
            // With an all-NaN row fall back to the first allowed class (a wrong answer, never a panic).
            let first_allowed = class_mask
                .and_then(|m| m.iter().position(|&x| x))
                .unwrap_or(0);
            best.map_or(first_allowed, |(k, _)| k) as u16
        })
        .collect())
}

/// Per-task accuracy of the model's own classifier from its logits `(N, C)` over all C classes of the stream.
/// `seen_mask = None`: top-1 over all classes (protocol `classifier`); `Some(mask)`: top-1 over the seen classes only
/// (protocol `classifier_seen`, mask from [`seen_class_mask`](super::seen_class_mask)).
pub fn classifier_task_accuracy(
    logits: &Tensor,
    labels: &[u16],
    task_of_class: &[usize],
    num_tasks: usize,
    seen_mask: Option<&[bool]>,
) -> Result<Vec<Option<f64>>> {
    let (n, _) = dims2(logits, "logits")?;
    if n != labels.len() {
        return Err(MetricsError::LengthMismatch {
            what: "labels (one per logits row)".into(),
            expected: n,
            found: labels.len(),
        });
    }
    let preds = argmax_predictions(logits, seen_mask)?;
    per_task_accuracy(&preds, labels, task_of_class, num_tasks)
}
