//! Two Kaizen training steps against their PyTorch twin (`scripts/torch_step_twin.py`).
//!
//! The fixture `tests/fixtures/step_twin.safetensors` (or the file named by `KAIZEN_STEP_TWIN`) holds the initial
//! online model, BYOL momentum target and frozen previous-task model, two batches of two views with labels, and what
//! PyTorch computed (in float64, stored rounded to float32) for two steps of each case of its settings. For every
//! case this test rebuilds the run from the fixture's metadata alone (a partial `ExperimentConfig` in serde JSON, the
//! batch channels, the number of classes, the task, the steps per epoch and the steps), loads the initial tensors,
//! and runs each step through the public API as `Trainer::step` does: `step::loss_terms` -> `step::weighted_total`
//! -> `backward` -> `Optimizer::step` (from `step::build_optimizer`, at the `WarmupCosine` lr of the step) ->
//! `SslMethod::after_step` (the EMA at the cosine tau). It checks
//! - that both sides have the same tensor names (online, target, frozen; e.g. no `num_batches_tracked`), and our
//!   lr and tau against the twin's;
//! - every unweighted loss term (`ssl`, `cls_ce`, `fe_kd`, `cls_kd`) and the weighted total, at every step;
//! - the gradient of every trainable online tensor, at the steps the case stores;
//! - every online tensor (BN running statistics included) and every target tensor after the optimiser step and the
//!   EMA, at the steps the case stores (the online model always after the last step).
//!
//! Relative error of a tensor: `max|ours - torch| / max(max|torch|, 1e-2 * S)`, where `S` is the largest `max|torch|`
//! among the tensors of its snapshot (the loss terms and total of one step, the gradients of one step, the online
//! tensors after one step, the target tensors after one step). Tolerance: 1e-4. The floor matters only for tensors
//! below 1% of their snapshot's largest: float32 rounding error in a backward pass scales with the signals it
//! carries, not with each result, and some gradients are exactly 0 in exact arithmetic (a Linear bias followed by
//! BatchNorm) and pure rounding noise in float32. The twin refuses to write a fixture on which its own float32 run,
//! or its float64 run from inputs perturbed at float32 rounding level, exceeds a quarter of this tolerance; the
//! numbers it measured are printed here (`--nocapture`) next to ours. A failure lists every tensor over the
//! tolerance, by name, with its error.
//!
//! Regenerate the fixture (torch install: see the script's docstring), from the repository root:
//! `~/.venv-torch/bin/python scripts/torch_step_twin.py`, then
//! `cargo test --release -p kaizen-core --test step_twin -- --nocapture` (prints the largest errors).

use anyhow::{anyhow, bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use kaizen_core::config::{ExperimentConfig, TeacherBn};
use kaizen_core::data::{build_stream, seen_classes};
use kaizen_core::network::{self, Frozen};
use kaizen_core::optim::build_optimizer;
use kaizen_core::step::{self, StepSettings};
use kaizen_core::terms::StepBatch;
use kaizen_core::{Registry, RunModels};
use kaizen_models::ema::cosine_tau;
use kaizen_models::optim::WarmupCosine;
use kaizen_models::BnMode;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

/// Largest relative error allowed for any tensor.
const TOL: f64 = 1e-4;
/// The floor of the denominator, as a fraction of the largest tensor of the snapshot.
const FLOOR_FRACTION: f64 = 1e-2;
/// Agreement required between our lr / tau schedule values and the twin's (both float64 formulas).
const SCHEDULE_TOL: f64 = 1e-12;

struct Fixture {
    tensors: HashMap<String, Tensor>,
    settings: Value,
}

impl Fixture {
    fn load() -> Result<Self> {
        let path = std::env::var_os("KAIZEN_STEP_TWIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/step_twin.safetensors")
            });
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let settings = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("settings"))
            .ok_or_else(|| anyhow!("{}: no `settings` in __metadata__", path.display()))?;
        let settings: Value = serde_json::from_str(settings).context("parsing settings JSON")?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
        Ok(Self { tensors, settings })
    }

    fn get(&self, key: &str) -> Result<&Tensor> {
        self.tensors
            .get(key)
            .ok_or_else(|| anyhow!("fixture has no tensor `{key}`"))
    }

    /// The tensors under `prefix`, keyed by the rest of their name.
    fn under(&self, prefix: &str) -> BTreeMap<String, Tensor> {
        self.tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(prefix).map(|n| (n.to_string(), t.clone())))
            .collect()
    }

    /// The initial tensors of `group` (`online`, `target`, `frozen`) for case `case`: the shared `init.<group>.*`,
    /// except that the case's own `init.<case>.<group>.<head>.*` tensors replace every shared tensor of that head
    /// (`<head>`: the first name component, e.g. `classifier`).
    fn initial(&self, case: &str, group: &str) -> HashMap<String, Tensor> {
        let over = self.under(&format!("init.{case}.{group}."));
        let heads: BTreeSet<&str> = over.keys().filter_map(|k| k.split('.').next()).collect();
        let mut all: HashMap<String, Tensor> = self
            .under(&format!("init.{group}."))
            .into_iter()
            .filter(|(k, _)| !heads.contains(k.split('.').next().unwrap_or_default()))
            .collect();
        all.extend(over);
        all
    }

    fn scalar(&self, key: &str) -> Result<f64> {
        Ok(self
            .get(key)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?[0])
    }
}

fn usize_at(v: &Value, path: &[&str]) -> Result<usize> {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(p)
            .ok_or_else(|| anyhow!("settings: missing `{}`", path.join(".")))?;
    }
    let n = cur
        .as_u64()
        .ok_or_else(|| anyhow!("settings: `{}` is not an integer", path.join(".")))?;
    Ok(usize::try_from(n)?)
}

/// The steps of `case.stored.<what>`.
fn stored_steps(case: &Value, what: &str) -> Result<BTreeSet<usize>> {
    case["stored"][what]
        .as_array()
        .ok_or_else(|| anyhow!("settings: case has no `stored.{what}` list"))?
        .iter()
        .map(|s| {
            s.as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| anyhow!("settings: bad step in `stored.{what}`"))
        })
        .collect()
}

/// Largest error per category, and every failure.
#[derive(Default)]
struct Report {
    max: BTreeMap<String, (f64, String)>,
    failures: Vec<String>,
}

impl Report {
    fn fail(&mut self, msg: String) {
        self.failures.push(msg);
    }

    /// Compare one snapshot (`ours` and `theirs` keyed by name; the name sets must be equal).
    fn snapshot(
        &mut self,
        category: &str,
        label: &str,
        ours: &BTreeMap<String, Tensor>,
        theirs: &BTreeMap<String, Tensor>,
    ) -> Result<()> {
        let a: BTreeSet<&String> = ours.keys().collect();
        let b: BTreeSet<&String> = theirs.keys().collect();
        for n in a.difference(&b) {
            self.fail(format!("{label}: `{n}` is ours but not in the fixture"));
        }
        for n in b.difference(&a) {
            self.fail(format!("{label}: `{n}` is in the fixture but not ours"));
        }
        let mut scale = 0.0f64;
        let mut prepared = Vec::new();
        for (name, t) in theirs {
            let Some(o) = ours.get(name) else { continue };
            let t64 = t.to_dtype(DType::F64)?.flatten_all()?;
            let o64 = o.to_dtype(DType::F64)?.flatten_all()?;
            // A loss is a rank-0 tensor here and a (1,) tensor in the fixture.
            let scalars = t.elem_count() == 1 && o.elem_count() == 1;
            if t.dims() != o.dims() && !scalars {
                self.fail(format!(
                    "{label}: `{name}` has shape {:?}, the fixture {:?}",
                    o.dims(),
                    t.dims()
                ));
                continue;
            }
            let tmax = t64.abs()?.max_all()?.to_scalar::<f64>()?;
            scale = scale.max(tmax);
            prepared.push((name, o64, t64, tmax));
        }
        let floor = (FLOOR_FRACTION * scale).max(f64::MIN_POSITIVE);
        for (name, o64, t64, tmax) in prepared {
            let diff = (&o64 - &t64)?.abs()?.max_all()?.to_scalar::<f64>()?;
            let rel = diff / tmax.max(floor);
            if !rel.is_finite() || rel > TOL {
                self.fail(format!(
                    "{label}: `{name}` max relative error {rel:.3e} (max |ours - torch| {diff:.3e}, \
                     max |torch| {tmax:.3e}, floor {floor:.3e})"
                ));
            }
            let entry = self
                .max
                .entry(category.to_string())
                .or_insert((0.0, String::new()));
            if rel > entry.0 || !rel.is_finite() {
                *entry = (rel, format!("{label} `{name}`"));
            }
        }
        Ok(())
    }
}

fn sorted_map(v: Vec<(String, Tensor)>, strip: &str) -> Result<BTreeMap<String, Tensor>> {
    v.into_iter()
        .map(|(k, t)| {
            let n = k
                .strip_prefix(strip)
                .ok_or_else(|| anyhow!("tensor `{k}` lacks the prefix `{strip}`"))?;
            Ok((n.to_string(), t))
        })
        .collect()
}

fn run_case(fx: &Fixture, case: &Value, report: &mut Report) -> Result<()> {
    let s = &fx.settings;
    let name = case["name"]
        .as_str()
        .ok_or_else(|| anyhow!("settings: a case without a name"))?;
    let cfg: ExperimentConfig = serde_json::from_value(case["config"].clone())
        .with_context(|| format!("case {name}: config"))?;
    Registry::builtin().validate(&cfg)?;
    let channels = usize_at(s, &["batch", "channels"])?;
    let num_classes = usize_at(s, &["num_classes"])?;
    let task = usize_at(s, &["task"])?;
    let spe = usize_at(s, &["steps_per_epoch"])?;
    let steps = usize_at(s, &["steps"])?;
    let device = Device::Cpu;

    // Models, as Trainer::new and train_task build them, then overwritten with the fixture's tensors.
    let mut parts = RunModels::build(&Registry::builtin(), &cfg, channels, num_classes, &device)?;
    let init_online = fx.initial(name, "online");
    let ours: BTreeSet<String> = network::sorted_tensors(&parts.online.varmap)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let theirs: BTreeSet<String> = init_online.keys().cloned().collect();
    ensure!(
        ours == theirs,
        "case {name}: online tensor names differ: ours only {:?}, fixture only {:?}",
        ours.difference(&theirs).collect::<Vec<_>>(),
        theirs.difference(&ours).collect::<Vec<_>>()
    );
    network::load_vars(&parts.online.varmap, &init_online, "")?;
    let init_target: HashMap<String, Tensor> = fx
        .initial(name, "target")
        .into_iter()
        .map(|(k, t)| (format!("target.{k}"), t))
        .collect();
    let target_names: BTreeSet<String> =
        parts.method.state()?.into_iter().map(|(k, _)| k).collect();
    let fixture_names: BTreeSet<String> = init_target.keys().cloned().collect();
    ensure!(
        target_names == fixture_names,
        "case {name}: target tensor names differ: ours {target_names:?}, fixture {fixture_names:?}"
    );
    parts.method.load_state(&init_target)?;
    let frozen_tensors = fx.initial(name, "frozen");
    let frozen_names: BTreeSet<&String> = frozen_tensors.keys().collect();
    let expected_frozen: BTreeSet<&String> = ours
        .iter()
        .filter(|n| {
            ["backbone.", "projector.", "classifier."]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    ensure!(
        frozen_names == expected_frozen,
        "case {name}: the frozen tensors are not the online backbone + projector + classifier names"
    );
    let teacher = match cfg.train.teacher_bn {
        TeacherBn::Train => BnMode::BatchStats,
        TeacherBn::Eval => BnMode::Eval,
    };
    let frozen = Frozen::from_tensors(frozen_tensors, &parts.spec, teacher, &device)?;
    let stream = build_stream(&cfg, num_classes)?;
    let seen = seen_classes(&stream, 0..task + 1);
    let settings = StepSettings {
        seen: &seen,
        classifier_detach: cfg.train.classifier_detach,
    };
    let mut optimizer = build_optimizer(&cfg.train, &parts.online);
    // The schedule of Trainer::train_task.
    let total_steps = spe * cfg.train.epochs;
    let warmup = (cfg.train.warmup_epochs * spe as f64).round() as usize;
    let schedule = WarmupCosine {
        base_lr: cfg.train.lr,
        warmup_steps: warmup.min(total_steps),
        total_steps,
        warmup_start_lr: cfg.train.warmup_start_lr,
        min_lr: 0.0,
    };

    let (grad_steps, online_steps, target_steps) = (
        stored_steps(case, "grad")?,
        stored_steps(case, "online")?,
        stored_steps(case, "target")?,
    );
    ensure!(
        online_steps.contains(&(steps - 1)),
        "case {name}: the online model after the last step must be stored"
    );
    for k in 0..steps {
        let pre = format!("expect.{name}.step{k}");
        let label = format!("case {name} step {k}");
        let lr = schedule.lr(k);
        let tau = cosine_tau(cfg.train.base_tau, cfg.train.final_tau, k + 1, total_steps);
        for (what, ours) in [("lr", lr), ("tau", tau)] {
            let theirs = fx.scalar(&format!("{pre}.{what}"))?;
            if (ours - theirs).abs() > SCHEDULE_TOL * theirs.abs().max(1.0) {
                report.fail(format!("{label}: {what} {ours} but the twin used {theirs}"));
            }
        }
        let view1 = fx.get(&format!("batch{k}.view1"))?;
        let view2 = fx.get(&format!("batch{k}.view2"))?;
        let labels = fx.get(&format!("batch{k}.labels"))?;
        let terms = {
            let (models, terms) = parts.step_parts(Some(&frozen));
            let batch = StepBatch {
                view1,
                view2,
                labels,
            };
            step::loss_terms(models, terms, &batch, &settings)?
        };
        let (total, _) = step::weighted_total(&terms, task, k)?;
        let mut ours: BTreeMap<String, Tensor> = terms
            .iter()
            .map(|t| (format!("loss.{}", t.name), t.loss.clone()))
            .collect();
        ours.insert("total".into(), total.clone());
        let mut theirs = fx.under(&format!("{pre}.loss."));
        theirs = theirs
            .into_iter()
            .map(|(k, t)| (format!("loss.{k}"), t))
            .collect();
        theirs.insert("total".into(), fx.get(&format!("{pre}.total"))?.clone());
        report.snapshot(
            "loss terms and total",
            &format!("{label} loss"),
            &ours,
            &theirs,
        )?;

        let grads = total.backward()?;
        if grad_steps.contains(&k) {
            let mut ours = BTreeMap::new();
            for (n, var) in kaizen_models::params::trainable(&parts.online.varmap, "") {
                match grads.get(var.as_tensor()) {
                    Some(g) => {
                        ours.insert(n, g.clone());
                    }
                    None => report.fail(format!("{label}: `{n}` received no gradient")),
                }
            }
            let theirs = fx.under(&format!("{pre}.grad."));
            report.snapshot("gradients", &format!("{label} grad"), &ours, &theirs)?;
        }
        optimizer.step(&grads, lr)?;
        parts.method.after_step(&parts.online, k + 1, total_steps)?;
        if online_steps.contains(&k) {
            let ours = sorted_map(network::sorted_tensors(&parts.online.varmap)?, "")?;
            let theirs = fx.under(&format!("{pre}.online."));
            let category = format!("online tensors after step {k}");
            report.snapshot(&category, &format!("{label} online"), &ours, &theirs)?;
        }
        if target_steps.contains(&k) {
            let ours = sorted_map(parts.method.state()?, "target.")?;
            let theirs = fx.under(&format!("{pre}.target."));
            let category = format!("target tensors after step {k}");
            report.snapshot(&category, &format!("{label} target"), &ours, &theirs)?;
        }
    }
    Ok(())
}

#[test]
fn two_steps_match_the_pytorch_twin() -> Result<()> {
    let fx = Fixture::load()?;
    ensure!(
        fx.settings["format"] == 1,
        "fixture format {} (this test reads format 1)",
        fx.settings["format"]
    );
    let cases = fx.settings["cases"]
        .as_array()
        .ok_or_else(|| anyhow!("settings: no `cases` list"))?
        .clone();
    ensure!(!cases.is_empty(), "settings: no case");
    let mut report = Report::default();
    for case in &cases {
        run_case(&fx, case, &mut report)?;
    }
    println!(
        "step twin: {} cases, largest relative error per category:",
        cases.len()
    );
    for (category, (rel, at)) in &report.max {
        println!("  {category:<32} {rel:.3e}  ({at})");
    }
    if let Some(c) = fx.settings.get("conditioning") {
        println!(
            "the twin's own float32 run and its float64 run from jittered inputs, same metric: {c}"
        );
    }
    if !report.failures.is_empty() {
        bail!(
            "{} tensors differ from the PyTorch twin by more than {TOL:e} (relative):\n  {}",
            report.failures.len(),
            report.failures.join("\n  ")
        );
    }
    Ok(())
}
