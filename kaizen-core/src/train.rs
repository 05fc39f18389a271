//! The task -> epoch -> step loop, checkpoints, resume and the run directory.
//!
//! Life of one task t: snapshot the frozen previous model (t >= 1, distilling strategies) -> seeded
//! batch order -> per step: current batch (+ replay batch) -> two augmented views -> the four loss terms
//! -> NaN guard -> backward -> optimiser step -> method hook (EMA, queue) -> periodic checkpoint -> after
//! the last epoch: evaluation of every task with every protocol (one row of each accuracy matrix) ->
//! replay memory update -> task checkpoint.
//!
//! Every random draw is a function of (seed, task, epoch, step, sample), so a run resumed from any
//! checkpoint continues bit-identically on the same machine and thread count.

use crate::config::{ExperimentConfig, StrategyKind, TeacherBn};
use crate::distill::{build_distiller, DistillParams, Distiller};
use crate::error::CoreError;
use crate::eval::{self, EvalContext, EvalPoint, Protocol};
use crate::events::{Event, EventSink, TermValue};
use crate::lock::RunLock;
use crate::method::{build_method, MethodParams, SslMethod};
use crate::network::{Frozen, NetworkSpec, Online};
pub use crate::run_dir::{
    config_hash, config_toml, files, now_rfc3339, parse_config, read_config, write_atomic,
};
use candle_core::{Device, Tensor};
use kaizen_data::{
    labelled_mask, load_dataset, shuffled_batches, two_view_batch, Augmenter, Batch, ClassOrder,
    Dataset, DatasetName, Item, ReplayMemory, ReplaySize, Split, TaskStream,
};
use kaizen_models::checkpoint::{self, Manifest};
use kaizen_models::optim::{Optimizer, WarmupCosine};
use kaizen_models::BnMode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How a run is executed (not part of the experiment's identity).
pub struct RunOptions {
    /// Run directory.
    pub dir: PathBuf,
    /// Device to train on.
    pub device: Device,
    /// Set (e.g. by Ctrl-C) to stop at the next step boundary after writing a checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Versions and provenance recorded in the manifest (crate versions, git revision).
    pub provenance: serde_json::Value,
    /// Log every N-th step to metrics.jsonl (epoch and eval lines are always written).
    pub log_every: usize,
    /// Stop after this many optimiser steps of the run as if interrupted (tests of resume; None = never).
    pub stop_after_steps: Option<u64>,
    /// Developer tool: write the classifier's inputs of every step and evaluation to this folder
    /// ([`crate::dump`]).
    pub dump_classifier_inputs: Option<PathBuf>,
}

/// How a run ended.
#[derive(Debug)]
pub enum RunStatus {
    /// Every task trained and evaluated; `summary.json` and `report.md` are written.
    Finished,
    /// Stopped on request; the checkpoint to resume from was written.
    Interrupted {
        /// The checkpoint `kaizen resume` will continue from.
        checkpoint: PathBuf,
    },
}

/// Position in the stream: the next step to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Task being trained.
    pub task: usize,
    /// Epoch within the task.
    pub epoch: usize,
    /// Step within the epoch.
    pub step_in_epoch: usize,
    /// Optimiser steps over the whole run.
    pub global_step: u64,
    /// Whether the evaluation of `task` is still to do (all its epochs are done).
    pub eval_pending: bool,
}

/// Trainer state stored in a checkpoint's manifest (`extra`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    counters: Counters,
    /// protocol -> rows so far.
    matrices: BTreeMap<String, Vec<Vec<Option<f64>>>>,
    config_hash: String,
    /// The config the checkpoint was written with (to say which setting differs on a mismatch; absent in
    /// checkpoints of older versions).
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Everything a run needs, built from the config.
struct Trainer<'a> {
    cfg: ExperimentConfig,
    opts: &'a RunOptions,
    data: Arc<Dataset>,
    stream: TaskStream,
    spec: NetworkSpec,
    online: Online,
    method: Box<dyn SslMethod>,
    distiller: Box<dyn Distiller>,
    frozen: Option<Frozen>,
    replay: ReplayMemory,
    augmenter: Augmenter,
    optimizer: Option<Optimizer>,
    counters: Counters,
    matrices: BTreeMap<String, Vec<Vec<Option<f64>>>>,
    config_hash: String,
    /// metrics.jsonl, opened (append) at the first line.
    log: Option<fs::File>,
    /// Classifier-input dump (developer tool).
    dump: Option<crate::dump::FeatureDump>,
}

/// Start a fresh run of `cfg` in `opts.dir` (created; must be empty or absent). The directory is locked for the
/// whole run ([`crate::lock`]): a second process writing into it is refused.
pub fn start(
    cfg: ExperimentConfig,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<RunStatus, CoreError> {
    cfg.validate()?;
    let lock = RunLock::acquire(&opts.dir)?;
    if crate::lock::has_content(&opts.dir)? {
        return Err(CoreError::Invalid(format!(
            "run directory {} is not empty: choose another --out, or continue it with `kaizen resume {}`",
            opts.dir.display(),
            opts.dir.display()
        )));
    }
    // Build everything (dataset, stream, model) before writing anything, so a bad input leaves nothing behind.
    let built = config_toml(&cfg).and_then(|text| Ok((text, Trainer::new(cfg, opts)?)));
    let (text, mut t) = match built {
        Ok(b) => b,
        Err(e) => {
            lock.abandon();
            return Err(e);
        }
    };
    fs::create_dir_all(opts.dir.join(files::CHECKPOINTS))
        .map_err(|e| CoreError::io(&opts.dir, e))?;
    write_atomic(&opts.dir.join(files::CONFIG), text.as_bytes())?;
    t.write_manifest(false)?;
    let status = t.run(sink, false);
    drop(lock);
    status
}

/// Continue the run in `opts.dir` from its latest checkpoint (or from the start if it has none), holding the
/// directory's lock.
pub fn resume(opts: &RunOptions, sink: &mut dyn EventSink) -> Result<RunStatus, CoreError> {
    if !opts.dir.is_dir() {
        return Err(CoreError::Invalid(format!(
            "{} is not a directory: give the run directory `kaizen run --out` wrote",
            opts.dir.display()
        )));
    }
    let lock = RunLock::acquire(&opts.dir)?;
    let cfg = read_config(&opts.dir)?;
    let ckdir = opts.dir.join(files::CHECKPOINTS);
    let latest = ckdir.join(files::LATEST);
    // The newest checkpoint that loads: `latest`, else the task checkpoints from the last task down.
    let mut chosen = None;
    let mut latest_error = None;
    for path in std::iter::once(latest.clone()).chain(task_checkpoints(&ckdir)?) {
        if !path.exists() {
            continue;
        }
        match checkpoint::load(&path, &opts.device) {
            Ok(loaded) => {
                chosen = Some((path, loaded));
                break;
            }
            Err(e) => {
                sink.event(&Event::Notice(format!(
                    "{} cannot be read ({e}); trying an older checkpoint",
                    path.display()
                )));
                if path == latest {
                    latest_error = Some(e);
                }
            }
        }
    }
    let mut t = Trainer::new(cfg, opts)?;
    let resumed = chosen.is_some();
    match chosen {
        Some((path, (tensors, manifest))) => {
            t.restore(&path, tensors, manifest)?;
            if path != latest {
                sink.event(&Event::Notice(format!(
                    "{} is missing or unreadable: resuming from {} (task {}), the newest intact checkpoint",
                    latest.display(),
                    path.display(),
                    t.counters.task
                )));
            }
            t.log_json(&serde_json::json!({"event": "resume", "from": t.counters,
                "checkpoint": path.display().to_string(), "time": now_rfc3339(),
                "note": "lines above logged after this position belong to the superseded attempt"}))?;
        }
        None => {
            if let Some(e) = latest_error {
                // A damaged latest checkpoint and nothing older: keep it for inspection rather than start over.
                return Err(CoreError::Invalid(format!(
                    "{} cannot be read ({e}) and there is no older intact checkpoint: to start the run over, \
                     delete it and run `kaizen resume {}` again",
                    latest.display(),
                    opts.dir.display()
                )));
            }
            sink.event(&Event::Notice(format!(
                "no checkpoint in {}: starting the run from the beginning",
                ckdir.display()
            )));
            t.log_json(
                &serde_json::json!({"event": "resume", "from": t.counters, "checkpoint": null,
                "time": now_rfc3339(),
                "note": "lines above belong to the superseded attempt: the run starts over"}),
            )?;
        }
    }
    let status = t.run(sink, resumed);
    drop(lock);
    status
}

/// The keys whose values differ between two configs (as JSON), as `key: a -> b`.
fn config_differences(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: &str,
    out: &mut Vec<String>,
) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let full = crate::config::dotted_key(path, k);
                let null = serde_json::Value::Null;
                config_differences(
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    &full,
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

/// The task checkpoints (`task_<N>.safetensors`) of a checkpoint folder, newest task first.
fn task_checkpoints(ckdir: &Path) -> Result<Vec<PathBuf>, CoreError> {
    let entries = match fs::read_dir(ckdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CoreError::io(ckdir, e)),
    };
    let mut found: Vec<(usize, PathBuf)> = Vec::new();
    for e in entries {
        let path = e.map_err(|e| CoreError::io(ckdir, e))?.path();
        let task = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("task_"))
            .and_then(|n| n.strip_suffix(".safetensors"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(task) = task {
            found.push((task, path));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Load the dataset a config names, with the per-class caps applied.
pub fn load_config_dataset(cfg: &ExperimentConfig) -> Result<Dataset, CoreError> {
    let name: DatasetName = cfg
        .data
        .dataset
        .parse()
        .map_err(|e| CoreError::Invalid(format!("config key `data.dataset`: {e}")))?;
    let root = (!cfg.data.data_root.is_empty()).then(|| PathBuf::from(&cfg.data.data_root));
    let mut ds = load_dataset(name, root.as_deref())?;
    if cfg.data.train_per_class > 0 {
        ds.train = ds.train.cap_per_class(cfg.data.train_per_class);
        // Normalisation statistics are those of the training images actually used.
        (ds.mean, ds.std) = kaizen_data::dataset::channel_stats(&ds.train);
    }
    if cfg.data.test_per_class > 0 {
        ds.test = ds.test.cap_per_class(cfg.data.test_per_class);
    }
    Ok(ds)
}

/// The task stream a config describes.
pub fn build_stream(cfg: &ExperimentConfig, num_classes: usize) -> Result<TaskStream, CoreError> {
    let order = if cfg.data.class_order.is_empty() {
        ClassOrder::Seeded(cfg.seed)
    } else {
        ClassOrder::Explicit(cfg.data.class_order.clone())
    };
    Ok(TaskStream::new(num_classes, cfg.data.num_tasks, order)?)
}

impl<'a> Trainer<'a> {
    fn new(cfg: ExperimentConfig, opts: &'a RunOptions) -> Result<Self, CoreError> {
        let data = Arc::new(load_config_dataset(&cfg)?);
        let stream = build_stream(&cfg, data.num_classes)?;
        let spec = NetworkSpec::new(&cfg, data.shape.channels, data.num_classes);
        let online = Online::new(&spec, cfg.seed, &opts.device)?;
        let params = MethodParams::from_config(&cfg);
        let method = build_method(cfg.method, &params, &online, &spec, &opts.device)?;
        let dparams = DistillParams {
            temperature: cfg.loss.distill_contrastive_temperature,
            ..DistillParams::default()
        };
        let distiller = build_distiller(cfg.distiller_kind()?, &dparams);
        let augmenter = Augmenter::new(cfg.augment.clone(), data.shape, &data.mean, &data.std)?;
        let config_hash = config_hash(&cfg)?;
        let dump = match &opts.dump_classifier_inputs {
            Some(d) => {
                let tasks: Vec<Vec<u16>> = (0..stream.num_tasks())
                    .map(|t| stream.task_classes(t).to_vec())
                    .collect();
                Some(crate::dump::FeatureDump::create(d, &tasks)?)
            }
            None => None,
        };
        Ok(Self {
            cfg,
            opts,
            data,
            stream,
            spec,
            online,
            method,
            distiller,
            frozen: None,
            replay: ReplayMemory::new(),
            augmenter,
            optimizer: None,
            counters: Counters::default(),
            matrices: BTreeMap::new(),
            config_hash,
            log: None,
            dump,
        })
    }

    fn protocols(&self) -> Vec<Protocol> {
        let mut p = vec![Protocol::Classifier, Protocol::ClassifierSeen];
        if self.cfg.eval.knn {
            p.push(Protocol::Knn);
        }
        if self.cfg.eval.linear {
            p.push(Protocol::Linear);
        }
        p
    }

    fn teacher_mode(&self) -> BnMode {
        match self.cfg.train.teacher_bn {
            TeacherBn::Train => BnMode::BatchStats,
            TeacherBn::Eval => BnMode::Eval,
        }
    }

    /// The training indices of "task" `t` (joint: every task at once).
    fn task_indices(&self, t: usize) -> Vec<u32> {
        if self.cfg.strategy == StrategyKind::Joint {
            (0..self.stream.num_tasks())
                .flat_map(|k| self.stream.indices(&self.data.train, k))
                .collect()
        } else {
            self.stream.indices(&self.data.train, t)
        }
    }

    /// Number of training phases: T tasks, one for joint, none for random.
    fn phases(&self) -> usize {
        match self.cfg.strategy {
            StrategyKind::Joint => 1,
            StrategyKind::Random => 0,
            _ => self.stream.num_tasks(),
        }
    }

    fn steps_per_epoch(&self, n: usize) -> usize {
        (n / self.cfg.train.batch_size).max(1)
    }

    fn run(&mut self, sink: &mut dyn EventSink, resumed: bool) -> Result<RunStatus, CoreError> {
        sink.event(&Event::RunStart {
            strategy: self.cfg.strategy.to_string(),
            num_tasks: self.stream.num_tasks(),
            start_task: self.counters.task,
            resumed,
        });
        let mut warnings = self.cfg.warnings();
        warnings.extend(self.data.warnings(self.cfg.data.label_fraction));
        for w in warnings {
            self.log_json(&serde_json::json!({"event": "warning", "message": w}))?;
            sink.event(&Event::Notice(format!("warning: {w}")));
        }
        if self.cfg.strategy == StrategyKind::Random
            && self.counters.task == 0
            && !self.counters.eval_pending
        {
            self.counters.eval_pending = true;
        }
        let phases = self.phases().max(1);
        while self.counters.task < phases {
            let t = self.counters.task;
            if !self.counters.eval_pending {
                if let Some(ckpt) = self.train_task(t, sink)? {
                    return Ok(RunStatus::Interrupted { checkpoint: ckpt });
                }
            }
            self.evaluate(t, sink)?;
            if self.cfg.strategy.uses_replay() {
                let idx = self.task_indices(t);
                let mask = labelled_mask(
                    &self.data.train,
                    &idx,
                    self.cfg.data.label_fraction,
                    self.cfg.seed,
                    t,
                );
                let labelled: Vec<u32> = idx
                    .iter()
                    .zip(&mask)
                    .filter(|(_, m)| **m)
                    .map(|(i, _)| *i)
                    .collect();
                let size = if self.cfg.data.replay_count > 0 {
                    ReplaySize::Count(self.cfg.data.replay_count)
                } else {
                    ReplaySize::Fraction(self.cfg.data.replay_fraction)
                };
                self.replay
                    .add_task(&self.data.train, &labelled, size, self.cfg.seed, t);
            }
            self.counters = Counters {
                task: t + 1,
                epoch: 0,
                step_in_epoch: 0,
                global_step: self.counters.global_step,
                eval_pending: false,
            };
            self.optimizer = None;
            self.frozen = None;
            let task_ckpt = self
                .opts
                .dir
                .join(files::CHECKPOINTS)
                .join(format!("task_{t}.safetensors"));
            self.save_checkpoint(&task_ckpt)?;
            self.save_checkpoint(&self.opts.dir.join(files::CHECKPOINTS).join(files::LATEST))?;
            sink.event(&Event::Checkpoint {
                path: task_ckpt.display().to_string(),
            });
            sink.event(&Event::TaskEnd { task: t });
        }
        self.finish()?;
        Ok(RunStatus::Finished)
    }

    /// Train task `t` from the current counters. Returns the checkpoint path if interrupted.
    fn train_task(
        &mut self,
        t: usize,
        sink: &mut dyn EventSink,
    ) -> Result<Option<PathBuf>, CoreError> {
        let indices = self.task_indices(t);
        if indices.is_empty() {
            return Err(CoreError::Invalid(format!(
                "task {t} has no training images"
            )));
        }
        let mask = labelled_mask(
            &self.data.train,
            &indices,
            self.cfg.data.label_fraction,
            self.cfg.seed,
            t,
        );
        let visible: HashMap<u32, i64> = indices
            .iter()
            .zip(&mask)
            .map(|(&i, &m)| {
                (
                    i,
                    if m {
                        i64::from(self.data.train.label(i as usize))
                    } else {
                        -1
                    },
                )
            })
            .collect();
        let spe = self.steps_per_epoch(indices.len());
        let total_steps = spe * self.cfg.train.epochs;
        let warmup = (self.cfg.train.warmup_epochs * spe as f64).round() as usize;
        let schedule = WarmupCosine {
            base_lr: self.cfg.train.lr,
            warmup_steps: warmup.min(total_steps),
            total_steps,
            warmup_start_lr: self.cfg.train.warmup_start_lr,
            min_lr: 0.0,
        };
        let fresh_task = self.counters.epoch == 0 && self.counters.step_in_epoch == 0;
        if t > 0 && self.frozen.is_none() && self.distilling() {
            self.frozen = Some(Frozen::snapshot(
                &self.online,
                &self.spec,
                self.teacher_mode(),
                &self.opts.device,
            )?);
        }
        if self.optimizer.is_none() {
            self.optimizer = Some(self.build_optimizer());
        }
        let done = self.counters.epoch * spe + self.counters.step_in_epoch;
        sink.event(&Event::TaskStart {
            task: t,
            total_steps,
            done_steps: done,
            images: indices.len(),
        });
        if fresh_task {
            self.log_json(&serde_json::json!({"event": "task_start", "task": t, "images": indices.len(),
                "classes": self.task_classes(t), "total_steps": total_steps, "time": now_rfc3339()}))?;
        }
        let replay_batch = if self.cfg.strategy.uses_replay() && !self.replay.is_empty() {
            self.cfg.data.replay_batch
        } else {
            0
        };
        while self.counters.epoch < self.cfg.train.epochs {
            let e = self.counters.epoch;
            let epoch_start = Instant::now();
            let drop_last = indices.len() >= self.cfg.train.batch_size;
            let batches = shuffled_batches(
                &indices,
                self.cfg.train.batch_size,
                self.cfg.seed,
                t,
                e,
                drop_last,
            );
            let first = self.counters.step_in_epoch;
            let plans: Vec<Vec<Item>> = batches
                .iter()
                .enumerate()
                .skip(first)
                .map(|(s, b)| {
                    let mut items: Vec<Item> = b
                        .iter()
                        .map(|&i| Item {
                            index: i,
                            label: visible[&i],
                        })
                        .collect();
                    if replay_batch > 0 {
                        let step_key = (e * spe + s) as u64;
                        for i in self.replay.sample(replay_batch, self.cfg.seed, t, step_key) {
                            items.push(Item {
                                index: i,
                                label: i64::from(self.data.train.label(i as usize)),
                            });
                        }
                    }
                    items
                })
                .collect();
            // One augmentation key per step: a replayed image drawn at two steps gets two different views.
            let keyed: Vec<(Vec<Item>, u64)> = plans
                .into_iter()
                .enumerate()
                .map(|(k, items)| (items, step_key(t, e, first + k)))
                .collect();
            let prefetch = prefetch(
                &self.data.train,
                keyed,
                &self.augmenter,
                self.cfg.seed,
                &self.opts.device,
            );
            let mut sums: BTreeMap<&'static str, (f64, usize)> = BTreeMap::new();
            for batch in prefetch {
                let batch = batch?;
                let s = self.counters.step_in_epoch;
                let step_in_task = e * spe + s;
                let lr = schedule.lr(step_in_task);
                let t0 = Instant::now();
                let terms = self.step(&batch, t, step_in_task, total_steps, lr)?;
                let ips = batch.indices.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                for tv in &terms {
                    let entry = sums.entry(tv.term).or_insert((0.0, 0));
                    entry.0 += tv.value;
                    entry.1 += 1;
                }
                self.counters.step_in_epoch += 1;
                self.counters.global_step += 1;
                if self
                    .counters
                    .global_step
                    .is_multiple_of(self.opts.log_every.max(1) as u64)
                {
                    self.log_json(&serde_json::json!({"event": "step", "task": t, "epoch": e, "step": step_in_task,
                        "global_step": self.counters.global_step, "lr": lr,
                        "loss": terms.iter().map(|x| (x.term, x.value)).collect::<BTreeMap<_, _>>(),
                        "images_per_s": ips}))?;
                }
                sink.event(&Event::Step {
                    task: t,
                    epoch: e,
                    step: step_in_task,
                    total_steps,
                    lr,
                    terms,
                    images_per_s: ips,
                });
                let every = self.cfg.train.checkpoint_every;
                if every > 0 && self.counters.global_step.is_multiple_of(every as u64) {
                    self.save_latest(sink)?;
                }
                let forced = self
                    .opts
                    .stop_after_steps
                    .is_some_and(|n| self.counters.global_step >= n);
                if self.opts.stop.load(Ordering::SeqCst) || forced {
                    let path = self.save_latest(sink)?;
                    return Ok(Some(path));
                }
            }
            let means: Vec<TermValue> = sums
                .iter()
                .map(|(k, (s, n))| TermValue {
                    term: k,
                    value: s / *n as f64,
                })
                .collect();
            self.log_json(&serde_json::json!({"event": "epoch", "task": t, "epoch": e,
                "loss": means.iter().map(|x| (x.term, x.value)).collect::<BTreeMap<_, _>>(),
                "seconds": epoch_start.elapsed().as_secs_f64()}))?;
            sink.event(&Event::EpochEnd {
                task: t,
                epoch: e,
                terms: means,
                seconds: epoch_start.elapsed().as_secs_f64(),
            });
            self.counters.epoch += 1;
            self.counters.step_in_epoch = 0;
            if self.counters.epoch < self.cfg.train.epochs {
                self.save_latest(sink)?;
            }
        }
        self.counters.eval_pending = true;
        self.save_latest(sink)?;
        Ok(None)
    }

    /// Optimiser steps done in the current task (from the counters, for messages).
    fn steps_done_in_task(&self) -> usize {
        let n = self.task_indices(self.counters.task).len();
        self.counters.epoch * self.steps_per_epoch(n) + self.counters.step_in_epoch
    }

    fn distilling(&self) -> bool {
        let fe = self.cfg.feature_distill_weight().unwrap_or(0.0) > 0.0;
        fe || self.cfg.classifier_distill_weight() > 0.0
    }

    fn task_classes(&self, t: usize) -> Vec<u16> {
        if self.cfg.strategy == StrategyKind::Joint {
            self.stream.class_order().to_vec()
        } else {
            self.stream.task_classes(t).to_vec()
        }
    }

    fn build_optimizer(&self) -> Optimizer {
        crate::step::build_optimizer(&self.cfg.train, &self.online)
    }

    /// One optimiser step; returns the unweighted terms and the weighted total.
    fn step(
        &mut self,
        batch: &kaizen_data::Batch,
        t: usize,
        step_in_task: usize,
        total_steps: usize,
        lr: f64,
    ) -> Result<Vec<TermValue>, CoreError> {
        let settings = crate::step::StepSettings::for_task(&self.cfg, &self.stream, t)?;
        let frozen = self.frozen.as_ref().filter(|_| t > 0);
        let mut models = crate::step::StepModels {
            online: &self.online,
            method: self.method.as_mut(),
            distiller: self.distiller.as_ref(),
            frozen,
        };
        let terms = crate::step::loss_terms(
            &mut models,
            &settings,
            &crate::step::StepBatch {
                view1: &batch.view1,
                view2: &batch.view2,
                labels: &batch.labels,
            },
        )?;
        if let Some(dump) = &self.dump {
            // Recomputed outside the graph: the dump is a developer tool and may cost a little.
            let on = &self.online;
            let mut feats = vec![
                on.backbone.forward(&batch.view1, BnMode::BatchStats)?,
                on.backbone.forward(&batch.view2, BnMode::BatchStats)?,
            ];
            if let Some(f) = frozen {
                feats.push(f.forward(&batch.view1)?.h);
                feats.push(f.forward(&batch.view2)?.h);
            }
            let refs: Vec<&Tensor> = feats.iter().collect();
            dump.step(t, step_in_task, lr, &refs, &batch.label_vec)?;
        }
        let (total, values) = crate::step::weighted_total(&terms, t, step_in_task)?;
        let grads = total.backward()?;
        if let Some(opt) = self.optimizer.as_mut() {
            opt.step(&grads, lr)?;
        }
        self.method
            .after_step(&self.online, step_in_task + 1, total_steps)?;
        Ok(values)
    }

    fn evaluate(&mut self, t: usize, sink: &mut dyn EventSink) -> Result<(), CoreError> {
        let point = match self.cfg.strategy {
            StrategyKind::Joint => EvalPoint::AfterTask(self.stream.num_tasks() - 1),
            StrategyKind::Random => EvalPoint::BeforeTraining,
            _ => EvalPoint::AfterTask(t),
        };
        let ed = EvalContext {
            data: &self.data,
            stream: &self.stream,
            online: &self.online,
            device: &self.opts.device,
            cfg: &self.cfg,
            dump: self.dump.as_ref(),
        };
        let rows = eval::evaluate_after(&ed, point, &self.protocols())?;
        for (p, row) in rows {
            self.log_json(&serde_json::json!({"event": "eval", "after_task": t, "protocol": p.name(), "row": row}))?;
            sink.event(&Event::Eval {
                task: t,
                protocol: p.name().to_string(),
                row: row.clone(),
            });
            self.matrices
                .entry(p.name().to_string())
                .or_default()
                .push(row);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), CoreError> {
        eval::write_results(
            &self.opts.dir,
            &self.cfg,
            &self.stream,
            &self.data,
            &self.matrices,
        )?;
        self.write_manifest(true)?;
        self.log_json(&serde_json::json!({"event": "finished", "time": now_rfc3339()}))?;
        Ok(())
    }

    fn save_latest(&mut self, sink: &mut dyn EventSink) -> Result<PathBuf, CoreError> {
        let p = self.opts.dir.join(files::CHECKPOINTS).join(files::LATEST);
        self.save_checkpoint(&p)?;
        sink.event(&Event::Checkpoint {
            path: p.display().to_string(),
        });
        Ok(p)
    }

    fn save_checkpoint(&self, path: &Path) -> Result<(), CoreError> {
        let mut tensors: Vec<(String, Tensor)> =
            crate::network::sorted_tensors(&self.online.varmap)?
                .into_iter()
                .map(|(k, v)| (format!("online.{k}"), v))
                .collect();
        tensors.extend(
            self.method
                .state()?
                .into_iter()
                .map(|(k, v)| (format!("method.{k}"), v)),
        );
        if let Some(f) = &self.frozen {
            tensors.extend(
                f.tensors()
                    .into_iter()
                    .map(|(k, v)| (format!("frozen.{k}"), v)),
            );
        }
        if let Some(o) = &self.optimizer {
            tensors.extend(
                o.state()
                    .into_iter()
                    .map(|(k, v)| (format!("optim.{k}"), v)),
            );
        }
        let replay = self.replay.indices().to_vec();
        let n = replay.len();
        tensors.push((
            "replay.indices".into(),
            Tensor::from_vec(replay, n, &Device::Cpu)?,
        ));
        let state = TrainState {
            counters: self.counters,
            matrices: self.matrices.clone(),
            config_hash: self.config_hash.clone(),
            config: serde_json::to_value(&self.cfg).ok(),
        };
        let mut manifest = Manifest::new(
            serde_json::json!({"backbone": self.spec.backbone, "network": self.spec}),
        );
        manifest.seed = self.cfg.seed;
        manifest.task_index = Some(self.counters.task);
        manifest.class_order = self
            .stream
            .class_order()
            .iter()
            .map(|&c| usize::from(c))
            .collect();
        manifest.config_hash = self.config_hash.clone();
        manifest.extra =
            serde_json::to_value(&state).map_err(|e| CoreError::Invalid(e.to_string()))?;
        let tensors: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        check_finite(&tensors, self.counters.task, self.steps_done_in_task())?;
        checkpoint::save(path, &tensors, &manifest)?;
        Ok(())
    }

    fn restore(
        &mut self,
        path: &Path,
        tensors: checkpoint::NamedTensors,
        manifest: Manifest,
    ) -> Result<(), CoreError> {
        let state: TrainState = serde_json::from_value(manifest.extra.clone()).map_err(|e| {
            CoreError::Invalid(format!(
                "{}: not a kaizen training checkpoint ({e})",
                path.display()
            ))
        })?;
        if state.config_hash != self.config_hash {
            let ours = serde_json::to_value(&self.cfg).unwrap_or_default();
            let differences = match &state.config {
                Some(theirs) => {
                    let mut d = Vec::new();
                    config_differences(theirs, &ours, "", &mut d);
                    format!(
                        "settings that differ (checkpoint -> config.toml): {}",
                        d.join(", ")
                    )
                }
                None => format!("config hash {} vs {}", state.config_hash, self.config_hash),
            };
            return Err(CoreError::Invalid(format!(
                "{} was written for another configuration than {} ({differences}): restore the run's original \
                 config.toml or start a new run",
                path.display(),
                self.opts.dir.join(files::CONFIG).display()
            )));
        }
        let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
        crate::network::load_vars(&self.online.varmap, &tensors, "online.")?;
        let strip = |p: &str| -> HashMap<String, Tensor> {
            tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(p).map(|s| (s.to_string(), v.clone())))
                .collect()
        };
        self.method.load_state(&strip("method."))?;
        let frozen = strip("frozen.");
        if !frozen.is_empty() {
            self.frozen = Some(Frozen::from_tensors(
                frozen,
                &self.spec,
                self.teacher_mode(),
                &self.opts.device,
            )?);
        }
        let optim = strip("optim.");
        if !optim.is_empty() {
            let mut o = self.build_optimizer();
            o.load_state(&optim)?;
            self.optimizer = Some(o);
        }
        let replay = tensors
            .get("replay.indices")
            .ok_or_else(|| {
                CoreError::MissingTensor(format!("replay.indices in {}", path.display()))
            })?
            .to_vec1::<u32>()?;
        self.replay = ReplayMemory::from_indices(replay);
        self.counters = state.counters;
        self.matrices = state.matrices;
        Ok(())
    }

    fn write_manifest(&self, finished: bool) -> Result<(), CoreError> {
        let path = self.opts.dir.join(files::MANIFEST);
        let mut m: serde_json::Value = if path.exists() {
            let text = fs::read_to_string(&path).map_err(|e| CoreError::io(&path, e))?;
            serde_json::from_str(&text)
                .map_err(|e| CoreError::Invalid(format!("{}: {e}", path.display())))?
        } else {
            serde_json::json!({
                "format": "kaizen-run",
                "schema": 1,
                "start_time": now_rfc3339(),
                "seed": self.cfg.seed,
                "strategy": self.cfg.strategy,
                "config": self.cfg,
                "config_hash": self.config_hash,
                "dataset": {"name": self.cfg.data.dataset, "train_images": self.data.train.len(),
                            "test_images": self.data.test.len(), "num_classes": self.data.num_classes},
                "stream": self.stream.describe(),
                "class_order": self.stream.class_order(),
                "effective_weights": {
                    "ssl": self.cfg.loss.ssl,
                    "fe_kd": self.cfg.feature_distill_weight()?,
                    "cls_ce": self.cfg.loss.classifier_ce,
                    "cls_kd": self.cfg.classifier_distill_weight(),
                },
                "distiller": self.cfg.distiller_kind()?.to_string(),
                "teacher_bn": self.cfg.train.teacher_bn,
                "replay": self.cfg.strategy.uses_replay(),
                "network": self.spec,
                "threads": rayon::current_num_threads(),
                "device": format!("{:?}", self.opts.device),
                "provenance": self.opts.provenance,
            })
        };
        if finished {
            m["end_time"] = serde_json::json!(now_rfc3339());
        }
        let text =
            serde_json::to_string_pretty(&m).map_err(|e| CoreError::Invalid(e.to_string()))?;
        write_atomic(&path, text.as_bytes())
    }

    fn log_json(&mut self, v: &serde_json::Value) -> Result<(), CoreError> {
        let path = self.opts.dir.join(files::METRICS);
        if self.log.is_none() {
            let f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| CoreError::io(&path, e))?;
            self.log = Some(f);
        }
        let Some(log) = self.log.as_mut() else {
            return Ok(());
        };
        writeln!(log, "{v}").map_err(|e| CoreError::io(&path, e))?;
        log.flush().map_err(|e| CoreError::io(&path, e))
    }
}

/// Errors (naming the first offending tensor) when any floating-point tensor holds a NaN or an infinity: a
/// diverged state is never written over the last good checkpoint.
fn check_finite(
    tensors: &BTreeMap<String, Tensor>,
    task: usize,
    step: usize,
) -> Result<(), CoreError> {
    let mut bad = tensors.iter().filter_map(|(name, t)| {
        if !t.dtype().is_float() {
            return None;
        }
        let finite = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map(|v| v.iter().all(|x| x.is_finite()));
        match finite {
            Ok(true) => None,
            _ => Some(name.clone()),
        }
    });
    let Some(first) = bad.next() else {
        return Ok(());
    };
    Err(CoreError::NonFiniteState {
        count: 1 + bad.count(),
        first,
        task,
        step,
    })
}

/// Augmentation key of step `s` of epoch `e` of task `t` (distinct for every step of a run).
fn step_key(t: usize, e: usize, s: usize) -> u64 {
    ((t as u64) << 48) | ((e as u64) << 24) | s as u64
}

/// Build the batches on a background thread, two ahead of the trainer; each with its own augmentation key.
/// Dropping the iterator early stops the thread at its next send.
fn prefetch(
    split: &Split,
    batches: Vec<(Vec<Item>, u64)>,
    aug: &Augmenter,
    seed: u64,
    device: &Device,
) -> impl Iterator<Item = Result<Batch, kaizen_data::DataError>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    let (split, aug, device) = (split.clone(), aug.clone(), device.clone());
    std::thread::spawn(move || {
        for (items, key) in batches {
            if tx
                .send(two_view_batch(&split, &items, &aug, seed, key, &device))
                .is_err()
            {
                return;
            }
        }
    });
    rx.into_iter()
}
