//! `kaizen sweep collect`: one table of a sweep's results. For every grid cell (grid values + strategy) and
//! protocol, each metric as mean ± sample std over the seeds that finished (the statistics of `kaizen run
//! --seeds`, [`SeedStat`]), with the per-seed values; and the runs that are missing, unfinished or failed, with
//! their log file. Written as `results.md`, `results.json` and `results.csv` (long format: one row per cell,
//! protocol and metric, with a header).

use super::plan::{PlannedRun, Sweep};
use anyhow::{Context, Result};
use kaizen_core::run_dir::files;
use kaizen_metrics::seeds::SeedStat;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The state of one planned run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunState {
    /// Index in the sweep.
    pub index: usize,
    /// Run id.
    pub id: String,
    /// Seed.
    pub seed: u64,
    /// `finished`, `unfinished` (started, no results: interrupted, failed or still running) or `not started`.
    pub state: String,
    /// The worker's log file, when it exists.
    pub log: Option<String>,
}

/// One grid cell: its metrics per protocol over the seeds, and the state of its runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellResult {
    /// `key=value ... strategy=s`.
    pub cell: String,
    /// Strategy.
    pub strategy: String,
    /// Grid values (key -> value text).
    pub grid: BTreeMap<String, String>,
    /// The cell's seeds, in plan order.
    pub seeds: Vec<u64>,
    /// protocol -> metric -> statistics over the seeds (values in seed order; `None` for a run without results).
    pub protocols: BTreeMap<String, BTreeMap<String, SeedStat>>,
    /// Every run of the cell.
    pub runs: Vec<RunState>,
}

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Results {
    /// The grid keys.
    pub grid_keys: Vec<String>,
    /// Cells in plan order.
    pub cells: Vec<CellResult>,
    /// Runs planned, finished.
    pub counts: (usize, usize),
}

/// Scalar metrics of one run's `summary.json`: protocol -> metric -> value (numbers only; single-row runs give
/// `mean_accuracy`).
pub fn summary_metrics(text: &str, file: &str) -> Result<BTreeMap<String, BTreeMap<String, f64>>> {
    let v: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{file}: not JSON"))?;
    let protocols = v["protocols"]
        .as_object()
        .with_context(|| format!("{file}: no `protocols` object"))?;
    let mut out = BTreeMap::new();
    for (p, m) in protocols {
        let metrics: BTreeMap<String, f64> = m
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                    .collect()
            })
            .unwrap_or_default();
        out.insert(p.clone(), metrics);
    }
    Ok(out)
}

type Metrics = BTreeMap<String, BTreeMap<String, f64>>;

/// The runs of one cell while collecting: their states, their metrics (None without results), the first run.
type CellRuns<'a> = (Vec<RunState>, Vec<Option<Metrics>>, &'a PlannedRun);

/// The state and metrics of one run.
fn read_run(dir: &Path, run: &PlannedRun) -> Result<(RunState, Option<Metrics>)> {
    let run_dir = dir.join(&run.dir);
    let log = dir.join("logs").join(format!("{}.out", run.index));
    let summary = run_dir.join(files::SUMMARY);
    let (state, metrics) = if summary.exists() {
        let text = std::fs::read_to_string(&summary)
            .with_context(|| format!("cannot read {}", summary.display()))?;
        let m = summary_metrics(&text, &summary.display().to_string())?;
        ("finished", Some(m))
    } else if run_dir.join(files::CONFIG).exists() {
        ("unfinished", None)
    } else {
        ("not started", None)
    };
    Ok((
        RunState {
            index: run.index,
            id: run.id.clone(),
            seed: run.seed,
            state: state.into(),
            log: log.exists().then(|| log.display().to_string()),
        },
        metrics,
    ))
}

/// Collect the results of the sweep in `dir`.
pub fn collect(dir: &Path, sweep: &Sweep) -> Result<Results> {
    let mut order: Vec<String> = Vec::new();
    let mut cells: BTreeMap<String, CellRuns<'_>> = BTreeMap::new();
    let mut finished = 0;
    for run in &sweep.runs {
        let (state, metrics) = read_run(dir, run)?;
        finished += usize::from(metrics.is_some());
        let entry = cells.entry(run.cell.clone()).or_insert_with(|| {
            order.push(run.cell.clone());
            (Vec::new(), Vec::new(), run)
        });
        entry.0.push(state);
        entry.1.push(metrics);
    }
    let mut out = Vec::new();
    for cell in order {
        let (runs, metrics, first) = cells.remove(&cell).context("a cell vanished")?;
        let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in metrics.iter().flatten() {
            for (p, ms) in m {
                let list = names.entry(p.clone()).or_default();
                for k in ms.keys() {
                    if !list.contains(k) {
                        list.push(k.clone());
                    }
                }
            }
        }
        let protocols = names
            .into_iter()
            .map(|(p, keys)| {
                let stats = keys
                    .into_iter()
                    .map(|k| {
                        let values = metrics
                            .iter()
                            .map(|m| m.as_ref().and_then(|m| m.get(&p)?.get(&k).copied()))
                            .collect();
                        (k, SeedStat::of(values))
                    })
                    .collect();
                (p, stats)
            })
            .collect();
        out.push(CellResult {
            cell,
            strategy: first.strategy.clone(),
            grid: first.grid.clone(),
            seeds: runs.iter().map(|r| r.seed).collect(),
            protocols,
            runs,
        });
    }
    Ok(Results {
        grid_keys: sweep.grid_keys.clone(),
        cells: out,
        counts: (sweep.runs.len(), finished),
    })
}

/// The metrics shown in `results.md` (every metric is in the JSON and CSV).
const SHOWN: [&str; 5] = [
    "final_accuracy",
    "average_incremental_accuracy",
    "forgetting",
    "plasticity",
    "mean_accuracy",
];

/// `results.md`.
pub fn markdown(r: &Results, dir: &Path) -> String {
    let mut s = format!(
        "# Sweep results\n\n`{}`: {} of {} runs finished. Each cell: mean ± sample standard deviation over the seeds \
         that finished, in %, then n; per-seed values in `results.json` / `results.csv`.\n",
        dir.display(),
        r.counts.1,
        r.counts.0
    );
    let protocols: std::collections::BTreeSet<&String> =
        r.cells.iter().flat_map(|c| c.protocols.keys()).collect();
    for p in protocols {
        let shown: Vec<&str> = SHOWN
            .iter()
            .copied()
            .filter(|m| {
                r.cells
                    .iter()
                    .any(|c| c.protocols.get(p).is_some_and(|x| x.contains_key(*m)))
            })
            .collect();
        s.push_str(&format!(
            "\n## {p}\n\n| cell | {} |\n|---|{}\n",
            shown.join(" | "),
            "---:|".repeat(shown.len())
        ));
        for c in &r.cells {
            let cols: Vec<String> = shown
                .iter()
                .map(|m| match c.protocols.get(p).and_then(|x| x.get(*m)) {
                    Some(st) => format!("{} (n={})", st.text(), st.n),
                    None => "n/a".into(),
                })
                .collect();
            s.push_str(&format!("| {} | {} |\n", c.cell, cols.join(" | ")));
        }
    }
    let missing: Vec<&RunState> = r
        .cells
        .iter()
        .flat_map(|c| &c.runs)
        .filter(|x| x.state != "finished")
        .collect();
    if !missing.is_empty() {
        s.push_str("\n## Runs without results\n\n| index | id | seed | state | log |\n|---:|---|---:|---|---|\n");
        for m in missing {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                m.index,
                m.id,
                m.seed,
                m.state,
                m.log.as_deref().unwrap_or("-")
            ));
        }
    }
    s
}

/// Quote a CSV field when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `results.csv`: `cell,strategy,<grid keys>,protocol,metric,mean,std,n,values` (values: `seed:value` pairs
/// separated by `;`, `NA` for a seed without the metric).
pub fn csv(r: &Results) -> String {
    let mut head = vec!["cell".to_string(), "strategy".to_string()];
    head.extend(r.grid_keys.iter().cloned());
    head.extend(["protocol", "metric", "mean", "std", "n", "values"].map(String::from));
    let mut s = head
        .iter()
        .map(|h| csv_field(h))
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    let num = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x}"));
    for c in &r.cells {
        for (p, metrics) in &c.protocols {
            for (m, st) in metrics {
                let values: Vec<String> = c
                    .seeds
                    .iter()
                    .zip(&st.values)
                    .map(|(seed, v)| {
                        format!("{seed}:{}", v.map_or("NA".into(), |x| format!("{x}")))
                    })
                    .collect();
                let mut row = vec![csv_field(&c.cell), csv_field(&c.strategy)];
                row.extend(
                    r.grid_keys
                        .iter()
                        .map(|k| csv_field(c.grid.get(k).map_or("", String::as_str))),
                );
                row.extend([
                    csv_field(p),
                    csv_field(m),
                    num(st.mean),
                    num(st.std),
                    st.n.to_string(),
                    values.join(";"),
                ]);
                s.push_str(&row.join(","));
                s.push('\n');
            }
        }
    }
    s
}

/// Write `results.md`, `results.json` and `results.csv` into `dir`.
pub fn write(dir: &Path, r: &Results) -> Result<()> {
    let json = serde_json::to_string_pretty(r)?;
    kaizen_core::run_dir::write_atomic(&dir.join("results.json"), json.as_bytes())?;
    kaizen_core::run_dir::write_atomic(&dir.join("results.csv"), csv(r).as_bytes())?;
    kaizen_core::run_dir::write_atomic(&dir.join("results.md"), markdown(r, dir).as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaizen_core::config::ExperimentConfig;

    fn run(index: usize, strategy: &str, seed: u64) -> PlannedRun {
        PlannedRun {
            index,
            id: format!("id{index}"),
            cell: format!("loss.ssl=1.0 strategy={strategy}"),
            grid: BTreeMap::from([("loss.ssl".to_string(), "1.0".to_string())]),
            strategy: strategy.into(),
            seed,
            overrides: Vec::new(),
            dir: format!("runs/id{index}"),
            config: ExperimentConfig::default(),
        }
    }

    fn summary(dir: &Path, r: &PlannedRun, final_acc: f64, forgetting: Option<f64>) {
        let d = dir.join(&r.dir);
        std::fs::create_dir_all(&d).unwrap();
        let s = serde_json::json!({"protocols": {"classifier": {
            "final_accuracy": final_acc, "forgetting": forgetting, "per_task_forgetting": [0.1]}}});
        std::fs::write(d.join(files::SUMMARY), s.to_string()).unwrap();
    }

    #[test]
    fn cells_get_mean_and_std_over_seeds_and_missing_runs_are_listed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        let runs = vec![
            run(0, "kaizen", 1),
            run(1, "kaizen", 2),
            run(2, "finetune", 1),
            run(3, "finetune", 2),
        ];
        summary(dir, &runs[0], 0.5, Some(0.2));
        summary(dir, &runs[1], 0.7, None);
        summary(dir, &runs[2], 0.3, Some(0.6));
        // Run 3 started and stopped (a config, no summary), with a log; nothing else.
        std::fs::create_dir_all(dir.join(&runs[3].dir)).unwrap();
        std::fs::write(dir.join(&runs[3].dir).join(files::CONFIG), "").unwrap();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(dir.join("logs/3.out"), "killed").unwrap();
        let sweep = Sweep {
            format: "kaizen-sweep".into(),
            schema: 1,
            grid_keys: vec!["loss.ssl".into()],
            seeds: vec![1, 2],
            runs,
        };
        let r = collect(dir, &sweep).unwrap();
        assert_eq!(r.counts, (4, 3));
        assert_eq!(r.cells.len(), 2);
        let k = &r.cells[0].protocols["classifier"];
        let f = &k["final_accuracy"];
        assert_eq!((f.n, f.values.clone()), (2, vec![Some(0.5), Some(0.7)]));
        assert!((f.mean.unwrap() - 0.6).abs() < 1e-12);
        assert!((f.std.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        // A metric undefined at one seed (null) averages over the other.
        assert_eq!((k["forgetting"].n, k["forgetting"].mean), (1, Some(0.2)));
        assert!(
            !k.contains_key("per_task_forgetting"),
            "arrays are not metrics"
        );
        let ft = &r.cells[1];
        assert_eq!(
            ft.protocols["classifier"]["final_accuracy"].values,
            [Some(0.3), None]
        );
        assert_eq!(ft.runs[1].state, "unfinished");
        assert!(ft.runs[1].log.as_deref().unwrap().ends_with("logs/3.out"));

        let md = markdown(&r, dir);
        assert!(md.contains("3 of 4 runs finished"), "{md}");
        assert!(
            md.contains("| loss.ssl=1.0 strategy=kaizen | 60.0 ± 14.1 (n=2) |"),
            "{md}"
        );
        assert!(md.contains("| 3 | id3 | 2 | unfinished |"), "{md}");
        let text = csv(&r);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("cell,strategy,loss.ssl,protocol,metric,mean,std,n,values")
        );
        assert!(text.contains(
            "loss.ssl=1.0 strategy=finetune,finetune,1.0,classifier,final_accuracy,0.3,,1,1:0.3;2:NA\n"
        ), "{text}");
        write(dir, &r).unwrap();
        for f in ["results.md", "results.json", "results.csv"] {
            assert!(dir.join(f).exists(), "{f}");
        }
    }
}
