//! Winograd F(2x2, 3x3) convolution for 3x3 stride-1 padding-1 convolutions (ResNet's 3x3 layers
//! and, through the flipped kernel, their input gradients) on x86-64 CPUs with AVX-512F.
//!
//! Each 2x2 block of outputs (a *tile*) of a sample and channel comes from the 4x4 input patch
//! around it: `Y = A^T [ sum_ci (G g G^T) .* (B^T d B) ] A` (Lavin & Gray, 2016), which takes 16
//! multiply-adds per tile and input channel where the direct convolution takes 36. The 16 points
//! `xi` of the transformed domain are 16 independent matrix products
//! `M[xi] (Cout x tiles) = U[xi] (Cout x Cin) * V[xi] (Cin x tiles)`.
//!
//! The kernel runs per thread over its samples, in groups of [`TILE`] = 48 tiles (whole tile rows).
//! A group's transformed input `V` (Cin x 48 per point) stays in L1/L2 while every output-channel
//! block's transformed weights pass over it: the products run on a register tile of [`MR`] output
//! channels x [`NV`] 16-tile vectors (as the direct kernel), and their results (all output channels,
//! 16 points) go through a per-thread scratch to the output transform, which writes whole output
//! rows. The input transform vectorises over the tiles of a tile row (two masked loads and four lane
//! permutations per input row, each input row transformed once for the two tile rows that share it);
//! square 8x8 and 4x4 planes, whose tile rows would fill a quarter or an eighth of a vector, take
//! 16 tiles at a time instead (one 8x8 plane or four samples' 4x4 planes, gathered and scattered by
//! table permutations, `avx::SmallPlane`). Every output is a fixed sequence of operations on its own
//! lane (input transform, the sum over input channels in order, output transform): the result does
//! not depend on the thread count or on how tiles are grouped. It differs from the direct convolution
//! in the last bits (relative differences of ~1e-6; the transforms add a few roundings).
//! `KAIZEN_WINOGRAD=0` turns it off for the process (A/B).

use super::conv::ConvGeom;
use super::host::{assume_init_vec, num_threads, par_chunks, uninit_vec, with_scratch};
use candle_core::Result;

/// Output channels per register tile.
const MR: usize = 8;
/// 16-tile vectors per register tile.
const NV: usize = 3;
/// Lanes per vector.
const L: usize = 16;
/// Tiles per register tile.
const TILE: usize = NV * L;
/// Points of the transformed 4x4 patch.
const XI: usize = 16;

/// Whether [`conv3x3_fwd`] can run this convolution on this CPU: 3x3, stride 1, padding 1, an even
/// height and a width of 4, 8, 16 or 32 (a tile row's input rows fit two vectors).
pub fn available(g: &ConvGeom) -> bool {
    g.stride == 1
        && g.k == 3
        && g.pad == 1
        && g.ho == g.h
        && g.wo == g.w
        && g.h.is_multiple_of(2)
        && matches!(g.w, 4 | 8 | 16 | 32)
        && g.b > 0
        && g.cin > 0
        && g.cout > 0
        && enabled()
}

/// Whether the convolution layer should take this kernel rather than the direct one or the gemm.
/// Measured (`examples/direct_probe.rs`, 2 threads, batch 64, against the direct kernel, best of
/// alternating series on a noisy machine): 0.5-0.8x its time from 32 channels on at 32x32 to 8x8,
/// 0.9-1.05x with 16 channels at 32x32, 0.95-1.1x on 4x4 planes, where it is still 0.7x the im2col +
/// gemm those take; the stem (3 input channels) stays direct, the transforms outweighing the products.
pub(crate) fn preferred(g: &ConvGeom) -> bool {
    available(g) && g.cin >= 16
}

fn enabled() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("KAIZEN_WINOGRAD").map_or(true, |v| v != "0") && super::direct::avx512()
    })
}

/// `G f` for one axis of a 3-tap kernel, `[a, (a + b + c) / 2, (a - b + c) / 2, c]`, for the [`MR`]
/// output channels of a block at once (one lane each; element-wise, so it vectorises).
fn g3(a: [f32; MR], b: [f32; MR], c: [f32; MR]) -> [[f32; MR]; 4] {
    [
        a,
        std::array::from_fn(|r| 0.5 * (a[r] + b[r] + c[r])),
        std::array::from_fn(|r| 0.5 * (a[r] - b[r] + c[r])),
        c,
    ]
}

/// `G f G^T` of the 3x3 kernels `f[tap][lane]` (taps row-major) of one block's output channels:
/// `u[xi][lane]`, `xi` row-major 4x4.
fn weight_tiles(f: &[[f32; MR]; 9]) -> [[f32; MR]; XI] {
    let cols: [[[f32; MR]; 4]; 3] = std::array::from_fn(|q| g3(f[q], f[3 + q], f[6 + q]));
    let mut u = [[0f32; MR]; XI];
    for i in 0..4 {
        u[4 * i..4 * i + 4].copy_from_slice(&g3(cols[0][i], cols[1][i], cols[2][i]));
    }
    u
}

/// Transformed weights packed as `[co_block][xi][ci][MR]` (output channels past `cout` are zero),
/// output-channel blocks in parallel. The block's [`MR`] kernels of an input channel are
/// transformed together, one per lane, and each `xi` is stored as one row of [`MR`] values: one
/// kernel at a time with 16 scattered stores each, the transform was 28% of a 128-channel 4x4
/// layer's forward (it runs on every call).
fn transform_weights(g: &ConvGeom, w: &[f32]) -> Result<Vec<f32>> {
    let block = XI * g.cin * MR;
    let mut u = vec![0f32; g.cout.div_ceil(MR) * block];
    par_chunks(&mut u, block, |cb, t| {
        let rows = MR.min(g.cout - cb * MR);
        for ci in 0..g.cin {
            let mut f = [[0f32; MR]; 9];
            for r in 0..rows {
                let src = &w[((cb * MR + r) * g.cin + ci) * 9..][..9];
                for (tap, v) in src.iter().enumerate() {
                    f[tap][r] = *v;
                }
            }
            for (xi, v) in weight_tiles(&f).iter().enumerate() {
                t[(xi * g.cin + ci) * MR..][..MR].copy_from_slice(v);
            }
        }
        Ok(())
    })?;
    Ok(u)
}

/// Forward of a 3x3 stride-1 padding-1 convolution: x (B*Cin*H*W), w (Cout*Cin*3*3) ->
/// y (B*Cout*H*W). Errors when [`available`] is false.
pub fn conv3x3_fwd(g: &ConvGeom, x: &[f32], w: &[f32]) -> Result<Vec<f32>> {
    if !available(g) {
        candle_core::bail!("winograd convolution: unsupported geometry {g:?}")
    }
    let plane = g.h * g.w;
    if x.len() != g.b * g.cin * plane || w.len() != g.cout * g.cin * 9 {
        candle_core::bail!(
            "winograd convolution: x has {} values and w {}, expected {} and {}",
            x.len(),
            w.len(),
            g.b * g.cin * plane,
            g.cout * g.cin * 9
        )
    }
    let u = transform_weights(g, w)?;
    let out_plane = g.cout * plane;
    let mut y = uninit_vec(g.b * out_plane);
    let per = g.b.div_ceil(num_threads());
    // Per thread: a group's transformed input V[xi][ci][TILE], then its products
    // S[co][xi][TILE] for all output channels.
    let scratch = XI * TILE * (g.cin + g.cout.next_multiple_of(MR));
    par_chunks(&mut y, per * out_plane, |i, yc| {
        let s0 = i * per;
        let ns = yc.len() / out_plane;
        with_scratch(scratch, |buf| {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `available` checked AVX-512F and the geometry; the slices have the sizes
            // checked above, `yc` holds samples s0..s0+ns of y and `buf` the group's scratch.
            #[allow(unsafe_code)]
            unsafe {
                avx::run(g, x, &u, s0, ns, yc.as_mut_ptr().cast::<f32>(), buf)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (s0, ns, &u, buf);
        });
        Ok(())
    })?;
    // SAFETY: every output row of every (sample, channel) is written once by the output transform
    // of the tile row that covers it (groups cover all tile rows, lanes all tiles of a row).
    #[allow(unsafe_code)]
    Ok(unsafe { assume_init_vec(y) })
}

// Index loops over the register tiles: each (row, vector) pair names one accumulator register.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::needless_range_loop)]
mod avx {
    use super::{ConvGeom, L, MR, NV, TILE, XI};
    use std::arch::x86_64::*;

    /// `B^T d` for one axis: `[d0 - d2, d1 + d2, d2 - d1, d1 - d3]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn bt(d: [__m512; 4]) -> [__m512; 4] {
        [
            _mm512_sub_ps(d[0], d[2]),
            _mm512_add_ps(d[1], d[2]),
            _mm512_sub_ps(d[2], d[1]),
            _mm512_sub_ps(d[1], d[3]),
        ]
    }

    /// The second axis of `B^T d B` from the first's rows `e[i] = (d B)[i]`, point `4a + j` to
    /// `dst + (4a + j) * stride` (lanes in `mask`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store_v(e: &[[__m512; 4]; 4], dst: *mut f32, stride: usize, mask: __mmask16) {
        for j in 0..4 {
            let v = bt([e[0][j], e[1][j], e[2][j], e[3][j]]);
            for (a, va) in v.iter().enumerate() {
                _mm512_mask_storeu_ps(dst.add((4 * a + j) * stride), mask, *va);
            }
        }
    }

    /// The input transform `B^T d B` of one tile row of one channel, vectorised over its tiles (W/2
    /// lanes): input row `iy` gives the patch columns `2tx-1+j` through one two-source permutation
    /// each (lane 0 of j = 0 and lane W/2-1 of j = 3 are the zero padding).
    pub(super) struct InputTransform {
        h: usize,
        w: usize,
        lo_mask: __mmask16,
        hi_mask: __mmask16,
        idx: [__m512i; 4],
        pmask: [__mmask16; 4],
        store_mask: __mmask16,
    }

    impl InputTransform {
        /// For planes of height `h` (even) and width `w` (4, 8, 16 or 32).
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn new(h: usize, w: usize) -> Self {
            let tw = w / 2;
            let lanes: u32 = (1u32 << tw) - 1;
            let mut idx = [_mm512_setzero_si512(); 4];
            let mut pmask = [0 as __mmask16; 4];
            for j in 0..4 {
                let mut ix = [0i32; L];
                for (l, v) in ix.iter_mut().enumerate() {
                    *v = (2 * l as i32 + j as i32 - 1).clamp(0, 31);
                }
                idx[j] = _mm512_loadu_si512(ix.as_ptr().cast());
                let mut m = lanes;
                if j == 0 {
                    m &= !1;
                }
                if j == 3 {
                    m &= !(1u32 << (tw - 1));
                }
                pmask[j] = m as __mmask16;
            }
            Self {
                h,
                w,
                lo_mask: ((1u32 << w.min(16)) - 1) as __mmask16,
                hi_mask: ((1u32 << w.saturating_sub(16)) - 1) as __mmask16,
                idx,
                pmask,
                store_mask: lanes as __mmask16,
            }
        }

        /// `d B` of input row `iy` (isize: -1 is the padding row above the plane) of the channel
        /// plane at `base`, one vector per patch column: zero outside the plane.
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn row(&self, base: *const f32, iy: isize) -> [__m512; 4] {
            let (h, w) = (self.h, self.w);
            if iy < 0 || iy >= h as isize {
                return [_mm512_setzero_ps(); 4];
            }
            let p = base.add(iy as usize * w);
            // The same row of the next channel, needed next (4 KiB away at 32x32: a new page for
            // the hardware prefetcher).
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(h * w).cast());
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(h * w + L).cast());
            let lo = _mm512_maskz_loadu_ps(self.lo_mask, p);
            let hi = _mm512_maskz_loadu_ps(self.hi_mask, p.wrapping_add(L));
            bt(std::array::from_fn(|j| {
                _mm512_maskz_permutex2var_ps(self.pmask[j], lo, self.idx[j], hi)
            }))
        }

        /// Transforms the tile rows `ty0..ty0+n` of the channel plane at `base`: point `xi` of
        /// tile row `ty0 + k` goes to `dst + k * W/2 + xi * stride` (masked stores; the other
        /// lanes are left alone). Consecutive tile rows share two input rows, whose `d B` is
        /// computed once.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn tile_rows(
            &self,
            base: *const f32,
            ty0: usize,
            n: usize,
            dst: *mut f32,
            stride: usize,
        ) {
            let tw = self.w / 2;
            let top = 2 * ty0 as isize - 1;
            let mut e = [
                self.row(base, top),
                self.row(base, top + 1),
                [_mm512_setzero_ps(); 4],
                [_mm512_setzero_ps(); 4],
            ];
            for k in 0..n {
                let iy = top + 2 * k as isize;
                e[2] = self.row(base, iy + 2);
                e[3] = self.row(base, iy + 3);
                store_v(&e, dst.add(k * tw), stride, self.store_mask);
                e[0] = e[2];
                e[1] = e[3];
            }
        }
    }

    /// Square 8x8 and 4x4 planes: one 16-tile vector is a whole 8x8 plane (4 tile rows) or four
    /// samples' 4x4 planes, and both transforms run on all 16 lanes. The vector's inputs are 64
    /// consecutive values of four 16-float registers (the 8x8 plane, or the four samples' planes);
    /// each patch value is two table permutations and a blend, and the outputs go back the same way.
    pub(super) struct SmallPlane {
        /// Per patch value (i, j): the register pair's index, the lanes from the second pair, the
        /// lanes inside the plane.
        idx: [__m512i; XI],
        hi: [__mmask16; XI],
        valid: [__mmask16; XI],
        /// Per output register: the index into (Y[a][0], Y[a][1]) and the lanes with a = 1.
        out_idx: [__m512i; 4],
        out_a: [__mmask16; 4],
    }

    impl SmallPlane {
        /// For an `n` x `n` plane, n = 4 or 8.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn new(n: usize) -> Self {
            let tw = n / 2;
            // Lane l's tile: (plane within the 64 values, tile row, tile column).
            let tile = |l: usize| {
                let per = tw * tw;
                (l / per, (l % per) / tw, l % tw)
            };
            let pstride = n * n;
            let mut idx = [[0i32; L]; XI];
            let (mut hi, mut valid) = ([0 as __mmask16; XI], [0 as __mmask16; XI]);
            let mut out = [[0i32; L]; 4];
            let mut out_a = [0 as __mmask16; 4];
            for l in 0..L {
                let (p, ty, tx) = tile(l);
                for i in 0..4 {
                    for j in 0..4 {
                        let (row, col) = ((2 * ty + i) as isize - 1, (2 * tx + j) as isize - 1);
                        if row < 0 || col < 0 || row >= n as isize || col >= n as isize {
                            continue;
                        }
                        let e = p * pstride + row as usize * n + col as usize;
                        idx[4 * i + j][l] = (e % 32) as i32;
                        hi[4 * i + j] |= ((e / 32) as u16) << l;
                        valid[4 * i + j] |= 1 << l;
                    }
                }
                for a in 0..2 {
                    for b in 0..2 {
                        let e = p * pstride + (2 * ty + a) * n + 2 * tx + b;
                        out[e / L][e % L] = (b * L + l) as i32;
                        out_a[e / L] |= (a as u16) << (e % L);
                    }
                }
            }
            let load = |v: &[i32; L]| _mm512_loadu_si512(v.as_ptr().cast());
            Self {
                idx: std::array::from_fn(|k| load(&idx[k])),
                hi,
                valid,
                out_idx: std::array::from_fn(|k| load(&out[k])),
                out_a,
            }
        }

        /// `B^T d B` of the 16 tiles held by the four registers `r`, point `xi` to
        /// `dst + xi * stride`.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn input(&self, r: &[__m512; 4], dst: *mut f32, stride: usize) {
            let d = |k: usize| {
                let a = _mm512_permutex2var_ps(r[0], self.idx[k], r[1]);
                let b = _mm512_permutex2var_ps(r[2], self.idx[k], r[3]);
                _mm512_maskz_mov_ps(self.valid[k], _mm512_mask_blend_ps(self.hi[k], a, b))
            };
            let e: [[__m512; 4]; 4] =
                std::array::from_fn(|i| bt([d(4 * i), d(4 * i + 1), d(4 * i + 2), d(4 * i + 3)]));
            store_v(&e, dst, stride, 0xFFFF);
        }

        /// The four output registers of 16 tiles' outputs `y[a][b]`.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn output(&self, y: &[[__m512; 2]; 2]) -> [__m512; 4] {
            std::array::from_fn(|k| {
                let a0 = _mm512_permutex2var_ps(y[0][0], self.out_idx[k], y[0][1]);
                let a1 = _mm512_permutex2var_ps(y[1][0], self.out_idx[k], y[1][1]);
                _mm512_mask_blend_ps(self.out_a[k], a0, a1)
            })
        }
    }

    /// All output channels of samples `s0..s0+ns` into `yp` (their slice of y).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run(
        g: &ConvGeom,
        x: &[f32],
        u: &[f32],
        s0: usize,
        ns: usize,
        yp: *mut f32,
        buf: &mut [f32],
    ) {
        let (h, w) = (g.h, g.w);
        let (th, tw) = (h / 2, w / 2);
        let plane = h * w;
        let (in_plane, out_plane) = (g.cin * plane, g.cout * plane);
        let cbs = g.cout.div_ceil(MR);
        let (vbuf, sbuf) = buf.split_at_mut(XI * g.cin * TILE);
        let (vp, sp) = (vbuf.as_mut_ptr(), sbuf.as_mut_ptr());
        let xp = x.as_ptr().add(s0 * in_plane);
        let it = InputTransform::new(h, w);
        // Output transform: interleaves the two output columns of 16 tiles into 32 values.
        let mut il = [0i32; 2 * L];
        for (i, v) in il.iter_mut().enumerate() {
            *v = ((i % 2) * L + i / 2) as i32;
        }
        let il_lo = _mm512_loadu_si512(il.as_ptr().cast());
        let il_hi = _mm512_loadu_si512(il.as_ptr().add(L).cast());
        let mut row = [0f32; 2 * L];
        let small = if h == w && w <= 8 {
            Some(SmallPlane::new(w))
        } else {
            None
        };
        // Sample and offset in its channel plane of piece `k` of the 16-tile vector from tile t0.
        let piece = |t0: usize, k: usize| {
            if w == 8 {
                (t0 / 16, 16 * k)
            } else {
                (t0 / 4 + k, 0)
            }
        };

        // Groups of TILE tiles: whole tile rows, since tw divides 16.
        let group_rows = TILE / tw;
        let rows_total = ns * th;
        let mut r0 = 0;
        while r0 < rows_total {
            let nr = group_rows.min(rows_total - r0);
            let tb = nr * tw;
            match &small {
                // Registers of the four 16-float pieces behind tiles t0..t0+16 of channel `ci`:
                // an 8x8 plane's four quarters, or four samples' 4x4 planes (zero past the chunk).
                Some(sm) => {
                    for ci in 0..g.cin {
                        for v in 0..tb.div_ceil(L) {
                            let t0 = r0 * tw + v * L;
                            let r: [__m512; 4] = std::array::from_fn(|k| {
                                let (s, off) = piece(t0, k);
                                if s < ns {
                                    _mm512_loadu_ps(xp.add(s * in_plane + ci * plane + off))
                                } else {
                                    _mm512_setzero_ps()
                                }
                            });
                            sm.input(&r, vp.add(ci * TILE + v * L), g.cin * TILE);
                        }
                    }
                }
                None => {
                    for ci in 0..g.cin {
                        // Runs of tile rows within one sample.
                        let mut rr = 0;
                        while rr < nr {
                            let (s, ty) = ((r0 + rr) / th, (r0 + rr) % th);
                            let n = (th - ty).min(nr - rr);
                            let base = xp.add(s * in_plane + ci * plane);
                            it.tile_rows(base, ty, n, vp.add(ci * TILE + rr * tw), g.cin * TILE);
                            rr += n;
                        }
                    }
                }
            }
            // Products: per point, the group's operand (Cin x TILE, in L1) against every
            // output-channel block's transformed weights.
            for xi in 0..XI {
                let vb = vp.add(xi * g.cin * TILE);
                for cb in 0..cbs {
                    let uw = u.as_ptr().add((cb * XI + xi) * g.cin * MR);
                    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
                    for ci in 0..g.cin {
                        let vc = vb.add(ci * TILE);
                        let b = [
                            _mm512_loadu_ps(vc),
                            _mm512_loadu_ps(vc.add(L)),
                            _mm512_loadu_ps(vc.add(2 * L)),
                        ];
                        let wc = uw.add(ci * MR);
                        for r in 0..MR {
                            let a = _mm512_set1_ps(*wc.add(r));
                            for j in 0..NV {
                                acc[r][j] = _mm512_fmadd_ps(a, b[j], acc[r][j]);
                            }
                        }
                    }
                    for r in 0..MR {
                        let dst = sp.add(((cb * MR + r) * XI + xi) * TILE);
                        for j in 0..NV {
                            _mm512_storeu_ps(dst.add(j * L), acc[r][j]);
                        }
                    }
                }
            }
            // Output transform, whole output rows per (channel, tile row).
            let nvec = tb.div_ceil(L);
            for co in 0..g.cout {
                let sc = sp.add(co * XI * TILE);
                for j in 0..nvec {
                    let mm = |xi: usize| _mm512_loadu_ps(sc.add(xi * TILE + j * L));
                    // t[a][q] = (A^T M)[a][q] for the four columns q.
                    let mut t = [[_mm512_setzero_ps(); 4]; 2];
                    for q in 0..4 {
                        let (m_0, m_1, m_2, m_3) = (mm(q), mm(4 + q), mm(8 + q), mm(12 + q));
                        t[0][q] = _mm512_add_ps(_mm512_add_ps(m_0, m_1), m_2);
                        t[1][q] = _mm512_sub_ps(_mm512_sub_ps(m_1, m_2), m_3);
                    }
                    let first = j * L;
                    let nl = (tb - first).min(L);
                    if let Some(sm) = &small {
                        let y: [[__m512; 2]; 2] = std::array::from_fn(|a| {
                            let ta = &t[a];
                            [
                                _mm512_add_ps(_mm512_add_ps(ta[0], ta[1]), ta[2]),
                                _mm512_sub_ps(_mm512_sub_ps(ta[1], ta[2]), ta[3]),
                            ]
                        });
                        let t0 = r0 * tw + first;
                        for (k, o) in sm.output(&y).iter().enumerate() {
                            let (s, off) = piece(t0, k);
                            if s < ns {
                                _mm512_storeu_ps(yp.add(s * out_plane + co * plane + off), *o);
                            }
                        }
                        continue;
                    }
                    for (a, ta) in t.iter().enumerate() {
                        let y0 = _mm512_add_ps(_mm512_add_ps(ta[0], ta[1]), ta[2]);
                        let y1 = _mm512_sub_ps(_mm512_sub_ps(ta[1], ta[2]), ta[3]);
                        // Output row values of tiles 0..8 and 8..16 of the vector.
                        let lo = _mm512_permutex2var_ps(y0, il_lo, y1);
                        let hi = _mm512_permutex2var_ps(y0, il_hi, y1);
                        // The lanes' tiles are whole tile rows (tw divides 16).
                        let out = |q: usize| {
                            let tr = r0 + first / tw + q;
                            let (s, ty) = (tr / th, tr % th);
                            yp.add(s * out_plane + co * plane + (2 * ty + a) * w)
                        };
                        match w {
                            32 => {
                                let dst = out(0);
                                _mm512_storeu_ps(dst, lo);
                                _mm512_storeu_ps(dst.add(L), hi);
                            }
                            16 => {
                                _mm512_storeu_ps(out(0), lo);
                                if nl > tw {
                                    _mm512_storeu_ps(out(1), hi);
                                }
                            }
                            _ => {
                                _mm512_storeu_ps(row.as_mut_ptr(), lo);
                                _mm512_storeu_ps(row.as_mut_ptr().add(L), hi);
                                for q in 0..nl / tw {
                                    std::ptr::copy_nonoverlapping(
                                        row.as_ptr().add(q * w),
                                        out(q),
                                        w,
                                    );
                                }
                            }
                        }
                    }
                }
            }
            r0 += nr;
        }
    }
}
