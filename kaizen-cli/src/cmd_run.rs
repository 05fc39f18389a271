//! `kaizen run` and `kaizen resume` (the trainer, issue 6).
use clap::Args;

#[derive(Args)]
pub struct RunArgs {}
#[derive(Args)]
pub struct ResumeArgs {}

pub fn run(_a: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("training is not built yet (issue 6)")
}
pub fn resume(_a: ResumeArgs) -> anyhow::Result<()> {
    anyhow::bail!("resume is not built yet (issue 6)")
}
