//! Fused training-mode batch normalisation (+ optional ReLU) on the CPU, as a candle custom op.
//!
//! The input is viewed as (B, C, S) with S = H*W for NCHW and S = 1 for (B, C); N = B*S values per
//! channel. Forward: `mean_c`, biased `var_c`, `xhat = (x - mean_c) * inv_c` with
//! `inv_c = 1 / sqrt(var_c + eps)`, `y = max(0, gamma_c * xhat + beta_c)` (ReLU optional).
//! Backward, with `g = dy * [y > 0]` (or `dy` without ReLU; the gate is recomputed as
//! `scale_c * x + shift_c > 0`, bit for bit the forward's decision, so y is never read):
//! `dbeta_c = sum g`, `dgamma_c = sum g * xhat`,
//! `dx = gamma_c * inv_c * (g - dbeta_c / N - xhat * dgamma_c / N)`.
//! Statistics are accumulated in f64 and always centred: on planes of 16x16 and up, each (sample,
//! channel) plane's sum and squares about its own mean, combined exactly over the batch (one read of x
//! from memory); on smaller planes two passes over the channel (mean, then squares about it).

use super::host::{
    assume_init_vec, cpu_slice, num_threads, par_chunks, par_map, uninit_vec, with_slice, Uninit,
};
use super::profile::{timed, Kernel};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::{Arc, OnceLock};

/// Per-channel statistics of one forward call: mean, biased variance and 1/sqrt(var + eps), and
/// the affine map the forward applied, `y = [relu](scale * x + shift)` (the backward recomputes
/// the ReLU's gate from it and x rather than reading y: one stream fewer per pass).
#[derive(Debug)]
#[allow(missing_docs)] // named in the lines above
pub struct BnStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub inv: Vec<f32>,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

/// The custom op: arg1 = x (B,C[,H,W]), arg2 = gamma (C,), arg3 = beta (C,), all f32 contiguous.
/// `stats` is filled by the forward pass and read by the caller and by the backward pass.
pub(crate) struct BnTrainOp {
    pub eps: f64,
    pub relu: bool,
    pub stats: Arc<OnceLock<BnStats>>,
}

/// (B, C, S) view of an NCHW or (B, C) shape.
fn bcs(dims: &[usize]) -> Result<(usize, usize, usize)> {
    match dims {
        [b, c] => Ok((*b, *c, 1)),
        [b, c, h, w] => Ok((*b, *c, h * w)),
        _ => bail!("batch_norm_train: expected (B,C) or (B,C,H,W), got {dims:?}"),
    }
}

/// Channel blocks for the (B, C) case, so threads own disjoint columns.
fn col_blocks(c: usize) -> usize {
    (c.div_ceil(num_threads() * 4)).max(64)
}

/// Lanes of the per-plane reductions: lane `j` adds the elements `j, j + 16, ...` in order.
const L: usize = 16;

/// Sum of a slice with 16 independent f32 lanes (vectorises; a plain `iter().sum()` is one serial
/// dependency chain), the lanes then combined in f64 in lane order, then the tail in f64.
fn lane_sum(p: &[f32]) -> f64 {
    let (full, tail) = p.as_chunks::<L>();
    let mut acc = [0f32; L];
    for c in full {
        for j in 0..L {
            acc[j] += c[j];
        }
    }
    finish(&acc, tail.iter().map(|&t| t as f64))
}

/// Sum of `(p - mu)^2` in the lane order of [`lane_sum`].
fn lane_sq_dev(p: &[f32], mu: f32) -> f64 {
    let (full, tail) = p.as_chunks::<L>();
    let mut acc = [0f32; L];
    for c in full {
        for j in 0..L {
            let d = c[j] - mu;
            acc[j] += d * d;
        }
    }
    finish(
        &acc,
        tail.iter().map(|&t| {
            let d = t - mu;
            (d * d) as f64
        }),
    )
}

/// The lanes added in f64 in lane order, then the tail terms in order.
fn finish(acc: &[f32; L], tail: impl Iterator<Item = f64>) -> f64 {
    let total: f64 = acc.iter().map(|&a| a as f64).sum();
    tail.fold(total, |t, v| t + v)
}

/// The ReLU's gate of the backward, recomputed from x: `dy` where the forward's output
/// `max(0, scale * x + shift)` was positive, else 0. The same products and sums as the forward's
/// (no fused multiply-add either side), so the same decision bit for bit, NaN included (gated).
#[inline(always)]
fn relu_gate(xv: f32, dy: f32, scale: f32, shift: f32) -> f32 {
    if scale * xv + shift > 0.0 {
        dy
    } else {
        0.0
    }
}

/// Backward's two plane sums, in the lane order of [`lane_sum`]: `sum g` and `sum g * (x - mu)`
/// with `g` the ReLU-gated `dy` where `relu` holds the forward's `(scale, shift)`, else `dy`.
///
/// This and the other plane loops below are functions of their own, never inlined into the loops
/// over planes: inlined there, LLVM vectorised the loop over 16-lane chunks with gathers instead
/// of the lanes (measured 1.5-2x slower than scalar code in a training step).
#[inline(never)]
fn gated_sums(x: &[f32], dy: &[f32], mu: f32, relu: Option<(f32, f32)>) -> (f64, f64) {
    let (xf, xt) = x.as_chunks::<L>();
    let (gf, gt) = dy.as_chunks::<L>();
    let (a, b) = gated_lanes(xf, gf, mu, relu);
    let terms = || {
        xt.iter()
            .zip(gt)
            .map(|(&xv, &dv)| (xv, gate_of(relu, xv, dv)))
    };
    (
        finish(&a, terms().map(|(_, g)| g as f64)),
        finish(&b, terms().map(|(xv, g)| (g * (xv - mu)) as f64)),
    )
}

/// `dy` through the ReLU gate of [`relu_gate`] when `relu` holds the forward's `(scale, shift)`.
#[inline(always)]
fn gate_of(relu: Option<(f32, f32)>, xv: f32, dy: f32) -> f32 {
    relu.map_or(dy, |(a, b)| relu_gate(xv, dy, a, b))
}

/// The lane sums of [`gated_sums`] over whole 16-value chunks: AVX-512 where the CPU has it.
#[inline(always)]
fn gated_lanes(
    x: &[[f32; L]],
    dy: &[[f32; L]],
    mu: f32,
    relu: Option<(f32, f32)>,
) -> ([f32; L], [f32; L]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked above).
        #[allow(unsafe_code)]
        return unsafe { avx::gated_lanes(x, dy, mu, relu) };
    }
    match relu {
        Some((a, b)) => lanes_of(x, dy, mu, |xv, g| relu_gate(xv, g, a, b)),
        None => lanes_of(x, dy, mu, |_, g| g),
    }
}

/// The lanes of [`gated_sums`] in AVX-512: LLVM keeps the portable loop mostly scalar (it turns
/// the gate into per-lane conditional loads; 1.4x this version's time in a profile of a step). The
/// same operations per lane, in the same order: the same bits.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx {
    use super::L;
    use std::arch::x86_64::*;

    /// Lane sums `(sum g, sum g * (x - mu))` over whole 16-value chunks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gated_lanes(
        x: &[[f32; L]],
        dy: &[[f32; L]],
        mu: f32,
        relu: Option<(f32, f32)>,
    ) -> ([f32; L], [f32; L]) {
        let (mut a, mut b) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let vmu = _mm512_set1_ps(mu);
        let (sc, sh) = relu.unwrap_or((1.0, 0.0));
        let (vsc, vsh, zero) = (_mm512_set1_ps(sc), _mm512_set1_ps(sh), _mm512_setzero_ps());
        for (xc, gc) in x.iter().zip(dy) {
            let xv = _mm512_loadu_ps(xc.as_ptr());
            let mut g = _mm512_loadu_ps(gc.as_ptr());
            if relu.is_some() {
                // The forward's `scale * x + shift` (a product, then a sum: no fused multiply-add).
                let v = _mm512_add_ps(_mm512_mul_ps(vsc, xv), vsh);
                g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero), g);
            }
            a = _mm512_add_ps(a, g);
            b = _mm512_add_ps(b, _mm512_mul_ps(g, _mm512_sub_ps(xv, vmu)));
        }
        let (mut la, mut lb) = ([0f32; L], [0f32; L]);
        _mm512_storeu_ps(la.as_mut_ptr(), a);
        _mm512_storeu_ps(lb.as_mut_ptr(), b);
        (la, lb)
    }
}

/// The portable [`gated_lanes`] for one gate.
#[inline(always)]
fn lanes_of(
    x: &[[f32; L]],
    dy: &[[f32; L]],
    mu: f32,
    gate: impl Fn(f32, f32) -> f32,
) -> ([f32; L], [f32; L]) {
    let (mut a, mut b) = ([0f32; L], [0f32; L]);
    for (xc, gc) in x.iter().zip(dy) {
        for j in 0..L {
            let g = gate(xc[j], gc[j]);
            a[j] += g;
            b[j] += g * (xc[j] - mu);
        }
    }
    (a, b)
}

/// A per-channel accumulator of [`per_channel_sums`]: one sum or a pair.
trait Acc: Copy + Default + Send + Sync {
    fn add(&mut self, o: Self);
}

impl Acc for f64 {
    fn add(&mut self, o: Self) {
        *self += o;
    }
}

impl Acc for (f64, f64) {
    fn add(&mut self, o: Self) {
        self.0 += o.0;
        self.1 += o.1;
    }
}

/// `out[ch] = sum_b term(b, ch)` for the NCHW layout: every pool slot owns a fixed contiguous range
/// of samples (so it streams whole samples) and keeps per-channel partials; the partials are added
/// in slot order, so the result depends only on the thread count, never on timing.
fn per_channel_sums<A: Acc>(
    b: usize,
    c: usize,
    term: impl Fn(usize, usize) -> A + Sync,
) -> Result<Vec<A>> {
    let slots = num_threads().min(b).max(1);
    let parts = par_map(slots, |sl| {
        let mut acc = vec![A::default(); c];
        for bi in sl * b / slots..(sl + 1) * b / slots {
            for (ch, a) in acc.iter_mut().enumerate() {
                a.add(term(bi, ch));
            }
        }
        Ok(acc)
    })?;
    let mut it = parts.into_iter();
    let mut total = it.next().unwrap_or_else(|| vec![A::default(); c]);
    for p in it {
        for (t, v) in total.iter_mut().zip(p) {
            t.add(v);
        }
    }
    Ok(total)
}

/// Samples per parallel piece of an element-wise NCHW pass: about 64 Ki values per piece.
fn samples_per_chunk(b: usize, plane: usize) -> usize {
    (65536 / plane.max(1)).clamp(1, b.max(1))
}

/// Mean and biased variance per channel of an NCHW tensor with large planes (S >= 256), reading x
/// from memory once. Per (sample, channel) plane: its sum, then the squares centred on its own
/// mean, the second pass over the plane reading it from cache. The planes combine exactly
/// (Chan et al.): `M2_c = sum_b [M2_bc + S * (mean_bc - mean_c)^2]`. Never `E[x^2] - E[x]^2`,
/// which cancels badly for large means. (On small planes the whole tensor is in cache and the
/// per-plane bookkeeping costs more than the second pass saves: measured slower below 16x16.)
fn plane_stats(x: &[f32], b: usize, c: usize, s: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let n = (b * s) as f64;
    let inv_s = 1.0 / s as f64;
    let mut planes = vec![(0f64, 0f64); b * c];
    let per = b.div_ceil(num_threads()).max(1);
    par_chunks(&mut planes, per * c, |i, out| {
        let xs = &x[i * per * c * s..][..out.len() * s];
        for (o, p) in out.iter_mut().zip(xs.chunks_exact(s)) {
            let sum = lane_sum(p);
            *o = (sum, lane_sq_dev(p, (sum * inv_s) as f32));
        }
        Ok(())
    })?;
    let sf = s as f64;
    let mut mean = vec![0f64; c];
    for sample in planes.chunks_exact(c) {
        for (m, &(sum, _)) in mean.iter_mut().zip(sample) {
            *m += sum;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut m2 = vec![0f64; c];
    for sample in planes.chunks_exact(c) {
        for ((v, &(sum, sq)), &mu) in m2.iter_mut().zip(sample).zip(&mean) {
            // `sq` is centred on the f32-rounded plane mean `r`; about the plane's exact mean
            // `mp` it is `sq - S * (r - mp)^2`.
            let mp = sum * inv_s;
            let (r, d) = (mp as f32 as f64 - mp, mp - mu);
            *v += sq - sf * r * r + sf * d * d;
        }
    }
    Ok((
        mean.iter().map(|&m| m as f32).collect(),
        m2.iter().map(|&v| (v / n) as f32).collect(),
    ))
}

/// Mean and biased variance per channel (f64 accumulation).
#[allow(clippy::too_many_arguments)]
fn stats(
    x: &[f32],
    b: usize,
    c: usize,
    s: usize,
    eps: f64,
    gamma: &[f32],
    beta: &[f32],
) -> Result<BnStats> {
    let n = (b * s) as f64;
    let (mean, var): (Vec<f32>, Vec<f32>) = if s > 1 {
        if s >= 256 {
            plane_stats(x, b, c, s)?
        } else {
            let sums = per_channel_sums(b, c, |bi, ch| lane_sum(&x[(bi * c + ch) * s..][..s]))?;
            let mean: Vec<f32> = sums.iter().map(|v| (v / n) as f32).collect();
            // Centred second pass (not E[x^2] - E[x]^2, which cancels badly for large means).
            let sq = per_channel_sums(b, c, |bi, ch| {
                lane_sq_dev(&x[(bi * c + ch) * s..][..s], mean[ch])
            })?;
            let var = sq.iter().map(|v| (v / n) as f32).collect();
            (mean, var)
        }
    } else {
        let blk = col_blocks(c);
        let parts = par_map(c.div_ceil(blk), |bk| {
            let c0 = bk * blk;
            let w = blk.min(c - c0);
            let mut acc = vec![0f64; w];
            for bi in 0..b {
                for (a, &t) in acc.iter_mut().zip(&x[bi * c + c0..][..w]) {
                    *a += t as f64;
                }
            }
            let m: Vec<f32> = acc.iter().map(|a| (*a / n) as f32).collect();
            acc.fill(0.0);
            for bi in 0..b {
                for ((a, &t), &mm) in acc.iter_mut().zip(&x[bi * c + c0..][..w]).zip(&m) {
                    let d = t - mm;
                    *a += (d * d) as f64;
                }
            }
            let v: Vec<f32> = acc.iter().map(|a| (*a / n) as f32).collect();
            Ok((m, v))
        })?;
        let mut mean = Vec::with_capacity(c);
        let mut var = Vec::with_capacity(c);
        for (m, v) in parts {
            mean.extend(m);
            var.extend(v);
        }
        (mean, var)
    };
    let inv = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect::<Vec<f32>>();
    let scale: Vec<f32> = inv.iter().zip(gamma).map(|(i, g)| i * g).collect();
    let shift = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
    Ok(BnStats {
        mean,
        var,
        inv,
        scale,
        shift,
    })
}

/// y = [relu](scale_c * x + shift_c) over the (B, C, S) view; writes every element of `y`
/// (`y.len() == x.len()`).
fn apply(
    x: &[f32],
    y: &mut [Uninit],
    c: usize,
    s: usize,
    scale: &[f32],
    shift: &[f32],
    relu: bool,
) -> Result<()> {
    if s > 1 {
        let spc = samples_per_chunk(y.len() / (c * s).max(1), c * s);
        par_chunks(y, spc * c * s, |i, yc| {
            let x0 = i * spc * c * s;
            for (j, yp) in yc.chunks_mut(s).enumerate() {
                let xp = &x[x0 + j * s..][..s];
                affine_plane(yp, xp, scale[j % c], shift[j % c], relu);
            }
            Ok(())
        })
    } else {
        let rows = rows_per_chunk(y.len() / c.max(1), c);
        par_chunks(y, rows * c, |i, yr| {
            let xr = &x[i * rows * c..][..yr.len()];
            for (yrow, xrow) in yr.chunks_mut(c).zip(xr.chunks(c)) {
                for ((d, &t), (&a, &bb)) in yrow.iter_mut().zip(xrow).zip(scale.iter().zip(shift)) {
                    let v = a * t + bb;
                    d.write(if relu { v.max(0.0) } else { v });
                }
            }
            Ok(())
        })
    }
}

/// One plane of the forward: `y = [relu](a * x + b)` (see [`gated_sums`] on inlining).
#[inline(never)]
fn affine_plane(y: &mut [Uninit], x: &[f32], a: f32, b: f32, relu: bool) {
    if relu {
        for (d, &t) in y.iter_mut().zip(x) {
            d.write((a * t + b).max(0.0));
        }
    } else {
        for (d, &t) in y.iter_mut().zip(x) {
            d.write(a * t + b);
        }
    }
}

/// One plane of the backward: `dx = k1 * g + k2 * x + k3`, `g` as in [`gated_sums`].
#[inline(never)]
fn dx_plane(dx: &mut [Uninit], x: &[f32], dy: &[f32], k: [f32; 3], relu: Option<(f32, f32)>) {
    let [k1, k2, k3] = k;
    match relu {
        Some((a, b)) => {
            for ((d, &xv), &g) in dx.iter_mut().zip(x).zip(dy) {
                d.write(k1 * relu_gate(xv, g, a, b) + k2 * xv + k3);
            }
        }
        None => {
            for ((d, &xv), &g) in dx.iter_mut().zip(x).zip(dy) {
                d.write(k1 * g + k2 * xv + k3);
            }
        }
    }
}

/// Rows per parallel piece for the (B, C) case: about 64 Ki values per piece.
fn rows_per_chunk(b: usize, c: usize) -> usize {
    (65536 / c.max(1)).clamp(1, b.max(1))
}

/// Forward on host slices; returns y and the statistics.
pub fn bn_fwd(
    x: &[f32],
    dims: &[usize],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    relu: bool,
) -> Result<(Vec<f32>, BnStats)> {
    let (b, c, s) = bcs(dims)?;
    if gamma.len() != c || beta.len() != c || x.len() != b * c * s {
        bail!(
            "batch_norm_train: x {dims:?} does not match gamma ({}) / beta ({})",
            gamma.len(),
            beta.len()
        )
    }
    if b * s == 0 {
        bail!("batch_norm_train: empty batch {dims:?}")
    }
    let st = stats(x, b, c, s, eps, gamma, beta)?;
    let mut y = uninit_vec(x.len());
    apply(x, &mut y, c, s, &st.scale, &st.shift, relu)?;
    // SAFETY: `apply` wrote every element of `y` (it returned Ok).
    #[allow(unsafe_code)]
    let y = unsafe { assume_init_vec(y) };
    Ok((y, st))
}

/// Backward on host slices: returns (dx, dgamma, dbeta). `st` must be the statistics of the
/// forward pass that took this `x` (with ReLU, its gate is recomputed from them and `x`).
pub fn bn_bwd(
    x: &[f32],
    dy: &[f32],
    dims: &[usize],
    gamma: &[f32],
    st: &BnStats,
    relu: bool,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let (b, c, s) = bcs(dims)?;
    if x.len() != b * c * s
        || dy.len() != x.len()
        || gamma.len() != c
        || [&st.mean, &st.inv, &st.scale, &st.shift]
            .iter()
            .any(|v| v.len() != c)
    {
        bail!("batch_norm_train backward: inconsistent sizes for {dims:?}")
    }
    let n = (b * s) as f32;
    let (sc, sh) = (&st.scale, &st.shift);
    // Per-channel reductions: dbeta = sum g, dgamma = inv * sum g * (x - mean).
    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = if s > 1 {
        let plane = |t: &'_ [f32], bi: usize, ch: usize| -> std::ops::Range<usize> {
            let o = (bi * c + ch) * s;
            debug_assert!(o + s <= t.len());
            o..o + s
        };
        // One pass over every plane for both sums: sum g and sum g * (x - mean), g the gated dy.
        let both = per_channel_sums(b, c, |bi, ch| {
            let r = plane(dy, bi, ch);
            let gate = relu.then(|| (sc[ch], sh[ch]));
            gated_sums(&x[r.clone()], &dy[r], st.mean[ch], gate)
        })?;
        let (sg, sgx): (Vec<f64>, Vec<f64>) = both.into_iter().unzip();
        let dgamma = (0..c).map(|ch| (sgx[ch] as f32) * st.inv[ch]).collect();
        let dbeta = sg.iter().map(|v| *v as f32).collect();
        (dgamma, dbeta)
    } else {
        let blk = col_blocks(c);
        let parts = par_map(c.div_ceil(blk), |bk| {
            let c0 = bk * blk;
            let w = blk.min(c - c0);
            let mut sg = vec![0f64; w];
            let mut sgx = vec![0f64; w];
            for bi in 0..b {
                let o = bi * c + c0;
                for j in 0..w {
                    let gate = relu.then(|| (sc[c0 + j], sh[c0 + j]));
                    let g = gate_of(gate, x[o + j], dy[o + j]);
                    sg[j] += g as f64;
                    sgx[j] += (g * (x[o + j] - st.mean[c0 + j])) as f64;
                }
            }
            let dg: Vec<f32> = (0..w).map(|j| sgx[j] as f32 * st.inv[c0 + j]).collect();
            let db: Vec<f32> = sg.iter().map(|v| *v as f32).collect();
            Ok((dg, db))
        })?;
        let mut dg = Vec::with_capacity(c);
        let mut db = Vec::with_capacity(c);
        for (a, bb) in parts {
            dg.extend(a);
            db.extend(bb);
        }
        (dg, db)
    };
    // dx = k1 * g + k2 * x + k3 per channel, with
    // k1 = gamma*inv, k2 = -gamma*inv^2*dgamma/N, k3 = -k1*dbeta/N - k2*mean.
    let k1: Vec<f32> = (0..c).map(|i| gamma[i] * st.inv[i]).collect();
    let k2: Vec<f32> = (0..c).map(|i| -k1[i] * st.inv[i] * dgamma[i] / n).collect();
    let k3: Vec<f32> = (0..c)
        .map(|i| -k1[i] * dbeta[i] / n - k2[i] * st.mean[i])
        .collect();
    // Both branches write every element of dx (each chunk zips its full length).
    let mut dx = uninit_vec(x.len());
    if s > 1 {
        let spc = samples_per_chunk(b, c * s);
        par_chunks(&mut dx, spc * c * s, |i, dc| {
            let o0 = i * spc * c * s;
            for (j, d) in dc.chunks_mut(s).enumerate() {
                let ch = j % c;
                let o = o0 + j * s;
                let k = [k1[ch], k2[ch], k3[ch]];
                let gate = relu.then(|| (sc[ch], sh[ch]));
                dx_plane(d, &x[o..o + s], &dy[o..o + s], k, gate);
            }
            Ok(())
        })?;
    } else {
        let rows = rows_per_chunk(b, c);
        par_chunks(&mut dx, rows * c, |i, d| {
            let o0 = i * rows * c;
            for (r, drow) in d.chunks_mut(c).enumerate() {
                let o = o0 + r * c;
                for (j, dv) in drow.iter_mut().enumerate() {
                    let (xv, g) = (x[o + j], dy[o + j]);
                    let g = gate_of(relu.then(|| (sc[j], sh[j])), xv, g);
                    dv.write(k1[j] * g + k2[j] * xv + k3[j]);
                }
            }
            Ok(())
        })?;
    }
    // SAFETY: every element of dx was written above (the kernels returned Ok).
    #[allow(unsafe_code)]
    let dx = unsafe { assume_init_vec(dx) };
    Ok((dx, dgamma, dbeta))
}

impl CustomOp3 for BnTrainOp {
    fn name(&self) -> &'static str {
        "kaizen-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(s1, l1, "batch_norm_train input")?;
        let gamma = cpu_slice(s2, l2, "batch_norm_train gamma")?;
        let beta = cpu_slice(s3, l3, "batch_norm_train beta")?;
        let (y, st) = timed(Kernel::BnFwd, || {
            bn_fwd(x, l1.dims(), gamma, beta, self.eps, self.relu)
        })?;
        // A fresh op is built for every call, so the cell is empty here; a second forward through
        // the same op (not done by this crate) would keep the first statistics, which is an error.
        if self.stats.set(st).is_err() {
            bail!("batch_norm_train: op reused for a second forward pass")
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor, // y: the ReLU gate is recomputed from x (see `BnStats`)
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(st) = self.stats.get() else {
            bail!("batch_norm_train backward: forward statistics missing")
        };
        let (dx, dg, db) = with_slice(x, "batch_norm_train input", |xs| {
            with_slice(dy, "batch_norm_train output grad", |dys| {
                with_slice(gamma, "batch_norm_train gamma", |gs| {
                    timed(Kernel::BnBwd, || {
                        bn_bwd(xs, dys, x.dims(), gs, st, self.relu)
                    })
                })
            })
        })?;
        let dx = if x.track_op() {
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };
        let dg = if gamma.track_op() {
            Some(Tensor::from_vec(dg, gamma.shape(), gamma.device())?)
        } else {
            None
        };
        let db = if beta.track_op() {
            Some(Tensor::from_vec(db, beta.shape(), beta.device())?)
        } else {
            None
        };
        Ok((dx, dg, db))
    }
}

/// Eval-mode batch norm without gradient: `y = [relu](scale_c * x + shift_c)` with
/// `scale = gamma / sqrt(var + eps)`, `shift = beta - mean * scale` precomputed on the host.
pub(crate) struct BnEvalOp {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub relu: bool,
}

impl candle_core::CustomOp1 for BnEvalOp {
    fn name(&self) -> &'static str {
        "kaizen-batch-norm-eval"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_slice(s1, l1, "batch_norm_eval input")?;
        let (b, c, s) = bcs(l1.dims())?;
        if c != self.scale.len() || x.len() != b * c * s {
            bail!(
                "batch_norm_eval: x {:?} does not match {} channels of statistics",
                l1.dims(),
                self.scale.len()
            )
        }
        let mut y = uninit_vec(x.len());
        timed(Kernel::BnFwd, || {
            apply(x, &mut y, c, s, &self.scale, &self.shift, self.relu)
        })?;
        // SAFETY: `apply` wrote every element of `y` (it returned Ok).
        #[allow(unsafe_code)]
        let y = unsafe { assume_init_vec(y) };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
}
