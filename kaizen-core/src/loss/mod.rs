//! Every loss of Kaizen and of its baselines, as pure functions over candle tensors.
//!
//! **API boundary.** Each function is named exactly like its key in
//! `shared/reference/losses.safetensors`, implements the formula of `shared/reference/README.md`
//! (the contract), is differentiable with candle's autograd, checks its input shapes before any maths
//! (an error names the loss and the argument), and computes in the dtype of its inputs (f32 in
//! training; f64 works too). Where the method needs a stop-gradient on a target, the function detaches
//! it itself (documented per function), so the gradient flows to the first input only, as in the
//! reference vectors.
//!
//! | function | method / term | inputs |
//! |---|---|---|
//! | [`byol`] | BYOL, predictive distiller | p, z (N, D) |
//! | [`simsiam`] | SimSiam | p, z (N, D) |
//! | [`mse`] | predictive_mse distiller, VICReg invariance | p, z (N, D) |
//! | [`nt_xent`] | SimCLR | z1, z2 (N, D), t |
//! | [`info_nce_queue`] | MoCo v2+ | q, k (N, D), queue (K, D), t |
//! | [`vicreg`] (+ [`invariance`], [`variance`], [`covariance`]) | VICReg | z1, z2 (N >= 2, D), weights |
//! | [`barlow_twins`] | Barlow Twins, decorrelative distiller | z1, z2 (N >= 2, D), lambda, scale |
//! | [`contrastive_distill`] | contrastive distiller (CaSSLe) | p1, p2, o1, o2 (N, D), t |
//! | [`soft_ce`] | Kaizen's classifier distillation L_C^KD | logits, target_logits (N, C), T |
//! | [`masked_ce`] | classifier cross-entropy L_C^CT | logits (N, C), labels (N,) i64, -1 = unlabelled |
//!
//! Numerics: log-softmax subtracts the (detached) row maximum and is never `log(softmax)`;
//! normalisation and cosine floor the norm at 1e-12 without taking `sqrt` of 0, so zero vectors give
//! finite values and gradients ([`ops`]).

mod barlow;
mod byol;
mod classify;
mod info_nce;
mod mse;
mod nt_xent;
pub mod ops;
mod vicreg;

pub use barlow::{barlow_twins, standardize, BARLOW_BN_EPS};
pub use byol::{byol, simsiam};
pub use classify::{masked_ce, soft_ce, UNLABELLED};
pub use info_nce::{contrastive_distill, info_nce_queue};
pub use mse::mse;
pub use nt_xent::nt_xent;
pub use vicreg::{covariance, invariance, variance, vicreg, VICREG_VAR_EPS};
