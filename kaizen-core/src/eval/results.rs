//! The result files of a finished run: `acc_matrix_<protocol>.csv`, `summary.json`, `report.md` and plots,
//! or for single-row strategies `<strategy>_accuracy_<protocol>.csv` with a per-task summary.

use crate::config::ExperimentConfig;
use crate::error::CoreError;
use crate::run_dir::{files, write_atomic};
use kaizen_data::{Dataset, TaskStream};
use kaizen_metrics::report::{ProtocolResult, ReportInput};
use kaizen_metrics::AccuracyMatrix;
use std::collections::BTreeMap;
use std::path::Path;

fn json_text<T: serde::Serialize>(v: &T) -> Result<String, CoreError> {
    serde_json::to_string_pretty(v).map_err(|e| CoreError::Invalid(e.to_string()))
}

/// How a finished run's results are written: `single_row` for strategies with one row per protocol, and the
/// resolved feature distiller's name (for the report).
pub struct ResultsLayout<'a> {
    /// One row per protocol ([`crate::strategy::Strategy::single_row`]).
    pub single_row: bool,
    /// The feature distiller's name.
    pub distiller: &'a str,
}

/// Write `acc_matrix_<protocol>.csv`, `summary.json` and `report.md` (+ plots) for a finished run.
/// Single-row runs (joint, random) have one row per protocol: they write `<strategy>_accuracy_<protocol>.csv` (the
/// one-line format `kaizen metrics --joint / --random-baseline` reads) and a summary of per-task accuracies.
pub fn write_results(
    dir: &Path,
    cfg: &ExperimentConfig,
    stream: &TaskStream,
    data: &Dataset,
    matrices: &BTreeMap<String, Vec<Vec<Option<f64>>>>,
    layout: &ResultsLayout<'_>,
) -> Result<(), CoreError> {
    if layout.single_row {
        return write_single_row_results(dir, cfg, stream, matrices);
    }
    let mut results = Vec::new();
    for (p, rows) in matrices {
        let m = AccuracyMatrix::from_rows(rows.clone())?;
        kaizen_metrics::write_csv(&dir.join(format!("acc_matrix_{p}.csv")), &m)?;
        results.push(ProtocolResult::new(p, m, None, None)?);
    }
    kaizen_metrics::report::write_summary_json(&dir.join(files::SUMMARY), &results)?;
    let input = ReportInput {
        run_name: dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into()),
        strategy: cfg.strategy.to_string(),
        dataset: cfg.data.dataset.clone(),
        seed: cfg.seed,
        class_order: (0..stream.num_tasks())
            .map(|t| stream.task_classes(t).to_vec())
            .collect(),
        config_text: crate::run_dir::config_toml(cfg)?,
        notes: vec![
            ("method".into(), cfg.method.to_string()),
            ("distiller".into(), layout.distiller.to_string()),
            ("train images".into(), data.train.len().to_string()),
            ("test images".into(), data.test.len().to_string()),
        ],
        protocols: results,
    };
    kaizen_metrics::report::write_run_report(dir, &input)?;
    Ok(())
}

/// The results of a single-row run: the one-line CSVs, `summary.json` and a one-table `report.md`.
fn write_single_row_results(
    dir: &Path,
    cfg: &ExperimentConfig,
    stream: &TaskStream,
    matrices: &BTreeMap<String, Vec<Vec<Option<f64>>>>,
) -> Result<(), CoreError> {
    {
        let mut protocols = serde_json::Map::new();
        for (p, rows) in matrices {
            let row = rows.last().cloned().unwrap_or_default();
            let vals: Vec<String> = row
                .iter()
                .map(|v| v.map_or_else(|| "nan".to_string(), |x| format!("{x}")))
                .collect();
            let path = dir.join(format!("{}_accuracy_{p}.csv", cfg.strategy));
            let header = kaizen_metrics::task_header(vals.len());
            write_atomic(&path, format!("{header}\n{}\n", vals.join(",")).as_bytes())?;
            let defined: Vec<f64> = row.iter().flatten().copied().collect();
            let mean =
                (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
            protocols.insert(
                p.clone(),
                serde_json::json!({"per_task_accuracy": row, "mean_accuracy": mean}),
            );
        }
        let summary = serde_json::json!({"strategy": cfg.strategy, "protocols": protocols});
        write_atomic(&dir.join(files::SUMMARY), json_text(&summary)?.as_bytes())?;
        let mut md = format!(
            "# {} run\n\nseed {}, dataset `{}`, class order per task: {}\n\n| protocol | {} | mean |\n|---|{}---|\n",
            cfg.strategy,
            cfg.seed,
            cfg.data.dataset,
            class_order_text(stream),
            (0..stream.num_tasks()).map(|j| format!("task {j}")).collect::<Vec<_>>().join(" | "),
            "---|".repeat(stream.num_tasks())
        );
        for (p, v) in &protocols {
            let row: Vec<String> = v["per_task_accuracy"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_f64().map_or("-".into(), |f| format!("{f:.3}")))
                        .collect()
                })
                .unwrap_or_default();
            let mean = v["mean_accuracy"]
                .as_f64()
                .map_or("-".into(), |f| format!("{f:.3}"));
            md.push_str(&format!("| {p} | {} | {mean} |\n", row.join(" | ")));
        }
        write_atomic(&dir.join("report.md"), md.as_bytes())?;
    }
    Ok(())
}

fn class_order_text(stream: &TaskStream) -> String {
    (0..stream.num_tasks())
        .map(|t| format!("{:?}", stream.task_classes(t)))
        .collect::<Vec<_>>()
        .join(" ")
}
