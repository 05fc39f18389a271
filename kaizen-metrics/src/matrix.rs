//! The accuracy matrix `R` of one evaluation protocol.

use crate::MetricsError;
use serde::{Deserialize, Serialize};

/// A T x T accuracy matrix: `R[i][j]` = top-1 accuracy (a fraction in [0, 1]) on the test set of task `j` after
/// training through task `i` (both 0-based).
///
/// Every cell is optional: the trainer fills a row after each task, and a protocol may skip the cells `j > i`
/// (tasks not yet trained). The metrics need every cell with `j <= i` ([`AccuracyMatrix::check_lower_triangle`]);
/// forward transfer additionally needs the super-diagonal `R[j-1][j]`.
///
/// Invariants (checked by every constructor and setter, including deserialisation): at least one task, square,
/// every present value finite and in [0, 1].
///
/// Serialised as `{"num_tasks": T, "cells": [[0.9, null], [0.8, 0.85]]}` (missing cells are `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawMatrix", into = "RawMatrix")]
pub struct AccuracyMatrix {
    cells: Vec<Vec<Option<f64>>>,
}

/// The serde form of [`AccuracyMatrix`], validated on the way in.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    num_tasks: usize,
    cells: Vec<Vec<Option<f64>>>,
}

impl TryFrom<RawMatrix> for AccuracyMatrix {
    type Error = MetricsError;
    fn try_from(raw: RawMatrix) -> Result<Self, MetricsError> {
        if raw.cells.len() != raw.num_tasks {
            return Err(MetricsError::LengthMismatch {
                what: "accuracy matrix rows (num_tasks)".into(),
                expected: raw.num_tasks,
                found: raw.cells.len(),
            });
        }
        AccuracyMatrix::from_rows(raw.cells)
    }
}

impl From<AccuracyMatrix> for RawMatrix {
    fn from(m: AccuracyMatrix) -> Self {
        RawMatrix {
            num_tasks: m.cells.len(),
            cells: m.cells,
        }
    }
}

/// True when `v` is an admissible accuracy: finite and in [0, 1].
pub(crate) fn is_fraction(v: f64) -> bool {
    v.is_finite() && (0.0..=1.0).contains(&v)
}

/// True when every value is finite and in [0, 100], i.e. an out-of-range input is probably in percent.
pub(crate) fn looks_like_percent<'a>(values: impl IntoIterator<Item = &'a f64>) -> bool {
    values
        .into_iter()
        .all(|v| v.is_finite() && (0.0..=100.0).contains(v))
}

impl AccuracyMatrix {
    /// An empty T x T matrix (all cells missing). Error if `num_tasks == 0`.
    pub fn new(num_tasks: usize) -> Result<Self, MetricsError> {
        if num_tasks == 0 {
            return Err(MetricsError::Empty {
                file: "accuracy matrix".into(),
            });
        }
        Ok(AccuracyMatrix {
            cells: vec![vec![None; num_tasks]; num_tasks],
        })
    }

    /// Builds a matrix from rows of optional cells (row `i` = after task `i`). Checks the invariants: non-empty,
    /// square, every value finite and in [0, 1] (the error names the first bad cell as line `i+1`, column `j+1`
    /// and says whether the values look like percentages).
    pub fn from_rows(rows: Vec<Vec<Option<f64>>>) -> Result<Self, MetricsError> {
        let what = "accuracy matrix";
        if rows.is_empty() {
            return Err(MetricsError::Empty { file: what.into() });
        }
        let t = rows.len();
        for row in &rows {
            if row.len() != t {
                return Err(MetricsError::NotSquare {
                    file: what.into(),
                    rows: t,
                    cols: row.len(),
                });
            }
        }
        let percent = looks_like_percent(rows.iter().flatten().flatten());
        for (i, row) in rows.iter().enumerate() {
            for (j, cell) in row.iter().enumerate() {
                if let Some(v) = *cell {
                    if !is_fraction(v) {
                        return Err(MetricsError::OutOfRange {
                            file: what.into(),
                            line: i + 1,
                            column: j + 1,
                            value: v,
                            looks_like_percent: percent,
                        });
                    }
                }
            }
        }
        Ok(AccuracyMatrix { cells: rows })
    }

    /// Builds a matrix in which every cell is present (convenience for tests and complete protocols).
    pub fn from_full(rows: &[Vec<f64>]) -> Result<Self, MetricsError> {
        Self::from_rows(
            rows.iter()
                .map(|r| r.iter().map(|&v| Some(v)).collect())
                .collect(),
        )
    }

    /// The number of tasks T (>= 1).
    pub fn num_tasks(&self) -> usize {
        self.cells.len()
    }

    /// `R[i][j]`, or `None` when the cell is missing or the index is out of range.
    pub fn get(&self, i: usize, j: usize) -> Option<f64> {
        self.cells.get(i).and_then(|r| r.get(j)).copied().flatten()
    }

    /// The rows (row `i` = after task `i`; each row has T cells).
    pub fn rows(&self) -> &[Vec<Option<f64>>] {
        &self.cells
    }

    /// Sets (or clears, with `None`) cell `R[i][j]`. Errors on an index out of range or a value outside [0, 1].
    pub fn set(&mut self, i: usize, j: usize, value: Option<f64>) -> Result<(), MetricsError> {
        let t = self.num_tasks();
        if i >= t || j >= t {
            return Err(MetricsError::IndexOutOfRange {
                row: i,
                col: j,
                num_tasks: t,
            });
        }
        if let Some(v) = value {
            if !is_fraction(v) {
                return Err(MetricsError::OutOfRange {
                    file: "accuracy matrix".into(),
                    line: i + 1,
                    column: j + 1,
                    value: v,
                    looks_like_percent: looks_like_percent([&v]),
                });
            }
        }
        self.cells[i][j] = value;
        Ok(())
    }

    /// Replaces row `i` (the evaluation after task `i`); `row` must have T cells. Nothing changes on error.
    pub fn set_row(&mut self, i: usize, row: &[Option<f64>]) -> Result<(), MetricsError> {
        let t = self.num_tasks();
        if i >= t {
            return Err(MetricsError::IndexOutOfRange {
                row: i,
                col: 0,
                num_tasks: t,
            });
        }
        if row.len() != t {
            return Err(MetricsError::LengthMismatch {
                what: format!("accuracy matrix row {i}"),
                expected: t,
                found: row.len(),
            });
        }
        let percent = looks_like_percent(row.iter().flatten());
        for (j, cell) in row.iter().enumerate() {
            if let Some(v) = *cell {
                if !is_fraction(v) {
                    return Err(MetricsError::OutOfRange {
                        file: "accuracy matrix".into(),
                        line: i + 1,
                        column: j + 1,
                        value: v,
                        looks_like_percent: percent,
                    });
                }
            }
        }
        self.cells[i] = row.to_vec();
        Ok(())
    }

    /// The leading k x k sub-matrix (the metrics of the stream cut after task `k-1`, e.g. for a run in progress).
    /// Errors if `k == 0` or `k > T`.
    pub fn leading(&self, k: usize) -> Result<AccuracyMatrix, MetricsError> {
        if k == 0 {
            return Err(MetricsError::Empty {
                file: "accuracy matrix (leading 0 x 0)".into(),
            });
        }
        if k > self.num_tasks() {
            return Err(MetricsError::IndexOutOfRange {
                row: k - 1,
                col: k - 1,
                num_tasks: self.num_tasks(),
            });
        }
        Ok(AccuracyMatrix {
            cells: self.cells[..k].iter().map(|r| r[..k].to_vec()).collect(),
        })
    }

    /// `Ok` when every cell with `j <= i` is present (what the metrics need); else the first missing cell, row-major.
    pub fn check_lower_triangle(&self) -> Result<(), MetricsError> {
        for (i, row) in self.cells.iter().enumerate() {
            for (j, cell) in row.iter().enumerate().take(i + 1) {
                if cell.is_none() {
                    return Err(MetricsError::MissingCell { row: i, col: j });
                }
            }
        }
        Ok(())
    }

    /// The number of rows, counted from the top, whose cells `j <= i` are all present (how far a run has got).
    pub fn completed_rows(&self) -> usize {
        self.cells
            .iter()
            .enumerate()
            .take_while(|(i, row)| row[..=*i].iter().all(Option::is_some))
            .count()
    }

    /// The mean of the cells `j <= i` of row `i`: `A_i = (1/(i+1)) * sum_{j<=i} R[i][j]` (accuracy on the tasks seen so
    /// far after task `i`). `None` if a needed cell is missing or `i >= T`.
    pub fn seen_average(&self, i: usize) -> Option<f64> {
        let row = self.cells.get(i)?;
        let mut sum = 0.0;
        for cell in &row[..=i] {
            sum += (*cell)?;
        }
        Some(sum / (i + 1) as f64)
    }
}
