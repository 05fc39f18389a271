//! kaizen-models (work in progress).
