//! kaizen-data (work in progress).
