//! [`EvalData`]: the frozen train / test features of a stream and the kNN and linear-probe rows of the accuracy
//! matrix computed from them (plain and forward-transfer lookahead rows).

use super::accuracy::{per_task_accuracy, seen_rows};
use super::check::{dims2, Result};
use super::knn::{knn_predict, KnnConfig};
use super::linear::{LinearProbe, LinearProbeConfig};
use crate::MetricsError;
use candle_core::Tensor;

/// Everything one evaluation row needs: frozen train and test features with labels, and the stream's task layout.
/// The same data serves the kNN and linear-probe protocols; `tasks_seen` selects the seen-task training rows.
#[derive(Debug, Clone, Copy)]
pub struct EvalData<'a> {
    /// Training features `(N_train, D)` of the whole stream (the seen-task rows are selected per call).
    pub train_features: &'a Tensor,
    /// Training labels (class ids), N_train entries.
    pub train_labels: &'a [u16],
    /// Test features `(N_test, D)` of all tasks.
    pub test_features: &'a Tensor,
    /// Test labels, N_test entries.
    pub test_labels: &'a [u16],
    /// Task of each class id (`task_of_class.len()` = number of classes C).
    pub task_of_class: &'a [usize],
    /// Number of tasks T.
    pub num_tasks: usize,
}

impl EvalData<'_> {
    /// The training rows of the first `tasks_seen` tasks: `(features, labels)`.
    fn seen_train(&self, tasks_seen: usize) -> Result<(Tensor, Vec<u16>)> {
        let (n, _) = dims2(self.train_features, "train_features")?;
        if n != self.train_labels.len() {
            return Err(MetricsError::LengthMismatch {
                what: "train_labels (one per train feature row)".into(),
                expected: n,
                found: self.train_labels.len(),
            });
        }
        let rows = seen_rows(self.train_labels, self.task_of_class, tasks_seen)?;
        let labels = rows
            .iter()
            .map(|&r| self.train_labels[r as usize])
            .collect();
        let idx = Tensor::from_slice(&rows, rows.len(), self.train_features.device())
            .map_err(MetricsError::candle("seen rows"))?;
        let feats = self
            .train_features
            .index_select(&idx, 0)
            .map_err(MetricsError::candle("seen rows"))?;
        Ok((feats, labels))
    }

    /// Test rows of task `j` only: `(features, labels)`.
    fn task_test(&self, j: usize) -> Result<(Tensor, Vec<u16>)> {
        let (n, _) = dims2(self.test_features, "test_features")?;
        if n != self.test_labels.len() {
            return Err(MetricsError::LengthMismatch {
                what: "test_labels (one per test feature row)".into(),
                expected: n,
                found: self.test_labels.len(),
            });
        }
        let mut rows = Vec::new();
        for (k, &y) in self.test_labels.iter().enumerate() {
            let task =
                *self
                    .task_of_class
                    .get(y as usize)
                    .ok_or_else(|| MetricsError::BadIndex {
                        what: format!("test_labels[{k}]"),
                        index: y as usize,
                        bound: self.task_of_class.len(),
                    })?;
            if task == j {
                rows.push(k as u32);
            }
        }
        let labels = rows.iter().map(|&r| self.test_labels[r as usize]).collect();
        let idx = Tensor::from_slice(&rows, rows.len(), self.test_features.device())
            .map_err(MetricsError::candle("task test rows"))?;
        let feats = self
            .test_features
            .index_select(&idx, 0)
            .map_err(MetricsError::candle("task test rows"))?;
        Ok((feats, labels))
    }

    /// The forward-transfer variant of a row: cells `j < tasks_seen` as in the plain row (bank / probe on the
    /// seen tasks), and each cell `j >= tasks_seen` from a bank / probe on the train features of tasks `0..=j`,
    /// evaluated on task j's test images only (how well the representation already separates task j; this
    /// fills `R[j-1][j]` for forward transfer and `b_j` for a random model with `tasks_seen = 0`).
    /// `predict(train_features, train_labels, test_features)` is the protocol's predictor.
    fn row_lookahead(
        &self,
        tasks_seen: usize,
        predict: impl Fn(&Tensor, &[u16], &Tensor) -> Result<Vec<u16>>,
    ) -> Result<Vec<Option<f64>>> {
        let mut row = if tasks_seen > 0 {
            let (feats, labels) = self.seen_train(tasks_seen)?;
            let preds = predict(&feats, &labels, self.test_features)?;
            per_task_accuracy(&preds, self.test_labels, self.task_of_class, self.num_tasks)?
        } else {
            vec![None; self.num_tasks]
        };
        for (j, cell) in row.iter_mut().enumerate().skip(tasks_seen) {
            let (test, test_labels) = self.task_test(j)?;
            if test_labels.is_empty() {
                *cell = None;
                continue;
            }
            let (feats, labels) = self.seen_train(j + 1)?;
            let preds = predict(&feats, &labels, &test)?;
            let correct = preds
                .iter()
                .zip(&test_labels)
                .filter(|(p, y)| p == y)
                .count();
            *cell = Some(correct as f64 / test_labels.len() as f64);
        }
        Ok(row)
    }

    /// [`EvalData::knn_row`] with the forward-transfer cells `j >= tasks_seen` filled (see the private
    /// `row_lookahead`: bank = train features of tasks `0..=j`, test = task j's images). `tasks_seen = 0` gives
    /// the per-task accuracies b_j of a model before training.
    pub fn knn_row_lookahead(
        &self,
        tasks_seen: usize,
        cfg: &KnnConfig,
    ) -> Result<Vec<Option<f64>>> {
        let c = self.task_of_class.len();
        self.row_lookahead(tasks_seen, |f, l, t| knn_predict(f, l, t, c, cfg))
    }

    /// [`EvalData::linear_probe_row`] with the forward-transfer cells `j >= tasks_seen` filled: a probe trained
    /// on tasks `0..=j`, evaluated on task j's test images. `tasks_seen = 0` gives b_j before training.
    pub fn linear_probe_row_lookahead(
        &self,
        tasks_seen: usize,
        cfg: &LinearProbeConfig,
    ) -> Result<Vec<Option<f64>>> {
        let c = self.task_of_class.len();
        self.row_lookahead(tasks_seen, |f, l, t| {
            LinearProbe::train(f, l, c, cfg)?.predict(t)
        })
    }

    /// Row `tasks_seen - 1` of the kNN accuracy matrix: bank = train features of the first `tasks_seen` tasks,
    /// accuracy of [`knn_predict`] on every task's test set (T cells; `None` for a task without test images).
    pub fn knn_row(&self, tasks_seen: usize, cfg: &KnnConfig) -> Result<Vec<Option<f64>>> {
        let (bank, bank_labels) = self.seen_train(tasks_seen)?;
        let preds = knn_predict(
            &bank,
            &bank_labels,
            self.test_features,
            self.task_of_class.len(),
            cfg,
        )?;
        per_task_accuracy(&preds, self.test_labels, self.task_of_class, self.num_tasks)
    }

    /// Row `tasks_seen - 1` of the linear-probe accuracy matrix: a [`LinearProbe`] over all classes trained on the
    /// train features of the first `tasks_seen` tasks, evaluated on every task's test set.
    pub fn linear_probe_row(
        &self,
        tasks_seen: usize,
        cfg: &LinearProbeConfig,
    ) -> Result<Vec<Option<f64>>> {
        let (feats, labels) = self.seen_train(tasks_seen)?;
        let probe = LinearProbe::train(&feats, &labels, self.task_of_class.len(), cfg)?;
        let preds = probe.predict(self.test_features)?;
        per_task_accuracy(&preds, self.test_labels, self.task_of_class, self.num_tasks)
    }
}
