//! Concurrency / determinism stress of the fast CPU kernels: forward and backward of `fast_conv2d`,
//! `fast_batch_norm_train` and `fast_batch_norm_eval` on shapes that hit every conv path (fixed-width
//! im2col at strides 1 and 2, general im2col, 1x1 pointwise, batch 1 with parallel gemm, odd sizes), run from
//! several OS threads at once while other threads spin. Every repetition must be bit-identical to the
//! first run, and the first run must agree with the `reference_*` candle compositions within 1e-4.
//! `KAIZEN_STRESS_ROUNDS=N` (default 4) makes each thread repeat the whole set N times (longer local runs).
mod common {
    include!("ops_util.inc");
}
use candle_core::{Tensor, Var};
use common::*;
use kaizen_models::ops;
use std::sync::atomic::{AtomicBool, Ordering};

const TOL: f32 = 1e-4;

/// (batch, cin, h, w, cout, k, stride, padding)
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

const CONV: &[Case] = &[
    (8, 3, 32, 32, 4, 3, 1, 1), // ResNet stem: fixed-width im2col, parallel over samples
    (1, 4, 17, 19, 5, 3, 1, 1), // batch 1 (parallel gemm), odd sizes, general im2col
    (3, 4, 16, 16, 8, 3, 2, 1), // stride 2 (im2col + col2im)
    (3, 5, 9, 9, 6, 1, 1, 0),   // 1x1 stride 1 (pointwise)
    (2, 4, 8, 8, 8, 1, 2, 0),   // 1x1 stride 2 (downsample)
    (5, 3, 7, 7, 3, 3, 1, 1),   // small stride 1 (explicit im2col), odd batch
    (1, 2, 6, 6, 3, 3, 2, 1),   // batch 1 stride 2
    (7, 8, 4, 4, 16, 3, 1, 1),  // tiny spatial, more channels
];

/// (dims of x, relu)
const BN: &[(&[usize], bool)] = &[
    (&[8, 4, 16, 16], true),
    (&[1, 5, 7, 9], false),
    (&[3, 7, 1, 1], true),
    (&[9, 130], false),
];

/// Host copy of a tensor.
fn host(t: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// y, dx, dw of one conv case under loss sum(y * r).
type ConvFn = fn(&Tensor, &Tensor, usize, usize) -> candle_core::Result<Tensor>;
fn conv_case(c: &Case, seed: u64, conv: ConvFn) -> anyhow::Result<Vec<Tensor>> {
    let &(b, cin, h, w, cout, k, s, p) = c;
    let x = Var::from_tensor(&rand_tensor(seed, &[b, cin, h, w])?)?;
    let wt = Var::from_tensor(&(rand_tensor(seed + 1, &[cout, cin, k, k])? * 0.5)?)?;
    let y = conv(x.as_tensor(), wt.as_tensor(), s, p)?;
    let r = rand_tensor(seed + 2, y.dims())?;
    let g = (&y * &r)?.sum_all()?.backward()?;
    let dx = g
        .get(x.as_tensor())
        .ok_or_else(|| anyhow::anyhow!("no dx"))?;
    let dw = g
        .get(wt.as_tensor())
        .ok_or_else(|| anyhow::anyhow!("no dw"))?;
    Ok(vec![y, dx.clone(), dw.clone()])
}

/// y, mean, var, dx, dgamma, dbeta of training BN and y of eval BN (given statistics).
type BnFn =
    fn(&Tensor, &Tensor, &Tensor, f64, bool) -> candle_core::Result<(Tensor, Tensor, Tensor)>;
type BnEvalFn =
    fn(&Tensor, &Tensor, &Tensor, &Tensor, &Tensor, f64, bool) -> candle_core::Result<Tensor>;
fn bn_case(
    dims: &[usize],
    relu: bool,
    seed: u64,
    train: BnFn,
    eval: BnEvalFn,
) -> anyhow::Result<Vec<Tensor>> {
    let c = dims[1];
    let x = Var::from_tensor(&(rand_tensor(seed, dims)? * 2.0)?)?;
    let gamma = Var::from_tensor(&(rand_tensor(seed + 1, &[c])? + 1.5)?)?;
    let beta = Var::from_tensor(&rand_tensor(seed + 2, &[c])?)?;
    let (y, mean, var) = train(
        x.as_tensor(),
        gamma.as_tensor(),
        beta.as_tensor(),
        1e-5,
        relu,
    )?;
    let r = rand_tensor(seed + 3, y.dims())?;
    let g = (&y * &r)?.sum_all()?.backward()?;
    let get = |v: &Var| {
        g.get(v.as_tensor())
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("missing gradient"))
    };
    let (dx, dg, db) = (get(&x)?, get(&gamma)?, get(&beta)?);
    let rm = rand_tensor(seed + 4, &[c])?;
    let rv = (rand_tensor(seed + 5, &[c])?.abs()? + 0.1)?;
    let xe = x.as_tensor().detach();
    let ye = eval(
        &xe,
        &gamma.as_tensor().detach(),
        &beta.as_tensor().detach(),
        &rm,
        &rv,
        1e-5,
        relu,
    )?;
    Ok(vec![y, mean, var, dx, dg, db, ye])
}

/// Every output of every case, fast kernels or reference.
fn all_outputs(fast: bool) -> anyhow::Result<Vec<Tensor>> {
    let mut out = Vec::new();
    for (i, c) in CONV.iter().enumerate() {
        let f: ConvFn = if fast {
            ops::fast_conv2d
        } else {
            ops::reference_conv2d
        };
        out.extend(conv_case(c, 100 + 10 * i as u64, f)?);
    }
    for (i, (dims, relu)) in BN.iter().enumerate() {
        let (t, e): (BnFn, BnEvalFn) = if fast {
            (ops::fast_batch_norm_train, ops::fast_batch_norm_eval)
        } else {
            (
                ops::reference_batch_norm_train,
                ops::reference_batch_norm_eval,
            )
        };
        out.extend(bn_case(dims, *relu, 500 + 10 * i as u64, t, e)?);
    }
    Ok(out)
}

fn all_host(fast: bool) -> anyhow::Result<Vec<Vec<f32>>> {
    all_outputs(fast)?.iter().map(host).collect()
}

#[test]
fn kernels_bit_identical_across_threads_and_close_to_reference() -> anyhow::Result<()> {
    let first = all_outputs(true)?;
    let reference = all_outputs(false)?;
    assert_eq!(first.len(), reference.len());
    for (i, (a, b)) in first.iter().zip(&reference).enumerate() {
        let d = max_rel_diff(a, b)?;
        assert!(
            d <= TOL,
            "output {i} {:?}: fast vs reference rel diff {d}",
            a.dims()
        );
    }
    let first: Vec<Vec<f32>> = first.iter().map(host).collect::<anyhow::Result<_>>()?;
    let rounds: usize = std::env::var("KAIZEN_STRESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);

    // Two spinning threads oversubscribe the cores so kernel threads get descheduled mid-task.
    let stop = AtomicBool::new(false);
    let mismatches = std::thread::scope(|s| -> anyhow::Result<Vec<String>> {
        for _ in 0..2 {
            s.spawn(|| {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            });
        }
        let workers: Vec<_> = (0..3)
            .map(|t| {
                let first = &first;
                s.spawn(move || -> anyhow::Result<Vec<String>> {
                    let mut bad = Vec::new();
                    for round in 0..rounds {
                        let got = all_host(true)?;
                        for (i, (g, f)) in got.iter().zip(first).enumerate() {
                            let same = g.len() == f.len()
                                && g.iter().zip(f).all(|(a, b)| a.to_bits() == b.to_bits());
                            if !same {
                                let d = g
                                    .iter()
                                    .zip(f)
                                    .map(|(a, b)| (a - b).abs())
                                    .fold(0f32, f32::max);
                                bad.push(format!(
                                    "thread {t} round {round} output {i}: max diff {d}"
                                ));
                            }
                        }
                    }
                    Ok(bad)
                })
            })
            .collect();
        let mut bad = Vec::new();
        for w in workers {
            let r = w.join().map_err(|_| anyhow::anyhow!("worker panicked"));
            match r.and_then(|x| x) {
                Ok(b) => bad.extend(b),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        Ok(bad)
    })?;
    assert!(
        mismatches.is_empty(),
        "non-reproducible outputs:\n{}",
        mismatches.join("\n")
    );
    Ok(())
}
