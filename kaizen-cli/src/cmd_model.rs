//! `kaizen export | import | features | init-model` (owned by the kaizen-models work).
use clap::Args;

#[derive(Args)]
pub struct ExportArgs {}
#[derive(Args)]
pub struct ImportArgs {}
#[derive(Args)]
pub struct FeaturesArgs {}
#[derive(Args)]
pub struct InitModelArgs {}

pub fn export(_a: ExportArgs) -> anyhow::Result<()> {
    anyhow::bail!("`kaizen export` is not built yet")
}
pub fn import(_a: ImportArgs) -> anyhow::Result<()> {
    anyhow::bail!("`kaizen import` is not built yet")
}
pub fn features(_a: FeaturesArgs) -> anyhow::Result<()> {
    anyhow::bail!("`kaizen features` is not built yet")
}
pub fn init_model(_a: InitModelArgs) -> anyhow::Result<()> {
    anyhow::bail!("`kaizen init-model` is not built yet")
}
