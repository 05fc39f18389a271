//! `kaizen sweep worker`: runs one cell of a planned sweep, idempotently. The index comes from `--index`, else
//! `SLURM_ARRAY_TASK_ID` (Slurm arrays), `JOB_COMPLETION_INDEX` (Kubernetes Indexed Jobs) or `KAIZEN_INDEX`. A
//! finished run exits 0 at once; an interrupted one resumes from its checkpoint; a fresh one starts. SIGTERM,
//! SIGUSR1 (Slurm's warning before the time limit, `--signal=USR1@...`) and SIGINT make it checkpoint at the next
//! step and exit 130, so that a requeued task resumes where it stopped.

use super::plan::{self, PlannedRun};
use crate::cmd_run::{device, options, report_status, run_or_continue};
use anyhow::{bail, Context, Result};
use kaizen_core::run_dir::files;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// The environment variables that carry a worker's index, in the order they are read.
pub const INDEX_VARS: [&str; 3] = [
    "SLURM_ARRAY_TASK_ID",
    "JOB_COMPLETION_INDEX",
    "KAIZEN_INDEX",
];

/// The worker's index: `flag`, else the first of [`INDEX_VARS`] that `env` has.
pub fn index(flag: Option<usize>, env: impl Fn(&str) -> Option<String>) -> Result<usize> {
    if let Some(i) = flag {
        return Ok(i);
    }
    for var in INDEX_VARS {
        if let Some(v) = env(var) {
            return v
                .trim()
                .parse()
                .with_context(|| format!("{var}={v:?} is not a run index"));
        }
    }
    bail!(
        "no run index: give --index I, or run under a scheduler that sets one of {}",
        INDEX_VARS.join(", ")
    )
}

/// A flag set by SIGTERM, SIGUSR1 or SIGINT (a second SIGINT or SIGTERM exits at once with 130).
#[cfg(unix)]
fn signal_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let flag = Arc::new(AtomicBool::new(false));
    // The conditional exits first, so that only a second signal (the flag already set) ends the process.
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))
            .context("cannot install a signal handler")?;
    }
    for sig in [SIGINT, SIGTERM, SIGUSR1] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("cannot install a signal handler")?;
    }
    Ok(flag)
}

/// Ctrl-C only where there are no POSIX signals.
#[cfg(not(unix))]
fn signal_flag() -> Result<Arc<AtomicBool>> {
    crate::cmd_run::stop_flag()
}

/// What a worker does with its run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `summary.json` exists: nothing to do.
    Done,
    /// A run was started there: resume it.
    Resume,
    /// Nothing yet: start the run.
    Start,
}

/// The action for run directory `dir`.
pub fn action(dir: &Path) -> Action {
    if dir.join(files::SUMMARY).exists() {
        Action::Done
    } else if dir.join(files::CONFIG).exists() {
        Action::Resume
    } else {
        Action::Start
    }
}

/// Arguments of one worker.
pub struct WorkerOptions<'a> {
    /// Device name (`cpu`, `cuda[:N]`).
    pub device: &'a str,
    /// No progress bars.
    pub quiet: bool,
    /// Step-log cadence of `metrics.jsonl`.
    pub log_every: usize,
    /// Testing aid: stop as if signalled after this many steps.
    pub stop_after_steps: Option<u64>,
}

/// Run cell `index` of the sweep in `dir`.
pub fn run(dir: &Path, index: usize, w: &WorkerOptions<'_>) -> Result<()> {
    let sweep = plan::read(dir)?;
    let Some(run) = sweep.runs.get(index) else {
        bail!(
            "run index {index} is out of range: {} plans runs 0..{}",
            dir.join(plan::SWEEP_FILE).display(),
            sweep.runs.len()
        );
    };
    let run_dir = dir.join(&run.dir);
    let what = describe(run);
    let act = action(&run_dir);
    if act == Action::Done {
        println!(
            "run {index} ({what}) already finished: {}",
            run_dir.display()
        );
        return Ok(());
    }
    let verb = if act == Action::Resume {
        "resuming"
    } else {
        "starting"
    };
    println!("run {index} ({what}): {verb} {}", run_dir.display());
    let dev = device(w.device)?;
    let opts = options(
        &run_dir,
        dev,
        signal_flag()?,
        w.log_every,
        w.stop_after_steps,
    );
    let started = Instant::now();
    // The same start / skip / resume logic as `kaizen run --compare --seeds` (it also refuses a directory that
    // holds a run of another configuration).
    let status = run_or_continue(run.config.clone(), &opts, w.quiet)
        .with_context(|| format!("run {index} ({what})"))?;
    match status {
        Some(status) => report_status(&status, &run_dir, started),
        None => Ok(()),
    }
}

/// `id, cell, seed` of a run, for messages.
fn describe(run: &PlannedRun) -> String {
    format!("id {}, {}, seed {}", run.id, run.cell, run.seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_index_comes_from_the_flag_then_each_scheduler_variable() {
        assert_eq!(
            index(Some(7), env(&[("SLURM_ARRAY_TASK_ID", "3")])).unwrap(),
            7
        );
        assert_eq!(
            index(None, env(&[("SLURM_ARRAY_TASK_ID", "3")])).unwrap(),
            3
        );
        assert_eq!(
            index(None, env(&[("JOB_COMPLETION_INDEX", "4")])).unwrap(),
            4
        );
        assert_eq!(index(None, env(&[("KAIZEN_INDEX", " 5\n")])).unwrap(), 5);
        let both = [("KAIZEN_INDEX", "5"), ("SLURM_ARRAY_TASK_ID", "2")];
        assert_eq!(index(None, env(&both)).unwrap(), 2, "Slurm's first");
        let err = index(None, env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("--index") && err.contains("JOB_COMPLETION_INDEX"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            index(None, env(&[("KAIZEN_INDEX", "x")])).unwrap_err()
        );
        assert!(err.contains("KAIZEN_INDEX"), "{err}");
    }

    #[test]
    fn a_run_directory_says_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("run");
        assert_eq!(action(&dir), Action::Start);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(files::CONFIG), "").unwrap();
        assert_eq!(action(&dir), Action::Resume);
        std::fs::write(dir.join(files::SUMMARY), "{}").unwrap();
        assert_eq!(action(&dir), Action::Done);
    }
}
