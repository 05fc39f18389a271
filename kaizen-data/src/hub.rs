//! CIFAR without `--data-root`: the optional hf-hub path (cargo feature `hub`, off by default).
//!
//! With the feature, `KAIZEN_HF_CIFAR_REPO` names a Hugging Face *dataset* repository that mirrors the
//! official binary archive folders (`cifar-10-batches-bin/*.bin`, `cifar-100-binary/*.bin`). The local hf-hub
//! cache is tried first; then the files are fetched. Without the feature, without that variable, or when the
//! fetch fails (offline), loading fails at once with a message that says which local folder to point
//! `--data-root` at and where to get the official tarball.

use crate::error::{DataError, Result};
use crate::name::DatasetName;
use crate::types::Dataset;

/// Environment variable naming the hf-hub dataset repository used by the `hub` feature.
pub const HUB_REPO_ENV: &str = "KAIZEN_HF_CIFAR_REPO";

fn no_root(name: DatasetName, why: &str) -> DataError {
    DataError::NeedsDataRoot {
        dataset: name.to_string(),
        hint: format!("{why}; {}", crate::cifar::hint(name)),
    }
}

/// Loads CIFAR when no `--data-root` was given: through hf-hub if the `hub` feature is on, else an error.
#[cfg(not(feature = "hub"))]
pub fn cifar_without_root(name: DatasetName) -> Result<Dataset> {
    Err(no_root(
        name,
        "this build has no hf-hub support (cargo feature `hub`), so the files must be local",
    ))
}

/// Loads CIFAR when no `--data-root` was given: through hf-hub if the `hub` feature is on, else an error.
#[cfg(feature = "hub")]
pub fn cifar_without_root(name: DatasetName) -> Result<Dataset> {
    let repo = std::env::var(HUB_REPO_ENV).map_err(|_| {
        no_root(
            name,
            &format!("set {HUB_REPO_ENV} to an hf-hub dataset repo holding the binary files, or"),
        )
    })?;
    let (dir, _) = crate::cifar::archive(name);
    let files: &[&str] = match name {
        DatasetName::Cifar100 => &["train.bin", "test.bin"],
        _ => &[
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
            "test_batch.bin",
        ],
    };
    let cache = hf_hub::Cache::from_env().dataset(repo.clone());
    let mut paths = Vec::new();
    for f in files {
        let rel = format!("{dir}/{f}");
        let p = match cache.get(&rel) {
            Some(p) => p,
            None => {
                let api = hf_hub::api::sync::ApiBuilder::from_env()
                    .with_progress(false)
                    .build()
                    .map_err(|e| no_root(name, &format!("hf-hub unavailable ({e})")))?;
                api.dataset(repo.clone()).get(&rel).map_err(|e| {
                    no_root(
                        name,
                        &format!("could not fetch {rel} from hf-hub repo {repo} ({e})"),
                    )
                })?
            }
        };
        paths.push(p);
    }
    let folder = paths
        .first()
        .and_then(|p| p.parent())
        .ok_or_else(|| no_root(name, "hf-hub returned no file"))?
        .to_path_buf();
    crate::cifar::load_cifar(name, &folder)
}
