//! Images kept encoded (files on disk, or PNG/JPEG bytes read from a parquet file) and decoded only when a batch
//! needs them, so memory stays flat however many images a dataset has.
//!
//! * [`EncodedImages`] holds one [`EncodedItem`] per image (a path or shared bytes, ~100 bytes each), the
//!   dataset's channel count and its output size. [`EncodedImages::decode`] gives the image at its own size;
//!   the training pipeline draws its random resized crop over it ([`crate::Augmenter::augment_sized`]) and
//!   [`EncodedImages::eval_pixels`] applies the evaluation transform (resize + centre crop, see
//!   [`crate::augment::crop::centre_crop_rect`]).
//! * [`scan`] reads only the headers of every image (size and colour), in parallel: that finds most bad files
//!   (not an image, truncated header, empty) before training starts. [`BadFiles`] chooses between stopping on
//!   the first and leaving them out.
//! * A file whose header was fine but whose data does not decode is found when a batch needs it: with
//!   [`BadFiles::Stop`] the batch fails with the path; with [`BadFiles::Skip`] it is replaced by a black
//!   image, a warning names it once, and [`EncodedImages::decode_failures`] counts it.
//! * An optional decoded cache ([`crate::cache::DecodedCache`]) stores every image decoded, in one file on
//!   disk, read back by offset: decoding is paid once, and memory stays flat.

use crate::augment::crop::{centre_crop_rect, resized_crop};
use crate::cache::DecodedCache;
use crate::error::{DataError, Result};
use crate::image_folder::{decode_image, image_limits};
use crate::options::LoadOptions;
use crate::types::{BadFile, ImageShape, Split};
use image::ImageDecoder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// What to do with an image that cannot be read or decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadFiles {
    /// Stop with an error that names the file (the default).
    #[default]
    Stop,
    /// Leave the file out (found by the header scan) or replace it by a black image (found while training),
    /// with a warning; the count goes into the run's manifest.
    Skip,
}

impl BadFiles {
    /// `stop` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            BadFiles::Stop => "stop",
            BadFiles::Skip => "skip",
        }
    }
}

impl FromStr for BadFiles {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stop" => Ok(BadFiles::Stop),
            "skip" => Ok(BadFiles::Skip),
            _ => Err(DataError::config(
                "bad_files",
                format!("`{s}` is neither `stop` nor `skip`"),
            )),
        }
    }
}

/// Where one encoded image lives.
#[derive(Clone, Debug)]
pub enum EncodedItem {
    /// An image file.
    File(PathBuf),
    /// Encoded bytes held in memory (e.g. a parquet image cell); `name` says where they came from in errors.
    Bytes {
        /// The PNG / JPEG / ... bytes.
        bytes: Arc<[u8]>,
        /// `file.parquet row N`, for messages.
        name: String,
    },
}

impl EncodedItem {
    /// The path or name used in messages.
    pub fn name(&self) -> String {
        match self {
            EncodedItem::File(p) => p.display().to_string(),
            EncodedItem::Bytes { name, .. } => name.clone(),
        }
    }
    fn path_for_errors(&self) -> PathBuf {
        match self {
            EncodedItem::File(p) => p.clone(),
            EncodedItem::Bytes { name, .. } => PathBuf::from(name),
        }
    }
    fn bytes(&self) -> Result<Cow<'_, [u8]>> {
        match self {
            EncodedItem::File(p) => Ok(Cow::Owned(
                std::fs::read(p).map_err(|e| DataError::io(p, e))?,
            )),
            EncodedItem::Bytes { bytes, .. } => Ok(Cow::Borrowed(bytes)),
        }
    }
    /// Decodes the image and converts it to `channels` (1 = luma, 3 = RGB; alpha dropped).
    pub fn decode(&self, channels: usize) -> Result<SourceImage<'static>> {
        let bytes = self.bytes()?;
        let img = decode_image(&bytes, &self.path_for_errors())?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let pixels = if channels == 1 {
            img.into_luma8().into_raw()
        } else {
            img.into_rgb8().into_raw()
        };
        Ok(SourceImage {
            pixels: Cow::Owned(pixels),
            height: h,
            width: w,
        })
    }
    /// Reads only the header: `(width, height, has colour)`.
    pub fn header(&self) -> Result<(u32, u32, bool)> {
        let path = self.path_for_errors();
        let (w, h, color) = match self {
            EncodedItem::File(p) => {
                let f = std::fs::File::open(p).map_err(|e| DataError::io(p, e))?;
                read_header(std::io::BufReader::new(f), &path)?
            }
            EncodedItem::Bytes { bytes, .. } => {
                read_header(std::io::Cursor::new(&bytes[..]), &path)?
            }
        };
        if w == 0 || h == 0 {
            return Err(DataError::bad(
                &path,
                "the image has no pixels (0 wide or high)",
            ));
        }
        Ok((w, h, color))
    }
}

/// `(width, height, has colour)` from the header `r` starts with, under the decoder limits.
fn read_header<R: std::io::BufRead + std::io::Seek>(r: R, path: &Path) -> Result<(u32, u32, bool)> {
    let mut r = image::ImageReader::new(r)
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    r.limits(image_limits());
    let d = r
        .into_decoder()
        .map_err(|e| DataError::bad(path, format!("not a readable image: {e}")))?;
    let (w, h) = d.dimensions();
    if d.total_bytes() > crate::image_folder::MAX_IMAGE_BYTES {
        return Err(DataError::bad(
            path,
            format!(
                "a {w}x{h} image takes {} MB decoded, over the limit of {} MB",
                d.total_bytes() >> 20,
                crate::image_folder::MAX_IMAGE_BYTES >> 20
            ),
        ));
    }
    Ok((w, h, d.color_type().has_color()))
}

/// A decoded image of any size: HWC u8 pixels with the dataset's channel count.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceImage<'a> {
    /// `height * width * channels` bytes, channel fastest.
    pub pixels: Cow<'a, [u8]>,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

/// The images of one split, kept encoded (see the module docs).
#[derive(Debug)]
pub struct EncodedImages {
    items: Vec<EncodedItem>,
    shape: ImageShape,
    eval_crop: f64,
    bad_files: BadFiles,
    cache: Option<DecodedCache>,
    failed: Mutex<BTreeSet<usize>>,
}

impl EncodedImages {
    /// Images `items` of `channels` channels, brought to `height x width` for the model, evaluated with the
    /// centre-crop fraction `eval_crop` (in `(0, 1]`).
    pub fn new(
        items: Vec<EncodedItem>,
        shape: ImageShape,
        eval_crop: f64,
        bad_files: BadFiles,
    ) -> Result<Self> {
        if !(eval_crop > 0.0 && eval_crop <= 1.0) {
            return Err(DataError::config(
                "eval_crop",
                format!("{eval_crop} is not in (0, 1]"),
            ));
        }
        if shape.is_empty() || !matches!(shape.channels, 1 | 3) {
            return Err(DataError::config(
                "image_size",
                format!("unsupported image shape {shape} (CxHxW)"),
            ));
        }
        Ok(EncodedImages {
            items,
            shape,
            eval_crop,
            bad_files,
            cache: None,
            failed: Mutex::new(BTreeSet::new()),
        })
    }

    /// Reads the images through a decoded cache in `dir` (built there first if missing or stale).
    pub fn with_cache(mut self, dir: &Path) -> Result<Self> {
        self.cache = Some(DecodedCache::open_or_build(
            dir,
            &self.items,
            self.shape.channels,
            self.bad_files,
        )?);
        Ok(self)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// `true` when there is no image.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// The output shape: channels and the size every image is brought to.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }
    /// The item of image `i`.
    pub fn item(&self, i: usize) -> &EncodedItem {
        &self.items[i]
    }
    /// The cache file, when there is one.
    pub fn cache_path(&self) -> Option<&Path> {
        self.cache.as_ref().map(|c| c.path())
    }
    /// How many images failed to decode while training and were replaced by a black image
    /// ([`BadFiles::Skip`]).
    pub fn decode_failures(&self) -> usize {
        self.failed.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// Image `i` at its own size (from the cache when there is one). A failure is an error naming the file
    /// ([`BadFiles::Stop`]) or a black image of the output size with a one-time warning ([`BadFiles::Skip`]).
    pub fn decode(&self, i: usize) -> Result<SourceImage<'static>> {
        let got = match &self.cache {
            Some(c) => c.read(i, &self.items[i]),
            None => self.items[i].decode(self.shape.channels),
        };
        match got {
            Ok(img) => Ok(img),
            Err(e) if self.bad_files == BadFiles::Skip => {
                let first = self.failed.lock().map(|mut f| f.insert(i)).unwrap_or(false);
                if first {
                    eprintln!("warning: {e}; replaced by a black image (data.bad_files = skip)");
                }
                Ok(SourceImage {
                    pixels: Cow::Owned(vec![0; self.shape.len()]),
                    height: self.shape.height,
                    width: self.shape.width,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The evaluation view of image `i`: resized and centre-cropped to the output size (HWC f32 in `[0, 1]`,
    /// `shape().len()` values written to `out`).
    pub fn eval_pixels(&self, i: usize, out: &mut [f32]) -> Result<()> {
        let src = self.decode(i)?;
        let s = self.shape;
        let rect = centre_crop_rect(src.height, src.width, s.height, s.width, self.eval_crop);
        resized_crop(&src.pixels, src.width, s, rect, false, out);
        Ok(())
    }
}

/// `e` with the advice to skip bad files appended (the `stop` policy's error).
pub fn with_skip_hint(e: DataError) -> DataError {
    const HINT: &str =
        "set data.bad_files = \"skip\" (e.g. --set data.bad_files=skip) to leave bad files out; \
                        `kaizen data inspect` lists them all";
    match e {
        DataError::BadFile { path, reason } => DataError::BadFile {
            path,
            reason: format!("{reason} ({HINT})"),
        },
        other => other,
    }
}

/// The header of every item, in parallel, in item order: `(width, height, has colour)` or the error.
pub fn scan(items: &[EncodedItem]) -> Vec<Result<(u32, u32, bool)>> {
    items.par_iter().map(|it| it.header()).collect()
}

/// One split of a streamed reader after the header scan: the readable images, their labels and sizes
/// (`(width, height)`), and whether any of them has colour.
pub(crate) struct Scanned {
    pub(crate) items: Vec<EncodedItem>,
    pub(crate) labels: Vec<u16>,
    pub(crate) sizes: Vec<(u32, u32)>,
    pub(crate) color: bool,
}

/// Reads every header ([`scan`]); an unreadable image stops loading (with the skip hint) or, under
/// [`BadFiles::Skip`], is left out and recorded in `skipped`.
pub(crate) fn scan_split(
    items: Vec<EncodedItem>,
    labels: Vec<u16>,
    bad_files: BadFiles,
    skipped: &mut Vec<BadFile>,
) -> Result<Scanned> {
    let heads = scan(&items);
    let mut s = Scanned {
        items: Vec::with_capacity(items.len()),
        labels: Vec::with_capacity(items.len()),
        sizes: Vec::with_capacity(items.len()),
        color: false,
    };
    for ((item, label), head) in items.into_iter().zip(labels).zip(heads) {
        match head {
            Ok((w, h, c)) => {
                s.items.push(item);
                s.labels.push(label);
                s.sizes.push((w, h));
                s.color |= c;
            }
            Err(e) if bad_files == BadFiles::Skip => skipped.push(BadFile {
                path: item.name(),
                reason: e.to_string(),
            }),
            Err(e) => return Err(with_skip_hint(e)),
        }
    }
    Ok(s)
}

/// The shape the model sees: `image_size` square, else the first readable training image's size; 3 channels when
/// any image has colour, else 1. `source` names the dataset when no training image is readable.
pub(crate) fn model_shape(
    image_size: usize,
    train: &Scanned,
    test: &Scanned,
    source: &Path,
) -> Result<ImageShape> {
    let (height, width) = match (image_size, train.sizes.first()) {
        (s, _) if s > 0 => (s, s),
        (_, Some(&(w, h))) => (h as usize, w as usize),
        (_, None) => return Err(DataError::bad(source, "no readable training image")),
    };
    Ok(ImageShape {
        channels: if train.color || test.color { 3 } else { 1 },
        height,
        width,
    })
}

/// A streamed split of scanned images, read through a decoded cache in `<decoded_cache>/<part>` when one is
/// configured.
pub(crate) fn streamed_split(
    s: Scanned,
    shape: ImageShape,
    opts: &LoadOptions,
    part: &str,
) -> Result<Split> {
    let mut images = EncodedImages::new(s.items, shape, opts.eval_crop, opts.bad_files)?;
    if let Some(dir) = &opts.decoded_cache {
        images = images.with_cache(&dir.join(part))?;
    }
    Split::encoded(images, s.labels)
}
