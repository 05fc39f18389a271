//! Report writing into a temporary directory: files exist, CSVs re-read to the same matrices, JSON keys.

use kaizen_metrics::*;

fn input() -> ReportInput {
    let classifier = AccuracyMatrix::from_full(&[
        vec![0.9, 0.0, 0.0],
        vec![0.7, 0.8, 0.0],
        vec![0.6, 0.7, 0.85],
    ])
    .unwrap();
    let knn = AccuracyMatrix::from_rows(vec![
        vec![Some(0.8), None, None],
        vec![Some(0.75), Some(0.7), None],
        vec![Some(0.7), Some(0.65), Some(0.6)],
    ])
    .unwrap();
    ReportInput {
        run_name: "toy run".into(),
        dataset: "toy".into(),
        strategy: "kaizen".into(),
        seed: 7,
        class_order: vec![vec![3, 1], vec![0, 5], vec![2, 4]],
        config_text: "[train]\nepochs = 1\n".into(),
        notes: vec![("device".into(), "cpu | test".into())],
        protocols: vec![
            ProtocolResult::new("classifier", classifier, Some(&[0.1, 0.0, 0.0]), None).unwrap(),
            ProtocolResult::new("knn", knn, None, Some(&[0.9, 0.9, 0.9])).unwrap(),
        ],
    }
}

#[test]
fn run_report_files_csv_roundtrip_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run1");
    let inp = input();
    write_run_report(&out, &inp).unwrap();
    for p in &inp.protocols {
        let csv = out.join(format!("acc_matrix_{}.csv", p.name));
        assert_eq!(read_matrix_csv(&csv).unwrap(), p.matrix);
        if cfg!(feature = "plots") {
            for stem in ["heatmap", "curves"] {
                for ext in ["png", "svg"] {
                    let f = out.join(format!("{stem}_{}.{ext}", p.name));
                    let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                    assert!(len > 1000, "{} missing or tiny ({len} bytes)", f.display());
                }
            }
        }
    }
    if cfg!(feature = "plots") {
        let png = std::fs::read(out.join("heatmap_knn.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(out.join("curves_classifier.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("after training task i"));
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.starts_with("# Run report: toy run"));
    assert!(md.contains("| seed | 7 |"));
    assert!(md.contains("| 0 | 3, 1 |"), "class order table");
    assert!(md.contains("cpu \\| test"), "pipes escaped");
    // Metrics side by side: classifier final = (0.6+0.7+0.85)/3 = 71.67 %, knn final = 65.00 %.
    assert!(md.contains("| final_accuracy | 71.67 | 65.00 |"), "{md}");
    // forward transfer of knn is undefined (no baseline, no upper triangle), intransigence of classifier too.
    // classifier FWT = ((R01 - b1) + (R12 - b2)) / 2 = ((0 - 0) + (0 - 0)) / 2 = 0.
    assert!(md.contains("| forward_transfer | 0.00 | n/a |"), "{md}");
    // Matrix rows side by side with two decimals; the knn upper triangle is n/a.
    assert!(
        md.contains("| 0 | 90.00 | 0.00 | 0.00 | | 80.00 | n/a | n/a |"),
        "{md}"
    );
    assert!(md.contains("```toml\n[train]\nepochs = 1\n```"));
}

#[test]
fn summary_json_has_protocols_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.json");
    let inp = input();
    write_summary_json(&path, &inp.protocols).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let protocols = v["protocols"].as_object().unwrap();
    assert_eq!(protocols.keys().collect::<Vec<_>>(), ["classifier", "knn"]);
    for s in protocols.values() {
        for key in Summary::scalar_keys() {
            assert!(s.get(key).is_some(), "missing {key}");
        }
        assert!(s["per_task_forgetting"].is_array());
    }
    assert!(v["protocols"]["knn"]["forward_transfer"].is_null());
    // classifier FWT with b = [0.1, 0, 0]: ((R01 - b1) + (R12 - b2)) / 2 = ((0 - 0) + (0 - 0)) / 2 = 0 (b_0 unused)
    assert_eq!(
        v["protocols"]["classifier"]["forward_transfer"].as_f64(),
        Some(0.0)
    );
    // Exact round trip (serde_json's float_roundtrip feature is on).
    let back = SummaryFile::read(&path).unwrap();
    assert_eq!(back, SummaryFile::from_protocols(&inp.protocols));
}

#[test]
fn comparison_files() {
    let dir = tempfile::tempdir().unwrap();
    let inp = input();
    let a = SummaryFile::from_protocols(&inp.protocols);
    let worse = AccuracyMatrix::from_full(&[
        vec![0.5, 0.0, 0.0],
        vec![0.2, 0.6, 0.0],
        vec![0.1, 0.2, 0.7],
    ])
    .unwrap();
    let b = SummaryFile::from_protocols(&[
        ProtocolResult::new("classifier", worse, None, None).unwrap()
    ]);
    write_comparison(dir.path(), &[("kaizen".into(), a), ("finetune".into(), b)]).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("comparison.json")).unwrap())
            .unwrap();
    assert_eq!(v["strategies"], serde_json::json!(["kaizen", "finetune"]));
    assert!(v["protocols"]["classifier"]["finetune"]["final_accuracy"].is_number());
    assert!(
        v["protocols"]["knn"]["finetune"].is_null(),
        "finetune has no knn protocol"
    );
    let md = std::fs::read_to_string(dir.path().join("comparison.md")).unwrap();
    // kaizen final = 71.67 beats finetune (0.1+0.2+0.7)/3 = 33.33; finetune forgetting ((0.5-0.1)+(0.6-0.2))/2 = 40.00
    // is worse than kaizen's ((0.9-0.6)+(0.8-0.7))/2 = 20.00, which is bold (lower is better).
    assert!(md.contains("| kaizen | **71.67** |"), "{md}");
    assert!(md.contains("| finetune | 33.33 |"), "{md}");
    assert!(md.contains("**20.00**") && md.contains(" 40.00 |"), "{md}");
    // Duplicate strategy names are refused.
    let e = write_comparison(
        dir.path(),
        &[
            ("x".into(), SummaryFile::default()),
            ("x".into(), SummaryFile::default()),
        ],
    );
    assert!(matches!(e, Err(MetricsError::BadName { .. })));
}

#[test]
fn bad_protocol_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = AccuracyMatrix::from_full(&[vec![0.5]]).unwrap();
    assert!(matches!(
        ProtocolResult::new("../evil", m.clone(), None, None),
        Err(MetricsError::BadName { .. })
    ));
    let mut inp = input();
    inp.protocols.push(inp.protocols[0].clone());
    assert!(matches!(
        write_run_report(dir.path(), &inp),
        Err(MetricsError::BadName { .. })
    ));
    assert!(!dir.path().join("report.md").exists());
}

#[cfg(feature = "plots")]
#[test]
fn plots_for_one_task_many_tasks_and_missing_cells() {
    use kaizen_metrics::plots::{plot_curves, plot_heatmap};
    let dir = tempfile::tempdir().unwrap();
    let one = AccuracyMatrix::from_full(&[vec![0.5]]).unwrap();
    // 13 tasks (small cells, whole percents), lower triangle only.
    let rows = (0..13)
        .map(|i| {
            (0..13)
                .map(|j| (j <= i).then_some(0.5 + 0.03 * j as f64))
                .collect()
        })
        .collect();
    let many = AccuracyMatrix::from_rows(rows).unwrap();
    for (name, m) in [("one", &one), ("many", &many)] {
        for ext in ["png", "svg"] {
            let h = dir.path().join(format!("h_{name}.{ext}"));
            plot_heatmap(&h, m, name).unwrap();
            let c = dir.path().join(format!("c_{name}.{ext}"));
            plot_curves(&c, m, name).unwrap();
            assert!(
                std::fs::metadata(&h).unwrap().len() > 1000
                    && std::fs::metadata(&c).unwrap().len() > 1000
            );
        }
    }
    // The SVG heatmap writes every cell's number (whole percents for 13 tasks: 0.5 + 0.03*12 = 0.86 -> "86") and n/a.
    let svg = std::fs::read_to_string(dir.path().join("h_many.svg")).unwrap();
    // (plotters writes each text element's content on its own line)
    assert!(
        svg.contains("\n86\n") && svg.contains("\nn/a\n"),
        "cell labels missing"
    );
    // A file that cannot be created is an error naming the file, not a panic.
    let bad = dir.path().join("no/such/dir/h.png");
    let e = plot_heatmap(&bad, &one, "x").unwrap_err();
    assert!(matches!(e, MetricsError::Plot { .. }), "{e:?}");
}
