//! Results over several seeds: every metric of every protocol and strategy as mean ± standard deviation, with the
//! per-seed values beside them (`comparison.md` / `comparison.json` of `kaizen run --seeds`).
//!
//! The standard deviation is the sample one (divisor n - 1); with one seed it is undefined (`null`, shown as a bare
//! mean). A metric undefined at some seed (e.g. forward transfer without a random baseline) is left out of that
//! seed's count, and `n` says how many seeds the mean is over.

use crate::metrics::lower_is_better;
use crate::{MetricsError, Summary};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

type Result<T> = std::result::Result<T, MetricsError>;

/// The content of one seed's `comparison.json`: `{"strategies": [...], "protocols": {"<protocol>": {"<strategy>":
/// Summary}}}` (what [`crate::write_comparison`] writes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComparisonFile {
    /// Strategies in display order.
    pub strategies: Vec<String>,
    /// protocol -> strategy -> metrics.
    pub protocols: BTreeMap<String, BTreeMap<String, Summary>>,
}

impl ComparisonFile {
    /// Reads a `comparison.json`; errors name the file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| MetricsError::io(path, e))?;
        serde_json::from_str(&text).map_err(|error| MetricsError::Json {
            path: path.to_path_buf(),
            error,
        })
    }
}

/// One metric over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedStat {
    /// Mean over the seeds where the metric is defined (`None` when it is defined at none).
    pub mean: Option<f64>,
    /// Sample standard deviation (divisor n - 1); `None` when n < 2.
    pub std: Option<f64>,
    /// Number of seeds the mean is over.
    pub n: usize,
    /// The value at each seed, in the order of `seeds` (`None` where undefined or the run is missing).
    pub values: Vec<Option<f64>>,
}

impl SeedStat {
    /// Mean and sample standard deviation of the defined values.
    pub fn of(values: Vec<Option<f64>>) -> Self {
        let defined: Vec<f64> = values.iter().flatten().copied().collect();
        let n = defined.len();
        let mean = (n > 0).then(|| defined.iter().sum::<f64>() / n as f64);
        let std = mean.filter(|_| n >= 2).map(|m| {
            let ss: f64 = defined.iter().map(|v| (v - m) * (v - m)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        SeedStat {
            mean,
            std,
            n,
            values,
        }
    }

    /// `mean ± std` in % with one decimal (`mean` alone with one seed, `n/a` with none).
    pub fn text(&self) -> String {
        match (self.mean, self.std) {
            (Some(m), Some(s)) => format!("{:.1} ± {:.1}", m * 100.0, s * 100.0),
            (Some(m), None) => format!("{:.1}", m * 100.0),
            _ => "n/a".into(),
        }
    }
}

/// `comparison.json` of a multi-seed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedComparison {
    /// The seeds, in run order.
    pub seeds: Vec<u64>,
    /// Strategies in display order.
    pub strategies: Vec<String>,
    /// protocol -> strategy -> metric -> statistics over the seeds.
    pub protocols: BTreeMap<String, BTreeMap<String, BTreeMap<String, SeedStat>>>,
}

/// Aggregates one [`ComparisonFile`] per seed (`per_seed[i]` belongs to `seeds[i]`) into mean ± std per metric.
/// Errors when the two lists differ in length or a seed repeats.
pub fn aggregate(seeds: &[u64], per_seed: &[ComparisonFile]) -> Result<SeedComparison> {
    if seeds.len() != per_seed.len() {
        return Err(MetricsError::LengthMismatch {
            what: "per-seed comparisons".into(),
            expected: seeds.len(),
            found: per_seed.len(),
        });
    }
    let mut unique = BTreeSet::new();
    if let Some(s) = seeds.iter().find(|s| !unique.insert(**s)) {
        return Err(MetricsError::BadName {
            name: s.to_string(),
            problem: "seed listed twice".into(),
        });
    }
    let mut strategies: Vec<String> = Vec::new();
    for f in per_seed {
        for s in &f.strategies {
            if !strategies.contains(s) {
                strategies.push(s.clone());
            }
        }
    }
    let protocol_names: BTreeSet<&String> =
        per_seed.iter().flat_map(|f| f.protocols.keys()).collect();
    let mut protocols = BTreeMap::new();
    for p in protocol_names {
        let mut by_strategy = BTreeMap::new();
        for s in &strategies {
            let summaries: Vec<Option<&Summary>> = per_seed
                .iter()
                .map(|f| f.protocols.get(p).and_then(|m| m.get(s)))
                .collect();
            if summaries.iter().all(Option::is_none) {
                continue;
            }
            let mut metrics = BTreeMap::new();
            for (k, key) in Summary::scalar_keys().iter().enumerate() {
                let values = summaries
                    .iter()
                    .map(|sm| sm.and_then(|sm| sm.scalars()[k].1))
                    .collect();
                metrics.insert((*key).to_string(), SeedStat::of(values));
            }
            by_strategy.insert(s.clone(), metrics);
        }
        protocols.insert(p.clone(), by_strategy);
    }
    Ok(SeedComparison {
        seeds: seeds.to_vec(),
        strategies,
        protocols,
    })
}

/// Writes `comparison.json` (the [`SeedComparison`]) and `comparison.md` into `dir`: per protocol, one table of
/// mean ± std (strategies as rows, metrics as columns; the best mean of a column in bold), then the per-seed values
/// of final accuracy, forgetting and plasticity. `command` (the command line that produced the runs) is quoted at
/// the top when not empty.
pub fn write_seed_comparison(dir: &Path, c: &SeedComparison, command: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| MetricsError::io(dir, e))?;
    let json_path = dir.join("comparison.json");
    let mut json = serde_json::to_string_pretty(c).map_err(|error| MetricsError::Json {
        path: json_path.clone(),
        error,
    })?;
    json.push('\n');
    std::fs::write(&json_path, json).map_err(|e| MetricsError::io(&json_path, e))?;

    let seeds: Vec<String> = c.seeds.iter().map(u64::to_string).collect();
    let mut s = String::from("# Strategy comparison over seeds\n\n");
    if !command.is_empty() {
        let _ = writeln!(s, "```sh\n{command}\n```\n");
    }
    let _ = writeln!(
        s,
        "Seeds {}. Each cell: mean ± sample standard deviation over the seeds, in % (differences in percentage \
         points); **bold** = best mean in its column (lower is better for forgetting and intransigence). \
         n/a = undefined or not evaluated. Per-seed runs: `seed-<s>/<strategy>/`.\n",
        seeds.join(", ")
    );
    let keys = Summary::scalar_keys();
    for (p, by_strategy) in &c.protocols {
        let _ = writeln!(s, "## {p}\n");
        let _ = write!(s, "| strategy |");
        for k in &keys {
            let _ = write!(s, " {k} |");
        }
        let _ = write!(s, "\n|---|{}\n", "---:|".repeat(keys.len()));
        let best: Vec<Option<f64>> = keys
            .iter()
            .map(|k| {
                let col: Vec<f64> = by_strategy
                    .values()
                    .filter_map(|m| m.get(*k).and_then(|st| st.mean))
                    .collect();
                if col.len() < 2 {
                    return None;
                }
                let pick = if lower_is_better(k) {
                    f64::min
                } else {
                    f64::max
                };
                col.into_iter().reduce(pick)
            })
            .collect();
        for name in c.strategies.iter().filter(|n| by_strategy.contains_key(*n)) {
            let m = &by_strategy[name];
            let _ = write!(s, "| {name} |");
            for (k, key) in keys.iter().enumerate() {
                let st = m.get(*key);
                let text = st.map_or_else(|| "n/a".into(), SeedStat::text);
                if st.and_then(|st| st.mean).is_some() && st.and_then(|st| st.mean) == best[k] {
                    let _ = write!(s, " **{text}** |");
                } else {
                    let _ = write!(s, " {text} |");
                }
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "\nPer seed ({}), in %: final accuracy / forgetting / plasticity\n",
            seeds.join(", ")
        );
        let _ = writeln!(
            s,
            "| strategy | {} |\n|---|{}",
            seeds
                .iter()
                .map(|x| format!("seed {x}"))
                .collect::<Vec<_>>()
                .join(" | "),
            "---:|".repeat(seeds.len())
        );
        for name in c.strategies.iter().filter(|n| by_strategy.contains_key(*n)) {
            let m = &by_strategy[name];
            let cells: Vec<String> = (0..c.seeds.len())
                .map(|i| {
                    ["final_accuracy", "forgetting", "plasticity"]
                        .iter()
                        .map(|k| {
                            m.get(*k)
                                .and_then(|st| st.values.get(i).copied().flatten())
                                .map_or_else(|| "n/a".into(), |v| format!("{:.1}", v * 100.0))
                        })
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
                .collect();
            let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
        }
        s.push('\n');
    }
    let path = dir.join("comparison.md");
    std::fs::write(&path, s).map_err(|e| MetricsError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std_by_hand() {
        // values 0.2, 0.4, 0.6: mean 0.4, deviations -0.2, 0, 0.2, sum of squares 0.08, / (3 - 1) = 0.04, std 0.2
        let st = SeedStat::of(vec![Some(0.2), Some(0.4), Some(0.6)]);
        assert!((st.mean.unwrap() - 0.4).abs() < 1e-12);
        assert!((st.std.unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(st.n, 3);
        assert_eq!(st.text(), "40.0 ± 20.0");
        // an undefined value is left out: mean of 0.5 alone, no std
        let st = SeedStat::of(vec![None, Some(0.5)]);
        assert_eq!((st.mean, st.std, st.n), (Some(0.5), None, 1));
        assert_eq!(st.text(), "50.0");
        assert_eq!(SeedStat::of(vec![None]).text(), "n/a");
    }
}
