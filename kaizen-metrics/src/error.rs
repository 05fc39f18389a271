//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in kaizen-metrics. Variants name the file, line, column, cell or tensor involved.
///
/// Line and column numbers are 1-based (as an editor shows them); matrix rows and columns (`row`, `col`) are 0-based
/// task indices, as in the formulas.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Reading or writing a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error (in the message, so it is not repeated as a `source()`).
        error: std::io::Error,
    },
    /// A CSV field is not a number.
    #[error("{file}:{line}:{column}: {field:?} is not a number (cells are decimal fractions in [0, 1]; a missing cell is written NA, - or left empty)")]
    NotANumber {
        /// The file name (or `<input>` when parsed from a string).
        file: String,
        /// 1-based line number.
        line: usize,
        /// 1-based column (field) number.
        column: usize,
        /// The offending text.
        field: String,
    },
    /// A row of a matrix CSV has a different number of fields than the first row.
    #[error("{file}:{line}: ragged row: {found} fields, but the first row (line {first_line}) has {expected}")]
    RaggedRow {
        /// The file name.
        file: String,
        /// 1-based line number of the ragged row.
        line: usize,
        /// 1-based line number of the first data row.
        first_line: usize,
        /// Number of fields of the first row.
        expected: usize,
        /// Number of fields of this row.
        found: usize,
    },
    /// The matrix has a different number of rows than columns.
    #[error("{file}: the accuracy matrix must be square (T rows of T values, row i = after task i), found {rows} rows of {cols} values")]
    NotSquare {
        /// The file name.
        file: String,
        /// Number of data rows.
        rows: usize,
        /// Number of values per row.
        cols: usize,
    },
    /// The file (or matrix) has no data.
    #[error("{file}: empty: no data rows (only blank or `#` comment lines)")]
    Empty {
        /// The file name (or what was empty, e.g. `accuracy matrix`).
        file: String,
    },
    /// A vector file (random baseline / joint accuracies) has more than one data line.
    #[error("{file}:{line}: expected exactly one line of numbers, found another data line")]
    ExtraLine {
        /// The file name.
        file: String,
        /// 1-based line number of the second data line.
        line: usize,
    },
    /// A value lies outside [0, 1] (or is not finite).
    #[error("{file}:{line}:{column}: value {value} is outside [0, 1]{}", if *.looks_like_percent { " (the values look like percentages: divide them by 100)" } else { "" })]
    OutOfRange {
        /// The file name (or a description such as `accuracy matrix`).
        file: String,
        /// 1-based line number (for in-memory data: row index + 1).
        line: usize,
        /// 1-based column number (for in-memory data: column index + 1).
        column: usize,
        /// The offending value.
        value: f64,
        /// True when every value of the input lies in [0, 100], i.e. the input is probably in percent.
        looks_like_percent: bool,
    },
    /// A per-task vector has the wrong length.
    #[error("{what}: expected {expected} values (one per task, T = {expected}), found {found}")]
    LengthMismatch {
        /// What the vector is (file name, `random baseline`, `labels`, ...).
        what: String,
        /// The expected length.
        expected: usize,
        /// The actual length.
        found: usize,
    },
    /// A cell needed by the metrics (j <= i) is missing.
    #[error("accuracy matrix: cell R[{row}][{col}] (after task {row}, on task {col}) is missing, but every cell with j <= i is required")]
    MissingCell {
        /// 0-based row (after task `row`).
        row: usize,
        /// 0-based column (task).
        col: usize,
    },
    /// A row or column index is out of range for the matrix.
    #[error("accuracy matrix: index ({row}, {col}) out of range for {num_tasks} tasks")]
    IndexOutOfRange {
        /// Row index.
        row: usize,
        /// Column index.
        col: usize,
        /// The number of tasks T.
        num_tasks: usize,
    },
    /// A label, class or task index is out of range.
    #[error("{what}: index {index} out of range (must be < {bound})")]
    BadIndex {
        /// What the index is (e.g. `labels[3]`).
        what: String,
        /// The offending index.
        index: usize,
        /// The exclusive upper bound.
        bound: usize,
    },
    /// A tensor has the wrong rank, shape or dtype.
    #[error("tensor {name}: {problem}")]
    BadTensor {
        /// The argument name (e.g. `logits`, `bank_features`).
        name: String,
        /// What is wrong (e.g. `expected (N, C), got [3, 4, 5]`).
        problem: String,
    },
    /// A configuration value is invalid.
    #[error("config {field}: {problem}")]
    BadConfig {
        /// The field name.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A name is not usable as part of a file name (protocol names become `acc_matrix_<protocol>.csv`).
    #[error("name {name:?}: {problem}")]
    BadName {
        /// The offending name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// JSON (de)serialisation failed.
    #[error("{path}: JSON: {error}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error (in the message, not repeated as a `source()`).
        error: serde_json::Error,
    },
    /// A candle operation failed.
    #[error("candle ({context}): {error}")]
    Candle {
        /// What was being computed.
        context: String,
        /// The underlying error (in the message, not repeated as a `source()`).
        error: candle_core::Error,
    },
    /// Drawing a plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The image file being drawn.
        path: PathBuf,
        /// The plotting backend's message.
        message: String,
    },
}

impl MetricsError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MetricsError::Io {
            path: path.into(),
            error: source,
        }
    }

    /// Wraps a candle error with what was being computed.
    pub(crate) fn candle(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Self {
        let context = context.into();
        move |error| MetricsError::Candle { context, error }
    }
}
