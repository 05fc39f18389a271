//! Raw gemm throughput of the `gemm` crate on the shapes and operand layouts the convolution uses.
//! `cargo run --release -p kaizen-models --example gemm_probe`
use kaizen_models::ops::raw::{sgemm, Mat};
use std::time::Instant;

fn probe(label: &str, m: usize, n: usize, k: usize, reps: usize, a_t: bool, b_t: bool) {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0f32; m * n];
    let am = if a_t {
        Mat {
            data: &a,
            rs: 1,
            cs: m,
        }
    } else {
        Mat {
            data: &a,
            rs: k,
            cs: 1,
        }
    };
    let bm = if b_t {
        Mat {
            data: &b,
            rs: 1,
            cs: k,
        }
    } else {
        Mat {
            data: &b,
            rs: n,
            cs: 1,
        }
    };
    let run = |c: &mut [f32]| {
        for i in 0..reps {
            sgemm("probe", m, n, k, c, n, i > 0, am, bm, 1).expect("gemm");
        }
    };
    run(&mut c);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let s = Instant::now();
        run(&mut c);
        best = best.min(s.elapsed().as_secs_f64());
    }
    let gf = 2.0 * (m * n * k * reps) as f64 / best / 1e9;
    println!(
        "{label:<10} m{m} n{n} k{k} A{} B{} x{reps}: {:.2} ms {gf:.1} GF/s",
        if a_t { "t" } else { "n" },
        if b_t { "t" } else { "n" },
        best * 1e3
    );
}

fn main() {
    probe("square", 1024, 1024, 1024, 1, false, false);
    probe("square", 2048, 2048, 2048, 1, false, false);
    for &(m, n, k) in &[
        (16usize, 1024usize, 144usize),
        (32, 256, 288),
        (64, 64, 576),
        (128, 16, 1152),
    ] {
        probe("fwd", m, n, k, 64, false, false);
        probe("fwd W^T", m, n, k, 64, true, false);
        probe("fwd x8", m, n * 8, k, 8, false, false);
        probe("fwd x8 W^T", m, n * 8, k, 8, true, false);
        probe("dx W^T", k, n, m, 64, true, false);
        probe("dW", m, k, n, 64, false, true);
        probe("dW^T", k, m, n, 64, false, true);
    }
}
