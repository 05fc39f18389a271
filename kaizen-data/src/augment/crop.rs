//! Random resized crop (torchvision's `RandomResizedCrop.get_params`) and the bilinear resize, with an
//! optional horizontal flip folded into the resampling.

use crate::dataset::ImageShape;
use crate::rng::uniform;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A crop rectangle: top row `i`, left column `j`, height `h`, width `w` (all within the image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Top row.
    pub i: usize,
    /// Left column.
    pub j: usize,
    /// Height (>= 1).
    pub h: usize,
    /// Width (>= 1).
    pub w: usize,
}

/// torchvision's sampling for an image of `height x width`: up to 10 attempts of
/// `area * U(min_scale, max_scale)` with aspect ratio `exp(U(ln 3/4, ln 4/3))`, `w = round(sqrt(a * r))`,
/// `h = round(sqrt(a / r))`, accepted if it fits; the offset is uniform. Otherwise the centre crop with the
/// ratio clamped to `[3/4, 4/3]`.
pub fn sample_crop(
    height: usize,
    width: usize,
    min_scale: f64,
    max_scale: f64,
    rng: &mut ChaCha8Rng,
) -> Rect {
    let area = (height * width) as f64;
    let (lr0, lr1) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * uniform(rng, min_scale, max_scale);
        let ratio = uniform(rng, lr0, lr1).exp();
        let w = (target * ratio).sqrt().round() as usize;
        let h = (target / ratio).sqrt().round() as usize;
        if w > 0 && h > 0 && w <= width && h <= height {
            let i = rng.random_range(0..=height - h);
            let j = rng.random_range(0..=width - w);
            return Rect { i, j, h, w };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < 3.0 / 4.0 {
        (
            width,
            ((width as f64 / (3.0 / 4.0)).round() as usize).clamp(1, height),
        )
    } else if in_ratio > 4.0 / 3.0 {
        (
            ((height as f64 * (4.0 / 3.0)).round() as usize).clamp(1, width),
            height,
        )
    } else {
        (width, height)
    };
    Rect {
        i: (height - h) / 2,
        j: (width - w) / 2,
        h,
        w,
    }
}

/// Source coordinate table for bilinear resampling of `src_len` pixels (starting at `offset`) onto
/// `dst_len` pixels: half-pixel centres, `s = (d + 0.5) * src_len / dst_len - 0.5`, clamped at 0.
fn table(offset: usize, src_len: usize, dst_len: usize) -> Vec<(usize, usize, f32)> {
    let scale = src_len as f64 / dst_len as f64;
    (0..dst_len)
        .map(|d| {
            let s = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
            let s0 = (s.floor() as usize).min(src_len - 1);
            let s1 = (s0 + 1).min(src_len - 1);
            (offset + s0, offset + s1, (s - s0 as f64) as f32)
        })
        .collect()
}

/// Resamples `rect` of `src` (HWC u8) bilinearly to the full `shape`, optionally mirrored left-right,
/// into `out` (HWC f32 in `[0, 1]`).
pub fn resized_crop(src: &[u8], shape: ImageShape, rect: Rect, flip: bool, out: &mut [f32]) {
    let ImageShape {
        channels: c,
        height: oh,
        width: ow,
    } = shape;
    let ys = table(rect.i, rect.h, oh);
    let mut xs = table(rect.j, rect.w, ow);
    if flip {
        xs.reverse();
    }
    const K: f32 = 1.0 / 255.0;
    for (y, &(y0, y1, fy)) in ys.iter().enumerate() {
        let r0 = &src[y0 * ow * c..(y0 + 1) * ow * c];
        let r1 = &src[y1 * ow * c..(y1 + 1) * ow * c];
        let dst = &mut out[y * ow * c..(y + 1) * ow * c];
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            for ch in 0..c {
                let a = r0[x0 * c + ch] as f32;
                let b = r0[x1 * c + ch] as f32;
                let cc = r1[x0 * c + ch] as f32;
                let d = r1[x1 * c + ch] as f32;
                let top = a + (b - a) * fx;
                let bot = cc + (d - cc) * fx;
                dst[x * c + ch] = (top + (bot - top) * fy) * K;
            }
        }
    }
}
