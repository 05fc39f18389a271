//! Optimiser steps and the learning-rate schedule against hand-computed values.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use kaizen_models::optim::{OptimConfig, Optimizer, OptimizerKind, ParamGroup, WarmupCosine};
use kaizen_models::ModelError;

fn var(v: &[f32], shape: &[usize]) -> Result<Var> {
    Ok(Var::from_tensor(&Tensor::from_vec(
        v.to_vec(),
        shape,
        &Device::Cpu,
    )?)?)
}

/// loss = sum(p * c) for each (p, c): the gradient of p is exactly c.
fn grads(pairs: &[(&Var, &[f32])]) -> Result<candle_core::backprop::GradStore> {
    let mut loss = Tensor::new(0f32, &Device::Cpu)?;
    for (p, c) in pairs {
        let c = Tensor::from_vec(c.to_vec(), p.dims(), &Device::Cpu)?;
        loss = (loss + (p.as_tensor() * c)?.sum_all()?)?;
    }
    Ok(loss.backward()?)
}

fn vals(v: &Var) -> Result<Vec<f32>> {
    Ok(v.flatten_all()?.to_vec1::<f32>()?)
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
}

fn cfg(kind: OptimizerKind, wd: f64, clip: bool, exclude: bool) -> OptimConfig {
    OptimConfig {
        kind,
        momentum: 0.9,
        weight_decay: wd,
        lars_eta: 0.02,
        lars_clip: clip,
        exclude_bias_n_norm: exclude,
    }
}

fn group(vars: Vec<(&str, &Var)>, wd: f64, lars: bool) -> ParamGroup {
    ParamGroup {
        name: "g".into(),
        vars: vars
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
        lr_scale: 1.0,
        weight_decay: wd,
        lars,
    }
}

#[test]
fn sgd_momentum_two_steps() -> Result<()> {
    let w = var(&[1.0, 2.0], &[1, 2])?;
    let c: &[f32] = &[0.5, -1.0];
    let mut opt = Optimizer::new(
        cfg(OptimizerKind::Sgd, 0.0, false, true),
        vec![group(vec![("w", &w)], 0.0, false)],
    );
    // step 1: buf = g = [0.5, -1]; p = [1, 2] - 0.1 * buf = [0.95, 2.1]
    opt.step(&grads(&[(&w, c)])?, 0.1)?;
    close(&vals(&w)?, &[0.95, 2.1]);
    // step 2: buf = 0.9 * [0.5, -1] + [0.5, -1] = [0.95, -1.9]; p = [0.95 - 0.095, 2.1 + 0.19]
    opt.step(&grads(&[(&w, c)])?, 0.1)?;
    close(&vals(&w)?, &[0.855, 2.29]);
    Ok(())
}

#[test]
fn sgd_weight_decay_skips_bias_and_norm_params() -> Result<()> {
    for exclude in [true, false] {
        let w = var(&[1.0, 2.0], &[1, 2])?;
        let b = var(&[1.0], &[1])?;
        let mut opt = Optimizer::new(
            cfg(OptimizerKind::Sgd, 0.1, false, exclude),
            vec![group(
                vec![("head.weight", &w), ("head.bias", &b)],
                0.1,
                false,
            )],
        );
        opt.step(&grads(&[(&w, &[0.5, -1.0]), (&b, &[0.5])])?, 0.1)?;
        // weight: d = g + 0.1 * p = [0.6, -0.8] -> p = [0.94, 2.08]
        close(&vals(&w)?, &[0.94, 2.08]);
        // bias: excluded -> d = 0.5 -> 0.95; included -> d = 0.6 -> 0.94
        close(&vals(&b)?, &[if exclude { 0.95 } else { 0.94 }]);
    }
    Ok(())
}

#[test]
fn lars_trust_ratio_with_and_without_clip() -> Result<()> {
    // p = [3, 4] (|p| = 5), g = [0.6, 0.8] (|g| = 1), eta 0.02, wd 0.1, lr 0.1:
    // r = 0.02 * 5 / (1 + 0.1 * 5) = 1/15; d = (g + 0.1 p) * r = [0.9, 1.2] * r.
    for (clip, expected) in [
        // clip: r = min(r / lr, 1) = 2/3 -> d = [0.6, 0.8] -> p = [3 - 0.06, 4 - 0.08]
        (true, [2.94f32, 3.92]),
        // no clip: d = [0.06, 0.08] -> p = [2.994, 3.992]
        (false, [2.994, 3.992]),
    ] {
        let w = var(&[3.0, 4.0], &[1, 2])?;
        let b = var(&[2.0], &[1])?;
        let mut opt = Optimizer::new(
            cfg(OptimizerKind::Lars, 0.1, clip, true),
            vec![group(vec![("l.weight", &w), ("l.bias", &b)], 0.1, true)],
        );
        opt.step(&grads(&[(&w, &[0.6, 0.8]), (&b, &[0.5])])?, 0.1)?;
        close(&vals(&w)?, &expected);
        // bias is excluded from LARS and weight decay: d = g = 0.5 -> 2 - 0.05
        close(&vals(&b)?, &[1.95]);
    }
    // a group with lars = false gets plain SGD with weight decay: d = [0.9, 1.2] -> [2.91, 3.88]
    let w = var(&[3.0, 4.0], &[1, 2])?;
    let mut opt = Optimizer::new(
        cfg(OptimizerKind::Lars, 0.1, true, true),
        vec![group(vec![("w", &w)], 0.1, false)],
    );
    opt.step(&grads(&[(&w, &[0.6, 0.8])])?, 0.1)?;
    close(&vals(&w)?, &[2.91, 3.88]);
    Ok(())
}

#[test]
fn lr_scale_params_without_grad_and_zero_lr() -> Result<()> {
    let w = var(&[1.0, 2.0], &[1, 2])?;
    let untouched = var(&[5.0], &[1, 1])?;
    let mut g = group(vec![("w", &w), ("u", &untouched)], 0.0, true);
    g.lr_scale = 0.5;
    let mut opt = Optimizer::new(cfg(OptimizerKind::Lars, 0.0, true, true), vec![g]);
    // lr 0 with clip: ratio would divide by zero; the step must stay finite and change nothing.
    opt.step(&grads(&[(&w, &[0.5, -1.0])])?, 0.0)?;
    close(&vals(&w)?, &[1.0, 2.0]);
    assert_eq!(
        opt.state().len(),
        1,
        "only the parameter with a gradient gets a buffer"
    );
    let mut opt = Optimizer::new(
        cfg(OptimizerKind::Sgd, 0.0, false, true),
        vec![{
            let mut g = group(vec![("w", &w)], 0.0, false);
            g.lr_scale = 0.5;
            g
        }],
    );
    // group lr = 0.2 * 0.5 = 0.1
    opt.step(&grads(&[(&w, &[0.5, -1.0])])?, 0.2)?;
    close(&vals(&w)?, &[0.95, 2.1]);
    close(&vals(&untouched)?, &[5.0]);
    Ok(())
}

#[test]
fn state_round_trip_continues_identically() -> Result<()> {
    let c: &[f32] = &[0.5, -1.0];
    let w1 = var(&[1.0, 2.0], &[1, 2])?;
    let mut a = Optimizer::new(
        cfg(OptimizerKind::Sgd, 0.0, false, true),
        vec![group(vec![("w", &w1)], 0.0, false)],
    );
    a.step(&grads(&[(&w1, c)])?, 0.1)?;
    let state: HashMap<String, Tensor> = a.state().into_iter().collect();
    assert!(state.contains_key("w.momentum_buffer"));
    // a fresh optimiser over a copy of the parameter, with the state loaded, takes the same second step
    let w2 = var(&vals(&w1)?, &[1, 2])?;
    let mut b = Optimizer::new(
        cfg(OptimizerKind::Sgd, 0.0, false, true),
        vec![group(vec![("w", &w2)], 0.0, false)],
    );
    b.load_state(&state)?;
    a.step(&grads(&[(&w1, c)])?, 0.1)?;
    b.step(&grads(&[(&w2, c)])?, 0.1)?;
    assert_eq!(vals(&w1)?, vals(&w2)?);
    close(&vals(&w2)?, &[0.855, 2.29]);
    // unknown key and wrong shape are errors naming the key
    let bad: HashMap<String, Tensor> = [(
        "x.momentum_buffer".to_string(),
        Tensor::zeros((1, 2), candle_core::DType::F32, &Device::Cpu)?,
    )]
    .into();
    assert!(
        matches!(b.load_state(&bad), Err(ModelError::UnexpectedTensor { name, .. }) if name == "x.momentum_buffer")
    );
    let bad: HashMap<String, Tensor> = [(
        "w.momentum_buffer".to_string(),
        Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu)?,
    )]
    .into();
    assert!(
        matches!(b.load_state(&bad), Err(ModelError::ShapeMismatch { name, .. }) if name == "w.momentum_buffer")
    );
    Ok(())
}

#[test]
fn warmup_cosine_schedule_points() {
    let s = WarmupCosine {
        base_lr: 1.0,
        warmup_steps: 10,
        total_steps: 110,
        warmup_start_lr: 0.1,
        min_lr: 0.001,
    };
    let eq = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    eq(s.lr(0), 0.1); // warm-up start
    eq(s.lr(5), 0.1 + 5.0 * 0.9 / 9.0); // linear
    eq(s.lr(9), 1.0); // end of warm-up reaches base_lr
    eq(s.lr(10), 1.0); // cosine starts at base_lr
    eq(s.lr(60), 0.001 + 0.999 * 0.5); // middle of the cosine
    eq(s.lr(110), 0.001); // end
    eq(s.lr(500), 0.001); // past the end
    let no_warm = WarmupCosine {
        warmup_steps: 0,
        ..s.clone()
    };
    eq(no_warm.lr(0), 1.0);
    eq(no_warm.lr(55), 0.001 + 0.999 * 0.5);
}

#[test]
fn optim_config_serde_names() -> Result<()> {
    let c: OptimConfig = serde_json::from_str(r#"{"kind": "sgd", "momentum": 0.8}"#)?;
    assert_eq!(c.kind, OptimizerKind::Sgd);
    assert_eq!(c.momentum, 0.8);
    assert_eq!(c.lars_eta, 0.02);
    assert!(serde_json::from_str::<OptimConfig>(r#"{"kind": "adam"}"#).is_err());
    assert!(serde_json::from_str::<OptimConfig>(r#"{"lr": 1}"#).is_err());
    Ok(())
}
