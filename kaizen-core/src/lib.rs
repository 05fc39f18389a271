//! kaizen-core (work in progress).
