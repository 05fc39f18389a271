//! Criterion bench group `kernels`: the fast CPU kernels of `kaizen_models::ops` next to
//! the candle compositions they replace (`reference_*`), on ResNet-18 CIFAR layer shapes.
//!
//! Run: `cargo bench -p kaizen-benches --bench kernels` (add `-- conv` etc. to filter).
//! Each conv case reports forward alone and forward + backward (input and weight gradients).
use std::time::Duration;

use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kaizen_models::ops;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type ConvFn = fn(&Tensor, &Tensor, usize, usize) -> candle_core::Result<Tensor>;
type BnFn =
    fn(&Tensor, &Tensor, &Tensor, f64, bool) -> candle_core::Result<(Tensor, Tensor, Tensor)>;

fn rand_tensor(seed: u64, dims: &[usize]) -> anyhow::Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    Ok(Tensor::from_vec(v, dims, &Device::Cpu)?)
}

/// (label, batch, cin, cout, hw, k, stride, padding)
type ConvCase = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const CONVS: &[ConvCase] = &[
    ("w16-layer1-3x3", 32, 16, 16, 32, 3, 1, 1),
    ("w16-layer2-3x3s2", 32, 16, 32, 32, 3, 2, 1),
    ("w16-layer2-1x1s2", 32, 16, 32, 32, 1, 2, 0),
    ("w64-layer3-3x3", 32, 256, 256, 8, 3, 1, 1),
];

/// candle's element-wise ops (the loss around each kernel) use a spin-waiting pool that stalls on
/// shared 2-core machines; use one thread for them, as `kaizen bench` does (set before any op).
fn candle_elementwise_single_thread() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

fn conv(c: &mut Criterion) {
    candle_elementwise_single_thread();
    let mut g = c.benchmark_group("conv2d");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for &(label, b, cin, cout, hw, k, s, p) in CONVS {
        let Ok(x) = rand_tensor(1, &[b, cin, hw, hw]) else {
            continue;
        };
        let Ok(w) = rand_tensor(2, &[cout, cin, k, k]) else {
            continue;
        };
        let (Ok(xv), Ok(wv)) = (Var::from_tensor(&x), Var::from_tensor(&w)) else {
            continue;
        };
        let ho = (hw + 2 * p - k) / s + 1;
        // Backward through sum(y * r) so the output gradient is a dense tensor, as in training
        // (the gradient of a plain sum is a stride-0 broadcast whose copy would dominate).
        let Ok(r) = rand_tensor(9, &[b, cout, ho, ho]) else {
            continue;
        };
        g.throughput(Throughput::Elements(
            (2 * b * cout * ho * ho * cin * k * k) as u64,
        ));
        let impls: [(&str, ConvFn); 2] = [
            ("fast", ops::fast_conv2d),
            ("candle", ops::reference_conv2d),
        ];
        for (name, f) in impls {
            g.bench_function(BenchmarkId::new(format!("{label}/forward"), name), |bch| {
                bch.iter(|| f(&x, &w, s, p).map(|y| y.dims().len()))
            });
            g.bench_function(
                BenchmarkId::new(format!("{label}/forward+backward"), name),
                |bch| {
                    bch.iter(|| {
                        f(xv.as_tensor(), wv.as_tensor(), s, p)
                            .and_then(|y| (y * &r)?.sum_all()?.backward())
                            .is_ok()
                    })
                },
            );
        }
    }
    g.finish();
}

fn batch_norm(c: &mut Criterion) {
    candle_elementwise_single_thread();
    let mut g = c.benchmark_group("batch_norm");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let shapes: [(&str, &[usize]); 2] = [
        ("nchw-64x16x32x32", &[64, 16, 32, 32]),
        ("bc-64x4096", &[64, 4096]),
    ];
    for (label, dims) in shapes {
        let c_dim = dims[1];
        let (Ok(x), Ok(gm), Ok(bt)) = (
            rand_tensor(3, dims),
            rand_tensor(4, &[c_dim]),
            rand_tensor(5, &[c_dim]),
        ) else {
            continue;
        };
        let (Ok(xv), Ok(gv), Ok(bv)) = (
            Var::from_tensor(&x),
            Var::from_tensor(&gm),
            Var::from_tensor(&bt),
        ) else {
            continue;
        };
        g.throughput(Throughput::Elements(x.elem_count() as u64));
        let Ok(r) = rand_tensor(8, dims) else {
            continue;
        };
        let impls: [(&str, BnFn); 2] = [
            ("fast", ops::fast_batch_norm_train),
            ("candle", ops::reference_batch_norm_train),
        ];
        for (name, f) in impls {
            g.bench_function(
                BenchmarkId::new(format!("{label}/train-relu-forward+backward"), name),
                |bch| {
                    bch.iter(|| {
                        f(xv.as_tensor(), gv.as_tensor(), bv.as_tensor(), 1e-5, true)
                            .and_then(|(y, _, _)| (y * &r)?.sum_all()?.backward())
                            .is_ok()
                    })
                },
            );
        }
        let (Ok(m), Ok(v)) = (
            rand_tensor(6, &[c_dim]),
            rand_tensor(7, &[c_dim]).and_then(|t| Ok((t.abs()? + 0.5)?)),
        ) else {
            continue;
        };
        g.bench_function(
            BenchmarkId::new(format!("{label}/eval-relu"), "fast"),
            |bch| bch.iter(|| ops::fast_batch_norm_eval(&x, &gm, &bt, &m, &v, 1e-5, true).is_ok()),
        );
        g.bench_function(
            BenchmarkId::new(format!("{label}/eval-relu"), "candle"),
            |bch| {
                bch.iter(|| {
                    ops::reference_batch_norm_eval(&x, &gm, &bt, &m, &v, 1e-5, true).is_ok()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, conv, batch_norm);
criterion_main!(benches);
