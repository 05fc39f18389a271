//! Criterion bench group `losses`: every `kaizen_core::loss` function, forward and forward+backward,
//! on CPU at the sizes the trainer uses: batch 256 x dim 256 (SSL and distillation losses),
//! 256 x 100 classes (classifier terms), and MoCo's queue of 65536 x 256 keys at batch 256.
//!
//! Names: `cpu_loss_fwd/<loss>/<N>x<D>` and `cpu_loss_fwd_bwd/<loss>/<N>x<D>`; throughput is the batch
//! size. Inputs are seeded (ChaCha8) standard normals. Forward+backward builds the graph on `Var`
//! inputs and runs `backward()`; CPU candle ops are synchronous, so no explicit device sync is needed.
//!
//! Run: `cargo bench -p kaizen-benches --bench losses` (about 2 minutes on 2 cores).
//! PyTorch CPU counterpart of the same calls: `benches/torch_losses.py`.

use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kaizen_core::loss;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

const N: usize = 256;
const D: usize = 256;
const CLASSES: usize = 100;
const QUEUE: usize = 65536;

fn randn(rng: &mut ChaCha8Rng, n: usize, d: usize) -> Tensor {
    let v: Vec<f32> = (0..n * d)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random(), rng.random());
            ((-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Tensor::from_vec(v, (n, d), &Device::Cpu).expect("host tensor")
}

type LossFn = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor>>;

/// (name, shape label, first input, loss of the first input with the other inputs fixed).
fn cases() -> Vec<(&'static str, String, Tensor, LossFn)> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let ssl = format!("{N}x{D}");
    let cls = format!("{N}x{CLASSES}");
    let x = |rng: &mut ChaCha8Rng| randn(rng, N, D);
    let (z, o1, o2, p2) = (x(&mut rng), x(&mut rng), x(&mut rng), x(&mut rng));
    let queue = randn(&mut rng, QUEUE, D);
    let target_logits = randn(&mut rng, N, CLASSES);
    // Every fourth sample unlabelled, as in a partly labelled batch.
    let labels: Vec<i64> = (0..N as i64)
        .map(|i| if i % 4 == 3 { -1 } else { i % CLASSES as i64 })
        .collect();
    let labels = Tensor::from_vec(labels, (N,), &Device::Cpu).expect("labels");
    let (z_a, z_b, z_c, z_d, z_e, z_f) = (
        z.clone(),
        z.clone(),
        z.clone(),
        z.clone(),
        z.clone(),
        z.clone(),
    );
    vec![
        (
            "byol",
            ssl.clone(),
            x(&mut rng),
            Box::new(move |p| loss::byol(p, &z_a)),
        ),
        (
            "simsiam",
            ssl.clone(),
            x(&mut rng),
            Box::new(move |p| loss::simsiam(p, &z_b)),
        ),
        (
            "mse",
            ssl.clone(),
            x(&mut rng),
            Box::new(move |p| loss::mse(p, &z_c)),
        ),
        (
            "nt_xent",
            ssl.clone(),
            x(&mut rng),
            Box::new(move |p| loss::nt_xent(p, &z_d, 0.1)),
        ),
        (
            "vicreg",
            ssl.clone(),
            x(&mut rng),
            Box::new(move |p| loss::vicreg(p, &z_e, 25.0, 25.0, 1.0)),
        ),
        (
            "barlow_twins",
            ssl.clone(),
            x(&mut rng),
            Box::new(move |p| loss::barlow_twins(p, &z_f, 0.0051, 0.1)),
        ),
        (
            "contrastive_distill",
            ssl.clone(),
            x(&mut rng),
            Box::new(move |p| loss::contrastive_distill(p, &p2, &o1, &o2, 0.2)),
        ),
        (
            "info_nce_queue",
            format!("{N}x{D}+q{QUEUE}"),
            x(&mut rng),
            Box::new(move |q| loss::info_nce_queue(q, &z, &queue, 0.2)),
        ),
        (
            "soft_ce",
            cls.clone(),
            randn(&mut rng, N, CLASSES),
            Box::new(move |l| loss::soft_ce(l, &target_logits, 1.0)),
        ),
        (
            "masked_ce",
            cls,
            randn(&mut rng, N, CLASSES),
            Box::new(move |l| loss::masked_ce(l, &labels)),
        ),
    ]
}

fn bench_losses(c: &mut Criterion) {
    let cases = cases();
    let mut fwd = c.benchmark_group("cpu_loss_fwd");
    fwd.throughput(Throughput::Elements(N as u64));
    for (name, shape, x, f) in &cases {
        fwd.bench_with_input(BenchmarkId::new(*name, shape), x, |b, x| {
            b.iter(|| f(x).expect("loss"));
        });
    }
    fwd.finish();

    let mut bwd = c.benchmark_group("cpu_loss_fwd_bwd");
    bwd.throughput(Throughput::Elements(N as u64));
    for (name, shape, x, f) in &cases {
        let var = Var::from_tensor(x).expect("var");
        bwd.bench_with_input(BenchmarkId::new(*name, shape), &var, |b, var| {
            b.iter(|| {
                let l = f(var.as_tensor()).expect("loss");
                l.backward().expect("backward")
            });
        });
    }
    bwd.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_losses
}
criterion_main!(benches);
