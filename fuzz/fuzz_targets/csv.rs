//! Accuracy-matrix and per-task-vector CSV readers (`kaizen metrics`).
#![no_main]
use kaizen_metrics::csv::{parse_matrix_csv, parse_vector_csv, to_csv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = parse_matrix_csv(text, "fuzz.csv") {
        // Whatever parses must write back to the same matrix.
        let again = parse_matrix_csv(&to_csv(&m), "fuzz.csv").expect("written CSV reads back");
        assert_eq!(to_csv(&m), to_csv(&again));
    }
    let _ = parse_vector_csv(text, "fuzz.csv", None);
});
