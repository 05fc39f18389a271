//! Continual-learning metrics: pure functions of an [`AccuracyMatrix`] (formulas in the crate docs).
//!
//! Each function returns `None` where the metric is undefined (T = 1 for forgetting and transfer, no baseline, no
//! joint accuracies) or where a cell it needs is missing; never NaN. [`summarize`] checks the inputs first and turns
//! missing cells and wrong lengths into errors.

use crate::matrix::{is_fraction, looks_like_percent};
use crate::{AccuracyMatrix, MetricsError};
use serde::{Deserialize, Serialize};

/// `final_accuracy = (1/T) * sum_j R[T-1][j]`: mean accuracy over all tasks after the last one.
pub fn final_accuracy(r: &AccuracyMatrix) -> Option<f64> {
    let t = r.num_tasks();
    let mut sum = 0.0;
    for j in 0..t {
        sum += r.get(t - 1, j)?;
    }
    Some(sum / t as f64)
}

/// `average_incremental_accuracy = (1/T) * sum_i A_i` with `A_i = (1/(i+1)) * sum_{j<=i} R[i][j]`
/// ("average continual performance" in the Kaizen paper).
pub fn average_incremental_accuracy(r: &AccuracyMatrix) -> Option<f64> {
    let t = r.num_tasks();
    let mut sum = 0.0;
    for i in 0..t {
        sum += r.seen_average(i)?;
    }
    Some(sum / t as f64)
}

/// per-task forgetting `f_j = max_{l in [j, T-2]} R[l][j] - R[T-1][j]` for j < T-1 (Chaudhry et al. 2018; the last
/// task is excluded). T - 1 entries; empty when T = 1. `None` only if a needed cell is missing.
pub fn per_task_forgetting(r: &AccuracyMatrix) -> Option<Vec<f64>> {
    let t = r.num_tasks();
    let mut out = Vec::with_capacity(t.saturating_sub(1));
    for j in 0..t.saturating_sub(1) {
        let last = r.get(t - 1, j)?;
        let mut best = f64::NEG_INFINITY;
        for l in j..t - 1 {
            best = best.max(r.get(l, j)?);
        }
        out.push(best - last);
    }
    Some(out)
}

/// forgetting = (1/(T-1)) * sum_{j<T-1} f_j (mean of [`per_task_forgetting`]); `None` when T = 1.
pub fn forgetting(r: &AccuracyMatrix) -> Option<f64> {
    mean(&per_task_forgetting(r)?)
}

/// `backward_transfer = (1/(T-1)) * sum_{j<T-1} (R[T-1][j] - R[j][j])` (Lopez-Paz and Ranzato 2017); `None` when T = 1.
pub fn backward_transfer(r: &AccuracyMatrix) -> Option<f64> {
    let t = r.num_tasks();
    let mut diffs = Vec::with_capacity(t.saturating_sub(1));
    for j in 0..t.saturating_sub(1) {
        diffs.push(r.get(t - 1, j)? - r.get(j, j)?);
    }
    mean(&diffs)
}

/// `forward_transfer = (1/(T-1)) * sum_{j>=1} (R[j-1][j] - b_j)`, where b_j is the accuracy on task j of a randomly
/// initialised model under the same protocol (Lopez-Paz and Ranzato 2017). `None` when T = 1, when `baseline` does
/// not have T entries, or when a super-diagonal cell `R[j-1][j]` is missing (protocols that skip unseen tasks).
pub fn forward_transfer(r: &AccuracyMatrix, baseline: &[f64]) -> Option<f64> {
    let t = r.num_tasks();
    if baseline.len() != t {
        return None;
    }
    let mut diffs = Vec::with_capacity(t.saturating_sub(1));
    for (j, b) in baseline.iter().enumerate().skip(1) {
        diffs.push(r.get(j - 1, j)? - b);
    }
    mean(&diffs)
}

/// `plasticity = (1/T) * sum_j R[j][j]`: mean accuracy on each task right after learning it.
pub fn plasticity(r: &AccuracyMatrix) -> Option<f64> {
    let t = r.num_tasks();
    let mut diag = Vec::with_capacity(t);
    for j in 0..t {
        diag.push(r.get(j, j)?);
    }
    mean(&diag)
}

/// `intransigence = (1/T) * sum_j (a*_j - R[j][j])`, where a*_j is the accuracy on task j of the jointly trained
/// model. `None` when `joint` does not have T entries.
pub fn intransigence(r: &AccuracyMatrix, joint: &[f64]) -> Option<f64> {
    let t = r.num_tasks();
    if joint.len() != t {
        return None;
    }
    let mut diffs = Vec::with_capacity(t);
    for (j, a) in joint.iter().enumerate() {
        diffs.push(a - r.get(j, j)?);
    }
    mean(&diffs)
}

/// Arithmetic mean; `None` for an empty slice (never NaN).
fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

/// All metrics of one accuracy matrix. Serialised with exactly these keys; undefined values are `null`,
/// `per_task_forgetting` has T-1 entries (empty when T = 1). Values are fractions (differences of fractions for
/// forgetting and transfer), not percentages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// See [`final_accuracy`].
    pub final_accuracy: Option<f64>,
    /// See [`average_incremental_accuracy`].
    pub average_incremental_accuracy: Option<f64>,
    /// See [`forgetting`]; `null` when T = 1.
    pub forgetting: Option<f64>,
    /// See [`backward_transfer`]; `null` when T = 1.
    pub backward_transfer: Option<f64>,
    /// See [`forward_transfer`]; `null` when T = 1, without a baseline, or without the cells `R[j-1][j]`.
    pub forward_transfer: Option<f64>,
    /// See [`plasticity`].
    pub plasticity: Option<f64>,
    /// See [`intransigence`]; `null` without joint accuracies.
    pub intransigence: Option<f64>,
    /// See [`per_task_forgetting`]: T-1 entries, `[]` when T = 1.
    pub per_task_forgetting: Vec<f64>,
}

impl Summary {
    /// The keys of [`Summary::scalars`], in that order.
    pub fn scalar_keys() -> [&'static str; 7] {
        [
            "final_accuracy",
            "average_incremental_accuracy",
            "forgetting",
            "backward_transfer",
            "forward_transfer",
            "plasticity",
            "intransigence",
        ]
    }

    /// The scalar metrics in a fixed order, as `(key, value)`: the JSON keys, for tables.
    pub fn scalars(&self) -> [(&'static str, Option<f64>); 7] {
        let k = Self::scalar_keys();
        [
            (k[0], self.final_accuracy),
            (k[1], self.average_incremental_accuracy),
            (k[2], self.forgetting),
            (k[3], self.backward_transfer),
            (k[4], self.forward_transfer),
            (k[5], self.plasticity),
            (k[6], self.intransigence),
        ]
    }
}

/// True for metrics where a smaller value is better (`forgetting`, `intransigence`); false for the others.
pub fn lower_is_better(key: &str) -> bool {
    matches!(key, "forgetting" | "intransigence")
}

/// Checks a per-task vector (random baseline `b` or joint accuracies `a*`): T entries, each finite in [0, 1].
/// `what` names it in the error (a file name or `random baseline`).
pub fn check_task_vector(what: &str, values: &[f64], num_tasks: usize) -> Result<(), MetricsError> {
    if values.len() != num_tasks {
        return Err(MetricsError::LengthMismatch {
            what: what.into(),
            expected: num_tasks,
            found: values.len(),
        });
    }
    let percent = looks_like_percent(values);
    if let Some((j, &v)) = values.iter().enumerate().find(|(_, v)| !is_fraction(**v)) {
        return Err(MetricsError::OutOfRange {
            file: what.into(),
            line: 1,
            column: j + 1,
            value: v,
            looks_like_percent: percent,
        });
    }
    Ok(())
}

/// Computes every metric of `r`. `baseline` = per-task accuracies b_j of a randomly initialised model (for forward
/// transfer), `joint` = per-task accuracies a*_j of a jointly trained model (for intransigence); both under the same
/// protocol as `r`.
///
/// Errors: a missing cell with `j <= i` ([`MetricsError::MissingCell`]; use [`AccuracyMatrix::leading`] for a run in
/// progress), a baseline or joint vector whose length is not T or with a value outside [0, 1].
/// Missing super-diagonal cells are not an error: forward transfer is then `None`.
pub fn summarize(
    r: &AccuracyMatrix,
    baseline: Option<&[f64]>,
    joint: Option<&[f64]>,
) -> Result<Summary, MetricsError> {
    let t = r.num_tasks();
    r.check_lower_triangle()?;
    if let Some(b) = baseline {
        check_task_vector("random baseline", b, t)?;
    }
    if let Some(a) = joint {
        check_task_vector("joint accuracies", a, t)?;
    }
    Ok(Summary {
        final_accuracy: final_accuracy(r),
        average_incremental_accuracy: average_incremental_accuracy(r),
        forgetting: forgetting(r),
        backward_transfer: backward_transfer(r),
        forward_transfer: baseline.and_then(|b| forward_transfer(r, b)),
        plasticity: plasticity(r),
        intransigence: joint.and_then(|a| intransigence(r, a)),
        // The lower triangle was checked above, so this is always Some.
        per_task_forgetting: per_task_forgetting(r).unwrap_or_default(),
    })
}
