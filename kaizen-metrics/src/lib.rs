//! kaizen-metrics: accuracy matrices, continual-learning metrics, evaluation protocols (classifier, weighted kNN,
//! linear probe), CSV / JSON / Markdown reports and plots.
//!
//! # The accuracy matrix
//! `R` is the T x T accuracy matrix of one evaluation protocol: `R[i][j]` = top-1 accuracy on the test set of task
//! `j` after training through task `i` (0-based; fractions in [0, 1]). Rows are "after task i", columns are tasks.
//! Cells with `j > i` (tasks not trained yet) may be present or absent ([`AccuracyMatrix`]).
//!
//! # Metrics (exactly these definitions; [`summarize`] computes them all)
//! | name | formula | undefined (`None` / JSON `null`) when |
//! |---|---|---|
//! | `final_accuracy` | `(1/T) * sum_j R[T-1][j]` | never |
//! | `average_incremental_accuracy` | `(1/T) * sum_i A_i, A_i = (1/(i+1)) * sum_{j<=i} R[i][j]` | never |
//! | `per_task_forgetting` f_j (j < T-1) | `max_{l in [j, T-2]} R[l][j] - R[T-1][j]` | T = 1 (empty list) |
//! | `forgetting` | `(1/(T-1)) * sum_{j<T-1} f_j` | T = 1 |
//! | `backward_transfer` | `(1/(T-1)) * sum_{j<T-1} (R[T-1][j] - R[j][j])` | T = 1 |
//! | `forward_transfer` | `(1/(T-1)) * sum_{j>=1} (R[j-1][j] - b_j)` | T = 1, no b, or a cell `R[j-1][j]` missing |
//! | `plasticity` | `(1/T) * sum_j R[j][j]` | never |
//! | `intransigence` | `(1/T) * sum_j (a*_j - R[j][j])` | no a* |
//!
//! b_j = accuracy on task j of a randomly initialised model under the same protocol; a*_j = accuracy on task j of
//! the jointly trained model. "Average continual performance" in the Kaizen paper is `average_incremental_accuracy`.
//! Forgetting follows Chaudhry et al. 2018 (max over earlier steps, last task excluded); backward and forward transfer
//! follow Lopez-Paz and Ranzato 2017 (GEM). Metrics never return NaN.
//!
//! # Evaluation protocols ([`eval`])
//! Every protocol predicts among all classes of the stream (class-incremental, single head) unless said otherwise:
//! - `classifier`: the model's own head, top-1 over all classes ([`classifier_task_accuracy`] with no mask);
//! - `classifier_seen`: the same head, top-1 over the classes of the tasks trained so far ([`seen_class_mask`]);
//! - `knn`: weighted kNN on L2-normalised backbone features (cosine similarity, k = 20, temperature 0.07, votes
//!   exp(sim / T) summed per class; solo-learn's `WeightedKNNClassifier`), bank = train features of the seen tasks
//!   ([`knn_predict`], [`EvalData::knn_row`]);
//! - `linear`: a linear probe trained on frozen, standardised train features of the seen tasks ([`LinearProbe`],
//!   [`EvalData::linear_probe_row`]), deterministic (zero init, seeded batch order).
//!
//! # Files
//! [`to_csv`] / [`parse_matrix_csv`] (`acc_matrix_<protocol>.csv`), [`write_summary_json`] (`summary.json` =
//! `{"protocols": {name: Summary}}`), [`write_run_report`] (report.md + CSVs + plots), [`write_comparison`]
//! (comparison.md + comparison.json over several strategies), [`seeds::write_seed_comparison`] (mean ± std of every
//! metric over seeds). Plots (heatmaps with numbers, accuracy curves; PNG and
//! SVG) need the default feature `plots`; the DejaVu Sans font (Bitstream Vera licence, `assets/`) is embedded.
#![warn(missing_docs)]

pub mod csv;
mod error;
pub mod eval;
mod matrix;
pub mod metrics;
#[cfg(feature = "plots")]
pub mod plots;
pub mod report;
pub mod seeds;

pub use csv::{
    parse_matrix_csv, parse_vector_csv, read_matrix_csv, read_vector_csv, task_header, to_csv,
    write_csv,
};
pub use error::MetricsError;
pub use eval::{
    argmax_predictions, classifier_task_accuracy, knn_predict, per_task_accuracy, seen_class_mask,
    seen_rows, EvalData, KnnConfig, LinearProbe, LinearProbeConfig,
};
pub use matrix::AccuracyMatrix;
pub use metrics::{
    average_incremental_accuracy, backward_transfer, final_accuracy, forgetting, forward_transfer,
    intransigence, per_task_forgetting, plasticity, summarize, Summary,
};
pub use report::{
    write_comparison, write_run_report, write_summary_json, ProtocolResult, ReportInput,
    SummaryFile,
};
