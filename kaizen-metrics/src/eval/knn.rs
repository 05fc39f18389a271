//! Weighted kNN on L2-normalised features (protocol `knn`): [`KnnConfig`], [`l2_normalize`], [`knn_predict`].

use super::check::{check_labels, dims2, Result};
use crate::MetricsError;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

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
