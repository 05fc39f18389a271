//! Fast CPU 2-D convolution (NCHW, f32, groups 1, dilation 1) as a candle custom op.
//!
//! Forward, per sample b: `y[b] (Cout x HoWo) = W (Cout x CinKK) * col[b] (CinKK x HoWo)` where
//! `col = im2col(x[b])` (`im2col.rs`). Backward: `dcol = W^T * dy[b]` then `dx[b] = col2im(dcol)`, and
//! `dW^T = sum_b col[b] * dy[b]^T`. A 1x1 stride-1 unpadded convolution skips im2col/col2im (the
//! sample itself is the column matrix); a stride-1 input gradient is computed as a forward
//! convolution with the flipped kernel (no col2im). Samples are spread over candle's thread pool;
//! every gemm runs on one thread, except when the batch is smaller than the thread count (then the
//! samples run in turn and each gemm is parallel). Where `direct::preferred` /
//! `direct::bwd_weight_preferred` say so (AVX-512, stride-1 same convolutions on planes where it was
//! measured faster), the forward (hence also the stride-1 input gradient) and the weight gradient run
//! the direct kernels of `direct.rs` instead; `winograd::preferred` takes precedence for the forward of
//! 3x3 padding-1 layers (Winograd F(2x2, 3x3) in `winograd.rs`).

use super::host::{
    assume_init_vec, cpu_slice, num_threads, par_chunks, sgemm, sgemm_uninit, uninit_vec,
    with_scratch, with_slice, write_slice, zeroed, Mat, Uninit,
};
use super::im2col::{col2im, im2col};
use super::profile::{timed, Kernel};
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// Geometry of one convolution: x (b, cin, h, w), weight (cout, cin, k, k), output (b, cout, ho, wo).
#[derive(Clone, Copy, Debug)]
#[allow(missing_docs)] // the fields are the dims named in the line above
pub struct ConvGeom {
    pub b: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeom {
    /// Geometry from the input and weight dims; errors on mismatched channels or an empty output.
    pub fn new(xd: &[usize], wd: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[b, cin, h, w], &[cout, cin2, k, k2]) = (xd, wd) else {
            bail!("conv2d: expected x (B,Cin,H,W) and w (Cout,Cin,K,K), got {xd:?} and {wd:?}")
        };
        if cin != cin2 || k != k2 || stride == 0 || k == 0 {
            bail!("conv2d: incompatible x {xd:?}, w {wd:?}, stride {stride}")
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            bail!("conv2d: kernel {k} larger than padded input {xd:?} (padding {pad})")
        }
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        Ok(Self {
            b,
            cin,
            h,
            w,
            cout,
            k,
            stride,
            pad,
            ho,
            wo,
        })
    }
    pub(super) fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }
    pub(super) fn n(&self) -> usize {
        self.ho * self.wo
    }
    pub(super) fn in_plane(&self) -> usize {
        self.cin * self.h * self.w
    }
    pub(super) fn out_plane(&self) -> usize {
        self.cout * self.n()
    }
    /// True when the column matrix of a sample is the sample itself.
    pub(super) fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    /// Range of output positions o (along one axis of length `out`) whose input index
    /// `o * stride + kk - pad` falls in `0..len`.
    pub(super) fn valid(&self, kk: usize, out: usize, len: usize) -> (usize, usize) {
        let s = self.stride;
        // first o with o*s + kk >= pad
        let lo = if kk >= self.pad {
            0
        } else {
            (self.pad - kk).div_ceil(s)
        };
        // last o with o*s + kk - pad <= len - 1  <=>  o*s <= len - 1 + pad - kk
        let lim = len + self.pad; // exclusive bound on o*s + kk
        let hi = if lim <= kk {
            0
        } else {
            ((lim - kk - 1) / s + 1).min(out)
        };
        (lo.min(hi), hi)
    }
}

/// Threads inside each gemm: 1 when samples are spread over the pool, all of them when the batch
/// is smaller than the thread count (then samples run one after the other).
pub(super) fn gemm_threads(g: &ConvGeom) -> usize {
    let nt = num_threads();
    if g.b >= nt {
        1
    } else {
        nt
    }
}

/// Columns one gemm should see: a group of samples shares one call (and one packing of the
/// weights) until it has about this many output positions.
const GROUP_COLS: usize = 512;

/// Samples per gemm call. Small planes (8x8, 4x4) give a per-sample gemm only 64 or 16 columns,
/// so the weight matrix would be packed again for every sample (at width 64 layer 4's 9 MiB of
/// weights, 32 times per call); grouping samples side by side amortises it. Never more than a
/// thread's share of the batch, so every thread still gets work; 1 when the gemm itself is parallel.
pub(super) fn group_size(g: &ConvGeom) -> usize {
    let nt = num_threads();
    if g.b < nt {
        return 1;
    }
    (GROUP_COLS / g.n().max(1)).clamp(1, g.b.div_ceil(nt))
}

/// Runs `f(b0, nb, out_chunk)` for consecutive groups of `per_group` samples (the last may be
/// smaller) over `plane`-sized per-sample slices of `out`: in parallel over groups, or one sample
/// at a time when the batch is smaller than the thread count (each gemm then is parallel).
fn for_groups<T: Send>(
    g: &ConvGeom,
    per_group: usize,
    out: &mut [T],
    plane: usize,
    f: impl Fn(usize, usize, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    if gemm_threads(g) > 1 {
        out.chunks_mut(plane)
            .enumerate()
            .try_for_each(|(i, o)| f(i, 1, o))
    } else {
        par_chunks(out, per_group * plane, |i, o| {
            f(i * per_group, o.len() / plane, o)
        })
    }
}

/// Copies the `nb` per-sample `(rows x n)` blocks of `src` (sample-major, as in NCHW) into one
/// `(rows x nb*n)` matrix `dst` with the samples side by side.
pub(super) fn gather_rows(src: &[f32], nb: usize, rows: usize, n: usize, dst: &mut [f32]) {
    let ld = nb * n;
    for gi in 0..nb {
        for r in 0..rows {
            dst[r * ld + gi * n..][..n].copy_from_slice(&src[(gi * rows + r) * n..][..n]);
        }
    }
}

/// A destination [`scatter_rows`] can fill: initialised f32 or not yet initialised slots.
trait Slot {
    fn put(dst: &mut [Self], src: &[f32])
    where
        Self: Sized;
}

impl Slot for f32 {
    fn put(dst: &mut [f32], src: &[f32]) {
        dst.copy_from_slice(src);
    }
}

impl Slot for Uninit {
    fn put(dst: &mut [Uninit], src: &[f32]) {
        write_slice(dst, src);
    }
}

/// The inverse of [`gather_rows`]: `(rows x nb*n)` back into `nb` sample-major blocks (writes every
/// element of those blocks).
fn scatter_rows<T: Slot>(src: &[f32], nb: usize, rows: usize, n: usize, dst: &mut [T]) {
    let ld = nb * n;
    for gi in 0..nb {
        for r in 0..rows {
            T::put(
                &mut dst[(gi * rows + r) * n..][..n],
                &src[r * ld + gi * n..][..n],
            );
        }
    }
}

/// Forward on host slices: x (B*Cin*H*W), w (Cout*CinKK) -> y (B*Cout*Ho*Wo).
/// Per group of `nb` samples: `Y (Cout x nb*HoWo) = W * [col[b0] .. col[b0+nb-1]]`.
pub fn conv_fwd(g: &ConvGeom, x: &[f32], w: &[f32]) -> Result<Vec<f32>> {
    if super::winograd::preferred(g) {
        return super::winograd::conv3x3_fwd(g, x, w);
    }
    if super::direct::preferred(g) {
        return super::direct::conv_same_fwd(g, x, w);
    }
    let (kdim, n) = (g.kdim(), g.n());
    let total = g.b * g.out_plane();
    if total == 0 {
        return Ok(Vec::new());
    }
    let mut y = uninit_vec(total);
    let inner = gemm_threads(g);
    let wm = Mat {
        data: w,
        rs: kdim,
        cs: 1,
    };
    let per = group_size(g);
    // Every group writes its whole slice of y: a gemm of `Cout x HoWo` (row stride HoWo) for one
    // sample, or the scatter of all `nb * Cout` rows for several.
    for_groups(g, per, &mut y, g.out_plane(), |b0, nb, yc| {
        let xs = &x[b0 * g.in_plane()..(b0 + nb) * g.in_plane()];
        let ld = nb * n;
        if nb == 1 && g.is_pointwise() {
            let cmat = Mat {
                data: xs,
                rs: n,
                cs: 1,
            };
            return sgemm_uninit("conv2d forward", g.cout, n, kdim, yc, n, wm, cmat, inner);
        }
        let ylen = if nb == 1 { 0 } else { g.cout * ld };
        with_scratch(kdim * ld + ylen, |buf| {
            let (col, ytmp) = buf.split_at_mut(kdim * ld);
            for gi in 0..nb {
                let xb = &xs[gi * g.in_plane()..(gi + 1) * g.in_plane()];
                im2col(g, xb, &mut col[gi * n..], ld);
            }
            let cmat = Mat {
                data: col,
                rs: ld,
                cs: 1,
            };
            if nb == 1 {
                return sgemm_uninit("conv2d forward", g.cout, n, kdim, yc, n, wm, cmat, inner);
            }
            sgemm(
                "conv2d forward",
                g.cout,
                ld,
                kdim,
                ytmp,
                ld,
                false,
                wm,
                cmat,
                inner,
            )?;
            scatter_rows(ytmp, nb, g.cout, n, yc);
            Ok(())
        })
    })?;
    // SAFETY: `for_groups` hands out every per-sample slice of `y` exactly once and each group
    // writes all of its slice (see above); an error returned early never reaches this line.
    #[allow(unsafe_code)]
    Ok(unsafe { assume_init_vec(y) })
}

/// `w' (Cin, Cout, K, K)` with `w'[ci, co, ky, kx] = w[co, ci, K-1-ky, K-1-kx]` (the kernel of the
/// stride-1 input gradient as a forward convolution), tiled over (co, ci).
fn flip_kernel(w: &[f32], cout: usize, cin: usize, k: usize) -> Result<Vec<f32>> {
    let kk = k * k;
    let mut wf = uninit_vec(w.len());
    const T: usize = 16;
    // Blocks of T input channels (rows of w') in parallel: serial, it was ~20% of width 64's
    // 512-channel 4x4 input gradient.
    par_chunks(&mut wf, T * cout * kk, |blk, rows| {
        let ci0 = blk * T;
        let nci = rows.len() / (cout * kk).max(1);
        for co0 in (0..cout).step_by(T) {
            for co in co0..(co0 + T).min(cout) {
                for ci in 0..nci {
                    let src = &w[(co * cin + ci0 + ci) * kk..][..kk];
                    let dst = &mut rows[(ci * cout + co) * kk..][..kk];
                    for (t, d) in dst.iter_mut().enumerate() {
                        d.write(src[kk - 1 - t]);
                    }
                }
            }
        }
        Ok(())
    })?;
    // SAFETY: the chunks cover `wf` and each writes every entry of its rows.
    #[allow(unsafe_code)]
    Ok(unsafe { assume_init_vec(wf) })
}

/// Input gradient on host slices: dy (B*Cout*HoWo), w -> dx (B*Cin*H*W).
///
/// Stride 1 (k > 1, padding <= k - 1): a forward convolution of dy with the spatially flipped,
/// channel-transposed kernel and padding k - 1 - p (im2col + gemm with depth Cout*K*K, as cheap as
/// the forward). Otherwise, per group: `dcol = W^T dY` then col2im per sample (1x1 stride 1:
/// `dX = W^T dY` directly).
pub fn conv_bwd_input(g: &ConvGeom, dy: &[f32], w: &[f32]) -> Result<Vec<f32>> {
    let (kdim, n) = (g.kdim(), g.n());
    if g.stride == 1 && g.k > 1 && g.pad < g.k {
        let k = g.k;
        // w' (Cin, Cout, K, K): w'[ci, co, ky, kx] = w[co, ci, k-1-ky, k-1-kx].
        let wf = flip_kernel(w, g.cout, g.cin, k)?;
        let gt = ConvGeom::new(
            &[g.b, g.cout, g.ho, g.wo],
            &[g.cin, g.cout, k, k],
            1,
            k - 1 - g.pad,
        )?;
        if gt.ho == g.h && gt.wo == g.w {
            return conv_fwd(&gt, dy, &wf);
        }
    }
    // Zeroed group by group inside the parallel loop (col2im accumulates into it): a
    // `vec![0.0; ..]` is a serial memset of the whole batch's gradient while the pool waits.
    let mut dx = uninit_vec(g.b * g.in_plane());
    if dx.is_empty() {
        return Ok(Vec::new());
    }
    let inner = gemm_threads(g);
    // W^T: (CinKK x Cout), element (i, j) = w[j * kdim + i].
    let wt = Mat {
        data: w,
        rs: 1,
        cs: kdim,
    };
    let per = group_size(g);
    for_groups(g, per, &mut dx, g.in_plane(), |b0, nb, dxc| {
        let dxc = zeroed(dxc);
        let dys = &dy[b0 * g.out_plane()..(b0 + nb) * g.out_plane()];
        let ld = nb * n;
        let glen = if nb == 1 { 0 } else { g.cout * ld };
        with_scratch(kdim * ld + glen, |buf| {
            let (dcol, dyg) = buf.split_at_mut(kdim * ld);
            let dym = if nb == 1 {
                Mat {
                    data: dys,
                    rs: n,
                    cs: 1,
                }
            } else {
                gather_rows(dys, nb, g.cout, n, dyg);
                Mat {
                    data: dyg,
                    rs: ld,
                    cs: 1,
                }
            };
            if g.is_pointwise() && nb == 1 {
                return sgemm(
                    "conv2d input grad",
                    kdim,
                    n,
                    g.cout,
                    dxc,
                    n,
                    false,
                    wt,
                    dym,
                    inner,
                );
            }
            sgemm(
                "conv2d input grad",
                kdim,
                ld,
                g.cout,
                dcol,
                ld,
                false,
                wt,
                dym,
                inner,
            )?;
            if g.is_pointwise() {
                scatter_rows(dcol, nb, kdim, n, dxc);
                return Ok(());
            }
            for (gi, dxb) in dxc.chunks_mut(g.in_plane()).enumerate() {
                col2im(g, &dcol[gi * n..], ld, dxb);
            }
            Ok(())
        })
    })?;
    // SAFETY: `for_groups` hands every per-sample slice to exactly one group, which zeroes it first.
    #[allow(unsafe_code)]
    Ok(unsafe { assume_init_vec(dx) })
}

/// The candle custom op: arg1 = x (B,Cin,H,W), arg2 = w (Cout,Cin,K,K), both f32 contiguous on CPU.
pub(crate) struct Conv2dOp {
    pub stride: usize,
    pub pad: usize,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "kaizen-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = ConvGeom::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        let x = cpu_slice(s1, l1, "conv2d input")?;
        let w = cpu_slice(s2, l2, "conv2d weight")?;
        let y = timed(Kernel::ConvFwd, || conv_fwd(&g, x, w))?;
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.cout, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = ConvGeom::new(x.dims(), w.dims(), self.stride, self.pad)?;
        let dx = if x.track_op() {
            let v = with_slice(dy, "conv2d output grad", |dys| {
                with_slice(w, "conv2d weight", |ws| {
                    timed(Kernel::ConvDx, || conv_bwd_input(&g, dys, ws))
                })
            })?;
            Some(Tensor::from_vec(v, x.shape(), x.device())?)
        } else {
            None
        };
        let dw = if w.track_op() {
            let v = with_slice(dy, "conv2d output grad", |dys| {
                with_slice(x, "conv2d input", |xs| {
                    timed(Kernel::ConvDw, || {
                        super::wgrad::conv_bwd_weight(&g, xs, dys)
                    })
                })
            })?;
            Some(Tensor::from_vec(v, w.shape(), w.device())?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}
