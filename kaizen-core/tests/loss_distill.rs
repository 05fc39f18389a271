//! The CaSSLe feature distillers: each is the documented composition of `kaizen_core::loss`
//! functions, treats the frozen projections as constants, and rejects mismatched shapes.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use kaizen_core::distill::{DistillParams, Distiller};
use kaizen_core::{loss, CoreError, Registry};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn randn(rng: &mut ChaCha8Rng, n: usize, d: usize) -> Result<Tensor> {
    let v: Vec<f32> = (0..n * d)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random(), rng.random());
            ((-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Ok(Tensor::from_vec(v, (n, d), &Device::Cpu)?)
}

/// The built-in distillers, by registry name.
const NAMES: [&str; 4] = [
    "predictive",
    "contrastive",
    "predictive_mse",
    "decorrelative",
];

fn build_distiller(name: &str, params: &DistillParams) -> Box<dyn Distiller> {
    Registry::builtin()
        .distiller(name)
        .expect("a built-in distiller")
        .build(params)
}

fn scalar(t: &Tensor) -> Result<f32> {
    Ok(t.to_scalar::<f32>()?)
}

#[test]
fn each_distiller_is_its_documented_formula() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let params = DistillParams {
        temperature: 0.3,
        barlow_lambda: 0.01,
        barlow_scale: 0.5,
    };
    let [p1, p2, o1, o2] = [0; 4].map(|_| randn(&mut rng, 6, 5).unwrap());
    for kind in NAMES {
        let d = build_distiller(kind, &params);
        assert_eq!(d.name(), kind);
        let got = scalar(&d.loss(&p1, &p2, &o1, &o2)?)?;
        let expected = match kind {
            "predictive" => {
                (scalar(&loss::byol(&p1, &o1)?)? + scalar(&loss::byol(&p2, &o2)?)?) / 2.0
            }
            "contrastive" => scalar(&loss::contrastive_distill(&p1, &p2, &o1, &o2, 0.3)?)?,
            "predictive_mse" => {
                (scalar(&loss::mse(&p1, &o1)?)? + scalar(&loss::mse(&p2, &o2)?)?) / 2.0
            }
            "decorrelative" => {
                (scalar(&loss::barlow_twins(&p1, &o1, 0.01, 0.5)?)?
                    + scalar(&loss::barlow_twins(&p2, &o2, 0.01, 0.5)?)?)
                    / 2.0
            }
            other => panic!("no formula for distiller {other}"),
        };
        assert!(
            (got - expected).abs() <= 1e-6 * (1.0 + expected.abs()),
            "{kind}: {got} vs {expected}"
        );
    }
    Ok(())
}

#[test]
fn frozen_projections_get_no_gradient_and_predictions_do() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let [p1, p2, o1, o2] =
        [0; 4].map(|_| Var::from_tensor(&randn(&mut rng, 5, 4).unwrap()).unwrap());
    for kind in NAMES {
        let d = build_distiller(kind, &DistillParams::default());
        let grads = d
            .loss(
                p1.as_tensor(),
                p2.as_tensor(),
                o1.as_tensor(),
                o2.as_tensor(),
            )?
            .backward()?;
        for (name, v) in [("o1", &o1), ("o2", &o2)] {
            let zero = match grads.get(v.as_tensor()) {
                None => true,
                Some(g) => g.abs()?.sum_all()?.to_scalar::<f32>()? == 0.0,
            };
            assert!(zero, "{kind}: {name} got a gradient");
        }
        for (name, v) in [("p1", &p1), ("p2", &p2)] {
            let g = grads
                .get(v.as_tensor())
                .map(|g| g.abs()?.sum_all()?.to_scalar::<f32>());
            assert!(
                matches!(g, Some(Ok(s)) if s > 0.0),
                "{kind}: {name} got no gradient"
            );
        }
    }
    Ok(())
}

#[test]
fn mismatched_inputs_are_errors_that_name_the_distiller_and_argument() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let a = randn(&mut rng, 4, 3)?;
    let b = randn(&mut rng, 4, 2)?;
    let one = randn(&mut rng, 1, 3)?;
    for kind in NAMES {
        let d = build_distiller(kind, &DistillParams::default());
        let err = d
            .loss(&a, &a, &a, &b)
            .expect_err("o2 of another shape")
            .to_string();
        assert!(err.contains(kind) && err.contains("`o2`"), "{kind}: {err}");
    }
    let d = build_distiller("decorrelative", &DistillParams::default());
    let err = d
        .loss(&one, &one, &one, &one)
        .expect_err("batch of 1")
        .to_string();
    assert!(err.contains("N >= 2"), "{err}");
    let f64s = a.to_dtype(DType::F64)?;
    assert!(build_distiller("predictive", &DistillParams::default())
        .loss(&a, &a, &a, &f64s)
        .is_err());
    Ok(())
}

#[test]
fn distill_params_have_the_official_defaults_serde_and_validation() -> Result<()> {
    let p = DistillParams::default();
    assert_eq!(
        (p.temperature, p.barlow_lambda, p.barlow_scale),
        (0.2, 0.0051, 0.1)
    );
    assert!(p.validate().is_ok());
    let parsed: DistillParams = serde_json::from_str(r#"{"temperature": 0.1}"#)?;
    assert_eq!(
        parsed,
        DistillParams {
            temperature: 0.1,
            ..DistillParams::default()
        }
    );
    let back: DistillParams = serde_json::from_str(&serde_json::to_string(&p)?)?;
    assert_eq!(back, p);
    assert!(serde_json::from_str::<DistillParams>(r#"{"temprature": 0.1}"#).is_err());
    let bad = DistillParams {
        temperature: 0.0,
        ..p
    };
    assert!(matches!(
        bad.validate(),
        Err(CoreError::BadParam {
            name: "temperature",
            ..
        })
    ));
    let bad = DistillParams {
        barlow_scale: f64::NAN,
        ..p
    };
    assert!(matches!(
        bad.validate(),
        Err(CoreError::BadParam {
            name: "barlow_scale",
            ..
        })
    ));
    Ok(())
}
