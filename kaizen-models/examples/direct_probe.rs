//! The direct AVX-512 convolution kernels (`ops/direct.rs`) against the layer's kernels on ResNet-18's
//! stride-1 3x3 shapes: forward and weight gradient, time (best of REPS, 2 threads by default) and the
//! largest difference. `conv_fwd` / `conv_bwd_weight` already route to the direct kernels where
//! preferred, so the "layer" column is what a training step runs.
//!
//! `cargo run --release -p kaizen-models --example direct_probe -- [batch] [reps]`
use kaizen_models::ops::raw::{
    conv_bwd_weight, conv_fwd, conv_same_bwd_weight, conv_same_fwd, ConvGeom,
};
use std::time::Instant;
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::MAX, f64::min)
}
fn main() {
    kaizen_models::ops::tune_allocator();
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|v| v.parse().expect("usage: direct_probe [batch] [reps]"))
        .collect();
    let (b, reps) = (
        a.first().copied().unwrap_or(64),
        a.get(1).copied().unwrap_or(5),
    );
    for &(c, co, hw) in &[
        (3usize, 16usize, 32usize),
        (16, 16, 32),
        (32, 32, 16),
        (64, 64, 8),
        (128, 128, 4),
        (64, 64, 32),
        (128, 128, 16),
        (256, 256, 8),
        (512, 512, 4),
    ] {
        let g = ConvGeom::new(&[b, c, hw, hw], &[co, c, 3, 3], 1, 1).unwrap();
        let x = data(b * c * hw * hw, 1);
        let w = data(co * c * 9, 2);
        let y0 = conv_fwd(&g, &x, &w).unwrap();
        let y1 = conv_same_fwd(&g, &x, &w).unwrap();
        let md = y0
            .iter()
            .zip(&y1)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        let t0 = best(reps, || {
            std::hint::black_box(conv_fwd(&g, &x, &w).unwrap());
        });
        let t1 = best(reps, || {
            std::hint::black_box(conv_same_fwd(&g, &x, &w).unwrap());
        });
        let gf = (b * co * hw * hw * c * 9 * 2) as f64 / 1e6;
        println!("{c:>4}->{co:<4} {hw:>2}x{hw:<2}  layer {t0:7.2} ms ({:5.1} GF/s)  direct {t1:7.2} ms ({:5.1} GF/s)  maxdiff {md:.2e}", gf / t0, gf / t1);
        let dy = data(b * co * hw * hw, 3);
        let d0 = conv_bwd_weight(&g, &x, &dy).unwrap();
        let d1 = conv_same_bwd_weight(&g, &x, &dy).unwrap();
        let md = d0
            .iter()
            .zip(&d1)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        let mx = d0.iter().map(|p| p.abs()).fold(0f32, f32::max);
        let t0 = best(reps, || {
            std::hint::black_box(conv_bwd_weight(&g, &x, &dy).unwrap());
        });
        let t1 = best(reps, || {
            std::hint::black_box(conv_same_bwd_weight(&g, &x, &dy).unwrap());
        });
        println!("   dw           layer {t0:7.2} ms ({:5.1} GF/s)  direct {t1:7.2} ms ({:5.1} GF/s)  maxdiff {md:.2e} of {mx:.1}", gf / t0, gf / t1);
    }
}
