//! [`ModelError`]: the one error type of this crate. Every variant names the file, tensor or key involved.

use std::path::PathBuf;

/// Errors raised while building, initialising, optimising, checkpointing or converting models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A candle operation failed; `context` says what was being done (and on which tensor).
    #[error("{context}: {error}")]
    Candle {
        /// What was being done, e.g. `building backbone` or `EMA update of target.conv1.weight`.
        context: String,
        /// The underlying candle error (in the message, so it is not repeated as a `source()`).
        error: candle_core::Error,
    },
    /// Reading or writing a file failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        error: std::io::Error,
    },
    /// A checkpoint or tensor file is not a valid (or not a complete) safetensors file, or its manifest is unreadable.
    #[error("{}: corrupt or truncated file: {reason}", path.display())]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor's bytes do not match the SHA-256 recorded in the manifest (the data was corrupted after writing).
    #[error("{}: tensor `{name}` is corrupted (checksum mismatch)", path.display())]
    Checksum {
        /// The file involved.
        path: PathBuf,
        /// The corrupted tensor.
        name: String,
    },
    /// A tensor the model needs is absent.
    #[error("{origin}: missing tensor `{name}`")]
    MissingTensor {
        /// Where the tensors came from (a file path, or a description such as `online VarMap`).
        origin: String,
        /// The missing tensor.
        name: String,
    },
    /// A tensor is present that the model does not have.
    #[error("{origin}: unexpected tensor `{name}` (not part of the model being built)")]
    UnexpectedTensor {
        /// Where the tensors came from.
        origin: String,
        /// The extra tensor.
        name: String,
    },
    /// A tensor has the wrong shape.
    #[error("{origin}: tensor `{name}` has shape {got:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// Where the tensors came from.
        origin: String,
        /// The tensor.
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A tensor has the wrong element type.
    #[error("{origin}: tensor `{name}` has dtype {got}, the model expects {expected}")]
    DTypeMismatch {
        /// Where the tensors came from.
        origin: String,
        /// The tensor.
        name: String,
        /// The dtype the model expects.
        expected: String,
        /// The dtype found.
        got: String,
    },
    /// The manifest is missing, has another format or schema version, or disagrees with the tensors.
    #[error("{}: bad manifest: {reason}", path.display())]
    Manifest {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value is invalid (zero width, unknown architecture, bad tau, ...).
    #[error("invalid configuration `{key}`: {reason}")]
    Config {
        /// The configuration key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// An EMA pairing found a tensor on one side without a partner on the other.
    #[error("EMA pairing: `{name}` has no partner `{partner}`")]
    Unpaired {
        /// The tensor that has no partner.
        name: String,
        /// The name its partner would have.
        partner: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Adds a context string to candle errors: `op().ctx("building backbone")?`.
pub trait CandleContext<T> {
    /// Wraps a candle error in [`ModelError::Candle`] with the given context.
    fn ctx(self, context: impl Into<String>) -> Result<T>;
    /// Like [`CandleContext::ctx`] with a lazily built context.
    fn with_ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> CandleContext<T> for candle_core::Result<T> {
    fn ctx(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|error| ModelError::Candle {
            context: context.into(),
            error,
        })
    }
    fn with_ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|error| ModelError::Candle {
            context: f(),
            error,
        })
    }
}
