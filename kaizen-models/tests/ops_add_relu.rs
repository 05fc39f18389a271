//! The fused residual join `relu(a + b)` against candle's add + ReLU: forward and both gradients.

use candle_core::{Tensor, Var};
use kaizen_models::ops;

include!("ops_util.inc");

const TOL: f32 = 1e-6;

type JoinFn = fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>;

/// (y, da, db) of `sum(join(a, b) * r)`.
fn run(dims: &[usize], f: JoinFn, seed: u64) -> anyhow::Result<[Tensor; 3]> {
    let a = Var::from_tensor(&rand_tensor(seed, dims)?)?;
    let b = Var::from_tensor(&rand_tensor(seed + 1, dims)?)?;
    let r = rand_tensor(seed + 2, dims)?;
    let y = f(a.as_tensor(), b.as_tensor())?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let g = |v: &Var| grad_of(&grads, v.as_tensor());
    Ok([y, g(&a)?, g(&b)?])
}

#[test]
fn fused_add_relu_matches_candle_ops() -> anyhow::Result<()> {
    // 1 element, odd sizes, and more than one 64 Ki-value parallel chunk.
    let shapes: &[&[usize]] = &[&[1], &[3, 5, 7, 2], &[2, 16, 32, 33], &[4, 9]];
    for (i, dims) in shapes.iter().enumerate() {
        let want = run(dims, ops::reference_add_relu, 7 * i as u64)?;
        let got = run(dims, ops::fast_add_relu, 7 * i as u64)?;
        for (name, (w, g)) in ["y", "da", "db"].iter().zip(want.iter().zip(&got)) {
            let d = max_rel_diff(g, w)?;
            assert!(d < TOL, "{dims:?} {name}: {d}");
        }
        // Half the inputs are negative sums, so the gate really cuts: some gradients are zero.
        let zeros = got[1]
            .eq(0f32)?
            .to_dtype(candle_core::DType::F32)?
            .sum_all()?;
        if dims.iter().product::<usize>() > 16 {
            assert!(
                zeros.to_scalar::<f32>()? > 0.0,
                "{dims:?}: no gated gradient"
            );
        }
    }
    Ok(())
}

#[test]
fn add_relu_shape_mismatch_is_an_error() -> anyhow::Result<()> {
    let a = rand_tensor(1, &[2, 3])?;
    let b = rand_tensor(2, &[3, 2])?;
    let err = ops::fast_add_relu(&a, &b).expect_err("mismatched shapes must fail");
    assert!(err.to_string().contains("shapes differ"), "{err}");
    Ok(())
}

#[test]
fn add_relu_without_gradients_has_no_graph() -> anyhow::Result<()> {
    let a = rand_tensor(3, &[2, 4, 3, 3])?;
    let b = rand_tensor(4, &[2, 4, 3, 3])?;
    let y = ops::add_relu(&a, &b)?;
    assert!(!y.track_op());
    let want = ops::reference_add_relu(&a, &b)?;
    assert!(max_rel_diff(&y, &want)? < TOL);
    Ok(())
}
