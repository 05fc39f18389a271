//! Momentum (EMA) target update and its cosine tau schedule.

use std::collections::BTreeMap;

use candle_core::Var;
use candle_nn::VarMap;

use crate::error::{CandleContext, ModelError, Result};
use crate::params::sorted_vars;

/// `target <- tau * target + (1 - tau) * online` for every tensor (parameters and BN running statistics alike),
/// paired by name: for each `(target_prefix, online_prefix)` in `pairs`, the target tensor `target_prefix + rest`
/// pairs with the online tensor `online_prefix + rest`. `target` and `online` may be the same `VarMap`.
///
/// Errors, before anything is written, on a tensor under either prefix without a partner (`Unpaired`), on a shape or
/// dtype mismatch, and on `tau` outside `[0, 1]`. `tau == 1` leaves the target bit-for-bit unchanged and `tau == 0`
/// copies the online values exactly.
pub fn ema_update(
    target: &VarMap,
    online: &VarMap,
    pairs: &[(String, String)],
    tau: f64,
) -> Result<()> {
    if !(0.0..=1.0).contains(&tau) {
        return Err(ModelError::Config {
            key: "tau".into(),
            reason: format!("{tau} is outside [0, 1]"),
        });
    }
    let matched = pair_vars(target, online, pairs)?;
    if tau == 1.0 {
        return Ok(());
    }
    for (name, t, o) in &matched {
        let new = if tau == 0.0 {
            o.as_detached_tensor().copy()
        } else {
            (t.as_detached_tensor() * tau).and_then(|a| a + (o.as_detached_tensor() * (1.0 - tau))?)
        };
        new.and_then(|n| t.set(&n))
            .with_ctx(|| format!("EMA update of `{name}`"))?;
    }
    Ok(())
}

/// Copies every online tensor into its target partner (`ema_update` with `tau = 0`): initialises a momentum target.
pub fn copy_into(target: &VarMap, online: &VarMap, pairs: &[(String, String)]) -> Result<()> {
    ema_update(target, online, pairs, 0.0)
}

/// The `(target name, target Var, online Var)` triples of `pairs`, sorted by target name, after checking that both
/// sides have exactly the same names (modulo prefixes), shapes and dtypes.
pub fn pair_vars(
    target: &VarMap,
    online: &VarMap,
    pairs: &[(String, String)],
) -> Result<Vec<(String, Var, Var)>> {
    let tvars: BTreeMap<String, Var> = sorted_vars(target).into_iter().collect();
    let ovars: BTreeMap<String, Var> = sorted_vars(online).into_iter().collect();
    let mut out = Vec::new();
    for (tp, op) in pairs {
        for (oname, _) in ovars
            .range(op.clone()..)
            .take_while(|(n, _)| n.starts_with(op.as_str()))
        {
            let partner = format!("{tp}{}", &oname[op.len()..]);
            if !tvars.contains_key(&partner) {
                return Err(ModelError::Unpaired {
                    name: oname.clone(),
                    partner,
                });
            }
        }
        for (tname, tvar) in tvars
            .range(tp.clone()..)
            .take_while(|(n, _)| n.starts_with(tp.as_str()))
        {
            let partner = format!("{op}{}", &tname[tp.len()..]);
            let ovar = ovars.get(&partner).ok_or_else(|| ModelError::Unpaired {
                name: tname.clone(),
                partner: partner.clone(),
            })?;
            if tvar.dims() != ovar.dims() {
                return Err(ModelError::ShapeMismatch {
                    origin: format!("EMA pairing with `{partner}`"),
                    name: tname.clone(),
                    expected: ovar.dims().to_vec(),
                    got: tvar.dims().to_vec(),
                });
            }
            if tvar.dtype() != ovar.dtype() {
                return Err(ModelError::DTypeMismatch {
                    origin: format!("EMA pairing with `{partner}`"),
                    name: tname.clone(),
                    expected: format!("{:?}", ovar.dtype()),
                    got: format!("{:?}", tvar.dtype()),
                });
            }
            out.push((tname.clone(), tvar.clone(), ovar.clone()));
        }
    }
    Ok(out)
}

/// solo-learn's cosine tau schedule: `final - (final - base) * (cos(pi * step / total) + 1) / 2`, so
/// `tau(0) = base_tau` and `tau(total) = final_tau`; `step` beyond `total` (or `total == 0`) gives `final_tau`.
pub fn cosine_tau(base_tau: f64, final_tau: f64, step: usize, total_steps: usize) -> f64 {
    if total_steps == 0 || step >= total_steps {
        return final_tau;
    }
    let frac = step as f64 / total_steps as f64;
    final_tau - (final_tau - base_tau) * ((std::f64::consts::PI * frac).cos() + 1.0) / 2.0
}
