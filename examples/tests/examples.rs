//! The three example programs build and run end to end (seconds each), and each one's component is what
//! the run used: the method, the dataset, the strategy's own loss term.

use std::path::Path;
use std::process::Command;

/// Run example `bin` into `dir`; its stdout.
fn run(bin: &str, dir: &Path) -> String {
    let out = Command::new(bin)
        .arg(dir)
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The final accuracy of every protocol in a run's summary, each in [0, 1].
fn final_accuracies(dir: &Path) -> Vec<f64> {
    let s = read_json(&dir.join("summary.json"));
    let protocols = s["protocols"].as_object().expect("protocols");
    let accs: Vec<f64> = protocols
        .values()
        .map(|p| p["final_accuracy"].as_f64().expect("a final accuracy"))
        .collect();
    assert!(!accs.is_empty());
    assert!(accs.iter().all(|a| (0.0..=1.0).contains(a)), "{accs:?}");
    accs
}

#[test]
fn a_user_defined_ssl_method_trains_through_the_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let stdout = run(env!("CARGO_BIN_EXE_custom_method"), &dir);
    assert!(stdout.contains("classifier: final accuracy"), "{stdout}");
    final_accuracies(&dir);
    let m = read_json(&dir.join("manifest.json"));
    assert_eq!(m["config"]["method"], "align_uniform");
    assert_eq!(m["distiller"], "predictive");
    // The projector has the shape the method's factory asked for.
    assert_eq!(m["network"]["projector"]["batch_norm"], true);
    assert!(m["network"]["predictor"].is_null());
}

#[test]
fn a_user_defined_dataset_trains_through_the_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    run(env!("CARGO_BIN_EXE_custom_dataset"), &dir);
    final_accuracies(&dir);
    let m = read_json(&dir.join("manifest.json"));
    assert_eq!(m["dataset"]["name"], "fmnist-pooled6");
    assert_eq!(m["dataset"]["num_classes"], 6);
    // Six classes capped to 16 train / 8 test images each, three tasks.
    assert_eq!(m["dataset"]["train_images"], 96);
    assert_eq!(m["dataset"]["test_images"], 48);
    assert_eq!(m["class_order"].as_array().map(Vec::len), Some(6));
    assert_eq!(m["network"]["backbone"]["in_channels"], 1);
}

#[test]
fn a_user_defined_strategy_and_loss_term_train_through_the_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    run(env!("CARGO_BIN_EXE_custom_strategy"), &dir);
    final_accuracies(&dir);
    let m = read_json(&dir.join("manifest.json"));
    assert_eq!(m["strategy"], "lwf_feat");
    assert_eq!(m["effective_weights"]["feat_l2"], 0.5);
    assert_eq!(m["effective_weights"]["fe_kd"], 0.0);
    assert_eq!(m["replay"], false);
    // The custom term is logged from the second task on (it needs the frozen model), never on the first.
    let log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let epochs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["event"] == "epoch")
        .collect();
    assert_eq!(epochs.len(), 2, "{log}");
    assert!(epochs[0]["loss"].get("feat_l2").is_none());
    let l2 = epochs[1]["loss"]["feat_l2"]
        .as_f64()
        .expect("feat_l2 at task 1");
    assert!(l2.is_finite() && l2 >= 0.0);
    assert!(epochs[1]["loss"].get("cls_kd").is_some());
}
