//! Evaluation protocols on precomputed features / logits: per-task accuracy from predictions, the model's own
//! classifier (all classes, or seen classes only), weighted kNN and a linear probe.
//!
//! All protocols predict among all classes of the stream (class-incremental, single head) except
//! `classifier_seen`, which masks the classes of tasks not trained yet. Each yields one row of its accuracy matrix
//! per evaluation ([`EvalData`] bundles what a row needs).
//!
//! Determinism: no candle RNG is used. kNN ties are broken towards the lower bank index, argmax ties towards the lower
//! class id; the linear probe starts from zero weights and shuffles with a ChaCha8 stream seeded by its config.
//!
//! Files: `accuracy` (per-task accuracy, seen classes and rows), `classifier` (the model's own head), `knn`
//! (weighted kNN), `linear` (linear probe), `rows` ([`EvalData`]: one accuracy-matrix row per protocol) and
//! `check` (shared shape and label checks).

mod accuracy;
mod check;
mod classifier;
mod knn;
mod linear;
mod rows;

pub use accuracy::{per_task_accuracy, seen_class_mask, seen_rows};
pub use classifier::{argmax_predictions, classifier_task_accuracy};
pub use knn::{knn_predict, l2_normalize, KnnConfig};
pub use linear::{LinearProbe, LinearProbeConfig};
pub use rows::EvalData;
