//! Terminal view of a run: indicatif bars on a TTY, plain lines otherwise, almost nothing with `--quiet`.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kaizen_core::events::{Event, EventSink, TermValue};
use std::io::IsTerminal;

/// The CLI's [`EventSink`].
pub struct Progress {
    quiet: bool,
    tty: bool,
    multi: MultiProgress,
    tasks: Option<ProgressBar>,
    steps: Option<ProgressBar>,
}

fn terms_text(terms: &[TermValue]) -> String {
    terms
        .iter()
        .map(|t| format!("{}={:.4}", t.term, t.value))
        .collect::<Vec<_>>()
        .join(" ")
}

fn row_text(row: &[Option<f64>]) -> String {
    row.iter()
        .map(|v| v.map_or("  -  ".to_string(), |x| format!("{x:.3}")))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Progress {
    /// A view for this terminal (bars only when stderr is a TTY and not quiet).
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && !quiet;
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Self {
            quiet,
            tty,
            multi,
            tasks: None,
            steps: None,
        }
    }

    fn line(&self, s: &str) {
        if self.tty {
            let _ = self.multi.println(s);
        } else {
            eprintln!("{s}");
        }
    }

    /// Clear the bars.
    pub fn finish(&mut self) {
        if let Some(b) = self.steps.take() {
            b.finish_and_clear();
        }
        if let Some(b) = self.tasks.take() {
            b.finish_and_clear();
        }
    }
}

impl EventSink for Progress {
    fn event(&mut self, e: &Event) {
        match e {
            Event::RunStart {
                strategy,
                num_tasks,
                start_task,
                resumed,
            } => {
                if self.tty {
                    let b = self.multi.add(ProgressBar::new(*num_tasks as u64));
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>10} [{bar:20}] task {pos}/{len} {elapsed_precise}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b.set_prefix(strategy.clone());
                    b.set_position(*start_task as u64);
                    self.tasks = Some(b);
                }
                if !self.quiet {
                    let what = if *resumed { "resuming" } else { "starting" };
                    self.line(&format!(
                        "{what} `{strategy}` at task {start_task} of {num_tasks}"
                    ));
                }
            }
            Event::TaskStart {
                task,
                total_steps,
                done_steps,
                images,
            } => {
                if self.tty {
                    let b = self.multi.add(ProgressBar::new(*total_steps as u64));
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>10} [{bar:30}] {pos}/{len} steps {per_sec} eta {eta} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b.set_prefix(format!("task {task}"));
                    b.set_position(*done_steps as u64);
                    self.steps = Some(b);
                } else if !self.quiet {
                    self.line(&format!(
                        "task {task}: {images} training images, {total_steps} steps"
                    ));
                }
            }
            Event::Step {
                terms,
                images_per_s,
                ..
            } => {
                if let Some(b) = &self.steps {
                    b.set_message(format!("{} | {:.0} img/s", terms_text(terms), images_per_s));
                    b.inc(1);
                }
            }
            Event::EpochEnd {
                task,
                epoch,
                terms,
                seconds,
            } => {
                if !self.quiet {
                    self.line(&format!(
                        "task {task} epoch {epoch}: {} ({seconds:.1} s)",
                        terms_text(terms)
                    ));
                }
            }
            Event::Eval {
                task,
                protocol,
                row,
                ..
            } => {
                if !self.quiet || protocol == "classifier" {
                    self.line(&format!(
                        "after task {task} {protocol:<16} {}",
                        row_text(row)
                    ));
                }
            }
            Event::Checkpoint { .. } => {}
            Event::Timing { task, phases } => {
                let what = match task {
                    Some(t) => format!("task {t} time:"),
                    None => "time in all:".to_string(),
                };
                self.line(&format!("{what} {}", phases_text(phases)));
            }
            Event::TaskEnd { .. } => {
                if let Some(b) = self.steps.take() {
                    b.finish_and_clear();
                }
                if let Some(b) = &self.tasks {
                    b.inc(1);
                }
            }
            Event::Notice(s) => self.line(s),
        }
    }
}

/// `train 12.3 s | eval_features 0.4 s | ...` (phases over 1% of the total, the rest summed as `other`).
fn phases_text(phases: &[(String, f64)]) -> String {
    let total: f64 = phases.iter().map(|(_, s)| s).sum();
    let mut parts: Vec<String> = Vec::new();
    let mut other = 0.0;
    for (name, s) in phases {
        if *s >= 0.01 * total {
            parts.push(format!("{name} {s:.1} s"));
        } else {
            other += s;
        }
    }
    if other > 0.0 {
        parts.push(format!("other {other:.2} s"));
    }
    parts.join(" | ")
}
