//! The training loop: phases (tasks) -> evaluation -> replay update -> task checkpoint, over named parts:
//! [`options`] (how a run executes, its counters), `trainer` (what a run holds, built from the config
//! and a [`Registry`]), `task` (one phase's epochs and steps), `prefetch` (batch plans and the loader
//! thread), `checkpointing` (save, restore, newest intact checkpoint) and `log` (`metrics.jsonl`,
//! `manifest.json`). One step is [`crate::step`]; the run directory's files are [`crate::run_dir`].
//!
//! Life of one phase t: snapshot the frozen previous model (t >= 1, when a term needs it) -> seeded batch
//! order -> per step: current batch (+ replay batch) -> two augmented views -> the strategy's loss terms ->
//! NaN guard -> backward -> optimiser step -> method hook (EMA, queue) -> periodic checkpoint -> after the
//! last epoch: evaluation with every protocol (one row of each accuracy matrix) -> replay memory update ->
//! task checkpoint.
//!
//! Every random draw is a function of (seed, task, epoch, step, sample), so a run resumed from any
//! checkpoint continues bit-identically on the same machine and thread count.

mod checkpointing;
mod log;
pub mod options;
mod prefetch;
mod task;
mod timing;
mod trainer;

pub use options::{Counters, RunOptions, RunStatus};

use crate::config::ExperimentConfig;
use crate::error::CoreError;
use crate::eval::{self, EvalContext, ResultsLayout};
use crate::events::{Event, EventSink};
use crate::lock::RunLock;
use crate::registry::Registry;
use crate::run_dir::{config_toml, files, now_rfc3339, read_config, write_atomic};
use kaizen_data::{labelled_mask, ReplaySize};
use std::fs;
use trainer::Trainer;

/// [`start_with`] the built-in components ([`Registry::builtin`]).
pub fn start(
    cfg: ExperimentConfig,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<RunStatus, CoreError> {
    start_with(&Registry::builtin(), cfg, opts, sink)
}

/// Start a fresh run of `cfg` in `opts.dir` (created; must be empty or absent), with the components of
/// `registry`. The directory is locked for the whole run ([`crate::lock`]): a second process writing into
/// it is refused.
pub fn start_with(
    registry: &Registry,
    cfg: ExperimentConfig,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<RunStatus, CoreError> {
    registry.validate(&cfg)?;
    let lock = RunLock::acquire(&opts.dir)?;
    if crate::lock::has_content(&opts.dir)? {
        return Err(CoreError::Invalid(format!(
            "run directory {} is not empty: choose another --out, or continue it with `kaizen resume {}`",
            opts.dir.display(),
            opts.dir.display()
        )));
    }
    // Build everything (dataset, stream, model) before writing anything, so a bad input leaves nothing behind.
    let built = config_toml(&cfg).and_then(|text| Ok((text, Trainer::new(registry, cfg, opts)?)));
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

/// [`resume_with`] the built-in components ([`Registry::builtin`]).
pub fn resume(opts: &RunOptions, sink: &mut dyn EventSink) -> Result<RunStatus, CoreError> {
    resume_with(&Registry::builtin(), opts, sink)
}

/// Continue the run in `opts.dir` from its newest intact checkpoint (or from the start if it has none),
/// holding the directory's lock. `registry` must hold the components the run was started with.
pub fn resume_with(
    registry: &Registry,
    opts: &RunOptions,
    sink: &mut dyn EventSink,
) -> Result<RunStatus, CoreError> {
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
    let (chosen, latest_error) = checkpointing::newest_checkpoint(&opts.dir, &opts.device, sink)?;
    let mut t = Trainer::new(registry, cfg, opts)?;
    let resumed = chosen.is_some();
    if let Some((path, tensors, manifest)) = chosen {
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
    } else if let Some(e) = latest_error {
        // A damaged latest checkpoint and nothing older: keep it for inspection rather than start over.
        return Err(CoreError::Invalid(format!(
            "{} cannot be read ({e}) and there is no older intact checkpoint: to start the run over, \
             delete it and run `kaizen resume {}` again",
            latest.display(),
            opts.dir.display()
        )));
    } else {
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
    let status = t.run(sink, resumed);
    drop(lock);
    status
}

impl Trainer<'_> {
    fn run(&mut self, sink: &mut dyn EventSink, resumed: bool) -> Result<RunStatus, CoreError> {
        sink.event(&Event::RunStart {
            strategy: self.cfg.strategy.clone(),
            num_tasks: self.stream.num_tasks(),
            start_task: self.counters.task,
            resumed,
        });
        for w in self.warnings.clone() {
            self.log_json(&serde_json::json!({"event": "warning", "message": w}))?;
            sink.event(&Event::Notice(format!("warning: {w}")));
        }
        let phases = self.strategy.phases(self.stream.num_tasks());
        while self.counters.task < phases {
            let t = self.counters.task;
            if !self.counters.eval_pending && self.strategy.trains() {
                if let Some(ckpt) = self.train_task(t, sink)? {
                    return Ok(RunStatus::Interrupted { checkpoint: ckpt });
                }
            }
            self.evaluate(t, sink)?;
            if self.strategy.replay() {
                self.remember(t);
            }
            self.end_phase(t, sink)?;
        }
        self.finish()?;
        sink.event(&Event::Timing {
            task: None,
            phases: self.clock.totals(),
        });
        Ok(RunStatus::Finished)
    }

    /// Add phase `t`'s labelled images to the replay memory.
    fn remember(&mut self, t: usize) {
        let idx = self.task_indices(t);
        let (d, seed) = (&self.cfg.data, self.cfg.seed);
        let mask = labelled_mask(&self.data.train, &idx, d.label_fraction, seed, t);
        let labelled: Vec<u32> = idx
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(i, _)| *i)
            .collect();
        let size = if d.replay_count > 0 {
            ReplaySize::Count(d.replay_count)
        } else {
            ReplaySize::Fraction(d.replay_fraction)
        };
        self.replay
            .add_task(&self.data.train, &labelled, size, seed, t);
    }

    /// Move the counters to the next phase and write the task checkpoint (and `latest`).
    fn end_phase(&mut self, t: usize, sink: &mut dyn EventSink) -> Result<(), CoreError> {
        self.counters = Counters {
            task: t + 1,
            global_step: self.counters.global_step,
            ..Counters::default()
        };
        self.optimizer = None;
        self.frozen = None;
        let ckdir = self.opts.dir.join(files::CHECKPOINTS);
        let task_ckpt = ckdir.join(format!("task_{t}.safetensors"));
        self.save_checkpoint(&task_ckpt)?;
        self.save_checkpoint(&ckdir.join(files::LATEST))?;
        sink.event(&Event::Checkpoint {
            path: task_ckpt.display().to_string(),
        });
        let phases = self.clock.take_task();
        self.log_json(&serde_json::json!({"event": "task_end", "task": t,
            "phase_seconds": timing::json(&phases)}))?;
        sink.event(&Event::Timing {
            task: Some(t),
            phases,
        });
        sink.event(&Event::TaskEnd { task: t });
        Ok(())
    }

    fn evaluate(&mut self, t: usize, sink: &mut dyn EventSink) -> Result<(), CoreError> {
        let point = self.strategy.eval_point(t, self.stream.num_tasks());
        let ed = EvalContext {
            data: &self.data,
            stream: &self.stream,
            online: &self.online,
            device: &self.opts.device,
            cfg: &self.cfg,
            dump: self.dump.as_ref(),
        };
        let evaluation = eval::evaluate_after(&ed, point, &self.protocols())?;
        self.clock
            .add_seconds("eval_features", evaluation.features_seconds);
        for eval::ProtocolRow {
            protocol: p,
            row,
            seconds,
        } in evaluation.rows
        {
            self.clock
                .add_seconds(&format!("eval_{}", p.name()), seconds);
            self.log_json(&serde_json::json!({"event": "eval", "after_task": t, "protocol": p.name(), "row": row,
                "seconds": seconds}))?;
            let cells: Vec<log::ScalarRow<'_>> = row
                .iter()
                .enumerate()
                .filter_map(|(j, v)| {
                    v.map(|value| log::ScalarRow {
                        event: "eval",
                        task: t,
                        epoch: None,
                        step: None,
                        term: format!("{}/task_{j}", p.name()),
                        value,
                    })
                })
                .collect();
            self.log_scalars(&cells)?;
            sink.event(&Event::Eval {
                task: t,
                protocol: p.name().to_string(),
                row: row.clone(),
                seconds,
            });
            self.matrices
                .entry(p.name().to_string())
                .or_default()
                .push(row);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), CoreError> {
        let started = std::time::Instant::now();
        let layout = ResultsLayout {
            single_row: self.strategy.single_row(),
            distiller: &self.distiller,
        };
        eval::write_results(
            &self.opts.dir,
            &self.cfg,
            &self.stream,
            &self.data,
            &self.matrices,
            &layout,
        )?;
        self.write_manifest(true)?;
        self.clock.add("report", started.elapsed());
        let totals = timing::json(&self.clock.totals());
        self.log_json(
            &serde_json::json!({"event": "finished", "time": now_rfc3339(),
            "phase_seconds": totals}),
        )?;
        Ok(())
    }
}
