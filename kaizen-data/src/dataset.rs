//! In-memory datasets and [`load_dataset`], which dispatches a [`DatasetName`] to its reader. The types
//! ([`Split`] (u8 HWC pixels + u16 labels), [`Dataset`] (train + test + metadata), ...) and the registry
//! [`DatasetName`] live in their own files, which the readers import; they are re-exported here.

use crate::error::{DataError, Result};
use crate::options::LoadOptions;
use std::path::Path;

pub use crate::name::DatasetName;
pub use crate::types::{
    channel_stats, BadFile, Dataset, ImageShape, Inspect, LoadReport, SizeCount, Split, SplitCounts,
};

/// Loads a dataset. `root` is the `--data-root` folder; the built-in `fashion-mnist-mini` ignores it.
///
/// Each on-disk dataset accepts the common layouts: files directly in `root`, or in the folder the
/// official archive unpacks to (`cifar-10-batches-bin/`, `cifar-100-binary/`, `raw/`, `FashionMNIST/raw/`, `MNIST/raw/`).
pub fn load_dataset(name: DatasetName, root: Option<&Path>) -> Result<Dataset> {
    load_dataset_with(name, root, &LoadOptions::default())
}

/// Loads a dataset by its config / CLI name: a [`DatasetName`], or `hf:<owner>/<name>` (a Hugging Face dataset
/// in parquet, see [`crate::hub::load_hf`]). `opts` applies to the streamed readers (image folders, parquet).
pub fn load_named(name: &str, root: Option<&Path>, opts: &LoadOptions) -> Result<Dataset> {
    match name.strip_prefix("hf:") {
        Some(repo) => crate::hub::load_hf(repo, root, opts),
        None => load_dataset_with(name.parse()?, root, opts),
    }
}

/// Like [`load_dataset`] with [`LoadOptions`] for the streamed readers.
pub fn load_dataset_with(
    name: DatasetName,
    root: Option<&Path>,
    opts: &LoadOptions,
) -> Result<Dataset> {
    match name {
        DatasetName::FashionMnistMini => crate::embedded::fashion_mnist_mini(),
        DatasetName::FashionMnist | DatasetName::Mnist => {
            let root = root.ok_or_else(|| DataError::NeedsDataRoot {
                dataset: name.to_string(),
                hint: crate::idx::hint(name),
            })?;
            crate::idx::load_idx_dataset(name, root)
        }
        DatasetName::Cifar10 | DatasetName::Cifar100 => match root {
            Some(r) => crate::cifar::load_cifar(name, r),
            None => crate::hub::cifar_without_root(name),
        },
        DatasetName::ImageFolder => {
            let root = root.ok_or_else(|| DataError::NeedsDataRoot {
                dataset: name.to_string(),
                hint: "point it at a folder with train/<class>/*.png|jpg|... and test/<class>/*, or with \
                       train.csv and test.csv (path,label lines)"
                    .into(),
            })?;
            crate::image_folder::load_image_folder_with(root, opts)
        }
    }
}
