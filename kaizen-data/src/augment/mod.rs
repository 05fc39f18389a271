//! Two-view SSL augmentation on u8 HWC images, producing normalised f32 CHW views.
//!
//! Pipeline of one view (the order of solo-learn's asymmetric BYOL/SimCLR recipe, minus blur):
//!
//! 1. random resized crop ([`crop`]): torchvision's sampling (10 attempts, scale `crop_min_scale..crop_max_scale`,
//!    log-uniform ratio 3/4..4/3, fallback centre crop), then a bilinear resize (half-pixel centres,
//!    `align_corners = false`) to the output size. For images of the output size (in-memory datasets) the crop
//!    is never larger than the output, so the resize never shrinks; for larger images (image folders, parquet)
//!    the crop is drawn over the whole source image and shrunk with PIL's antialiased bilinear filter;
//! 2. colour jitter with probability `jitter_p` ([`color`]): factors drawn like torchvision
//!    (brightness/contrast/saturation uniform in `[max(0, 1-x), 1+x]`, hue uniform in `[-h, h]`), applied in a
//!    **random order** (a seeded permutation, as torchvision's `ColorJitter`). On 1-channel images only
//!    brightness and contrast exist (saturation and hue are no-ops on gray);
//! 3. grayscale with probability `grayscale_p` (ITU-R 601 luma `0.299 R + 0.587 G + 0.114 B` into all three
//!    channels; a no-op on 1-channel images);
//! 4. Gaussian blur with probability `blur_p[view]` (sigma uniform in `blur_sigma`; [`blur`]; off by default, so
//!    its numbers are drawn only when the view's probability is above 0);
//! 5. solarisation with probability `solarize_p[view]` (`x -> 1 - x` where `x >= 128/255`, PIL's threshold);
//! 6. horizontal flip with probability `flip_p`;
//! 7. normalisation `(x - mean[c]) / std[c]`, written as CHW.
//!
//! Pixels are kept as f32 in `[0, 1]` between steps (no rounding to u8 between operations, unlike PIL).
//! Every random number of a view comes from one generator, drawn in the order above, so a view is a pure
//! function of `(image, config, generator)`; [`Augmenter::augment`] seeds that generator from
//! `(seed, epoch_key, sample index, view)` (see [`crate::rng`]).

pub mod blur;
pub mod color;
pub mod crop;

use crate::error::{DataError, Result};
use crate::rng::{bernoulli, rng_for, uniform, RngStream};
use crate::types::ImageShape;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Augmentation parameters (defaults = Kaizen / solo-learn's CIFAR recipe).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Smallest crop area as a fraction of the image (0.08).
    pub crop_min_scale: f64,
    /// Largest crop area as a fraction of the image (1.0).
    pub crop_max_scale: f64,
    /// Probability of a horizontal flip (0.5).
    pub flip_p: f64,
    /// Brightness jitter strength (0.4): factor in `[max(0, 1-x), 1+x]`.
    pub brightness: f64,
    /// Contrast jitter strength (0.4).
    pub contrast: f64,
    /// Saturation jitter strength (0.2); RGB only.
    pub saturation: f64,
    /// Hue jitter strength (0.1), in turns, at most 0.5; RGB only.
    pub hue: f64,
    /// Probability of applying colour jitter (0.8).
    pub jitter_p: f64,
    /// Probability of converting to grayscale (0.2); RGB only.
    pub grayscale_p: f64,
    /// Solarisation probability of view 1 and view 2 (`[0.0, 0.2]`, BYOL's asymmetric views).
    pub solarize_p: [f64; 2],
    /// Gaussian-blur probability of view 1 and view 2 (`[0.0, 0.0]`: off; BYOL's ImageNet recipe: `[1.0, 0.1]`).
    pub blur_p: [f64; 2],
    /// Range of the blur's sigma in pixels of the output image, drawn uniformly (`[0.1, 2.0]`).
    pub blur_sigma: [f64; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            crop_min_scale: 0.08,
            crop_max_scale: 1.0,
            flip_p: 0.5,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
            jitter_p: 0.8,
            grayscale_p: 0.2,
            solarize_p: [0.0, 0.2],
            blur_p: [0.0, 0.0],
            blur_sigma: [0.1, 2.0],
        }
    }
}

impl AugmentConfig {
    /// A config that changes nothing (full-image crop, no flip, no colour change): useful for tests.
    pub fn identity() -> Self {
        AugmentConfig {
            crop_min_scale: 1.0,
            crop_max_scale: 1.0,
            flip_p: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            jitter_p: 0.0,
            grayscale_p: 0.0,
            solarize_p: [0.0, 0.0],
            blur_p: [0.0, 0.0],
            blur_sigma: [0.1, 2.0],
        }
    }

    /// Checks ranges: `0 < crop_min_scale <= crop_max_scale <= 1`, probabilities in `[0, 1]`, jitter
    /// strengths `>= 0` and finite, `hue <= 0.5`. The error names the key.
    pub fn validate(&self) -> Result<()> {
        let fin = |k: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(DataError::config(k, format!("{v} is not finite")))
            }
        };
        let prob = |k: &str, v: f64| {
            fin(k, v)?;
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(DataError::config(
                    k,
                    format!("{v} is not a probability in [0, 1]"),
                ))
            }
        };
        fin("crop_min_scale", self.crop_min_scale)?;
        fin("crop_max_scale", self.crop_max_scale)?;
        if !(self.crop_min_scale > 0.0
            && self.crop_min_scale <= self.crop_max_scale
            && self.crop_max_scale <= 1.0)
        {
            return Err(DataError::config(
                "crop_min_scale",
                format!(
                    "need 0 < crop_min_scale <= crop_max_scale <= 1, got {} and {}",
                    self.crop_min_scale, self.crop_max_scale
                ),
            ));
        }
        prob("flip_p", self.flip_p)?;
        prob("jitter_p", self.jitter_p)?;
        prob("grayscale_p", self.grayscale_p)?;
        prob("solarize_p[0]", self.solarize_p[0])?;
        prob("solarize_p[1]", self.solarize_p[1])?;
        prob("blur_p[0]", self.blur_p[0])?;
        prob("blur_p[1]", self.blur_p[1])?;
        let [lo, hi] = self.blur_sigma;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
            return Err(DataError::config(
                "blur_sigma",
                format!("need 0 < min <= max, got [{lo}, {hi}]"),
            ));
        }
        for (k, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
            ("hue", self.hue),
        ] {
            fin(k, v)?;
            if v < 0.0 {
                return Err(DataError::config(k, format!("{v} is negative")));
            }
        }
        if self.hue > 0.5 {
            return Err(DataError::config(
                "hue",
                format!("{} exceeds 0.5", self.hue),
            ));
        }
        Ok(())
    }
}

/// A validated augmentation pipeline for one image shape and one normalisation.
#[derive(Clone, Debug)]
pub struct Augmenter {
    cfg: AugmentConfig,
    shape: ImageShape,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Augmenter {
    /// Builds the pipeline. `mean`/`std` are per channel in `[0, 1]` units (e.g. [`crate::Dataset::mean`]);
    /// they must have `shape.channels` entries and every `std` must be finite and `> 0`.
    pub fn new(cfg: AugmentConfig, shape: ImageShape, mean: &[f32], std: &[f32]) -> Result<Self> {
        cfg.validate()?;
        let inv_std = normalisation(shape, mean, std)?;
        Ok(Augmenter {
            cfg,
            shape,
            mean: mean.to_vec(),
            inv_std,
        })
    }
    /// The config.
    pub fn config(&self) -> &AugmentConfig {
        &self.cfg
    }
    /// The image shape this pipeline expects and produces.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// View `view` (0 or 1; it selects `solarize_p[view]`) of image `src` (HWC u8, `shape().len()` bytes),
    /// seeded from `(seed, epoch_key, index, view)`, written normalised as CHW into `out`
    /// (`shape().len()` floats). Panics if the buffer lengths are wrong (checked by the batch builders).
    pub fn augment(
        &self,
        src: &[u8],
        seed: u64,
        epoch_key: u64,
        index: u32,
        view: usize,
        out: &mut [f32],
    ) {
        let (h, w) = (self.shape.height, self.shape.width);
        self.augment_sized(src, h, w, seed, epoch_key, index, view, out);
    }

    /// Like [`Augmenter::augment`] for a source image of any size (`src_h x src_w`, the pipeline's channel
    /// count, HWC u8): the random resized crop is drawn over the source image and resized to `shape()`.
    /// With `src_h x src_w == shape()` this is exactly [`Augmenter::augment`].
    #[allow(clippy::too_many_arguments)]
    pub fn augment_sized(
        &self,
        src: &[u8],
        src_h: usize,
        src_w: usize,
        seed: u64,
        epoch_key: u64,
        index: u32,
        view: usize,
        out: &mut [f32],
    ) {
        let mut rng = rng_for(
            seed,
            RngStream::Augment,
            epoch_key,
            index as u64,
            view as u64,
        );
        self.view_of(src, src_h, src_w, view, &mut rng, out);
    }

    /// Like [`Augmenter::augment`] but with a caller-provided generator.
    pub fn view_with(&self, src: &[u8], view: usize, rng: &mut ChaCha8Rng, out: &mut [f32]) {
        let (h, w) = (self.shape.height, self.shape.width);
        self.view_of(src, h, w, view, rng, out);
    }

    fn view_of(
        &self,
        src: &[u8],
        src_h: usize,
        src_w: usize,
        view: usize,
        rng: &mut ChaCha8Rng,
        out: &mut [f32],
    ) {
        let ImageShape {
            channels: c,
            height: h,
            width: w,
        } = self.shape;
        let cfg = &self.cfg;
        // Draw every parameter first, in pipeline order.
        let rect = crop::sample_crop(src_h, src_w, cfg.crop_min_scale, cfg.crop_max_scale, rng);
        let jitter = if bernoulli(rng, cfg.jitter_p) {
            Some(color::Jitter::sample(cfg, c, rng))
        } else {
            None
        };
        let gray = bernoulli(rng, cfg.grayscale_p);
        // Drawn only when this view may blur, so configs without blur keep their random streams.
        let blur_p = cfg.blur_p[view.min(1)];
        let blur = if blur_p > 0.0 && bernoulli(rng, blur_p) {
            Some(uniform(rng, cfg.blur_sigma[0], cfg.blur_sigma[1]) as f32)
        } else {
            None
        };
        let solarize = bernoulli(rng, cfg.solarize_p[view.min(1)]);
        let flip = bernoulli(rng, cfg.flip_p);
        // Execute.
        let mut buf = vec![0f32; c * h * w];
        crop::resized_crop(src, src_w, self.shape, rect, flip, &mut buf);
        if let Some(j) = jitter {
            j.apply(&mut buf, c);
        }
        if gray && c == 3 {
            color::grayscale(&mut buf);
        }
        if let Some(sigma) = blur {
            blur::gaussian_blur(&mut buf, h, w, c, sigma);
        }
        if solarize {
            color::solarize(&mut buf);
        }
        write_normalised_chw(&buf, self.shape, &self.mean, &self.inv_std, out);
    }
}

/// Validates `mean`/`std` for `shape` and returns `1 / std`.
pub(crate) fn normalisation(shape: ImageShape, mean: &[f32], std: &[f32]) -> Result<Vec<f32>> {
    if mean.len() != shape.channels || std.len() != shape.channels {
        return Err(DataError::config(
            "mean/std",
            format!(
                "{} mean and {} std values for {} channels",
                mean.len(),
                std.len(),
                shape.channels
            ),
        ));
    }
    if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(DataError::config(
            "std",
            format!("{s} is not a positive finite number"),
        ));
    }
    if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
        return Err(DataError::config("mean", format!("{m} is not finite")));
    }
    Ok(std.iter().map(|s| 1.0 / s).collect())
}

/// `out[ch * H * W + p] = (buf[p * C + ch] - mean[ch]) * inv_std[ch]`.
pub(crate) fn write_normalised_chw(
    buf: &[f32],
    shape: ImageShape,
    mean: &[f32],
    inv_std: &[f32],
    out: &mut [f32],
) {
    let c = shape.channels;
    let hw = shape.height * shape.width;
    for ch in 0..c {
        let (m, s) = (mean[ch], inv_std[ch]);
        let dst = &mut out[ch * hw..(ch + 1) * hw];
        for (p, d) in dst.iter_mut().enumerate() {
            *d = (buf[p * c + ch] - m) * s;
        }
    }
}
