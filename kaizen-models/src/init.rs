//! Seeded, host-side initialisation with PyTorch's default scheme (never candle's unseedable CPU RNG).
//!
//! Rules, decided per tensor name and shape:
//! - `*.running_mean` -> 0, `*.running_var` -> 1, `*.num_batches_tracked` -> 0;
//! - rank-4 weights (convolutions): `kaiming_uniform_(a = sqrt(5))`, i.e. `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` with
//!   `fan_in = Cin * K * K` (PyTorch's `nn.Conv2d.reset_parameters`);
//! - rank-2 weights (linear): the same bound with `fan_in = in` (`nn.Linear.reset_parameters`);
//! - a rank-1 `bias` whose sibling `weight` has rank >= 2: `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` of that weight;
//! - other rank-1 `weight` -> 1 and `bias` -> 0 (normalisation layers).
//!
//! Randomness: every tensor has its own `ChaCha8Rng` seeded with `seed`, on the stream given by the first 8 bytes
//! (little-endian) of `SHA-256(full tensor name)`. Values are drawn in row-major order as `(2u - 1) * bound` with
//! `u = rng.random::<f64>()`. A tensor's values therefore depend only on `(seed, name, shape)`: adding a head to the
//! `VarMap` never changes the backbone's initial weights, and names are visited in sorted order.

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::error::{CandleContext, ModelError, Result};
use crate::params::sorted_vars;

/// Initialises every variable of `varmap` (see the module docs for the rules and the RNG streams).
pub fn init_vars(varmap: &VarMap, seed: u64) -> Result<()> {
    init_vars_under(varmap, "", seed)
}

/// Initialises only the variables whose names start with `prefix` (e.g. `"projector."`).
pub fn init_vars_under(varmap: &VarMap, prefix: &str, seed: u64) -> Result<()> {
    let vars = sorted_vars(varmap);
    let shapes: std::collections::HashMap<&str, Vec<usize>> = vars
        .iter()
        .map(|(n, v)| (n.as_str(), v.dims().to_vec()))
        .collect();
    for (name, var) in vars.iter().filter(|(n, _)| n.starts_with(prefix)) {
        let values = init_values(name, var.dims(), &shapes, seed)?;
        let t = Tensor::from_vec(values, var.dims(), var.device())
            .and_then(|t| t.to_dtype(var.dtype()))
            .with_ctx(|| format!("initialising `{name}`"))?;
        set_var(var, &t, name)?;
    }
    Ok(())
}

fn set_var(var: &Var, t: &Tensor, name: &str) -> Result<()> {
    var.set(t).with_ctx(|| format!("initialising `{name}`"))
}

/// The RNG of one tensor: `ChaCha8Rng::seed_from_u64(seed)` on the stream derived from its name.
pub fn tensor_rng(seed: u64, name: &str) -> ChaCha8Rng {
    let digest = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::from_le_bytes(b));
    rng
}

fn uniform(n: usize, bound: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n)
        .map(|_| ((2.0 * rng.random::<f64>() - 1.0) * bound) as f32)
        .collect()
}

fn fan_in(shape: &[usize]) -> usize {
    shape.iter().skip(1).product::<usize>().max(1)
}

fn init_values(
    name: &str,
    shape: &[usize],
    shapes: &std::collections::HashMap<&str, Vec<usize>>,
    seed: u64,
) -> Result<Vec<f32>> {
    let n: usize = shape.iter().product();
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let stem = &name[..name.len() - leaf.len()];
    match (leaf, shape.len()) {
        ("running_mean", _) | ("num_batches_tracked", _) => Ok(vec![0.0; n]),
        ("running_var", _) => Ok(vec![1.0; n]),
        (_, 2) | (_, 4) => {
            let bound = 1.0 / (fan_in(shape) as f64).sqrt();
            Ok(uniform(n, bound, &mut tensor_rng(seed, name)))
        }
        ("weight", 1) => Ok(vec![1.0; n]),
        ("bias", 1) => match shapes.get(format!("{stem}weight").as_str()) {
            Some(w) if w.len() >= 2 => {
                let bound = 1.0 / (fan_in(w) as f64).sqrt();
                Ok(uniform(n, bound, &mut tensor_rng(seed, name)))
            }
            _ => Ok(vec![0.0; n]),
        },
        _ => Err(ModelError::Config {
            key: name.to_string(),
            reason: format!("no initialisation rule for a tensor of shape {shape:?}"),
        }),
    }
}
