//! kaizen-models: the model zoo (work in progress).
pub mod ops;
