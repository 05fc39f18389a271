//! The optimiser's candle-op path (used when the fused kernel does not apply: fast kernels disabled, non-f32, GPU)
//! against the same hand-computed values as `optim.rs` and against the fused path.
//! Its own test binary with a single test, because `ops::set_fast_kernels` is process-wide.

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use kaizen_models::ops::set_fast_kernels;
use kaizen_models::optim::{OptimConfig, Optimizer, OptimizerKind, ParamGroup};

fn var(v: &[f32], shape: &[usize]) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::from_vec(
        v.to_vec(),
        shape,
        &Device::Cpu,
    )?)?)
}

/// loss = sum(p * c): the gradient of p is exactly c.
fn step(opt: &mut Optimizer, pairs: &[(&Var, &[f32])], lr: f64) -> Result<()> {
    let mut loss = Tensor::new(0f32, &Device::Cpu)?;
    for (p, c) in pairs {
        let c = Tensor::from_vec(c.to_vec(), p.dims(), &Device::Cpu)?;
        loss = (loss + (p.as_tensor() * c)?.sum_all()?)?;
    }
    opt.step(&loss.backward()?, lr)?;
    Ok(())
}

fn vals(v: &Var) -> Result<Vec<f32>> {
    Ok(v.flatten_all()?.to_vec1::<f32>()?)
}

fn close(a: &[f32], b: &[f32]) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
}

fn run(kind: OptimizerKind, w: &Var, b: &Var) -> Result<Optimizer> {
    Ok(Optimizer::new(
        OptimConfig {
            kind,
            momentum: 0.9,
            weight_decay: 0.1,
            lars_eta: 0.02,
            lars_clip: true,
            exclude_bias_n_norm: true,
        },
        vec![ParamGroup {
            name: "g".into(),
            vars: vec![("l.weight".into(), w.clone()), ("l.bias".into(), b.clone())],
            lr_scale: 1.0,
            weight_decay: 0.1,
            lars: true,
        }],
    ))
}

#[test]
fn candle_op_path_matches_hand_values_and_fused_path() -> Result<()> {
    let mut results = Vec::new();
    for fast in [false, true] {
        set_fast_kernels(fast);
        // SGD with weight decay, two steps: d1 = [0.5, -1] + 0.1 * [1, 2] = [0.6, -0.8] -> p1 = [0.94, 2.08];
        // d2 = [0.5, -1] + 0.1 * p1 = [0.594, -0.792], buf2 = 0.9 * [0.6, -0.8] + d2 = [1.134, -1.512]
        // -> p2 = [0.94 - 0.1134, 2.08 + 0.1512]. Bias excluded: 1 - 0.05, then buf = 0.95 -> 0.95 - 0.095.
        let (w, b) = (var(&[1.0, 2.0], &[1, 2])?, var(&[1.0], &[1])?);
        let mut opt = run(OptimizerKind::Sgd, &w, &b)?;
        step(&mut opt, &[(&w, &[0.5, -1.0]), (&b, &[0.5])], 0.1)?;
        close(&vals(&w)?, &[0.94, 2.08]);
        step(&mut opt, &[(&w, &[0.5, -1.0]), (&b, &[0.5])], 0.1)?;
        close(&vals(&w)?, &[0.8266, 2.2312]);
        close(&vals(&b)?, &[0.855]);
        // LARS with clip (see optim.rs): p = [3, 4] -> [2.94, 3.92]
        let (lw, lb) = (var(&[3.0, 4.0], &[1, 2])?, var(&[2.0], &[1])?);
        let mut lopt = run(OptimizerKind::Lars, &lw, &lb)?;
        step(&mut lopt, &[(&lw, &[0.6, 0.8]), (&lb, &[0.5])], 0.1)?;
        close(&vals(&lw)?, &[2.94, 3.92]);
        close(&vals(&lb)?, &[1.95]);
        let state: Vec<(String, Vec<f32>)> = opt
            .state()
            .into_iter()
            .map(|(n, t)| Ok((n, t.flatten_all()?.to_vec1::<f32>()?)))
            .collect::<Result<_>>()?;
        results.push((vals(&w)?, vals(&lw)?, state));
    }
    set_fast_kernels(true);
    // both paths produce the same parameters and momentum buffers (names and values)
    let (a, b) = (&results[0], &results[1]);
    close(&a.0, &b.0);
    close(&a.1, &b.1);
    assert_eq!(
        a.2.iter().map(|s| &s.0).collect::<Vec<_>>(),
        b.2.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    for (x, y) in a.2.iter().zip(&b.2) {
        close(&x.1, &y.1);
    }
    Ok(())
}
