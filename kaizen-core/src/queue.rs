//! MoCo's queue of negative keys: K unit-norm keys of dimension D in a ring buffer with a write pointer.
//!
//! The queue is a plain (non-`Var`) f32 tensor that never takes part in a backward pass. It is
//! initialised like MoCo (`randn(K, D)` then row-normalised), but from a seeded
//! [`rand_chacha::ChaCha8Rng`] so a run is reproducible. After each optimiser step the method pushes the
//! batch's keys (the momentum encoder's projections), which overwrite the oldest ones.
//!
//! Tensors are immutable: [`KeyQueue::push`] builds a new buffer (one copy of K x D, about 64 MiB at
//! 65536 x 256) and never writes into a tensor that [`KeyQueue::keys`] handed out earlier, so a loss
//! graph built on an old snapshot stays valid even if the push happens before its backward pass.

use crate::error::CoreError;
use crate::loss::ops::l2_normalize;
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// A ring buffer of `size` keys x `dim`, each row of unit L2 norm (or zero if a zero key was pushed).
#[derive(Debug, Clone)]
pub struct KeyQueue {
    /// (K, D) f32, detached.
    keys: Tensor,
    /// Row the next pushed key goes to, in `0..K`.
    ptr: usize,
}

/// Name of the keys tensor in [`KeyQueue::state`]: (K, D) f32.
pub const STATE_KEYS: &str = "keys";
/// Name of the pointer tensor in [`KeyQueue::state`]: (1,) u32.
pub const STATE_PTR: &str = "ptr";

/// Samples one standard normal value (Box-Muller on two uniforms; `1 - u` keeps the log argument in (0, 1]).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random();
    let u2: f64 = rng.random();
    (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl KeyQueue {
    /// A queue of `size` (K >= 1) random unit keys of dimension `dim` (D >= 1): i.i.d. standard normal
    /// entries from `ChaCha8Rng::seed_from_u64(seed)`, drawn row by row, then each row normalised.
    /// The pointer starts at 0. Same seed -> same keys, on every machine.
    pub fn new(size: usize, dim: usize, seed: u64, device: &Device) -> Result<Self, CoreError> {
        if size == 0 || dim == 0 {
            return Err(CoreError::BadShape {
                name: "queue".into(),
                expected: "(K, D) with K >= 1 and D >= 1".into(),
                got: vec![size, dim],
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data: Vec<f32> = (0..size * dim)
            .map(|_| standard_normal(&mut rng) as f32)
            .collect();
        let keys = l2_normalize(&Tensor::from_vec(data, (size, dim), device)?)?;
        Ok(KeyQueue { keys, ptr: 0 })
    }

    /// K, the number of keys.
    pub fn size(&self) -> usize {
        self.keys.dims()[0]
    }

    /// D, the key dimension.
    pub fn dim(&self) -> usize {
        self.keys.dims()[1]
    }

    /// The row the next pushed key is written to, in `0..K`.
    pub fn ptr(&self) -> usize {
        self.ptr
    }

    /// The keys (K, D), detached: a snapshot that later pushes never modify (cheap: shares storage).
    pub fn keys(&self) -> Tensor {
        self.keys.detach()
    }

    /// Enqueues `keys` (B, D): each row is detached, L2-normalised and written at the pointer, which
    /// advances by B modulo K (wrapping around; B need not divide K). When B > K only the last K rows
    /// can survive, exactly as if all B had been written one after the other.
    pub fn push(&mut self, keys: &Tensor) -> Result<(), CoreError> {
        let (k, d) = (self.size(), self.dim());
        let dims = keys.dims();
        if dims.len() != 2 || dims[1] != d || !keys.dtype().is_float() {
            return Err(CoreError::BadShape {
                name: "queue push keys".into(),
                expected: format!("(B, {d}) float"),
                got: dims.to_vec(),
            });
        }
        let b = dims[0];
        if b == 0 {
            return Ok(());
        }
        let kept = b.min(k);
        let src = l2_normalize(
            &keys
                .detach()
                .to_dtype(DType::F32)?
                .narrow(0, b - kept, kept)?,
        )?;
        let src = src.to_device(self.keys.device())?;
        let start = (self.ptr + b - kept) % k;
        let first = kept.min(k - start); // rows written at start..start + first
        let second = kept - first; // rows that wrap around to 0..second
        let old = &self.keys;
        let mut parts: Vec<Tensor> = Vec::with_capacity(3);
        if second > 0 {
            parts.push(src.narrow(0, first, second)?);
            if start > second {
                parts.push(old.narrow(0, second, start - second)?);
            }
            parts.push(src.narrow(0, 0, first)?);
        } else {
            if start > 0 {
                parts.push(old.narrow(0, 0, start)?);
            }
            parts.push(src.narrow(0, 0, first)?);
            if start + first < k {
                parts.push(old.narrow(0, start + first, k - start - first)?);
            }
        }
        self.keys = Tensor::cat(&parts, 0)?;
        self.ptr = (self.ptr + b) % k;
        Ok(())
    }

    /// The state to checkpoint: `[("keys", (K, D) f32), ("ptr", (1,) u32)]` (names [`STATE_KEYS`],
    /// [`STATE_PTR`]; callers add their own prefix).
    pub fn state(&self) -> Result<Vec<(String, Tensor)>, CoreError> {
        let ptr = u32::try_from(self.ptr).map_err(|_| CoreError::BadState {
            name: STATE_PTR.into(),
            reason: format!("pointer {} does not fit in u32", self.ptr),
        })?;
        let ptr = Tensor::from_vec(vec![ptr], (1,), self.keys.device())?;
        Ok(vec![
            (STATE_KEYS.to_string(), self.keys()),
            (STATE_PTR.to_string(), ptr),
        ])
    }

    /// Restores a queue from the tensors of [`KeyQueue::state`] (other entries are ignored):
    /// `keys` must be a float matrix (K >= 1, D >= 1), `ptr` one u32 or i64 value in `0..K`.
    /// The keys are kept as given (converted to f32, detached), not re-normalised.
    pub fn from_state(tensors: &HashMap<String, Tensor>) -> Result<Self, CoreError> {
        let get = |name: &str| {
            tensors
                .get(name)
                .ok_or_else(|| CoreError::MissingTensor(format!("queue {name}")))
        };
        let keys = get(STATE_KEYS)?;
        let ptr_t = get(STATE_PTR)?;
        let dims = keys.dims();
        if dims.len() != 2 || dims[0] == 0 || dims[1] == 0 || !keys.dtype().is_float() {
            return Err(CoreError::BadShape {
                name: STATE_KEYS.into(),
                expected: "(K, D) float with K >= 1 and D >= 1".into(),
                got: dims.to_vec(),
            });
        }
        if ptr_t.elem_count() != 1 {
            return Err(CoreError::BadShape {
                name: STATE_PTR.into(),
                expected: "one element".into(),
                got: ptr_t.dims().to_vec(),
            });
        }
        let ptr = match ptr_t.dtype() {
            DType::U32 => i64::from(ptr_t.flatten_all()?.to_vec1::<u32>()?[0]),
            DType::I64 => ptr_t.flatten_all()?.to_vec1::<i64>()?[0],
            other => {
                return Err(CoreError::BadState {
                    name: STATE_PTR.into(),
                    reason: format!("dtype {other:?}, expected u32 or i64"),
                })
            }
        };
        if ptr < 0 || ptr >= dims[0] as i64 {
            return Err(CoreError::BadState {
                name: STATE_PTR.into(),
                reason: format!("pointer {ptr} out of range for a queue of {} keys", dims[0]),
            });
        }
        let keys = keys.detach().to_dtype(DType::F32)?;
        Ok(KeyQueue {
            keys,
            ptr: ptr as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().unwrap()
    }

    /// Keys whose row r is (r + 1) * e_0 + e_1 (distinct directions after normalisation).
    fn marked(b: usize, offset: usize, d: usize) -> Tensor {
        let mut v = vec![0f32; b * d];
        for r in 0..b {
            v[r * d] = (r + offset + 1) as f32;
            v[r * d + 1] = 1.0;
        }
        Tensor::from_vec(v, (b, d), &Device::Cpu).unwrap()
    }

    #[test]
    fn new_is_seeded_and_row_normalised() {
        let a = KeyQueue::new(7, 5, 3, &Device::Cpu).unwrap();
        let b = KeyQueue::new(7, 5, 3, &Device::Cpu).unwrap();
        let c = KeyQueue::new(7, 5, 4, &Device::Cpu).unwrap();
        assert_eq!(rows(&a.keys()), rows(&b.keys()));
        assert_ne!(rows(&a.keys()), rows(&c.keys()));
        for r in rows(&a.keys()) {
            let n: f32 = r.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-5, "{n}");
        }
        assert_eq!((a.size(), a.dim(), a.ptr()), (7, 5, 0));
        assert!(KeyQueue::new(0, 5, 0, &Device::Cpu).is_err());
    }

    #[test]
    fn push_matches_a_sequential_ring_buffer() {
        // Reference: write rows one at a time into a host ring buffer.
        let (k, d) = (5, 3);
        let mut q = KeyQueue::new(k, d, 1, &Device::Cpu).unwrap();
        let mut host = rows(&q.keys());
        let mut ptr = 0;
        let mut offset = 0;
        for b in [2, 3, 4, 1, 7, 5, 11] {
            let keys = marked(b, offset, d);
            let normed = rows(&l2_normalize(&keys).unwrap());
            let before = q.keys();
            let before_rows = rows(&before);
            q.push(&keys).unwrap();
            for r in normed {
                host[ptr] = r;
                ptr = (ptr + 1) % k;
            }
            offset += b;
            assert_eq!(q.ptr(), ptr, "after pushing {b}");
            let got = rows(&q.keys());
            for (g, h) in got.iter().zip(&host) {
                for (x, y) in g.iter().zip(h) {
                    assert!((x - y).abs() < 1e-6, "{got:?} vs {host:?}");
                }
            }
            // The snapshot taken before the push is unchanged.
            assert_eq!(rows(&before), before_rows);
        }
    }

    #[test]
    fn state_round_trips_and_bad_states_are_errors() {
        let mut q = KeyQueue::new(6, 4, 9, &Device::Cpu).unwrap();
        q.push(&marked(4, 0, 4)).unwrap();
        let state: HashMap<String, Tensor> = q.state().unwrap().into_iter().collect();
        let back = KeyQueue::from_state(&state).unwrap();
        assert_eq!(back.ptr(), 4);
        assert_eq!(rows(&back.keys()), rows(&q.keys()));

        let mut bad = state.clone();
        bad.insert(
            STATE_PTR.into(),
            Tensor::from_vec(vec![6u32], (1,), &Device::Cpu).unwrap(),
        );
        assert!(matches!(
            KeyQueue::from_state(&bad),
            Err(CoreError::BadState { .. })
        ));
        bad.insert(
            STATE_PTR.into(),
            Tensor::from_vec(vec![-1i64], (1,), &Device::Cpu).unwrap(),
        );
        assert!(matches!(
            KeyQueue::from_state(&bad),
            Err(CoreError::BadState { .. })
        ));
        let mut bad = state.clone();
        bad.insert(
            STATE_KEYS.into(),
            Tensor::zeros((6,), DType::F32, &Device::Cpu).unwrap(),
        );
        assert!(matches!(
            KeyQueue::from_state(&bad),
            Err(CoreError::BadShape { .. })
        ));
        let mut bad = state.clone();
        bad.remove(STATE_PTR);
        assert!(
            matches!(KeyQueue::from_state(&bad), Err(CoreError::MissingTensor(name)) if name.contains("ptr"))
        );
        let wrong_dim = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(
            q.push(&wrong_dim),
            Err(CoreError::BadShape { .. })
        ));
    }
}
