//! Shared pieces of the examples: a seconds-long config (the `smoke` preset's sizes) and a runner that
//! trains a config with a registry and prints the final accuracies. Each program in `src/bin/` plugs one
//! user-defined component into the trainer through [`kaizen_core::Registry`], without editing any
//! kaizen crate:
//!
//! - `custom_method`: a self-supervised method (alignment + uniformity, Wang & Isola 2020);
//! - `custom_dataset`: a dataset built in code from real images (Fashion-MNIST, 2x2-pooled, six classes);
//! - `custom_strategy`: a strategy with a loss term of its own (LwF-style classifier distillation plus an
//!   L2 pull of the features towards the frozen model's).
//!
//! Run one with `cargo run --release -p kaizen-examples --bin custom_method -- OUT_DIR`.

use anyhow::{Context, Result};
use kaizen_core::config::ExperimentConfig;
use kaizen_core::events::NullSink;
use kaizen_core::train::{self, RunOptions, RunStatus};
use kaizen_core::Registry;
use std::path::{Path, PathBuf};

/// A config that trains in seconds on 2 cores: two tasks of the built-in Fashion-MNIST subset, a tiny
/// network, one short epoch per task (the `smoke` preset's values).
pub fn smoke_config() -> ExperimentConfig {
    let mut c = ExperimentConfig::default();
    c.data.num_tasks = 2;
    c.data.train_per_class = 16;
    c.data.test_per_class = 8;
    c.data.replay_count = 8;
    c.data.replay_batch = 8;
    let m = &mut c.model;
    (m.width, m.proj_hidden, m.proj_out) = (2, 32, 16);
    (m.pred_hidden, m.distill_hidden, m.classifier_hidden) = (32, 32, 16);
    c.train.epochs = 1;
    c.train.batch_size = 32;
    c.train.warmup_epochs = 0.0;
    c.eval.knn_k = 5;
    c.eval.linear_epochs = 5;
    c
}

/// The run directory: the first command-line argument, else `runs/<name>`.
pub fn out_dir(name: &str) -> PathBuf {
    std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("runs").join(name))
}

/// Train `cfg` with `registry` into `dir` and print the final accuracy of every protocol.
pub fn train_and_report(registry: &Registry, cfg: ExperimentConfig, dir: &Path) -> Result<()> {
    let opts = RunOptions::new(dir, candle_core::Device::Cpu);
    let status = train::start_with(registry, cfg, &opts, &mut NullSink)
        .with_context(|| format!("run in {}", dir.display()))?;
    anyhow::ensure!(
        matches!(status, RunStatus::Finished),
        "the run stopped early: {status:?}"
    );
    let path = dir.join(kaizen_core::run_dir::files::SUMMARY);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let summary: serde_json::Value = serde_json::from_str(&text)?;
    println!("run written to {}", dir.display());
    if let Some(protocols) = summary["protocols"].as_object() {
        for (name, p) in protocols {
            let acc = p["final_accuracy"]
                .as_f64()
                .or_else(|| p["mean_accuracy"].as_f64());
            println!("  {name}: final accuracy {acc:?}");
        }
    }
    Ok(())
}
