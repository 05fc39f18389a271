//! CIFAR-10 / CIFAR-100 readers: the binary version (below) and the python version torchvision downloads
//! ([`crate::cifar_python`]); [`load_cifar`] finds either under `--data-root`.
//!
//! * CIFAR-10 (`cifar-10-binary.tar.gz` → `cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin`
//!   (train) and `test_batch.bin` (test); records of 1 label byte (0..10) + 3072 pixel bytes.
//! * CIFAR-100 (`cifar-100-binary.tar.gz` → `cifar-100-binary/`): `train.bin`, `test.bin`; records of 1 coarse
//!   label byte (0..20) + 1 fine label byte (0..100) + 3072 pixel bytes. kaizen uses the fine labels; the
//!   coarse byte is checked against [`CIFAR100_FINE_TO_COARSE`].
//!
//! Pixels are stored as three 32x32 planes (R, G, B, each row-major); they are converted to HWC.
//! A file whose size is not a whole number of records (truncated), an empty file, or a label out of range
//! is an error naming the file.

use crate::error::{DataError, Result};
use crate::name::DatasetName;
use crate::types::{Dataset, ImageShape, Split};
use std::path::{Path, PathBuf};

/// CIFAR-10 class names, indexed by label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100 fine class names (alphabetical = label order).
pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// The standard CIFAR-100 fine → coarse (superclass) table, indexed by fine label.
pub const CIFAR100_FINE_TO_COARSE: [u8; 100] = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15,
    3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4,
    2, 0, 17, 4, 18, 17, 10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
];

const PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR binary format a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarKind {
    /// 1 label byte per record.
    Cifar10,
    /// 1 coarse + 1 fine label byte per record.
    Cifar100,
}

impl CifarKind {
    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }
}

/// One CIFAR image stored as three 32x32 planes (R, G, B; both CIFAR versions store them so) written as HWC.
pub(crate) fn planes_to_hwc(planes: &[u8], out: &mut [u8]) {
    for p in 0..1024 {
        out[3 * p] = planes[p];
        out[3 * p + 1] = planes[1024 + p];
        out[3 * p + 2] = planes[2048 + p];
    }
}

/// Parses the records of one CIFAR binary file into `(HWC pixels, labels)` (fine labels for CIFAR-100).
pub fn parse_cifar(bytes: &[u8], kind: CifarKind, path: &Path) -> Result<(Vec<u8>, Vec<u16>)> {
    let rec = kind.label_bytes() + PIXELS;
    if bytes.is_empty() {
        return Err(DataError::bad(path, "empty file: no CIFAR record"));
    }
    if !bytes.len().is_multiple_of(rec) {
        let (full, extra) = (bytes.len() / rec, bytes.len() % rec);
        let n = |k: usize| {
            if k == 1 {
                "1 byte".to_string()
            } else {
                format!("{k} bytes")
            }
        };
        return Err(DataError::bad(
            path,
            format!(
                "{} is not a whole number of {rec}-byte records: {full} full records and {} extra \
                 (truncated by {}, or {} too long)",
                n(bytes.len()),
                n(extra),
                n(rec - extra),
                n(extra)
            ),
        ));
    }
    let n = bytes.len() / rec;
    let mut pixels = vec![0u8; n * PIXELS];
    let mut labels = Vec::with_capacity(n);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let label = match kind {
            CifarKind::Cifar10 => {
                if r[0] >= 10 {
                    return Err(DataError::bad(
                        path,
                        format!("record {i}: label {} out of range 0..10", r[0]),
                    ));
                }
                r[0]
            }
            CifarKind::Cifar100 => {
                let (coarse, fine) = (r[0], r[1]);
                if fine >= 100 {
                    return Err(DataError::bad(
                        path,
                        format!("record {i}: fine label {fine} out of range 0..100"),
                    ));
                }
                if coarse >= 20 {
                    return Err(DataError::bad(
                        path,
                        format!("record {i}: coarse label {coarse} out of range 0..20"),
                    ));
                }
                let want = CIFAR100_FINE_TO_COARSE[fine as usize];
                if coarse != want {
                    return Err(DataError::bad(
                        path,
                        format!("record {i}: coarse label {coarse} does not match fine label {fine} (expected coarse {want}); is this a CIFAR-100 file?"),
                    ));
                }
                fine
            }
        };
        labels.push(label as u16);
        let planes = &r[kind.label_bytes()..];
        planes_to_hwc(planes, &mut pixels[i * PIXELS..(i + 1) * PIXELS]);
    }
    Ok((pixels, labels))
}

/// The folder name the official binary tarball unpacks to, and its download address.
pub fn archive(name: DatasetName) -> (&'static str, &'static str) {
    match name {
        DatasetName::Cifar100 => (
            "cifar-100-binary",
            "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        ),
        _ => (
            "cifar-10-batches-bin",
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        ),
    }
}

/// The hint shown when CIFAR files are missing.
pub fn hint(name: DatasetName) -> String {
    let (dir, url) = archive(name);
    let files = match name {
        DatasetName::Cifar100 => "train.bin and test.bin",
        _ => "data_batch_1.bin .. data_batch_5.bin and test_batch.bin",
    };
    format!(
        "point --data-root at the `{dir}` folder (holding {files}) or the `{py}` folder torchvision downloads, or their \
         parent; get the binary version from {url} and unpack it with `tar xzf`",
        py = python_folder(name)
    )
}

/// On-disk format of a CIFAR folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarFormat {
    /// The binary version (`cifar-10-batches-bin`, `cifar-100-binary`).
    Binary,
    /// The python version, pickled dicts of numpy arrays (`cifar-10-batches-py`, `cifar-100-python`).
    Python,
}

/// The folder the official python tarball unpacks to.
fn python_folder(name: DatasetName) -> &'static str {
    match name {
        DatasetName::Cifar100 => "cifar-100-python",
        _ => "cifar-10-batches-py",
    }
}

/// The python version's (train, test) file names.
fn python_files(name: DatasetName) -> (Vec<&'static str>, Vec<&'static str>) {
    match name {
        DatasetName::Cifar100 => (vec!["train"], vec!["test"]),
        _ => (
            vec![
                "data_batch_1",
                "data_batch_2",
                "data_batch_3",
                "data_batch_4",
                "data_batch_5",
            ],
            vec!["test_batch"],
        ),
    }
}

fn files(name: DatasetName) -> (Vec<&'static str>, Vec<&'static str>) {
    match name {
        DatasetName::Cifar100 => (vec!["train.bin"], vec!["test.bin"]),
        _ => (
            vec![
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
            vec!["test_batch.bin"],
        ),
    }
}

/// Finds the folder under `root` that holds the dataset's files in either format: `root` itself or the binary
/// archive folder (binary files), then `root` or the python archive folder (python files).
pub fn find_dir_any(name: DatasetName, root: &Path) -> Result<(PathBuf, CifarFormat)> {
    let (py_train, py_test) = python_files(name);
    for c in [root.to_path_buf(), root.join(python_folder(name))] {
        if py_train
            .iter()
            .chain(py_test.iter())
            .all(|f| c.join(f).is_file())
        {
            let binary = find_dir(name, root);
            if let Ok(dir) = binary {
                return Ok((dir, CifarFormat::Binary));
            }
            return Ok((c, CifarFormat::Python));
        }
    }
    Ok((find_dir(name, root)?, CifarFormat::Binary))
}

/// Finds the folder under `root` that holds the dataset's binary files (`root` itself or the archive folder).
pub fn find_dir(name: DatasetName, root: &Path) -> Result<PathBuf> {
    let (dir, _) = archive(name);
    let (train, test) = files(name);
    let cands = [root.to_path_buf(), root.join(dir)];
    for c in &cands {
        if train.iter().chain(test.iter()).all(|f| c.join(f).is_file()) {
            return Ok(c.clone());
        }
    }
    // Name the first missing file of the most plausible folder.
    let best = cands
        .iter()
        .find(|c| c.is_dir() && train.iter().chain(test.iter()).any(|f| c.join(f).is_file()));
    let what = match best {
        Some(c) => {
            let missing: Vec<_> = train
                .iter()
                .chain(test.iter())
                .filter(|f| !c.join(f).is_file())
                .copied()
                .collect();
            format!("{} (in {})", missing.join(", "), c.display())
        }
        None => train
            .iter()
            .chain(test.iter())
            .copied()
            .collect::<Vec<_>>()
            .join(", "),
    };
    Err(DataError::NotFound {
        dataset: name.to_string(),
        what,
        looked_in: cands
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        hint: hint(name),
    })
}

fn read_split(dir: &Path, names: &[&str], kind: CifarKind, format: CifarFormat) -> Result<Split> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for n in names {
        let p = dir.join(n);
        let bytes = std::fs::read(&p).map_err(|e| DataError::io(&p, e))?;
        let (px, lb) = match format {
            CifarFormat::Binary => parse_cifar(&bytes, kind, &p)?,
            CifarFormat::Python => crate::cifar_python::parse_cifar_python(&bytes, kind, &p)?,
        };
        pixels.extend_from_slice(&px);
        labels.extend_from_slice(&lb);
    }
    Split::new(
        ImageShape {
            channels: 3,
            height: 32,
            width: 32,
        },
        pixels,
        labels,
    )
}

/// Loads CIFAR-10 or CIFAR-100 from `root` or `root/<archive folder>`, in the binary or the python version (the
/// binary one when both are there).
pub fn load_cifar(name: DatasetName, root: &Path) -> Result<Dataset> {
    let (dir, format) = find_dir_any(name, root)?;
    let (train, test) = match format {
        CifarFormat::Binary => files(name),
        CifarFormat::Python => python_files(name),
    };
    let (kind, names): (CifarKind, Vec<String>) = match name {
        DatasetName::Cifar100 => (
            CifarKind::Cifar100,
            CIFAR100_CLASSES.iter().map(|s| s.to_string()).collect(),
        ),
        _ => (
            CifarKind::Cifar10,
            CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
        ),
    };
    let tr = read_split(&dir, &train, kind, format)?;
    let te = read_split(&dir, &test, kind, format)?;
    Dataset::from_splits(name.as_str(), names, tr, te, &dir)
}
