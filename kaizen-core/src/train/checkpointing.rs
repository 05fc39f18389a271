//! Checkpoints: what a checkpoint holds (online model, method state, frozen model, optimiser, replay
//! memory, counters and accuracy rows), saving it (NaN-checked, atomic), restoring it (config-checked), and
//! finding the newest intact one to resume from.

use super::trainer::Trainer;
use crate::error::CoreError;
use crate::events::{Event, EventSink};
use crate::network::Frozen;
use crate::run_dir::files;
use candle_core::{Device, Tensor};
use kaizen_data::ReplayMemory;
use kaizen_models::checkpoint::{self, Manifest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use super::options::Counters;

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

/// A checkpoint read from disk: its path, tensors and manifest.
pub(super) type Loaded = (PathBuf, checkpoint::NamedTensors, Manifest);

/// The newest checkpoint of a run directory that loads: `latest`, else the task checkpoints from the last
/// task down. Unreadable ones are reported through `sink`; the error of an unreadable `latest` is returned
/// alongside when nothing loads.
pub(super) fn newest_checkpoint(
    dir: &Path,
    device: &Device,
    sink: &mut dyn EventSink,
) -> Result<(Option<Loaded>, Option<String>), CoreError> {
    let ckdir = dir.join(files::CHECKPOINTS);
    let latest = ckdir.join(files::LATEST);
    let mut latest_error = None;
    for path in std::iter::once(latest.clone()).chain(task_checkpoints(&ckdir)?) {
        if !path.exists() {
            continue;
        }
        match checkpoint::load(&path, device) {
            Ok((tensors, manifest)) => return Ok((Some((path, tensors, manifest)), None)),
            Err(e) => {
                sink.event(&Event::Notice(format!(
                    "{} cannot be read ({e}); trying an older checkpoint",
                    path.display()
                )));
                if path == latest {
                    latest_error = Some(e.to_string());
                }
            }
        }
    }
    Ok((None, latest_error))
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

impl Trainer<'_> {
    pub fn save_latest(&mut self, sink: &mut dyn EventSink) -> Result<PathBuf, CoreError> {
        let p = self.opts.dir.join(files::CHECKPOINTS).join(files::LATEST);
        self.save_checkpoint(&p)?;
        sink.event(&Event::Checkpoint {
            path: p.display().to_string(),
        });
        Ok(p)
    }

    pub fn save_checkpoint(&mut self, path: &Path) -> Result<(), CoreError> {
        let started = std::time::Instant::now();
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
        self.clock.add("checkpoint", started.elapsed());
        Ok(())
    }

    pub fn restore(
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
