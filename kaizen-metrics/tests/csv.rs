//! The CSV reader on well-formed and malformed files, and the writer's round trip.

use kaizen_metrics::*;

#[test]
fn parses_comments_blank_lines_spaces_crlf_bom_and_missing_cells() {
    let text = "\u{feff}# after task i, on task j\r\n\r\n  0.9 , NA, -\r\n# mid comment\n0.7,0.8,\n\n0.6, 0.7 ,0.85\n";
    let r = parse_matrix_csv(text, "R.csv").unwrap();
    assert_eq!(r.num_tasks(), 3);
    assert_eq!(r.get(0, 0), Some(0.9));
    assert_eq!(r.get(0, 1), None);
    assert_eq!(r.get(0, 2), None);
    assert_eq!(r.get(1, 2), None);
    assert_eq!(r.get(2, 2), Some(0.85));
}

#[test]
fn not_a_number_names_line_and_column() {
    // Line 3 because the comment line counts.
    let e = parse_matrix_csv("# c\n0.9,0.1\n0.7,abc\n", "R.csv").unwrap_err();
    match &e {
        MetricsError::NotANumber {
            file,
            line,
            column,
            field,
        } => {
            assert_eq!(
                (file.as_str(), *line, *column, field.as_str()),
                ("R.csv", 3, 2, "abc")
            );
        }
        other => panic!("wrong error {other:?}"),
    }
    assert!(e.to_string().starts_with("R.csv:3:2:"), "{e}");
    // NaN and infinity are not accepted as numbers either.
    assert!(matches!(
        parse_matrix_csv("nan\n", "R.csv"),
        Err(MetricsError::NotANumber {
            line: 1,
            column: 1,
            ..
        })
    ));
    assert!(matches!(
        parse_matrix_csv("inf\n", "R.csv"),
        Err(MetricsError::NotANumber { .. })
    ));
}

#[test]
fn ragged_row() {
    let e = parse_matrix_csv("0.9,0.1,0.1\n\n0.7,0.8\n0.1,0.1,0.1\n", "R.csv").unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::RaggedRow {
                line: 3,
                first_line: 1,
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("R.csv:3"), "{e}");
}

#[test]
fn non_square() {
    let e = parse_matrix_csv("0.9,0.1,0.1\n0.7,0.8,0.1\n", "R.csv").unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::NotSquare {
                rows: 2,
                cols: 3,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn empty_files() {
    assert!(matches!(
        parse_matrix_csv("", "R.csv"),
        Err(MetricsError::Empty { .. })
    ));
    let e = parse_matrix_csv("# only a comment\n\n   \n", "R.csv").unwrap_err();
    assert!(
        matches!(&e, MetricsError::Empty { file } if file == "R.csv"),
        "{e:?}"
    );
    assert!(matches!(
        parse_vector_csv("#x\n", "b.csv", None),
        Err(MetricsError::Empty { .. })
    ));
}

#[test]
fn percentages_get_a_hint_other_out_of_range_values_do_not() {
    let e = parse_matrix_csv("90,10\n80,85\n", "R.csv").unwrap_err();
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
        "{e:?}"
    );
    assert_eq!(e.to_string(), "R.csv:1:1: value 90 is outside [0, 1] (the values look like percentages: divide them by 100)");
    let e = parse_matrix_csv("0.9,0.1\n0.8,150\n", "R.csv").unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::OutOfRange {
                line: 2,
                column: 2,
                looks_like_percent: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.to_string().contains("percent"));
    let e = parse_matrix_csv("0.9,0.1\n-0.2,0.5\n", "R.csv").unwrap_err();
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
        "{e:?}"
    );
}

#[test]
fn vectors() {
    assert_eq!(
        parse_vector_csv("# b\n0.1, 0.2,0.3\n", "b.csv", Some(3)).unwrap(),
        vec![0.1, 0.2, 0.3]
    );
    let e = parse_vector_csv("0.1,0.2\n", "b.csv", Some(3)).unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::LengthMismatch {
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("b.csv"), "{e}");
    assert!(matches!(
        parse_vector_csv("0.1,0.2\n0.3,0.4\n", "b.csv", None),
        Err(MetricsError::ExtraLine { line: 2, .. })
    ));
    // No missing values in a vector.
    assert!(matches!(
        parse_vector_csv("0.1,NA\n", "b.csv", None),
        Err(MetricsError::NotANumber { column: 2, .. })
    ));
    let e = parse_vector_csv("10,20\n", "a.csv", Some(2)).unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::OutOfRange {
                looks_like_percent: true,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn writer_round_trip_is_exact() {
    // Values that do not print exactly with few decimals must survive the round trip.
    let r = AccuracyMatrix::from_rows(vec![
        vec![Some(0.1 + 0.2), None, None],
        vec![Some(1.0 / 3.0), Some(0.0), None],
        vec![Some(1.0), Some(2.0 / 3.0), Some(0.123456789012345)],
    ])
    .unwrap();
    let text = to_csv(&r);
    // A header row of column names, so pandas.read_csv reads it without options.
    assert!(text.starts_with("task_0,task_1,task_2\n"), "{text}");
    assert!(text.contains("NA"));
    assert_eq!(parse_matrix_csv(&text, "out.csv").unwrap(), r);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acc_matrix_knn.csv");
    write_csv(&path, &r).unwrap();
    assert_eq!(read_matrix_csv(&path).unwrap(), r);
}

#[test]
fn missing_file_names_the_path() {
    let e = read_matrix_csv(std::path::Path::new("/nonexistent/R.csv")).unwrap_err();
    assert!(matches!(e, MetricsError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/R.csv"), "{e}");
    let e = read_vector_csv(std::path::Path::new("/nonexistent/b.csv"), Some(2)).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/b.csv"), "{e}");
}

#[test]
fn a_header_row_is_read_only_before_the_data() {
    let r = parse_matrix_csv("task_0,task_1\n0.5,NA\n0.25,1\n", "h.csv").unwrap();
    assert_eq!(r.rows()[1], vec![Some(0.25), Some(1.0)]);
    assert_eq!(
        parse_vector_csv("task_0,task_1\n0.5,0.75\n", "b.csv", Some(2)).unwrap(),
        vec![0.5, 0.75]
    );
    // A line of names after the data is an error naming its line, not a second header.
    let e = parse_matrix_csv("0.5,NA\ntask_0,task_1\n", "late.csv").unwrap_err();
    assert!(
        matches!(e, MetricsError::NotANumber { line: 2, .. }),
        "{e:?}"
    );
    // `NA` alone is a missing cell, never a header.
    assert!(parse_matrix_csv("NA\n", "na.csv").is_ok());
}
