//! Evaluation after each task and the result files of a run.
//!
//! One row per protocol after task i: cell (i, j) = top-1 accuracy on task j's test images, over all classes
//! of the stream (single head), except `classifier_seen` (classes of the tasks trained so far; `None` for
//! j > i). For `knn` and `linear`, the bank / probe training set is the train features of tasks
//! 0..=max(i, j): the seen tasks for j <= i (class-incremental), plus the evaluated task for j > i, so that
//! `R[j-1][j]` measures how well the representation already separates task j (forward transfer), with the
//! random model's b_j measured the same way. Features come from the backbone in eval mode.

mod compare;
mod protocols;
mod results;

pub use compare::{compare_run_dirs, seed_dir, write_seed_comparison};
pub use protocols::{
    evaluate_after, EvalContext, EvalPoint, Evaluation, Protocol, ProtocolRow, Row,
};
pub use results::{write_results, ResultsLayout};
