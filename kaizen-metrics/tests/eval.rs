//! Evaluation protocols on toy sets with known answers.

use candle_core::{Device, Tensor};
use kaizen_metrics::*;

fn t2(rows: &[[f32; 2]]) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), 2), &Device::Cpu).unwrap()
}

#[test]
fn per_task_accuracy_by_hand() {
    // Classes 0,1 -> task 0; 2,3 -> task 1; 4,5 -> task 2 (no test images).
    let task_of_class = [0, 0, 1, 1, 2, 2];
    let labels = [0u16, 1, 1, 2, 3, 3];
    let preds = [0u16, 0, 1, 2, 2, 3];
    // task 0: images 0,1,2 -> correct 0 and 2 -> 2/3; task 1: images 3,4,5 -> correct 3 and 5 -> 2/3; task 2: none
    let acc = per_task_accuracy(&preds, &labels, &task_of_class, 3).unwrap();
    assert_eq!(acc.len(), 3);
    assert!((acc[0].unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert!((acc[1].unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(acc[2], None);
    // errors
    assert!(matches!(
        per_task_accuracy(&preds[..2], &labels, &task_of_class, 3),
        Err(MetricsError::LengthMismatch { .. })
    ));
    assert!(matches!(
        per_task_accuracy(&[9], &[9], &task_of_class, 3),
        Err(MetricsError::BadIndex {
            index: 9,
            bound: 6,
            ..
        })
    ));
    assert!(matches!(
        per_task_accuracy(&[4], &[4], &task_of_class, 2),
        Err(MetricsError::BadIndex {
            index: 2,
            bound: 2,
            ..
        })
    ));
}

#[test]
fn classifier_all_classes_and_seen_classes() {
    // 4 classes, tasks {0,1} and {2,3}; after task 0 only classes 0,1 are seen.
    let task_of_class = [0, 0, 1, 1];
    let logits = Tensor::from_vec(
        vec![
            0.1f32, 0.5, 0.9, 0.0, // argmax 2 (unseen); among seen {0,1}: 1
            2.0, 1.0, 0.0, 3.0, // argmax 3; among seen: 0
            0.0, 0.0, 1.0, 0.0, // argmax 2; among seen: tie 0/1 -> 0
            1.0, 1.0, 1.0, 1.0, // all tied -> 0
        ],
        (4, 4),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(argmax_predictions(&logits, None).unwrap(), vec![2, 3, 2, 0]);
    let mask = seen_class_mask(&task_of_class, 1);
    assert_eq!(mask, vec![true, true, false, false]);
    assert_eq!(
        argmax_predictions(&logits, Some(&mask)).unwrap(),
        vec![1, 0, 0, 0]
    );

    let labels = [1u16, 0, 2, 3];
    // all classes: preds [2,3,2,0] vs labels [1,0,2,3]: task 0 (images 0,1) 0/2; task 1 (images 2,3) 1/2
    let all = classifier_task_accuracy(&logits, &labels, &task_of_class, 2, None).unwrap();
    assert_eq!(all, vec![Some(0.0), Some(0.5)]);
    // seen only: preds [1,0,0,0]: task 0 2/2; task 1 0/2
    let seen = classifier_task_accuracy(&logits, &labels, &task_of_class, 2, Some(&mask)).unwrap();
    assert_eq!(seen, vec![Some(1.0), Some(0.0)]);

    // errors: wrong mask length, empty mask, wrong rank, label count
    assert!(matches!(
        argmax_predictions(&logits, Some(&[true])),
        Err(MetricsError::LengthMismatch { .. })
    ));
    assert!(matches!(
        argmax_predictions(&logits, Some(&[false; 4])),
        Err(MetricsError::BadConfig { .. })
    ));
    let flat = logits.flatten_all().unwrap();
    assert!(matches!(
        argmax_predictions(&flat, None),
        Err(MetricsError::BadTensor { .. })
    ));
    assert!(matches!(
        classifier_task_accuracy(&logits, &labels[..3], &task_of_class, 2, None),
        Err(MetricsError::LengthMismatch { .. })
    ));
}

#[test]
fn knn_weighted_vote_beats_majority() {
    // Bank: one class-0 point almost identical to the query, two class-1 points at 60 degrees.
    // k = 3, T = 0.07: class 0 weight exp(0.9998/0.07) ~ 1.6e6; class 1 weight 2 * exp(0.5/0.07) ~ 2.5e3.
    // A plain majority vote would say class 1; the weighted vote says class 0.
    let s = (1.0f32 - 0.02 * 0.02).sqrt();
    let c60 = 0.5f32;
    let s60 = (1.0f32 - 0.25).sqrt();
    let bank = t2(&[[s, 0.02], [c60, s60], [c60, -s60]]);
    let query = t2(&[[1.0, 0.0]]);
    let cfg = KnnConfig {
        k: 3,
        ..KnnConfig::default()
    };
    assert_eq!(
        knn_predict(&bank, &[0, 1, 1], &query, 2, &cfg).unwrap(),
        vec![0]
    );
    // With a huge temperature the weights are ~equal and the majority wins.
    let flat = KnnConfig {
        k: 3,
        temperature: 1e6,
        ..KnnConfig::default()
    };
    assert_eq!(
        knn_predict(&bank, &[0, 1, 1], &query, 2, &flat).unwrap(),
        vec![1]
    );
    // k = 1 takes the nearest only.
    let one = KnnConfig {
        k: 1,
        ..KnnConfig::default()
    };
    assert_eq!(
        knn_predict(&bank, &[1, 0, 0], &query, 2, &one).unwrap(),
        vec![1]
    );
}

/// Two well separated clusters in 2-D (class 0 around angle 0, class 1 around angle 90 degrees), scaled
/// differently to check the L2 normalisation.
fn clusters(n: usize, offset: f32) -> (Tensor, Vec<u16>) {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let jitter = 0.05 * ((i as f32 + offset) / n as f32 - 0.5);
        let scale = 1.0 + i as f32;
        rows.push([scale * (1.0 - jitter.abs()), scale * jitter]);
        labels.push(0);
        rows.push([scale * jitter, scale * (1.0 - jitter.abs())]);
        labels.push(1);
    }
    (t2(&rows), labels)
}

#[test]
fn knn_separable_toy_set_and_chunking() {
    let (bank, bank_labels) = clusters(30, 0.0);
    let (test, test_labels) = clusters(10, 0.37);
    let cfg = KnnConfig::default();
    let preds = knn_predict(&bank, &bank_labels, &test, 2, &cfg).unwrap();
    assert_eq!(preds, test_labels);
    // One test row per chunk gives the same answer.
    let tiny = KnnConfig {
        max_distance_matrix_size: 1,
        ..KnnConfig::default()
    };
    assert_eq!(
        knn_predict(&bank, &bank_labels, &test, 2, &tiny).unwrap(),
        preds
    );
    // k larger than the bank uses the whole bank.
    let big = KnnConfig {
        k: 1000,
        ..KnnConfig::default()
    };
    assert_eq!(
        knn_predict(&bank, &bank_labels, &test, 2, &big).unwrap(),
        preds
    );
}

#[test]
fn knn_errors() {
    let (bank, labels) = clusters(3, 0.0);
    let cfg = KnnConfig::default();
    let q3 = Tensor::zeros((1, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        knn_predict(&bank, &labels, &q3, 2, &cfg),
        Err(MetricsError::BadTensor { .. })
    ));
    assert!(matches!(
        knn_predict(&bank, &labels[..2], &bank, 2, &cfg),
        Err(MetricsError::LengthMismatch { .. })
    ));
    assert!(matches!(
        knn_predict(&bank, &labels, &bank, 1, &cfg),
        Err(MetricsError::BadIndex { .. })
    ));
    let bad = KnnConfig {
        k: 0,
        ..KnnConfig::default()
    };
    assert!(matches!(
        knn_predict(&bank, &labels, &bank, 2, &bad),
        Err(MetricsError::BadConfig { .. })
    ));
    let empty = Tensor::zeros((0, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        knn_predict(&empty, &[], &bank, 2, &cfg),
        Err(MetricsError::BadTensor { .. })
    ));
}

/// Three classes in 4-D, linearly separable: class c has feature c large (offset 3), plus a shared nuisance
/// dimension with a large scale (checks standardisation).
fn probe_data(n_per_class: usize, phase: f32) -> (Tensor, Vec<u16>) {
    let mut flat = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n_per_class {
        for c in 0..3u16 {
            let w = ((i as f32 * 0.7 + phase + f32::from(c)).sin()) * 0.5;
            let mut row = [w, -w, 0.3 * w, 100.0 + 50.0 * w];
            row[c as usize] += 3.0;
            flat.extend_from_slice(&row);
            labels.push(c);
        }
    }
    (
        Tensor::from_vec(flat, (labels.len(), 4), &Device::Cpu).unwrap(),
        labels,
    )
}

#[test]
fn linear_probe_separable_and_deterministic() {
    let (x, y) = probe_data(20, 0.0);
    let (xt, yt) = probe_data(10, 1.3);
    let cfg = LinearProbeConfig {
        epochs: 20,
        batch_size: 16,
        ..LinearProbeConfig::default()
    };
    let probe = LinearProbe::train(&x, &y, 3, &cfg).unwrap();
    assert_eq!(probe.predict(&xt).unwrap(), yt);
    assert_eq!(probe.weight.dims(), &[3, 4]);
    // Same config and data: bit-identical weights.
    let again = LinearProbe::train(&x, &y, 3, &cfg).unwrap();
    let w1: Vec<f32> = probe.weight.flatten_all().unwrap().to_vec1().unwrap();
    let w2: Vec<f32> = again.weight.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(w1, w2);
    // Errors: bad config, label out of range, wrong feature width at prediction time.
    let bad = LinearProbeConfig {
        lr: 0.0,
        ..cfg.clone()
    };
    assert!(matches!(
        LinearProbe::train(&x, &y, 3, &bad),
        Err(MetricsError::BadConfig { .. })
    ));
    assert!(matches!(
        LinearProbe::train(&x, &y, 2, &cfg),
        Err(MetricsError::BadIndex { .. })
    ));
    let narrow = x.narrow(1, 0, 3).unwrap();
    assert!(matches!(
        probe.predict(&narrow),
        Err(MetricsError::BadTensor { .. })
    ));
}

#[test]
fn linear_probe_config_serde_defaults() {
    let cfg: LinearProbeConfig = serde_json::from_str(r#"{"epochs": 5}"#).unwrap();
    assert_eq!(cfg.epochs, 5);
    assert_eq!(cfg.batch_size, LinearProbeConfig::default().batch_size);
    assert!(serde_json::from_str::<LinearProbeConfig>(r#"{"epoch": 5}"#).is_err());
    let knn: KnnConfig = serde_json::from_str("{}").unwrap();
    assert_eq!((knn.k, knn.temperature), (20, 0.07));
}

#[test]
fn eval_rows_use_only_seen_tasks() {
    // Stream: task 0 = class 0, task 1 = class 1 (clusters above). After task 0 the bank / probe only know class 0,
    // so every test image is predicted as class 0: task 0 accuracy 1, task 1 accuracy 0. After task 1 both are 1.
    let (train, train_labels) = clusters(20, 0.0);
    let (test, test_labels) = clusters(8, 0.5);
    let data = EvalData {
        train_features: &train,
        train_labels: &train_labels,
        test_features: &test,
        test_labels: &test_labels,
        task_of_class: &[0, 1],
        num_tasks: 2,
    };
    let knn = KnnConfig::default();
    assert_eq!(data.knn_row(1, &knn).unwrap(), vec![Some(1.0), Some(0.0)]);
    assert_eq!(data.knn_row(2, &knn).unwrap(), vec![Some(1.0), Some(1.0)]);
    let lin = LinearProbeConfig {
        epochs: 10,
        batch_size: 8,
        ..LinearProbeConfig::default()
    };
    assert_eq!(
        data.linear_probe_row(1, &lin).unwrap(),
        vec![Some(1.0), Some(0.0)]
    );
    assert_eq!(
        data.linear_probe_row(2, &lin).unwrap(),
        vec![Some(1.0), Some(1.0)]
    );
    // Rows feed an accuracy matrix directly.
    let mut r = AccuracyMatrix::new(2).unwrap();
    r.set_row(0, &data.knn_row(1, &knn).unwrap()).unwrap();
    r.set_row(1, &data.knn_row(2, &knn).unwrap()).unwrap();
    let s = summarize(&r, None, None).unwrap();
    assert_eq!(s.final_accuracy, Some(1.0));
    assert_eq!(seen_rows(&train_labels, &[0, 1], 1).unwrap().len(), 20);

    // Look-ahead rows: the cell of the unseen task 1 uses a bank / probe of tasks 0..=1 on task 1's images only,
    // so it is 1.0 here (clusters are separable), where the plain row says 0.0.
    assert_eq!(
        data.knn_row_lookahead(1, &knn).unwrap(),
        vec![Some(1.0), Some(1.0)]
    );
    assert_eq!(
        data.linear_probe_row_lookahead(1, &lin).unwrap(),
        vec![Some(1.0), Some(1.0)]
    );
    // tasks_seen = 0 (random-model baseline b_j): cell 0 from a task-0-only bank (every image is class 0 -> 1.0).
    assert_eq!(
        data.knn_row_lookahead(0, &knn).unwrap(),
        vec![Some(1.0), Some(1.0)]
    );
    // tasks_seen = T: identical to the plain row.
    assert_eq!(
        data.knn_row_lookahead(2, &knn).unwrap(),
        data.knn_row(2, &knn).unwrap()
    );
}
