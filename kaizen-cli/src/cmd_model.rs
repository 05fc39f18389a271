//! `kaizen export | import | features | init-model`: moving backbones between kaizen checkpoints, PyTorch and feature
//! files. All work is done by `kaizen_models`; this module only parses flags, picks the CPU device and adds context.
//!
//! Model checkpoints hold the backbone under `backbone.` (the trainer's under `online.backbone.`) and the manifest's
//! model config `{"backbone": {"arch": "resnet18", "width": W, "in_channels": C, "stem_padding": P}}`; any other
//! tensors (`online.projector.`, `method.target.`, `frozen.`, `optim.`, ...) written by the trainer are ignored here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Args;
use kaizen_models::checkpoint::{self, Manifest, NamedTensors};
use kaizen_models::torchvision::{export_backbone, import_backbone, BACKBONE_PREFIX};
use kaizen_models::{init, Arch, BnMode, ResNet, ResNetConfig};

/// `kaizen export`: write a checkpoint's backbone with torchvision tensor names.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Kaizen checkpoint: a backbone checkpoint (`init-model`, `import`), any checkpoint a run writes
    /// (`checkpoints/latest.safetensors`, `checkpoints/task_N.safetensors`), or a run directory (its final model).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output .safetensors file: torchvision names (`conv1.weight`, `bn1.running_mean`, ...), running statistics and
    /// int64 `num_batches_tracked` included, no `fc`; loads with PyTorch `load_state_dict(strict=True)`.
    #[arg(long)]
    pub out: PathBuf,
}

/// `kaizen import`: read a PyTorch (torchvision-named) backbone into a kaizen checkpoint.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// PyTorch backbone `state_dict` saved as .safetensors (`fc.*` and `num_batches_tracked` are ignored; a leading
    /// `backbone.` or `module.` on every name is stripped).
    #[arg(long)]
    pub torch_backbone: PathBuf,
    /// Backbone architecture: resnet18 (CIFAR stem) or resnet18_imagenet (torchvision's 7x7 stem + max-pool).
    #[arg(long, default_value = "resnet18")]
    pub arch: Arch,
    /// Width of the first stage (64 for torchvision's resnet18).
    #[arg(long)]
    pub width: usize,
    /// Input channels (3 for CIFAR, 1 for Fashion-MNIST).
    #[arg(long, default_value_t = 3)]
    pub in_channels: usize,
    /// Padding of the 3x3 stem convolution.
    #[arg(long, default_value_t = 1)]
    pub stem_padding: usize,
    /// Output kaizen checkpoint.
    #[arg(long)]
    pub out: PathBuf,
}

/// `kaizen features`: run a checkpoint's backbone in eval mode on an image tensor.
#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// Kaizen checkpoint: a backbone checkpoint, any checkpoint a run writes, or a run directory (its final model).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// .safetensors file with a float32 tensor `images` of shape [N, C, H, W] (normalised as for training).
    #[arg(long)]
    pub input: PathBuf,
    /// Output .safetensors file with a float32 tensor `features` of shape [N, 8 * width].
    #[arg(long)]
    pub out: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

/// `kaizen init-model`: write a freshly initialised backbone checkpoint.
#[derive(Args, Debug)]
pub struct InitModelArgs {
    /// Backbone architecture: resnet18 (CIFAR stem) or resnet18_imagenet (torchvision's 7x7 stem + max-pool).
    #[arg(long, default_value = "resnet18")]
    pub arch: Arch,
    /// Width of the first stage (the paper uses 64).
    #[arg(long)]
    pub width: usize,
    /// Input channels (3 for CIFAR, 1 for Fashion-MNIST).
    #[arg(long, default_value_t = 3)]
    pub in_channels: usize,
    /// Padding of the 3x3 stem convolution.
    #[arg(long, default_value_t = 1)]
    pub stem_padding: usize,
    /// Initialisation seed (PyTorch default scheme, see `kaizen_models::init`).
    #[arg(long)]
    pub seed: u64,
    /// Output kaizen checkpoint.
    #[arg(long)]
    pub out: PathBuf,
}

/// The checkpoint a `--checkpoint` argument names: the file itself, or for a run directory its newest checkpoint
/// (`checkpoints/latest.safetensors`: the final model once the run has finished).
fn resolve_checkpoint(path: &Path) -> Result<PathBuf> {
    use kaizen_core::run_dir::files;
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let latest = path.join(files::CHECKPOINTS).join(files::LATEST);
    if !latest.is_file() {
        bail!(
            "{} is a folder without checkpoints/latest.safetensors: give a checkpoint file or a kaizen run directory",
            path.display()
        );
    }
    Ok(latest)
}

/// A checkpoint's backbone tensors under `backbone.` and its backbone config. Takes backbone-only checkpoints
/// (`init-model`, `import`) and the trainer's checkpoints, whose online model is stored under `online.` (the
/// momentum target and the frozen model are ignored), or a run directory (see [`resolve_checkpoint`]).
fn load_backbone(path: &Path) -> Result<(NamedTensors, ResNetConfig, PathBuf)> {
    let file = resolve_checkpoint(path)?;
    let (mut tensors, manifest) = checkpoint::load(&file, &Device::Cpu)
        .with_context(|| format!("reading checkpoint {}", file.display()))?;
    let online = format!("online.{BACKBONE_PREFIX}");
    if !tensors.keys().any(|k| k.starts_with(BACKBONE_PREFIX))
        && tensors.keys().any(|k| k.starts_with(&online))
    {
        tensors = tensors
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("online.").map(|k| (k.to_string(), v)))
            .collect();
    }
    let cfg = manifest
        .backbone_config(&file)
        .with_context(|| format!("reading the backbone config of {}", file.display()))?;
    Ok((tensors, cfg, file))
}

/// Runs `kaizen export`.
pub fn export(a: ExportArgs) -> Result<()> {
    let (tensors, cfg, file) = load_backbone(&a.checkpoint)?;
    let tv = export_backbone(&tensors, &cfg, &file.display().to_string())
        .with_context(|| format!("exporting the backbone of {}", file.display()))?;
    checkpoint::save_plain(&a.out, &tv).with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} ({} tensors, {} width {})",
        a.out.display(),
        tv.len(),
        cfg.arch,
        cfg.width
    );
    Ok(())
}

/// Runs `kaizen import`.
pub fn import(a: ImportArgs) -> Result<()> {
    let cfg = ResNetConfig {
        arch: a.arch,
        width: a.width,
        in_channels: a.in_channels,
        stem_padding: a.stem_padding,
    };
    cfg.validate()?;
    let src = &a.torch_backbone;
    let torch = checkpoint::load_plain(src, &Device::Cpu)
        .with_context(|| format!("reading PyTorch backbone {}", src.display()))?;
    let tensors = import_backbone(&torch, &cfg, &src.display().to_string()).with_context(|| {
        format!(
            "importing {} as {} width {} in_channels {}",
            src.display(),
            cfg.arch,
            cfg.width,
            cfg.in_channels
        )
    })?;
    let mut manifest = Manifest::for_backbone(&cfg);
    manifest.extra = serde_json::json!({ "imported_from": src.display().to_string() });
    checkpoint::save(&a.out, &tensors, &manifest)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!("wrote {} ({} tensors)", a.out.display(), tensors.len());
    Ok(())
}

/// Eval-mode features of `images` `[N, C, H, W]` f32 through the backbone stored in `tensors` (`backbone.*`).
pub fn backbone_features(
    tensors: &NamedTensors,
    cfg: &ResNetConfig,
    images: &Tensor,
    batch_size: usize,
    origin: &str,
) -> Result<Tensor> {
    let bb = checkpoint::strip_prefix(tensors, BACKBONE_PREFIX);
    checkpoint::check_against(origin, &bb, &checkpoint::expected_backbone(cfg, "")?)?;
    let net = ResNet::new(
        cfg,
        VarBuilder::from_tensors(bb.into_iter().collect(), DType::F32, &Device::Cpu),
    )?;
    let n = images.dim(0)?;
    let mut parts = Vec::new();
    let bs = batch_size.max(1);
    let mut start = 0;
    while start < n {
        let len = bs.min(n - start);
        parts.push(net.forward(&images.narrow(0, start, len)?, BnMode::Eval)?);
        start += len;
    }
    if parts.is_empty() {
        return Ok(Tensor::zeros((0, cfg.out_dim()), DType::F32, &Device::Cpu)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// Runs `kaizen features`.
pub fn features(a: FeaturesArgs) -> Result<()> {
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let (tensors, cfg, file) = load_backbone(&a.checkpoint)?;
    let input = checkpoint::load_plain(&a.input, &Device::Cpu)
        .with_context(|| format!("reading images {}", a.input.display()))?;
    let Some(images) = input.get("images") else {
        bail!(
            "{}: no tensor `images` (found: {})",
            a.input.display(),
            input.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    };
    if images.dtype() != DType::F32 {
        bail!(
            "{}: `images` has dtype {}, expected f32",
            a.input.display(),
            images.dtype().as_str()
        );
    }
    let dims = images.dims();
    if dims.len() != 4 || dims[1] != cfg.in_channels {
        bail!(
            "{}: `images` has shape {:?}, expected [N, {}, H, W] for the backbone of {}",
            a.input.display(),
            dims,
            cfg.in_channels,
            file.display()
        );
    }
    let feats = backbone_features(
        &tensors,
        &cfg,
        images,
        a.batch_size,
        &file.display().to_string(),
    )
    .with_context(|| format!("computing features with {}", file.display()))?;
    let out = BTreeMap::from([("features".to_string(), feats.clone())]);
    checkpoint::save_plain(&a.out, &out).with_context(|| format!("writing {}", a.out.display()))?;
    println!("wrote {} (features {:?})", a.out.display(), feats.dims());
    Ok(())
}

/// Builds and initialises a backbone-only checkpoint's tensors (`backbone.*`) and manifest.
pub fn init_backbone(cfg: &ResNetConfig, seed: u64) -> Result<(NamedTensors, Manifest)> {
    let vm = VarMap::new();
    ResNet::new(
        cfg,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu).pp("backbone"),
    )?;
    init::init_vars(&vm, seed)?;
    let mut manifest = Manifest::for_backbone(cfg);
    manifest.seed = seed;
    Ok((checkpoint::varmap_tensors(&vm, ""), manifest))
}

/// Runs `kaizen init-model`.
pub fn init_model(a: InitModelArgs) -> Result<()> {
    let cfg = ResNetConfig {
        arch: a.arch,
        width: a.width,
        in_channels: a.in_channels,
        stem_padding: a.stem_padding,
    };
    let (tensors, manifest) = init_backbone(&cfg, a.seed)?;
    checkpoint::save(&a.out, &tensors, &manifest)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} ({} width {}, in_channels {}, seed {}, {} tensors)",
        a.out.display(),
        cfg.arch,
        cfg.width,
        cfg.in_channels,
        a.seed,
        tensors.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(n: usize, c: usize, hw: usize) -> Result<Tensor> {
        let v: Vec<f32> = (0..n * c * hw * hw)
            .map(|i| (i as f32 * 0.173).sin())
            .collect();
        Ok(Tensor::from_vec(v, (n, c, hw, hw), &Device::Cpu)?)
    }

    fn read(path: &Path, key: &str) -> Result<Vec<f32>> {
        Ok(checkpoint::load_plain(path, &Device::Cpu)?[key]
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    /// init-model -> export -> import -> features gives the same features as the original checkpoint, batched or not.
    #[test]
    fn init_export_import_features_round_trip() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let p = |n: &str| dir.path().join(n);
        init_model(InitModelArgs {
            arch: Arch::ResNet18,
            width: 2,
            in_channels: 1,
            stem_padding: 1,
            seed: 3,
            out: p("init.safetensors"),
        })?;
        assert!(p("init.safetensors.json").exists());
        export(ExportArgs {
            checkpoint: p("init.safetensors"),
            out: p("tv.safetensors"),
        })?;
        import(ImportArgs {
            torch_backbone: p("tv.safetensors"),
            arch: Arch::ResNet18,
            width: 2,
            in_channels: 1,
            stem_padding: 1,
            out: p("back.safetensors"),
        })?;
        let imgs = BTreeMap::from([("images".to_string(), images(5, 1, 8)?)]);
        checkpoint::save_plain(&p("imgs.safetensors"), &imgs)?;
        for (ckpt, bs, out) in [
            ("init.safetensors", 256, "f1.safetensors"),
            ("back.safetensors", 2, "f2.safetensors"),
        ] {
            features(FeaturesArgs {
                checkpoint: p(ckpt),
                input: p("imgs.safetensors"),
                out: p(out),
                batch_size: bs,
            })?;
        }
        let f1 = read(&p("f1.safetensors"), "features")?;
        assert_eq!(f1.len(), 5 * 16);
        // Same features whatever the batch size, up to rounding: the convolution groups samples
        // into one gemm per group, and the gemm's blocking (hence summation order) depends on the
        // group's width, so batch 5 and batch 2 may differ in the last bits.
        let f2 = read(&p("f2.safetensors"), "features")?;
        let scale = f1.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in f1.iter().zip(&f2) {
            assert!((a - b).abs() <= 1e-5 * scale, "features differ: {a} vs {b}");
        }
        assert!(f1.iter().any(|v| *v != 0.0));

        // wrong channel count and missing key are clear errors naming the input file
        let bad = BTreeMap::from([("images".to_string(), images(2, 3, 8)?)]);
        checkpoint::save_plain(&p("bad.safetensors"), &bad)?;
        let err = features(FeaturesArgs {
            checkpoint: p("init.safetensors"),
            input: p("bad.safetensors"),
            out: p("f3.safetensors"),
            batch_size: 4,
        })
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
        assert!(
            err.contains("bad.safetensors") && err.contains("[N, 1, H, W]"),
            "{err}"
        );
        let err = features(FeaturesArgs {
            checkpoint: p("init.safetensors"),
            input: p("tv.safetensors"),
            out: p("f3.safetensors"),
            batch_size: 4,
        })
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
        assert!(err.contains("no tensor `images`"), "{err}");
        // importing with the wrong width names the file and the first mismatching tensor
        let err = import(ImportArgs {
            torch_backbone: p("tv.safetensors"),
            arch: Arch::ResNet18,
            width: 4,
            in_channels: 1,
            stem_padding: 1,
            out: p("x.safetensors"),
        })
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
        assert!(
            err.contains("tv.safetensors") && err.contains("bn1.bias"),
            "{err}"
        );
        Ok(())
    }
}
