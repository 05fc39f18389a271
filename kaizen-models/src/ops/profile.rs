//! Optional wall-clock accounting of the CPU kernels: how much of a training step the convolution, batch-norm,
//! linear, add+ReLU and SGD kernels take, so that what runs outside them (candle's own ops, the autograd
//! bookkeeping, allocation, threads waiting) is visible as the remainder. Off by default (one relaxed atomic
//! load per kernel call when off); `kaizen bench --kernel-profile` switches it on.
//!
//! On a GPU the same names time candle's forward compositions (convolution, batch norm, linear, add + ReLU),
//! each between two device synchronisations so that it is charged its own kernels. The backward passes run
//! inside candle's autograd there and land in the remainder.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The kernels accounted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Convolution forward.
    ConvFwd,
    /// Convolution input gradient.
    ConvDx,
    /// Convolution weight gradient.
    ConvDw,
    /// Batch norm (train or eval) forward.
    BnFwd,
    /// Batch norm backward.
    BnBwd,
    /// Linear layers (forward and backward).
    Linear,
    /// Fused add + ReLU (forward and backward).
    AddRelu,
    /// Fused SGD update.
    Sgd,
}

const NAMES: [&str; 8] = [
    "conv_fwd", "conv_dx", "conv_dw", "bn_fwd", "bn_bwd", "linear", "add_relu", "sgd",
];

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static CALLS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Switches the accounting on or off (process-wide).
pub fn set_kernel_profile(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Clears the counters.
pub fn reset_kernel_profile() {
    for k in 0..NAMES.len() {
        NANOS[k].store(0, Ordering::Relaxed);
        CALLS[k].store(0, Ordering::Relaxed);
    }
}

/// `(kernel name, milliseconds, calls)` since the last reset, in a fixed order.
pub fn kernel_profile() -> Vec<(&'static str, f64, u64)> {
    (0..NAMES.len())
        .map(|k| {
            (
                NAMES[k],
                NANOS[k].load(Ordering::Relaxed) as f64 / 1e6,
                CALLS[k].load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// Runs `f`, adding its wall time to `k` when the accounting is on.
pub(crate) fn timed<R>(k: Kernel, f: impl FnOnce() -> R) -> R {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let r = f();
    charge(k, t);
    r
}

/// Adds one call and the time since `t` to `k`.
fn charge(k: Kernel, t: Instant) {
    NANOS[k as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    CALLS[k as usize].fetch_add(1, Ordering::Relaxed);
}

/// On a GPU device with the accounting on: waits for the device, runs `f`, waits again and charges the time
/// to `k`. Elsewhere (the CPU's reference compositions included) just runs `f`.
pub(crate) fn timed_on_device<R>(
    k: Kernel,
    dev: &candle_core::Device,
    f: impl FnOnce() -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    if dev.is_cpu() || !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    dev.synchronize()?;
    let t = Instant::now();
    let r = f()?;
    dev.synchronize()?;
    charge(k, t);
    Ok(r)
}

/// Adds the time from its creation to its drop to a kernel (for kernels with several exits).
pub(crate) struct TimedScope(Option<(Kernel, Instant)>);

impl TimedScope {
    pub(crate) fn new(k: Kernel) -> Self {
        TimedScope(ENABLED.load(Ordering::Relaxed).then(|| (k, Instant::now())))
    }
}

impl Drop for TimedScope {
    fn drop(&mut self) {
        if let Some((k, t)) = self.0 {
            charge(k, t);
        }
    }
}
