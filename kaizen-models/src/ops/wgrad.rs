//! Weight gradient of the im2col convolution: `dW^T (CinKK x Cout) = sum_b col[b] * dy[b]^T`.
//!
//! Each pool slot sums a fixed range of samples into its own full-size partial `dW^T`, and the
//! partials are added in slot order, so every element is a fixed-order sum: the result is
//! bit-reproducible for a given thread count. The partials are summed and transposed to
//! `dW (Cout x CinKK)` in one pass of parallel tiles. Done on one thread, that sum and transpose
//! were ~40% of width 64's 512-channel 4x4 weight gradient (9 MiB; 18.6 -> 10.7 ms at batch 32).
//! Splitting the input channels over the pool instead (no partial sums) was measured as no faster
//! on any ResNet-18 layer.

use super::conv::{gather_rows, gemm_threads, group_size, ConvGeom};
use super::host::{
    assume_init_vec, num_threads, par_chunks, par_map, sgemm, uninit_vec, with_scratch, Mat,
};
use super::im2col::im2col;
use candle_core::Result;

/// Weight gradient on host slices: x, dy -> dW (Cout*CinKK), summed over the batch.
pub fn conv_bwd_weight(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
    if super::direct::bwd_weight_preferred(g) {
        return super::direct::conv_same_bwd_weight(g, x, dy);
    }
    let partials = by_samples(g, x, dy)?;
    sum_transposed(&partials, g.kdim(), g.cout)
}

/// `dW^T` with the samples split over the pool. Each pool slot
/// accumulates its own partial sum over a fixed contiguous range of samples (in groups, as the
/// forward); the partials are added at the end in slot order (deterministic for a given thread
/// count).
fn by_samples(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Result<Vec<Vec<f32>>> {
    let (kdim, n) = (g.kdim(), g.n());
    let wlen = g.cout * kdim;
    let inner = gemm_threads(g);
    let slots = if inner > 1 {
        1
    } else {
        num_threads().min(g.b).max(1)
    };
    let per = group_size(g);
    // Each group adds `dW^T (CinKK x Cout) += col (CinKK x nb*HoWo) * dY^T (nb*HoWo x Cout)`: with
    // the long pixel axis as the gemm depth and both operands read along it, this orientation runs
    // at full speed for every layer shape (`dy * col^T` is several times slower for small Cout).
    let one_group = |b0: usize, nb: usize, dwt: &mut [f32], first: bool| -> Result<()> {
        let xs = &x[b0 * g.in_plane()..(b0 + nb) * g.in_plane()];
        let dys = &dy[b0 * g.out_plane()..(b0 + nb) * g.out_plane()];
        let ld = nb * n;
        let direct_x = nb == 1 && g.is_pointwise();
        let clen = if direct_x { 0 } else { kdim * ld };
        let glen = if nb == 1 { 0 } else { g.cout * ld };
        with_scratch(clen + glen, |buf| {
            let (col, dyg) = buf.split_at_mut(clen);
            // dY^T: (nb*HoWo x Cout), element (j, co) = dY[co * ld + j].
            let dyt = if nb == 1 {
                Mat {
                    data: dys,
                    rs: 1,
                    cs: n,
                }
            } else {
                gather_rows(dys, nb, g.cout, n, dyg);
                Mat {
                    data: dyg,
                    rs: 1,
                    cs: ld,
                }
            };
            let cm = if direct_x {
                Mat {
                    data: xs,
                    rs: n,
                    cs: 1,
                }
            } else {
                for gi in 0..nb {
                    let xb = &xs[gi * g.in_plane()..(gi + 1) * g.in_plane()];
                    im2col(g, xb, &mut col[gi * n..], ld);
                }
                Mat {
                    data: col,
                    rs: ld,
                    cs: 1,
                }
            };
            sgemm(
                "conv2d weight grad",
                kdim,
                g.cout,
                ld,
                dwt,
                g.cout,
                !first,
                cm,
                dyt,
                inner,
            )
        })
    };
    // Slot `s` owns the fixed sample range `s*B/slots .. (s+1)*B/slots`, so every partial sum (and
    // their in-order total) is the same whichever thread runs it: bit-reproducible under any load.
    // (Pulling samples from a shared cursor made the grouping, hence the rounding, timing-dependent.)
    let partials = par_map(slots, |s| {
        let mut dwt = vec![0f32; wlen];
        let (lo, hi) = (s * g.b / slots, (s + 1) * g.b / slots);
        let mut b0 = lo;
        while b0 < hi {
            let nb = per.min(hi - b0);
            one_group(b0, nb, &mut dwt, b0 == lo)?;
            b0 += nb;
        }
        Ok(dwt)
    })?;
    Ok(partials)
}

/// `dW (Cout x CinKK)` from the sum of the partial `dW^T (CinKK x Cout)`s (added in slot order),
/// in 32x32 tiles, blocks of 32 output rows in parallel.
fn sum_transposed(partials: &[Vec<f32>], kdim: usize, cout: usize) -> Result<Vec<f32>> {
    const T: usize = 32;
    let mut dw = uninit_vec(kdim * cout);
    par_chunks(&mut dw, T * kdim, |blk, rows| {
        let c0 = blk * T;
        let nco = rows.len() / kdim.max(1);
        for i0 in (0..kdim).step_by(T) {
            for co in 0..nco {
                for i in i0..(i0 + T).min(kdim) {
                    let at = i * cout + c0 + co;
                    let mut v = partials.first().map_or(0.0, |p| p[at]);
                    for p in partials.iter().skip(1) {
                        v += p[at];
                    }
                    rows[co * kdim + i].write(v);
                }
            }
        }
        Ok(())
    })?;
    // SAFETY: the chunks cover `dw`; each writes all `kdim` entries of its rows.
    #[allow(unsafe_code)]
    Ok(unsafe { assume_init_vec(dw) })
}
