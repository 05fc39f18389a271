//! Comparisons across run directories: `comparison.md` / `comparison.json` of a `--compare` run and the
//! mean ± std over seeds of a `--seeds` run.

use crate::error::CoreError;
use kaizen_metrics::report::SummaryFile;
use kaizen_metrics::summarize;
use std::collections::BTreeMap;
use std::path::Path;

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
