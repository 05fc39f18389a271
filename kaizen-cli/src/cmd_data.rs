//! `kaizen data ...` (owned by the kaizen-data work).
use clap::Subcommand;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Print per-split and per-class image counts of a dataset.
    Inspect,
}

pub fn run(_cmd: DataCommand) -> anyhow::Result<()> {
    anyhow::bail!("`kaizen data` is not built yet")
}
