//! The dataset and the task stream a config describes.

use crate::config::ExperimentConfig;
use crate::error::CoreError;
use kaizen_data::options::resolve_class_list;
use kaizen_data::{load_named, ClassOrder, Dataset, DatasetName, LoadOptions, TaskStream};
use std::ops::Range;
use std::path::PathBuf;

/// Load the built-in dataset a config names (`data.dataset`, `data.data_root`), with the per-class caps
/// applied ([`apply_caps`]).
pub fn load_config_dataset(cfg: &ExperimentConfig) -> Result<Dataset, CoreError> {
    let name = &cfg.data.dataset;
    if !name.starts_with("hf:") {
        name.parse::<DatasetName>()
            .map_err(|e| CoreError::Invalid(format!("config key `data.dataset`: {e}")))?;
    }
    let root = (!cfg.data.data_root.is_empty()).then(|| PathBuf::from(&cfg.data.data_root));
    let opts = load_options(cfg)?;
    apply_normalisation(
        apply_caps(load_named(name, root.as_deref(), &opts)?, cfg),
        cfg,
    )
}

/// Replaces the measured normalisation statistics by `data.mean` / `data.std` when they are set; their length
/// must be the dataset's channel count.
pub fn apply_normalisation(mut ds: Dataset, cfg: &ExperimentConfig) -> Result<Dataset, CoreError> {
    let d = &cfg.data;
    if d.mean.is_empty() {
        return Ok(ds);
    }
    if d.mean.len() != ds.shape.channels || d.std.len() != ds.shape.channels {
        return Err(CoreError::Invalid(format!(
            "config keys `data.mean` / `data.std`: {} / {} values for the {} channels of {}",
            d.mean.len(),
            d.std.len(),
            ds.shape.channels,
            ds.name
        )));
    }
    ds.mean = d.mean.clone();
    ds.std = d.std.clone();
    Ok(ds)
}

/// The streamed readers' options a config describes (`data.image_size`, `eval_crop`, `bad_files`,
/// `class_list`, `decoded_cache`, `image_column`, `label_column`).
pub fn load_options(cfg: &ExperimentConfig) -> Result<LoadOptions, CoreError> {
    let d = &cfg.data;
    Ok(LoadOptions {
        image_size: d.image_size,
        eval_crop: d.eval_crop,
        bad_files: d.bad_files,
        class_list: resolve_class_list(&d.class_list)?,
        decoded_cache: (!d.decoded_cache.is_empty()).then(|| PathBuf::from(&d.decoded_cache)),
        image_column: d.image_column.clone(),
        label_column: d.label_column.clone(),
    })
}

/// Keep the first `data.train_per_class` / `data.test_per_class` images of each class (0 = all); the
/// normalisation statistics become those of the training images kept.
pub fn apply_caps(mut ds: Dataset, cfg: &ExperimentConfig) -> Dataset {
    if cfg.data.train_per_class > 0 {
        ds.train = ds.train.cap_per_class(cfg.data.train_per_class);
        (ds.mean, ds.std) = kaizen_data::dataset::channel_stats(&ds.train);
    }
    if cfg.data.test_per_class > 0 {
        ds.test = ds.test.cap_per_class(cfg.data.test_per_class);
    }
    ds
}

/// The task stream a config describes (`data.num_tasks`; `data.class_order`, or an order drawn from the seed).
pub fn build_stream(cfg: &ExperimentConfig, num_classes: usize) -> Result<TaskStream, CoreError> {
    let order = if cfg.data.class_order.is_empty() {
        ClassOrder::Seeded(cfg.seed)
    } else {
        ClassOrder::Explicit(cfg.data.class_order.clone())
    };
    Ok(TaskStream::new(num_classes, cfg.data.num_tasks, order)?)
}

/// `seen[c]`: class c belongs to one of the tasks `0..tasks.end` of the stream (the classes trained so far
/// when phase `tasks` has been trained).
pub fn seen_classes(stream: &TaskStream, tasks: Range<usize>) -> Vec<bool> {
    let mut seen = vec![false; stream.num_classes()];
    for k in 0..tasks.end.min(stream.num_tasks()) {
        for &c in stream.task_classes(k) {
            seen[usize::from(c)] = true;
        }
    }
    seen
}
