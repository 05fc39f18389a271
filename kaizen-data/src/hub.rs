//! Hugging Face datasets (`hf:<owner>/<name>`, parquet files; [`load_hf`]) and CIFAR without `--data-root`.
//!
//! `hf:<repo>` is read from `--data-root` when given (a folder holding the repository's parquet files), else from
//! the local hf-hub cache (`$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`, the layout
//! `huggingface-cli download` writes: `datasets--owner--name/refs/main` -> `snapshots/<sha>/`), offline; only
//! then, with the cargo feature `hub`, downloaded into that cache. Without any of them the error says what to
//! download and where to put it.
//!
//! CIFAR without `--data-root`: the hub's parquet version (`uoft-cs/cifar10`, `uoft-cs/cifar100` with its fine
//! labels) from the local hf cache, decoded into memory (the same images and labels as the binary version).
//! Otherwise, with the cargo feature `hub` (off by default): `KAIZEN_HF_CIFAR_REPO`, if set, names a dataset
//! repository that mirrors the official binary archive folders (`cifar-10-batches-bin/*.bin`,
//! `cifar-100-binary/*.bin`), fetched through hf-hub; if not set, the parquet version is downloaded. Without the
//! feature, or when the fetch fails (offline), loading fails at once with a message that says what to download,
//! which local folder to point `--data-root` at and where to get the official tarball.

use crate::error::{DataError, Result};
use crate::name::DatasetName;
use crate::options::LoadOptions;
use crate::parquet::load_parquet_dir;
use crate::types::Dataset;
use std::path::{Path, PathBuf};

/// Environment variable naming the hf-hub dataset repository used by the `hub` feature.
pub const HUB_REPO_ENV: &str = "KAIZEN_HF_CIFAR_REPO";

fn no_root(name: DatasetName, why: &str) -> DataError {
    DataError::NeedsDataRoot {
        dataset: name.to_string(),
        hint: format!("{why}; {}", crate::cifar::hint(name)),
    }
}

/// The Hugging Face repository of a CIFAR version and its label column.
fn cifar_repo(name: DatasetName) -> (&'static str, &'static str) {
    match name {
        DatasetName::Cifar100 => ("uoft-cs/cifar100", "fine_label"),
        _ => ("uoft-cs/cifar10", "label"),
    }
}

/// CIFAR from the hub's parquet version (`uoft-cs/cifar10`, `uoft-cs/cifar100`, fine labels) in `snapshot`:
/// decoded into memory, the same images and labels as the binary version.
fn cifar_from_parquet(name: DatasetName, snapshot: &Path) -> Result<Dataset> {
    let opts = LoadOptions {
        label_column: cifar_repo(name).1.into(),
        ..LoadOptions::default()
    };
    load_parquet_dir(snapshot, name.as_str(), &opts)
}

/// Loads CIFAR when no `--data-root` was given: the hub's parquet version from the local hf cache, else (feature
/// `hub`) through hf-hub, else an error that says what to download.
#[cfg(not(feature = "hub"))]
pub fn cifar_without_root(name: DatasetName) -> Result<Dataset> {
    let repo = cifar_repo(name).0;
    if let Some(snap) = hub_cache_dir().and_then(|c| cached_snapshot(&c, repo)) {
        return cifar_from_parquet(name, &snap);
    }
    Err(no_root(
        name,
        &format!(
            "{repo} is not in the local hf cache (`huggingface-cli download --repo-type dataset {repo}`) and this \
             build has no hf-hub support (cargo feature `hub`), so the files must be local"
        ),
    ))
}

/// Loads CIFAR when no `--data-root` was given: through hf-hub if the `hub` feature is on, else an error.
#[cfg(feature = "hub")]
pub fn cifar_without_root(name: DatasetName) -> Result<Dataset> {
    let hf_repo = cifar_repo(name).0;
    if let Some(snap) = hub_cache_dir().and_then(|c| cached_snapshot(&c, hf_repo)) {
        return cifar_from_parquet(name, &snap);
    }
    let Ok(repo) = std::env::var(HUB_REPO_ENV) else {
        let snap = download(hf_repo).map_err(|e| no_root(name, &e.to_string()))?;
        return cifar_from_parquet(name, &snap);
    };
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

/// The local hf-hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hub_cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// Checks an hf-hub dataset name: `owner/name` of letters, digits, `-`, `_`, `.`.
pub fn check_repo(repo: &str) -> Result<()> {
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((o, n)) if ok(o) && ok(n) => Ok(()),
        _ => Err(DataError::config(
            "dataset",
            format!("`hf:{repo}` is not `hf:<owner>/<name>` (e.g. hf:uoft-cs/cifar100)"),
        )),
    }
}

/// The snapshot folder of dataset `repo` in the hf-hub cache `cache` that holds parquet files: the revision
/// `refs/main` points to, else the hub's automatic conversion `refs/convert/parquet`.
pub fn cached_snapshot(cache: &Path, repo: &str) -> Option<PathBuf> {
    let base = cache.join(format!("datasets--{}", repo.replace('/', "--")));
    ["refs/main", "refs/convert/parquet"].iter().find_map(|r| {
        let sha = std::fs::read_to_string(base.join(r)).ok()?;
        let snap = base.join("snapshots").join(sha.trim());
        has_parquet(&snap).then_some(snap)
    })
}

fn has_parquet(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let p = e.path();
            (p.is_dir() && has_parquet(&p)) || p.extension().is_some_and(|x| x == "parquet")
        })
    })
}

fn hf_missing(repo: &str, why: &str) -> DataError {
    let cache = hub_cache_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.cache/huggingface/hub".into());
    DataError::NeedsDataRoot {
        dataset: format!("hf:{repo}"),
        hint: format!(
            "{why}. On a machine with network: `huggingface-cli download --repo-type dataset {repo} --include \
             '*.parquet'`, then copy its cache folder datasets--{} into {cache} (or set HF_HOME / HF_HUB_CACHE), or \
             copy the parquet files into a folder and pass it as --data-root",
            repo.replace('/', "--")
        ),
    }
}

/// Loads the Hugging Face dataset `repo` (`hf:<repo>`): from `root` when given (a folder of its parquet files),
/// else from the local hf-hub cache, else (cargo feature `hub`) downloaded into that cache.
pub fn load_hf(repo: &str, root: Option<&Path>, opts: &LoadOptions) -> Result<Dataset> {
    check_repo(repo)?;
    let name = format!("hf:{repo}");
    if let Some(r) = root {
        return load_parquet_dir(r, &name, opts);
    }
    if let Some(snap) = hub_cache_dir().and_then(|c| cached_snapshot(&c, repo)) {
        return load_parquet_dir(&snap, &name, opts);
    }
    let snap = download(repo)?;
    load_parquet_dir(&snap, &name, opts)
}

#[cfg(not(feature = "hub"))]
fn download(repo: &str) -> Result<PathBuf> {
    Err(hf_missing(
        repo,
        "it is not in the local hf-hub cache, and this build cannot download (cargo feature `hub`)",
    ))
}

#[cfg(feature = "hub")]
fn download(repo: &str) -> Result<PathBuf> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| hf_missing(repo, &format!("hf-hub unavailable ({e})")))?;
    let ds = api.dataset(repo.to_string());
    let info = ds.info().map_err(|e| {
        hf_missing(
            repo,
            &format!("it is not in the local hf-hub cache and the hub cannot be reached ({e})"),
        )
    })?;
    let files: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|f| f.ends_with(".parquet"))
        .collect();
    if files.is_empty() {
        return Err(hf_missing(repo, "the repository holds no parquet file"));
    }
    let mut snapshot = None;
    for f in &files {
        let p = ds
            .get(f)
            .map_err(|e| hf_missing(repo, &format!("downloading {f} failed ({e})")))?;
        // The snapshot folder is the downloaded path minus the file's path in the repository.
        let depth = Path::new(f).components().count();
        snapshot = p.ancestors().nth(depth).map(Path::to_path_buf);
    }
    snapshot.ok_or_else(|| hf_missing(repo, "hf-hub returned no file"))
}
