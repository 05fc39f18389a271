//! `kaizen data ...`: dataset inspection.
use anyhow::Context;
use clap::{Args, Subcommand};
use kaizen_data::{load_dataset, DatasetName};
use std::path::PathBuf;

/// Dataset subcommands.
#[derive(Subcommand)]
pub enum DataCommand {
    /// Print per-split and per-class image counts of a dataset.
    Inspect(InspectArgs),
}

/// Arguments of `kaizen data inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Dataset: fashion-mnist-mini (built in), fashion-mnist, mnist, cifar10, cifar100, image-folder.
    #[arg(long, default_value = "fashion-mnist-mini")]
    pub dataset: DatasetName,
    /// Folder holding the dataset files (IDX files, the CIFAR binary batches, or train/ and test/ class folders).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Print JSON: {"train": {"images", "classes", "per_class"}, "test": {...}}.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `kaizen data` subcommand.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Inspect(a) => inspect(a),
    }
}

fn inspect(a: InspectArgs) -> anyhow::Result<()> {
    let d = load_dataset(a.dataset, a.data_root.as_deref())
        .with_context(|| format!("loading dataset `{}`", a.dataset))?;
    let ins = d.inspect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&ins)?);
        return Ok(());
    }
    let s = d.shape;
    println!(
        "dataset {}: {} {}, images {s} (CxHxW)",
        d.name,
        d.num_classes,
        if d.num_classes == 1 {
            "class"
        } else {
            "classes"
        }
    );
    let fmt = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("train mean [{}], std [{}]", fmt(&d.mean), fmt(&d.std));
    let w = d
        .class_names
        .iter()
        .map(|n| n.len())
        .max()
        .unwrap_or(4)
        .max(5);
    println!(
        "{:>5}  {:<w$}  {:>8}  {:>8}",
        "class", "name", "train", "test"
    );
    for (c, name) in d.class_names.iter().enumerate() {
        println!(
            "{c:>5}  {name:<w$}  {:>8}  {:>8}",
            ins.train.per_class[c], ins.test.per_class[c]
        );
    }
    println!(
        "{:>5}  {:<w$}  {:>8}  {:>8}",
        "", "total", ins.train.images, ins.test.images
    );
    println!(
        "classes present: train {}, test {}",
        ins.train.classes, ins.test.classes
    );
    Ok(())
}
