//! The classifier must learn every task of a stream from fixed, separable features, and keep them apart.
//!
//! Real images (the embedded Fashion-MNIST subset), a backbone that is never trained (the classifier reads
//! detached features and the SSL terms are off, so only the classifier moves), five tasks of two classes in a row,
//! each trained through the trainer's own step functions and optimiser groups with the default (`mini`)
//! configuration. Right after each task, the classifier, taking the argmax over all ten classes, must tell the
//! task's two classes apart on held-out images, and at most half of its hidden units may be dead.
//!
//! This is the failure a user saw at some seeds: the classifier never left chance on a two-class task (its
//! cross-entropy stayed at 2 ln 2), because the hidden units of its MLP died in the first large steps of a task
//! (a BatchNorm in the classifier, now removed, whose shift was driven negative; the logits of not-yet-seen classes
//! pushed down without bound).

use anyhow::Result;
use candle_core::{DType, Device, D};
use kaizen_core::config::ExperimentConfig;
use kaizen_core::data::seen_classes;
use kaizen_core::optim::build_optimizer;
use kaizen_core::step::{self, StepSettings};
use kaizen_core::terms::StepBatch;
use kaizen_core::{Registry, RunModels};
use kaizen_data::{eval_batch, load_dataset, ClassOrder, DatasetName, TaskStream};
use kaizen_metrics::{LinearProbe, LinearProbeConfig};
use kaizen_models::optim::WarmupCosine;
use kaizen_models::BnMode;

const STEPS_PER_TASK: usize = 150;
const BATCH: usize = 64;

#[test]
fn a_classifier_on_fixed_features_learns_each_task_of_a_stream() -> Result<()> {
    let dev = Device::Cpu;
    let data = load_dataset(DatasetName::FashionMnistMini, None)?;
    let mut cfg = ExperimentConfig {
        seed: 11,
        ..ExperimentConfig::default()
    };
    cfg.loss.ssl = 0.0;
    cfg.model.width = 4;
    // Trouser/Bag, Sneaker/Dress, Sandal/Shirt, T-shirt/Coat, Pullover/Ankle boot.
    let order = vec![1u16, 8, 7, 3, 5, 6, 0, 4, 2, 9];
    cfg.data.class_order = order.clone();
    let stream = TaskStream::new(10, 5, ClassOrder::Explicit(order))?;
    let mut parts = RunModels::build(
        &Registry::builtin(),
        &cfg,
        data.shape.channels,
        data.num_classes,
        &dev,
    )?;
    let schedule = WarmupCosine {
        base_lr: cfg.train.lr,
        warmup_steps: STEPS_PER_TASK / 5,
        total_steps: STEPS_PER_TASK,
        warmup_start_lr: cfg.train.warmup_start_lr,
        min_lr: 0.0,
    };
    for t in 0..5 {
        // Training images of the task (sorted by class); held-out: the task's test images.
        let train = stream.indices(&data.train, t);
        let seen = seen_classes(&stream, 0..t + 1);
        let settings = StepSettings {
            seen: &seen,
            classifier_detach: cfg.train.classifier_detach,
        };
        let mut opt = build_optimizer(&cfg.train, &parts.online);
        for s in 0..STEPS_PER_TASK {
            // A deterministic interleaving of the two classes (indices come sorted by class).
            let half = train.len() / 2;
            let idx: Vec<u32> = (0..BATCH)
                .map(|k| {
                    let i = (s * BATCH / 2 + k / 2) % half;
                    train[if k % 2 == 0 { i } else { half + i }]
                })
                .collect();
            let (x, y) = eval_batch(&data.train, &idx, &data.mean, &data.std, &dev)?;
            let batch = StepBatch {
                view1: &x,
                view2: &x,
                labels: &y,
            };
            let (models, terms) = parts.step_parts(None);
            let terms = step::loss_terms(models, terms, &batch, &settings)?;
            let (total, _) = step::weighted_total(&terms, t, s)?;
            opt.step(&total.backward()?, schedule.lr(s))?;
        }
        let test = stream.indices(&data.test, t);
        let (x, y) = eval_batch(&data.test, &test, &data.mean, &data.std, &dev)?;
        let h = parts.online.backbone.forward(&x, BnMode::Eval)?;
        let logits = parts.online.classifier.forward(&h, BnMode::Eval)?;
        let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let labels = y.to_vec1::<i64>()?;
        let acc = pred
            .iter()
            .zip(&labels)
            .filter(|(p, l)| i64::from(**p) == **l)
            .count() as f64
            / labels.len() as f64;
        // Hidden units that are zero for every held-out image of the task.
        let hidden = parts
            .online
            .classifier
            .hidden_activations(&h, BnMode::Eval)?;
        let alive = hidden
            .gt(0f32)?
            .to_dtype(DType::F32)?
            .max(0)?
            .sum_all()?
            .to_scalar::<f32>()?;
        let units = hidden.dim(1)? as f32;
        // What a linear probe (standardised features, 30 epochs) reaches on the same fixed features.
        let (xt, yt) = eval_batch(&data.train, &train, &data.mean, &data.std, &dev)?;
        let ht = parts.online.backbone.forward(&xt, BnMode::Eval)?;
        let yt: Vec<u16> = yt.to_vec1::<i64>()?.iter().map(|&v| v as u16).collect();
        let probe = LinearProbe::train(&ht, &yt, 10, &LinearProbeConfig::default())?;
        let probe_acc = probe
            .predict(&h)?
            .iter()
            .zip(&labels)
            .filter(|(p, l)| i64::from(**p) == **l)
            .count() as f64
            / labels.len() as f64;
        eprintln!(
            "task {t}: classifier {acc:.3}, linear probe {probe_acc:.3}, {alive} of {units} hidden units alive"
        );
        assert!(
            acc >= probe_acc - 0.08,
            "task {t} ({:?}): held-out accuracy {acc:.3} right after training it, a linear probe on the same \
             features reaches {probe_acc:.3}",
            stream.task_classes(t)
        );
        assert!(
            alive >= units / 4.0,
            "task {t}: only {alive} of {units} hidden units are ever active"
        );
    }
    Ok(())
}
