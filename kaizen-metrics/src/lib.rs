//! kaizen-metrics (work in progress).
