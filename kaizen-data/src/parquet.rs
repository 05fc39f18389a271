//! Parquet datasets as the Hugging Face hub stores them: one or more `*.parquet` files per split, an image column
//! (a struct `{bytes, path}` holding PNG/JPEG bytes, or plain bytes) and an integer or string label column.
//!
//! * Files are found recursively under a folder and sorted; each belongs to the split named by the last word of its
//!   path relative to the folder (split at `/ \ - _ .`) that is `train`, `test` or `validation` / `valid` / `val`
//!   (`cifar100/train-00000-of-00001.parquet`, `data/test/0.parquet`).
//! * Test split: the `test` files, unless their labels are all negative (the hub's ImageNet has unlabelled test
//!   files); then the `validation` files. A class list ([`LoadOptions::class_list`]) keeps the listed classes.
//! * Column names: [`LoadOptions::image_column`] / [`LoadOptions::label_column`], else the usual names
//!   (`img` / `image`; `label` / `fine_label` / `labels`). CIFAR-100's coarse labels: `label_column =
//!   "coarse_label"`.
//! * Class names come from the file's `huggingface` metadata (a `ClassLabel`'s `names`) when present; integer
//!   labels without them are named by their number; string labels are sorted.
//! * Headers are scanned first. When every image has the model's size and the decoded total is at most
//!   [`MAX_IN_MEMORY_BYTES`] (CIFAR from the hub), the images are decoded once into an in-memory split: the
//!   same dataset, bit for bit, as the binary files give. Otherwise the encoded bytes are kept in memory (the size
//!   of the parquet files) and decoded when a batch needs them, exactly as image-folder files are
//!   ([`crate::encoded`]).

use crate::encoded::{
    model_shape, scan_split, streamed_split, with_skip_hint, BadFiles, EncodedItem, Scanned,
};
use crate::error::{DataError, Result};
use crate::options::LoadOptions;
use crate::types::{BadFile, Dataset, ImageShape, LoadReport, Split};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The training and test parquet files under `dir` (see the module docs).
/// The parquet files of one dataset folder, by split.
#[derive(Clone, Debug, Default)]
pub struct SplitFiles {
    /// Training files.
    pub train: Vec<PathBuf>,
    /// Test files.
    pub test: Vec<PathBuf>,
    /// Validation files (`validation`, `valid`, `val`).
    pub validation: Vec<PathBuf>,
}

/// The parquet files under `dir` by split (see the module docs); errors without training files or without both
/// test and validation files.
pub fn split_files(dir: &Path) -> Result<SplitFiles> {
    let mut all = Vec::new();
    collect(dir, &mut all)?;
    all.sort();
    let rel = |p: &PathBuf| {
        p.strip_prefix(dir)
            .unwrap_or(p)
            .to_string_lossy()
            .to_ascii_lowercase()
    };
    // A file belongs to the split named by the last of its path's words (split at `/ \\ - _ .`) that names one,
    // e.g. `cifar100/train-00000-of-00001.parquet` or `data/test/0000.parquet`; `train_test/test-0.parquet` is test.
    let split_of = |p: &PathBuf| -> Option<usize> {
        rel(p)
            .split(['/', '\\', '-', '_', '.'])
            .rev()
            .find_map(|w| match w {
                "train" => Some(0),
                "test" => Some(1),
                "validation" | "valid" | "val" => Some(2),
                _ => None,
            })
    };
    let pick = |k: usize| -> Vec<PathBuf> {
        all.iter()
            .filter(|p| split_of(p) == Some(k))
            .cloned()
            .collect()
    };
    let (train, test, validation) = (pick(0), pick(1), pick(2));
    if train.is_empty() || (test.is_empty() && validation.is_empty()) {
        let found: Vec<String> = all.iter().map(rel).collect();
        return Err(DataError::bad(
            dir,
            format!(
                "need parquet files of a train and a test (or validation) split; found {}: [{}]",
                found.len(),
                found.join(", ")
            ),
        ));
    }
    Ok(SplitFiles {
        train,
        test,
        validation,
    })
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for e in rd {
        let p = e.map_err(|e| DataError::io(dir, e))?.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    Ok(())
}

/// A label as found in a file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Label {
    Id(i64),
    Name(String),
}

/// The rows of one split: encoded images and raw labels; plus the class names from the metadata.
struct Rows {
    items: Vec<EncodedItem>,
    labels: Vec<Label>,
    names: Option<Vec<String>>,
}

fn pq_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::bad(path, format!("not a readable parquet file: {e}"))
}

/// Picks a column: the configured one, else the first of `usual` present.
fn pick_column(
    cols: &[String],
    want: &str,
    usual: &[&str],
    what: &str,
    path: &Path,
) -> Result<String> {
    if !want.is_empty() {
        return if cols.iter().any(|c| c == want) {
            Ok(want.to_string())
        } else {
            Err(DataError::bad(
                path,
                format!("no {what} column `{want}`; columns: {}", cols.join(", ")),
            ))
        };
    }
    usual
        .iter()
        .find(|u| cols.iter().any(|c| c == *u))
        .map(|u| u.to_string())
        .ok_or_else(|| {
            DataError::bad(
                path,
                format!(
                    "no {what} column among the usual names ({}); columns: {}. Set data.{}_column",
                    usual.join(", "),
                    cols.join(", "),
                    if what == "image" { "image" } else { "label" }
                ),
            )
        })
}

/// `ClassLabel` names of `column` in the `huggingface` key-value metadata, if any.
fn class_names(reader: &SerializedFileReader<std::fs::File>, column: &str) -> Option<Vec<String>> {
    let kv = reader.metadata().file_metadata().key_value_metadata()?;
    let v = kv.iter().find(|k| k.key == "huggingface")?.value.as_ref()?;
    let json: serde_json::Value = serde_json::from_str(v).ok()?;
    let names = json
        .get("info")?
        .get("features")?
        .get(column)?
        .get("names")?;
    names
        .as_array()?
        .iter()
        .map(|n| n.as_str().map(String::from))
        .collect()
}

fn image_bytes(f: &Field) -> Option<Vec<u8>> {
    match f {
        Field::Bytes(b) => Some(b.data().to_vec()),
        Field::Group(row) => row
            .get_column_iter()
            .find_map(|(n, v)| match (n.as_str(), v) {
                ("bytes", Field::Bytes(b)) => Some(b.data().to_vec()),
                _ => None,
            }),
        _ => None,
    }
}

fn label_of(f: &Field) -> Option<Label> {
    Some(match f {
        Field::Byte(v) => Label::Id(*v as i64),
        Field::Short(v) => Label::Id(*v as i64),
        Field::Int(v) => Label::Id(*v as i64),
        Field::Long(v) => Label::Id(*v),
        Field::UByte(v) => Label::Id(*v as i64),
        Field::UShort(v) => Label::Id(*v as i64),
        Field::UInt(v) => Label::Id(*v as i64),
        Field::ULong(v) => Label::Id(i64::try_from(*v).ok()?),
        Field::Str(s) => Label::Name(s.clone()),
        _ => return None,
    })
}

fn read_rows(files: &[PathBuf], opts: &LoadOptions) -> Result<Rows> {
    let mut rows = Rows {
        items: Vec::new(),
        labels: Vec::new(),
        names: None,
    };
    for path in files {
        let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let reader = SerializedFileReader::new(f).map_err(|e| pq_err(path, e))?;
        let cols: Vec<String> = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        let img_col = pick_column(&cols, &opts.image_column, &["img", "image"], "image", path)?;
        let lab_col = pick_column(
            &cols,
            &opts.label_column,
            &["label", "fine_label", "labels"],
            "label",
            path,
        )?;
        if rows.names.is_none() {
            rows.names = class_names(&reader, &lab_col);
        }
        let iter = reader.get_row_iter(None).map_err(|e| pq_err(path, e))?;
        for (r, row) in iter.enumerate() {
            let row = row.map_err(|e| pq_err(path, e))?;
            let (mut img, mut lab) = (None, None);
            for (name, field) in row.get_column_iter() {
                if *name == img_col {
                    img = Some(image_bytes(field).ok_or_else(|| {
                        DataError::bad(
                            path,
                            format!("row {r}: column `{img_col}` holds no image bytes ({field})"),
                        )
                    })?);
                } else if *name == lab_col {
                    lab = Some(label_of(field).ok_or_else(|| {
                        DataError::bad(
                            path,
                            format!("row {r}: label `{field}` in `{lab_col}` is not an integer or a string"),
                        )
                    })?);
                }
            }
            let (Some(img), Some(lab)) = (img, lab) else {
                return Err(DataError::bad(
                    path,
                    format!("row {r}: image or label missing"),
                ));
            };
            rows.items.push(EncodedItem::Bytes {
                bytes: Arc::from(img),
                name: format!("{} row {r}", path.display()),
            });
            rows.labels.push(lab);
        }
    }
    Ok(rows)
}

/// The class names and a label -> id map for both splits' labels.
fn classes(train: &Rows, test: &Rows, source: &Path) -> Result<(Vec<String>, Vec<Label>)> {
    let names_from_meta = train.names.clone().or_else(|| test.names.clone());
    let ids: Vec<i64> = train
        .labels
        .iter()
        .chain(&test.labels)
        .filter_map(|l| match l {
            Label::Id(i) => Some(*i),
            Label::Name(_) => None,
        })
        .collect();
    if ids.len() == train.labels.len() + test.labels.len() {
        if let Some(&bad) = ids.iter().find(|&&i| i < 0) {
            return Err(DataError::bad(source, format!("negative label {bad}")));
        }
        let max = ids.iter().copied().max().unwrap_or(0) as usize;
        if max >= u16::MAX as usize {
            return Err(DataError::bad(
                source,
                format!("label {max}: at most 65535 classes are supported"),
            ));
        }
        let names = match names_from_meta {
            Some(n) if n.len() > max => n,
            Some(n) => {
                return Err(DataError::bad(
                    source,
                    format!(
                        "label {max} but the metadata names only {} classes",
                        n.len()
                    ),
                ))
            }
            None => (0..=max).map(|i| i.to_string()).collect(),
        };
        let order = (0..names.len() as i64).map(Label::Id).collect();
        return Ok((names, order));
    }
    if !ids.is_empty() {
        return Err(DataError::bad(
            source,
            "the label column mixes integers and strings",
        ));
    }
    let mut order: Vec<Label> = train.labels.clone();
    order.sort();
    order.dedup();
    let names = order
        .iter()
        .map(|l| match l {
            Label::Name(s) => s.clone(),
            Label::Id(i) => i.to_string(),
        })
        .collect();
    Ok((names, order))
}

/// Largest decoded size (bytes, both splits) of a parquet dataset whose images all have the model's size that is
/// decoded into memory at load time instead of per batch.
pub const MAX_IN_MEMORY_BYTES: usize = 1 << 30;

/// Decodes every image (in parallel, results in order) into an in-memory split. An image that does not decode is
/// an error naming the row, or (`bad_files = skip`) left out and returned among the skipped files.
fn decode_to_memory(
    items: Vec<EncodedItem>,
    labels: Vec<u16>,
    shape: ImageShape,
    bad_files: BadFiles,
) -> Result<(Split, Vec<BadFile>)> {
    use rayon::prelude::*;
    let decoded: Vec<Result<crate::encoded::SourceImage<'static>>> = items
        .par_iter()
        .map(|it| it.decode(shape.channels))
        .collect();
    let mut px = Vec::with_capacity(items.len() * shape.len());
    let (mut kept, mut skipped) = (Vec::with_capacity(labels.len()), Vec::new());
    for ((it, d), label) in items.iter().zip(decoded).zip(labels) {
        let d = d.and_then(|d| {
            if d.pixels.len() == shape.len() {
                Ok(d)
            } else {
                Err(DataError::bad(
                    PathBuf::from(it.name()),
                    format!(
                        "decoded to {}x{}, expected {shape} (CxHxW)",
                        d.width, d.height
                    ),
                ))
            }
        });
        match d {
            Ok(d) => {
                px.extend_from_slice(&d.pixels);
                kept.push(label);
            }
            Err(e) if bad_files == BadFiles::Skip => skipped.push(BadFile {
                path: it.name(),
                reason: e.to_string(),
            }),
            Err(e) => return Err(with_skip_hint(e)),
        }
    }
    Ok((Split::new(shape, px, kept)?, skipped))
}

/// Loads the parquet dataset in `dir` (a local copy or an hf-hub snapshot folder); `name` is the dataset's
/// name in outputs (e.g. `hf:uoft-cs/cifar100`).
pub fn load_parquet_dir(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Dataset> {
    let files = split_files(dir)?;
    let train = read_rows(&files.train, opts)?;
    // The test split, unless it has no labels (the hub's ImageNet stores -1): then the validation split.
    let unlabelled = |r: &Rows| r.labels.iter().all(|l| matches!(l, Label::Id(i) if *i < 0));
    let mut test = Rows {
        items: Vec::new(),
        labels: Vec::new(),
        names: None,
    };
    if !files.test.is_empty() {
        test = read_rows(&files.test, opts)?;
    }
    if (files.test.is_empty() || unlabelled(&test)) && !files.validation.is_empty() {
        test = read_rows(&files.validation, opts)?;
    }
    let (names, order) = classes(&train, &test, &files.train[0])?;
    if names.len() > u16::MAX as usize {
        return Err(DataError::bad(
            dir,
            format!("{} classes, at most 65535", names.len()),
        ));
    }
    // A class list keeps the listed classes (by name; every one must exist), in their order here.
    let keep: Vec<Option<u16>> = if opts.class_list.is_empty() {
        (0..names.len()).map(|i| Some(i as u16)).collect()
    } else {
        let missing: Vec<&String> = opts
            .class_list
            .iter()
            .filter(|c| !names.contains(c))
            .collect();
        if let Some(m) = missing.first() {
            return Err(DataError::bad(
                dir,
                format!(
                    "{} listed class(es) are not classes of this dataset, e.g. `{m}`",
                    missing.len()
                ),
            ));
        }
        let mut next = 0u16;
        names
            .iter()
            .map(|n| {
                opts.class_list.contains(n).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect()
    };
    let names: Vec<String> = names
        .into_iter()
        .zip(&keep)
        .filter_map(|(n, k)| k.map(|_| n))
        .collect();
    let mut skipped = Vec::new();
    // Labels to class ids (rows of classes outside the class list dropped), then the header scan.
    let mut finish = |rows: Rows, part: &str| -> Result<Scanned> {
        let (mut items, mut labels) = (Vec::new(), Vec::new());
        for (item, lab) in rows.items.into_iter().zip(rows.labels) {
            let id = order.binary_search(&lab).map_err(|_| {
                DataError::bad(dir, format!("{part} label {lab:?} is not a training label"))
            })?;
            if let Some(id) = keep[id] {
                items.push(item);
                labels.push(id);
            }
        }
        scan_split(items, labels, opts.bad_files, &mut skipped)
    };
    let train = finish(train, "train")?;
    let test = finish(test, "test")?;
    let shape = model_shape(opts.image_size, &train, &test, dir)?;
    let sizes: Vec<(u32, u32)> = train.sizes.iter().chain(&test.sizes).copied().collect();
    // Images all of the model's size and small in total (CIFAR from the hub): decoded once into memory, so the
    // dataset is exactly the in-memory one the binary files give (same pixels, exact statistics).
    let all_fit = sizes
        .iter()
        .all(|&(sw, sh)| (sh as usize, sw as usize) == (shape.height, shape.width));
    let in_memory =
        all_fit && opts.eval_crop == 1.0 && sizes.len() * shape.len() <= MAX_IN_MEMORY_BYTES;
    let mut split = |s: Scanned, part: &str| -> Result<Split> {
        if !in_memory {
            return streamed_split(s, shape, opts, part);
        }
        let (split, bad) = decode_to_memory(s.items, s.labels, shape, opts.bad_files)?;
        skipped.extend(bad);
        Ok(split)
    };
    let train = split(train, "train")?;
    let test = split(test, "test")?;
    let mut ds = Dataset::from_splits(name, names, train, test, dir)?;
    ds.report = LoadReport {
        image_sizes: LoadReport::count_sizes(sizes),
        skipped,
    };
    Ok(ds)
}
