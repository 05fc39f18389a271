//! # kaizen-core
//!
//! The centre of kaizen-rs (Kaizen, Tang et al., WACV 2024): the losses as pure functions over candle
//! tensors ([`loss`]), and the trainer built from small components found by name in a [`Registry`]:
//!
//! - [`methods`]: one file per self-supervised method (heads, defaults, state such as a momentum target or
//!   a queue);
//! - [`distill`]: one file per CaSSLe feature distiller;
//! - [`terms`]: the loss terms a step sums (SSL, feature distillation, classifier CE, classifier
//!   distillation), each owning its weight and inputs;
//! - [`strategy`]: one file per continual-learning strategy (phases, terms, replay, evaluation rows);
//! - [`step`]: one training step on given tensors (what the trainer, `kaizen bench` and the tests call);
//! - [`train`]: the loop, checkpoints, resume and the run directory ([`run_dir`]); [`eval`]: the
//!   evaluation protocols and result files; [`components`]: the models of a run built from a config.
//!
//! A program adds its own method, distiller, strategy or dataset with the `Registry::with_*` builders and
//! [`train::start_with`] (see the workspace's `examples/`).
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
