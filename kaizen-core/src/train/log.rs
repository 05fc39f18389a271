//! The run's log files: `metrics.jsonl` (one JSON object per line, appended) and `manifest.json`
//! (provenance: config, hash, stream, network, weights, versions, times).

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
                            "test_images": self.data.test.len(), "num_classes": self.data.num_classes},
                "stream": self.stream.describe(),
                "class_order": self.stream.class_order(),
                "effective_weights": self.effective_weights(),
                "distiller": self.distiller,
                "teacher_bn": self.cfg.train.teacher_bn,
                "replay": self.strategy.replay(),
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
}
