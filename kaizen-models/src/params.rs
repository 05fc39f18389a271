//! Parameter listing and filters: what an optimiser may see.
//!
//! BatchNorm running statistics live in the same `VarMap` as the weights (so checkpoints and the EMA see them) but are
//! state, not parameters: [`trainable`] never returns them, so they never reach an optimiser or weight decay.

use candle_core::Var;
use candle_nn::VarMap;

/// True for BatchNorm state tensors: names ending in `running_mean`, `running_var` or `num_batches_tracked`.
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("num_batches_tracked")
}

/// True for biases and normalisation parameters, which LARS adaptation and weight decay skip when
/// `exclude_bias_n_norm` is set. Rule (solo-learn's): every tensor of rank <= 1 (biases, BN weight and bias), plus
/// anything named `*.bias`.
pub fn is_bias_or_norm(name: &str, rank: usize) -> bool {
    rank <= 1 || name.ends_with(".bias")
}

/// Every variable of `varmap` with its name, sorted by name (VarMap iteration order is random).
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    // A poisoned lock only means another thread panicked while holding it; the map itself is still valid.
    let data = match varmap.data().lock() {
        Ok(d) => d,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Trainable `(name, Var)` pairs whose names start with `prefix`, sorted by name; running statistics excluded.
/// Names are full `VarMap` names (prefix included).
pub fn trainable(varmap: &VarMap, prefix: &str) -> Vec<(String, Var)> {
    sorted_vars(varmap)
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix) && !is_running_stat(n))
        .collect()
}

/// Every `(name, Var)` under `prefix` (running statistics included), sorted by name.
pub fn all_under(varmap: &VarMap, prefix: &str) -> Vec<(String, Var)> {
    sorted_vars(varmap)
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .collect()
}
