//! Run reports (`report.md`, `acc_matrix_<protocol>.csv`, plots), the summary JSON and the comparison of several
//! strategies (`comparison.md`, `comparison.json`). Reports show accuracies in % with two decimals; CSV and JSON keep
//! fractions in [0, 1].

use crate::metrics::lower_is_better;
use crate::{summarize, write_csv, AccuracyMatrix, MetricsError, Summary};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

type Result<T> = std::result::Result<T, MetricsError>;

/// One protocol's outcome: its name (`classifier`, `classifier_seen`, `knn`, `linear`, ...; letters, digits, `_`,
/// `-` only, since it becomes part of file names), its accuracy matrix and the metrics of that matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolResult {
    /// Protocol name (file-name safe).
    pub name: String,
    /// The accuracy matrix R of this protocol.
    pub matrix: AccuracyMatrix,
    /// The metrics of `matrix`.
    pub summary: Summary,
}

impl ProtocolResult {
    /// Builds a result and computes its summary with [`summarize`] (same errors); checks the name.
    pub fn new(
        name: &str,
        matrix: AccuracyMatrix,
        baseline: Option<&[f64]>,
        joint: Option<&[f64]>,
    ) -> Result<Self> {
        check_name(name)?;
        let summary = summarize(&matrix, baseline, joint)?;
        Ok(ProtocolResult {
            name: name.into(),
            matrix,
            summary,
        })
    }
}

/// Everything `report.md` shows about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportInput {
    /// Run name (report title).
    pub run_name: String,
    /// Dataset name (e.g. `cifar100`).
    pub dataset: String,
    /// Strategy (e.g. `kaizen`, `finetune`, `cassle`).
    pub strategy: String,
    /// The run's master seed.
    pub seed: u64,
    /// The stream's class order: the class ids of each task, in task order.
    pub class_order: Vec<Vec<u16>>,
    /// The configuration as text (e.g. the resolved TOML); shown verbatim in a code block. Empty: omitted.
    pub config_text: String,
    /// Anything else worth showing, as `(key, value)` rows in the run table (device, duration, commit, ...).
    pub notes: Vec<(String, String)>,
    /// The protocols, in the order they are shown.
    pub protocols: Vec<ProtocolResult>,
}

/// The content of `summary.json`: `{"protocols": {"<protocol>": Summary, ...}}` (protocol set dynamic, keys sorted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryFile {
    /// Summary per protocol name.
    pub protocols: BTreeMap<String, Summary>,
}

impl SummaryFile {
    /// Collects the summaries of `protocols` (a later duplicate name replaces an earlier one).
    pub fn from_protocols(protocols: &[ProtocolResult]) -> Self {
        SummaryFile {
            protocols: protocols
                .iter()
                .map(|p| (p.name.clone(), p.summary.clone()))
                .collect(),
        }
    }

    /// Reads a `summary.json`; errors name the file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| MetricsError::io(path, e))?;
        serde_json::from_str(&text).map_err(|source| MetricsError::Json {
            path: path.to_path_buf(),
            error: source,
        })
    }

    /// Writes this file as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

/// Writes `{"protocols": {name: Summary}}` for `protocols` to `path` (the trainer's `summary.json`).
pub fn write_summary_json(path: &Path, protocols: &[ProtocolResult]) -> Result<()> {
    SummaryFile::from_protocols(protocols).write(path)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| MetricsError::Json {
        path: path.to_path_buf(),
        error: source,
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| MetricsError::io(path, e))
}

/// Checks that a protocol name is usable in a file name: non-empty, ASCII letters, digits, `_` or `-`.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(MetricsError::BadName {
            name: name.into(),
            problem: "protocol names become file names: use ASCII letters, digits, '_' or '-' (non-empty)".into(),
        });
    }
    Ok(())
}

/// Checks every protocol name and that no name repeats.
fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut seen = BTreeSet::new();
    for n in names {
        check_name(n)?;
        if !seen.insert(n) {
            return Err(MetricsError::BadName {
                name: n.into(),
                problem: "protocol listed twice".into(),
            });
        }
    }
    Ok(())
}

/// A fraction as a percentage with two decimals, `n/a` when undefined.
fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{:.2}", v * 100.0))
}

/// Escapes text for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Writes a run report into `dir` (created if needed): `acc_matrix_<protocol>.csv` for every protocol,
/// `heatmap_<protocol>.{png,svg}` and `curves_<protocol>.{png,svg}` (feature `plots`), and `report.md` showing the
/// run facts, the class order per task, the metrics of every protocol side by side, the matrices (side by side when
/// they fit, T * protocols <= 24 columns; else one table each), the plots, the metric definitions and the config.
/// `summary.json` is written separately ([`write_summary_json`]).
pub fn write_run_report(dir: &Path, input: &ReportInput) -> Result<()> {
    check_names(input.protocols.iter().map(|p| p.name.as_str()))?;
    std::fs::create_dir_all(dir).map_err(|e| MetricsError::io(dir, e))?;
    #[cfg_attr(not(feature = "plots"), allow(unused_mut))]
    let mut plot_files: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in &input.protocols {
        write_csv(&dir.join(format!("acc_matrix_{}.csv", p.name)), &p.matrix)?;
        #[cfg(feature = "plots")]
        plot_files.insert(
            &p.name,
            crate::plots::plot_protocol(dir, &p.name, &p.matrix)?,
        );
    }
    let md = render_report(input, &plot_files);
    let path = dir.join("report.md");
    std::fs::write(&path, md).map_err(|e| MetricsError::io(&path, e))
}

/// The Markdown of `report.md`. `plot_files`: protocol -> image files written (empty without plots).
fn render_report(input: &ReportInput, plot_files: &BTreeMap<&str, Vec<String>>) -> String {
    let mut s = String::new();
    let t = input
        .protocols
        .first()
        .map_or(input.class_order.len(), |p| p.matrix.num_tasks());
    let _ = writeln!(s, "# Run report: {}\n", input.run_name);
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| strategy | {} |", cell(&input.strategy));
    let _ = writeln!(s, "| dataset | {} |", cell(&input.dataset));
    let _ = writeln!(s, "| seed | {} |", input.seed);
    let _ = writeln!(s, "| tasks | {t} |");
    let names: Vec<&str> = input.protocols.iter().map(|p| p.name.as_str()).collect();
    let _ = writeln!(s, "| protocols | {} |", names.join(", "));
    for (k, v) in &input.notes {
        let _ = writeln!(s, "| {} | {} |", cell(k), cell(v));
    }

    let _ = writeln!(s, "\n## Class order\n\n| task | classes |\n|---|---|");
    for (k, classes) in input.class_order.iter().enumerate() {
        let list: Vec<String> = classes.iter().map(u16::to_string).collect();
        let _ = writeln!(s, "| {k} | {} |", list.join(", "));
    }

    let _ = writeln!(s, "\n## Metrics\n");
    let _ = writeln!(
        s,
        "Accuracies in %, differences in percentage points, two decimals. n/a = undefined (T = 1, no random-baseline \
         accuracies for forward transfer, no joint-training accuracies for intransigence, or unevaluated cells).\n"
    );
    let _ = write!(s, "| metric |");
    for n in &names {
        let _ = write!(s, " {n} |");
    }
    let _ = write!(s, "\n|---|");
    for _ in &names {
        let _ = write!(s, "---:|");
    }
    s.push('\n');
    let scalar_keys = Summary::scalar_keys();
    for (k, key) in scalar_keys.iter().enumerate() {
        let better = if lower_is_better(key) {
            " (lower is better)"
        } else {
            ""
        };
        let _ = write!(s, "| {key}{better} |");
        for p in &input.protocols {
            let _ = write!(s, " {} |", pct(p.summary.scalars()[k].1));
        }
        s.push('\n');
    }
    let _ = write!(s, "| per_task_forgetting (tasks 0..T-2) |");
    for p in &input.protocols {
        let v: Vec<String> = p
            .summary
            .per_task_forgetting
            .iter()
            .map(|&f| pct(Some(f)))
            .collect();
        let _ = write!(
            s,
            " {} |",
            if v.is_empty() {
                "[]".to_string()
            } else {
                v.join(", ")
            }
        );
    }
    s.push('\n');

    let _ = writeln!(s, "\n## Accuracy matrices\n");
    let _ = writeln!(
        s,
        "R[i][j] in %: row = after training task i, column = test set of task j (all classes of the stream \
         unless the protocol says otherwise). n/a = not evaluated.\n"
    );
    let side_by_side = t * input.protocols.len() <= 24;
    let groups: Vec<&[crate::ProtocolResult]> = if side_by_side {
        vec![&input.protocols[..]]
    } else {
        input.protocols.chunks(1).collect()
    };
    for group in groups {
        let _ = write!(s, "| after task |");
        for (g, p) in group.iter().enumerate() {
            if g > 0 {
                let _ = write!(s, " |");
            }
            for j in 0..p.matrix.num_tasks() {
                let _ = write!(s, " {} t{j} |", p.name);
            }
        }
        let _ = write!(s, "\n|---:|");
        for (g, p) in group.iter().enumerate() {
            if g > 0 {
                let _ = write!(s, "---|");
            }
            for _ in 0..p.matrix.num_tasks() {
                let _ = write!(s, "---:|");
            }
        }
        s.push('\n');
        let rows = group
            .iter()
            .map(|p| p.matrix.num_tasks())
            .max()
            .unwrap_or(0);
        for i in 0..rows {
            let _ = write!(s, "| {i} |");
            for (g, p) in group.iter().enumerate() {
                if g > 0 {
                    let _ = write!(s, " |");
                }
                for j in 0..p.matrix.num_tasks() {
                    let _ = write!(s, " {} |", pct(p.matrix.get(i, j)));
                }
            }
            s.push('\n');
        }
        s.push('\n');
    }

    if !plot_files.is_empty() {
        let _ = writeln!(s, "## Plots\n");
        for p in &input.protocols {
            if let Some(files) = plot_files.get(p.name.as_str()) {
                let _ = writeln!(s, "### {}\n", p.name);
                for f in files.iter().filter(|f| f.ends_with(".png")) {
                    let _ = writeln!(s, "![{f}]({f})");
                }
                let svgs: Vec<String> = files
                    .iter()
                    .filter(|f| f.ends_with(".svg"))
                    .map(|f| format!("[{f}]({f})"))
                    .collect();
                let _ = writeln!(s, "\nSVG: {}\n", svgs.join(", "));
            }
        }
    }

    let _ = writeln!(s, "## Metric definitions\n");
    let _ = writeln!(
        s,
        "R[i][j] = accuracy on task j after training through task i (0-based), T tasks; b_j = accuracy of a randomly \
         initialised model, a*_j = accuracy of a jointly trained model, both under the same protocol.\n\n\
         - final_accuracy = (1/T) sum_j R[T-1][j]\n\
         - average_incremental_accuracy = (1/T) sum_i A_i, A_i = (1/(i+1)) sum_{{j<=i}} R[i][j] (the Kaizen paper's average continual performance)\n\
         - per_task_forgetting f_j = max_{{l in [j, T-2]}} R[l][j] - R[T-1][j] (j < T-1); forgetting = mean of f_j\n\
         - backward_transfer = (1/(T-1)) sum_{{j<T-1}} (R[T-1][j] - R[j][j])\n\
         - forward_transfer = (1/(T-1)) sum_{{j>=1}} (R[j-1][j] - b_j)\n\
         - plasticity = (1/T) sum_j R[j][j]\n\
         - intransigence = (1/T) sum_j (a*_j - R[j][j])\n"
    );
    if !input.config_text.trim().is_empty() {
        let fence = if input.config_text.contains("```") {
            "~~~~"
        } else {
            "```"
        };
        let _ = writeln!(
            s,
            "## Configuration\n\n{fence}toml\n{}\n{fence}",
            input.config_text.trim_end()
        );
    }
    s
}

/// Writes `comparison.md` and `comparison.json` into `dir` (created if needed) for several runs, given as
/// `(strategy, summaries per protocol)` in display order. `comparison.json` =
/// `{"strategies": [...], "protocols": {"<protocol>": {"<strategy>": Summary}}}`; `comparison.md` has one table per
/// protocol (strategies as rows, metrics in % as columns, the best value of each column in bold when at least two
/// strategies have it). Protocols missing from a run show as n/a. Errors on repeated strategy names.
pub fn write_comparison(dir: &Path, runs: &[(String, SummaryFile)]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (name, _) in runs {
        if !seen.insert(name.as_str()) {
            return Err(MetricsError::BadName {
                name: name.clone(),
                problem: "strategy listed twice in the comparison".into(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| MetricsError::io(dir, e))?;
    let protocols: BTreeSet<&str> = runs
        .iter()
        .flat_map(|(_, f)| f.protocols.keys().map(String::as_str))
        .collect();

    #[derive(Serialize)]
    struct ComparisonJson<'a> {
        strategies: Vec<&'a str>,
        protocols: BTreeMap<&'a str, BTreeMap<&'a str, &'a Summary>>,
    }
    let json = ComparisonJson {
        strategies: runs.iter().map(|(n, _)| n.as_str()).collect(),
        protocols: protocols
            .iter()
            .map(|&p| {
                (
                    p,
                    runs.iter()
                        .filter_map(|(n, f)| f.protocols.get(p).map(|s| (n.as_str(), s)))
                        .collect(),
                )
            })
            .collect(),
    };
    write_json(&dir.join("comparison.json"), &json)?;

    let mut s = String::from("# Strategy comparison\n\n");
    let strategies: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
    let _ = writeln!(
        s,
        "Strategies: {}. Accuracies in %, differences in percentage points; **bold** = best in its column \
         (lower is better for forgetting and intransigence). n/a = undefined or not evaluated.\n",
        strategies.join(", ")
    );
    let keys = Summary::scalar_keys();
    for p in &protocols {
        let _ = writeln!(s, "## {p}\n");
        let _ = write!(s, "| strategy |");
        for k in &keys {
            let _ = write!(s, " {k} |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &keys {
            let _ = write!(s, "---:|");
        }
        s.push('\n');
        let values: Vec<Vec<Option<f64>>> = runs
            .iter()
            .map(|(_, f)| {
                f.protocols.get(*p).map_or_else(
                    || vec![None; keys.len()],
                    |sm| sm.scalars().iter().map(|x| x.1).collect(),
                )
            })
            .collect();
        let best: Vec<Option<f64>> = (0..keys.len())
            .map(|k| {
                let col: Vec<f64> = values.iter().filter_map(|r| r[k]).collect();
                if col.len() < 2 {
                    return None;
                }
                let pick = if lower_is_better(keys[k]) {
                    f64::min
                } else {
                    f64::max
                };
                col.into_iter().reduce(pick)
            })
            .collect();
        for ((name, _), row) in runs.iter().zip(&values) {
            let _ = write!(s, "| {} |", cell(name));
            for (k, v) in row.iter().enumerate() {
                let text = pct(*v);
                if v.is_some() && *v == best[k] {
                    let _ = write!(s, " **{text}** |");
                } else {
                    let _ = write!(s, " {text} |");
                }
            }
            s.push('\n');
        }
        s.push('\n');
    }
    let path = dir.join("comparison.md");
    std::fs::write(&path, s).map_err(|e| MetricsError::io(&path, e))
}
