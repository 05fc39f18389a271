//! Writes a demo run report (made-up matrices for three protocols) into the directory given as the first argument,
//! so the report layout and plots can be inspected: `cargo run --release -p kaizen-metrics --example demo_report -- /tmp/demo`.

use kaizen_metrics::{
    write_comparison, write_run_report, write_summary_json, AccuracyMatrix, ProtocolResult,
    ReportInput, SummaryFile,
};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: demo_report <out-dir> [num_tasks]")?,
    );
    let t: usize = std::env::args().nth(2).map_or(Ok(5), |s| s.parse())?;
    // A plausible class-incremental matrix: high on the diagonal, decaying below it, near zero above it.
    let matrix = |peak: f64,
                  decay: f64,
                  upper: Option<f64>|
     -> Result<AccuracyMatrix, kaizen_metrics::MetricsError> {
        let rows = (0..t)
            .map(|i| {
                (0..t)
                    .map(|j| {
                        if j <= i {
                            let v = peak - 0.03 * j as f64 - decay * (i - j) as f64;
                            Some(v.clamp(0.0, 1.0))
                        } else {
                            upper
                        }
                    })
                    .collect()
            })
            .collect();
        AccuracyMatrix::from_rows(rows)
    };
    let baseline = vec![0.1; t];
    let joint = vec![0.9; t];
    let protocols = vec![
        ProtocolResult::new(
            "classifier",
            matrix(0.92, 0.12, Some(0.0))?,
            Some(&baseline),
            Some(&joint),
        )?,
        ProtocolResult::new(
            "classifier_seen",
            matrix(0.95, 0.06, None)?,
            None,
            Some(&joint),
        )?,
        ProtocolResult::new("knn", matrix(0.8, 0.04, Some(0.02))?, Some(&baseline), None)?,
        ProtocolResult::new(
            "linear",
            matrix(0.85, 0.03, Some(0.0))?,
            Some(&baseline),
            Some(&joint),
        )?,
    ];
    let input = ReportInput {
        run_name: "demo-kaizen-cifar10".into(),
        dataset: "cifar10".into(),
        strategy: "kaizen".into(),
        seed: 42,
        class_order: (0..t)
            .map(|k| vec![(2 * k) as u16, (2 * k + 1) as u16])
            .collect(),
        config_text: "[stream]\nnum_tasks = 5\n\n[train]\nepochs = 2\n".into(),
        notes: vec![("device".into(), "cpu".into())],
        protocols,
    };
    write_run_report(&dir, &input)?;
    write_summary_json(&dir.join("summary.json"), &input.protocols)?;
    let kaizen = SummaryFile::from_protocols(&input.protocols);
    let finetune = SummaryFile::from_protocols(&[ProtocolResult::new(
        "knn",
        matrix(0.8, 0.2, Some(0.0))?,
        None,
        None,
    )?]);
    write_comparison(
        &dir,
        &[("kaizen".into(), kaizen), ("finetune".into(), finetune)],
    )?;
    println!("wrote {}", dir.display());
    Ok(())
}
