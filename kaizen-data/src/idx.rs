//! IDX reader (MNIST, Fashion-MNIST): `*-idx3-ubyte` images and `*-idx1-ubyte` labels, gzipped or not.
//!
//! Format: a big-endian header `0x00 0x00 <type> <ndim>` (type `0x08` = unsigned byte), then `ndim`
//! big-endian `u32` dimensions, then exactly `prod(dims)` bytes. Images have `ndim = 3` (`n, rows, cols`),
//! labels `ndim = 1` (`n`). Anything else — a wrong magic, a short or over-long body, a corrupt gzip stream,
//! image/label counts that disagree, a label `>= 10` — is an error naming the file.

use crate::error::{DataError, Result};
use crate::name::DatasetName;
use crate::types::{Dataset, ImageShape, Split};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Class names of Fashion-MNIST (Zalando's label descriptions), indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// A parsed IDX file: its dimensions and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions from the header (`[n, rows, cols]` for images, `[n]` for labels).
    pub dims: Vec<usize>,
    /// `prod(dims)` bytes.
    pub data: Vec<u8>,
}

/// Un-gzips `bytes` if they start with the gzip magic `1f 8b`; `path` names the source in errors.
pub fn maybe_gunzip(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        let mut out = Vec::with_capacity(bytes.len() * 2);
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::bad(path, format!("corrupt or truncated gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Parses (and un-gzips if needed) an IDX file whose content is `bytes`, expecting `ndim` dimensions of
/// unsigned bytes.
pub fn parse_idx(bytes: Vec<u8>, ndim: usize, path: &Path) -> Result<Idx> {
    let was_gzip = bytes.starts_with(&[0x1f, 0x8b]);
    let raw = maybe_gunzip(bytes, path)?;
    if raw.len() < 4 {
        return Err(DataError::bad(
            path,
            format!(
                "truncated: {} bytes, an IDX header needs at least 4",
                raw.len()
            ),
        ));
    }
    if raw[0] != 0 || raw[1] != 0 || raw[2] != 0x08 || raw[3] as usize != ndim {
        let gz_name = path.extension().is_some_and(|e| e == "gz");
        if gz_name && !was_gzip {
            return Err(DataError::bad(
                path,
                "not a gzip file (a .gz name, but not the gzip magic bytes 1f 8b); is it an IDX file renamed, or \
                 something else?",
            ));
        }
        return Err(DataError::bad(
            path,
            format!(
                "wrong magic 0x{:02x}{:02x}{:02x}{:02x}, expected 0x000008{:02x} (IDX file of unsigned bytes with {ndim} dimension(s))",
                raw[0], raw[1], raw[2], raw[3], ndim
            ),
        ));
    }
    let header = 4 + 4 * ndim;
    if raw.len() < header {
        return Err(DataError::bad(
            path,
            format!("truncated header: {} bytes, expected {header}", raw.len()),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| {
            u32::from_be_bytes([
                raw[4 + 4 * d],
                raw[5 + 4 * d],
                raw[6 + 4 * d],
                raw[7 + 4 * d],
            ]) as usize
        })
        .collect();
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let body = raw.len() - header;
    match expected {
        Some(e) if e == body => {}
        Some(e) if body < e => {
            return Err(DataError::bad(
                path,
                format!("truncated: header {dims:?} needs {e} data bytes, file has {body}"),
            ));
        }
        Some(e) => {
            return Err(DataError::bad(
                path,
                format!("header {dims:?} needs {e} data bytes, file has {body} (trailing bytes)"),
            ));
        }
        None => {
            return Err(DataError::bad(
                path,
                format!("header dimensions {dims:?} overflow"),
            ))
        }
    }
    let mut data = raw;
    data.drain(..header);
    Ok(Idx { dims, data })
}

/// Builds a split from an IDX image file and its label file (already read), checking that they agree and
/// that every label is `< num_classes`.
pub fn split_from_idx(
    images: Vec<u8>,
    images_path: &Path,
    labels: Vec<u8>,
    labels_path: &Path,
    num_classes: usize,
) -> Result<Split> {
    let im = parse_idx(images, 3, images_path)?;
    let lb = parse_idx(labels, 1, labels_path)?;
    if im.dims[0] != lb.dims[0] {
        return Err(DataError::Inconsistent {
            path: images_path.to_path_buf(),
            other: labels_path.to_path_buf(),
            reason: format!("{} images but {} labels", im.dims[0], lb.dims[0]),
        });
    }
    if im.dims[0] == 0 || im.dims[1] == 0 || im.dims[2] == 0 {
        return Err(DataError::bad(
            images_path,
            format!("empty image file (dimensions {:?})", im.dims),
        ));
    }
    if let Some((i, &l)) = lb
        .data
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= num_classes)
    {
        return Err(DataError::bad(
            labels_path,
            format!("label {l} of image {i} is out of range for {num_classes} classes"),
        ));
    }
    let shape = ImageShape {
        channels: 1,
        height: im.dims[1],
        width: im.dims[2],
    };
    Split::new(shape, im.data, lb.data.iter().map(|&l| l as u16).collect())
}

/// What `--data-root` must hold for an IDX dataset.
pub fn hint(name: DatasetName) -> String {
    let src = match name {
        DatasetName::Mnist => "http://yann.lecun.com/exdb/mnist/ (or any MNIST mirror)",
        _ => "`apt-get install dataset-fashion-mnist` (then --data-root /usr/share/datasets/fashion-mnist) or https://github.com/zalandoresearch/fashion-mnist",
    };
    format!(
        "point --data-root at the folder holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], \
         t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] (files from {src})"
    )
}

fn find_file(name: DatasetName, root: &Path, stem: &str) -> Result<PathBuf> {
    let sub = match name {
        DatasetName::Mnist => "MNIST",
        _ => "FashionMNIST",
    };
    let dirs = [
        root.to_path_buf(),
        root.join("raw"),
        root.join(sub).join("raw"),
    ];
    let alt = stem.replacen("-idx", ".idx", 1);
    for d in &dirs {
        for n in [
            stem.to_string(),
            format!("{stem}.gz"),
            alt.clone(),
            format!("{alt}.gz"),
        ] {
            let p = d.join(n);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(DataError::NotFound {
        dataset: name.to_string(),
        what: format!("{stem}[.gz]"),
        looked_in: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        hint: hint(name),
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Loads MNIST or Fashion-MNIST from IDX files under `root`.
pub fn load_idx_dataset(name: DatasetName, root: &Path) -> Result<Dataset> {
    let mut splits = Vec::with_capacity(2);
    for prefix in ["train", "t10k"] {
        let ip = find_file(name, root, &format!("{prefix}-images-idx3-ubyte"))?;
        let lp = find_file(name, root, &format!("{prefix}-labels-idx1-ubyte"))?;
        splits.push(split_from_idx(read(&ip)?, &ip, read(&lp)?, &lp, 10)?);
    }
    let test = splits
        .pop()
        .ok_or_else(|| DataError::bad(root, "internal: missing test split"))?;
    let train = splits
        .pop()
        .ok_or_else(|| DataError::bad(root, "internal: missing train split"))?;
    let names: Vec<String> = match name {
        DatasetName::Mnist => (0..10).map(|d| d.to_string()).collect(),
        _ => FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    Dataset::from_splits(name.as_str(), names, train, test, root)
}
