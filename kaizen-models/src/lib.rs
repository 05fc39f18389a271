//! kaizen-models: the model zoo of kaizen-rs and everything that holds or moves weights.
//!
//! - [`resnet`]: CIFAR ResNet-18 with width multiplier and torchvision names; [`mlp`]: projector / predictor /
//!   classifier heads and [`mlp::mask_unseen`]; [`batch_norm`]: BatchNorm with PyTorch running-stat semantics and
//!   [`BnMode`]. Every convolution and normalisation goes through [`ops`], where the fast kernels live.
//! - [`init`]: seeded PyTorch-default initialisation; [`params`]: trainable-parameter listing (running statistics
//!   excluded); [`ema`]: momentum target update and the cosine tau schedule; [`frozen`]: detached snapshots for the
//!   previous-task model; [`optim`]: SGD with momentum, LARS and the warm-up + cosine schedule, with exportable state.
//! - [`checkpoint`]: one `.safetensors` file with a JSON manifest, atomic writes, validated loads;
//!   [`torchvision`]: export / import of the backbone in torchvision layout.
//!
//! Tensors are named hierarchically in one or more `VarMap`s; role prefixes (`backbone.`, `projector.`, `target.`, ...)
//! are chosen by the trainer. Models built from a `VarMap` are trainable; built from plain tensors
//! (`VarBuilder::from_tensors`) they hold no `Var` and cannot run BatchNorm in [`BnMode::Train`].
#![warn(missing_docs)]

pub mod ops;

pub mod batch_norm;
pub mod checkpoint;
pub mod ema;
pub mod error;
pub mod frozen;
pub mod init;
pub mod layer;
pub mod linear;
pub mod mlp;
pub mod optim;
pub mod params;
pub mod resnet;
pub mod torchvision;

pub use batch_norm::{BatchNorm, BnMode};
pub use error::{ModelError, Result};
pub use layer::Layer;
pub use mlp::{mask_unseen, Mlp, MlpConfig};
pub use resnet::{Arch, ResNet, ResNetConfig};
