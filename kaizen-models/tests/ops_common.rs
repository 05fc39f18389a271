//! Shared helpers for the ops tests are inlined per file (each tests/*.rs is its own crate); this file
//! checks the helpers' own assumptions: seeded host data is reproducible and the tolerance check bites.
mod common {
    include!("ops_util.inc");
}
use common::*;

#[test]
fn seeded_data_is_reproducible_and_seed_dependent() -> anyhow::Result<()> {
    let a = rand_vec(1, 16);
    assert_eq!(a, rand_vec(1, 16));
    assert_ne!(a, rand_vec(2, 16));
    assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
    Ok(())
}

#[test]
fn closeness_check_rejects_a_perturbed_tensor() -> anyhow::Result<()> {
    let dev = candle_core::Device::Cpu;
    let a = candle_core::Tensor::from_vec(rand_vec(3, 32), 32, &dev)?;
    let b = (&a + 1e-2)?;
    assert!(max_rel_diff(&a, &a)? == 0.0);
    assert!(max_rel_diff(&a, &b)? > 1e-3);
    Ok(())
}
