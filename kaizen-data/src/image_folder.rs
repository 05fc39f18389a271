//! Image-folder reader, for images of any size, streamed from disk (never all in memory).
//!
//! Two layouts under `--data-root`:
//! * folders: `train/<class>/*.{png,jpg,jpeg,webp,bmp}` and `test/<class>/*` (or `val/<class>/*`, ImageNet's name);
//! * lists: `train.csv` and `test.csv` (lines `path,label`, an optional `path,label` header; the label is the
//!   class name, the path relative to the list's folder), or `train.json` / `test.json` (an array of
//!   `{"path": ..., "label": ...}`, the label a string or a number).
//!
//! Rules:
//! * Class ids are the **sorted** class names of the training split (folder names, or the labels of
//!   `train.*`, sorted by value when every label is an integer); with a class list ([`LoadOptions::class_list`]) only the listed classes are kept, and a listed
//!   class that is missing is an error. A test class that is not a training class is an error.
//! * Files are taken in sorted name order; other extensions (and hidden entries) are ignored. A class folder
//!   with no image is an error ([`DataError::EmptyClass`]).
//! * Every image's header is read first (in parallel): its size and colour. A file that is not a readable
//!   image stops loading with its path, or is left out and listed in [`Dataset::report`]
//!   ([`LoadOptions::bad_files`]).
//! * If every image is stored as grayscale the dataset has 1 channel; otherwise all images are converted to RGB
//!   (alpha is dropped). WebP and the image crate's BMP reader have no gray mode: such files count as colour.
//! * The model sees `image_size x image_size` images (or the first training image's size when it is 0):
//!   training views are random resized crops of the whole image, evaluation views a resize + centre crop
//!   ([`crate::encoded`]).

use crate::encoded::{model_shape, scan_split, streamed_split, EncodedItem};
use crate::error::{DataError, Result};
use crate::options::LoadOptions;
use crate::types::{Dataset, LoadReport};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The file extensions read as images (any case).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "webp", "bmp"];

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        v.push(e.path());
    }
    v.sort();
    Ok(v)
}

fn is_image(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .map(|e| IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str()))
            .unwrap_or(false)
}

fn class_dirs(split_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    if !split_dir.is_dir() {
        return Err(DataError::NotFound {
            dataset: "image-folder".into(),
            what: format!("folder `{}`", split_dir.display()),
            looked_in: split_dir
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            hint: "--data-root must contain train/<class>/*.png|jpg|... and test/<class>/*, or train.csv and \
                   test.csv (path,label lines)"
                .into(),
        });
    }
    Ok(sorted_entries(split_dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .map(|p| {
            (
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                p,
            )
        })
        .collect())
}

/// The largest image side the reader accepts (pixels).
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// The most memory one image may take once decoded (bytes).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// The decoder limits of every image read: [`MAX_IMAGE_SIDE`] a side, [`MAX_IMAGE_BYTES`] decoded.
pub(crate) fn image_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    limits
}

/// Decodes one PNG or JPEG image held in `bytes`; `path` names it in errors. A header that declares more than
/// [`MAX_IMAGE_SIDE`] pixels a side or more than [`MAX_IMAGE_BYTES`] decoded is refused before anything that
/// size is allocated.
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<image::DynamicImage> {
    let limits = image_limits();
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| DataError::bad(path, format!("cannot decode image: {e}")))
}

/// One split's `(file, class name)` entries.
type Entries = Vec<(PathBuf, String)>;

/// `(file, class name)` of one split folder, in class then file-name order.
fn list_folders(split_dir: &Path, class_list: &[String]) -> Result<Entries> {
    let mut out = Vec::new();
    for (name, dir) in class_dirs(split_dir)? {
        if !class_list.is_empty() && !class_list.contains(&name) {
            continue; // not a listed class: never read (ImageNet's other 900 folders)
        }
        let files: Vec<PathBuf> = sorted_entries(&dir)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        if files.is_empty() {
            return Err(DataError::EmptyClass { path: dir });
        }
        out.extend(files.into_iter().map(|f| (f, name.clone())));
    }
    Ok(out)
}

/// `train.csv` / `test.csv` (or `.json`) under `root`, when both exist.
fn list_files(root: &Path) -> Option<(PathBuf, PathBuf)> {
    ["csv", "json"].iter().find_map(|ext| {
        let (a, b) = (
            root.join(format!("train.{ext}")),
            root.join(format!("test.{ext}")),
        );
        (a.is_file() && b.is_file()).then_some((a, b))
    })
}

/// Parses a `path,label` CSV or a JSON array of `{"path", "label"}`; paths are relative to the list's folder.
fn parse_list(file: &Path) -> Result<Entries> {
    let text = std::fs::read_to_string(file).map_err(|e| DataError::io(file, e))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    if file.extension().is_some_and(|e| e == "json") {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Row {
            path: String,
            label: serde_json::Value,
        }
        let rows: Vec<Row> = serde_json::from_str(&text).map_err(|e| {
            DataError::bad(
                file,
                format!("not a JSON array of {{\"path\", \"label\"}} objects: {e}"),
            )
        })?;
        for (k, r) in rows.into_iter().enumerate() {
            let label = match r.label {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                other => {
                    return Err(DataError::bad(
                        file,
                        format!("entry {k}: label {other} is neither a string nor a number"),
                    ))
                }
            };
            out.push((base.join(r.path), label));
        }
    } else {
        for (k, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            let line = if k == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            let is_header = k == 0
                && line
                    .split(',')
                    .map(|f| f.trim().to_ascii_lowercase())
                    .eq(["path", "label"].map(String::from));
            if line.trim().is_empty() || is_header {
                continue;
            }
            let (path, label) = line.rsplit_once(',').ok_or_else(|| {
                DataError::bad(
                    file,
                    format!("line {}: expected `path,label`, got `{line}`", k + 1),
                )
            })?;
            let (path, label) = (path.trim(), label.trim());
            if path.is_empty() || label.is_empty() {
                return Err(DataError::bad(
                    file,
                    format!("line {}: empty path or label", k + 1),
                ));
            }
            out.push((base.join(path), label.to_string()));
        }
    }
    if out.is_empty() {
        return Err(DataError::bad(file, "lists no image"));
    }
    Ok(out)
}

/// The classes: the sorted training class names, restricted to `class_list` when given (every listed class
/// must be present).
fn classes(
    train: &Entries,
    class_list: &[String],
    source: &Path,
    numeric: bool,
) -> Result<Vec<String>> {
    let found: BTreeSet<&str> = train.iter().map(|(_, c)| c.as_str()).collect();
    if class_list.is_empty() {
        let mut v: Vec<String> = found.into_iter().map(String::from).collect();
        sort_names(&mut v, numeric);
        return Ok(v);
    }
    let missing: Vec<&str> = class_list
        .iter()
        .map(String::as_str)
        .filter(|c| !found.contains(c))
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(10).copied().collect();
        return Err(DataError::bad(
            source,
            format!(
                "{} listed class(es) have no training image: {}{}",
                missing.len(),
                shown.join(", "),
                if missing.len() > 10 { ", ..." } else { "" }
            ),
        ));
    }
    let mut v = class_list.to_vec();
    sort_names(&mut v, numeric);
    Ok(v)
}

/// Sorts class names as text, or by value when `numeric` and every name is an integer (list files whose labels
/// are numbers: label 10 after 9, not after 1).
fn sort_names(v: &mut [String], numeric: bool) {
    let ints: Option<Vec<i64>> = numeric
        .then(|| v.iter().map(|n| n.parse::<i64>().ok()).collect())
        .flatten();
    match ints {
        Some(_) => v.sort_by_key(|n| n.parse::<i64>().unwrap_or(i64::MAX)),
        None => v.sort(),
    }
}

/// Maps class names to ids; entries of classes outside `classes` are dropped when `keep_unknown_out`, else an
/// error.
fn with_ids(
    entries: Entries,
    classes: &[String],
    keep_unknown_out: bool,
    source: &Path,
) -> Result<Vec<(PathBuf, u16)>> {
    let ids: std::collections::HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut out = Vec::with_capacity(entries.len());
    for (p, c) in entries {
        match ids.get(c.as_str()) {
            Some(&id) => out.push((p, id as u16)),
            None if keep_unknown_out => {}
            None => {
                return Err(DataError::bad(
                    source,
                    format!(
                        "test class `{c}` (for {}) is not a training class",
                        p.display()
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// Loads an image-folder dataset from `root` with the default [`LoadOptions`] (see the module docs).
pub fn load_image_folder(root: &Path) -> Result<Dataset> {
    load_image_folder_with(root, &LoadOptions::default())
}

/// Loads an image-folder dataset from `root` (see the module docs for the layouts and rules).
pub fn load_image_folder_with(root: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let lists = list_files(root);
    let from_lists = lists.is_some();
    let (train, test, source) = match lists {
        Some((a, b)) => (parse_list(&a)?, parse_list(&b)?, a),
        None => {
            let train_dir = root.join("train");
            let train = list_folders(&train_dir, &opts.class_list)?;
            if train.is_empty() {
                return Err(DataError::bad(
                    &train_dir,
                    "no class folder (expected train/<class>/*.png|jpg|...)",
                ));
            }
            // ImageNet's layout names the evaluation split `val/`.
            let test_dir = match root.join("test") {
                t if !t.exists() && root.join("val").is_dir() => root.join("val"),
                t => t,
            };
            (train, list_folders(&test_dir, &opts.class_list)?, train_dir)
        }
    };
    let classes = classes(&train, &opts.class_list, &source, from_lists)?;
    if classes.len() > u16::MAX as usize {
        return Err(DataError::bad(
            &source,
            format!("{} classes, at most 65535 supported", classes.len()),
        ));
    }
    let filtered = !opts.class_list.is_empty();
    let train = with_ids(train, &classes, filtered, &source)?;
    let test = with_ids(test, &classes, filtered, &source)?;
    if test.is_empty() {
        return Err(DataError::bad(
            root,
            "the test split holds no image of the training classes",
        ));
    }
    let mut skipped = Vec::new();
    let mut scan_files = |files: Vec<(PathBuf, u16)>| {
        let (paths, labels): (Vec<PathBuf>, Vec<u16>) = files.into_iter().unzip();
        let items = paths.into_iter().map(EncodedItem::File).collect();
        scan_split(items, labels, opts.bad_files, &mut skipped)
    };
    let train = scan_files(train)?;
    let test = scan_files(test)?;
    let shape = model_shape(opts.image_size, &train, &test, root)?;
    let report = LoadReport {
        image_sizes: LoadReport::count_sizes(train.sizes.iter().chain(&test.sizes).copied()),
        skipped,
    };
    let train = streamed_split(train, shape, opts, "train")?;
    let test = streamed_split(test, shape, opts, "test")?;
    let mut ds = Dataset::from_splits("image-folder", classes, train, test, root)?;
    let counts = ds.train.per_class_counts(ds.num_classes);
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        return Err(DataError::bad(
            root,
            format!(
                "class `{}` has no readable training image",
                ds.class_names[c]
            ),
        ));
    }
    ds.report = report;
    Ok(ds)
}
