//! [`LoadOptions`]: how the streamed readers (image folders, parquet) bring images to the model's size and what
//! they do with bad files. The in-memory readers (IDX, CIFAR, the built-in set) ignore them.

use crate::encoded::BadFiles;
use std::path::PathBuf;

/// Options of the streamed readers (config keys `data.image_size`, `data.eval_crop`, `data.bad_files`,
/// `data.class_list`, `data.decoded_cache`, `data.image_column`, `data.label_column`).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Side of the square the model sees; 0 = the size of the first training image (height and width).
    pub image_size: usize,
    /// Evaluation centre-crop fraction in `(0, 1]` (1 = resize the shorter side to the size, then crop the
    /// centre; 0.875 = ImageNet's resize 256 / crop 224).
    pub eval_crop: f64,
    /// What to do with an image that cannot be read or decoded.
    pub bad_files: BadFiles,
    /// Keep only these classes (folder names / label names), given in any order; empty = every class found.
    pub class_list: Vec<String>,
    /// A folder for the decoded cache (see [`crate::cache`]); `None` = decode every time.
    pub decoded_cache: Option<PathBuf>,
    /// Parquet: the image column (empty = `img`, `image`, or the only column holding image bytes).
    pub image_column: String,
    /// Parquet: the label column (empty = `label`, `fine_label`, or `labels`).
    pub label_column: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            image_size: 0,
            eval_crop: 1.0,
            bad_files: BadFiles::Stop,
            class_list: Vec::new(),
            decoded_cache: None,
            image_column: String::new(),
            label_column: String::new(),
        }
    }
}

/// The class lists built into the binary, by name (`builtin:<name>` in `data.class_list`).
pub const BUILTIN_CLASS_LISTS: [(&str, &str); 1] =
    [("imagenet100", include_str!("../classes/imagenet100.txt"))];

/// Resolves `data.class_list`: `builtin:<name>` (see [`BUILTIN_CLASS_LISTS`]) or a file path; empty = no list.
pub fn resolve_class_list(spec: &str) -> crate::error::Result<Vec<String>> {
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(name) = spec.strip_prefix("builtin:") {
        let (_, text) = BUILTIN_CLASS_LISTS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| {
                crate::error::DataError::config(
                    "class_list",
                    format!(
                        "no built-in class list `{name}`; built in: {}",
                        BUILTIN_CLASS_LISTS
                            .iter()
                            .map(|(n, _)| format!("builtin:{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        return parse_class_list(text, std::path::Path::new(spec));
    }
    let path = std::path::Path::new(spec);
    let text = std::fs::read_to_string(path).map_err(|e| crate::error::DataError::io(path, e))?;
    parse_class_list(&text, path)
}

/// Reads a class list file: one class (folder name) per line; blank lines and `#` comments are ignored.
fn parse_class_list(text: &str, path: &std::path::Path) -> crate::error::Result<Vec<String>> {
    let list: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    if let Some(d) = list.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(crate::error::DataError::bad(
            path,
            format!("class `{d}` is listed twice"),
        ));
    }
    if list.is_empty() {
        return Err(crate::error::DataError::bad(path, "lists no class"));
    }
    Ok(list)
}
