//! Where a run's time goes: seconds per phase (`train`: the steps, waiting for batches included;
//! `eval_features`; `eval_<protocol>`; `checkpoint`; `report`), per task and for the whole attempt.

use std::collections::BTreeMap;
use std::time::Duration;

/// Seconds per phase, for the current task and in total.
#[derive(Debug, Default, Clone)]
pub(super) struct PhaseClock {
    task: BTreeMap<String, f64>,
    total: BTreeMap<String, f64>,
}

/// The order phases are reported in (others follow by name).
const ORDER: [&str; 3] = ["train", "checkpoint", "report"];

impl PhaseClock {
    /// Add `d` to phase `name`.
    pub fn add(&mut self, name: &str, d: Duration) {
        self.add_seconds(name, d.as_secs_f64());
    }

    /// Add `s` seconds to phase `name`.
    pub fn add_seconds(&mut self, name: &str, s: f64) {
        *self.task.entry(name.to_string()).or_default() += s;
        *self.total.entry(name.to_string()).or_default() += s;
    }

    /// The current task's phases (then the task clock restarts).
    pub fn take_task(&mut self) -> Vec<(String, f64)> {
        ordered(std::mem::take(&mut self.task))
    }

    /// The totals of this attempt.
    pub fn totals(&self) -> Vec<(String, f64)> {
        ordered(self.total.clone())
    }
}

/// `train` first, then the evaluation phases by name, then `checkpoint` and `report`.
fn ordered(mut m: BTreeMap<String, f64>) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some(v) = m.remove(ORDER[0]) {
        out.push((ORDER[0].to_string(), v));
    }
    let tail: Vec<(String, f64)> = ORDER[1..]
        .iter()
        .filter_map(|k| m.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    out.extend(m);
    out.extend(tail);
    out
}

/// Phases as a JSON object (seconds rounded to milliseconds).
pub(super) fn json(phases: &[(String, f64)]) -> serde_json::Value {
    serde_json::Value::Object(
        phases
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!((v * 1000.0).round() / 1000.0)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_per_task_and_in_total_in_a_fixed_order() {
        let mut c = PhaseClock::default();
        c.add_seconds("checkpoint", 0.5);
        c.add_seconds("eval_knn", 2.0);
        c.add_seconds("train", 10.0);
        c.add_seconds("train", 5.0);
        let t0 = c.take_task();
        assert_eq!(
            t0,
            [
                ("train".to_string(), 15.0),
                ("eval_knn".to_string(), 2.0),
                ("checkpoint".to_string(), 0.5)
            ]
        );
        c.add_seconds("train", 1.0);
        c.add_seconds("report", 0.25);
        assert_eq!(c.take_task().len(), 2);
        let total = c.totals();
        assert_eq!(total[0], ("train".to_string(), 16.0));
        assert_eq!(total.last(), Some(&("report".to_string(), 0.25)));
        assert_eq!(json(&total)["eval_knn"], 2.0);
    }
}
