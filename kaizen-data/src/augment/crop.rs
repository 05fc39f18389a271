//! Random resized crop (torchvision's `RandomResizedCrop.get_params`) and the bilinear resize, with an
//! optional horizontal flip folded into the resampling.

use crate::rng::uniform;
use crate::types::ImageShape;
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

/// One resampling tap: the two source positions and the weight of the second.
type Tap = (usize, usize, f32);

/// Source coordinate table for bilinear resampling of `src_len` pixels (starting at `offset`) onto
/// `dst_len` pixels: half-pixel centres, `s = (d + 0.5) * src_len / dst_len - 0.5`, clamped at 0.
fn table(offset: usize, src_len: usize, dst_len: usize) -> Vec<Tap> {
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

/// Resamples `rect` of `src` (HWC u8, `src_width` pixels a row, `shape.channels` channels) bilinearly onto the
/// full `shape` (the output size), optionally mirrored left-right, into `out` (HWC f32 in `[0, 1]`).
///
/// Where the rectangle is no larger than the output in both directions this is the 2-tap bilinear resize
/// (half-pixel centres). Where it is larger (a large source image shrunk to the model's size) each direction
/// that shrinks uses PIL's antialiased bilinear filter instead (a triangle of radius `scale` source pixels,
/// weights normalised), as torchvision does on PIL images, so that large images are not aliased.
pub fn resized_crop(
    src: &[u8],
    src_width: usize,
    shape: ImageShape,
    rect: Rect,
    flip: bool,
    out: &mut [f32],
) {
    if rect.h > shape.height || rect.w > shape.width {
        return antialiased(src, src_width, shape, rect, flip, out);
    }
    let ys = table(rect.i, rect.h, shape.height);
    let mut xs = table(rect.j, rect.w, shape.width);
    if flip {
        xs.reverse();
    }
    match shape.channels {
        1 => resample::<1>(src, src_width, &ys, &xs, out),
        3 => resample::<3>(src, src_width, &ys, &xs, out),
        c => resample_dyn(src, src_width, c, &ys, &xs, out),
    }
}

/// The taps of one output pixel along one direction: the first source position and the weights.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Filter taps of one direction: PIL's antialiased triangle filter when `src_len > dst_len`, else the
/// 2-tap table of [`table`].
fn taps(offset: usize, src_len: usize, dst_len: usize) -> Vec<Taps> {
    if src_len <= dst_len {
        return table(offset, src_len, dst_len)
            .into_iter()
            .map(|(s0, s1, f)| {
                if s1 == s0 {
                    Taps {
                        start: s0,
                        weights: vec![1.0],
                    }
                } else {
                    Taps {
                        start: s0,
                        weights: vec![1.0 - f, f],
                    }
                }
            })
            .collect();
    }
    let scale = src_len as f64 / dst_len as f64;
    let support = scale; // the triangle's radius 1, stretched by the shrink factor
    (0..dst_len)
        .map(|d| {
            let center = (d as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(src_len);
            let mut w: Vec<f64> = (lo..hi)
                .map(|x| (1.0 - ((x as f64 - center + 0.5) / scale).abs()).max(0.0))
                .collect();
            let sum: f64 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            Taps {
                start: offset + lo,
                weights: w.into_iter().map(|v| v as f32).collect(),
            }
        })
        .collect()
}

/// Two-pass separable resampling (horizontal, then vertical) with per-pixel tap lists.
fn antialiased(
    src: &[u8],
    src_width: usize,
    shape: ImageShape,
    rect: Rect,
    flip: bool,
    out: &mut [f32],
) {
    const K: f32 = 1.0 / 255.0;
    let c = shape.channels;
    let ys = taps(rect.i, rect.h, shape.height);
    let mut xs = taps(rect.j, rect.w, shape.width);
    if flip {
        xs.reverse();
    }
    let row = src_width * c;
    let dst_row = shape.width * c;
    // Pass 1: every source row of the rectangle, resampled horizontally.
    let mut mid = vec![0f32; rect.h * dst_row];
    for (r, m) in mid.chunks_exact_mut(dst_row).enumerate() {
        let s = &src[(rect.i + r) * row..(rect.i + r + 1) * row];
        for (d, t) in m.chunks_exact_mut(c).zip(&xs) {
            for (k, &wt) in t.weights.iter().enumerate() {
                let p = &s[(t.start + k) * c..(t.start + k + 1) * c];
                for ch in 0..c {
                    d[ch] += p[ch] as f32 * wt;
                }
            }
        }
    }
    // Pass 2: vertically, from the intermediate rows.
    for (o, t) in out.chunks_exact_mut(dst_row).zip(&ys) {
        o.iter_mut().for_each(|v| *v = 0.0);
        for (k, &wt) in t.weights.iter().enumerate() {
            let m = &mid[(t.start + k - rect.i) * dst_row..(t.start + k - rect.i + 1) * dst_row];
            for (v, &x) in o.iter_mut().zip(m) {
                *v += x * wt;
            }
        }
        o.iter_mut().for_each(|v| *v = (*v * K).clamp(0.0, 1.0));
    }
}

/// Bilinear resampling with a compile-time channel count (the hot path).
fn resample<const C: usize>(src: &[u8], width: usize, ys: &[Tap], xs: &[Tap], out: &mut [f32]) {
    const K: f32 = 1.0 / 255.0;
    let row = width * C;
    for (dst, &(y0, y1, fy)) in out.chunks_exact_mut(xs.len() * C).zip(ys) {
        let r0 = &src[y0 * row..(y0 + 1) * row];
        let r1 = &src[y1 * row..(y1 + 1) * row];
        for (d, &(x0, x1, fx)) in dst.chunks_exact_mut(C).zip(xs) {
            let a = &r0[x0 * C..x0 * C + C];
            let b = &r0[x1 * C..x1 * C + C];
            let c = &r1[x0 * C..x0 * C + C];
            let e = &r1[x1 * C..x1 * C + C];
            for ch in 0..C {
                let top = a[ch] as f32 + (b[ch] as f32 - a[ch] as f32) * fx;
                let bot = c[ch] as f32 + (e[ch] as f32 - c[ch] as f32) * fx;
                d[ch] = (top + (bot - top) * fy) * K;
            }
        }
    }
}

fn resample_dyn(src: &[u8], width: usize, ch_n: usize, ys: &[Tap], xs: &[Tap], out: &mut [f32]) {
    const K: f32 = 1.0 / 255.0;
    let row = width * ch_n;
    for (dst, &(y0, y1, fy)) in out.chunks_exact_mut(xs.len() * ch_n).zip(ys) {
        for (d, &(x0, x1, fx)) in dst.chunks_exact_mut(ch_n).zip(xs) {
            for (ch, o) in d.iter_mut().enumerate() {
                let px = |y: usize, x: usize| src[y * row + x * ch_n + ch] as f32;
                let top = px(y0, x0) + (px(y0, x1) - px(y0, x0)) * fx;
                let bot = px(y1, x0) + (px(y1, x1) - px(y1, x0)) * fx;
                *o = (top + (bot - top) * fy) * K;
            }
        }
    }
}

/// The evaluation crop of a `src_h x src_w` image for a `dst_h x dst_w` output: the centred rectangle that,
/// resized to the output, equals torchvision's `Resize` (shorter side to `size / crop_fraction`) followed by
/// `CenterCrop(size)`. `crop_fraction = 1` keeps as much of the image as the output's aspect ratio allows
/// (an image already of the output size is left as it is); ImageNet's recipe uses 0.875 (224 of 256).
pub fn centre_crop_rect(
    src_h: usize,
    src_w: usize,
    dst_h: usize,
    dst_w: usize,
    crop_fraction: f64,
) -> Rect {
    let s = (src_h as f64 / dst_h as f64).min(src_w as f64 / dst_w as f64) * crop_fraction;
    let h = ((dst_h as f64 * s).round() as usize).clamp(1, src_h);
    let w = ((dst_w as f64 * s).round() as usize).clamp(1, src_w);
    Rect {
        i: ((src_h - h) as f64 / 2.0).round() as usize,
        j: ((src_w - w) as f64 / 2.0).round() as usize,
        h,
        w,
    }
}
