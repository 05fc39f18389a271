//! `kaizen run` and `kaizen resume`: resolve the config, build the run directory, train, report.

use crate::config::{preset_text, Resolver, PRESETS};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use clap::Args;
use kaizen_core::config::ExperimentConfig;
use kaizen_core::train::{self, RunOptions, RunStatus};
use kaizen_core::{run_dir, Registry};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `kaizen run`.
#[derive(Args, Debug)]
#[command(after_help = preset_help())]
pub struct RunArgs {
    /// Built-in preset the run starts from (see the list below).
    #[arg(long, default_value = "mini")]
    pub preset: String,
    /// TOML file merged over the preset (same keys as the run's config.toml).
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set method=simclr --set loss.classifier_distill=0`. Repeatable; applied last.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run directory (default: runs/<preset>-<strategy>-seed<seed>; with --compare runs/<preset>-compare-seed<seed>;
    /// with --seeds 1,2,3 ...-seeds1-2-3).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The one seed (class order, labels, replay, augmentation, initialisation, batch order).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Strategy: kaizen, cassle, finetune, replay (finetune + labelled replay), joint or random (same as --set strategy=...).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Run several strategies on the same stream and seed, e.g. `kaizen,cassle,finetune`; each goes to
    /// DIR/<strategy>/ and DIR/comparison.md + comparison.json put their summaries side by side. Rerunning the
    /// same command skips finished runs and resumes interrupted ones.
    #[arg(long, value_delimiter = ',', value_name = "S1,S2,...")]
    pub compare: Vec<String>,
    /// Run every seed of a list, e.g. `--seeds 1,2,3` (with or without --compare): each run goes to
    /// DIR/seed-<s>/<strategy>/, and DIR/comparison.md + comparison.json give every metric as mean ± standard
    /// deviation over the seeds with the per-seed values. Rerunning the same command skips finished runs and
    /// resumes interrupted ones.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "S1,S2,...",
        conflicts_with = "seed"
    )]
    pub seeds: Vec<u64>,
    /// Dataset: fashion-mnist-mini (built in), fashion-mnist, mnist, cifar10, cifar100, image-folder (any image
    /// sizes, streamed; see data.image_size), or hf:<owner>/<name> (a Hugging Face parquet dataset, read from the
    /// local hf cache or --data-root; downloaded with the `hub` feature).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Folder with the dataset's files (not needed for fashion-mnist-mini).
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Keep the first N training images of each class (deterministic cap for quick experiments).
    #[arg(long, value_name = "N")]
    pub train_per_class: Option<usize>,
    /// Keep the first M test images of each class.
    #[arg(long, value_name = "M")]
    pub test_per_class: Option<usize>,
    /// Device: cpu, or cuda[:N] (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bars; one line per task and the final summary only.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the resolved configuration (TOML) and exit without training.
    #[arg(long)]
    pub print_config: bool,
    /// Write every N-th step to metrics.jsonl (epochs and evaluations are always written).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub log_every: usize,
    /// Testing aid: stop (as on Ctrl-C, with a checkpoint) after this many optimiser steps.
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<u64>,
    /// Developer tool: write the classifier's inputs (features of every step, test features after every task) to
    /// this empty folder, for offline classifier studies with scripts/classifier_replay.py. Single runs only.
    #[arg(long, value_name = "DIR", hide = true)]
    pub dump_classifier_inputs: Option<PathBuf>,
}

/// Arguments of `kaizen resume`.
#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run directory to continue (the one `kaizen run --out` wrote).
    pub dir: PathBuf,
    /// Device: cpu, or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// Write every N-th step to metrics.jsonl.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub log_every: usize,
    /// Testing aid: stop again after this many optimiser steps of the run.
    #[arg(long, hide = true)]
    pub stop_after_steps: Option<u64>,
}

fn preset_help() -> String {
    let mut s = String::from("Presets:\n");
    for (name, desc, _) in PRESETS {
        s.push_str(&format!("  {name:<15} {desc}\n"));
    }
    s.push_str(
        "\nEvery config key can be set with --set; `kaizen run --print-config` shows them all with their values.",
    );
    s
}

fn resolve(a: &RunArgs) -> Result<ExperimentConfig> {
    let mut r = Resolver::new()?;
    r.merge_toml(preset_text(&a.preset)?, &format!("preset `{}`", a.preset))?;
    if let Some(path) = &a.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --config {}", path.display()))?;
        r.merge_toml(&text, &path.display().to_string())?;
    }
    if let Some(s) = a.seed {
        r.set(&format!("seed={s}"), "--seed")?;
    }
    if let Some(s) = &a.strategy {
        Registry::builtin().strategy(s)?;
        r.set(&format!("strategy=\"{s}\""), "--strategy")?;
    }
    if let Some(d) = &a.dataset {
        match d.strip_prefix("hf:") {
            Some(repo) => kaizen_data::hub::check_repo(repo),
            None => d.parse::<kaizen_data::DatasetName>().map(|_| ()),
        }
        .map_err(|e| anyhow::anyhow!("--dataset: {e}"))?;
        r.set(
            &format!("data.dataset={}", toml::Value::String(d.clone())),
            "--dataset",
        )?;
        if a.data_root.is_none() {
            r.set("data.data_root=\"\"", "--dataset")?;
        }
    }
    if let Some(p) = &a.data_root {
        let s = p.to_str().context("--data-root must be valid UTF-8")?;
        r.set(
            &format!("data.data_root={}", toml::Value::String(s.to_string())),
            "--data-root",
        )?;
    }
    if let Some(n) = a.train_per_class {
        r.set(&format!("data.train_per_class={n}"), "--train-per-class")?;
    }
    if let Some(n) = a.test_per_class {
        r.set(&format!("data.test_per_class={n}"), "--test-per-class")?;
    }
    for s in &a.set {
        r.set(s, "--set")?;
    }
    r.finish()
}

/// Parse `--device`.
pub fn device(name: &str) -> Result<candle_core::Device> {
    match name {
        "cpu" => Ok(candle_core::Device::Cpu),
        d if d == "cuda" || d.starts_with("cuda:") => {
            let idx: usize = d
                .strip_prefix("cuda:")
                .unwrap_or("0")
                .parse()
                .context("--device cuda:N needs a number")?;
            if !cfg!(feature = "cuda") {
                bail!("--device {d}: this binary was built without CUDA; rebuild with `cargo build --release -p kaizen-cli --features cuda`");
            }
            candle_core::Device::new_cuda(idx)
                .with_context(|| format!("cannot open CUDA device {idx}"))
        }
        other => bail!("unknown --device `{other}`; valid: cpu, cuda, cuda:N"),
    }
}

fn provenance() -> serde_json::Value {
    serde_json::json!({
        "kaizen_version": env!("CARGO_PKG_VERSION"),
        "git_revision": option_env!("KAIZEN_GIT_REV").unwrap_or("unknown"),
        "candle_version": "0.11.1",
        "rustc_target": std::env::consts::ARCH,
        "os": std::env::consts::OS,
    })
}

pub(crate) fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    // A second Ctrl-C while the checkpoint is written exits at once.
    ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(flag)
}

/// `kaizen run`.
pub fn run(a: RunArgs) -> Result<()> {
    let cfg = resolve(&a)?;
    if a.print_config {
        print!("{}", run_dir::config_toml(&cfg)?);
        return Ok(());
    }
    let dev = device(&a.device)?;
    let stop = stop_flag()?;
    let registry = Registry::builtin();
    let strategies: Vec<String> = a
        .compare
        .iter()
        .map(|s| Ok(registry.strategy(s.trim())?.name().to_string()))
        .collect::<Result<_>>()?;
    let mut seen = std::collections::HashSet::new();
    for s in &strategies {
        if !seen.insert(s.clone()) {
            bail!("--compare lists `{s}` twice");
        }
    }
    let mut unique_seeds = std::collections::HashSet::new();
    for s in &a.seeds {
        if !unique_seeds.insert(*s) {
            bail!("--seeds lists {s} twice");
        }
    }
    let label = if strategies.is_empty() {
        cfg.strategy.clone()
    } else {
        "compare".to_string()
    };
    let default_out = if a.seeds.is_empty() {
        format!("runs/{}-{}-seed{}", a.preset, label, cfg.seed)
    } else {
        let list: Vec<String> = a.seeds.iter().map(u64::to_string).collect();
        format!("runs/{}-{}-seeds{}", a.preset, label, list.join("-"))
    };
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(default_out));
    if a.dump_classifier_inputs.is_some() && !(strategies.is_empty() && a.seeds.is_empty()) {
        bail!("--dump-classifier-inputs works on a single run, not with --compare or --seeds");
    }
    if strategies.is_empty() && a.seeds.is_empty() {
        let mut opts = options(&out, dev, stop, a.log_every, a.stop_after_steps);
        opts.dump_classifier_inputs = a.dump_classifier_inputs.clone();
        let started = Instant::now();
        let mut sink = Progress::new(a.quiet);
        let status = train::start(cfg, &opts, &mut sink)
            .with_context(|| format!("run in {}", out.display()))?;
        sink.finish();
        report_status(&status, &out, started)?;
        return Ok(());
    }
    let strategies = if strategies.is_empty() {
        vec![cfg.strategy.clone()]
    } else {
        strategies
    };
    let names = strategies.clone();
    let started = Instant::now();
    let plan = Plan {
        strategies: &strategies,
        device: &dev,
        stop: &stop,
        args: &a,
    };
    if a.seeds.is_empty() {
        plan.run_seed(&cfg, &out)?;
        println!(
            "comparison of {} written to {} and {} ({:.1} s in all)",
            names.join(", "),
            out.join("comparison.md").display(),
            out.join("comparison.json").display(),
            started.elapsed().as_secs_f64()
        );
        return print_file(&out.join("comparison.md"));
    }
    for &seed in &a.seeds {
        let mut c = cfg.clone();
        c.seed = seed;
        plan.run_seed(&c, &kaizen_core::eval::seed_dir(&out, seed))?;
    }
    kaizen_core::eval::write_seed_comparison(&out, &a.seeds, &command_line())?;
    println!(
        "{} over seeds {} written to {} and {} ({:.1} s in all)",
        names.join(", "),
        a.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        out.join("comparison.md").display(),
        out.join("comparison.json").display(),
        started.elapsed().as_secs_f64()
    );
    print_file(&out.join("comparison.md"))
}

/// The strategies of one `--compare` / `--seeds` invocation and how to run them.
struct Plan<'a> {
    strategies: &'a [String],
    device: &'a candle_core::Device,
    stop: &'a Arc<AtomicBool>,
    args: &'a RunArgs,
}

impl Plan<'_> {
    /// Every strategy on `cfg`'s seed into `dir/<strategy>/`, then `dir/comparison.{md,json}`.
    fn run_seed(&self, cfg: &ExperimentConfig, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for s in self.strategies {
            let mut c = cfg.clone();
            c.strategy = s.clone();
            let run_dir = dir.join(s);
            let opts = options(
                &run_dir,
                self.device.clone(),
                Arc::clone(self.stop),
                self.args.log_every,
                self.args.stop_after_steps,
            );
            eprintln!("== {s}, seed {} -> {}", c.seed, run_dir.display());
            let t0 = Instant::now();
            let Some(status) = run_or_continue(c, &opts, self.args.quiet)? else {
                continue;
            };
            if let RunStatus::Interrupted { checkpoint } = status {
                return Err(Interrupted(format!(
                    "interrupted during `{s}` (seed {}), checkpoint {} written; run the same command again to \
                     continue where it stopped",
                    cfg.seed,
                    checkpoint.display()
                ))
                .into());
            }
            eprintln!("   {s} finished in {:.1} s", t0.elapsed().as_secs_f64());
        }
        let names: Vec<String> = self.strategies.to_vec();
        kaizen_core::eval::compare_run_dirs(dir, &names)?;
        Ok(())
    }
}

/// Start the run of `cfg` in `opts.dir`; if that folder already holds a run of the same configuration, skip it when
/// it finished (`None`) and resume it otherwise. A folder holding another configuration is an error.
pub(crate) fn run_or_continue(
    cfg: ExperimentConfig,
    opts: &RunOptions,
    quiet: bool,
) -> Result<Option<RunStatus>> {
    let dir = &opts.dir;
    let occupied = kaizen_core::lock::has_content(dir)?;
    let mut sink = Progress::new(quiet);
    let status = if !occupied {
        train::start(cfg, opts, &mut sink)
    } else {
        let existing = run_dir::read_config(dir)
            .with_context(|| format!("{} is not empty and holds no kaizen run", dir.display()))?;
        if run_dir::config_hash(&existing)? != run_dir::config_hash(&cfg)? {
            bail!(
                "{} holds a run of another configuration (see its config.toml): choose another --out",
                dir.display()
            );
        }
        if dir.join(run_dir::files::SUMMARY).exists() {
            eprintln!("   already finished: {}", dir.display());
            return Ok(None);
        }
        eprintln!("   continuing the interrupted run in {}", dir.display());
        train::resume(opts, &mut sink)
    };
    let status = status.with_context(|| format!("run in {}", dir.display()))?;
    sink.finish();
    Ok(Some(status))
}

/// The command line of this process, for the comparison report (arguments with spaces quoted).
fn command_line() -> String {
    std::iter::once("kaizen".to_string())
        .chain(std::env::args().skip(1))
        .map(|a| {
            if a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `kaizen resume`.
pub fn resume(a: ResumeArgs) -> Result<()> {
    let dev = device(&a.device)?;
    let stop = stop_flag()?;
    let opts = options(&a.dir, dev, stop, a.log_every, a.stop_after_steps);
    let started = Instant::now();
    let mut sink = Progress::new(a.quiet);
    let status = train::resume(&opts, &mut sink)
        .with_context(|| format!("resume of {}", a.dir.display()))?;
    sink.finish();
    report_status(&status, &a.dir, started)
}

pub(crate) fn options(
    dir: &Path,
    device: candle_core::Device,
    stop: Arc<AtomicBool>,
    log_every: usize,
    stop_after_steps: Option<u64>,
) -> RunOptions {
    RunOptions {
        dir: dir.to_path_buf(),
        device,
        stop,
        provenance: provenance(),
        log_every,
        stop_after_steps,
        dump_classifier_inputs: None,
    }
}

pub(crate) fn report_status(status: &RunStatus, dir: &Path, started: Instant) -> Result<()> {
    match status {
        RunStatus::Finished => {
            println!(
                "run finished in {:.1} s: {}",
                started.elapsed().as_secs_f64(),
                dir.join("report.md").display()
            );
            print_summary(dir)
        }
        RunStatus::Interrupted { checkpoint } => Err(Interrupted(format!(
            "stopped; checkpoint {} written. Continue with: kaizen resume {}",
            checkpoint.display(),
            dir.display()
        ))
        .into()),
    }
}

/// A run stopped on request (Ctrl-C) after writing its checkpoint: `main` prints the message and exits with 130, as
/// shells do for SIGINT, so that scripts and schedulers can tell it from a finished run (0) or an error (2).
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

fn print_summary(dir: &Path) -> Result<()> {
    let path = dir.join(run_dir::files::SUMMARY);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let fmt = |x: &serde_json::Value| x.as_f64().map_or("-".to_string(), |f| format!("{f:.3}"));
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8}",
        "protocol", "final", "avg_inc", "forget", "plast."
    );
    if let Some(p) = v.get("protocols").and_then(|p| p.as_object()) {
        for (name, s) in p {
            println!(
                "{:<16} {:>8} {:>8} {:>8} {:>8}",
                name,
                fmt(&s["final_accuracy"]),
                fmt(&s["average_incremental_accuracy"]),
                fmt(&s["forgetting"]),
                fmt(&s["plasticity"])
            );
        }
    }
    Ok(())
}

fn print_file(path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    println!("{text}");
    Ok(())
}
