//! `kaizen sweep plan`: a grid file expanded into `sweep.json`, every run with a stable index, a run id (the
//! first 12 hex digits of its resolved config's hash, the `run_id` of its `scalars.csv`), its overrides, its
//! resolved config and its run directory. Expansion order: the grid keys sorted by name (the last one varies
//! fastest), then the strategies, then the seeds, as listed. Every run's config is resolved and validated here,
//! so an unknown key or value fails at plan time, not on the cluster.

use crate::config::{preset_text, Resolver};
use anyhow::{bail, Context, Result};
use kaizen_core::config::ExperimentConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The grid file (TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridFile {
    /// Built-in preset every run starts from (default `mini`).
    #[serde(default = "default_preset")]
    pub preset: String,
    /// A TOML config merged over the preset (relative paths are relative to the grid file).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Seeds (at least one).
    pub seeds: Vec<u64>,
    /// Strategies (default: the preset's).
    #[serde(default)]
    pub strategies: Vec<String>,
    /// Overrides applied to every run (`"train.epochs" = 2`).
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
    /// Config keys and the list of values to sweep over (`"loss.classifier_distill" = [1.0, 2.0]`).
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
}

fn default_preset() -> String {
    "mini".into()
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    /// Position in the array (0-based): `SLURM_ARRAY_TASK_ID`, `JOB_COMPLETION_INDEX` or `--index`.
    pub index: usize,
    /// First 12 hex digits of the resolved config's hash.
    pub id: String,
    /// The grid cell the run belongs to: its grid values and strategy (every seed of a cell shares it).
    pub cell: String,
    /// The grid values of the run (key -> TOML value text).
    pub grid: BTreeMap<String, String>,
    /// Strategy.
    pub strategy: String,
    /// Seed.
    pub seed: u64,
    /// Every override applied over the preset, in order (`key=value`).
    pub overrides: Vec<String>,
    /// Run directory, relative to the sweep directory.
    pub dir: String,
    /// The resolved config (what the worker trains).
    pub config: ExperimentConfig,
}

/// `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// `kaizen-sweep`.
    pub format: String,
    /// Schema version (1).
    pub schema: u32,
    /// The grid keys, sorted.
    pub grid_keys: Vec<String>,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// Every run.
    pub runs: Vec<PlannedRun>,
}

/// The sweep file of a sweep directory.
pub const SWEEP_FILE: &str = "sweep.json";

/// Every combination of the grid's values, keys sorted, the last key varying fastest.
fn combinations(grid: &BTreeMap<String, Vec<toml::Value>>) -> Vec<Vec<(String, toml::Value)>> {
    let mut out: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in grid {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push((key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    out
}

/// Check the grid file's lists: seeds and every grid list non-empty, no duplicates, no key both set and swept.
fn check(g: &GridFile, source: &str) -> Result<()> {
    if g.seeds.is_empty() {
        bail!("{source}: `seeds` must list at least one seed");
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(s) = g.seeds.iter().find(|s| !seen.insert(**s)) {
        bail!("{source}: seed {s} is listed twice");
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(s) = g.strategies.iter().find(|s| !seen.insert(s.as_str())) {
        bail!("{source}: strategy `{s}` is listed twice");
    }
    for (k, v) in &g.grid {
        if v.is_empty() {
            bail!("{source}: grid key `{k}` has no values");
        }
        if g.set.contains_key(k) {
            bail!("{source}: `{k}` is both in [set] and in [grid]");
        }
        if k == "seed" || k == "strategy" {
            bail!("{source}: `{k}` has its own list (`seeds`, `strategies`), not a [grid] entry");
        }
    }
    Ok(())
}

/// A TOML value as override text (`key=value`).
fn assignment(key: &str, v: &toml::Value) -> String {
    format!("{key}={v}")
}

/// Expand the grid file at `path` into a sweep whose run directories live under `runs/`.
pub fn plan(path: &Path) -> Result<Sweep> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {source}"))?;
    let g: GridFile =
        toml::from_str(&text).with_context(|| format!("{source}: not a grid file"))?;
    check(&g, &source)?;
    let base_config = match &g.config {
        Some(c) => {
            let p = path.parent().unwrap_or(Path::new(".")).join(c);
            let t = std::fs::read_to_string(&p)
                .with_context(|| format!("{source}: cannot read config {}", p.display()))?;
            Some((t, p.display().to_string()))
        }
        None => None,
    };
    let strategies: Vec<Option<String>> = if g.strategies.is_empty() {
        vec![None]
    } else {
        g.strategies.iter().cloned().map(Some).collect()
    };
    let mut runs = Vec::new();
    for combo in combinations(&g.grid) {
        for strategy in &strategies {
            for &seed in &g.seeds {
                let mut overrides: Vec<String> =
                    g.set.iter().map(|(k, v)| assignment(k, v)).collect();
                overrides.extend(combo.iter().map(|(k, v)| assignment(k, v)));
                if let Some(s) = strategy {
                    overrides.push(assignment("strategy", &toml::Value::String(s.clone())));
                }
                overrides.push(format!("seed={seed}"));
                let mut r = Resolver::new()?;
                r.merge_toml(preset_text(&g.preset)?, &format!("preset `{}`", g.preset))?;
                if let Some((t, p)) = &base_config {
                    r.merge_toml(t, p)?;
                }
                for o in &overrides {
                    r.set(o, &source)?;
                }
                let config = r
                    .finish()
                    .with_context(|| format!("{source}: run {}", runs.len()))?;
                let id: String = kaizen_core::run_dir::config_hash(&config)?
                    .chars()
                    .take(12)
                    .collect();
                let grid: BTreeMap<String, String> = combo
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect();
                let mut cell: Vec<String> = combo.iter().map(|(k, v)| assignment(k, v)).collect();
                cell.push(format!("strategy={}", config.strategy));
                runs.push(PlannedRun {
                    index: runs.len(),
                    dir: format!("runs/{id}"),
                    id,
                    cell: cell.join(" "),
                    grid,
                    strategy: config.strategy.clone(),
                    seed,
                    overrides,
                    config,
                });
            }
        }
    }
    let mut ids = std::collections::HashMap::new();
    for r in &runs {
        if let Some(other) = ids.insert(r.id.clone(), r.index) {
            bail!(
                "{source}: runs {other} and {} resolve to the same config (id {}): a grid value that changes nothing?",
                r.index,
                r.id
            );
        }
    }
    Ok(Sweep {
        format: "kaizen-sweep".into(),
        schema: 1,
        grid_keys: g.grid.keys().cloned().collect(),
        seeds: g.seeds.clone(),
        runs,
    })
}

/// Read `DIR/sweep.json`.
pub fn read(dir: &Path) -> Result<Sweep> {
    let path = dir.join(SWEEP_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: plan the sweep first (`kaizen sweep plan --grid GRID.toml --out {}`)",
            path.display(),
            dir.display()
        )
    })?;
    let s: Sweep = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a sweep file", path.display()))?;
    if s.format != "kaizen-sweep" || s.schema != 1 {
        bail!(
            "{}: format {} schema {} is not kaizen-sweep 1",
            path.display(),
            s.format,
            s.schema
        );
    }
    Ok(s)
}

/// Write `DIR/sweep.json` (atomically). A directory that already holds a different plan is refused: its runs
/// would no longer match their indices.
pub fn write(dir: &Path, sweep: &Sweep) -> Result<bool> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(SWEEP_FILE);
    if path.exists() {
        let old = read(dir)?;
        if old == *sweep {
            return Ok(false);
        }
        bail!(
            "{} holds another plan ({} runs; the new one has {}): plan into a new directory, or delete it first",
            path.display(),
            old.runs.len(),
            sweep.runs.len()
        );
    }
    let text = serde_json::to_string_pretty(sweep)?;
    kaizen_core::run_dir::write_atomic(&path, text.as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("grid.toml");
        std::fs::write(&path, text).expect("write grid");
        (dir, path)
    }

    const TWO_KEYS: &str = r#"
preset = "smoke"
seeds = [3, 1]
strategies = ["kaizen", "cassle"]
[set]
"train.epochs" = 2
[grid]
"loss.classifier_distill" = [1.0, 2.0]
"data.label_fraction" = [0.5, 1.0]
"#;

    #[test]
    fn expansion_order_overrides_and_directories() {
        let (_d, path) = grid(TWO_KEYS);
        let s = plan(&path).expect("plan");
        assert_eq!(s.runs.len(), 2 * 2 * 2 * 2);
        assert_eq!(
            s.grid_keys,
            ["data.label_fraction", "loss.classifier_distill"]
        );
        // Keys sorted, the last varying fastest; then strategies; then seeds, as listed.
        let first: Vec<(String, &str, u64)> = s.runs[..4]
            .iter()
            .map(|r| (r.cell.clone(), r.strategy.as_str(), r.seed))
            .collect();
        let c = "data.label_fraction=0.5 loss.classifier_distill=1.0";
        assert_eq!(
            first,
            [
                (format!("{c} strategy=kaizen"), "kaizen", 3),
                (format!("{c} strategy=kaizen"), "kaizen", 1),
                (format!("{c} strategy=cassle"), "cassle", 3),
                (format!("{c} strategy=cassle"), "cassle", 1),
            ]
        );
        assert_eq!(s.runs[4].grid["loss.classifier_distill"], "2.0");
        let r = &s.runs[5];
        assert_eq!(r.index, 5);
        assert_eq!(r.dir, format!("runs/{}", r.id));
        assert_eq!(r.id.len(), 12);
        assert_eq!(
            r.overrides,
            [
                "train.epochs=2",
                "data.label_fraction=0.5",
                "loss.classifier_distill=2.0",
                "strategy=\"kaizen\"",
                "seed=1"
            ]
        );
        assert_eq!((r.config.train.epochs, r.config.seed), (2, 1));
        assert_eq!(r.config.loss.classifier_distill, 2.0);
        assert_eq!(r.config.data.num_tasks, 2, "the smoke preset underneath");
    }

    #[test]
    fn replanning_gives_the_same_ids_and_a_changed_grid_is_refused_in_place() {
        let (d, path) = grid(TWO_KEYS);
        let a = plan(&path).expect("plan");
        let b = plan(&path).expect("plan again");
        assert_eq!(a, b);
        let ids: std::collections::HashSet<&str> = a.runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), a.runs.len(), "ids are unique");
        let out = d.path().join("sweep");
        assert!(write(&out, &a).expect("write"));
        assert!(!write(&out, &b).expect("same plan again"));
        assert_eq!(read(&out).expect("read"), a);
        std::fs::write(&path, TWO_KEYS.replace("[3, 1]", "[3]")).expect("edit");
        let c = plan(&path).expect("smaller plan");
        assert_eq!(c.runs[0].id, a.runs[0].id, "a run keeps its id");
        let err = write(&out, &c).expect_err("another plan in the same directory");
        assert!(err.to_string().contains("another plan"), "{err}");
    }

    #[test]
    fn bad_grids_fail_at_plan_time_naming_the_problem() {
        for (text, needle) in [
            (
                "seeds = [1]\n[grid]\n\"train.epoch\" = [1, 2]\n",
                "train.epoch",
            ),
            ("seeds = [1]\nstrategies = [\"kaizen\", \"nope\"]\n", "nope"),
            ("seeds = []\n", "at least one seed"),
            ("seeds = [1, 1]\n", "seed 1 is listed twice"),
            ("seeds = [1]\n[grid]\n\"train.epochs\" = []\n", "no values"),
            ("seeds = [1]\n[grid]\nseed = [1, 2]\n", "own list"),
            ("seeds = [1]\nbogus = 1\n", "not a grid file"),
            (
                "seeds = [1]\n[grid]\n\"train.epochs\" = [\"two\"]\n",
                "train.epochs",
            ),
            (
                "seeds = [1]\n[set]\n\"train.epochs\" = 1\n[grid]\n\"train.epochs\" = [1, 2]\n",
                "both",
            ),
            (
                "preset = \"smoke\"\nseeds = [1]\n[grid]\n\"train.epochs\" = [1, 1]\n",
                "same config",
            ),
        ] {
            let (_d, path) = grid(text);
            let err = format!("{:#}", plan(&path).expect_err(text));
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
