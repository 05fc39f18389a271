//! `kaizen sweep`: experiment grids on any index-driven scheduler. `plan` expands a grid file into
//! `DIR/sweep.json`; `worker` runs one index of it (idempotent, resumable, signal-safe); `emit` writes the
//! Slurm array script, Kubernetes Indexed Job or local shell line that runs every index; `collect` tables the
//! results with mean ± std over seeds and lists what is missing.

pub mod collect;
pub mod emit;
pub mod plan;
pub mod worker;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `kaizen sweep` subcommands.
#[derive(Subcommand)]
pub enum SweepCommand {
    /// Expand a grid file into DIR/sweep.json (every run with its index, id, overrides, config and directory).
    Plan(PlanArgs),
    /// Run one index of a planned sweep (finished: exit 0 at once; interrupted: resume; else start).
    Worker(WorkerArgs),
    /// Write the script that runs every index: a Slurm array, a Kubernetes Indexed Job or a local shell line.
    Emit(EmitArgs),
    /// Table the results (mean ± std over seeds per cell and protocol) and the runs without results.
    Collect(CollectArgs),
}

/// Arguments of `kaizen sweep plan`.
#[derive(Args)]
pub struct PlanArgs {
    /// The grid file (TOML: preset, config, seeds, strategies, [set], [grid]); see configs/sweeps/smoke.toml.
    #[arg(long, value_name = "GRID.toml")]
    grid: PathBuf,
    /// The sweep directory (sweep.json, runs/<id>/, logs/, results.*).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Arguments of `kaizen sweep worker`.
#[derive(Args)]
pub struct WorkerArgs {
    /// The sweep directory `kaizen sweep plan` wrote.
    dir: PathBuf,
    /// The run index (default: SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or KAIZEN_INDEX, in that order).
    #[arg(long)]
    index: Option<usize>,
    /// Device: cpu, or cuda[:N] (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress bars (what schedulers' log files want).
    #[arg(long, short)]
    quiet: bool,
    /// Write every N-th step to metrics.jsonl and scalars.csv.
    #[arg(long, default_value_t = 10, value_name = "N")]
    log_every: usize,
    /// Testing aid: stop as if signalled after this many optimiser steps of the run.
    #[arg(long, hide = true)]
    stop_after_steps: Option<u64>,
}

/// What `emit` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// A Slurm job array (`sbatch DIR/sweep.slurm`).
    Slurm,
    /// A Kubernetes Indexed Job (`kubectl apply -f DIR/sweep.k8s.yaml`).
    K8s,
    /// A local `xargs -P` script (`sh DIR/sweep.sh`).
    Shell,
}

/// Arguments of `kaizen sweep emit`.
#[derive(Args)]
pub struct EmitArgs {
    /// Scheduler.
    #[arg(value_enum)]
    engine: Engine,
    /// The sweep directory `kaizen sweep plan` wrote.
    dir: PathBuf,
    /// CPUs per worker.
    #[arg(long, default_value_t = 2)]
    cpus: usize,
    /// Memory per worker (e.g. 8G).
    #[arg(long, default_value = "8G")]
    mem: String,
    /// Time limit per worker (HH:MM:SS); the worker checkpoints shortly before it and is requeued.
    #[arg(long, default_value = "04:00:00")]
    time: String,
    /// Workers at once (Slurm's `--array ...%K`, the Job's parallelism, `xargs -P`).
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// GPUs per worker (Slurm `--gres=gpu:N`, `nvidia.com/gpu`); the worker then runs with `--device cuda`.
    #[arg(long, default_value_t = 0)]
    gpus: usize,
    /// Slurm partition (default: the cluster's).
    #[arg(long, default_value = "")]
    partition: String,
    /// Seconds before the time limit at which the worker is told to checkpoint (Slurm `--signal=USR1@N`,
    /// Kubernetes' grace period).
    #[arg(long, default_value_t = 120)]
    signal_seconds: usize,
    /// Container image with the `kaizen` binary (Kubernetes).
    #[arg(long, default_value = "kaizen:latest")]
    image: String,
    /// PersistentVolumeClaim mounted at the sweep directory (Kubernetes).
    #[arg(long, default_value = "kaizen-runs")]
    pvc: String,
    /// The `kaizen` binary the workers call (default: this one's absolute path; `kaizen` for Kubernetes).
    #[arg(long)]
    kaizen: Option<String>,
}

/// Arguments of `kaizen sweep collect`.
#[derive(Args)]
pub struct CollectArgs {
    /// The sweep directory.
    dir: PathBuf,
}

/// An absolute version of `p` (schedulers start workers in another directory).
fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

/// Runs `kaizen sweep`.
pub fn run(c: SweepCommand) -> Result<()> {
    match c {
        SweepCommand::Plan(a) => {
            let sweep = plan::plan(&a.grid)?;
            let written = plan::write(&a.out, &sweep)?;
            let cells: std::collections::BTreeSet<&str> =
                sweep.runs.iter().map(|r| r.cell.as_str()).collect();
            println!(
                "{} {} runs ({} cells x {} seeds) in {}",
                if written { "planned" } else { "unchanged:" },
                sweep.runs.len(),
                cells.len(),
                sweep.seeds.len(),
                a.out.join(plan::SWEEP_FILE).display()
            );
            for r in &sweep.runs {
                println!("  {:>4}  {}  {}  seed {}", r.index, r.id, r.cell, r.seed);
            }
            Ok(())
        }
        SweepCommand::Worker(a) => {
            let index = worker::index(a.index, |v| std::env::var(v).ok())?;
            let opts = worker::WorkerOptions {
                device: &a.device,
                quiet: a.quiet,
                log_every: a.log_every,
                stop_after_steps: a.stop_after_steps,
            };
            worker::run(&a.dir, index, &opts)
        }
        SweepCommand::Emit(a) => emit_script(a),
        SweepCommand::Collect(a) => {
            let sweep = plan::read(&a.dir)?;
            let results = collect::collect(&a.dir, &sweep)?;
            collect::write(&a.dir, &results)?;
            print!("{}", collect::markdown(&results, &a.dir));
            println!(
                "\nwritten: {} (and results.json, results.csv)",
                a.dir.join("results.md").display()
            );
            Ok(())
        }
    }
}

fn emit_script(a: EmitArgs) -> Result<()> {
    let sweep = plan::read(&a.dir)?;
    let dir = absolute(&a.dir)?;
    let kaizen = match (&a.kaizen, a.engine) {
        (Some(k), _) => k.clone(),
        (None, Engine::K8s) => "kaizen".into(),
        (None, _) => std::env::current_exe()
            .context("cannot find this binary's path: give --kaizen")?
            .display()
            .to_string(),
    };
    let r = emit::Resources {
        cpus: a.cpus,
        mem: a.mem,
        time: a.time,
        parallel: a.parallel,
        gpus: a.gpus,
        partition: a.partition,
        signal_seconds: a.signal_seconds,
        image: a.image,
        pvc: a.pvc,
    };
    let n = sweep.runs.len();
    let (name, text, how) = match a.engine {
        Engine::Slurm => ("sweep.slurm", emit::slurm(&kaizen, &dir, n, &r), "sbatch"),
        Engine::K8s => (
            "sweep.k8s.yaml",
            emit::k8s(&kaizen, &dir, n, &r),
            "kubectl apply -f",
        ),
        Engine::Shell => ("sweep.sh", emit::shell(&kaizen, &dir, n, &r), "sh"),
    };
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create {}", dir.join("logs").display()))?;
    let path = dir.join(name);
    kaizen_core::run_dir::write_atomic(&path, text.as_bytes())?;
    println!(
        "wrote {} ({n} runs); submit with: {how} {}",
        path.display(),
        path.display()
    );
    Ok(())
}
