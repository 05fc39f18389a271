//! `kaizen metrics` (owned by the kaizen-metrics work).
use clap::Args;

#[derive(Args)]
pub struct MetricsArgs {}

pub fn run(_a: MetricsArgs) -> anyhow::Result<()> {
    anyhow::bail!("`kaizen metrics` is not built yet")
}
