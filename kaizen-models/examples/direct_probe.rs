//! The direct AVX-512 convolution kernels (`ops/direct.rs`) against the layer's kernels on ResNet-18's
//! stride-1 3x3 shapes: forward (direct and Winograd) and weight gradient, time (best of REPS, 2 threads by default) and the
//! largest difference. `conv_fwd` / `conv_bwd_weight` already route to the direct kernels where
//! preferred, so the "layer" column is what a training step runs.
//!
//! `cargo run --release -p kaizen-models --example direct_probe -- [batch] [reps]`
use kaizen_models::ops::raw::{
    conv3x3_fwd, conv_bwd_weight, conv_fwd, conv_same_bwd_weight, conv_same_fwd, ConvGeom,
};
include!("probe_util.inc");

/// Times the kernel `f0` (named `n0`) and `f1` (`n1`); prints both with their GFLOP/s and the
/// largest difference of their outputs.
fn compare(
    label: &str,
    [n0, n1]: [&str; 2],
    mflop: f64,
    reps: usize,
    f0: impl Fn() -> Vec<f32>,
    f1: impl Fn() -> Vec<f32>,
) {
    let (v0, v1) = (f0(), f1());
    let md = v0
        .iter()
        .zip(&v1)
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    let mx = v0.iter().map(|p| p.abs()).fold(0f32, f32::max);
    let t0 = best_ms(reps, || {
        std::hint::black_box(f0());
    });
    let t1 = best_ms(reps, || {
        std::hint::black_box(f1());
    });
    println!(
        "{label:<18} {n0:<8} {t0:7.2} ms ({:5.1} GF/s)  {n1:<8} {t1:7.2} ms ({:5.1} GF/s)  maxdiff {md:.2e} of {mx:.1}",
        mflop / t0,
        mflop / t1
    );
}

fn main() {
    kaizen_models::ops::tune_allocator();
    let [b, reps] = usize_args("direct_probe [batch] [reps]", [64, 5]);
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
        let dy = data(b * co * hw * hw, 3);
        let mflop = (b * co * hw * hw * c * 9 * 2) as f64 / 1e6;
        let fwd = format!("{c:>4}->{co:<4} {hw:>2}x{hw:<2}");
        compare(
            &fwd,
            ["layer", "direct"],
            mflop,
            reps,
            || conv_fwd(&g, &x, &w).unwrap(),
            || conv_same_fwd(&g, &x, &w).unwrap(),
        );
        compare(
            "   winograd",
            ["direct", "winograd"],
            mflop,
            reps,
            || conv_same_fwd(&g, &x, &w).unwrap(),
            || conv3x3_fwd(&g, &x, &w).unwrap(),
        );
        compare(
            "   dw",
            ["layer", "direct"],
            mflop,
            reps,
            || conv_bwd_weight(&g, &x, &dy).unwrap(),
            || conv_same_bwd_weight(&g, &x, &dy).unwrap(),
        );
    }
}
