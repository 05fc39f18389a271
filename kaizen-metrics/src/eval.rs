//! Evaluation protocols on precomputed features / logits: per-task accuracy from predictions, the model's own
//! classifier (all classes, or seen classes only), weighted kNN and a linear probe.
//!
//! All protocols predict among all classes of the stream (class-incremental, single head) except
//! `classifier_seen`, which masks the classes of tasks not trained yet. Each yields one row of its accuracy matrix
//! per evaluation ([`EvalData`] bundles what a row needs).
//!
//! Determinism: no candle RNG is used. kNN ties are broken towards the lower bank index, argmax ties towards the lower
//! class id; the linear probe starts from zero weights and shuffles with a ChaCha8 stream seeded by its config.

use crate::MetricsError;
use candle_core::{DType, Device, Tensor};
use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, MetricsError>;

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

/// Checks that `t` is a rank-2 tensor and returns `(rows, cols)`.
fn dims2(t: &Tensor, name: &str) -> Result<(usize, usize)> {
    match t.dims() {
        &[n, d] => Ok((n, d)),
        other => Err(MetricsError::BadTensor {
            name: name.into(),
            problem: format!("expected rank 2 (N, D), got shape {other:?}"),
        }),
    }
}

/// Checks that every label is `< num_classes`.
fn check_labels(labels: &[u16], num_classes: usize, name: &str) -> Result<()> {
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
/// (protocol `classifier_seen`, mask from [`seen_class_mask`]).
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

/// Weighted kNN settings (solo-learn's `WeightedKNNClassifier` with cosine distance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnConfig {
    /// Number of neighbours (min(k, bank size) are used). Default 20.
    pub k: usize,
    /// Temperature T of the vote weights exp(sim / T). Default 0.07.
    pub temperature: f64,
    /// Bound on the elements of one similarity block: the test set is processed in chunks of
    /// max(1, max_distance_matrix_size / bank_size) rows. Default 5,000,000 (20 MB of f32), as in solo-learn.
    pub max_distance_matrix_size: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            k: 20,
            temperature: 0.07,
            max_distance_matrix_size: 5_000_000,
        }
    }
}

impl KnnConfig {
    /// Checks k >= 1, temperature > 0 and finite, max_distance_matrix_size >= 1.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(MetricsError::BadConfig {
                field: "knn.k".into(),
                problem: "must be >= 1".into(),
            });
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(MetricsError::BadConfig {
                field: "knn.temperature".into(),
                problem: format!("must be > 0, got {}", self.temperature),
            });
        }
        if self.max_distance_matrix_size == 0 {
            return Err(MetricsError::BadConfig {
                field: "knn.max_distance_matrix_size".into(),
                problem: "must be >= 1".into(),
            });
        }
        Ok(())
    }
}

/// Row-wise L2 normalisation x / max(||x||_2, 1e-12) in f32 (as `torch.nn.functional.normalize`).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let ctx = MetricsError::candle("l2_normalize");
    let f = x
        .to_dtype(DType::F32)
        .map_err(MetricsError::candle("l2_normalize"))?;
    f.sqr()
        .and_then(|s| s.sum_keepdim(1))
        .and_then(|s| s.sqrt())
        .and_then(|n| n.clamp(1e-12f32, f32::MAX))
        .and_then(|n| f.broadcast_div(&n))
        .map_err(ctx)
}

/// Weighted kNN predictions (solo-learn's `WeightedKNNClassifier`, cosine): features are L2-normalised, similarity
/// sim = <test, bank> (cosine), the k most similar bank rows vote for their label with weight exp(sim / T), votes
/// are summed per class and the top class wins (ties: lower class id; equal similarities: lower bank index).
///
/// Shapes: `bank_features (M, D)`, `bank_labels` M entries `< num_classes`, `test_features (N, D)`; any float dtype
/// and device. Memory: one `(chunk, M)` similarity block at a time (see [`KnnConfig::max_distance_matrix_size`]).
pub fn knn_predict(
    bank_features: &Tensor,
    bank_labels: &[u16],
    test_features: &Tensor,
    num_classes: usize,
    cfg: &KnnConfig,
) -> Result<Vec<u16>> {
    cfg.validate()?;
    let (m, d) = dims2(bank_features, "bank_features")?;
    let (n, d_test) = dims2(test_features, "test_features")?;
    if d != d_test {
        return Err(MetricsError::BadTensor {
            name: "test_features".into(),
            problem: format!("feature dimension {d_test} differs from the bank's {d}"),
        });
    }
    if m == 0 {
        return Err(MetricsError::BadTensor {
            name: "bank_features".into(),
            problem: "empty bank (no training features of seen tasks)".into(),
        });
    }
    if bank_labels.len() != m {
        return Err(MetricsError::LengthMismatch {
            what: "bank_labels (one per bank row)".into(),
            expected: m,
            found: bank_labels.len(),
        });
    }
    check_labels(bank_labels, num_classes, "bank_labels")?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let bank_t = l2_normalize(bank_features)?
        .t()
        .and_then(|t| t.contiguous())
        .map_err(MetricsError::candle("kNN bank transpose"))?;
    let test = l2_normalize(test_features)?;
    let k = cfg.k.min(m);
    let chunk = (cfg.max_distance_matrix_size / m).clamp(1, n);
    let inv_t = 1.0 / cfg.temperature;
    let mut preds = Vec::with_capacity(n);
    let mut order: Vec<u32> = Vec::with_capacity(m);
    let mut votes = vec![0f64; num_classes];
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        let sims = test
            .narrow(0, start, len)
            .and_then(|q| q.matmul(&bank_t))
            .and_then(|s| s.to_vec2::<f32>())
            .map_err(MetricsError::candle(format!(
                "kNN similarities of test rows {start}..{}",
                start + len
            )))?;
        for row in &sims {
            order.clear();
            order.extend(0..m as u32);
            // Most similar first; equal similarities (and NaN, ordered by total_cmp) by bank index.
            let cmp =
                |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
            if k < m {
                order.select_nth_unstable_by(k - 1, cmp);
            }
            votes.iter_mut().for_each(|v| *v = 0.0);
            for &idx in &order[..k] {
                let s = f64::from(row[idx as usize]);
                votes[bank_labels[idx as usize] as usize] += (s * inv_t).exp();
            }
            let mut best = 0usize;
            for (c, &v) in votes.iter().enumerate() {
                if v > votes[best] {
                    best = c;
                }
            }
            preds.push(best as u16);
        }
    }
    Ok(preds)
}

/// Linear-probe settings: softmax regression on standardised frozen features, trained by mini-batch SGD with
/// momentum, L2 weight decay and a cosine learning-rate schedule (lr_s = lr * (1 + cos(pi * s / S)) / 2 at step s of
/// S), from zero weights. Batch order per epoch: Fisher-Yates shuffle from `ChaCha8Rng::seed_from_u64(seed)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearProbeConfig {
    /// Passes over the training features. Default 30.
    pub epochs: usize,
    /// Peak learning rate. Default 0.1.
    pub lr: f64,
    /// Mini-batch size (the last batch of an epoch may be smaller). Default 256.
    pub batch_size: usize,
    /// L2 weight decay on the weights (not the bias), added to the gradient. Default 5e-4.
    pub weight_decay: f64,
    /// SGD momentum (heavy ball). Default 0.9.
    pub momentum: f64,
    /// Seed of the batch order. Default 0.
    pub seed: u64,
    /// Standardise features with the training mean and std (per dimension) before the linear layer. Default true.
    pub standardize: bool,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        LinearProbeConfig {
            epochs: 30,
            lr: 0.1,
            batch_size: 256,
            weight_decay: 5e-4,
            momentum: 0.9,
            seed: 0,
            standardize: true,
        }
    }
}

impl LinearProbeConfig {
    /// Checks epochs >= 1, batch_size >= 1, lr > 0, weight_decay >= 0, momentum in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, problem: String| {
            Err(MetricsError::BadConfig {
                field: format!("linear_probe.{field}"),
                problem,
            })
        };
        if self.epochs == 0 {
            return bad("epochs", "must be >= 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be >= 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("must be > 0, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            );
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(
                "momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            );
        }
        Ok(())
    }
}

/// A trained linear probe: logits = ((x - mean) / std) W^T + b.
#[derive(Debug, Clone)]
pub struct LinearProbe {
    /// Weights `(C, D)`, f32.
    pub weight: Tensor,
    /// Bias `(C,)`, f32.
    pub bias: Tensor,
    /// Per-dimension training mean `(1, D)` (zeros without standardisation).
    pub mean: Tensor,
    /// Per-dimension training std `(1, D)`, dimensions with std < 1e-6 use 1 (ones without standardisation).
    pub std: Tensor,
}

impl LinearProbe {
    /// Trains a probe on frozen `features (N, D)` with `labels` (N entries `< num_classes`); see
    /// [`LinearProbeConfig`]. Deterministic for a given config, input and device. Errors on bad shapes, labels,
    /// config, or no training rows.
    pub fn train(
        features: &Tensor,
        labels: &[u16],
        num_classes: usize,
        cfg: &LinearProbeConfig,
    ) -> Result<LinearProbe> {
        cfg.validate()?;
        let (n, d) = dims2(features, "features")?;
        if n == 0 {
            return Err(MetricsError::BadTensor {
                name: "features".into(),
                problem: "no training rows".into(),
            });
        }
        if labels.len() != n {
            return Err(MetricsError::LengthMismatch {
                what: "labels (one per feature row)".into(),
                expected: n,
                found: labels.len(),
            });
        }
        check_labels(labels, num_classes, "labels")?;
        let dev = features.device().clone();
        let x = features
            .to_dtype(DType::F32)
            .map_err(MetricsError::candle("probe features to f32"))?;
        let (mean, std) = if cfg.standardize {
            column_stats(&x)?
        } else {
            unit_stats(d, &dev)?
        };
        let x = standardize(&x, &mean, &std)?;
        let c = MetricsError::candle;
        let mut w = Tensor::zeros((num_classes, d), DType::F32, &dev).map_err(c("probe init"))?;
        let mut b = Tensor::zeros(num_classes, DType::F32, &dev).map_err(c("probe init"))?;
        let mut vw = w.zeros_like().map_err(c("probe init"))?;
        let mut vb = b.zeros_like().map_err(c("probe init"))?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut order: Vec<u32> = (0..n as u32).collect();
        let steps_per_epoch = n.div_ceil(cfg.batch_size);
        let total = (cfg.epochs * steps_per_epoch) as f64;
        let mut step = 0usize;
        for _ in 0..cfg.epochs {
            for i in (1..n).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            for batch in order.chunks(cfg.batch_size) {
                let lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos());
                step += 1;
                let bsz = batch.len();
                let mut onehot = vec![0f32; bsz * num_classes];
                for (r, &idx) in batch.iter().enumerate() {
                    onehot[r * num_classes + labels[idx as usize] as usize] = 1.0;
                }
                let ctx = || c("probe SGD step");
                let idx = Tensor::from_slice(batch, bsz, &dev).map_err(ctx())?;
                let xb = x.index_select(&idx, 0).map_err(ctx())?;
                let yb = Tensor::from_vec(onehot, (bsz, num_classes), &dev).map_err(ctx())?;
                // z = xb W^T + b; softmax cross-entropy gradient G = (softmax(z) - y) / B.
                let z = xb
                    .matmul(&w.t().map_err(ctx())?)
                    .and_then(|z| z.broadcast_add(&b))
                    .map_err(ctx())?;
                let g = candle_nn::ops::softmax_last_dim(&z)
                    .and_then(|p| p - &yb)
                    .and_then(|g| g.affine(1.0 / bsz as f64, 0.0))
                    .map_err(ctx())?;
                // dW = G^T xb + wd * W; db = sum_n G.
                let gw = g
                    .t()
                    .and_then(|gt| gt.matmul(&xb))
                    .and_then(|gw| gw + w.affine(cfg.weight_decay, 0.0)?)
                    .map_err(ctx())?;
                let gb = g.sum(0).map_err(ctx())?;
                vw = (vw.affine(cfg.momentum, 0.0).and_then(|v| v + gw)).map_err(ctx())?;
                vb = (vb.affine(cfg.momentum, 0.0).and_then(|v| v + gb)).map_err(ctx())?;
                w = (&w - vw.affine(lr, 0.0).map_err(ctx())?).map_err(ctx())?;
                b = (&b - vb.affine(lr, 0.0).map_err(ctx())?).map_err(ctx())?;
            }
        }
        Ok(LinearProbe {
            weight: w,
            bias: b,
            mean,
            std,
        })
    }

    /// Logits `(N, C)` f32 for `features (N, D)`.
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        let (_, d) = dims2(features, "features")?;
        let (_, dw) = dims2(&self.weight, "probe weight")?;
        if d != dw {
            return Err(MetricsError::BadTensor {
                name: "features".into(),
                problem: format!("feature dimension {d}, the probe was trained on {dw}"),
            });
        }
        let x = features
            .to_dtype(DType::F32)
            .map_err(MetricsError::candle("probe features to f32"))?;
        let x = standardize(&x, &self.mean, &self.std)?;
        x.matmul(
            &self
                .weight
                .t()
                .map_err(MetricsError::candle("probe logits"))?,
        )
        .and_then(|z| z.broadcast_add(&self.bias))
        .map_err(MetricsError::candle("probe logits"))
    }

    /// Top-1 predictions over all classes for `features (N, D)`.
    pub fn predict(&self, features: &Tensor) -> Result<Vec<u16>> {
        argmax_predictions(&self.logits(features)?, None)
    }
}

/// Per-column mean and std (population) of `x (N, D)`; std < 1e-6 is replaced by 1.
fn column_stats(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let c = MetricsError::candle("probe standardisation stats");
    let n = x.dims()[0] as f64;
    let mean = x
        .sum_keepdim(0)
        .and_then(|s| s.affine(1.0 / n, 0.0))
        .map_err(MetricsError::candle("probe standardisation stats"))?;
    let var = x
        .broadcast_sub(&mean)
        .and_then(|d| d.sqr())
        .and_then(|s| s.sum_keepdim(0))
        .and_then(|s| s.affine(1.0 / n, 0.0))
        .map_err(MetricsError::candle("probe standardisation stats"))?;
    let std: Vec<f32> = var
        .flatten_all()
        .and_then(|v| v.to_vec1::<f32>())
        .map_err(MetricsError::candle("probe standardisation stats"))?
        .into_iter()
        .map(|v| if v.sqrt() < 1e-6 { 1.0 } else { v.sqrt() })
        .collect();
    let d = std.len();
    let std = Tensor::from_vec(std, (1, d), x.device()).map_err(c)?;
    Ok((mean, std))
}

/// Mean 0 and std 1 for every dimension (no standardisation).
fn unit_stats(d: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
    let c = || MetricsError::candle("probe unit stats");
    Ok((
        Tensor::zeros((1, d), DType::F32, dev).map_err(c())?,
        Tensor::ones((1, d), DType::F32, dev).map_err(c())?,
    ))
}

/// (x - mean) / std, broadcasting `(1, D)` over rows.
fn standardize(x: &Tensor, mean: &Tensor, std: &Tensor) -> Result<Tensor> {
    x.broadcast_sub(mean)
        .and_then(|d| d.broadcast_div(std))
        .map_err(MetricsError::candle("probe standardise"))
}

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
