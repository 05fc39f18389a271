//! The experiment configuration: one serde tree, every key documented, unknown keys rejected.
//!
//! The CLI resolves a preset (or `--config FILE.toml`) plus `--set a.b=v` overrides into this struct,
//! calls [`crate::registry::Registry::validate`] (the values here, the names against the registry), writes the resolved copy into the run directory and only then
//! builds anything from it. Defaults here are the `mini` preset's (the built-in job).

use serde::{Deserialize, Serialize};

/// Which BatchNorm statistics the frozen previous model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeacherBn {
    /// Statistics of the current batch, running statistics untouched (the official code's behaviour).
    Train,
    /// The running statistics saved at the end of the previous task.
    Eval,
}

/// Which classes the classifier's cross-entropy normalises over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CeClasses {
    /// Every class of the stream (the official code).
    All,
    /// The classes of the tasks trained so far; later tasks' logits are left out of the softmax.
    Seen,
}

/// Optimiser family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// SGD with momentum and weight decay.
    Sgd,
    /// SGD + LARS trust ratio (bias and norm parameters excluded), as the paper.
    Lars,
}

/// The whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// The one seed: class order, label choice, replay, augmentation, initialisation and batch order derive from it.
    pub seed: u64,
    /// Strategy (a registry name): `kaizen`, `cassle`, `finetune`, `replay`, `joint` or `random`.
    pub strategy: String,
    /// SSL method (a registry name): `byol`, `simclr`, `mocov2plus`, `vicreg`, `barlow`, `simsiam`.
    pub method: String,
    /// Feature distiller: `auto` (the method's paired distiller) or `predictive`, `contrastive`, `predictive_mse`, `decorrelative`.
    pub distiller: String,
    /// Dataset and task stream.
    pub data: DataConfig,
    /// Model sizes.
    pub model: ModelConfig,
    /// Optimisation.
    pub train: TrainConfig,
    /// Loss-term weights and method hyper-parameters.
    pub loss: LossConfig,
    /// Evaluation protocols run after every task.
    pub eval: EvalConfig,
    /// Two-view augmentation.
    pub augment: kaizen_data::AugmentConfig,
}

/// Dataset and task stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset name (see `kaizen data inspect --help`).
    pub dataset: String,
    /// Folder with the dataset files; empty for the built-in `fashion-mnist-mini`.
    pub data_root: String,
    /// Number of tasks; the classes must divide evenly.
    pub num_tasks: usize,
    /// Explicit class order (all classes, each once); empty = a permutation drawn from the seed.
    pub class_order: Vec<u16>,
    /// Fraction of each task's training images that keep their label (1.0 = all, 0.0 = none).
    pub label_fraction: f64,
    /// Keep only the first N training images of each class (0 = all).
    pub train_per_class: usize,
    /// Keep only the first M test images of each class (0 = all).
    pub test_per_class: usize,
    /// Replay memory size per finished task as a fraction of that task's labelled images (used when `replay_count` = 0).
    pub replay_fraction: f64,
    /// Replay memory size per finished task as a fixed count (0 = use `replay_fraction`).
    pub replay_count: usize,
    /// Replay mini-batch drawn and concatenated to every current batch.
    pub replay_batch: usize,
    /// Image folders and parquet datasets: side of the square images the model sees (0 = the first training
    /// image's height and width). Training views are random resized crops of the whole image.
    pub image_size: usize,
    /// Image folders and parquet datasets: evaluation centre-crop fraction in (0, 1] (resize the shorter side to
    /// `image_size / eval_crop`, then crop the centre; 1 = no margin, 0.875 = ImageNet's 256 -> 224).
    pub eval_crop: f64,
    /// Image folders and parquet datasets: a file that is not a readable image `stop`s loading with its path,
    /// or is left out with a warning (`skip`; the count goes in the manifest).
    pub bad_files: kaizen_data::BadFiles,
    /// Image folders: a file listing the classes to keep (one folder name per line, `#` comments), or
    /// `builtin:imagenet100` (the ImageNet-100 classes of CMC / solo-learn / CaSSLe); empty = every class.
    pub class_list: String,
    /// Image folders and parquet datasets: a folder for a decoded cache (each image decoded once into one file,
    /// read back by offset); empty = decode every time.
    pub decoded_cache: String,
    /// Parquet datasets: the image column (empty = `img` or `image`).
    pub image_column: String,
    /// Parquet datasets: the label column (empty = `label`, `fine_label` or `labels`; CIFAR-100's coarse
    /// labels: `coarse_label`).
    pub label_column: String,
    /// Per-channel normalisation mean in `[0, 1]` units (empty = measured on the training images; ImageNet's is
    /// `[0.485, 0.456, 0.406]`).
    pub mean: Vec<f32>,
    /// Per-channel normalisation standard deviation (empty = measured; ImageNet's `[0.229, 0.224, 0.225]`).
    pub std: Vec<f32>,
}

/// Model sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Backbone architecture: `resnet18` (CIFAR stem: 3x3 stride 1, no max-pool) or `resnet18_imagenet` (torchvision's
    /// 7x7 stride-2 stem and max-pool, for large images).
    pub arch: String,
    /// ResNet width w (stages w, 2w, 4w, 8w; 64 = the paper).
    pub width: usize,
    /// Padding of the 3x3 stem convolution (1 = standard CIFAR ResNet; 2 = the official code's quirk).
    pub stem_padding: usize,
    /// Projector hidden width.
    pub proj_hidden: usize,
    /// Projection size D.
    pub proj_out: usize,
    /// Predictor hidden width (BYOL, SimSiam).
    pub pred_hidden: usize,
    /// Distillation predictor hidden width.
    pub distill_hidden: usize,
    /// Classifier hidden width (1000 in the official code).
    pub classifier_hidden: usize,
    /// Standardise the classifier's input (the detached features) with a BatchNorm without scale and shift: batch
    /// statistics while training, running statistics at evaluation (false: the official Linear-ReLU-Linear alone).
    pub classifier_input_norm: bool,
}

/// Optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Epochs per task.
    pub epochs: usize,
    /// Current-task images per batch (replay comes on top).
    pub batch_size: usize,
    /// `lars` or `sgd`.
    pub optimizer: OptimizerName,
    /// Base learning rate of the backbone and heads.
    pub lr: f64,
    /// Learning rate of the classifier.
    pub classifier_lr: f64,
    /// Apply the LARS trust ratio to the classifier too (true: the official code). With few steps per task, plain
    /// SGD on the classifier (false) lets it keep up with new classes.
    pub classifier_lars: bool,
    /// Weight decay (bias and norm parameters excluded).
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// LARS eta.
    pub lars_eta: f64,
    /// Warm-up epochs of the learning-rate schedule (restarted every task).
    pub warmup_epochs: f64,
    /// Learning rate at the first warm-up step (0.003 in the official code); the classifier's is scaled alike.
    pub warmup_start_lr: f64,
    /// EMA tau at the start of a task (cosine to `final_tau`).
    pub base_tau: f64,
    /// EMA tau at the end of a task.
    pub final_tau: f64,
    /// Feed the classifier detached features (true, the official code) or let its gradient reach the backbone.
    pub classifier_detach: bool,
    /// BatchNorm mode of the frozen previous model: `train` (batch statistics) or `eval` (running statistics).
    pub teacher_bn: TeacherBn,
    /// Write a resumable checkpoint every N optimiser steps (0 = only at the end of each epoch).
    pub checkpoint_every: usize,
}

/// Loss weights (0 switches a term off) and method hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// Weight of the SSL term L_FE^CT.
    pub ssl: f64,
    /// Weight of the feature distillation L_FE^KD; negative = the distiller's default (1, or 25 for predictive_mse).
    pub feature_distill: f64,
    /// Weight of the classifier cross-entropy L_C^CT.
    pub classifier_ce: f64,
    /// Classes in the cross-entropy's softmax: `all` (the official code) or `seen` (the tasks trained so far).
    pub ce_classes: CeClasses,
    /// Weight lambda_C of the classifier soft-label distillation L_C^KD.
    pub classifier_distill: f64,
    /// Temperature of the soft-label distillation.
    pub distill_temperature: f64,
    /// Temperature of NT-Xent / InfoNCE; negative = the method's default (0.1 SimCLR, 0.2 MoCoV2+).
    pub temperature: f64,
    /// Temperature of the contrastive distiller.
    pub distill_contrastive_temperature: f64,
    /// MoCoV2+ queue size.
    pub queue_size: usize,
    /// VICReg invariance weight.
    pub vicreg_sim_weight: f64,
    /// VICReg variance weight.
    pub vicreg_var_weight: f64,
    /// VICReg covariance weight.
    pub vicreg_cov_weight: f64,
    /// Barlow Twins off-diagonal weight lambda (the method and the `decorrelative` distiller).
    pub barlow_lambda: f64,
    /// Barlow Twins overall scale (the method and the `decorrelative` distiller).
    pub barlow_scale: f64,
}

/// Evaluation after every task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Run the weighted kNN protocol.
    pub knn: bool,
    /// Neighbours of the kNN protocol.
    pub knn_k: usize,
    /// Temperature of the kNN weights.
    pub knn_temperature: f64,
    /// Run the linear-probe protocol.
    pub linear: bool,
    /// Linear-probe epochs.
    pub linear_epochs: usize,
    /// Linear-probe learning rate.
    pub linear_lr: f64,
    /// Images per evaluation forward batch.
    pub batch_size: usize,
    /// kNN bank / linear-probe training set: the first N training images of each class (0 = all).
    pub bank_per_class: usize,
}

/// A config key under `path` in dotted form: `path.key`, or `key` at the top level (`path` empty).
pub fn dotted_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        Self {
            seed: 5,
            strategy: "kaizen".into(),
            method: "byol".into(),
            distiller: "auto".into(),
            data: DataConfig::default(),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            loss: LossConfig::default(),
            eval: EvalConfig::default(),
            augment: kaizen_data::AugmentConfig::default(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: "fashion-mnist-mini".into(),
            data_root: String::new(),
            num_tasks: 5,
            class_order: Vec::new(),
            label_fraction: 1.0,
            train_per_class: 0,
            test_per_class: 0,
            replay_fraction: 0.01,
            replay_count: 0,
            replay_batch: 32,
            image_size: 0,
            eval_crop: 1.0,
            bad_files: kaizen_data::BadFiles::Stop,
            class_list: String::new(),
            decoded_cache: String::new(),
            image_column: String::new(),
            label_column: String::new(),
            mean: Vec::new(),
            std: Vec::new(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            arch: "resnet18".into(),
            width: 8,
            stem_padding: 1,
            proj_hidden: 512,
            proj_out: 128,
            pred_hidden: 512,
            distill_hidden: 512,
            classifier_hidden: 1000,
            classifier_input_norm: true,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 64,
            optimizer: OptimizerName::Lars,
            lr: 0.25,
            classifier_lr: 0.1,
            classifier_lars: true,
            weight_decay: 1e-5,
            momentum: 0.9,
            lars_eta: 0.02,
            warmup_epochs: 1.0,
            warmup_start_lr: 0.003,
            base_tau: 0.99,
            final_tau: 1.0,
            classifier_detach: true,
            teacher_bn: TeacherBn::Eval,
            checkpoint_every: 0,
        }
    }
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            ssl: 1.0,
            feature_distill: -1.0,
            classifier_ce: 1.0,
            ce_classes: CeClasses::Seen,
            classifier_distill: 2.0,
            distill_temperature: 1.0,
            temperature: -1.0,
            distill_contrastive_temperature: 0.2,
            queue_size: 4096,
            vicreg_sim_weight: 25.0,
            vicreg_var_weight: 25.0,
            vicreg_cov_weight: 1.0,
            barlow_lambda: 0.0051,
            barlow_scale: 0.1,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            knn: true,
            knn_k: 20,
            knn_temperature: 0.07,
            linear: true,
            linear_epochs: 30,
            linear_lr: 0.1,
            batch_size: 256,
            bank_per_class: 0,
        }
    }
}

/// A configuration value that cannot be used, with the key that holds it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config key `{key}`: {reason}")]
pub struct ConfigError {
    /// Dotted key path, e.g. `train.epochs`.
    pub key: String,
    /// What is wrong and what would be right.
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl ExperimentConfig {
    /// Check every value that could make a run fail late or silently wrong (names are checked against a
    /// registry by [`crate::registry::Registry::validate`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.data;
        if d.num_tasks == 0 {
            return Err(bad("data.num_tasks", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&d.label_fraction) {
            return Err(bad("data.label_fraction", "must be in [0, 1]"));
        }
        if !(0.0..=1.0).contains(&d.replay_fraction) {
            return Err(bad("data.replay_fraction", "must be in [0, 1]"));
        }
        if !(d.eval_crop > 0.0 && d.eval_crop <= 1.0) {
            return Err(bad("data.eval_crop", "must be in (0, 1]"));
        }
        if d.mean.len() != d.std.len() {
            return Err(bad(
                "data.mean",
                "data.mean and data.std must both be set (one value per channel) or both be empty",
            ));
        }
        if let Some(v) = d.mean.iter().find(|v| !v.is_finite()) {
            return Err(bad("data.mean", format!("{v} is not finite")));
        }
        if let Some(v) = d.std.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(bad(
                "data.std",
                format!("{v} is not a positive finite number"),
            ));
        }
        if d.image_size > 4096 {
            return Err(bad(
                "data.image_size",
                "must be at most 4096 (0 = the images' own size)",
            ));
        }
        self.validate_sizes()?;
        let t = &self.train;
        for (k, v) in [
            ("train.base_tau", t.base_tau),
            ("train.final_tau", t.final_tau),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(k, "must be in [0, 1]"));
            }
        }
        if t.base_tau > t.final_tau {
            return Err(bad("train.base_tau", "must not exceed train.final_tau"));
        }
        for (k, v) in [
            ("train.lr", t.lr),
            ("train.classifier_lr", t.classifier_lr),
            ("train.weight_decay", t.weight_decay),
            ("train.momentum", t.momentum),
            ("train.lars_eta", t.lars_eta),
            ("train.warmup_epochs", t.warmup_epochs),
            ("train.warmup_start_lr", t.warmup_start_lr),
            ("loss.ssl", self.loss.ssl),
            ("loss.classifier_ce", self.loss.classifier_ce),
            ("loss.classifier_distill", self.loss.classifier_distill),
            ("loss.vicreg_sim_weight", self.loss.vicreg_sim_weight),
            ("loss.vicreg_var_weight", self.loss.vicreg_var_weight),
            ("loss.vicreg_cov_weight", self.loss.vicreg_cov_weight),
            ("loss.barlow_lambda", self.loss.barlow_lambda),
            ("loss.barlow_scale", self.loss.barlow_scale),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(bad(k, format!("must be a finite number >= 0, got {v}")));
            }
        }
        if self.loss.distill_temperature.is_nan() || self.loss.distill_temperature <= 0.0 {
            return Err(bad("loss.distill_temperature", "must be > 0"));
        }
        if self.loss.distill_contrastive_temperature.is_nan()
            || self.loss.distill_contrastive_temperature <= 0.0
        {
            return Err(bad("loss.distill_contrastive_temperature", "must be > 0"));
        }
        if self.eval.knn && self.eval.knn_k == 0 {
            return Err(bad("eval.knn_k", "must be at least 1"));
        }
        Ok(())
    }

    /// The architecture name and every size that must be at least 1.
    fn validate_sizes(&self) -> Result<(), ConfigError> {
        let m = &self.model;
        if m.arch.parse::<kaizen_models::Arch>().is_err() {
            return Err(bad(
                "model.arch",
                format!(
                    "unknown architecture `{}`; valid: {}",
                    m.arch,
                    kaizen_models::Arch::NAMES.join(", ")
                ),
            ));
        }
        for (k, v) in [
            ("model.width", m.width),
            ("model.proj_hidden", m.proj_hidden),
            ("model.proj_out", m.proj_out),
            ("model.pred_hidden", m.pred_hidden),
            ("model.distill_hidden", m.distill_hidden),
            ("model.classifier_hidden", m.classifier_hidden),
            ("train.epochs", self.train.epochs),
            ("train.batch_size", self.train.batch_size),
            ("eval.batch_size", self.eval.batch_size),
        ] {
            if v == 0 {
                return Err(bad(k, "must be at least 1"));
            }
        }
        if self.train.batch_size < 2 {
            return Err(bad(
                "train.batch_size",
                "must be at least 2 (BatchNorm needs two samples)",
            ));
        }
        Ok(())
    }
}
