//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading data, building a task stream or producing batches.
///
/// Variants that come from a file always carry its path, so the message tells the user which file to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("{path}: {error}")]
    Io {
        /// The file (or folder) involved.
        path: PathBuf,
        /// The underlying I/O error (in the message, so it is not repeated as a `source()`).
        error: std::io::Error,
    },
    /// A file exists but its content is invalid (wrong magic, truncated, label out of range, undecodable image, ...).
    #[error("{path}: {reason}")]
    BadFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Two files that must agree do not (e.g. an IDX image file and its label file have different counts).
    #[error("{path} and {other}: {reason}")]
    Inconsistent {
        /// The first file.
        path: PathBuf,
        /// The file it disagrees with.
        other: PathBuf,
        /// What disagrees.
        reason: String,
    },
    /// A class folder of an image-folder dataset holds no image.
    #[error("{path}: class folder holds no .png/.jpg/.jpeg/.webp/.bmp image")]
    EmptyClass {
        /// The empty class folder.
        path: PathBuf,
    },
    /// The files of a dataset were not found where they were looked for.
    #[error("dataset `{dataset}`: {what} not found (looked in: {looked_in}). {hint}")]
    NotFound {
        /// The dataset name.
        dataset: String,
        /// What was missing.
        what: String,
        /// The folders searched, comma-separated.
        looked_in: String,
        /// What to do about it.
        hint: String,
    },
    /// A dataset that lives on disk was requested without `--data-root`.
    #[error("dataset `{dataset}` needs --data-root: {hint}")]
    NeedsDataRoot {
        /// The dataset name.
        dataset: String,
        /// What the folder must contain and where to get it.
        hint: String,
    },
    /// An unknown dataset name.
    #[error("unknown dataset `{name}`; valid names: {valid}")]
    UnknownDataset {
        /// The name given.
        name: String,
        /// The valid names, comma-separated.
        valid: String,
    },
    /// A task stream that cannot be built (classes not divisible into tasks, bad explicit order, ...).
    #[error("invalid task stream: {reason}")]
    InvalidStream {
        /// What is wrong.
        reason: String,
    },
    /// An invalid configuration value (augmentation parameters, mean/std, batch arguments, ...).
    #[error("invalid value for `{key}`: {reason}")]
    InvalidConfig {
        /// The configuration key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A dataset index out of range for the split it indexes.
    #[error("index {index} out of range for a split of {len} images")]
    IndexOutOfRange {
        /// The index.
        index: u32,
        /// The split's length.
        len: usize,
    },
    /// The background prefetch thread stopped without producing its batches (it panicked).
    #[error("prefetch worker stopped unexpectedly: {reason}")]
    Worker {
        /// What happened.
        reason: String,
    },
    /// A candle error while building a tensor.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl DataError {
    /// Shorthand for [`DataError::BadFile`].
    pub fn bad(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::BadFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
    /// Shorthand for [`DataError::Io`].
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error,
        }
    }
    /// Shorthand for [`DataError::InvalidConfig`].
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        DataError::InvalidConfig {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The crate's result alias.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
