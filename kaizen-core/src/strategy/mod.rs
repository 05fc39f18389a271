//! Continual-learning strategies: one file per strategy, each a [`Strategy`] value that says which
//! training phases a run has, which tasks' images each phase trains on, which loss terms it sums, whether
//! it keeps a labelled replay memory, and which row of the accuracy matrices each evaluation is.
//!
//! | strategy | phases | terms | replay |
//! |---|---|---|---|
//! | `kaizen` | one per task | `ssl`, `cls_ce`, `fe_kd`, `cls_kd` | yes |
//! | `cassle` | one per task | `ssl`, `cls_ce`, `fe_kd` | no |
//! | `finetune` | one per task | `ssl`, `cls_ce` | no |
//! | `replay` | one per task | `ssl`, `cls_ce` | yes |
//! | `joint` | one, on every task at once (upper bound) | `ssl`, `cls_ce` | no |
//! | `random` | none: the initial model is evaluated (lower bound) | none | no |
//!
//! Adding a strategy is one file plus one line in [`crate::registry::Registry::builtin`] (or, from outside
//! the crate, [`crate::registry::Registry::with_strategy`]).

pub mod cassle;
pub mod finetune;
pub mod joint;
pub mod kaizen;
pub mod random;
pub mod replay;
mod traits;

pub use traits::Strategy;
