//! Frozen snapshots: the previous-task model, as detached plain tensors (no `Var`, no gradient, no train mode).
//!
//! Build the frozen model from a snapshot with `VarBuilder::from_tensors(snapshot, DType::F32, &device)`, e.g.
//! `ResNet::new(&cfg, vb.pp("backbone"))` when the snapshot was taken with prefix `""`, or directly
//! `ResNet::new(&cfg, vb)` when it was taken with prefix `"backbone."`. Such a model holds no `Var`: its BatchNorm
//! layers refuse [`crate::BnMode::Train`], and a backward pass through its output yields no gradient for its tensors.

use std::collections::HashMap;

use candle_core::{Result, Tensor};
use candle_nn::VarMap;

use crate::params::sorted_vars;

/// Deep copy of every tensor whose name starts with `prefix` (running statistics included), with `prefix` stripped
/// from the keys. The copies share no storage with the `VarMap`, so later training does not change them.
pub fn snapshot(varmap: &VarMap, prefix: &str) -> Result<HashMap<String, Tensor>> {
    sorted_vars(varmap)
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(n, v)| {
            Ok((
                n[prefix.len()..].to_string(),
                v.as_detached_tensor().copy()?,
            ))
        })
        .collect()
}

/// Deep, detached copy of a set of plain tensors (e.g. a snapshot loaded from a checkpoint), keys kept.
pub fn copy_tensors(tensors: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.detach().copy()?)))
        .collect()
}
