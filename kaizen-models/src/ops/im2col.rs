//! The column matrix of the im2col convolution (`conv.rs`) and its adjoint: `im2col` gathers each
//! output position's receptive field into a column, `col2im` scatter-adds columns back into an input
//! gradient. Specialised for the plane widths and strides of the model zoo's ResNets (compile-time
//! widths, zero-bordered planes instead of bounds logic), with general fallbacks.

use super::conv::ConvGeom;
use super::host::with_inner_scratch;

/// `col (CinKK x HoWo) = im2col(x)` for one sample `x (Cin x H x W)`, row `r` of `col` at
/// `col[r * ld..][..HoWo]` (`ld >= HoWo`: the samples of a group sit side by side); writes every
/// element of those rows. A pointwise convolution's column matrix is the sample itself (copied).
pub(super) fn im2col(g: &ConvGeom, x: &[f32], col: &mut [f32], ld: usize) {
    if g.is_pointwise() {
        let n = g.n();
        for (r, src) in x.chunks_exact(n).enumerate() {
            col[r * ld..][..n].copy_from_slice(src);
        }
        return;
    }
    match (g.stride, g.wo) {
        (1, 4) => im2col_padded::<1, 4>(g, x, col, ld),
        (1, 8) => im2col_padded::<1, 8>(g, x, col, ld),
        (1, 16) => im2col_padded::<1, 16>(g, x, col, ld),
        (1, 32) => im2col_padded::<1, 32>(g, x, col, ld),
        (2, 4) => im2col_padded::<2, 4>(g, x, col, ld),
        (2, 8) => im2col_padded::<2, 8>(g, x, col, ld),
        (2, 16) => im2col_padded::<2, 16>(g, x, col, ld),
        // 28x28 inputs (Fashion-MNIST): 28, 14, 7
        (1, 7) => im2col_padded::<1, 7>(g, x, col, ld),
        (1, 14) => im2col_padded::<1, 14>(g, x, col, ld),
        (1, 28) => im2col_padded::<1, 28>(g, x, col, ld),
        (2, 7) => im2col_padded::<2, 7>(g, x, col, ld),
        (2, 14) => im2col_padded::<2, 14>(g, x, col, ld),
        (1, _) => im2col_s::<1>(g, x, col, ld),
        (2, _) => im2col_s::<2>(g, x, col, ld),
        _ => im2col_any(g, x, col, ld),
    }
}

/// [`im2col`] for a compile-time stride `S` and output width `W` (the ResNet planes of 32x32 and
/// 28x28 inputs). Each channel is first copied into a zero-bordered plane, so every column row is `Ho`
/// fixed-size copies of `W` values with no bounds logic: on 8x8 and 4x4 planes the per-row
/// overhead of the general loop cost more than the copying itself.
fn im2col_padded<const S: usize, const W: usize>(
    g: &ConvGeom,
    x: &[f32],
    col: &mut [f32],
    ld: usize,
) {
    debug_assert_eq!((g.stride, g.wo), (S, W));
    let (k, n, ho) = (g.k, g.n(), g.ho);
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    // The last tap reads up to row (Ho-1)*S + K-1 and column (W-1)*S + K-1 of the padded plane.
    let need = ((ho - 1) * S + k - 1) * wp + (W - 1) * S + k;
    let plane = hp * wp;
    if need > plane {
        return im2col_s::<S>(g, x, col, ld);
    }
    with_inner_scratch(plane, |xp| {
        xp.fill(0.0);
        for ci in 0..g.cin {
            let xc = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            for (iy, src) in xc.chunks_exact(g.w).enumerate() {
                xp[(iy + g.pad) * wp + g.pad..][..g.w].copy_from_slice(src);
            }
            for ky in 0..k {
                for kx in 0..k {
                    let row = &mut col[((ci * k + ky) * k + kx) * ld..][..n];
                    for (oy, r) in row.chunks_exact_mut(W).enumerate() {
                        let base = (oy * S + ky) * wp + kx;
                        let src = &xp[base..base + (W - 1) * S + 1];
                        let r: &mut [f32; W] = r.try_into().expect("chunk of W");
                        for (j, d) in r.iter_mut().enumerate() {
                            *d = src[j * S];
                        }
                    }
                }
            }
        }
    })
}

/// [`im2col`] for a compile-time stride: the rows of a small plane are a few values long, so the
/// inner copies are plain loops (vectorised for stride 1) rather than `memcpy`/`memset` calls.
fn im2col_s<const S: usize>(g: &ConvGeom, x: &[f32], col: &mut [f32], ld: usize) {
    let (k, n, wo) = (g.k, g.n(), g.wo);
    let plane = g.h * g.w;
    for ci in 0..g.cin {
        let xc = &x[ci * plane..(ci + 1) * plane];
        for ky in 0..k {
            let (oy_lo, oy_hi) = g.valid(ky, g.ho, g.h);
            for kx in 0..k {
                let (ox_lo, ox_hi) = g.valid(kx, wo, g.w);
                let row = &mut col[((ci * k + ky) * k + kx) * ld..][..n];
                row[..oy_lo * wo].fill(0.0);
                row[oy_hi * wo..].fill(0.0);
                let len = ox_hi.saturating_sub(ox_lo);
                for oy in oy_lo..oy_hi {
                    let iy = oy * S + ky - g.pad;
                    let r = &mut row[oy * wo..(oy + 1) * wo];
                    for v in &mut r[..ox_lo] {
                        *v = 0.0;
                    }
                    for v in &mut r[ox_hi.max(ox_lo)..] {
                        *v = 0.0;
                    }
                    if len > 0 {
                        let ix0 = ox_lo * S + kx - g.pad;
                        let src = &xc[iy * g.w + ix0..][..(len - 1) * S + 1];
                        let dst = &mut r[ox_lo..ox_hi];
                        if S == 1 {
                            dst.copy_from_slice(src);
                        } else {
                            for (d, s) in dst.iter_mut().zip(src.iter().step_by(S)) {
                                *d = *s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col`] for any stride (not used by the model zoo's 1/2 strides).
fn im2col_any(g: &ConvGeom, x: &[f32], col: &mut [f32], ld: usize) {
    let (k, n, wo) = (g.k, g.n(), g.wo);
    for ci in 0..g.cin {
        let xc = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..k {
            let (oy_lo, oy_hi) = g.valid(ky, g.ho, g.h);
            for kx in 0..k {
                let (ox_lo, ox_hi) = g.valid(kx, wo, g.w);
                let row = &mut col[((ci * k + ky) * k + kx) * ld..][..n];
                row.fill(0.0);
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.stride + ky - g.pad;
                    let xr = &xc[iy * g.w..(iy + 1) * g.w];
                    for ox in ox_lo..ox_hi {
                        row[oy * wo + ox] = xr[ox * g.stride + kx - g.pad];
                    }
                }
            }
        }
    }
}

/// `dx (Cin x H x W) = col2im(dcol)` for one sample (rows of `dcol` at stride `ld`, as in
/// [`im2col`]): overwrites `dx` with the scatter-add of `dcol`.
pub(super) fn col2im(g: &ConvGeom, dcol: &[f32], ld: usize, dx: &mut [f32]) {
    match (g.stride, g.wo) {
        (2, 4) => col2im_padded::<2, 4>(g, dcol, ld, dx),
        (2, 8) => col2im_padded::<2, 8>(g, dcol, ld, dx),
        (2, 16) => col2im_padded::<2, 16>(g, dcol, ld, dx),
        (2, 7) => col2im_padded::<2, 7>(g, dcol, ld, dx),
        (2, 14) => col2im_padded::<2, 14>(g, dcol, ld, dx),
        _ => col2im_any(g, dcol, ld, dx),
    }
}

/// [`col2im`] for a compile-time stride `S` and output width `W` (the strided ResNet layers of
/// 32x32 and 28x28 inputs), the mirror of [`im2col_padded`]: each channel is accumulated in a
/// zero-bordered plane, every column row adding `Ho` fixed-size strided rows of `W` values with no
/// bounds logic, and the plane's interior is then copied out. Every element of `dx` receives the
/// same terms in the same order (tap, then output row) as in [`col2im_any`]: the same bits. The
/// input gradients of width 16's stride-2 3x3 layers went from 1.9-3.1 to 1.4-1.7 ms each
/// (`layer_prof`, batch 64).
fn col2im_padded<const S: usize, const W: usize>(
    g: &ConvGeom,
    dcol: &[f32],
    ld: usize,
    dx: &mut [f32],
) {
    debug_assert_eq!((g.stride, g.wo), (S, W));
    let (k, n, ho) = (g.k, g.n(), g.ho);
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let need = ((ho - 1) * S + k - 1) * wp + (W - 1) * S + k;
    let plane = hp * wp;
    if need > plane {
        return col2im_any(g, dcol, ld, dx);
    }
    with_inner_scratch(plane, |xp| {
        for ci in 0..g.cin {
            xp.fill(0.0);
            for ky in 0..k {
                for kx in 0..k {
                    let row = &dcol[((ci * k + ky) * k + kx) * ld..][..n];
                    for (oy, r) in row.chunks_exact(W).enumerate() {
                        let base = (oy * S + ky) * wp + kx;
                        let dst = &mut xp[base..base + (W - 1) * S + 1];
                        let r: &[f32; W] = r.try_into().expect("chunk of W");
                        for (j, v) in r.iter().enumerate() {
                            dst[j * S] += *v;
                        }
                    }
                }
            }
            let xc = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            for (iy, d) in xc.chunks_exact_mut(g.w).enumerate() {
                d.copy_from_slice(&xp[(iy + g.pad) * wp + g.pad..][..g.w]);
            }
        }
    })
}

/// [`col2im`] for any geometry.
fn col2im_any(g: &ConvGeom, dcol: &[f32], ld: usize, dx: &mut [f32]) {
    let (k, n, wo) = (g.k, g.n(), g.wo);
    dx.fill(0.0);
    for ci in 0..g.cin {
        let xc = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..k {
            let (oy_lo, oy_hi) = g.valid(ky, g.ho, g.h);
            for kx in 0..k {
                let (ox_lo, ox_hi) = g.valid(kx, wo, g.w);
                if ox_hi <= ox_lo {
                    continue;
                }
                let row = &dcol[((ci * k + ky) * k + kx) * ld..][..n];
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.stride + ky - g.pad;
                    let xr = &mut xc[iy * g.w..(iy + 1) * g.w];
                    let r = &row[oy * wo + ox_lo..oy * wo + ox_hi];
                    let ix0 = ox_lo * g.stride + kx - g.pad;
                    if g.stride == 1 {
                        for (d, s) in xr[ix0..ix0 + r.len()].iter_mut().zip(r) {
                            *d += *s;
                        }
                    } else {
                        for (j, s) in r.iter().enumerate() {
                            xr[ix0 + j * g.stride] += *s;
                        }
                    }
                }
            }
        }
    }
}
