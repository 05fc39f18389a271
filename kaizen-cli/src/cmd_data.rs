//! `kaizen data ...`: dataset inspection.
use anyhow::Context;
use clap::{Args, Subcommand};
use kaizen_data::dataset::BadFile;
use kaizen_data::options::resolve_class_list;
use kaizen_data::{load_named, LoadOptions};
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
    /// Dataset: fashion-mnist-mini (built in), fashion-mnist, mnist, cifar10, cifar100, image-folder, or
    /// hf:<owner>/<name> (a Hugging Face parquet dataset from the local hf cache or --data-root).
    #[arg(long, default_value = "fashion-mnist-mini")]
    pub dataset: String,
    /// Folder holding the dataset files (IDX files, the CIFAR batches, train/ and test/ class folders or
    /// train.csv and test.csv lists, or a folder of parquet files for hf:...).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Image folders / parquet: the side the model sees (0 = the first training image's size).
    #[arg(long, default_value_t = 0, value_name = "PIXELS")]
    pub image_size: usize,
    /// Image folders: keep only the classes of this list file (one folder name per line), or
    /// builtin:imagenet100.
    #[arg(long, value_name = "FILE")]
    pub class_list: Option<String>,
    /// Image folders / parquet: `skip` lists unreadable files and goes on; `stop` fails on the first.
    #[arg(long, default_value = "skip", value_name = "stop|skip")]
    pub bad_files: String,
    /// Parquet: the image column (default: img or image).
    #[arg(long, value_name = "NAME")]
    pub image_column: Option<String>,
    /// Parquet: the label column (default: label, fine_label or labels).
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,
    /// Image folders / parquet: decode every image in full (not only its header) and list those that fail.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON: {"train": {"images", "classes", "per_class"}, "test": {...}, "streamed", "image_sizes",
    /// "bad_files"}.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `kaizen data` subcommand.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Inspect(a) => inspect(a),
    }
}

/// Decodes every image of a streamed split in full, with a progress bar; the failures as bad files.
fn verify(split: &kaizen_data::Split, what: &str) -> Vec<BadFile> {
    use rayon::prelude::*;
    let Some(images) = split.encoded_images() else {
        return Vec::new();
    };
    let bar =
        indicatif::ProgressBar::new(images.len() as u64).with_message(format!("decoding {what}"));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let c = images.shape().channels;
    let bad: Vec<BadFile> = (0..images.len())
        .into_par_iter()
        .filter_map(|i| {
            let r = images.item(i).decode(c);
            bar.inc(1);
            r.err().map(|e| BadFile {
                path: images.item(i).name(),
                reason: e.to_string(),
            })
        })
        .collect();
    bar.finish_and_clear();
    bad
}

fn inspect(a: InspectArgs) -> anyhow::Result<()> {
    let opts = LoadOptions {
        image_size: a.image_size,
        bad_files: a.bad_files.parse()?,
        class_list: match &a.class_list {
            Some(c) => resolve_class_list(c)?,
            None => Vec::new(),
        },
        image_column: a.image_column.clone().unwrap_or_default(),
        label_column: a.label_column.clone().unwrap_or_default(),
        ..LoadOptions::default()
    };
    let d = load_named(&a.dataset, a.data_root.as_deref(), &opts)
        .with_context(|| format!("loading dataset `{}`", a.dataset))?;
    let mut ins = d.inspect();
    if a.verify {
        ins.bad_files.extend(verify(&d.train, "train"));
        ins.bad_files.extend(verify(&d.test, "test"));
    }
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
    if ins.streamed {
        println!("images are decoded on demand and brought to {s} (CxHxW)");
    }
    let sizes: Vec<String> = ins
        .image_sizes
        .iter()
        .take(8)
        .map(|z| format!("{}x{} ({})", z.width, z.height, z.count))
        .collect();
    println!(
        "image sizes (WxH, count): {}{}",
        sizes.join(", "),
        if ins.image_sizes.len() > 8 {
            format!(", ... {} distinct sizes", ins.image_sizes.len())
        } else {
            String::new()
        }
    );
    if ins.bad_files.is_empty() {
        println!(
            "bad files: none{}",
            if ins.streamed && !a.verify {
                " (headers read; --verify decodes every image)"
            } else {
                ""
            }
        );
    } else {
        println!("bad files: {}", ins.bad_files.len());
        for b in ins.bad_files.iter().take(20) {
            println!("  {}: {}", b.path, b.reason);
        }
        if ins.bad_files.len() > 20 {
            println!("  ... (--json lists them all)");
        }
    }
    Ok(())
}
