//! Reading and writing accuracy matrices and per-task vectors as CSV.
//!
//! Format of `R.csv`: T lines of T comma-separated numbers, row i = after task i, values in [0, 1], optionally after
//! a header line of column names (what we write: `task_0,task_1,...`, so `pandas.read_csv` reads it without options).
//! Lines whose first non-blank character is `#` are comments; blank lines are ignored; spaces around fields and
//! `\r\n` line ends are accepted. A missing cell (a protocol that does not evaluate tasks j > i) is written `NA`
//! (`-` or an empty field are read as missing too). `b.csv` / `a.csv` (random-baseline and joint accuracies): one line
//! of T numbers (after an optional header), no missing values.

use crate::matrix::{is_fraction, looks_like_percent};
use crate::{AccuracyMatrix, MetricsError};
use std::path::Path;

/// One data line: its 1-based line number and its fields (`None` = missing cell).
type DataLine = (usize, Vec<Option<f64>>);

/// Whether a line is a header of column names: every field starts with a letter or `_` and none is a number or a
/// missing-value marker (`NA`).
fn is_header(line: &str) -> bool {
    line.split(',').map(str::trim).all(|f| {
        f.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && f.parse::<f64>().is_err()
            && !f.eq_ignore_ascii_case("na")
    })
}

/// The header of a CSV of `n` per-task columns: `task_0,...,task_{n-1}`.
pub fn task_header(n: usize) -> String {
    (0..n)
        .map(|j| format!("task_{j}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits `text` into data lines and parses the fields. `allow_missing` accepts `NA`, `-` and empty fields. A header
/// line ([`is_header`]) before the first data line is skipped.
fn parse_lines(text: &str, file: &str, allow_missing: bool) -> Result<Vec<DataLine>, MetricsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || (out.is_empty() && is_header(line)) {
            continue;
        }
        let mut fields = Vec::new();
        for (col, field) in line.split(',').enumerate() {
            let field = field.trim();
            let missing = field.is_empty() || field.eq_ignore_ascii_case("na") || field == "-";
            if missing && allow_missing {
                fields.push(None);
                continue;
            }
            match field.parse::<f64>() {
                Ok(v) if v.is_finite() => fields.push(Some(v)),
                _ => {
                    return Err(MetricsError::NotANumber {
                        file: file.into(),
                        line: idx + 1,
                        column: col + 1,
                        field: field.into(),
                    })
                }
            }
        }
        out.push((idx + 1, fields));
    }
    Ok(out)
}

/// Checks that every present value is in [0, 1]; the error names the first bad one and says whether all values
/// look like percentages.
fn check_range(lines: &[DataLine], file: &str) -> Result<(), MetricsError> {
    let percent = looks_like_percent(lines.iter().flat_map(|(_, f)| f.iter().flatten()));
    for (line, fields) in lines {
        for (col, v) in fields.iter().enumerate() {
            if let Some(v) = *v {
                if !is_fraction(v) {
                    return Err(MetricsError::OutOfRange {
                        file: file.into(),
                        line: *line,
                        column: col + 1,
                        value: v,
                        looks_like_percent: percent,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Parses an accuracy matrix from CSV text (format in the module docs). `file` names the source in errors.
///
/// Errors (in this order of detection): a field that is not a number ([`MetricsError::NotANumber`], with line and
/// column), a row with a different number of fields than the first ([`MetricsError::RaggedRow`]), no data rows
/// ([`MetricsError::Empty`]), rows != columns ([`MetricsError::NotSquare`]), a value outside [0, 1]
/// ([`MetricsError::OutOfRange`], suggesting a division by 100 when every value is in [0, 100]).
pub fn parse_matrix_csv(text: &str, file: &str) -> Result<AccuracyMatrix, MetricsError> {
    let lines = parse_lines(text, file, true)?;
    let Some((first_line, first)) = lines.first() else {
        return Err(MetricsError::Empty { file: file.into() });
    };
    let cols = first.len();
    for (line, fields) in &lines[1..] {
        if fields.len() != cols {
            return Err(MetricsError::RaggedRow {
                file: file.into(),
                line: *line,
                first_line: *first_line,
                expected: cols,
                found: fields.len(),
            });
        }
    }
    if lines.len() != cols {
        return Err(MetricsError::NotSquare {
            file: file.into(),
            rows: lines.len(),
            cols,
        });
    }
    check_range(&lines, file)?;
    AccuracyMatrix::from_rows(lines.into_iter().map(|(_, f)| f).collect())
}

/// Reads an accuracy matrix CSV file (see [`parse_matrix_csv`]); errors name the path.
pub fn read_matrix_csv(path: &Path) -> Result<AccuracyMatrix, MetricsError> {
    let text = std::fs::read_to_string(path).map_err(|e| MetricsError::io(path, e))?;
    parse_matrix_csv(&text, &path.display().to_string())
}

/// Parses a per-task vector (one line of numbers in [0, 1]; comments and blank lines ignored). With
/// `expected_len = Some(T)` a different length is a [`MetricsError::LengthMismatch`] naming `file`.
pub fn parse_vector_csv(
    text: &str,
    file: &str,
    expected_len: Option<usize>,
) -> Result<Vec<f64>, MetricsError> {
    let lines = parse_lines(text, file, false)?;
    let Some((_, first)) = lines.first() else {
        return Err(MetricsError::Empty { file: file.into() });
    };
    if let Some((line, _)) = lines.get(1) {
        return Err(MetricsError::ExtraLine {
            file: file.into(),
            line: *line,
        });
    }
    if let Some(t) = expected_len {
        if first.len() != t {
            return Err(MetricsError::LengthMismatch {
                what: format!("{file} (one value per task of the accuracy matrix)"),
                expected: t,
                found: first.len(),
            });
        }
    }
    check_range(&lines, file)?;
    // parse_lines was called with allow_missing = false, so every field is Some.
    Ok(first.iter().flatten().copied().collect())
}

/// Reads a per-task vector file (see [`parse_vector_csv`]).
pub fn read_vector_csv(path: &Path, expected_len: Option<usize>) -> Result<Vec<f64>, MetricsError> {
    let text = std::fs::read_to_string(path).map_err(|e| MetricsError::io(path, e))?;
    parse_vector_csv(&text, &path.display().to_string(), expected_len)
}

/// Formats a matrix as CSV (readable back by [`parse_matrix_csv`] to an identical matrix, and by `pandas.read_csv`
/// without options: values are written with Rust's shortest round-trip float formatting, missing cells as `NA`),
/// under a header `task_0,...,task_{T-1}` (column j = test set of task j; row i = after training task i).
pub fn to_csv(r: &AccuracyMatrix) -> String {
    let mut s = task_header(r.num_tasks());
    s.push('\n');
    for row in r.rows() {
        let fields: Vec<String> = row
            .iter()
            .map(|c| c.map_or_else(|| "NA".to_string(), |v| format!("{v}")))
            .collect();
        s.push_str(&fields.join(","));
        s.push('\n');
    }
    s
}

/// Writes [`to_csv`] to `path` (e.g. `acc_matrix_<protocol>.csv`).
pub fn write_csv(path: &Path, r: &AccuracyMatrix) -> Result<(), MetricsError> {
    std::fs::write(path, to_csv(r)).map_err(|e| MetricsError::io(path, e))
}
