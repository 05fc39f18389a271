//! Checkpoint format: one `.safetensors` file plus a JSON manifest.
//!
//! - The manifest ([`Manifest`]) is stored as JSON in the safetensors `__metadata__` under key [`MANIFEST_KEY`], and a
//!   pretty-printed copy is written next to the file as `<file>.json` (for humans; loading reads the embedded one).
//! - The manifest lists every tensor with shape, dtype and the SHA-256 of its little-endian bytes, so a load detects
//!   truncation (invalid safetensors), corruption (checksum, naming the tensor) and tampering (names/shapes/dtypes).
//! - Writes are atomic: a temporary file in the same directory, `fsync`, then `rename` (for both files).
//! - Tensor names carry role prefixes chosen by the trainer (`backbone.`, `projector.`, `target.`, `frozen.`, `optim.`, ...).
//!   The manifest `model` value is a JSON object with one entry per component; the backbone lives under `"backbone"` as
//!   a [`ResNetConfig`]: `{"backbone": {"arch": "resnet18", "width": 16, "in_channels": 3, "stem_padding": 1}}`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use safetensors::tensor::{Dtype as StDtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CandleContext, ModelError, Result};
use crate::params::sorted_vars;
use crate::resnet::ResNetConfig;

/// Value of [`Manifest::format`].
pub const FORMAT: &str = "kaizen-checkpoint";
/// Current manifest schema version; loading accepts versions up to this one.
pub const SCHEMA_VERSION: u32 = 1;
/// Key of the manifest JSON in the safetensors `__metadata__`.
pub const MANIFEST_KEY: &str = "kaizen.manifest";

/// Name-sorted tensors.
pub type NamedTensors = BTreeMap<String, Tensor>;

/// Shape, dtype and checksum of one stored tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorInfo {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// candle dtype name (`f32`, `i64`, ...).
    pub dtype: String,
    /// Hex SHA-256 of the tensor's little-endian bytes.
    pub sha256: String,
}

/// Everything a checkpoint says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Manifest schema version ([`SCHEMA_VERSION`] when written by this crate).
    pub schema_version: u32,
    /// Version of kaizen-models that wrote the file.
    pub crate_version: String,
    /// Model configuration: an object with one entry per component, `"backbone"` holding a [`ResNetConfig`].
    pub model: serde_json::Value,
    /// Every tensor of the file (filled in by [`save`]).
    pub tensors: BTreeMap<String, TensorInfo>,
    /// Run seed.
    pub seed: u64,
    /// Index of the task this checkpoint was written after (None: not a training checkpoint).
    pub task_index: Option<usize>,
    /// Class order of the stream (empty when not applicable).
    pub class_order: Vec<usize>,
    /// Hash of the resolved experiment configuration (empty when not applicable).
    pub config_hash: String,
    /// Free-form data owned by the trainer.
    pub extra: serde_json::Value,
}

impl Manifest {
    /// A manifest for `model` with seed 0, no task, no class order, empty hash and `extra = null`.
    pub fn new(model: serde_json::Value) -> Self {
        Self {
            format: FORMAT.to_string(),
            schema_version: SCHEMA_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            model,
            tensors: BTreeMap::new(),
            seed: 0,
            task_index: None,
            class_order: Vec::new(),
            config_hash: String::new(),
            extra: serde_json::Value::Null,
        }
    }

    /// A manifest whose model is `{"backbone": cfg}`.
    pub fn for_backbone(cfg: &ResNetConfig) -> Self {
        Self::new(serde_json::json!({ "backbone": cfg }))
    }

    /// The backbone configuration stored under `model.backbone`; `path` names the file in errors.
    pub fn backbone_config(&self, path: &Path) -> Result<ResNetConfig> {
        let v = self
            .model
            .get("backbone")
            .ok_or_else(|| ModelError::Manifest {
                path: path.to_path_buf(),
                reason: "model config has no `backbone` entry".into(),
            })?;
        serde_json::from_value(v.clone()).map_err(|e| ModelError::Manifest {
            path: path.to_path_buf(),
            reason: format!("model.backbone: {e}"),
        })
    }
}

/// A tensor serialised to bytes, ready for safetensors.
struct Blob {
    dtype: StDtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Blob {
    fn dtype(&self) -> StDtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Little-endian bytes of a tensor (any device, any layout) in row-major order.
pub fn tensor_bytes(t: &Tensor) -> candle_core::Result<Vec<u8>> {
    let flat = t.flatten_all()?.to_device(&Device::Cpu)?;
    Ok(match t.dtype() {
        DType::F32 => flat
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F64 => flat
            .to_vec1::<f64>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F16 => flat
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::BF16 => flat
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::I64 => flat
            .to_vec1::<i64>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::U32 => flat
            .to_vec1::<u32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::U8 => flat.to_vec1::<u8>()?,
        other => candle_core::bail!("dtype {} cannot be stored in a checkpoint", other.as_str()),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `<file>.json` path of the human-readable manifest copy.
pub fn manifest_json_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Writes `bytes` to `path` atomically: temporary file in the same directory, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |error| ModelError::Io {
        path: path.to_path_buf(),
        error,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if let Err(e) = result {
        // Best effort: do not leave the temporary file behind; the original error is what matters.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    // Persist the rename itself. Directories cannot be opened for fsync on every platform, so this is best effort.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn to_blobs(path: &Path, tensors: &NamedTensors) -> Result<Vec<(String, Blob)>> {
    tensors
        .iter()
        .map(|(name, t)| {
            let data = tensor_bytes(t)
                .with_ctx(|| format!("{}: serialising tensor `{name}`", path.display()))?;
            Ok((
                name.clone(),
                Blob {
                    dtype: StDtype::from(t.dtype()),
                    shape: t.dims().to_vec(),
                    data,
                },
            ))
        })
        .collect()
}

fn serialize(
    path: &Path,
    blobs: &[(String, Blob)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    safetensors::serialize(blobs.iter().map(|(n, b)| (n.as_str(), b)), Some(metadata)).map_err(
        |e| ModelError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("cannot serialise: {e}"),
        },
    )
}

/// Saves `tensors` with `manifest` (its `tensors` field is recomputed from the data) atomically to `path`, plus the
/// `<path>.json` copy. Returns the manifest as written.
pub fn save(path: &Path, tensors: &NamedTensors, manifest: &Manifest) -> Result<Manifest> {
    let blobs = to_blobs(path, tensors)?;
    let mut m = manifest.clone();
    m.format = FORMAT.to_string();
    m.schema_version = SCHEMA_VERSION;
    m.tensors = blobs
        .iter()
        .map(|(n, b)| {
            (
                n.clone(),
                TensorInfo {
                    shape: b.shape.clone(),
                    dtype: tensors[n].dtype().as_str().to_string(),
                    sha256: sha256_hex(&b.data),
                },
            )
        })
        .collect();
    let json = serde_json::to_string(&m).map_err(|e| ModelError::Manifest {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let pretty = serde_json::to_string_pretty(&m).map_err(|e| ModelError::Manifest {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let bytes = serialize(
        path,
        &blobs,
        HashMap::from([(MANIFEST_KEY.to_string(), json)]),
    )?;
    write_atomic(path, &bytes)?;
    write_atomic(&manifest_json_path(path), pretty.as_bytes())?;
    Ok(m)
}

/// Writes plain tensors (no manifest; metadata `{"format": "pt"}` like `safetensors.torch.save_file`) atomically:
/// the layout PyTorch tools read.
pub fn save_plain(path: &Path, tensors: &NamedTensors) -> Result<()> {
    let blobs = to_blobs(path, tensors)?;
    let bytes = serialize(
        path,
        &blobs,
        HashMap::from([("format".to_string(), "pt".to_string())]),
    )?;
    write_atomic(path, &bytes)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| ModelError::Io {
        path: path.to_path_buf(),
        error,
    })
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| ModelError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("not a valid safetensors file ({e})"),
    })
}

fn view_to_tensor(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
    device: &Device,
) -> Result<Tensor> {
    let dtype = DType::try_from(view.dtype()).map_err(|e| ModelError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("tensor `{name}`: unsupported dtype ({e})"),
    })?;
    Tensor::from_raw_buffer(view.data(), dtype, view.shape(), device)
        .with_ctx(|| format!("{}: reading tensor `{name}`", path.display()))
}

/// Reads every tensor of any safetensors file (no manifest needed): PyTorch exports, image tensors, ...
pub fn load_plain(path: &Path, device: &Device) -> Result<NamedTensors> {
    load_plain_bytes(path, &read(path)?, device)
}

/// [`load_plain`] on a file's content already in memory; `path` names it in errors.
pub fn load_plain_bytes(path: &Path, bytes: &[u8], device: &Device) -> Result<NamedTensors> {
    let st = parse(path, bytes)?;
    st.tensors()
        .iter()
        .map(|(n, v)| Ok((n.clone(), view_to_tensor(path, n, v, device)?)))
        .collect()
}

/// Loads a checkpoint written by [`save`], verifying the manifest against the file: every tensor listed and no other,
/// same shapes and dtypes, same checksums. Errors name the file and the first offending tensor.
pub fn load(path: &Path, device: &Device) -> Result<(NamedTensors, Manifest)> {
    load_bytes(path, &read(path)?, device)
}

/// [`load`] on a file's content already in memory; `path` names it in errors. Nothing in the file is executed
/// (safetensors holds only a JSON header and raw little-endian data) and no allocation exceeds the file's own
/// size: every tensor's extent is checked against the buffer before it is copied.
pub fn load_bytes(path: &Path, bytes: &[u8], device: &Device) -> Result<(NamedTensors, Manifest)> {
    let st = parse(path, bytes)?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| ModelError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(MANIFEST_KEY))
        .ok_or_else(|| ModelError::Manifest {
            path: path.to_path_buf(),
            reason: format!(
                "no `{MANIFEST_KEY}` metadata: not a kaizen checkpoint (a torchvision backbone is read with `kaizen import`)"
            ),
        })?;
    let manifest: Manifest = serde_json::from_str(json).map_err(|e| ModelError::Manifest {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if manifest.format != FORMAT || manifest.schema_version > SCHEMA_VERSION {
        return Err(ModelError::Manifest {
            path: path.to_path_buf(),
            reason: format!(
                "format `{}` schema {} is not `{FORMAT}` schema <= {SCHEMA_VERSION}",
                manifest.format, manifest.schema_version
            ),
        });
    }
    let origin = path.display().to_string();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    if let Some(missing) = manifest
        .tensors
        .keys()
        .find(|k| names.binary_search(k).is_err())
    {
        return Err(ModelError::MissingTensor {
            origin,
            name: missing.clone(),
        });
    }
    let mut out = BTreeMap::new();
    for name in &names {
        let info = manifest
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::UnexpectedTensor {
                origin: origin.clone(),
                name: name.clone(),
            })?;
        let view = st.tensor(name).map_err(|e| ModelError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("tensor `{name}`: {e}"),
        })?;
        let t = view_to_tensor(path, name, &view, device)?;
        if t.dims() != info.shape.as_slice() {
            return Err(ModelError::ShapeMismatch {
                origin,
                name: name.clone(),
                expected: info.shape.clone(),
                got: t.dims().to_vec(),
            });
        }
        if t.dtype().as_str() != info.dtype {
            return Err(ModelError::DTypeMismatch {
                origin,
                name: name.clone(),
                expected: info.dtype.clone(),
                got: t.dtype().as_str().to_string(),
            });
        }
        if sha256_hex(view.data()) != info.sha256 {
            return Err(ModelError::Checksum {
                path: path.to_path_buf(),
                name: name.clone(),
            });
        }
        out.insert(name.clone(), t);
    }
    Ok((out, manifest))
}

/// Expected `(shape, dtype)` per name.
pub type Expected = BTreeMap<String, (Vec<usize>, DType)>;

/// Compares `tensors` with what the model being built expects; the error names the first (in name order) tensor
/// that is missing, extra, or has another shape or dtype. `origin` (usually the file path) prefixes the message.
pub fn check_against(origin: &str, tensors: &NamedTensors, expected: &Expected) -> Result<()> {
    let mut names: Vec<&String> = tensors.keys().chain(expected.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        match (tensors.get(name), expected.get(name)) {
            (None, _) => {
                return Err(ModelError::MissingTensor {
                    origin: origin.into(),
                    name: name.clone(),
                })
            }
            (Some(_), None) => {
                return Err(ModelError::UnexpectedTensor {
                    origin: origin.into(),
                    name: name.clone(),
                })
            }
            (Some(t), Some((shape, dtype))) => {
                if t.dims() != shape.as_slice() {
                    return Err(ModelError::ShapeMismatch {
                        origin: origin.into(),
                        name: name.clone(),
                        expected: shape.clone(),
                        got: t.dims().to_vec(),
                    });
                }
                if t.dtype() != *dtype {
                    return Err(ModelError::DTypeMismatch {
                        origin: origin.into(),
                        name: name.clone(),
                        expected: dtype.as_str().into(),
                        got: t.dtype().as_str().into(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// What a `VarMap` expects under `prefix` (names kept in full).
pub fn expected_from_varmap(varmap: &VarMap, prefix: &str) -> Expected {
    sorted_vars(varmap)
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(n, v)| (n, (v.dims().to_vec(), v.dtype())))
        .collect()
}

/// The expected backbone tensors of `cfg` under `prefix` (f32).
pub fn expected_backbone(cfg: &ResNetConfig, prefix: &str) -> Result<Expected> {
    Ok(cfg
        .tensor_shapes()?
        .into_iter()
        .map(|(n, s)| (format!("{prefix}{n}"), (s, DType::F32)))
        .collect())
}

/// Detached views of every `VarMap` tensor under `prefix` (names kept in full), ready for [`save`].
pub fn varmap_tensors(varmap: &VarMap, prefix: &str) -> NamedTensors {
    sorted_vars(varmap)
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(n, v)| (n, v.as_detached_tensor()))
        .collect()
}

/// The tensors whose names start with `prefix`, with the prefix removed.
pub fn strip_prefix(tensors: &NamedTensors, prefix: &str) -> NamedTensors {
    tensors
        .iter()
        .filter_map(|(n, t)| {
            n.strip_prefix(prefix)
                .map(|rest| (rest.to_string(), t.clone()))
        })
        .collect()
}

/// All tensors with `prefix` prepended to their names.
pub fn add_prefix(tensors: &NamedTensors, prefix: &str) -> NamedTensors {
    tensors
        .iter()
        .map(|(n, t)| (format!("{prefix}{n}"), t.clone()))
        .collect()
}

/// Sets every `VarMap` variable under `prefix` from `tensors` (same full names) after [`check_against`] on exactly
/// that subset: tensors in `tensors` outside `prefix` are ignored, nothing is written if any check fails.
pub fn restore_varmap(
    varmap: &VarMap,
    tensors: &NamedTensors,
    prefix: &str,
    origin: &str,
) -> Result<()> {
    let subset: NamedTensors = tensors
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    check_against(origin, &subset, &expected_from_varmap(varmap, prefix))?;
    for (name, var) in sorted_vars(varmap)
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
    {
        let t = &subset[&name];
        t.to_device(var.device())
            .and_then(|t| var.set(&t))
            .with_ctx(|| format!("{origin}: restoring `{name}`"))?;
    }
    Ok(())
}
