//! Direct AVX-512 convolution for stride-1 "same" convolutions (output plane = input plane, e.g.
//! ResNet's 3x3 padding-1 layers), used on x86-64 CPUs with AVX-512F.
//!
//! No column matrix: the output plane of a sample is cut into 16-lane vectors of consecutive flat
//! positions `p = oy * W + ox`, and for a kernel tap `(ky, kx)` the inputs those 16 outputs need
//! are the 16 consecutive input elements at `p + (ky - pad) * W + (kx - pad)`: one masked load,
//! where the mask zeroes the lanes whose input row or column falls in the padding (which also lets
//! a vector span several rows of a small plane, and a last vector stop at the plane's end). The
//! masks depend only on the geometry and are built once per call. A register tile of [`MR`] output
//! channels x [`NV`] vectors accumulates over (input channel, tap) with the weights broadcast from
//! a packed copy; tiles sweep a group of samples whose input fits in L2 ([`GROUP_BYTES`]) once per
//! output-channel block. Each output element is one chain of fused multiply-adds in a fixed order (input
//! channel, then tap): the result does not depend on the thread count. It is also the order of the
//! gemm's reduction while that fits one of its depth blocks: in `direct_probe`, the forward of the
//! layers with 3 to 32 input channels gave the same bits as im2col + gemm, those with 64 and more
//! differ in the last bits. `KAIZEN_DIRECT_CONV=0` turns the direct kernels off for the process (A/B).

use super::conv::ConvGeom;
use super::host::{assume_init_vec, num_threads, par_chunks, par_map, uninit_vec, Uninit};
use candle_core::Result;

/// Output channels per register tile.
const MR: usize = 8;
/// 16-lane output vectors per register tile.
const NV: usize = 3;
/// Lanes per vector.
const L: usize = 16;

/// Whether [`conv_same_fwd`] can run this convolution on this CPU.
pub fn available(g: &ConvGeom) -> bool {
    g.stride == 1
        && g.k > 1
        && g.ho == g.h
        && g.wo == g.w
        && g.cin > 0
        && g.cout > 0
        && g.b > 0
        && avx512()
}

/// Whether the convolution layer should take the direct kernel rather than im2col + gemm. Measured
/// (`examples/direct_probe.rs`, 2 threads, batch 64): the direct kernel is 10-20% faster than
/// im2col + gemm on 32x32 to 8x8 planes with up to 128 input channels and 2-7% faster on 32x32 and
/// 16x16 planes at width 64; on 4x4 planes and 8x8 planes with 256 channels the gemm is 3-10%
/// faster (the tile's weights no longer stay in L1 over its long reduction).
/// (`winograd::preferred` is asked first: from 16 input channels on, 3x3 padding-1 layers on planes
/// 4, 8, 16 or 32 wide take Winograd, so this kernel keeps the stem and other plane widths, e.g.
/// Fashion-MNIST's 28 and 14.)
pub(crate) fn preferred(g: &ConvGeom) -> bool {
    let plane = g.h * g.w;
    available(g) && (plane >= 256 || (plane >= 64 && g.cin <= 128))
}

pub(super) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            std::env::var("KAIZEN_DIRECT_CONV").map_or(true, |v| v != "0")
                && std::arch::is_x86_feature_detected!("avx512f")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Weights packed as `[co_block][ci][tap][MR]` (output channels past `cout` are zero), blocks in
/// parallel (width 64's last layer has 9 MiB of weights).
fn pack_weights(g: &ConvGeom, w: &[f32]) -> Result<Vec<f32>> {
    let kk = g.k * g.k;
    let blocks = g.cout.div_ceil(MR);
    let block = g.cin * kk * MR;
    let mut wp = vec![0f32; blocks * block];
    par_chunks(&mut wp, block, |cb, dst| {
        for r in 0..MR.min(g.cout - cb * MR) {
            let src = &w[(cb * MR + r) * g.cin * kk..][..g.cin * kk];
            for (d, s) in dst[r..].iter_mut().step_by(MR).zip(src) {
                *d = *s;
            }
        }
        Ok(())
    })?;
    Ok(wp)
}

/// Per vector `v` of a sample's plane and tap `t`: the mask of lanes whose input lies inside the
/// plane (`masks[v * kk + t]`), plus each vector's store mask (lanes inside the plane).
fn masks(g: &ConvGeom) -> (Vec<u16>, Vec<u16>, Vec<isize>) {
    let kk = g.k * g.k;
    let plane = g.h * g.w;
    let nvec = plane.div_ceil(L);
    let mut m = vec![0u16; nvec * kk];
    let mut store = vec![0u16; nvec];
    let mut offs = vec![0isize; kk];
    for ky in 0..g.k {
        for kx in 0..g.k {
            offs[ky * g.k + kx] =
                (ky as isize - g.pad as isize) * g.w as isize + kx as isize - g.pad as isize;
        }
    }
    for v in 0..nvec {
        for l in 0..L {
            let p = v * L + l;
            if p >= plane {
                continue;
            }
            store[v] |= 1 << l;
            let (oy, ox) = ((p / g.w) as isize, (p % g.w) as isize);
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let iy = oy + ky as isize - g.pad as isize;
                    let ix = ox + kx as isize - g.pad as isize;
                    if iy >= 0 && iy < g.h as isize && ix >= 0 && ix < g.w as isize {
                        m[v * kk + ky * g.k + kx] |= 1 << l;
                    }
                }
            }
        }
    }
    (m, store, offs)
}

/// Forward of a stride-1 same convolution: x (B*Cin*H*W), w (Cout*Cin*K*K) -> y (B*Cout*H*W).
/// Errors when [`available`] is false.
pub fn conv_same_fwd(g: &ConvGeom, x: &[f32], w: &[f32]) -> Result<Vec<f32>> {
    if !available(g) {
        candle_core::bail!("direct convolution: unsupported geometry {g:?}")
    }
    let plane = g.h * g.w;
    let total = g.b * g.cout * plane;
    if x.len() != g.b * g.cin * plane || w.len() != g.cout * g.cin * g.k * g.k {
        candle_core::bail!(
            "direct convolution: x has {} values and w {}, expected {} and {}",
            x.len(),
            w.len(),
            g.b * g.cin * plane,
            g.cout * g.cin * g.k * g.k
        )
    }
    let wp = pack_weights(g, w)?;
    let (m, store, offs) = masks(g);
    let mut y = uninit_vec(total);
    let per = g.b.div_ceil(num_threads());
    let out_plane = g.cout * plane;
    par_chunks(&mut y, per * out_plane, |i, yc| {
        let s0 = i * per;
        let ns = yc.len() / out_plane;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available` checked AVX-512F; the slices have the sizes checked above and `yc` holds
        // samples s0..s0+ns of y.
        #[allow(unsafe_code)]
        unsafe {
            avx::run(g, x, &wp, &m, &store, &offs, s0, ns, yc)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (s0, ns, &m, &store, &offs, &wp);
        Ok(())
    })?;
    // SAFETY: every sample's chunk is written in full: each (co, vector) of each sample is stored
    // once by the tile that covers it (stores masked to the plane, past-cout rows skipped).
    #[allow(unsafe_code)]
    Ok(unsafe { assume_init_vec(y) })
}

/// Input bytes per sample group of the forward kernel (see `avx::run`): about half of a 2 MiB L2.
const GROUP_BYTES: usize = 1 << 20;

/// Output channels per tile of the weight gradient (each tile covers all 9 taps of one input channel):
/// 27 accumulators, 3 output-gradient vectors and the input vector fill 31 of the 32 registers, and
/// each input load feeds 3 multiply-adds (2 before: 16->16 32x32 layers 2.5-3.0 -> 2.1-2.3 ms in
/// `direct_probe`, batch 64, with the inputs in cache; with them evicted before each call, as in a
/// training step, the two were the same within noise). Same bits: the sums per element are unchanged.
const DW_MR: usize = 3;

/// Whether [`conv_same_bwd_weight`] can run this convolution (3x3 kernels only) on this CPU.
pub fn bwd_weight_available(g: &ConvGeom) -> bool {
    available(g) && g.k == 3
}

/// Whether the weight gradient should take the direct kernel. Measured (`examples/direct_probe.rs`,
/// 2 threads, batch 64): 13-27% faster than im2col + gemm for 32x32 planes with at most 16 input and
/// output channels (the stem and width 16's first stage); slower from 32 channels on (each tile's
/// 18 partial sums go through memory once per sample) and 1.5-3.5x slower on 8x8 and 4x4 planes.
pub(crate) fn bwd_weight_preferred(g: &ConvGeom) -> bool {
    bwd_weight_available(g) && g.h * g.w >= 1024 && g.cin <= 16 && g.cout <= 16
}

/// Weight gradient of a stride-1 same 3x3 convolution: x (B*Cin*H*W), dy (B*Cout*H*W) ->
/// dW (Cout*Cin*3*3). `dW[co, ci, t] = sum_b sum_p dy[b, co, p] * x[b, ci, p + off(t)]`, as 16-lane
/// partial sums over the plane's vectors, sample after sample, then the lanes added in a fixed order.
/// Work is split over input channels, each summed over the whole batch by one thread: the result
/// does not depend on the thread count. Errors when `bwd_weight_available` is false.
pub fn conv_same_bwd_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
    if !bwd_weight_available(g) {
        candle_core::bail!("direct convolution weight gradient: unsupported geometry {g:?}")
    }
    let plane = g.h * g.w;
    if x.len() != g.b * g.cin * plane || dy.len() != g.b * g.cout * plane {
        candle_core::bail!(
            "direct convolution weight gradient: x has {} values and dy {}, expected {} and {}",
            x.len(),
            dy.len(),
            g.b * g.cin * plane,
            g.b * g.cout * plane
        )
    }
    let (m, store, offs) = masks(g);
    let kk = g.k * g.k;
    // Items of a few input channels each, pulled by the pool's threads; each returns
    // (ci, co, tap)-ordered values for its channels.
    let per = g.cin.div_ceil(4 * num_threads()).max(1);
    let items = g.cin.div_ceil(per);
    let parts = par_map(items, |i| {
        let (c0, c1) = (i * per, ((i + 1) * per).min(g.cin));
        let mut out = vec![0f32; (c1 - c0) * g.cout * kk];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `bwd_weight_available` checked AVX-512F and k = 3; sizes checked above.
        #[allow(unsafe_code)]
        unsafe {
            avx::dw(g, x, dy, &m, &store, &offs, c0, c1, &mut out)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (&m, &store, &offs, c0, c1);
        Ok((c0, c1, out))
    })?;
    let mut dw = vec![0f32; g.cout * g.cin * kk];
    for (c0, c1, out) in parts {
        for ci in c0..c1 {
            for co in 0..g.cout {
                let src = &out[((ci - c0) * g.cout + co) * kk..][..kk];
                dw[(co * g.cin + ci) * kk..][..kk].copy_from_slice(src);
            }
        }
    }
    Ok(dw)
}

// Index loops over the register tiles: each (row, vector) pair names one accumulator register.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::needless_range_loop)]
mod avx {
    use super::{ConvGeom, Uninit, DW_MR, GROUP_BYTES, L, MR, NV};
    use std::arch::x86_64::*;

    /// All output channels of samples `s0..s0+ns` into `yc`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run(
        g: &ConvGeom,
        x: &[f32],
        wp: &[f32],
        m: &[u16],
        store: &[u16],
        offs: &[isize],
        s0: usize,
        ns: usize,
        yc: &mut [Uninit],
    ) {
        let kk = g.k * g.k;
        let plane = g.h * g.w;
        let nvec = plane.div_ceil(L);
        let in_plane = g.cin * plane;
        let out_plane = g.cout * plane;
        let xp = x.as_ptr();
        let yp = yc.as_mut_ptr().cast::<f32>();
        // Samples in groups whose input fits in L2 next to the weights: every output-channel block
        // re-reads its group's input, which for a whole chunk (16 samples of width 64's 64x32x32
        // layer, 4 MiB) came from memory each time.
        let group = (GROUP_BYTES / (in_plane * 4).max(1)).clamp(1, ns.max(1));
        let mut g0 = 0;
        while g0 < ns {
            let gn = group.min(ns - g0);
            let total = gn * nvec;
            for cb in 0..g.cout.div_ceil(MR) {
                let wb = wp.as_ptr().add(cb * g.cin * kk * MR);
                let rows = MR.min(g.cout - cb * MR);
                let mut j0 = 0;
                while j0 < total {
                    let nv = NV.min(total - j0);
                    // Per vector of the tile: sample (in the chunk), vector index in the plane.
                    let mut sv = [(0usize, 0usize); NV];
                    for (j, e) in sv.iter_mut().enumerate().take(nv) {
                        let idx = j0 + j;
                        *e = (g0 + idx / nvec, idx % nvec);
                    }
                    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
                    for ci in 0..g.cin {
                        let wc = wb.add(ci * kk * MR);
                        let mut base = [std::ptr::null::<f32>(); NV];
                        for j in 0..NV {
                            let (s, v) = sv[j.min(nv - 1)];
                            base[j] = xp.add((s0 + s) * in_plane + ci * plane + v * L);
                        }
                        for t in 0..kk {
                            let off = *offs.get_unchecked(t);
                            let mut b = [_mm512_setzero_ps(); NV];
                            for j in 0..NV {
                                let (_, v) = sv[j.min(nv - 1)];
                                let mk = *m.get_unchecked(v * kk + t);
                                b[j] = _mm512_maskz_loadu_ps(mk, base[j].wrapping_offset(off));
                            }
                            let wt = wc.add(t * MR);
                            for r in 0..MR {
                                let a = _mm512_set1_ps(*wt.add(r));
                                for j in 0..NV {
                                    acc[r][j] = _mm512_fmadd_ps(a, b[j], acc[r][j]);
                                }
                            }
                        }
                    }
                    for j in 0..nv {
                        let (s, v) = sv[j];
                        let mk = store[v];
                        for (r, row) in acc.iter().enumerate().take(rows) {
                            let co = cb * MR + r;
                            let dst = yp.add(s * out_plane + co * plane + v * L);
                            _mm512_mask_storeu_ps(dst, mk, row[j]);
                        }
                    }
                    j0 += nv;
                }
            }
            g0 += gn;
        }
    }

    /// Weight gradient for input channels `c0..c1` (all output channels), into `out`
    /// ((ci - c0, co, tap) order). Requires k = 3.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dw(
        g: &ConvGeom,
        x: &[f32],
        dy: &[f32],
        m: &[u16],
        store: &[u16],
        offs: &[isize],
        c0: usize,
        c1: usize,
        out: &mut [f32],
    ) {
        const T: usize = 9;
        let plane = g.h * g.w;
        let nvec = plane.div_ceil(L);
        let (xp, dp) = (x.as_ptr(), dy.as_ptr());
        let mut off = [0isize; T];
        off.copy_from_slice(&offs[..T]);
        let cob = g.cout.div_ceil(DW_MR);
        // 16-lane partial sums of every (ci, co block) tile, kept across samples.
        let mut part = vec![_mm512_setzero_ps(); (c1 - c0) * cob * DW_MR * T];
        // Samples per pass over the tiles: at least 16 vectors between two trips of a tile's
        // partial sums through memory.
        let sb = (16 / nvec).max(1);
        let mut b0 = 0;
        while b0 < g.b {
            let b1 = (b0 + sb).min(g.b);
            for ci in c0..c1 {
                for cb in 0..cob {
                    let rows = DW_MR.min(g.cout - cb * DW_MR);
                    let pt = part.as_mut_ptr().add(((ci - c0) * cob + cb) * DW_MR * T);
                    let mut acc = [[_mm512_setzero_ps(); T]; DW_MR];
                    for (r, a) in acc.iter_mut().enumerate() {
                        for (t, v) in a.iter_mut().enumerate() {
                            *v = *pt.add(r * T + t);
                        }
                    }
                    for b in b0..b1 {
                        let xc = xp.add((b * g.cin + ci) * plane);
                        let mut drow = [dp; DW_MR];
                        for (r, d) in drow.iter_mut().enumerate() {
                            *d = dp.add((b * g.cout + cb * DW_MR + r.min(rows - 1)) * plane);
                        }
                        for v in 0..nvec {
                            let sm = *store.get_unchecked(v);
                            let mut d = [_mm512_setzero_ps(); DW_MR];
                            for r in 0..DW_MR {
                                d[r] = _mm512_maskz_loadu_ps(sm, drow[r].add(v * L));
                            }
                            let mv = m.as_ptr().add(v * T);
                            let xv = xc.add(v * L);
                            for t in 0..T {
                                let xt =
                                    _mm512_maskz_loadu_ps(*mv.add(t), xv.wrapping_offset(off[t]));
                                for r in 0..DW_MR {
                                    acc[r][t] = _mm512_fmadd_ps(d[r], xt, acc[r][t]);
                                }
                            }
                        }
                    }
                    for (r, a) in acc.iter().enumerate() {
                        for (t, v) in a.iter().enumerate() {
                            *pt.add(r * T + t) = *v;
                        }
                    }
                }
            }
            b0 = b1;
        }
        for ci in c0..c1 {
            for co in 0..g.cout {
                let (cb, r) = (co / DW_MR, co % DW_MR);
                let pt = &part[((ci - c0) * cob + cb) * DW_MR * T + r * T..][..T];
                for (t, v) in pt.iter().enumerate() {
                    out[((ci - c0) * g.cout + co) * T + t] = _mm512_reduce_add_ps(*v);
                }
            }
        }
    }
}
