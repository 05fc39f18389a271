//! The evaluation protocols run after each task (one row of each accuracy matrix per evaluation).

use crate::config::ExperimentConfig;
use crate::error::CoreError;
use crate::network::Online;
use candle_core::{Device, Tensor};
use kaizen_data::{eval_batch, Dataset, TaskStream};
use kaizen_metrics::{
    argmax_predictions, per_task_accuracy, seen_class_mask, EvalData as MetricData, KnnConfig,
    LinearProbeConfig,
};
use kaizen_models::BnMode;

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

/// One protocol's row of an evaluation and the seconds it took.
#[derive(Debug, Clone)]
pub struct ProtocolRow {
    /// The protocol.
    pub protocol: Protocol,
    /// One cell per task.
    pub row: Row,
    /// Seconds spent in this protocol (after the shared features).
    pub seconds: f64,
}

/// What one evaluation gives: a row per protocol and the seconds of the shared feature extraction.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Rows in the order of the protocols asked for.
    pub rows: Vec<ProtocolRow>,
    /// Seconds spent extracting the test (and bank) features shared by the protocols.
    pub features_seconds: f64,
}

/// Evaluate the model at `point` with every protocol in `protocols`; returns one row of T cells per protocol.
pub fn evaluate_after(
    ed: &EvalContext<'_>,
    point: EvalPoint,
    protocols: &[Protocol],
) -> Result<Evaluation, CoreError> {
    let started = std::time::Instant::now();
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
    let features_seconds = started.elapsed().as_secs_f64();
    for &p in protocols {
        let t0 = std::time::Instant::now();
        let row = match p {
            Protocol::Classifier | Protocol::ClassifierSeen => {
                classifier_row(ed, p, &test_feats, &test_labels, &task_of_class, seen)?
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
                bank_row(ed, p, &md, seen)?
            }
        };
        out.push(ProtocolRow {
            protocol: p,
            row,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(Evaluation {
        rows: out,
        features_seconds,
    })
}

/// The classifier's row: argmax over all classes, or over the seen classes (`classifier_seen`, whose cells
/// of unseen tasks are undefined).
fn classifier_row(
    ed: &EvalContext<'_>,
    p: Protocol,
    test_feats: &Tensor,
    test_labels: &[u16],
    task_of_class: &[usize],
    seen: usize,
) -> Result<Row, CoreError> {
    let t_count = ed.stream.num_tasks();
    let logits = ed.online.classifier.forward(test_feats, BnMode::Eval)?;
    let mask = (p == Protocol::ClassifierSeen).then(|| seen_class_mask(task_of_class, seen));
    if mask.as_ref().is_some_and(|m| !m.iter().any(|&b| b)) {
        return Ok(vec![None; t_count]);
    }
    let preds = argmax_predictions(&logits, mask.as_deref())?;
    let mut row = per_task_accuracy(&preds, test_labels, task_of_class, t_count)?;
    if p == Protocol::ClassifierSeen {
        for cell in row.iter_mut().skip(seen) {
            *cell = None;
        }
    }
    Ok(row)
}

/// The kNN or linear-probe row; cells j >= seen use the bank / probe of tasks 0..=j on task j's images
/// (forward transfer).
fn bank_row(
    ed: &EvalContext<'_>,
    p: Protocol,
    md: &MetricData<'_>,
    seen: usize,
) -> Result<Row, CoreError> {
    let e = &ed.cfg.eval;
    if p == Protocol::Knn {
        let knn = KnnConfig {
            k: e.knn_k,
            temperature: e.knn_temperature,
            ..KnnConfig::default()
        };
        return Ok(md.knn_row_lookahead(seen, &knn)?);
    }
    let lin = LinearProbeConfig {
        epochs: e.linear_epochs,
        lr: e.linear_lr,
        seed: ed.cfg.seed,
        ..LinearProbeConfig::default()
    };
    Ok(md.linear_probe_row_lookahead(seen, &lin)?)
}
