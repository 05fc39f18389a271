//! `kaizen bench` (owned by the performance work, issue 7).
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {}

pub fn run(_a: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("`kaizen bench` is not built yet")
}
