//! Direct tests of the centre of the trainer on hand-made inputs (no dataset, no run directory): each loss
//! term against its formula, the weighted sum and its NaN guard, the methods' state round trips (BYOL's EMA
//! target, MoCo v2+'s queue) and the frozen model.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use kaizen_core::config::ExperimentConfig;
use kaizen_core::loss;
use kaizen_core::methods::SslInputs;
use kaizen_core::network::{self, Frozen};
use kaizen_core::step::{self, StepSettings, Term};
use kaizen_core::terms::StepBatch;
use kaizen_core::{CoreError, Registry, RunModels};
use kaizen_models::{mask_unseen, BnMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

const CLASSES: usize = 4;

fn tiny_cfg(method: &str, strategy: &str) -> ExperimentConfig {
    let mut c = ExperimentConfig {
        method: method.into(),
        strategy: strategy.into(),
        ..ExperimentConfig::default()
    };
    let m = &mut c.model;
    (m.width, m.proj_hidden, m.proj_out) = (2, 8, 4);
    (m.pred_hidden, m.distill_hidden, m.classifier_hidden) = (8, 8, 8);
    c.loss.queue_size = 16;
    c
}

fn build(cfg: &ExperimentConfig) -> Result<RunModels> {
    Ok(RunModels::build(
        &Registry::builtin(),
        cfg,
        1,
        CLASSES,
        &Device::Cpu,
    )?)
}

/// Seeded uniform images (6, 1, 8, 8).
fn image(rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let v: Vec<f32> = (0..6 * 64).map(|_| rng.random::<f32>()).collect();
    Ok(Tensor::from_vec(v, (6, 1, 8, 8), &Device::Cpu)?)
}

fn views(seed: u64) -> Result<(Tensor, Tensor, Tensor)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels = Tensor::new(&[0i64, 1, -1, 1, 0, -1], &Device::Cpu)?;
    Ok((image(&mut rng)?, image(&mut rng)?, labels))
}

/// Step settings (detached classifier) and a batch of two views.
fn step_inputs<'a>(
    seen: &'a [bool],
    x1: &'a Tensor,
    x2: &'a Tensor,
    labels: &'a Tensor,
) -> (StepSettings<'a>, StepBatch<'a>) {
    let settings = StepSettings {
        seen,
        classifier_detach: true,
    };
    let batch = StepBatch {
        view1: x1,
        view2: x2,
        labels,
    };
    (settings, batch)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(f64::from(t.to_dtype(DType::F32)?.to_scalar::<f32>()?))
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
        "{what}: {got} vs {want}"
    );
}

/// Add `delta` to every online tensor under `prefix`.
fn perturb(parts: &RunModels, prefix: &str, delta: f64) -> Result<()> {
    let data = parts.online.varmap.data().lock().expect("varmap lock");
    for (name, var) in data.iter() {
        if name.starts_with(prefix) {
            var.set(&(var.as_tensor() + delta)?)?;
        }
    }
    Ok(())
}

/// A method's state as deep copies (its tensors may share storage with variables updated in place).
fn state_map(v: Vec<(String, Tensor)>) -> HashMap<String, Tensor> {
    v.into_iter()
        .map(|(k, t)| {
            let t = t.copy().expect("copy");
            (k, t)
        })
        .collect()
}

fn assert_same_tensors(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> Result<()> {
    assert_eq!(
        a.keys().collect::<std::collections::BTreeSet<_>>(),
        b.keys().collect()
    );
    for (k, t) in a {
        let d = (t.to_dtype(DType::F64)? - b[k].to_dtype(DType::F64)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert_eq!(d, 0.0, "{k} differs by {d}");
    }
    Ok(())
}

#[test]
fn kaizen_terms_are_their_formulas_and_distillation_needs_a_frozen_model() -> Result<()> {
    let cfg = tiny_cfg("simclr", "kaizen");
    let mut parts = build(&cfg)?;
    let frozen = Frozen::snapshot(&parts.online, &parts.spec, BnMode::Eval, &Device::Cpu)?;
    // The online model moves away from the snapshot, so the distillation terms are not trivially equal.
    perturb(&parts, "classifier.", 0.05)?;
    let (x1, x2, labels) = views(1)?;
    let seen = [true, true, false, false];
    let (settings, batch) = step_inputs(&seen, &x1, &x2, &labels);
    let (models, terms) = parts.step_parts(None);
    let first = step::loss_terms(models, terms, &batch, &settings)?;
    let names: Vec<&str> = first.iter().map(|t| t.name).collect();
    assert_eq!(names, ["ssl", "cls_ce"], "no frozen model at task 0");

    let (models, terms) = parts.step_parts(Some(&frozen));
    let got = step::loss_terms(models, terms, &batch, &settings)?;
    let names: Vec<&str> = got.iter().map(|t| t.name).collect();
    assert_eq!(names, ["ssl", "cls_ce", "fe_kd", "cls_kd"]);
    let weights: Vec<f64> = got.iter().map(|t| t.weight).collect();
    assert_eq!(
        weights,
        [1.0, 1.0, 1.0, 2.0],
        "mini defaults; contrastive's default weight 1"
    );

    // The same quantities, composed by hand (batch statistics: the values of a train-mode pass).
    let on = &parts.online;
    let bs = BnMode::BatchStats;
    let h = [on.backbone.forward(&x1, bs)?, on.backbone.forward(&x2, bs)?];
    let z = [
        on.projector.forward(&h[0], bs)?,
        on.projector.forward(&h[1], bs)?,
    ];
    let l = [
        on.classifier.forward(&h[0], bs)?,
        on.classifier.forward(&h[1], bs)?,
    ];
    let p = [
        on.distill_predictor.forward(&z[0], bs)?,
        on.distill_predictor.forward(&z[1], bs)?,
    ];
    let o = [frozen.forward(&x1)?, frozen.forward(&x2)?];
    let ssl = loss::nt_xent(&z[0], &z[1], 0.1)?;
    let m = [mask_unseen(&l[0], &seen)?, mask_unseen(&l[1], &seen)?];
    let ce = (loss::masked_ce(&m[0], &labels)? + loss::masked_ce(&m[1], &labels)?)?;
    let fe = loss::contrastive_distill(&p[0], &p[1], &o[0].z, &o[1].z, 0.2)?;
    let kd = ((loss::soft_ce(&l[0], &o[0].logits, 1.0)?
        + loss::soft_ce(&l[1], &o[1].logits, 1.0)?)?
        * 0.5)?;
    for (term, want) in got.iter().zip([ssl, ce, fe, kd]) {
        close(scalar(&term.loss)?, scalar(&want)?, term.name);
    }
    Ok(())
}

#[test]
fn strategies_choose_their_terms_and_zero_weights_are_skipped() -> Result<()> {
    let (x1, x2, labels) = views(2)?;
    let seen = [true; CLASSES];
    let (settings, batch) = step_inputs(&seen, &x1, &x2, &labels);
    for (strategy, want) in [
        ("kaizen", vec!["ssl", "cls_ce", "fe_kd", "cls_kd"]),
        ("cassle", vec!["ssl", "cls_ce", "fe_kd"]),
        ("finetune", vec!["ssl", "cls_ce"]),
        ("replay", vec!["ssl", "cls_ce"]),
        ("random", vec![]),
    ] {
        let mut cfg = tiny_cfg("byol", strategy);
        cfg.loss.ssl = 0.5;
        let mut parts = build(&cfg)?;
        let frozen = Frozen::snapshot(&parts.online, &parts.spec, BnMode::Eval, &Device::Cpu)?;
        let (models, terms) = parts.step_parts(Some(&frozen));
        let got = step::loss_terms(models, terms, &batch, &settings)?;
        let names: Vec<&str> = got.iter().map(|t| t.name).collect();
        assert_eq!(names, want, "{strategy}");
        assert!(got.iter().all(|t| t.name != "ssl" || t.weight == 0.5));
    }
    let mut cfg = tiny_cfg("byol", "kaizen");
    cfg.loss.classifier_distill = 0.0;
    cfg.loss.ssl = 0.0;
    let mut parts = build(&cfg)?;
    let frozen = Frozen::snapshot(&parts.online, &parts.spec, BnMode::Eval, &Device::Cpu)?;
    let (models, terms) = parts.step_parts(Some(&frozen));
    let got = step::loss_terms(models, terms, &batch, &settings)?;
    let names: Vec<&str> = got.iter().map(|t| t.name).collect();
    assert_eq!(names, ["cls_ce", "fe_kd"]);
    Ok(())
}

#[test]
fn the_weighted_total_sums_terms_and_refuses_non_finite_ones() -> Result<()> {
    let dev = Device::Cpu;
    let term = |name, weight, v: f32| -> Result<Term> {
        Ok(Term {
            name,
            weight,
            loss: Tensor::new(v, &dev)?,
        })
    };
    let terms = [term("ssl", 2.0, 1.5)?, term("cls_ce", 0.5, 2.0)?];
    let (total, values) = step::weighted_total(&terms, 3, 7)?;
    close(scalar(&total)?, 4.0, "total");
    let logged: Vec<(&str, f64)> = values.iter().map(|v| (v.term, v.value)).collect();
    assert_eq!(logged, [("ssl", 1.5), ("cls_ce", 2.0), ("total", 4.0)]);

    let bad = [term("ssl", 1.0, 1.0)?, term("cls_kd", 1.0, f32::NAN)?];
    match step::weighted_total(&bad, 3, 7) {
        Err(CoreError::NonFinite {
            term, task, step, ..
        }) => assert_eq!((term.as_str(), task, step), ("cls_kd", 3, 7)),
        other => panic!("expected a NonFinite error, got {:?}", other.map(|_| ())),
    }
    let err = step::weighted_total(&[], 0, 0).expect_err("no terms");
    assert!(err.to_string().contains("nothing to train"), "{err}");
    Ok(())
}

#[test]
fn byol_target_follows_the_ema_and_its_state_round_trips() -> Result<()> {
    let cfg = tiny_cfg("byol", "kaizen");
    let mut parts = build(&cfg)?;
    let before = state_map(parts.method.state()?);
    assert!(before
        .keys()
        .all(|k| k.starts_with("target.backbone.") || k.starts_with("target.projector.")));
    // The target starts as a copy of the online backbone + projector.
    let online = state_map(network::sorted_tensors(&parts.online.varmap)?);
    for (k, t) in &before {
        let name = k.strip_prefix("target.").expect("prefix");
        assert_same_tensors(
            &HashMap::from([(name.to_string(), t.clone())]),
            &HashMap::from([(name.to_string(), online[name].clone())]),
        )?;
    }
    perturb(&parts, "backbone.", 0.5)?;
    parts.method.after_step(&parts.online, 0, 10)?;
    let tau = kaizen_models::ema::cosine_tau(cfg.train.base_tau, cfg.train.final_tau, 0, 10);
    assert!(tau < 1.0);
    let after = state_map(parts.method.state()?);
    let key = "target.backbone.conv1.weight";
    let moved = (&after[key] - &before[key])?.to_dtype(DType::F64)?;
    let want = (1.0 - tau) * 0.5;
    let (lo, hi) = (
        moved.min_all()?.to_scalar::<f64>()?,
        moved.max_all()?.to_scalar::<f64>()?,
    );
    assert!(
        (lo - want).abs() < 1e-6 && (hi - want).abs() < 1e-6,
        "{lo}..{hi} vs {want}"
    );

    let mut fresh = build(&cfg)?;
    fresh.method.load_state(&after)?;
    assert_same_tensors(&state_map(fresh.method.state()?), &after)?;
    let mut missing = after.clone();
    missing.remove(key);
    assert!(fresh.method.load_state(&missing).is_err());
    Ok(())
}

#[test]
fn moco_queue_advances_and_round_trips_to_the_same_loss() -> Result<()> {
    let cfg = tiny_cfg("mocov2plus", "kaizen");
    let mut parts = build(&cfg)?;
    let (x1, x2, _) = views(3)?;
    let loss_of = |parts: &mut RunModels| -> Result<f64> {
        let bs = BnMode::BatchStats;
        let on = &parts.online;
        let z1 = on.projector.forward(&on.backbone.forward(&x1, bs)?, bs)?;
        let z2 = on.projector.forward(&on.backbone.forward(&x2, bs)?, bs)?;
        let inputs = SslInputs {
            x1: &x1,
            x2: &x2,
            z1: &z1,
            z2: &z2,
        };
        scalar(&parts.method.loss(&parts.online, &inputs)?)
    };
    let start = state_map(parts.method.state()?);
    assert_eq!(start["queue.ptr"].to_vec1::<u32>()?, [0]);
    loss_of(&mut parts)?;
    parts.method.after_step(&parts.online, 1, 10)?;
    let after = state_map(parts.method.state()?);
    // Both views' keys (2 x 6) entered the queue of 16.
    assert_eq!(after["queue.ptr"].to_vec1::<u32>()?, [12]);
    let keys_before = start["queue.keys"].to_vec2::<f32>()?;
    let keys_after = after["queue.keys"].to_vec2::<f32>()?;
    assert!((0..12).all(|i| keys_before[i] != keys_after[i]));
    assert!((12..16).all(|i| keys_before[i] == keys_after[i]));

    let mut fresh = build(&cfg)?;
    fresh.method.load_state(&after)?;
    assert_same_tensors(&state_map(fresh.method.state()?), &after)?;
    let (a, b) = (loss_of(&mut parts)?, loss_of(&mut fresh)?);
    assert_eq!(a, b, "restored method computes the same loss");
    Ok(())
}

#[test]
fn the_frozen_model_is_a_deep_copy_that_never_trains() -> Result<()> {
    let cfg = tiny_cfg("byol", "kaizen");
    let parts = build(&cfg)?;
    let dev = Device::Cpu;
    let frozen = Frozen::snapshot(&parts.online, &parts.spec, BnMode::Eval, &dev)?;
    let names: Vec<String> = frozen.tensors().into_iter().map(|(k, _)| k).collect();
    assert!(names.iter().all(|n| n.starts_with("backbone.")
        || n.starts_with("projector.")
        || n.starts_with("classifier.")));
    assert!(names.iter().any(|n| n.starts_with("classifier.")));
    let (x1, _, _) = views(4)?;
    let ev = BnMode::Eval;
    let on = &parts.online;
    let want = on.projector.forward(&on.backbone.forward(&x1, ev)?, ev)?;
    let got = frozen.forward(&x1)?;
    close(
        scalar(&(&got.z - &want)?.abs()?.max_all()?)?,
        0.0,
        "frozen projection = online projection at snapshot time",
    );
    perturb(&parts, "", 0.25)?;
    let again = frozen.forward(&x1)?;
    close(
        scalar(&(&again.z - &got.z)?.abs()?.max_all()?)?,
        0.0,
        "the frozen model does not follow the online model",
    );
    let tensors: HashMap<String, Tensor> = frozen.tensors().into_iter().collect();
    let err = Frozen::from_tensors(tensors, &parts.spec, BnMode::Train, &dev)
        .err()
        .expect("a frozen model cannot update statistics");
    assert!(err.to_string().contains("never updates"), "{err}");
    Ok(())
}

#[test]
fn the_registry_resolves_names_defaults_and_warnings() -> Result<()> {
    let r = Registry::builtin();
    let methods: Vec<&str> = r.methods().iter().map(|m| m.0).collect();
    assert_eq!(
        methods,
        [
            "byol",
            "simclr",
            "mocov2plus",
            "vicreg",
            "barlow",
            "simsiam"
        ]
    );
    let pairs = [
        ("byol", "predictive", 1.0),
        ("simclr", "contrastive", 1.0),
        ("mocov2plus", "contrastive", 1.0),
        ("vicreg", "predictive_mse", 25.0),
        ("barlow", "decorrelative", 1.0),
        ("simsiam", "predictive", 1.0),
    ];
    for (m, d, w) in pairs {
        let cfg = tiny_cfg(m, "kaizen");
        let dist = r.distiller_for(&cfg)?;
        assert_eq!((dist.name(), dist.default_weight()), (d, w), "{m}");
    }
    let temps: Vec<f64> = ["simclr", "mocov2plus"]
        .iter()
        .map(|m| {
            let f = r.method(m).expect("built in");
            kaizen_core::methods::temperature(f, &tiny_cfg(m, "kaizen"))
        })
        .collect();
    assert_eq!(temps, [0.1, 0.2]);

    let err = r.method("moco").err().expect("unknown");
    assert!(
        err.to_string().contains("unknown method `moco`") && err.to_string().contains("mocov2plus")
    );
    let mut cfg = tiny_cfg("byol", "nope");
    assert!(r.validate(&cfg).is_err());
    cfg.strategy = "kaizen".into();
    cfg.distiller = "Predictive".into();
    assert!(r.validate(&cfg).is_err());
    let mut moco = tiny_cfg("mocov2plus", "kaizen");
    moco.loss.queue_size = 0;
    let err = r.validate(&moco).expect_err("empty queue");
    assert!(err.to_string().contains("loss.queue_size"), "{err}");

    // VICReg at a BYOL learning rate is warned about; at its official rate it is not.
    let mut v = tiny_cfg("vicreg", "kaizen");
    v.train.batch_size = 64;
    v.train.lr = 0.25;
    let w = r.warnings(&v);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("train.lr = 0.25") && w[0].contains("0.075 at batch 64"),
        "{w:?}"
    );
    v.train.lr = 0.075;
    assert!(r.warnings(&v).is_empty());
    v.method = "byol".into();
    v.train.lr = 0.25;
    assert!(r.warnings(&v).is_empty());
    Ok(())
}
