//! # kaizen-core
//!
//! The tensor-level heart of kaizen-rs (Kaizen, Tang et al., WACV 2024): every loss of Kaizen and of its
//! self-supervised baselines as pure functions over candle tensors ([`loss`]), the CaSSLe feature
//! distillers behind one small trait ([`distill`]), the name registries of methods and distillers
//! ([`kinds`]), MoCo's queue of negative keys ([`queue`]) and the crate's typed error ([`error`]).
//!
//! **API boundary:** [`loss`] is verified against PyTorch reference vectors
//! (`shared/reference/losses.safetensors`, test `tests/reference_losses.rs`); its function names are the
//! keys of that file.
#![warn(missing_docs)]

pub mod config;
pub mod distill;
pub mod dump;
pub mod error;
pub mod eval;
pub mod events;
pub mod kinds;
pub mod lock;
pub mod loss;
pub mod method;
pub mod network;
pub mod queue;
pub mod run_dir;
pub mod step;
pub mod train;

pub use error::CoreError;
