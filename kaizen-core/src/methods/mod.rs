//! Self-supervised methods: one file per method, each a [`MethodFactory`] (name, heads, defaults, config
//! checks) that builds an [`SslMethod`] (the per-run object with its state: momentum target, queue).
//!
//! Adding a method is one file implementing the two traits plus one line in
//! [`crate::registry::Registry::builtin`] (or, from outside the crate, [`crate::registry::Registry::with_method`]).
//! The trainer calls [`SslMethod::loss`] once per step (through the `ssl` loss term) and
//! [`SslMethod::after_step`] after every optimiser step (EMA update, queue update).

pub mod barlow;
pub mod byol;
pub mod mocov2plus;
mod momentum;
pub mod simclr;
pub mod simsiam;
pub mod vicreg;

pub use crate::network::ProjectorShape;
pub use momentum::MomentumTarget;
pub use traits::{predict, temperature, MethodContext, MethodFactory, SslInputs, SslMethod};

mod traits;
