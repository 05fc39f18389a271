//! kaizen-data: real image datasets, the class-incremental task stream, labelled replay and fast,
//! seeded two-view augmentation for kaizen-rs.
//!
//! * Readers ([`load_dataset`]): IDX (MNIST / Fashion-MNIST, gzipped or not), CIFAR-10/100 (binary and python versions), image
//!   folders of any size and Hugging Face parquet datasets (both streamed: decoded on demand), and the embedded `fashion-mnist-mini` subset (no files needed). Every reader validates its
//!   input and names the offending file in its [`DataError`].
//! * [`TaskStream`]: classes cut into tasks from a seeded or explicit class order; [`labelled_mask`]: the
//!   seeded per-task label fraction; [`ReplayMemory`]: class-balanced labelled replay.
//! * [`Augmenter`] + [`two_view_batch`] / [`Prefetcher`]: two augmented views per image as candle tensors,
//!   multi-threaded and identical on any thread count; [`eval_batch`]: the deterministic eval transform.
//!
//! Every random draw comes from a named stream of [`rng`], derived from one user seed.
//!
//! This crate knows nothing about models or training.
#![warn(missing_docs)]

pub mod augment;
pub mod cache;
pub mod cifar;
pub mod cifar_python;
pub mod dataset;
pub mod embedded;
pub mod encoded;
pub mod error;
pub mod hub;
pub mod idx;
pub mod image_folder;
pub mod loader;
mod name;
pub mod options;
pub mod parquet;
pub mod pickle;
pub mod replay;
pub mod rng;
pub mod stream;
mod types;

pub use augment::{AugmentConfig, Augmenter};
pub use dataset::{
    load_dataset, load_dataset_with, load_named, Dataset, DatasetName, ImageShape, Inspect, Split,
    SplitCounts,
};
pub use embedded::FASHION_MNIST_LICENSE;
pub use encoded::{BadFiles, SourceImage};
pub use error::DataError;
pub use loader::{
    epoch_key, eval_batch, items_for, shuffled_batches, two_view_batch, Batch, Item, Prefetcher,
};
pub use options::LoadOptions;
pub use replay::{ReplayMemory, ReplaySize};
pub use stream::{labelled_mask, ClassOrder, StreamDescription, TaskStream};
