//! Evaluation after each task and the result files of a run.
//!
//! One row per protocol after task i: cell (i, j) = top-1 accuracy on task j's test images, over all classes
//! of the stream (single head), except `classifier_seen` (classes of the tasks trained so far; `None` for
//! j > i). For `knn` and `linear`, the bank / probe training set is the train features of tasks
//! 0..=max(i, j): the seen tasks for j <= i (class-incremental), plus the evaluated task for j > i, so that
//! R[j-1][j] measures how well the representation already separates task j (forward transfer), with the
//! random model's b_j measured the same way. Features come from the backbone in eval mode.

use crate::config::ExperimentConfig;
use crate::error::CoreError;
use crate::network::Online;
use candle_core::{Device, Tensor};
use kaizen_data::{eval_batch, Dataset, TaskStream};
use kaizen_metrics::report::{ProtocolResult, ReportInput, SummaryFile};
use kaizen_metrics::{
    argmax_predictions, per_task_accuracy, seen_class_mask, summarize, AccuracyMatrix,
    EvalData as MetricData, KnnConfig, LinearProbeConfig,
};
use kaizen_models::BnMode;
use std::collections::BTreeMap;
use std::path::Path;

/// An evaluation protocol (one accuracy matrix each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// The model's classifier, argmax over all classes.
    Classifier,
    /// The model's classifier, argmax over the classes of the tasks trained so far.
    ClassifierSeen,
    /// Weighted kNN on backbone features.
    Knn,
    /// Linear probe on frozen backbone features.
    Linear,
}

impl Protocol {
    /// Name used in file names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Classifier => "classifier",
            Protocol::ClassifierSeen => "classifier_seen",
            Protocol::Knn => "knn",
            Protocol::Linear => "linear",
        }
    }
}

/// One row of an accuracy matrix: accuracy per task (None where undefined).
pub type Row = Vec<Option<f64>>;

/// What an evaluation reads.
pub struct EvalContext<'a> {
    /// The dataset.
    pub data: &'a Dataset,
    /// The stream (task of each class).
    pub stream: &'a TaskStream,
    /// The model.
    pub online: &'a Online,
    /// Device.
    pub device: &'a Device,
    /// Config (eval section).
    pub cfg: &'a ExperimentConfig,
    /// Developer tool: also write the test features ([`crate::dump`]).
    pub dump: Option<&'a crate::dump::FeatureDump>,
}

fn features(
    ed: &EvalContext<'_>,
    split: &kaizen_data::Split,
    idx: &[u32],
) -> Result<Tensor, CoreError> {
    let bs = ed.cfg.eval.batch_size;
    let mut parts = Vec::new();
    for chunk in idx.chunks(bs) {
        let (x, _) = eval_batch(split, chunk, &ed.data.mean, &ed.data.std, ed.device)?;
        parts.push(ed.online.backbone.forward(&x, BnMode::Eval)?.detach());
    }
    if parts.is_empty() {
        return Err(CoreError::Invalid("evaluation on an empty split".into()));
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// First `n` indices of each class of a split (all when n = 0), in dataset order.
fn capped_indices(split: &kaizen_data::Split, num_classes: usize, n: usize) -> Vec<u32> {
    let mut seen = vec![0usize; num_classes];
    (0..split.len() as u32)
        .filter(|&i| {
            let c = split.label(i as usize) as usize;
            seen[c] += 1;
            n == 0 || seen[c] <= n
        })
        .collect()
}

/// When in the stream an evaluation row is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalPoint {
    /// Before any training (the `random` baseline's row: the initial model).
    BeforeTraining,
    /// After training through this task index.
    AfterTask(usize),
}

impl EvalPoint {
    /// How many tasks of the stream have been trained at this point.
    pub fn tasks_seen(self) -> usize {
        match self {
            EvalPoint::BeforeTraining => 0,
            EvalPoint::AfterTask(t) => t + 1,
        }
    }
}

/// Evaluate the model at `point` with every protocol in `protocols`; returns one row of T cells per protocol.
pub fn evaluate_after(
    ed: &EvalContext<'_>,
    point: EvalPoint,
    protocols: &[Protocol],
) -> Result<Vec<(Protocol, Row)>, CoreError> {
    let t_count = ed.stream.num_tasks();
    let c = ed.data.num_classes;
    let task_of_class: Vec<usize> = (0..c as u16)
        .map(|k| {
            ed.stream.task_of_class(k).ok_or_else(|| {
                CoreError::Invalid(format!("class {k} belongs to no task of the stream"))
            })
        })
        .collect::<Result<_, _>>()?;
    let test_idx: Vec<u32> = (0..ed.data.test.len() as u32).collect();
    let test_labels = ed.data.test.labels().to_vec();
    let test_feats = features(ed, &ed.data.test, &test_idx)?;
    if let (Some(dump), EvalPoint::AfterTask(t)) = (ed.dump, point) {
        dump.eval(t, &test_feats, &test_labels)?;
    }
    let seen = point.tasks_seen();
    let mut out = Vec::new();
    let needs_bank = protocols
        .iter()
        .any(|p| matches!(p, Protocol::Knn | Protocol::Linear));
    let bank = if needs_bank {
        let idx = capped_indices(&ed.data.train, c, ed.cfg.eval.bank_per_class);
        let labels: Vec<u16> = idx
            .iter()
            .map(|&i| ed.data.train.label(i as usize))
            .collect();
        Some((features(ed, &ed.data.train, &idx)?, labels))
    } else {
        None
    };
    for &p in protocols {
        let row = match p {
            Protocol::Classifier | Protocol::ClassifierSeen => {
                let logits = ed.online.classifier.forward(&test_feats, BnMode::Eval)?;
                let mask =
                    (p == Protocol::ClassifierSeen).then(|| seen_class_mask(&task_of_class, seen));
                if mask.as_ref().is_some_and(|m| !m.iter().any(|&b| b)) {
                    vec![None; t_count]
                } else {
                    let preds = argmax_predictions(&logits, mask.as_deref())?;
                    let mut row = per_task_accuracy(&preds, &test_labels, &task_of_class, t_count)?;
                    if p == Protocol::ClassifierSeen {
                        for (j, cell) in row.iter_mut().enumerate() {
                            if j >= seen {
                                *cell = None;
                            }
                        }
                    }
                    row
                }
            }
            Protocol::Knn | Protocol::Linear => {
                let Some((bank_feats, bank_labels)) = &bank else {
                    return Err(CoreError::Invalid("internal: no feature bank".into()));
                };
                let md = MetricData {
                    train_features: bank_feats,
                    train_labels: bank_labels,
                    test_features: &test_feats,
                    test_labels: &test_labels,
                    task_of_class: &task_of_class,
                    num_tasks: t_count,
                };
                let knn = KnnConfig {
                    k: ed.cfg.eval.knn_k,
                    temperature: ed.cfg.eval.knn_temperature,
                    ..KnnConfig::default()
                };
                let lin = LinearProbeConfig {
                    epochs: ed.cfg.eval.linear_epochs,
                    lr: ed.cfg.eval.linear_lr,
                    seed: ed.cfg.seed,
                    ..LinearProbeConfig::default()
                };
                // Cells j >= seen use the bank / probe of tasks 0..=j on task j's images (forward transfer).
                if p == Protocol::Knn {
                    md.knn_row_lookahead(seen, &knn)?
                } else {
                    md.linear_probe_row_lookahead(seen, &lin)?
                }
            }
        };
        out.push((p, row));
    }
    Ok(out)
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String, CoreError> {
    serde_json::to_string_pretty(v).map_err(|e| CoreError::Invalid(e.to_string()))
}

/// How a finished run's results are written: `single_row` for strategies with one row per protocol, and the
/// resolved feature distiller's name (for the report).
pub struct ResultsLayout<'a> {
    /// One row per protocol ([`crate::strategy::Strategy::single_row`]).
    pub single_row: bool,
    /// The feature distiller's name.
    pub distiller: &'a str,
}

/// Write `acc_matrix_<protocol>.csv`, `summary.json` and `report.md` (+ plots) for a finished run.
/// Single-row runs (joint, random) have one row per protocol: they write `<strategy>_accuracy_<protocol>.csv` (the
/// one-line format `kaizen metrics --joint / --random-baseline` reads) and a summary of per-task accuracies.
pub fn write_results(
    dir: &Path,
    cfg: &ExperimentConfig,
    stream: &TaskStream,
    data: &Dataset,
    matrices: &BTreeMap<String, Vec<Vec<Option<f64>>>>,
    layout: &ResultsLayout<'_>,
) -> Result<(), CoreError> {
    if layout.single_row {
        let mut protocols = serde_json::Map::new();
        for (p, rows) in matrices {
            let row = rows.last().cloned().unwrap_or_default();
            let vals: Vec<String> = row
                .iter()
                .map(|v| v.map_or_else(|| "nan".to_string(), |x| format!("{x}")))
                .collect();
            let path = dir.join(format!("{}_accuracy_{p}.csv", cfg.strategy));
            crate::run_dir::write_atomic(&path, format!("{}\n", vals.join(",")).as_bytes())?;
            let defined: Vec<f64> = row.iter().flatten().copied().collect();
            let mean =
                (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
            protocols.insert(
                p.clone(),
                serde_json::json!({"per_task_accuracy": row, "mean_accuracy": mean}),
            );
        }
        let summary = serde_json::json!({"strategy": cfg.strategy, "protocols": protocols});
        crate::run_dir::write_atomic(
            &dir.join(crate::run_dir::files::SUMMARY),
            json_text(&summary)?.as_bytes(),
        )?;
        let mut md = format!(
            "# {} run\n\nseed {}, dataset `{}`, class order per task: {}\n\n| protocol | {} | mean |\n|---|{}---|\n",
            cfg.strategy,
            cfg.seed,
            cfg.data.dataset,
            class_order_text(stream),
            (0..stream.num_tasks()).map(|j| format!("task {j}")).collect::<Vec<_>>().join(" | "),
            "---|".repeat(stream.num_tasks())
        );
        for (p, v) in &protocols {
            let row: Vec<String> = v["per_task_accuracy"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_f64().map_or("-".into(), |f| format!("{f:.3}")))
                        .collect()
                })
                .unwrap_or_default();
            let mean = v["mean_accuracy"]
                .as_f64()
                .map_or("-".into(), |f| format!("{f:.3}"));
            md.push_str(&format!("| {p} | {} | {mean} |\n", row.join(" | ")));
        }
        crate::run_dir::write_atomic(&dir.join("report.md"), md.as_bytes())?;
        return Ok(());
    }
    let mut results = Vec::new();
    for (p, rows) in matrices {
        let m = AccuracyMatrix::from_rows(rows.clone())?;
        kaizen_metrics::write_csv(&dir.join(format!("acc_matrix_{p}.csv")), &m)?;
        results.push(ProtocolResult::new(p, m, None, None)?);
    }
    kaizen_metrics::report::write_summary_json(
        &dir.join(crate::run_dir::files::SUMMARY),
        &results,
    )?;
    let input = ReportInput {
        run_name: dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into()),
        strategy: cfg.strategy.to_string(),
        dataset: cfg.data.dataset.clone(),
        seed: cfg.seed,
        class_order: (0..stream.num_tasks())
            .map(|t| stream.task_classes(t).to_vec())
            .collect(),
        config_text: crate::run_dir::config_toml(cfg)?,
        notes: vec![
            ("method".into(), cfg.method.to_string()),
            ("distiller".into(), layout.distiller.to_string()),
            ("train images".into(), data.train.len().to_string()),
            ("test images".into(), data.test.len().to_string()),
        ],
        protocols: results,
    };
    kaizen_metrics::report::write_run_report(dir, &input)?;
    Ok(())
}

fn class_order_text(stream: &TaskStream) -> String {
    (0..stream.num_tasks())
        .map(|t| format!("{:?}", stream.task_classes(t)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// After `kaizen run --compare`: write `comparison.md` and `comparison.json` for the runs `DIR/<name>/`.
/// When a `random` run is among them its per-task accuracies become the forward-transfer baseline of the
/// others, and a `joint` run's become the reference of intransigence (same protocol each).
pub fn compare_run_dirs(dir: &Path, names: &[String]) -> Result<(), CoreError> {
    let read_vec = |strategy: &str, protocol: &str| -> Option<Vec<f64>> {
        if !names.iter().any(|n| n == strategy) {
            return None;
        }
        let path = dir
            .join(strategy)
            .join(format!("{strategy}_accuracy_{protocol}.csv"));
        kaizen_metrics::read_vector_csv(&path, None).ok()
    };
    let mut runs = Vec::new();
    for name in names {
        if name == "joint" || name == "random" {
            continue;
        }
        let run_dir = dir.join(name);
        let mut per_protocol = BTreeMap::new();
        let entries = std::fs::read_dir(&run_dir).map_err(|e| CoreError::io(&run_dir, e))?;
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for path in files {
            let Some(stem) = path.file_name().and_then(|s| s.to_str()) else {
                continue;
            };
            let Some(protocol) = stem
                .strip_prefix("acc_matrix_")
                .and_then(|s| s.strip_suffix(".csv"))
            else {
                continue;
            };
            let m = kaizen_metrics::read_matrix_csv(&path)?;
            let b = read_vec("random", protocol);
            let a = read_vec("joint", protocol);
            per_protocol.insert(
                protocol.to_string(),
                summarize(&m, b.as_deref(), a.as_deref())?,
            );
        }
        runs.push((
            name.clone(),
            SummaryFile {
                protocols: per_protocol,
            },
        ));
    }
    kaizen_metrics::report::write_comparison(dir, &runs)?;
    Ok(())
}

/// The folder of seed `seed` inside a multi-seed run directory (`DIR/seed-<s>`).
pub fn seed_dir(dir: &Path, seed: u64) -> std::path::PathBuf {
    dir.join(format!("seed-{seed}"))
}

/// After `kaizen run --seeds`: aggregate `DIR/seed-<s>/comparison.json` of every seed into `DIR/comparison.md` and
/// `DIR/comparison.json` (mean ± sample std of every metric, per protocol and strategy, with the per-seed values).
pub fn write_seed_comparison(dir: &Path, seeds: &[u64], command: &str) -> Result<(), CoreError> {
    let per_seed = seeds
        .iter()
        .map(|&s| {
            kaizen_metrics::seeds::ComparisonFile::read(&seed_dir(dir, s).join("comparison.json"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let c = kaizen_metrics::seeds::aggregate(seeds, &per_seed)?;
    kaizen_metrics::seeds::write_seed_comparison(dir, &c, command)?;
    Ok(())
}
