//! The dataset registry: [`DatasetName`], the datasets the CLI knows, with their CLI / config spelling.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The datasets the CLI knows, with their CLI / config spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DatasetName {
    /// `fashion-mnist-mini`: the embedded Fashion-MNIST subset (1000 train + 200 test images per class). Needs no files.
    #[serde(rename = "fashion-mnist-mini")]
    FashionMnistMini,
    /// `fashion-mnist`: Fashion-MNIST IDX files (gzipped or not) in `--data-root`.
    #[serde(rename = "fashion-mnist")]
    FashionMnist,
    /// `mnist`: MNIST IDX files (gzipped or not) in `--data-root`.
    #[serde(rename = "mnist")]
    Mnist,
    /// `cifar10`: the CIFAR-10 binary version (`data_batch_1..5.bin`, `test_batch.bin`) in `--data-root`.
    #[serde(rename = "cifar10")]
    Cifar10,
    /// `cifar100`: the CIFAR-100 binary version (`train.bin`, `test.bin`; fine labels) in `--data-root`.
    #[serde(rename = "cifar100")]
    Cifar100,
    /// `image-folder`: `--data-root/{train,test}/<class>/*.png|jpg`.
    #[serde(rename = "image-folder")]
    ImageFolder,
}

impl DatasetName {
    /// Every dataset, in CLI listing order.
    pub const ALL: [DatasetName; 6] = [
        DatasetName::FashionMnistMini,
        DatasetName::FashionMnist,
        DatasetName::Mnist,
        DatasetName::Cifar10,
        DatasetName::Cifar100,
        DatasetName::ImageFolder,
    ];

    /// The CLI / config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::FashionMnistMini => "fashion-mnist-mini",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Mnist => "mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::ImageFolder => "image-folder",
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        DatasetName::ALL
            .iter()
            .copied()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| DataError::UnknownDataset {
                name: s.to_string(),
                valid: DatasetName::ALL
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}
