//! Colour operations on HWC f32 buffers in `[0, 1]`, following torchvision's tensor formulas.

use super::AugmentConfig;
use crate::rng::{shuffle, uniform};
use rand_chacha::ChaCha8Rng;

/// Luma weights used by torchvision's `rgb_to_grayscale`.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// One colour-jitter draw: the factors and the order in which the operations run.
#[derive(Clone, Debug, PartialEq)]
pub struct Jitter {
    /// Brightness factor (`x * b`).
    pub brightness: f32,
    /// Contrast factor (blend with the mean gray level).
    pub contrast: f32,
    /// Saturation factor (blend with the per-pixel gray); unused on 1 channel.
    pub saturation: f32,
    /// Hue shift in turns; unused on 1 channel.
    pub hue: f32,
    /// Operation order: 0 brightness, 1 contrast, 2 saturation, 3 hue (only 0 and 1 on 1 channel).
    pub order: Vec<u8>,
}

fn factor(rng: &mut ChaCha8Rng, x: f64) -> f32 {
    uniform(rng, (1.0 - x).max(0.0), 1.0 + x) as f32
}

impl Jitter {
    /// Draws the order (a seeded permutation) and then the factors, brightness, contrast, saturation, hue,
    /// like torchvision's `ColorJitter.get_params`. On 1 channel only brightness and contrast are drawn.
    pub fn sample(cfg: &AugmentConfig, channels: usize, rng: &mut ChaCha8Rng) -> Jitter {
        let mut order: Vec<u8> = if channels == 3 {
            vec![0, 1, 2, 3]
        } else {
            vec![0, 1]
        };
        shuffle(&mut order, rng);
        let brightness = factor(rng, cfg.brightness);
        let contrast = factor(rng, cfg.contrast);
        let (saturation, hue) = if channels == 3 {
            (
                factor(rng, cfg.saturation),
                uniform(rng, -cfg.hue, cfg.hue) as f32,
            )
        } else {
            (1.0, 0.0)
        };
        Jitter {
            brightness,
            contrast,
            saturation,
            hue,
            order,
        }
    }

    /// Applies the operations in `order` to `buf` (HWC, `channels` = 1 or 3).
    pub fn apply(&self, buf: &mut [f32], channels: usize) {
        for &op in &self.order {
            match op {
                0 => brightness(buf, self.brightness),
                1 => contrast(buf, channels, self.contrast),
                2 if channels == 3 => saturation(buf, self.saturation),
                3 if channels == 3 => hue(buf, self.hue),
                _ => {}
            }
        }
    }
}

/// `x <- clamp(x * f, 0, 1)`.
pub fn brightness(buf: &mut [f32], f: f32) {
    for v in buf {
        *v = (*v * f).clamp(0.0, 1.0);
    }
}

/// `x <- clamp(f * x + (1 - f) * m, 0, 1)`, `m` = mean gray level of the image.
pub fn contrast(buf: &mut [f32], channels: usize, f: f32) {
    let m = if channels == 3 {
        let s: f32 = buf
            .chunks_exact(3)
            .map(|p| LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2])
            .sum();
        s / (buf.len() / 3).max(1) as f32
    } else {
        buf.iter().sum::<f32>() / buf.len().max(1) as f32
    };
    let off = (1.0 - f) * m;
    for v in buf {
        *v = (f * *v + off).clamp(0.0, 1.0);
    }
}

/// RGB only: `x <- clamp(f * x + (1 - f) * gray(pixel), 0, 1)`.
pub fn saturation(buf: &mut [f32], f: f32) {
    for p in buf.chunks_exact_mut(3) {
        let g = (1.0 - f) * (LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2]);
        for v in p {
            *v = (f * *v + g).clamp(0.0, 1.0);
        }
    }
}

/// RGB only: rotate the hue by `h` turns: RGB → HSV (torchvision's `_rgb2hsv`), `H <- (H + h) mod 1`,
/// HSV → RGB with the sector-free form `c_n = V - V S clamp(min(k, 4 - k), 0, 1)`,
/// `k = (n + 6 H) mod 6`, `n = 5, 3, 1` for R, G, B (algebraically equal to torchvision's `_hsv2rgb`;
/// written without data-dependent branches so it vectorises). Gray pixels are unchanged.
pub fn hue(buf: &mut [f32], h: f32) {
    // Shift in [0, 1) so that one conditional subtraction wraps the sum.
    let shift = h - h.floor();
    for p in buf.chunks_exact_mut(3) {
        let (r, g, b) = (p[0], p[1], p[2]);
        let maxc = r.max(g).max(b);
        let minc = r.min(g).min(b);
        let cr = maxc - minc;
        let inv = if cr > 0.0 { 1.0 / cr } else { 0.0 };
        let s = if maxc > 0.0 { cr / maxc } else { 0.0 };
        let hr = (g - b) * inv;
        let hg = 2.0 + (b - r) * inv;
        let hb = 4.0 + (r - g) * inv;
        let hh = if maxc == r {
            hr
        } else if maxc == g {
            hg
        } else {
            hb
        };
        // hh in [-1, 5] sixths of a turn; wrap H + shift into [0, 6).
        let mut h6 = hh + 6.0 * shift;
        h6 = if h6 < 0.0 { h6 + 6.0 } else { h6 };
        h6 = if h6 >= 6.0 { h6 - 6.0 } else { h6 };
        let vs = maxc * s;
        let chan = |n: f32| {
            let mut k = n + h6;
            k = if k >= 6.0 { k - 6.0 } else { k };
            (maxc - vs * k.min(4.0 - k).clamp(0.0, 1.0)).clamp(0.0, 1.0)
        };
        p[0] = chan(5.0);
        p[1] = chan(3.0);
        p[2] = chan(1.0);
    }
}

/// RGB only: every pixel becomes its luma in all three channels.
pub fn grayscale(buf: &mut [f32]) {
    for p in buf.chunks_exact_mut(3) {
        let g = LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2];
        p[0] = g;
        p[1] = g;
        p[2] = g;
    }
}

/// PIL's solarize at threshold 128: `x <- 1 - x` where `x >= 128/255`.
pub fn solarize(buf: &mut [f32]) {
    const T: f32 = 128.0 / 255.0;
    for v in buf {
        if *v >= T {
            *v = 1.0 - *v;
        }
    }
}
