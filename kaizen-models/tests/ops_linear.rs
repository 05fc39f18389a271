//! The fused linear layer against candle's matmul + broadcast add: forward and all three gradients.

use candle_core::{Tensor, Var};
use kaizen_models::ops;

include!("ops_util.inc");

const TOL: f32 = 1e-5;

type LinFn = fn(&Tensor, &Tensor, &Tensor) -> candle_core::Result<Tensor>;

/// (y, dx, dw, db) of `sum(linear(x, w, b) * r)`.
fn run(bs: usize, i: usize, o: usize, f: LinFn, seed: u64) -> anyhow::Result<[Tensor; 4]> {
    let x = Var::from_tensor(&rand_tensor(seed, &[bs, i])?)?;
    let w = Var::from_tensor(&rand_tensor(seed + 1, &[o, i])?)?;
    let b = Var::from_tensor(&rand_tensor(seed + 2, &[o])?)?;
    let y = f(x.as_tensor(), w.as_tensor(), b.as_tensor())?;
    let r = rand_tensor(seed + 3, &[bs, o])?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let g = |v: &Var| grad_of(&grads, v.as_tensor());
    Ok([y, g(&x)?, g(&w)?, g(&b)?])
}

#[test]
fn fused_linear_matches_candle_ops() -> anyhow::Result<()> {
    // batch 1, odd sizes, more output rows than one piece per thread, a wide hidden layer, an
    // expanding layer (O >= 4 I: dx with its depth split over the pool) with an odd depth
    let shapes = [
        (3, 5, 41),
        (1, 3, 2),
        (5, 7, 9),
        (2, 300, 5),
        (64, 33, 130),
        (16, 128, 1000),
    ];
    for (k, &(bs, i, o)) in shapes.iter().enumerate() {
        let want = run(bs, i, o, ops::reference_linear, 11 * k as u64)?;
        let got = run(bs, i, o, ops::fast_linear, 11 * k as u64)?;
        for (name, (w, g)) in ["y", "dx", "dw", "db"].iter().zip(want.iter().zip(&got)) {
            let d = max_rel_diff(g, w)?;
            assert!(d < TOL, "({bs}, {i}, {o}) {name}: {d}");
        }
    }
    Ok(())
}

#[test]
fn linear_without_gradients_and_frozen_weights() -> anyhow::Result<()> {
    let x = rand_tensor(1, &[4, 6])?;
    let w = rand_tensor(2, &[3, 6])?;
    let b = rand_tensor(3, &[3])?;
    let y = ops::linear(&x, &w, &b)?;
    assert!(!y.track_op());
    assert!(max_rel_diff(&y, &ops::reference_linear(&x, &w, &b)?)? < TOL);
    // Only the input is trainable (a frozen head on top of a trained feature extractor).
    let xv = Var::from_tensor(&x)?;
    let grads = ops::linear(xv.as_tensor(), &w, &b)?.sum_all()?.backward()?;
    let dx = grads.get(xv.as_tensor()).cloned().expect("dx");
    let want = w.sum_keepdim(0)?.broadcast_as((4, 6))?.contiguous()?;
    assert!(max_rel_diff(&dx, &want)? < TOL);
    Ok(())
}

#[test]
fn linear_bad_shapes_are_errors() -> anyhow::Result<()> {
    let x = rand_tensor(1, &[4, 6])?;
    let w = rand_tensor(2, &[3, 5])?;
    let b = rand_tensor(3, &[3])?;
    let err = ops::fast_linear(&x, &w, &b).expect_err("mismatched inner dims must fail");
    assert!(err.to_string().contains("linear"), "{err}");
    Ok(())
}
