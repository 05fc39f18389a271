//! The run's log files: `metrics.jsonl` (one JSON object per line, appended), `scalars.csv` (the same numbers as
//! a flat table with a header: `run_id,event,task,epoch,step,term,value`, one row per logged step term, epoch mean
//! and evaluation cell, so `pandas.read_csv` reads it without options) and `manifest.json` (provenance: config, hash,
//! stream, network, weights, versions, times). Both logs are append-only: after a resume, rows of the superseded
//! attempt stay, and the later row of the same (event, task, epoch, step, term) is the one that counts.

use super::trainer::Trainer;
use crate::error::CoreError;
use crate::run_dir::{files, now_rfc3339, write_atomic};
use std::fs;
use std::io::Write;

impl Trainer<'_> {
    pub fn write_manifest(&self, finished: bool) -> Result<(), CoreError> {
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
                            "test_images": self.data.test.len(), "num_classes": self.data.num_classes,
                            "shape": self.data.shape.to_string(),
                            "streamed": self.data.train.is_streamed(),
                            "skipped_files": self.data.report.skipped.len(),
                            "skipped": self.data.report.skipped.iter().take(100).collect::<Vec<_>>()},
                "stream": self.stream.describe(),
                "class_order": self.stream.class_order(),
                "effective_weights": self.effective_weights(),
                "distiller": self.distiller,
                "teacher_bn": self.cfg.train.teacher_bn,
                "replay": self.strategy.replay(),
                "network": self.spec,
                "threads": rayon::current_num_threads(),
                "device": match self.opts.device.location() {
                    candle_core::DeviceLocation::Cpu => "cpu".to_string(),
                    candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
                    candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
                },
                "provenance": self.opts.provenance,
            })
        };
        if finished {
            m["end_time"] = serde_json::json!(now_rfc3339());
        }
        // Images whose header was fine but whose data did not decode (`data.bad_files = skip`): counted so far.
        let failures: usize = [&self.data.train, &self.data.test]
            .iter()
            .filter_map(|s| s.encoded_images())
            .map(|e| e.decode_failures())
            .sum();
        if failures > 0 {
            m["dataset"]["decode_failures"] = serde_json::json!(failures);
        }
        let text =
            serde_json::to_string_pretty(&m).map_err(|e| CoreError::Invalid(e.to_string()))?;
        write_atomic(&path, text.as_bytes())
    }

    pub fn log_json(&mut self, v: &serde_json::Value) -> Result<(), CoreError> {
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

    /// Append rows to `scalars.csv` (created with its header): `(event, task, epoch, step, term, value)`, with
    /// `None` for a column that does not apply (written empty).
    pub fn log_scalars(&mut self, rows: &[ScalarRow<'_>]) -> Result<(), CoreError> {
        let path = self.opts.dir.join(files::SCALARS);
        if self.scalars.is_none() {
            let fresh = !path.exists();
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| CoreError::io(&path, e))?;
            if fresh {
                writeln!(f, "run_id,event,task,epoch,step,term,value")
                    .map_err(|e| CoreError::io(&path, e))?;
            }
            self.scalars = Some(f);
        }
        let run_id = self.run_id();
        let Some(out) = self.scalars.as_mut() else {
            return Ok(());
        };
        let cell = |v: Option<usize>| v.map_or_else(String::new, |v| v.to_string());
        let mut text = String::new();
        for r in rows {
            text.push_str(&format!(
                "{run_id},{},{},{},{},{},{}\n",
                r.event,
                r.task,
                cell(r.epoch),
                cell(r.step),
                r.term,
                r.value
            ));
        }
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| CoreError::io(&path, e))
    }

    /// The run's id in logs: the first 12 hex digits of its config hash (a sweep's run id too).
    pub fn run_id(&self) -> String {
        self.config_hash.chars().take(12).collect()
    }
}

/// One row of `scalars.csv`.
pub(super) struct ScalarRow<'a> {
    /// `step`, `epoch` or `eval`.
    pub event: &'a str,
    /// Task (phase) index.
    pub task: usize,
    /// Epoch within the task (steps and epochs).
    pub epoch: Option<usize>,
    /// Step within the task (steps).
    pub step: Option<usize>,
    /// A loss term, `lr`, or `<protocol>/task_<j>` for an evaluation cell.
    pub term: String,
    /// The value.
    pub value: f64,
}
