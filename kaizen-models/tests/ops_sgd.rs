//! The fused in-place SGD-momentum update against the same formula in candle ops.
mod common {
    include!("ops_util.inc");
}
use candle_core::{Tensor, Var};
use common::*;
use kaizen_models::ops;

#[test]
fn fused_sgd_matches_candle_ops_over_three_steps() -> anyhow::Result<()> {
    let dims = [70_000usize + 3]; // more than one parallel piece, odd length
    let (lr, m, wd, s) = (0.05, 0.9, 5e-4, 0.7);
    let p = Var::from_tensor(&rand_tensor(1, &dims)?)?;
    let buf = Tensor::zeros(
        &dims[..],
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )?;
    let mut p_ref = p.as_tensor().copy()?;
    let mut buf_ref: Option<Tensor> = None;
    assert!(ops::sgd_fused_available(p.as_tensor()));
    for step in 0..3u64 {
        let g = rand_tensor(10 + step, &dims)?;
        ops::sgd_momentum_update(p.as_tensor(), &g, &buf, lr, m, wd, s)?;
        // torch.optim.SGD: d = s (g + wd p); buf = d (first), else m buf + d; p -= lr buf.
        let d = ((&g + (&p_ref * wd)?)? * s)?;
        let b = match &buf_ref {
            None => d,
            Some(b) => ((b * m)? + d)?,
        };
        p_ref = (&p_ref - (&b * lr)?)?;
        buf_ref = Some(b);
        assert!(max_rel_diff(p.as_tensor(), &p_ref)? < 1e-6, "step {step}");
        assert!(
            max_rel_diff(
                &buf,
                buf_ref.as_ref().ok_or_else(|| anyhow::anyhow!("no buf"))?
            )? < 1e-6
        );
    }
    Ok(())
}

#[test]
fn fused_sgd_rejects_mismatched_shapes() -> anyhow::Result<()> {
    let p = rand_tensor(1, &[4, 3])?;
    let g = rand_tensor(2, &[3, 4])?;
    let b = rand_tensor(3, &[4, 3])?;
    let err = ops::sgd_momentum_update(&p, &g, &b, 0.1, 0.9, 0.0, 1.0)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("must have one shape"), "{err}");
    let non_contig = rand_tensor(4, &[3, 4])?.t()?;
    let err = ops::sgd_momentum_update(&non_contig, &p, &b, 0.1, 0.9, 0.0, 1.0)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("contiguous"), "{err}");
    Ok(())
}
