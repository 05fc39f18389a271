//! The fused training-mode batch norm (+ReLU) against the composition of candle ops.
mod common {
    include!("ops_util.inc");
}
use candle_core::{Tensor, Var};
use common::*;
use kaizen_models::ops;

const TOL: f32 = 1e-4;

type BnFn =
    fn(&Tensor, &Tensor, &Tensor, f64, bool) -> candle_core::Result<(Tensor, Tensor, Tensor)>;

/// Returns (y, mean, var, dx, dgamma, dbeta) after backprop of sum(y * r).
fn run(dims: &[usize], relu: bool, f: BnFn, seed: u64) -> anyhow::Result<Vec<Tensor>> {
    let c = dims[1];
    // Shifted, scaled input so mean and variance are far from 0 and 1.
    let x = Var::from_tensor(&((rand_tensor(seed, dims)? * 3.0)? + 0.7)?)?;
    let g = Var::from_tensor(&(rand_tensor(seed + 1, &[c])? + 1.0)?)?;
    let b = Var::from_tensor(&rand_tensor(seed + 2, &[c])?)?;
    let (y, m, v) = f(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5, relu)?;
    let r = rand_tensor(seed + 3, dims)?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let get = |t: &Tensor| {
        grads
            .get(t)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("missing gradient"))
    };
    Ok(vec![
        y.clone(),
        m,
        v,
        get(x.as_tensor())?,
        get(g.as_tensor())?,
        get(b.as_tensor())?,
    ])
}

#[test]
fn fused_bn_matches_reference_forward_stats_and_gradients() -> anyhow::Result<()> {
    let shapes: &[&[usize]] = &[
        &[2, 3, 5, 5],
        &[1, 5, 3, 7],
        &[4, 9, 2, 2],
        &[3, 10, 1, 1],
        &[2, 130],
        &[5, 1],
        // planes of 16+ values (full 16-lane blocks plus a tail), several samples per pool slot,
        // and one pass split over several element-wise chunks (> 64 Ki values)
        &[5, 3, 6, 7],
        &[9, 4, 16, 16],
        &[3, 2, 150, 151],
    ];
    let names = ["y", "mean", "var", "dx", "dgamma", "dbeta"];
    for (i, dims) in shapes.iter().enumerate() {
        for relu in [false, true] {
            let seed = 10 * i as u64 + relu as u64;
            let want = run(dims, relu, ops::reference_batch_norm_train, seed)?;
            let got = run(dims, relu, ops::fast_batch_norm_train, seed)?;
            for ((w, g), name) in want.iter().zip(&got).zip(names) {
                let d = max_rel_diff(g, w)?;
                assert!(d < TOL, "{dims:?} relu={relu} {name}: {d}");
            }
            if relu {
                assert!(
                    got[0]
                        .min_keepdim(0)?
                        .flatten_all()?
                        .min(0)?
                        .to_scalar::<f32>()?
                        >= 0.0
                );
            }
        }
    }
    Ok(())
}

/// A large mean with a tiny spread (x = 1000 + 0.01 u): the statistics must be centred, never
/// `E[x^2] - E[x]^2` (whose f32 squares of ~1e6 carry errors far above the variance of ~1e-5).
/// Small planes (two passes over the channel) and large planes (per-plane sums combined) alike.
#[test]
fn bn_statistics_survive_a_large_mean() -> anyhow::Result<()> {
    for dims in [[4usize, 3, 4, 4], [3, 2, 24, 24]] {
        let x = ((rand_tensor(7, &dims)? * 0.01)? + 1000.0)?;
        let c = dims[1];
        let ones = Tensor::ones(c, candle_core::DType::F32, x.device())?;
        let zeros = ones.zeros_like()?;
        let (_, m, v) = ops::fast_batch_norm_train(&x, &ones, &zeros, 1e-5, false)?;
        let (m, v) = (m.to_vec1::<f32>()?, v.to_vec1::<f32>()?);
        let xs = x.transpose(0, 1)?.flatten_from(1)?.to_vec2::<f32>()?;
        for ch in 0..c {
            let vals: Vec<f64> = xs[ch].iter().map(|&t| t as f64).collect();
            let mu = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|t| (t - mu) * (t - mu)).sum::<f64>() / vals.len() as f64;
            assert!(
                ((m[ch] as f64 - mu) / mu).abs() < 1e-6,
                "{dims:?} mean {ch}"
            );
            let rel = (v[ch] as f64 - var).abs() / var;
            assert!(rel < 2e-2, "{dims:?} var {ch}: {} vs {var} ({rel})", v[ch]);
        }
    }
    Ok(())
}

#[test]
fn public_batch_norm_train_returns_detached_stats() -> anyhow::Result<()> {
    let x = Var::from_tensor(&rand_tensor(1, &[3, 4, 2, 2])?)?;
    let g = Var::from_tensor(&rand_tensor(2, &[4])?)?;
    let b = Var::from_tensor(&rand_tensor(3, &[4])?)?;
    let (y, m, v) =
        ops::batch_norm_train(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5, false)?;
    assert!(!m.track_op() && !v.track_op());
    assert!(y.track_op());
    // Per-channel output statistics of a normalised tensor: mean beta, std |gamma|.
    let (y0, _, _) =
        ops::reference_batch_norm_train(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5, false)?;
    assert!(max_rel_diff(&y, &y0)? < TOL);
    Ok(())
}

#[test]
fn bad_shapes_are_errors_not_panics() -> anyhow::Result<()> {
    let x = rand_tensor(1, &[2, 3, 4])?;
    let g = rand_tensor(2, &[3])?;
    let err = ops::fast_batch_norm_train(&x, &g, &g, 1e-5, false)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected (B,C) or (B,C,H,W)"), "{err}");
    let x = rand_tensor(3, &[2, 4])?;
    let err = ops::fast_batch_norm_train(&x, &g, &g, 1e-5, true)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match"), "{err}");
    Ok(())
}

#[test]
fn fused_eval_bn_matches_reference() -> anyhow::Result<()> {
    for (i, dims) in [&[3usize, 6, 5, 3][..], &[4, 9]].iter().enumerate() {
        let c = dims[1];
        let x = ((rand_tensor(50 + i as u64, dims)? * 2.0)? + 0.3)?;
        let g = (rand_tensor(60, &[c])? + 1.0)?;
        let b = rand_tensor(61, &[c])?;
        let m = rand_tensor(62, &[c])?;
        let v = (rand_tensor(63, &[c])?.abs()? + 0.1)?;
        for relu in [false, true] {
            let want = ops::reference_batch_norm_eval(&x, &g, &b, &m, &v, 1e-5, relu)?;
            let got = ops::fast_batch_norm_eval(&x, &g, &b, &m, &v, 1e-5, relu)?;
            let d = max_rel_diff(&got, &want)?;
            assert!(d < TOL, "{dims:?} relu={relu}: {d}");
            let public = ops::batch_norm_eval(&x, &g, &b, &m, &v, 1e-5, relu)?;
            assert!(max_rel_diff(&public, &want)? < TOL);
        }
    }
    Ok(())
}

#[test]
fn eval_bn_keeps_gradients_when_an_input_is_trainable() -> anyhow::Result<()> {
    let x = Var::from_tensor(&rand_tensor(70, &[2, 3, 2, 2])?)?;
    let g = rand_tensor(71, &[3])?;
    let b = rand_tensor(72, &[3])?;
    let m = rand_tensor(73, &[3])?;
    let v = (rand_tensor(74, &[3])?.abs()? + 0.5)?;
    let y = ops::batch_norm_eval(x.as_tensor(), &g, &b, &m, &v, 1e-5, false)?;
    let grads = y.sum_all()?.backward()?;
    let dx = grads
        .get(x.as_tensor())
        .ok_or_else(|| anyhow::anyhow!("no dx"))?;
    // d(sum y)/dx = gamma / sqrt(var + eps), broadcast over the batch and spatial positions.
    let want = (g / (v + 1e-5)?.sqrt()?)?
        .reshape((1, 3, 1, 1))?
        .broadcast_as((2, 3, 2, 2))?;
    assert!(max_rel_diff(dx, &want.contiguous()?)? < TOL);
    Ok(())
}
