//! Developer tool: the classifier's inputs of a whole run, written to a folder (`kaizen run --dump-classifier-inputs
//! DIR`), so that classifier recipes can be replayed offline in seconds (`scripts/classifier_replay.py`).
//!
//! The classifier reads detached features, so its training never changes the backbone's trajectory: retraining it
//! offline on the features a run saw gives what the run would have given with another classifier recipe (up to
//! the classifier's own initialisation). Files:
//! - `steps.jsonl`: one line per optimiser step: `task`, `step` (within the task), `lr` (the scheduled main lr),
//!   `n` (images in the batch, replay included), `d` (feature size), `k` (feature blocks: 2, or 4 with a frozen
//!   model), `offset` (bytes into `steps.bin`) and `labels` (-1 = unlabelled);
//! - `steps.bin`: per step, `k` blocks of `n x d` little-endian f32: the online backbone's features of view 1 and
//!   view 2 (batch statistics, as the step sees them), then the frozen backbone's features of both views;
//! - `tasks.json`: the classes of each task of the stream (`[[c, ...], ...]`);
//! - `eval_<task>.bin`: after each task, the backbone's eval-mode features of every test image (`N x d` f32), and
//!   `eval_labels.json` (the test labels).

use crate::error::CoreError;
use candle_core::Tensor;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writer of a classifier-input dump (see the module docs for the format).
#[derive(Debug, Clone)]
pub struct FeatureDump {
    dir: PathBuf,
}

fn f32_bytes(t: &Tensor, out: &mut Vec<u8>) -> Result<(), CoreError> {
    for v in t
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?
    {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

impl FeatureDump {
    /// A dump into `dir` (created; must be empty or absent, so two runs never mix) of a stream with `tasks`.
    pub fn create(dir: &Path, tasks: &[Vec<u16>]) -> Result<Self, CoreError> {
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(CoreError::Invalid(format!(
                "dump folder {} is not empty: choose another one",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
        let p = dir.join("tasks.json");
        let text = serde_json::to_string(tasks).map_err(|e| CoreError::Invalid(e.to_string()))?;
        std::fs::write(&p, text).map_err(|e| CoreError::io(&p, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Appends one step: `feats` are (n, d) blocks, `labels` the n labels.
    pub fn step(
        &self,
        task: usize,
        step: usize,
        lr: f64,
        feats: &[&Tensor],
        labels: &[i64],
    ) -> Result<(), CoreError> {
        let mut bytes = Vec::new();
        for f in feats {
            f32_bytes(f, &mut bytes)?;
        }
        let bin = self.dir.join("steps.bin");
        let offset = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&bin)
            .map_err(|e| CoreError::io(&bin, e))?;
        f.write_all(&bytes).map_err(|e| CoreError::io(&bin, e))?;
        let d = feats.first().map_or(Ok(0), |f| f.dim(1))?;
        let line = serde_json::json!({"task": task, "step": step, "lr": lr, "n": labels.len(), "d": d,
            "k": feats.len(), "offset": offset, "labels": labels});
        let idx = self.dir.join("steps.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&idx)
            .map_err(|e| CoreError::io(&idx, e))?;
        writeln!(f, "{line}").map_err(|e| CoreError::io(&idx, e))
    }

    /// Writes the eval-mode test features after `task` and the test labels.
    pub fn eval(&self, task: usize, feats: &Tensor, labels: &[u16]) -> Result<(), CoreError> {
        let mut bytes = Vec::new();
        f32_bytes(feats, &mut bytes)?;
        let p = self.dir.join(format!("eval_{task}.bin"));
        std::fs::write(&p, bytes).map_err(|e| CoreError::io(&p, e))?;
        let p = self.dir.join("eval_labels.json");
        let text = serde_json::to_string(labels).map_err(|e| CoreError::Invalid(e.to_string()))?;
        std::fs::write(&p, text).map_err(|e| CoreError::io(&p, e))
    }
}
