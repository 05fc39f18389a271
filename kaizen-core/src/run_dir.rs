//! The run directory: its file names, the resolved config it holds, atomic writes and timestamps. Used by the
//! trainer and by evaluation alike (neither imports the other for these).

use crate::config::ExperimentConfig;
use crate::error::CoreError;
use kaizen_models::checkpoint;
use std::fs;
use std::path::Path;

/// File names inside a run directory.
pub mod files {
    /// Resolved configuration (TOML).
    pub const CONFIG: &str = "config.toml";
    /// Run manifest (JSON).
    pub const MANIFEST: &str = "manifest.json";
    /// Append-only log of steps, epochs and evaluations (JSON lines).
    pub const METRICS: &str = "metrics.jsonl";
    /// The same numbers as a flat CSV table with a header (`run_id,event,task,epoch,step,term,value`).
    pub const SCALARS: &str = "scalars.csv";
    /// Continual-learning metrics per protocol.
    pub const SUMMARY: &str = "summary.json";
    /// Checkpoint folder.
    pub const CHECKPOINTS: &str = "checkpoints";
    /// The newest resumable checkpoint inside [`CHECKPOINTS`].
    pub const LATEST: &str = "latest.safetensors";
}

/// Read and validate a run directory's resolved config.
pub fn read_config(dir: &Path) -> Result<ExperimentConfig, CoreError> {
    let path = dir.join(files::CONFIG);
    let text = fs::read_to_string(&path).map_err(|e| {
        CoreError::Invalid(format!(
            "{} cannot be read ({e}): is {} a kaizen run directory?",
            path.display(),
            dir.display()
        ))
    })?;
    parse_config(&text, &path)
}

/// Parse and validate a resolved config's TOML text; `path` names it in errors.
pub fn parse_config(text: &str, path: &Path) -> Result<ExperimentConfig, CoreError> {
    let cfg: ExperimentConfig =
        toml::from_str(text).map_err(|e| CoreError::Invalid(format!("{}: {e}", path.display())))?;
    cfg.validate()?;
    Ok(cfg)
}

/// The resolved config as TOML.
pub fn config_toml(cfg: &ExperimentConfig) -> Result<String, CoreError> {
    toml::to_string(cfg)
        .map_err(|e| CoreError::Invalid(format!("config cannot be written as TOML: {e}")))
}

/// sha256 of the config's canonical JSON (recorded in manifests and checkpoints).
pub fn config_hash(cfg: &ExperimentConfig) -> Result<String, CoreError> {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(cfg).map_err(|e| CoreError::Invalid(e.to_string()))?;
    Ok(format!("{:x}", Sha256::digest(&json)))
}

/// Write a file atomically (temp file in the same folder, fsync, rename): the checkpoint format's own writer.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CoreError> {
    Ok(checkpoint::write_atomic(path, bytes)?)
}

/// Current UTC time as RFC 3339 (seconds), e.g. `2026-11-29T14:18:58Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod time_tests {
    use super::now_rfc3339;

    #[test]
    fn timestamps_are_rfc3339_utc_seconds_of_now() {
        let before = std::time::SystemTime::now();
        let s = now_rfc3339();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
        let parsed = humantime::parse_rfc3339(&s).map_err(|e| format!("{s}: {e}"));
        let parsed = parsed.unwrap_or(std::time::UNIX_EPOCH);
        let diff = parsed
            .duration_since(before)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap_or_default();
        assert!(diff.as_secs() <= 2, "{s} is {diff:?} away from now");
    }
}
