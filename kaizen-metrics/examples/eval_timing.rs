//! Times the kNN and linear-probe protocols at CIFAR-like sizes on seeded pseudo-random features (CPU):
//! `cargo run --release -p kaizen-metrics --example eval_timing -- [bank] [test] [dim] [classes]`
//! (defaults 10000 2000 512 100).

use candle_core::{Device, Tensor};
use kaizen_metrics::{knn_predict, KnnConfig, LinearProbe, LinearProbeConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// `n` rows: the class mean (row `c` of `means`, `(classes, d)` flattened) plus uniform noise.
fn features(
    n: usize,
    d: usize,
    classes: usize,
    means: &[f32],
    rng: &mut ChaCha8Rng,
) -> Result<(Tensor, Vec<u16>), Box<dyn std::error::Error>> {
    let mut flat = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % classes;
        labels.push(c as u16);
        for k in 0..d {
            flat.push(means[c * d + k] + rng.random_range(-6.0f32..6.0));
        }
    }
    Ok((Tensor::from_vec(flat, (n, d), &Device::Cpu)?, labels))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map_or(Ok(default), |s| s.parse::<usize>())
    };
    let (m, n, d, c) = (arg(1, 10000)?, arg(2, 2000)?, arg(3, 512)?, arg(4, 100)?);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // Class means on random directions; noise larger than the means, so the task is not trivial.
    let means: Vec<f32> = (0..c * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let (bank, bank_labels) = features(m, d, c, &means, &mut rng)?;
    let (test, test_labels) = features(n, d, c, &means, &mut rng)?;
    let acc =
        |p: &[u16]| p.iter().zip(&test_labels).filter(|(a, b)| a == b).count() as f64 / n as f64;

    let t0 = Instant::now();
    let preds = knn_predict(&bank, &bank_labels, &test, c, &KnnConfig::default())?;
    println!(
        "knn: bank {m} x {d}, test {n}, {c} classes: {:.2} s, accuracy {:.3}",
        t0.elapsed().as_secs_f64(),
        acc(&preds)
    );

    let cfg = LinearProbeConfig::default();
    let t0 = Instant::now();
    let probe = LinearProbe::train(&bank, &bank_labels, c, &cfg)?;
    let train_s = t0.elapsed().as_secs_f64();
    let preds = probe.predict(&test)?;
    println!(
        "linear probe: {m} x {d}, {c} classes, {} epochs, batch {}: train {train_s:.2} s, accuracy {:.3}",
        cfg.epochs,
        cfg.batch_size,
        acc(&preds)
    );
    Ok(())
}
