//! `kaizen metrics`: continual-learning metrics of an accuracy matrix given as CSV (from any framework).
use anyhow::Context;
use clap::Args;
use kaizen_metrics::{read_matrix_csv, read_vector_csv, summarize, Summary};
use std::path::PathBuf;

/// Compute final accuracy, average incremental accuracy, forgetting, backward / forward transfer, plasticity and
/// intransigence from an accuracy matrix. Formulas: the kaizen-metrics crate docs.
#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// Accuracy matrix CSV: T lines of T comma-separated fractions in [0, 1]; row i = after training task i,
    /// column j = test set of task j. Lines starting with `#` are comments; NA (or empty) marks a cell not evaluated.
    #[arg(long, value_name = "R.csv")]
    pub acc_matrix: PathBuf,
    /// Per-task accuracies of a randomly initialised model under the same protocol (one line of T numbers);
    /// enables forward transfer.
    #[arg(long, value_name = "b.csv")]
    pub random_baseline: Option<PathBuf>,
    /// Per-task accuracies of a jointly trained model (one line of T numbers); enables intransigence.
    #[arg(long, value_name = "a.csv")]
    pub joint: Option<PathBuf>,
    /// Print one JSON object (keys final_accuracy, average_incremental_accuracy, forgetting, backward_transfer,
    /// forward_transfer, plasticity, intransigence, per_task_forgetting; null where undefined) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `kaizen metrics`.
pub fn run(a: MetricsArgs) -> anyhow::Result<()> {
    let r = read_matrix_csv(&a.acc_matrix)?;
    let t = r.num_tasks();
    let baseline = a
        .random_baseline
        .as_deref()
        .map(|p| read_vector_csv(p, Some(t)))
        .transpose()?;
    let joint = a
        .joint
        .as_deref()
        .map(|p| read_vector_csv(p, Some(t)))
        .transpose()?;
    let summary = summarize(&r, baseline.as_deref(), joint.as_deref())
        .with_context(|| format!("metrics of {}", a.acc_matrix.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", table(&summary, t, &a));
    }
    Ok(())
}

/// The human-readable table: fractions and percentages, with the reason for every undefined value.
fn table(s: &Summary, t: usize, a: &MetricsArgs) -> String {
    let mut out = format!("accuracy matrix: {} (T = {t})\n\n", a.acc_matrix.display());
    out.push_str(&format!(
        "{:<30} {:>10} {:>10}\n",
        "metric", "fraction", "percent"
    ));
    for (key, value) in s.scalars() {
        let (frac, pct) = match value {
            Some(v) => (format!("{v:.4}"), format!("{:.2}", v * 100.0)),
            None => ("n/a".to_string(), String::new()),
        };
        let why = match (key, value) {
            (_, Some(_)) => "",
            ("forgetting" | "backward_transfer", None) => "  (undefined for T = 1)",
            ("forward_transfer", None) if t == 1 => "  (undefined for T = 1)",
            ("forward_transfer", None) if a.random_baseline.is_none() => {
                "  (needs --random-baseline)"
            }
            ("forward_transfer", None) => "  (needs the cells R[j-1][j], missing in the matrix)",
            ("intransigence", None) => "  (needs --joint)",
            _ => "",
        };
        out.push_str(&format!("{key:<30} {frac:>10} {pct:>10}{why}\n"));
    }
    let per_task: Vec<String> = s
        .per_task_forgetting
        .iter()
        .map(|f| format!("{f:.4}"))
        .collect();
    out.push_str(&format!(
        "{:<30} {}\n",
        "per_task_forgetting",
        if per_task.is_empty() {
            "[] (T = 1)".to_string()
        } else {
            format!("[{}]", per_task.join(", "))
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &std::path::Path, r: &str, b: Option<&str>, a: Option<&str>) -> MetricsArgs {
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        MetricsArgs {
            acc_matrix: write("R.csv", r),
            random_baseline: b.map(|t| write("b.csv", t)),
            joint: a.map(|t| write("a.csv", t)),
            json: false,
        }
    }

    #[test]
    fn table_shows_values_and_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let a = args(
            dir.path(),
            "# R\n0.9,0.1\n0.6,0.8\n",
            None,
            Some("1.0,0.9\n"),
        );
        let r = read_matrix_csv(&a.acc_matrix).unwrap();
        let joint = read_vector_csv(a.joint.as_deref().unwrap(), Some(2)).unwrap();
        let s = summarize(&r, None, Some(&joint)).unwrap();
        let text = table(&s, 2, &a);
        // final = (0.6 + 0.8) / 2 = 0.7; forgetting = 0.9 - 0.6 = 0.3; intransigence = ((1-0.9) + (0.9-0.8)) / 2 = 0.1
        assert!(
            text.contains("final_accuracy                     0.7000      70.00"),
            "{text}"
        );
        assert!(
            text.contains("forgetting                         0.3000"),
            "{text}"
        );
        assert!(
            text.contains("intransigence                      0.1000"),
            "{text}"
        );
        assert!(text.contains("(needs --random-baseline)"), "{text}");
        assert!(text.contains("[0.3000]"), "{text}");
        assert!(run(a).is_ok());
    }

    #[test]
    fn run_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = run(args(dir.path(), "90,10\n80,85\n", None, None)).unwrap_err();
        assert!(format!("{e:#}").contains("divide them by 100"), "{e:#}");
        let e = run(args(dir.path(), "0.9,0.1\n0.6,0.8\n", Some("0.1\n"), None)).unwrap_err();
        assert!(format!("{e:#}").contains("b.csv"), "{e:#}");
    }
}
