//! Behaviour, property and edge-case tests of `kaizen_core::loss` (solo-learn style), on tiny shapes.
//!
//! Random inputs come from seeded `ChaCha8Rng`s (never candle's unseedable RNG); each property is
//! checked over a few dozen seeded cases.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{Optimizer, SGD};
use kaizen_core::loss;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CPU: Device = Device::Cpu;

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random();
    let u2: f64 = rng.random();
    ((-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn randn(rng: &mut ChaCha8Rng, n: usize, d: usize) -> Result<Tensor> {
    let v: Vec<f32> = (0..n * d).map(|_| normal(rng)).collect();
    Ok(Tensor::from_vec(v, (n, d), &CPU)?)
}

fn scalar(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(t.flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?
        .iter()
        .all(|x| x.is_finite()))
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// Value of `f(x)` and its gradient w.r.t. `x`.
fn value_and_grad(
    x: &Tensor,
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<(Tensor, Tensor)> {
    let var = Var::from_tensor(x)?;
    let value = f(var.as_tensor())?;
    let grads = value.backward()?;
    let g = match grads.get(var.as_tensor()) {
        Some(g) => g.clone(),
        None => x.zeros_like()?,
    };
    Ok((value, g))
}

/// Gradient of `f` w.r.t. one argument that should be treated as a constant: `None` or all zeros.
fn gets_no_gradient(
    x: &Tensor,
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<bool> {
    let var = Var::from_tensor(x)?;
    let grads = f(var.as_tensor())?.backward()?;
    Ok(match grads.get(var.as_tensor()) {
        None => true,
        Some(g) => g.abs()?.sum_all()?.to_scalar::<f32>()? == 0.0,
    })
}

type Named = (
    &'static str,
    Box<dyn Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>>,
);

/// Every two-input loss over (N, D) pairs, with the other parameters fixed; `x` is the differentiated input.
fn pair_losses(rng: &mut ChaCha8Rng, n: usize, d: usize) -> Result<Vec<Named>> {
    let queue = randn(rng, 11, d)?;
    let o1 = randn(rng, n, d)?;
    let o2 = randn(rng, n, d)?;
    let labels: Vec<i64> = (0..n as i64)
        .map(|i| if i % 3 == 1 { -1 } else { i % d as i64 })
        .collect();
    let labels = Tensor::from_vec(labels, (n,), &CPU)?;
    Ok(vec![
        ("byol", Box::new(loss::byol)),
        ("simsiam", Box::new(loss::simsiam)),
        ("mse", Box::new(loss::mse)),
        ("nt_xent", Box::new(|x, y| loss::nt_xent(x, y, 0.2))),
        (
            "info_nce_queue",
            Box::new(move |x, y| loss::info_nce_queue(x, y, &queue, 0.2)),
        ),
        (
            "vicreg",
            Box::new(|x, y| loss::vicreg(x, y, 25.0, 25.0, 1.0)),
        ),
        (
            "barlow_twins",
            Box::new(|x, y| loss::barlow_twins(x, y, 0.0051, 0.1)),
        ),
        (
            "contrastive_distill",
            Box::new(move |x, y| loss::contrastive_distill(x, y, &o1, &o2, 0.2)),
        ),
        ("soft_ce", Box::new(|x, y| loss::soft_ce(x, y, 1.0))),
        (
            "masked_ce",
            Box::new(move |x, _| loss::masked_ce(x, &labels)),
        ),
    ])
}

#[test]
fn zero_vectors_give_finite_values_and_gradients() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (n, d) = (4, 6);
    let zeros = Tensor::zeros((n, d), DType::F32, &CPU)?;
    // Half-zero inputs: rows 0 and 2 are zero vectors.
    let mask = Tensor::from_vec(vec![0f32, 1., 0., 1.], (n, 1), &CPU)?;
    let partly = randn(&mut rng, n, d)?.broadcast_mul(&mask)?;
    for (name, f) in pair_losses(&mut rng, n, d)? {
        for (x, y) in [
            (&zeros, &zeros),
            (&zeros, &partly),
            (&partly, &zeros),
            (&partly, &partly),
        ] {
            let (value, grad) = value_and_grad(x, |x| f(x, y))?;
            assert!(all_finite(&value)?, "{name}: value {value}");
            assert!(all_finite(&grad)?, "{name}: gradient {grad}");
        }
    }
    // The formulas at zero: cos = 0, normalize(0) = 0.
    assert_eq!(scalar(&loss::byol(&zeros, &partly)?)?, 2.0);
    assert_eq!(scalar(&loss::simsiam(&partly, &zeros)?)?, 0.0);
    // nt_xent with all-zero inputs: every logit is 0, so each row is uniform over its 2N-1 columns.
    let expected = ((2 * n - 1) as f32).ln();
    assert!(close(
        scalar(&loss::nt_xent(&zeros, &zeros, 0.1)?)?,
        expected,
        1e-6
    ));
    Ok(())
}

#[test]
fn batch_of_one_is_an_error_where_the_batch_statistics_are_undefined() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let z1 = randn(&mut rng, 1, 5)?;
    let z2 = randn(&mut rng, 1, 5)?;
    for (name, res) in [
        ("vicreg", loss::vicreg(&z1, &z2, 25.0, 25.0, 1.0)),
        ("variance", loss::variance(&z1)),
        ("covariance", loss::covariance(&z1)),
        ("barlow_twins", loss::barlow_twins(&z1, &z2, 0.0051, 0.1)),
    ] {
        let err = res.expect_err(name).to_string();
        assert!(
            err.contains("N >= 2") && err.contains("N = 1"),
            "{name}: {err}"
        );
    }
    // Defined with one sample: NT-Xent keeps only the positive, so the loss is exactly 0.
    assert_eq!(scalar(&loss::nt_xent(&z1, &z2, 0.1)?)?, 0.0);
    for v in [
        loss::byol(&z1, &z2)?,
        loss::info_nce_queue(&z1, &z2, &randn(&mut rng, 3, 5)?, 0.2)?,
    ] {
        assert!(scalar(&v)?.is_finite());
    }
    Ok(())
}

#[test]
fn bad_shapes_and_parameters_are_clear_errors() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let a = randn(&mut rng, 4, 6)?;
    let b = randn(&mut rng, 4, 5)?;
    let c = randn(&mut rng, 3, 6)?;
    let v = Tensor::zeros((6,), DType::F32, &CPU)?;
    let empty = Tensor::zeros((0, 6), DType::F32, &CPU)?;
    let checks: Vec<(&str, candle_core::Result<Tensor>)> = vec![
        ("byol", loss::byol(&a, &b)),
        ("simsiam", loss::simsiam(&a, &c)),
        ("mse", loss::mse(&a, &b)),
        ("nt_xent", loss::nt_xent(&a, &c, 0.1)),
        ("info_nce_queue", loss::info_nce_queue(&a, &c, &a, 0.1)),
        ("info_nce_queue", loss::info_nce_queue(&a, &a, &b, 0.1)),
        ("vicreg", loss::vicreg(&a, &b, 1.0, 1.0, 1.0)),
        ("barlow_twins", loss::barlow_twins(&a, &c, 0.0, 1.0)),
        (
            "contrastive_distill",
            loss::contrastive_distill(&a, &a, &a, &c, 0.1),
        ),
        ("soft_ce", loss::soft_ce(&a, &b, 1.0)),
        ("byol", loss::byol(&v, &v)),
        ("byol", loss::byol(&empty, &empty)),
        ("mse", loss::mse(&a, &a.to_dtype(DType::F64)?)),
    ];
    for (name, res) in checks {
        let err = res.expect_err(name).to_string();
        assert!(
            err.starts_with(name),
            "error for {name} should name it: {err}"
        );
    }
    for (name, res) in [
        ("nt_xent", loss::nt_xent(&a, &a, 0.0)),
        ("info_nce_queue", loss::info_nce_queue(&a, &a, &a, -1.0)),
        (
            "contrastive_distill",
            loss::contrastive_distill(&a, &a, &a, &a, f64::NAN),
        ),
        ("soft_ce", loss::soft_ce(&a, &a, 0.0)),
    ] {
        let err = res.expect_err(name).to_string();
        assert!(err.contains("temperature"), "{name}: {err}");
    }
    // masked_ce: labels must be int64 (N,) with values in [-1, C).
    let labels = |v: Vec<i64>| Tensor::from_vec(v.clone(), (v.len(),), &CPU);
    let err = loss::masked_ce(&a, &labels(vec![0, 1, 2])?)
        .expect_err("short labels")
        .to_string();
    assert!(err.contains("shape"), "{err}");
    let err = loss::masked_ce(&a, &labels(vec![0, 1, 6, -1])?)
        .expect_err("label = C")
        .to_string();
    assert!(err.contains("label 6 of sample 2 is out of range"), "{err}");
    let err = loss::masked_ce(&a, &labels(vec![0, -2, 1, -1])?)
        .expect_err("label -2")
        .to_string();
    assert!(err.contains("label -2"), "{err}");
    let u32_labels = Tensor::from_vec(vec![0u32, 1, 2, 3], (4,), &CPU)?;
    let err = loss::masked_ce(&a, &u32_labels)
        .expect_err("u32 labels")
        .to_string();
    assert!(err.contains("int64"), "{err}");
    Ok(())
}

#[test]
fn masked_ce_ignores_unlabelled_samples_and_is_zero_without_labels() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let logits = randn(&mut rng, 5, 4)?.affine(3.0, 0.0)?;
    let none = Tensor::from_vec(vec![-1i64; 5], (5,), &CPU)?;
    let (value, grad) = value_and_grad(&logits, |x| loss::masked_ce(x, &none))?;
    assert_eq!(scalar(&value)?, 0.0);
    assert_eq!(grad.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);

    // Partly labelled: equals the plain cross-entropy over the labelled rows, computed by hand.
    let labels = vec![2i64, -1, 0, -1, 3];
    let got = scalar(&loss::masked_ce(
        &logits,
        &Tensor::from_vec(labels.clone(), (5,), &CPU)?,
    )?)?;
    let rows = logits.to_vec2::<f32>()?;
    let mut sum = 0.0f64;
    let mut count = 0;
    for (row, &y) in rows.iter().zip(&labels) {
        if y < 0 {
            continue;
        }
        let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
        sum += lse - row[y as usize] as f64;
        count += 1;
    }
    assert!(close(got, (sum / count as f64) as f32, 1e-6), "{got}");
    // The gradient of an unlabelled row is zero.
    let (_, grad) = value_and_grad(&logits, |x| {
        loss::masked_ce(x, &Tensor::from_vec(labels.clone(), (5,), &CPU)?)
    })?;
    let g = grad.to_vec2::<f32>()?;
    assert!(g[1].iter().chain(&g[3]).all(|&v| v == 0.0));
    assert!(g[0].iter().any(|&v| v != 0.0));
    Ok(())
}

#[test]
fn byol_lies_in_0_4_is_scale_invariant_and_stops_the_target_gradient() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for case in 0..32 {
        let (n, d) = (1 + case % 7, 1 + case % 5);
        let p = randn(&mut rng, n, d)?;
        let z = randn(&mut rng, n, d)?;
        let l = scalar(&loss::byol(&p, &z)?)?;
        assert!((0.0..=4.0).contains(&l), "case {case}: {l}");
        // Positive scaling, per row and overall, leaves every cosine unchanged.
        let s: Vec<f32> = (0..n).map(|_| rng.random_range(0.01f32..100.0)).collect();
        let s = Tensor::from_vec(s, (n, 1), &CPU)?;
        let scaled = scalar(&loss::byol(&p.broadcast_mul(&s)?, &z.affine(7.5, 0.0)?)?)?;
        assert!((scaled - l).abs() < 1e-5, "case {case}: {scaled} vs {l}");
        // p = z gives 0, p = -z gives 4.
        assert!(scalar(&loss::byol(&z, &z)?)?.abs() < 1e-6);
        assert!((scalar(&loss::byol(&z.neg()?, &z)?)? - 4.0).abs() < 1e-6);
        // SimSiam = byol / 2 - 1 (same cosine).
        assert!((scalar(&loss::simsiam(&p, &z)?)? - (l / 2.0 - 1.0)).abs() < 1e-6);
        assert!(gets_no_gradient(&z, |z| loss::byol(&p, z))?);
        assert!(gets_no_gradient(&z, |z| loss::simsiam(&p, z))?);
    }
    Ok(())
}

/// NT-Xent from its definition, one row at a time on the host, in f64.
fn nt_xent_by_pairs(z1: &Tensor, z2: &Tensor, t: f64) -> Result<f64> {
    let rows: Vec<Vec<f64>> = Tensor::cat(&[z1, z2], 0)?
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?
        .into_iter()
        .map(|r| {
            let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            r.into_iter().map(|x| x / norm).collect()
        })
        .collect();
    let m = rows.len();
    let n = m / 2;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / t;
    let mut total = 0.0;
    for k in 0..m {
        let pos = dot(&rows[k], &rows[(k + n) % m]);
        let lse = (0..m)
            .filter(|&j| j != k)
            .map(|j| dot(&rows[k], &rows[j]).exp())
            .sum::<f64>()
            .ln();
        total += lse - pos;
    }
    Ok(total / m as f64)
}

#[test]
fn nt_xent_is_symmetric_permutation_invariant_and_matches_a_pairwise_loop() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for case in 0..24 {
        let (n, d) = (1 + case % 6, 2 + case % 4);
        let t = [0.1, 0.2, 0.5, 1.0][case % 4];
        let z1 = randn(&mut rng, n, d)?;
        let z2 = randn(&mut rng, n, d)?;
        let l = scalar(&loss::nt_xent(&z1, &z2, t)?)?;
        let swapped = scalar(&loss::nt_xent(&z2, &z1, t)?)?;
        assert!(close(swapped, l, 1e-5), "case {case}: {swapped} vs {l}");
        // Joint permutation of the batch (a rotation by one plus a swap).
        let mut perm: Vec<u32> = (0..n as u32).collect();
        perm.rotate_left(1);
        if n > 2 {
            perm.swap(0, 2);
        }
        let idx = Tensor::from_vec(perm, (n,), &CPU)?;
        let permuted = scalar(&loss::nt_xent(
            &z1.index_select(&idx, 0)?,
            &z2.index_select(&idx, 0)?,
            t,
        )?)?;
        assert!(close(permuted, l, 1e-5), "case {case}: {permuted} vs {l}");
        let by_pairs = nt_xent_by_pairs(&z1, &z2, t)? as f32;
        assert!(
            close(l, by_pairs, 1e-5),
            "case {case}: {l} vs loop {by_pairs}"
        );
    }
    Ok(())
}

#[test]
fn info_nce_and_contrastive_distill_only_differentiate_the_online_inputs() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (q, k, queue) = (
        randn(&mut rng, 4, 8)?,
        randn(&mut rng, 4, 8)?,
        randn(&mut rng, 9, 8)?,
    );
    assert!(gets_no_gradient(&k, |k| loss::info_nce_queue(
        &q, k, &queue, 0.2
    ))?);
    assert!(gets_no_gradient(&queue, |queue| loss::info_nce_queue(
        &q, &k, queue, 0.2
    ))?);
    assert!(!gets_no_gradient(&q, |q| loss::info_nce_queue(
        q, &k, &queue, 0.2
    ))?);
    let (p2, o1, o2) = (
        randn(&mut rng, 4, 8)?,
        randn(&mut rng, 4, 8)?,
        randn(&mut rng, 4, 8)?,
    );
    assert!(gets_no_gradient(&o1, |o1| loss::contrastive_distill(
        &q, &p2, o1, &o2, 0.2
    ))?);
    assert!(!gets_no_gradient(&p2, |p2| loss::contrastive_distill(
        &q, p2, &o1, &o2, 0.2
    ))?);
    assert!(gets_no_gradient(&k, |t| loss::soft_ce(&q, t, 1.0))?);
    // One query, its key equal to it and K = 3 antipodal negatives: logits [1/t, -1/t x 3], so the
    // loss is log(1 + 3 exp(-2/t)).
    let q1 = q.narrow(0, 0, 1)?;
    let queue = Tensor::cat(&[q1.neg()?, q1.neg()?, q1.neg()?], 0)?;
    let l = scalar(&loss::info_nce_queue(
        &q1,
        &q1.affine(2.0, 0.0)?,
        &queue,
        0.5,
    )?)?;
    let expected = (1.0 + 3.0 * (-4.0f32).exp()).ln();
    assert!(close(l, expected, 1e-5), "{l} vs {expected}");
    Ok(())
}

#[test]
fn soft_ce_of_a_distribution_with_itself_is_its_entropy() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for case in 0..16 {
        let (n, c) = (1 + case % 5, 2 + case % 7);
        let t = [1.0, 2.0, 0.5, 4.0][case % 4];
        let x = randn(&mut rng, n, c)?.affine(3.0, 0.0)?;
        let got = scalar(&loss::soft_ce(&x, &x, t)?)?;
        let mut entropy = 0.0f64;
        for row in x.to_vec2::<f32>()? {
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 / t).exp()).collect();
            let z: f64 = e.iter().sum();
            entropy -= e.iter().map(|&v| v / z * (v / z).ln()).sum::<f64>();
        }
        let expected = (entropy / n as f64) as f32;
        assert!(
            close(got, expected, 1e-5),
            "case {case}: {got} vs {expected}"
        );
        // Gibbs: cross-entropy against another distribution is never below the entropy.
        let y = randn(&mut rng, n, c)?;
        assert!(scalar(&loss::soft_ce(&y, &x, t)?)? >= got - 1e-5);
    }
    Ok(())
}

#[test]
fn vicreg_is_the_weighted_sum_of_its_parts() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let z1 = randn(&mut rng, 6, 5)?;
    let z2 = randn(&mut rng, 6, 5)?;
    let parts = 2.0 * scalar(&loss::invariance(&z1, &z2)?)?
        + 3.0 * (scalar(&loss::variance(&z1)?)? + scalar(&loss::variance(&z2)?)?)
        + 0.5 * (scalar(&loss::covariance(&z1)?)? + scalar(&loss::covariance(&z2)?)?);
    let whole = scalar(&loss::vicreg(&z1, &z2, 2.0, 3.0, 0.5)?)?;
    assert!(close(whole, parts, 1e-6), "{whole} vs {parts}");
    assert_eq!(
        scalar(&loss::invariance(&z1, &z2)?)?,
        scalar(&loss::mse(&z1, &z2)?)?
    );
    // Spread-out features (std 10) pay no variance penalty; a collapsed batch pays 1 - sqrt(1e-4) = 0.99.
    assert_eq!(scalar(&loss::variance(&z1.affine(10.0, 0.0)?)?)?, 0.0);
    let collapsed = Tensor::ones((6, 5), DType::F32, &CPU)?;
    assert!(close(scalar(&loss::variance(&collapsed)?)?, 0.99, 1e-6));
    // A diagonal covariance has no covariance penalty.
    let diag = Tensor::from_vec(vec![1f32, 0., 0., 1., -1., 0., 0., -1.], (4, 2), &CPU)?;
    assert_eq!(scalar(&loss::covariance(&diag)?)?, 0.0);
    Ok(())
}

#[test]
fn barlow_twins_is_near_zero_for_identical_decorrelated_views() -> Result<()> {
    // Columns are orthogonal and centred, so C = diag(var / (var + eps)) ~ I.
    let z = Tensor::from_vec(vec![1f32, 1., 1., -1., -1., 1., -1., -1.], (4, 2), &CPU)?;
    let l = scalar(&loss::barlow_twins(&z, &z, 0.0051, 1.0)?)?;
    assert!(l < 1e-9, "{l}");
    // Anti-correlated views: C_dd = -1 -> on-diagonal term 4 per dimension.
    let l = scalar(&loss::barlow_twins(&z, &z.neg()?, 0.0051, 1.0)?)?;
    assert!(close(l, 8.0, 1e-4), "{l}");
    Ok(())
}

#[test]
fn every_loss_decreases_under_sgd_on_its_input() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let (n, d) = (8, 6);
    for (name, f) in pair_losses(&mut rng, n, d)? {
        let x = Var::from_tensor(&randn(&mut rng, n, d)?)?;
        let y = randn(&mut rng, n, d)?;
        let lr = if name == "vicreg" { 0.01 } else { 0.1 };
        let mut opt = SGD::new(vec![x.clone()], lr)?;
        let first = scalar(&f(x.as_tensor(), &y)?)?;
        for _ in 0..20 {
            let l = f(x.as_tensor(), &y)?;
            opt.backward_step(&l)?;
        }
        let last = scalar(&f(x.as_tensor(), &y)?)?;
        assert!(last < first, "{name}: {first} -> {last}");
    }
    Ok(())
}

#[test]
fn losses_also_run_in_f64() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (n, d) = (5, 4);
    for (name, f) in pair_losses(&mut rng, n, d)? {
        let x = randn(&mut rng, n, d)?;
        let y = randn(&mut rng, n, d)?;
        // The fixed extra inputs (queue, o1, o2) are f32, so only the pure pair losses run in f64.
        if matches!(name, "info_nce_queue" | "contrastive_distill") {
            continue;
        }
        let v32 = scalar(&f(&x, &y)?)?;
        let v64 = f(&x.to_dtype(DType::F64)?, &y.to_dtype(DType::F64)?)?;
        assert_eq!(v64.dtype(), DType::F64, "{name}");
        assert!(close(scalar(&v64)?, v32, 1e-5), "{name}");
    }
    Ok(())
}

#[test]
fn info_nce_queue_matches_a_host_loop_even_with_sharp_temperatures() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for case in 0..12 {
        let (n, d, k) = (1 + case % 5, 2 + case % 6, 1 + 3 * case);
        let t = [0.01, 0.07, 0.2, 1.0][case % 4];
        let (q, key, queue) = (
            randn(&mut rng, n, d)?,
            randn(&mut rng, n, d)?,
            randn(&mut rng, k, d)?,
        );
        let got = scalar(&loss::info_nce_queue(&q, &key, &queue, t)?)?;
        let unit = |t: &Tensor| -> Result<Vec<Vec<f64>>> {
            Ok(t.to_dtype(DType::F64)?
                .to_vec2::<f64>()?
                .into_iter()
                .map(|r| {
                    let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
                    r.into_iter().map(|x| x / norm).collect()
                })
                .collect())
        };
        let (q, key, queue) = (unit(&q)?, unit(&key)?, unit(&queue)?);
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / t;
        let mut total = 0.0;
        for i in 0..n {
            let logits: Vec<f64> = std::iter::once(dot(&q[i], &key[i]))
                .chain(queue.iter().map(|r| dot(&q[i], r)))
                .collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
            total += lse - logits[0];
        }
        let expected = (total / n as f64) as f32;
        assert!(
            got.is_finite() && close(got, expected, 1e-4),
            "case {case} (t = {t}): {got} vs {expected}"
        );
    }
    Ok(())
}
