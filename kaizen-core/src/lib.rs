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

pub mod components;
pub mod config;
pub mod data;
pub mod distill;
pub mod dump;
pub mod error;
pub mod eval;
pub mod events;
pub mod lock;
pub mod loss;
pub mod methods;
pub mod network;
pub mod optim;
pub mod queue;
pub mod registry;
pub mod run_dir;
pub mod step;
pub mod strategy;
pub mod terms;
pub mod train;

pub use components::RunModels;
pub use error::CoreError;
pub use registry::Registry;
