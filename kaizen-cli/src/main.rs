//! `kaizen`: the command-line front end of kaizen-rs. Libraries do the work; this crate is glue.
// Doc comments here are clap's help texts, printed verbatim by `--help` (`runs/<preset>`, `cuda[:N]`), not
// rustdoc markup.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

mod cmd_bench;
mod cmd_data;
mod cmd_metrics;
mod cmd_model;
mod cmd_run;
mod config;
mod progress;
mod sweep;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Kaizen: practical self-supervised continual learning with continual fine-tuning.
#[derive(Parser)]
#[command(name = "kaizen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a continual-learning run (or several strategies with --compare).
    Run(Box<cmd_run::RunArgs>),
    /// Continue an interrupted run from its last checkpoint.
    Resume(cmd_run::ResumeArgs),
    /// Inspect datasets.
    #[command(subcommand)]
    Data(cmd_data::DataCommand),
    /// Compute continual-learning metrics from an accuracy matrix (CSV).
    Metrics(cmd_metrics::MetricsArgs),
    /// Export a checkpoint's backbone with torchvision tensor names.
    Export(cmd_model::ExportArgs),
    /// Import a PyTorch (torchvision-named) backbone into a kaizen checkpoint.
    Import(cmd_model::ImportArgs),
    /// Run a checkpoint's backbone in eval mode on an image tensor and write the features.
    Features(cmd_model::FeaturesArgs),
    /// Write a freshly initialised model checkpoint.
    InitModel(cmd_model::InitModelArgs),
    /// Time training steps (compare with ../shared/tools/torch_reference.py).
    Bench(cmd_bench::BenchArgs),
    /// Experiment grids on Slurm, Kubernetes or a local shell: plan, worker, emit, collect.
    #[command(subcommand)]
    Sweep(sweep::SweepCommand),
}

fn main() -> ExitCode {
    // candle's element-wise CPU pool spin-waits; one thread for it is as fast on a quiet machine and much faster
    // under load (measured). The heavy kernels (conv, BN, gemm) use rayon's pool. Respect a user's choice.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // candle looks the thread count up on every matmul; without RAYON_NUM_THREADS that lookup
    // reads /proc/cpuinfo (measured: ~3% of a w16 training step in the kernel's cpuinfo code).
    // Resolve it once, here, to the same value candle would pick.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    // KAIZEN_KERNELS=reference runs every layer through candle's own ops instead of the fast CPU
    // kernels (A/B checks of a whole run; several times slower).
    if std::env::var("KAIZEN_KERNELS").is_ok_and(|v| v == "reference") {
        kaizen_models::ops::set_fast_kernels(false);
    }
    let cli = Cli::parse();
    // The command runs on a thread of the kernels' pool, which then shares each kernel's work with
    // it instead of being woken for every kernel call (`ops::on_kernel_pool`).
    let result = kaizen_models::ops::on_kernel_pool(move || match cli.command {
        Command::Run(a) => cmd_run::run(*a),
        Command::Resume(a) => cmd_run::resume(a),
        Command::Data(a) => cmd_data::run(a),
        Command::Metrics(a) => cmd_metrics::run(a),
        Command::Export(a) => cmd_model::export(a),
        Command::Import(a) => cmd_model::import(a),
        Command::Features(a) => cmd_model::features(a),
        Command::InitModel(a) => cmd_model::init_model(a),
        Command::Bench(a) => cmd_bench::run(a),
        Command::Sweep(c) => sweep::run(c),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<cmd_run::Interrupted>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
