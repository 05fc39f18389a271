//! Named, seeded random streams.
//!
//! Every random draw in kaizen-data comes from a [`ChaCha8Rng`] built by [`rng_for`] from
//! `(seed, stream, a, b, c)`:
//!
//! * the 32-byte ChaCha key is `seed`, the stream tag, `a` and `b`, each as a little-endian `u64`;
//! * the ChaCha stream id (`set_stream`) is `c`.
//!
//! The map from the five numbers to the generator is injective, so two different draws never share a
//! generator, and no hashing is involved. What `a`, `b`, `c` mean depends on the stream (see
//! [`RngStream`]). Because the generator of e.g. one augmented view depends only on its own counters, the
//! result does not depend on the order in which rayon threads process samples, nor on the thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The random streams of the data pipeline. The discriminant is the stream tag in the key.
///
/// Counters `(a, b, c)` per stream:
/// * `ClassOrder`: `(0, 0, 0)` — the class permutation of a seeded [`crate::ClassOrder`];
/// * `LabelFraction`: `(task, class, 0)` — which images of a class keep their label;
/// * `ReplayFill`: `(task, class, 0)` — which labelled images enter the replay memory; `(task, u64::MAX, 0)`
///   decides which classes get the remainder when the budget does not divide evenly;
/// * `ReplaySample`: `(task, step, 0)` — the replay mini-batch drawn at a training step;
/// * `Shuffle`: `(task, epoch, 0)` — the order of an epoch's batches;
/// * `Augment`: `(epoch_key, sample index, view)` — one augmented view of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum RngStream {
    /// Seeded class order.
    ClassOrder = 1,
    /// Per-class label availability.
    LabelFraction = 2,
    /// Replay memory filling.
    ReplayFill = 3,
    /// Replay mini-batch sampling.
    ReplaySample = 4,
    /// Epoch shuffling.
    Shuffle = 5,
    /// Per-sample, per-view augmentation.
    Augment = 6,
}

/// The generator for `(seed, stream, a, b, c)`; see the module docs for the exact derivation.
pub fn rng_for(seed: u64, stream: RngStream, a: u64, b: u64, c: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[0..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(stream as u64).to_le_bytes());
    key[16..24].copy_from_slice(&a.to_le_bytes());
    key[24..32].copy_from_slice(&b.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(c);
    rng
}

/// In-place Fisher–Yates shuffle: for `i` from `len-1` down to 1, swap `v[i]` with `v[j]`, `j` uniform in `0..=i`.
pub fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// Partial Fisher–Yates: after the call, `v[..k]` is a uniform random `k`-subset of `v` (in random order).
/// `k` is clamped to `v.len()`.
pub fn choose_prefix<T>(v: &mut [T], k: usize, rng: &mut ChaCha8Rng) {
    let n = v.len();
    for i in 0..k.min(n) {
        let j = rng.random_range(i..n);
        v.swap(i, j);
    }
}

/// A uniform `f64` in `[lo, hi)` (`lo` when `hi <= lo`).
pub fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return lo;
    }
    lo + (hi - lo) * rng.random::<f64>()
}

/// `true` with probability `p` (a draw is always consumed, so the stream position does not depend on `p`).
pub fn bernoulli(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.random::<f64>() < p
}
