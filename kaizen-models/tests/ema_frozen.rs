//! EMA target update values, tau schedule, and frozen snapshots (no gradient, no train mode, no aliasing).

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use kaizen_models::ema::{copy_into, cosine_tau, ema_update};
use kaizen_models::frozen::snapshot;
use kaizen_models::init::init_vars_under;
use kaizen_models::optim::{OptimConfig, Optimizer, OptimizerKind, ParamGroup};
use kaizen_models::params::{sorted_vars, trainable};
use kaizen_models::{BnMode, ModelError, ResNet, ResNetConfig};

fn cfg() -> ResNetConfig {
    ResNetConfig {
        width: 2,
        in_channels: 1,
        ..Default::default()
    }
}

fn get(vm: &VarMap, name: &str) -> Result<Vec<f32>> {
    let v = sorted_vars(vm)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v);
    Ok(v.ok_or_else(|| anyhow::anyhow!("no {name}"))?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

fn pairs() -> Vec<(String, String)> {
    vec![("target.backbone.".to_string(), "backbone.".to_string())]
}

fn image(seed: f32) -> Result<Tensor> {
    let v: Vec<f32> = (0..4 * 8 * 8)
        .map(|i| (i as f32 * 0.37 + seed).sin())
        .collect();
    Ok(Tensor::from_vec(v, (4, 1, 8, 8), &Device::Cpu)?)
}

#[test]
fn ema_values_match_hand_computation() -> Result<()> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    vb.get_with_hints(2, "backbone.a", Init::Const(1.0))?;
    vb.get_with_hints(2, "target.backbone.a", Init::Const(3.0))?;
    vb.get_with_hints(2, "backbone.bn.running_var", Init::Const(2.0))?;
    vb.get_with_hints(2, "target.backbone.bn.running_var", Init::Const(1.0))?;
    vb.get_with_hints(1, "projector.x", Init::Const(9.0))?; // outside the pairs: untouched
    ema_update(&vm, &vm, &pairs(), 0.9)?;
    // 0.9 * 3 + 0.1 * 1 = 2.8; running stats too: 0.9 * 1 + 0.1 * 2 = 1.1
    assert!(get(&vm, "target.backbone.a")?
        .iter()
        .all(|x| (x - 2.8).abs() < 1e-6));
    assert!(get(&vm, "target.backbone.bn.running_var")?
        .iter()
        .all(|x| (x - 1.1).abs() < 1e-6));
    assert_eq!(get(&vm, "backbone.a")?, vec![1.0, 1.0]);
    assert_eq!(get(&vm, "projector.x")?, vec![9.0]);
    // second update compounds: 0.9 * 2.8 + 0.1 * 1 = 2.62
    ema_update(&vm, &vm, &pairs(), 0.9)?;
    assert!(get(&vm, "target.backbone.a")?
        .iter()
        .all(|x| (x - 2.62).abs() < 1e-6));
    Ok(())
}

#[test]
fn ema_tau_one_leaves_target_unchanged_and_copy_is_exact() -> Result<()> {
    let online = VarMap::new();
    let target = VarMap::new();
    let c = cfg();
    ResNet::new(
        &c,
        VarBuilder::from_varmap(&online, DType::F32, &Device::Cpu).pp("backbone"),
    )?;
    ResNet::new(
        &c,
        VarBuilder::from_varmap(&target, DType::F32, &Device::Cpu)
            .pp("target")
            .pp("backbone"),
    )?;
    init_vars_under(&online, "", 1)?;
    init_vars_under(&target, "", 2)?;
    let before: Vec<Vec<f32>> = sorted_vars(&target)
        .iter()
        .map(|(_, v)| v.flatten_all().and_then(|t| t.to_vec1::<f32>()))
        .collect::<candle_core::Result<_>>()?;
    ema_update(&target, &online, &pairs(), 1.0)?;
    let after: Vec<Vec<f32>> = sorted_vars(&target)
        .iter()
        .map(|(_, v)| v.flatten_all().and_then(|t| t.to_vec1::<f32>()))
        .collect::<candle_core::Result<_>>()?;
    assert_eq!(before, after);
    copy_into(&target, &online, &pairs())?;
    for (name, v) in sorted_vars(&online) {
        assert_eq!(
            v.flatten_all()?.to_vec1::<f32>()?,
            get(&target, &format!("target.{name}"))?,
            "{name}"
        );
    }
    assert!(ema_update(&target, &online, &pairs(), 1.5).is_err());
    Ok(())
}

#[test]
fn ema_errors_on_unpaired_or_mismatched_tensors() -> Result<()> {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    vb.get_with_hints(2, "backbone.a", Init::Const(1.0))?;
    vb.get_with_hints(2, "target.backbone.a", Init::Const(3.0))?;
    vb.get_with_hints(2, "backbone.extra", Init::Const(3.0))?;
    let r = ema_update(&vm, &vm, &pairs(), 0.5);
    assert!(
        matches!(&r, Err(ModelError::Unpaired { name, partner }) if name == "backbone.extra" && partner == "target.backbone.extra"),
        "{r:?}"
    );
    // nothing was written before the error
    assert_eq!(get(&vm, "target.backbone.a")?, vec![3.0, 3.0]);
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    vb.get_with_hints(2, "backbone.a", Init::Const(1.0))?;
    vb.get_with_hints(3, "target.backbone.a", Init::Const(3.0))?;
    let r = ema_update(&vm, &vm, &pairs(), 0.5);
    assert!(
        matches!(&r, Err(ModelError::ShapeMismatch { name, .. }) if name == "target.backbone.a"),
        "{r:?}"
    );
    Ok(())
}

#[test]
fn cosine_tau_schedule_points() {
    let eq = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    eq(cosine_tau(0.99, 1.0, 0, 100), 0.99);
    eq(cosine_tau(0.99, 1.0, 50, 100), 0.995);
    eq(cosine_tau(0.99, 1.0, 100, 100), 1.0);
    eq(cosine_tau(0.99, 1.0, 200, 100), 1.0);
    // quarter: 1 - 0.01 * (cos(pi/4) + 1) / 2
    eq(
        cosine_tau(0.99, 1.0, 25, 100),
        1.0 - 0.01 * ((std::f64::consts::FRAC_PI_4).cos() + 1.0) / 2.0,
    );
}

#[test]
fn frozen_copy_gets_no_gradient_and_does_not_alias() -> Result<()> {
    let vm = VarMap::new();
    let c = cfg();
    let online = ResNet::new(
        &c,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu).pp("backbone"),
    )?;
    init_vars_under(&vm, "", 3)?;
    let snap = snapshot(&vm, "backbone.")?;
    assert_eq!(snap.len(), sorted_vars(&vm).len());
    assert!(snap.contains_key("bn1.running_mean"));
    let frozen = ResNet::new(
        &c,
        VarBuilder::from_tensors(snap.clone(), DType::F32, &Device::Cpu),
    )?;
    let x = image(0.0)?;
    let frozen_before = frozen
        .forward(&x, BnMode::Eval)?
        .flatten_all()?
        .to_vec1::<f32>()?;

    // One online training step with the frozen output in the loss.
    let loss = (online.forward(&x, BnMode::Train)?.sqr()?.sum_all()?
        + frozen.forward(&x, BnMode::Eval)?.sum_all()?)?;
    let grads = loss.backward()?;
    for (name, t) in &snap {
        assert!(
            grads.get(t).is_none(),
            "frozen tensor {name} got a gradient"
        );
    }
    let tr = trainable(&vm, "backbone.");
    assert!(
        tr.iter().all(|(_, v)| grads.get(v.as_tensor()).is_some()),
        "every online parameter has a gradient"
    );
    let mut opt = Optimizer::new(
        OptimConfig {
            kind: OptimizerKind::Sgd,
            ..Default::default()
        },
        vec![ParamGroup {
            name: "backbone".into(),
            vars: tr,
            lr_scale: 1.0,
            weight_decay: 0.0,
            lars: false,
        }],
    );
    opt.step(&grads, 0.5)?;
    // The online weights and running stats moved; the frozen copy did not.
    assert_ne!(
        get(&vm, "backbone.conv1.weight")?,
        snap["conv1.weight"].flatten_all()?.to_vec1::<f32>()?
    );
    assert_ne!(
        get(&vm, "backbone.bn1.running_mean")?,
        snap["bn1.running_mean"].to_vec1::<f32>()?
    );
    let frozen_after = frozen
        .forward(&x, BnMode::Eval)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert_eq!(frozen_before, frozen_after);
    // BatchStats is allowed (teacher_bn = "train") and leaves the frozen statistics alone; Train is refused.
    frozen.forward(&x, BnMode::BatchStats)?;
    assert_eq!(
        frozen
            .forward(&x, BnMode::Eval)?
            .flatten_all()?
            .to_vec1::<f32>()?,
        frozen_before
    );
    assert!(frozen.forward(&x, BnMode::Train).is_err());
    Ok(())
}
