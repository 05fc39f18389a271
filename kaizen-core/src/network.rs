//! The networks a run trains: the online model (backbone + SSL heads + classifier + distillation
//! predictor, one `VarMap`), and the frozen previous-task model rebuilt from a tensor snapshot.
//!
//! Tensor names carry a role prefix: `backbone.` (torchvision names below it), `projector.`,
//! `predictor.`, `classifier.`, `distill_predictor.`. The momentum target of a method uses the same
//! names in its own `VarMap`, so the EMA pairs tensors by name.

use crate::config::ExperimentConfig;
use crate::error::CoreError;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use kaizen_models::{BnMode, Layer, Mlp, MlpConfig, ResNet, ResNetConfig};
use std::collections::HashMap;

/// Prefixes of the online model's parts, as stored in the `VarMap` and in checkpoints.
pub mod prefix {
    /// The feature extractor f.
    pub const BACKBONE: &str = "backbone";
    /// The SSL projector.
    pub const PROJECTOR: &str = "projector";
    /// The SSL predictor (BYOL, SimSiam).
    pub const PREDICTOR: &str = "predictor";
    /// The classifier g.
    pub const CLASSIFIER: &str = "classifier";
    /// The CaSSLe distillation predictor h.
    pub const DISTILL_PREDICTOR: &str = "distill_predictor";
}

/// Shape of a method's projector: hidden layers (each Linear-BN?-ReLU) before the output layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectorShape {
    /// Hidden layers (1: Linear-BN-ReLU-Linear).
    pub hidden_layers: usize,
    /// BatchNorm after each hidden linear layer.
    pub batch_norm: bool,
}

/// The SSL heads a method needs on top of the backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// The projector's shape.
    pub projector: ProjectorShape,
    /// Whether a predictor follows the projector (BYOL, SimSiam).
    pub predictor: bool,
}

/// Sizes of every part, resolved from the config, the dataset and the method.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkSpec {
    /// Backbone.
    pub backbone: ResNetConfig,
    /// Projector.
    pub projector: MlpConfig,
    /// Predictor, for the methods that have one.
    pub predictor: Option<MlpConfig>,
    /// Classifier over all classes of the stream.
    pub classifier: MlpConfig,
    /// Distillation predictor (projection space to projection space).
    pub distill_predictor: MlpConfig,
}

impl NetworkSpec {
    /// Resolve the sizes of one run: the config's widths, the method's `heads` (the projector shapes of the
    /// released scripts, see each method's file), the dataset's channels and classes.
    pub fn new(
        cfg: &ExperimentConfig,
        heads: Heads,
        in_channels: usize,
        num_classes: usize,
    ) -> Result<Self, CoreError> {
        let m = &cfg.model;
        let backbone = ResNetConfig {
            arch: m.arch.parse()?,
            width: m.width,
            in_channels,
            stem_padding: m.stem_padding,
        };
        let feat = 8 * m.width;
        let projector = MlpConfig {
            in_dim: feat,
            hidden: m.proj_hidden,
            out_dim: m.proj_out,
            hidden_layers: heads.projector.hidden_layers,
            batch_norm: heads.projector.batch_norm,
            input_norm: false,
        };
        let predictor = heads.predictor.then_some(MlpConfig {
            in_dim: m.proj_out,
            hidden: m.pred_hidden,
            out_dim: m.proj_out,
            hidden_layers: 1,
            batch_norm: true,
            input_norm: false,
        });
        // The official `MultiLayerClassifier`: Linear-ReLU-Linear, no BatchNorm; with `classifier_input_norm`, its
        // input (the detached features) is first standardised.
        let classifier = MlpConfig {
            in_dim: feat,
            hidden: m.classifier_hidden,
            out_dim: num_classes,
            hidden_layers: 1,
            batch_norm: false,
            input_norm: m.classifier_input_norm,
        };
        let distill_predictor = MlpConfig {
            in_dim: m.proj_out,
            hidden: m.distill_hidden,
            out_dim: m.proj_out,
            hidden_layers: 1,
            batch_norm: true,
            input_norm: false,
        };
        Ok(Self {
            backbone,
            projector,
            predictor,
            classifier,
            distill_predictor,
        })
    }

    /// Feature size of the backbone.
    pub fn feature_dim(&self) -> usize {
        8 * self.backbone.width
    }
}

/// The trainable online model.
pub struct Online {
    /// Every tensor of the online model (running statistics included).
    pub varmap: VarMap,
    /// Feature extractor f.
    pub backbone: ResNet,
    /// SSL projector.
    pub projector: Mlp,
    /// SSL predictor.
    pub predictor: Option<Mlp>,
    /// Classifier g.
    pub classifier: Mlp,
    /// Distillation predictor h.
    pub distill_predictor: Mlp,
}

impl Online {
    /// Build the model and initialise it from `seed` (PyTorch's default init scheme, sorted names).
    pub fn new(spec: &NetworkSpec, seed: u64, device: &Device) -> Result<Self, CoreError> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let backbone = ResNet::new(&spec.backbone, vb.pp(prefix::BACKBONE))?;
        let projector = Mlp::new(&spec.projector, vb.pp(prefix::PROJECTOR))?;
        let predictor = match &spec.predictor {
            Some(p) => Some(Mlp::new(p, vb.pp(prefix::PREDICTOR))?),
            None => None,
        };
        let classifier = Mlp::new(&spec.classifier, vb.pp(prefix::CLASSIFIER))?;
        let distill_predictor =
            Mlp::new(&spec.distill_predictor, vb.pp(prefix::DISTILL_PREDICTOR))?;
        kaizen_models::init::init_vars(&varmap, seed)?;
        Ok(Self {
            varmap,
            backbone,
            projector,
            predictor,
            classifier,
            distill_predictor,
        })
    }
}

/// A momentum (EMA) target: backbone + projector in a `VarMap` of its own, same tensor names as online.
pub struct Target {
    /// The target's tensors.
    pub varmap: VarMap,
    /// Target backbone.
    pub backbone: ResNet,
    /// Target projector.
    pub projector: Mlp,
}

impl Target {
    /// Build a target that starts as an exact copy of the online backbone + projector.
    pub fn copy_of(
        online: &Online,
        spec: &NetworkSpec,
        device: &Device,
    ) -> Result<Self, CoreError> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let backbone = ResNet::new(&spec.backbone, vb.pp(prefix::BACKBONE))?;
        let projector = Mlp::new(&spec.projector, vb.pp(prefix::PROJECTOR))?;
        copy_vars(
            &online.varmap,
            &varmap,
            &[prefix::BACKBONE, prefix::PROJECTOR],
        )?;
        Ok(Self {
            varmap,
            backbone,
            projector,
        })
    }

    /// Projection of a batch, detached (the target never receives gradient).
    pub fn project(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let encoder = (&self.backbone, &self.projector);
        Ok(encoder.forward_mode(x, BnMode::BatchStats)?.detach())
    }

    /// The (target prefix, online prefix) pairs the EMA updates.
    pub fn ema_pairs() -> Vec<(String, String)> {
        [prefix::BACKBONE, prefix::PROJECTOR]
            .iter()
            .map(|p| (format!("{p}."), format!("{p}.")))
            .collect()
    }
}

/// Copy the values of every tensor under `prefixes` from `src` into the same-named vars of `dst`.
pub fn copy_vars(src: &VarMap, dst: &VarMap, prefixes: &[&str]) -> Result<(), CoreError> {
    let src = src.data().lock().map_err(|_| CoreError::Poisoned)?;
    let dst = dst.data().lock().map_err(|_| CoreError::Poisoned)?;
    for (name, var) in dst.iter() {
        if !prefixes.iter().any(|p| name.starts_with(&format!("{p}."))) {
            continue;
        }
        let s = src
            .get(name)
            .ok_or_else(|| CoreError::MissingTensor(name.clone()))?;
        var.set(&s.as_tensor().copy()?)?;
    }
    Ok(())
}

/// The frozen model of the previous task: backbone + projector + classifier, plain tensors (no `Var`,
/// so no gradient can reach them), runnable only with batch statistics or running statistics.
pub struct Frozen {
    backbone: ResNet,
    projector: Mlp,
    classifier: Mlp,
    mode: BnMode,
    tensors: HashMap<String, Tensor>,
}

/// Outputs of the frozen model on one view.
pub struct FrozenOut {
    /// Frozen backbone features.
    pub h: Tensor,
    /// Frozen projection z_old.
    pub z: Tensor,
    /// Frozen classifier logits.
    pub logits: Tensor,
}

impl Frozen {
    /// Snapshot the online model's backbone, projector and classifier (deep copies of every tensor).
    pub fn snapshot(
        online: &Online,
        spec: &NetworkSpec,
        mode: BnMode,
        device: &Device,
    ) -> Result<Self, CoreError> {
        let data = online
            .varmap
            .data()
            .lock()
            .map_err(|_| CoreError::Poisoned)?;
        let mut tensors = HashMap::new();
        for (name, var) in data.iter() {
            if [prefix::BACKBONE, prefix::PROJECTOR, prefix::CLASSIFIER]
                .iter()
                .any(|p| name.starts_with(&format!("{p}.")))
            {
                tensors.insert(name.clone(), var.as_tensor().copy()?.detach());
            }
        }
        drop(data);
        Self::from_tensors(tensors, spec, mode, device)
    }

    /// Rebuild from saved tensors (checkpoint resume).
    pub fn from_tensors(
        tensors: HashMap<String, Tensor>,
        spec: &NetworkSpec,
        mode: BnMode,
        device: &Device,
    ) -> Result<Self, CoreError> {
        if matches!(mode, BnMode::Train) {
            return Err(CoreError::Invalid(
                "the frozen model never updates its statistics: use BatchStats or Eval".into(),
            ));
        }
        let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, device);
        Ok(Self {
            backbone: ResNet::new(&spec.backbone, vb.pp(prefix::BACKBONE))?,
            projector: Mlp::new(&spec.projector, vb.pp(prefix::PROJECTOR))?,
            classifier: Mlp::new(&spec.classifier, vb.pp(prefix::CLASSIFIER))?,
            mode,
            tensors,
        })
    }

    /// Projection and logits of one view, detached.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<FrozenOut> {
        let h = self.backbone.forward_mode(x, self.mode)?;
        let z = self.projector.forward_mode(&h, self.mode)?.detach();
        let logits = self.classifier.forward_mode(&h, self.mode)?.detach();
        Ok(FrozenOut {
            h: h.detach(),
            z,
            logits,
        })
    }

    /// The tensors the model was built from (for checkpoints), sorted by name.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<_> = self
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// All (name, tensor) pairs of a `VarMap`, sorted by name.
pub fn sorted_tensors(varmap: &VarMap) -> Result<Vec<(String, Tensor)>, CoreError> {
    let data = varmap.data().lock().map_err(|_| CoreError::Poisoned)?;
    let mut v: Vec<_> = data
        .iter()
        .map(|(k, var)| (k.clone(), var.as_tensor().clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// Overwrite every var of `varmap` from `tensors[prefix + name]`; every var must be present with its shape.
pub fn load_vars(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    key_prefix: &str,
) -> Result<(), CoreError> {
    let data = varmap.data().lock().map_err(|_| CoreError::Poisoned)?;
    let mut names: Vec<_> = data.keys().cloned().collect();
    names.sort();
    for name in names {
        let key = format!("{key_prefix}{name}");
        let t = tensors
            .get(&key)
            .ok_or_else(|| CoreError::MissingTensor(key.clone()))?;
        let var = &data[&name];
        if t.dims() != var.dims() {
            return Err(CoreError::ShapeMismatch {
                name: key,
                expected: var.dims().to_vec(),
                got: t.dims().to_vec(),
            });
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    Ok(())
}
