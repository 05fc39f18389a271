//! Image-folder reader: `root/train/<class>/*.{png,jpg,jpeg}` and `root/test/<class>/*.{png,jpg,jpeg}`.
//!
//! * Class ids are the **sorted** names of the folders under `train/`; `test/` may hold a subset of them
//!   (a test folder whose name is not a training class is an error).
//! * Files are read in sorted name order; other extensions (and hidden entries) are ignored.
//! * A class folder with no image is an error ([`DataError::EmptyClass`]).
//! * Every image must have the size of the first training image ([`DataError::MixedImageSize`] names the odd one).
//! * If every image is grayscale the dataset has 1 channel; otherwise all images are converted to RGB
//!   (alpha is dropped).
//!
//! Decoding runs in parallel with rayon; results are assembled in file order, so the dataset is identical on
//! any thread count.

use crate::error::{DataError, Result};
use crate::types::{Dataset, ImageShape, Split};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

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
            .map(|e| {
                matches!(
                    e.to_string_lossy().to_ascii_lowercase().as_str(),
                    "png" | "jpg" | "jpeg"
                )
            })
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
            hint: "--data-root must contain train/<class>/*.png|jpg and test/<class>/*.png|jpg"
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

struct Decoded {
    path: PathBuf,
    img: image::DynamicImage,
}

/// The largest image side the reader accepts (pixels).
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// The most memory one image may take once decoded (bytes).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// Decodes one PNG or JPEG image held in `bytes`; `path` names it in errors. A header that declares more than
/// [`MAX_IMAGE_SIDE`] pixels a side or more than [`MAX_IMAGE_BYTES`] decoded is refused before anything that
/// size is allocated.
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<image::DynamicImage> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| DataError::bad(path, format!("cannot decode image: {e}")))
}

fn decode(path: &Path) -> Result<Decoded> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    Ok(Decoded {
        path: path.to_path_buf(),
        img: decode_image(&bytes, path)?,
    })
}

/// Lists `(file, class id)` of one split, in class then file-name order.
fn list_split(split_dir: &Path, classes: &[String]) -> Result<Vec<(PathBuf, u16)>> {
    let mut out = Vec::new();
    for (name, dir) in class_dirs(split_dir)? {
        let id = classes.iter().position(|c| *c == name).ok_or_else(|| {
            DataError::bad(
                &dir,
                format!("class folder `{name}` has no counterpart in the training folder"),
            )
        })?;
        let files: Vec<PathBuf> = sorted_entries(&dir)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        if files.is_empty() {
            return Err(DataError::EmptyClass { path: dir });
        }
        out.extend(files.into_iter().map(|f| (f, id as u16)));
    }
    Ok(out)
}

/// Loads an image-folder dataset from `root` (see the module docs for the layout and rules).
pub fn load_image_folder(root: &Path) -> Result<Dataset> {
    let train_dir = root.join("train");
    let test_dir = root.join("test");
    let classes: Vec<String> = class_dirs(&train_dir)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if classes.is_empty() {
        return Err(DataError::bad(
            &train_dir,
            "no class folder (expected train/<class>/*.png|jpg)",
        ));
    }
    if classes.len() > u16::MAX as usize {
        return Err(DataError::bad(
            &train_dir,
            format!("{} class folders, at most 65535 supported", classes.len()),
        ));
    }
    let train_files = list_split(&train_dir, &classes)?;
    let test_files = list_split(&test_dir, &classes)?;
    if test_files.is_empty() {
        return Err(DataError::bad(
            &test_dir,
            "no class folder (expected test/<class>/*.png|jpg)",
        ));
    }
    let decode_all = |files: &[(PathBuf, u16)]| -> Result<Vec<Decoded>> {
        files
            .par_iter()
            .map(|(p, _)| decode(p))
            .collect::<Vec<_>>()
            .into_iter()
            .collect()
    };
    let train_imgs = decode_all(&train_files)?;
    let test_imgs = decode_all(&test_files)?;
    let first = &train_imgs[0].img; // non-empty: `list_split` rejects empty class folders and there is >= 1 class
    let (want_w, want_h) = (first.width() as usize, first.height() as usize);
    let mut rgb = false;
    for d in train_imgs.iter().chain(test_imgs.iter()) {
        let (w, h) = (d.img.width() as usize, d.img.height() as usize);
        if (w, h) != (want_w, want_h) {
            return Err(DataError::MixedImageSize {
                path: d.path.clone(),
                got_w: w,
                got_h: h,
                want_w,
                want_h,
            });
        }
        rgb |= d.img.color().has_color();
    }
    let shape = ImageShape {
        channels: if rgb { 3 } else { 1 },
        height: want_h,
        width: want_w,
    };
    let to_split = |imgs: Vec<Decoded>, files: &[(PathBuf, u16)]| -> Result<Split> {
        let mut px = Vec::with_capacity(imgs.len() * shape.len());
        for d in imgs {
            if rgb {
                px.extend_from_slice(d.img.to_rgb8().as_raw());
            } else {
                px.extend_from_slice(d.img.to_luma8().as_raw());
            }
        }
        Split::new(shape, px, files.iter().map(|(_, c)| *c).collect())
    };
    let train = to_split(train_imgs, &train_files)?;
    let test = to_split(test_imgs, &test_files)?;
    Dataset::from_splits("image-folder", classes, train, test, root)
}
