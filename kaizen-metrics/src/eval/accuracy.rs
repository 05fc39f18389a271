//! Per-task accuracy from predictions, and the classes / training rows seen after a number of tasks.

use super::check::Result;
use crate::MetricsError;

/// Accuracy per task: for each task `t`, the fraction of test images whose label belongs to task `t`
/// (`task_of_class[label] == t`) with `preds[n] == labels[n]`. A task without test images gets `None`.
///
/// Errors: `preds` and `labels` of different lengths, a label without an entry in `task_of_class`, a task index
/// `>= num_tasks`.
pub fn per_task_accuracy(
    preds: &[u16],
    labels: &[u16],
    task_of_class: &[usize],
    num_tasks: usize,
) -> Result<Vec<Option<f64>>> {
    if preds.len() != labels.len() {
        return Err(MetricsError::LengthMismatch {
            what: "predictions (one per label)".into(),
            expected: labels.len(),
            found: preds.len(),
        });
    }
    let mut correct = vec![0usize; num_tasks];
    let mut total = vec![0usize; num_tasks];
    for (n, (&p, &y)) in preds.iter().zip(labels).enumerate() {
        let task = *task_of_class
            .get(y as usize)
            .ok_or_else(|| MetricsError::BadIndex {
                what: format!("labels[{n}] (class id; task_of_class has one entry per class)"),
                index: y as usize,
                bound: task_of_class.len(),
            })?;
        if task >= num_tasks {
            return Err(MetricsError::BadIndex {
                what: format!("task_of_class[{y}]"),
                index: task,
                bound: num_tasks,
            });
        }
        total[task] += 1;
        correct[task] += usize::from(p == y);
    }
    Ok(correct
        .iter()
        .zip(&total)
        .map(|(&c, &n)| (n > 0).then(|| c as f64 / n as f64))
        .collect())
}

/// The mask of classes seen after training `tasks_seen` tasks: `mask[c] = task_of_class[c] < tasks_seen`.
pub fn seen_class_mask(task_of_class: &[usize], tasks_seen: usize) -> Vec<bool> {
    task_of_class.iter().map(|&t| t < tasks_seen).collect()
}

/// Indices of the rows whose label belongs to one of the first `tasks_seen` tasks (e.g. the kNN bank / linear-probe
/// training set after task `tasks_seen - 1`). Errors on a label without an entry in `task_of_class`.
pub fn seen_rows(labels: &[u16], task_of_class: &[usize], tasks_seen: usize) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for (n, &y) in labels.iter().enumerate() {
        let task = *task_of_class
            .get(y as usize)
            .ok_or_else(|| MetricsError::BadIndex {
                what: format!("labels[{n}]"),
                index: y as usize,
                bound: task_of_class.len(),
            })?;
        if task < tasks_seen {
            out.push(n as u32);
        }
    }
    Ok(out)
}
