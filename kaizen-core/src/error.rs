//! The typed error of `kaizen-core`.
//!
//! Tensor maths (the [`crate::loss`] functions, [`crate::distill::Distiller::loss`]) returns
//! `candle_core::Result` directly, with a message that names the loss and the argument; everything that
//! validates user input (names, checkpoint state) returns [`CoreError`].

/// Every error `kaizen-core` reports. Variants name the thing involved.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An error from candle (tensor maths, device, dtype), passed through unchanged.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A dataset / stream / replay error (names the file involved).
    #[error(transparent)]
    Data(#[from] kaizen_data::DataError),

    /// A model / checkpoint / optimiser error.
    #[error(transparent)]
    Model(#[from] kaizen_models::ModelError),

    /// A metrics / report error.
    #[error(transparent)]
    Metrics(#[from] kaizen_metrics::MetricsError),

    /// A configuration value that cannot be used.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    /// A registry name (method, distiller, ...) that is not known.
    #[error("unknown {what} `{name}`; valid names: {valid}")]
    UnknownName {
        /// What kind of name was looked up (`method`, `distiller`).
        what: &'static str,
        /// The name as given.
        name: String,
        /// The valid names, comma separated.
        valid: String,
    },

    /// A tensor whose shape differs from the exact shape required.
    #[error("tensor `{name}`: expected shape {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// The tensor's name (a checkpoint key or an argument name).
        name: String,
        /// The required shape.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },

    /// A tensor whose shape breaks a rule that is not one exact shape (e.g. `(B, D)` with any B).
    #[error("tensor `{name}`: expected {expected}, got shape {got:?}")]
    BadShape {
        /// The tensor's name (a checkpoint key or an argument name).
        name: String,
        /// The rule, in words (e.g. `(K, D) float with K >= 1`).
        expected: String,
        /// The shape found.
        got: Vec<usize>,
    },

    /// A tensor a state needs that is absent (the key is named).
    #[error("missing tensor `{0}`")]
    MissingTensor(String),

    /// An invalid input, with the reason (naming the file or key involved).
    #[error("{0}")]
    Invalid(String),

    /// A lock poisoned by a panic in another thread (a `VarMap`'s data).
    #[error("a lock was poisoned by a panic in another thread")]
    Poisoned,

    /// A loss term that is NaN or infinite: training stops.
    #[error(
        "non-finite loss term `{term}` = {value} at task {task}, step {step}: training diverged. The last checkpoint \
         holds the last finite model; try a lower learning rate (train.lr, train.classifier_lr) or more warm-up \
         (train.warmup_epochs) in a new run"
    )]
    NonFinite {
        /// The term's name (`ssl`, `fe_kd`, `cls_ce`, `cls_kd`).
        term: String,
        /// The task index.
        task: usize,
        /// The step within the task.
        step: usize,
        /// The value seen.
        value: f64,
    },

    /// The model or optimiser state holds NaN or infinite values: it is not written to a checkpoint.
    #[error(
        "the training state holds non-finite values ({count} tensors, first `{first}`) at task {task}, after step \
         {step}: not saved, the last checkpoint is kept. Training diverged: try a lower learning rate (train.lr, \
         train.classifier_lr) or more warm-up (train.warmup_epochs) in a new run"
    )]
    NonFiniteState {
        /// Number of tensors with a non-finite value.
        count: usize,
        /// The first such tensor (checkpoint name).
        first: String,
        /// The task index.
        task: usize,
        /// Optimiser steps done in the task.
        step: usize,
    },

    /// An I/O error on a file, naming it.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory involved.
        path: std::path::PathBuf,
        /// The underlying error (in the message, so it is not repeated as a `source()`).
        error: std::io::Error,
    },

    /// A state (checkpoint part) that is inconsistent, with the reason.
    #[error("invalid state `{name}`: {reason}")]
    BadState {
        /// The state's name (e.g. `queue.ptr`).
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A parameter outside its valid range.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    BadParam {
        /// The parameter's name (e.g. `temperature`).
        name: &'static str,
        /// The value given.
        value: f64,
        /// The valid range, in words.
        reason: &'static str,
    },
}

impl CoreError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, error: std::io::Error) -> Self {
        CoreError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}
