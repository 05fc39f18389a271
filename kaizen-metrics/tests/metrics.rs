//! Every metric on hand-worked matrices (the arithmetic is in the comments), the undefined cases and bad inputs.

use kaizen_metrics::*;

const EPS: f64 = 1e-12;

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < EPS)
}

fn close_vec(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < EPS)
}

/// M1, T = 3, every cell present.
fn m1() -> AccuracyMatrix {
    AccuracyMatrix::from_full(&[
        vec![0.9, 0.1, 0.05],
        vec![0.7, 0.8, 0.1],
        vec![0.6, 0.7, 0.85],
    ])
    .unwrap()
}

#[test]
fn m1_all_metrics() {
    let r = m1();
    // final = (0.6 + 0.7 + 0.85) / 3 = 2.15 / 3
    assert!(close(final_accuracy(&r), 2.15 / 3.0));
    // A_0 = 0.9; A_1 = (0.7 + 0.8) / 2 = 0.75; A_2 = 2.15 / 3; AIA = (0.9 + 0.75 + 2.15/3) / 3
    assert!(close(
        average_incremental_accuracy(&r),
        (0.9 + 0.75 + 2.15 / 3.0) / 3.0
    ));
    // f_0 = max(R00, R10) - R20 = max(0.9, 0.7) - 0.6 = 0.3; f_1 = max(R11) - R21 = 0.8 - 0.7 = 0.1
    assert!(close_vec(&per_task_forgetting(&r).unwrap(), &[0.3, 0.1]));
    // forgetting = (0.3 + 0.1) / 2 = 0.2
    assert!(close(forgetting(&r), 0.2));
    // BWT = ((R20 - R00) + (R21 - R11)) / 2 = ((0.6 - 0.9) + (0.7 - 0.8)) / 2 = -0.2
    assert!(close(backward_transfer(&r), -0.2));
    // FWT with b = [0.1, 0.05, 0.02]: ((R01 - b1) + (R12 - b2)) / 2 = ((0.1 - 0.05) + (0.1 - 0.02)) / 2 = 0.065
    assert!(close(forward_transfer(&r, &[0.1, 0.05, 0.02]), 0.065));
    // plasticity = (0.9 + 0.8 + 0.85) / 3 = 0.85
    assert!(close(plasticity(&r), 0.85));
    // intransigence with a* = [0.95, 0.9, 0.9]: ((0.95-0.9) + (0.9-0.8) + (0.9-0.85)) / 3 = 0.2 / 3
    assert!(close(intransigence(&r, &[0.95, 0.9, 0.9]), 0.2 / 3.0));
}

/// M2, T = 4: the maximum for forgetting is not on the diagonal (task 0 peaks after task 1, task 1 after task 2).
fn m2() -> AccuracyMatrix {
    AccuracyMatrix::from_full(&[
        vec![0.5, 0.0, 0.0, 0.0],
        vec![0.7, 0.6, 0.0, 0.0],
        vec![0.4, 0.9, 0.8, 0.0],
        vec![0.3, 0.5, 0.6, 0.7],
    ])
    .unwrap()
}

#[test]
fn m2_all_metrics() {
    let r = m2();
    // final = (0.3 + 0.5 + 0.6 + 0.7) / 4 = 0.525
    assert!(close(final_accuracy(&r), 0.525));
    // A = [0.5, (0.7+0.6)/2 = 0.65, (0.4+0.9+0.8)/3 = 0.7, 0.525]; AIA = 2.375 / 4 = 0.59375
    assert!(close(average_incremental_accuracy(&r), 0.59375));
    // f_0 = max(0.5, 0.7, 0.4) - 0.3 = 0.4; f_1 = max(0.6, 0.9) - 0.5 = 0.4; f_2 = 0.8 - 0.6 = 0.2
    // (a "first minus last" definition would give f_0 = 0.2, f_1 = 0.1: this pins the max over earlier steps)
    assert!(close_vec(
        &per_task_forgetting(&r).unwrap(),
        &[0.4, 0.4, 0.2]
    ));
    // forgetting = 1.0 / 3
    assert!(close(forgetting(&r), 1.0 / 3.0));
    // BWT = ((0.3-0.5) + (0.5-0.6) + (0.6-0.8)) / 3 = -0.5 / 3 (the last task is excluded)
    assert!(close(backward_transfer(&r), -0.5 / 3.0));
    // FWT with b = 0.1 everywhere: super-diagonal R01 = R12 = R23 = 0, so (3 * (0 - 0.1)) / 3 = -0.1 (b_0 unused)
    assert!(close(forward_transfer(&r, &[0.9, 0.1, 0.1, 0.1]), -0.1));
    // plasticity = (0.5 + 0.6 + 0.8 + 0.7) / 4 = 0.65
    assert!(close(plasticity(&r), 0.65));
    // intransigence with a* = [0.6, 0.6, 0.9, 0.9]: (0.1 + 0 + 0.1 + 0.2) / 4 = 0.1
    assert!(close(intransigence(&r, &[0.6, 0.6, 0.9, 0.9]), 0.1));
}

/// M3, T = 2, upper triangle not evaluated.
#[test]
fn m3_missing_upper_triangle() {
    let r =
        AccuracyMatrix::from_rows(vec![vec![Some(0.8), None], vec![Some(0.6), Some(0.9)]]).unwrap();
    // final = (0.6 + 0.9) / 2 = 0.75
    assert!(close(final_accuracy(&r), 0.75));
    // A_0 = 0.8, A_1 = 0.75 -> AIA = 0.775
    assert!(close(average_incremental_accuracy(&r), 0.775));
    // f_0 = 0.8 - 0.6 = 0.2
    assert!(close(forgetting(&r), 0.2));
    // BWT = 0.6 - 0.8 = -0.2
    assert!(close(backward_transfer(&r), -0.2));
    // R01 is missing, so forward transfer is undefined even with a baseline
    assert_eq!(forward_transfer(&r, &[0.1, 0.1]), None);
    // plasticity = (0.8 + 0.9) / 2 = 0.85
    assert!(close(plasticity(&r), 0.85));
    // intransigence with a* = [0.8, 0.9]: (0 + 0) / 2 = 0
    assert!(close(intransigence(&r, &[0.8, 0.9]), 0.0));
    let s = summarize(&r, Some(&[0.1, 0.1]), Some(&[0.8, 0.9])).unwrap();
    assert_eq!(s.forward_transfer, None);
    assert!(close(s.intransigence, 0.0));
}

/// M4, T = 2: learning task 1 improves task 0 (negative forgetting, positive backward transfer).
#[test]
fn m4_positive_backward_transfer() {
    let r = AccuracyMatrix::from_full(&[vec![0.5, 0.2], vec![0.7, 0.9]]).unwrap();
    // f_0 = max(0.5) - 0.7 = -0.2 (negative: no clamping)
    assert!(close_vec(&per_task_forgetting(&r).unwrap(), &[-0.2]));
    // BWT = 0.7 - 0.5 = 0.2
    assert!(close(backward_transfer(&r), 0.2));
    // FWT with b = [0.5, 0.1]: R01 - b_1 = 0.2 - 0.1 = 0.1
    assert!(close(forward_transfer(&r, &[0.5, 0.1]), 0.1));
    // AIA = (0.5 + (0.7 + 0.9)/2) / 2 = (0.5 + 0.8) / 2 = 0.65
    assert!(close(average_incremental_accuracy(&r), 0.65));
}

#[test]
fn single_task_undefined_cases() {
    let r = AccuracyMatrix::from_full(&[vec![0.9]]).unwrap();
    let s = summarize(&r, Some(&[0.1]), Some(&[1.0])).unwrap();
    assert!(close(s.final_accuracy, 0.9));
    assert!(close(s.average_incremental_accuracy, 0.9));
    assert!(close(s.plasticity, 0.9));
    assert_eq!(s.forgetting, None);
    assert_eq!(s.backward_transfer, None);
    assert_eq!(s.forward_transfer, None);
    // intransigence = 1.0 - 0.9
    assert!(close(s.intransigence, 0.1));
    assert!(s.per_task_forgetting.is_empty());
}

#[test]
fn no_baseline_no_joint_gives_null() {
    let s = summarize(&m1(), None, None).unwrap();
    assert_eq!(s.forward_transfer, None);
    assert_eq!(s.intransigence, None);
    assert!(close(s.forgetting, 0.2));
    // The JSON has exactly the documented keys, with null for undefined values and no NaN.
    let v = serde_json::to_value(&s).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "average_incremental_accuracy",
            "backward_transfer",
            "final_accuracy",
            "forgetting",
            "forward_transfer",
            "intransigence",
            "per_task_forgetting",
            "plasticity"
        ]
    );
    assert!(v["forward_transfer"].is_null());
    assert!(v["intransigence"].is_null());
    assert_eq!(v["per_task_forgetting"].as_array().unwrap().len(), 2);
    let back: Summary = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);
}

#[test]
fn metric_functions_reject_wrong_vector_lengths_with_none() {
    assert_eq!(forward_transfer(&m1(), &[0.1, 0.1]), None);
    assert_eq!(intransigence(&m1(), &[0.1]), None);
}

#[test]
fn summarize_errors() {
    // A missing lower-triangle cell names the cell.
    let r = AccuracyMatrix::from_rows(vec![vec![Some(0.8), None], vec![None, Some(0.9)]]).unwrap();
    assert!(matches!(
        summarize(&r, None, None),
        Err(MetricsError::MissingCell { row: 1, col: 0 })
    ));
    // Baseline / joint of the wrong length.
    assert!(matches!(
        summarize(&m1(), Some(&[0.1, 0.1]), None),
        Err(MetricsError::LengthMismatch {
            expected: 3,
            found: 2,
            ..
        })
    ));
    assert!(matches!(
        summarize(&m1(), None, Some(&[0.1; 4])),
        Err(MetricsError::LengthMismatch {
            expected: 3,
            found: 4,
            ..
        })
    ));
    // Joint accuracies in percent: out of range, with the percent hint.
    let e = summarize(&m1(), None, Some(&[95.0, 90.0, 90.0])).unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::OutOfRange {
                column: 1,
                looks_like_percent: true,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("divide them by 100"), "{e}");
}

#[test]
fn matrix_construction_errors() {
    assert!(matches!(
        AccuracyMatrix::from_rows(vec![]),
        Err(MetricsError::Empty { .. })
    ));
    assert!(matches!(
        AccuracyMatrix::new(0),
        Err(MetricsError::Empty { .. })
    ));
    assert!(matches!(
        AccuracyMatrix::from_full(&[vec![0.5, 0.5], vec![0.5]]),
        Err(MetricsError::NotSquare {
            rows: 2,
            cols: 1,
            ..
        })
    ));
    // Percentages: every value in [0, 100] -> hint.
    let e = AccuracyMatrix::from_full(&[vec![50.0, 0.0], vec![40.0, 60.0]]).unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::OutOfRange {
                line: 1,
                column: 1,
                looks_like_percent: true,
                ..
            }
        ),
        "{e}"
    );
    // A negative value is no percentage: no hint.
    let e = AccuracyMatrix::from_full(&[vec![0.5, 0.0], vec![-0.1, 0.6]]).unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::OutOfRange {
                line: 2,
                column: 1,
                looks_like_percent: false,
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("divide"));
    assert!(matches!(
        AccuracyMatrix::from_full(&[vec![f64::NAN]]),
        Err(MetricsError::OutOfRange { .. })
    ));
}

#[test]
fn matrix_setters_and_leading() {
    let mut r = AccuracyMatrix::new(3).unwrap();
    assert_eq!(r.completed_rows(), 0);
    r.set_row(0, &[Some(0.9), Some(0.1), None]).unwrap();
    r.set(1, 0, Some(0.7)).unwrap();
    r.set(1, 1, Some(0.8)).unwrap();
    assert_eq!(r.completed_rows(), 2);
    assert!(matches!(
        r.set(3, 0, Some(0.5)),
        Err(MetricsError::IndexOutOfRange {
            row: 3,
            col: 0,
            num_tasks: 3
        })
    ));
    assert!(matches!(
        r.set(0, 0, Some(1.5)),
        Err(MetricsError::OutOfRange { .. })
    ));
    assert!(matches!(
        r.set_row(2, &[Some(0.5)]),
        Err(MetricsError::LengthMismatch {
            expected: 3,
            found: 1,
            ..
        })
    ));
    // A failed set leaves the cell unchanged.
    assert_eq!(r.get(0, 0), Some(0.9));
    // The whole matrix is incomplete; its leading 2 x 2 part is a valid two-task stream.
    assert!(matches!(
        summarize(&r, None, None),
        Err(MetricsError::MissingCell { row: 2, col: 0 })
    ));
    let lead = r.leading(2).unwrap();
    let s = summarize(&lead, Some(&[0.0, 0.05]), None).unwrap();
    // forgetting = 0.9 - 0.7 = 0.2; FWT = R01 - b_1 = 0.1 - 0.05 = 0.05
    assert!(close(s.forgetting, 0.2));
    assert!(close(s.forward_transfer, 0.05));
    assert!(r.leading(4).is_err());
    assert!(r.leading(0).is_err());
}

#[test]
fn matrix_serde_roundtrip_and_validation() {
    let r =
        AccuracyMatrix::from_rows(vec![vec![Some(0.8), None], vec![Some(0.6), Some(0.9)]]).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(json, r#"{"num_tasks":2,"cells":[[0.8,null],[0.6,0.9]]}"#);
    let back: AccuracyMatrix = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    // Deserialisation validates: out of range and a wrong num_tasks are errors.
    assert!(serde_json::from_str::<AccuracyMatrix>(r#"{"num_tasks":1,"cells":[[1.5]]}"#).is_err());
    assert!(serde_json::from_str::<AccuracyMatrix>(r#"{"num_tasks":2,"cells":[[0.5]]}"#).is_err());
}
