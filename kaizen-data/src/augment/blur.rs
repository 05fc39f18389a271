//! Gaussian blur (BYOL / solo-learn's ImageNet recipe: per-view probability, sigma uniform in `[min, max]`) on HWC
//! f32 buffers: a separable, normalised Gaussian kernel of radius `ceil(3 sigma)` (at most the image's size), with
//! edge pixels repeated at the borders.

/// The normalised 1-D Gaussian weights for `sigma` (> 0), radius `ceil(3 sigma)` capped at `max_radius`.
pub fn kernel(sigma: f32, max_radius: usize) -> Vec<f32> {
    let r = ((3.0 * sigma).ceil() as usize).min(max_radius);
    let mut k: Vec<f32> = (0..=2 * r)
        .map(|i| {
            let x = i as f32 - r as f32;
            (-(x * x) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Blurs `buf` (HWC, `h x w x c`) in place with a Gaussian of `sigma` pixels: rows, then columns.
pub fn gaussian_blur(buf: &mut [f32], h: usize, w: usize, c: usize, sigma: f32) {
    let k = kernel(sigma, h.max(w).saturating_sub(1));
    if k.len() < 3 {
        return;
    }
    let mut tmp = vec![0f32; buf.len()];
    pass(buf, &mut tmp, h, w, c, &k, true);
    pass(&tmp, buf, h, w, c, &k, false);
}

/// One 1-D pass of `k` over `src` into `dst`, along x (`along_x`) or y, repeating the edge pixels.
fn pass(src: &[f32], dst: &mut [f32], h: usize, w: usize, c: usize, k: &[f32], along_x: bool) {
    let r = (k.len() / 2) as isize;
    let (n, step) = if along_x { (w, c) } else { (h, w * c) };
    for y in 0..h {
        for x in 0..w {
            let pos = if along_x { x } else { y } as isize;
            let base = (y * w + x) * c - pos as usize * step;
            for ch in 0..c {
                let mut acc = 0f32;
                for (t, &kv) in k.iter().enumerate() {
                    let at = (pos + t as isize - r).clamp(0, n as isize - 1) as usize;
                    acc += kv * src[base + at * step + ch];
                }
                dst[(y * w + x) * c + ch] = acc;
            }
        }
    }
}
