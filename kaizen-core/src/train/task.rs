//! Training one phase: its images and visible labels, the learning-rate schedule, the frozen model and the
//! optimiser, then epoch after epoch of steps, with the step log, the checkpoint cadence and the stop check.

use super::log::ScalarRow;
use super::prefetch::{prefetch, EpochPlan};
use super::trainer::Trainer;
use crate::error::CoreError;
use crate::events::{Event, EventSink, TermValue};
use crate::network::Frozen;
use crate::run_dir::now_rfc3339;
use crate::step::{StepPosition, StepSettings};
use crate::terms::{StepBatch, StepModels};
use candle_core::Tensor;
use kaizen_data::{labelled_mask, Batch};
use kaizen_models::optim::WarmupCosine;
use kaizen_models::BnMode;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// `scalars.csv` rows of one step or epoch: one per (term, value).
fn scalar_rows<'a>(
    event: &'a str,
    task: usize,
    epoch: usize,
    step: Option<usize>,
    values: impl Iterator<Item = (&'a str, f64)>,
) -> Vec<ScalarRow<'a>> {
    values
        .map(|(term, value)| ScalarRow {
            event,
            task,
            epoch: Some(epoch),
            step,
            term: term.to_string(),
            value,
        })
        .collect()
}

/// What stays fixed over a phase's epochs.
struct PhaseSetup {
    indices: Vec<u32>,
    /// Label visible to the trainer per index (-1 = unlabelled).
    visible: HashMap<u32, i64>,
    steps_per_epoch: usize,
    total_steps: usize,
    schedule: WarmupCosine,
    seen: Vec<bool>,
    replay_batch: usize,
}

impl Trainer<'_> {
    fn phase_setup(&self, t: usize) -> Result<PhaseSetup, CoreError> {
        let indices = self.task_indices(t);
        if indices.is_empty() {
            return Err(CoreError::Invalid(format!(
                "task {t} has no training images"
            )));
        }
        let train = &self.data.train;
        let mask = labelled_mask(
            train,
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
                        i64::from(train.label(i as usize))
                    } else {
                        -1
                    },
                )
            })
            .collect();
        let spe = self.steps_per_epoch(indices.len());
        let total_steps = spe * self.cfg.train.epochs;
        let warmup = (self.cfg.train.warmup_epochs * spe as f64).round() as usize;
        let replay_batch = if self.strategy.replay() && !self.replay.is_empty() {
            self.cfg.data.replay_batch
        } else {
            0
        };
        Ok(PhaseSetup {
            visible,
            steps_per_epoch: spe,
            total_steps,
            schedule: WarmupCosine {
                base_lr: self.cfg.train.lr,
                warmup_steps: warmup.min(total_steps),
                total_steps,
                warmup_start_lr: self.cfg.train.warmup_start_lr,
                min_lr: 0.0,
            },
            seen: self.seen_classes(t),
            replay_batch,
            indices,
        })
    }

    /// Train phase `t` from the current counters. Returns the checkpoint path if interrupted.
    pub fn train_task(
        &mut self,
        t: usize,
        sink: &mut dyn EventSink,
    ) -> Result<Option<PathBuf>, CoreError> {
        let setup = self.phase_setup(t)?;
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
        let done = self.counters.epoch * setup.steps_per_epoch + self.counters.step_in_epoch;
        sink.event(&Event::TaskStart {
            task: t,
            total_steps: setup.total_steps,
            done_steps: done,
            images: setup.indices.len(),
        });
        if fresh_task {
            self.log_json(&serde_json::json!({"event": "task_start", "task": t, "images": setup.indices.len(),
                "classes": self.task_classes(t), "total_steps": setup.total_steps, "time": now_rfc3339()}))?;
        }
        while self.counters.epoch < self.cfg.train.epochs {
            if let Some(path) = self.train_epoch(t, &setup, sink)? {
                return Ok(Some(path));
            }
        }
        self.counters.eval_pending = true;
        self.save_latest(sink)?;
        Ok(None)
    }

    /// The rest of the current epoch. Returns the checkpoint path if interrupted.
    fn train_epoch(
        &mut self,
        t: usize,
        setup: &PhaseSetup,
        sink: &mut dyn EventSink,
    ) -> Result<Option<PathBuf>, CoreError> {
        let e = self.counters.epoch;
        let epoch_start = Instant::now();
        let plan = EpochPlan {
            split: &self.data.train,
            indices: &setup.indices,
            visible: &setup.visible,
            replay: (&self.replay, setup.replay_batch),
            batch_size: self.cfg.train.batch_size,
            steps_per_epoch: setup.steps_per_epoch,
            seed: self.cfg.seed,
        };
        let batches_from = self.counters.step_in_epoch;
        let batches = plan.batches(t, e, batches_from);
        let data = self.data.clone();
        let stream = prefetch(
            &data.train,
            batches,
            &self.augmenter,
            self.cfg.seed,
            &self.opts.device,
        );
        let mut sums: BTreeMap<&'static str, (f64, usize)> = BTreeMap::new();
        let mut batches = stream.into_iter();
        loop {
            // Training time: waiting for the batch plus the step (logging and checkpoints are counted apart).
            let waited = Instant::now();
            let Some(batch) = batches.next() else {
                break;
            };
            let batch = batch?;
            let step_in_task = e * setup.steps_per_epoch + self.counters.step_in_epoch;
            let pos = StepPosition {
                task: t,
                step_in_task,
                total_steps: setup.total_steps,
                lr: setup.schedule.lr(step_in_task),
            };
            let t0 = Instant::now();
            let terms = self.step(&batch, &setup.seen, pos)?;
            let ips = batch.indices.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            self.clock.add("train", waited.elapsed());
            for tv in &terms {
                let entry = sums.entry(tv.term).or_insert((0.0, 0));
                entry.0 += tv.value;
                entry.1 += 1;
            }
            if let Some(path) = self.after_step(e, pos, terms, ips, sink)? {
                return Ok(Some(path));
            }
        }
        self.log_epoch(t, e, batches_from, &sums, epoch_start, sink)?;
        self.counters.epoch += 1;
        self.counters.step_in_epoch = 0;
        if self.counters.epoch < self.cfg.train.epochs {
            self.save_latest(sink)?;
        }
        Ok(None)
    }

    /// The epoch line of `metrics.jsonl` and `scalars.csv` and the progress event. A resumed epoch's means cover
    /// only the steps of this attempt: say so (`partial`), and log nothing when the attempt ran no step of it
    /// (stopped right after its last step).
    fn log_epoch(
        &mut self,
        t: usize,
        e: usize,
        first: usize,
        sums: &BTreeMap<&'static str, (f64, usize)>,
        epoch_start: Instant,
        sink: &mut dyn EventSink,
    ) -> Result<(), CoreError> {
        let steps = self.counters.step_in_epoch - first;
        if steps > 0 {
            let means: Vec<TermValue> = sums
                .iter()
                .map(|(k, (s, n))| TermValue {
                    term: k,
                    value: s / *n as f64,
                })
                .collect();
            let seconds = epoch_start.elapsed().as_secs_f64();
            let partial = first > 0;
            self.log_json(&serde_json::json!({"event": "epoch", "task": t, "epoch": e,
                "loss": means.iter().map(|x| (x.term, x.value)).collect::<BTreeMap<_, _>>(),
                "seconds": seconds, "steps": steps, "partial": partial}))?;
            let event = if partial { "epoch_partial" } else { "epoch" };
            let rows = scalar_rows(event, t, e, None, means.iter().map(|x| (x.term, x.value)));
            self.log_scalars(&rows)?;
            sink.event(&Event::EpochEnd {
                task: t,
                epoch: e,
                terms: means,
                seconds,
            });
        }
        Ok(())
    }

    /// Counters, the step log, the checkpoint cadence and the stop check after one step. Returns the
    /// checkpoint path if the run stops here.
    fn after_step(
        &mut self,
        e: usize,
        pos: StepPosition,
        terms: Vec<TermValue>,
        ips: f64,
        sink: &mut dyn EventSink,
    ) -> Result<Option<PathBuf>, CoreError> {
        self.counters.step_in_epoch += 1;
        self.counters.global_step += 1;
        if self
            .counters
            .global_step
            .is_multiple_of(self.opts.log_every.max(1) as u64)
        {
            self.log_json(
                &serde_json::json!({"event": "step", "task": pos.task, "epoch": e,
                "step": pos.step_in_task, "global_step": self.counters.global_step, "lr": pos.lr,
                "loss": terms.iter().map(|x| (x.term, x.value)).collect::<BTreeMap<_, _>>(),
                "images_per_s": ips}),
            )?;
            let values = terms.iter().map(|x| (x.term, x.value));
            let rows = scalar_rows(
                "step",
                pos.task,
                e,
                Some(pos.step_in_task),
                values.chain([("lr", pos.lr)]),
            );
            self.log_scalars(&rows)?;
        }
        sink.event(&Event::Step {
            task: pos.task,
            epoch: e,
            step: pos.step_in_task,
            total_steps: pos.total_steps,
            lr: pos.lr,
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
            return Ok(Some(self.save_latest(sink)?));
        }
        Ok(None)
    }

    /// One optimiser step of the run ([`crate::step`]), with the classifier-input dump when it is on.
    fn step(
        &mut self,
        batch: &Batch,
        seen: &[bool],
        pos: StepPosition,
    ) -> Result<Vec<TermValue>, CoreError> {
        let settings = StepSettings {
            seen,
            classifier_detach: self.cfg.train.classifier_detach,
        };
        let frozen = self.frozen.as_ref().filter(|_| pos.task > 0);
        let step_batch = StepBatch {
            view1: &batch.view1,
            view2: &batch.view2,
            labels: &batch.labels,
        };
        let models = StepModels {
            online: &self.online,
            method: self.method.as_mut(),
            frozen,
        };
        let terms = crate::step::loss_terms(models, &mut self.terms, &step_batch, &settings)?;
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
            dump.step(pos.task, pos.step_in_task, pos.lr, &refs, &batch.label_vec)?;
        }
        let models = StepModels {
            online: &self.online,
            method: self.method.as_mut(),
            frozen,
        };
        crate::step::apply(&terms, models, self.optimizer.as_mut(), pos)
    }
}
