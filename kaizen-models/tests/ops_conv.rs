//! The fast CPU conv2d (forward, input gradient, weight gradient) against candle's own conv2d.
mod common {
    include!("ops_util.inc");
}
use candle_core::{Tensor, Var};
use common::*;
use kaizen_models::ops;

const TOL: f32 = 1e-4;

/// (batch, cin, h, w, cout, k, stride, padding)
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

const CASES: &[Case] = &[
    (2, 3, 7, 7, 5, 3, 1, 1),     // 3x3 s1 p1, odd size
    (1, 4, 9, 6, 3, 3, 2, 1),     // batch 1, 3x3 s2, non-square odd
    (3, 5, 8, 8, 6, 1, 2, 0),     // 1x1 s2 (ResNet downsample)
    (2, 6, 5, 5, 7, 1, 1, 0),     // 1x1 s1 (pointwise fast path)
    (2, 3, 6, 6, 4, 3, 1, 0),     // 3x3 no padding
    (1, 9, 4, 4, 10, 3, 2, 1),    // batch 1, tiny spatial
    (2, 2, 5, 5, 3, 3, 2, 2),     // padding 2
    (4, 11, 11, 11, 13, 3, 2, 1), // channels not multiple of 8
    (5, 3, 3, 3, 2, 3, 1, 1),     // output as small as the input
    (2, 3, 17, 16, 5, 3, 1, 1),   // fixed-width (16) im2col, odd height
    (1, 4, 18, 18, 3, 3, 1, 0),   // fixed-width im2col without padding, batch 1 (parallel gemm)
    (2, 5, 4, 4, 3, 3, 1, 1),     // fixed width 4, stride 1 (ResNet layer4 at 32x32)
    (2, 3, 8, 8, 4, 3, 2, 1),     // fixed width 4, stride 2
    (2, 3, 8, 8, 2, 1, 2, 0),     // 1x1 stride 2 onto width 4
    (1, 2, 32, 32, 3, 3, 2, 1),   // fixed width 16, stride 2
    (2, 3, 28, 28, 3, 3, 1, 1),   // fixed width 28 (Fashion-MNIST stem)
    (2, 3, 14, 14, 3, 3, 2, 1),   // fixed width 7, stride 2
    (3, 2, 16, 16, 4, 5, 1, 2),   // 5x5 kernel, stride 1
    (3, 20, 6, 6, 18, 3, 1, 1),   // channels over one 16x16 tile of the kernel flip / dW transpose
    (3, 3, 32, 32, 13, 3, 1, 1),  // 32x32 same conv: the direct kernels take all three passes
    (3, 17, 4, 4, 37, 3, 1, 1), // 4x4: Cout over one dW-transpose block (32), Cin over one flip block (16)
    (2, 16, 8, 8, 24, 3, 1, 1), // Winograd forward and (through the flipped kernel) input gradient
    (2, 4, 16, 15, 3, 3, 2, 1), // fixed width 8, stride 2, odd input width (padded col2im)
];

/// Runs `conv` on fresh Vars, backprops sum(y * r), returns (y, dx, dw).
fn run(
    case: &Case,
    conv: fn(&Tensor, &Tensor, usize, usize) -> candle_core::Result<Tensor>,
    seed: u64,
) -> anyhow::Result<(Tensor, Tensor, Tensor)> {
    let &(b, cin, h, w, cout, k, s, p) = case;
    let x = Var::from_tensor(&rand_tensor(seed, &[b, cin, h, w])?)?;
    let wt = Var::from_tensor(&(rand_tensor(seed + 1, &[cout, cin, k, k])? * 0.5)?)?;
    let y = conv(x.as_tensor(), wt.as_tensor(), s, p)?;
    let r = rand_tensor(seed + 2, y.dims())?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let dx = grads
        .get(x.as_tensor())
        .ok_or_else(|| anyhow::anyhow!("no dx"))?
        .clone();
    let dw = grads
        .get(wt.as_tensor())
        .ok_or_else(|| anyhow::anyhow!("no dw"))?
        .clone();
    Ok((y, dx, dw))
}

/// Direct-loop convolution with its exact gradients for loss sum(y * r), on host vectors:
/// an independent reference for both our kernel and candle's conv2d backward.
fn naive(case: &Case, seed: u64) -> anyhow::Result<(Tensor, Tensor, Tensor)> {
    let &(b, cin, h, w, cout, k, s, p) = case;
    let x = rand_tensor(seed, &[b, cin, h, w])?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let wt = (rand_tensor(seed + 1, &[cout, cin, k, k])? * 0.5)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let r = rand_tensor(seed + 2, &[b, cout, ho, wo])?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut y = vec![0f64; b * cout * ho * wo];
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; wt.len()];
    for bi in 0..b {
        for co in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let oi = ((bi * cout + co) * ho + oy) * wo + ox;
                    for ci in 0..cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (
                                    (oy * s + ky) as isize - p as isize,
                                    (ox * s + kx) as isize - p as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((bi * cin + ci) * h + iy as usize) * w + ix as usize;
                                let wi = ((co * cin + ci) * k + ky) * k + kx;
                                y[oi] += x[xi] as f64 * wt[wi] as f64;
                                dx[xi] += r[oi] as f64 * wt[wi] as f64;
                                dw[wi] += r[oi] as f64 * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    let dev = candle_core::Device::Cpu;
    let t = |v: Vec<f64>, d: &[usize]| {
        Tensor::from_vec(v.into_iter().map(|z| z as f32).collect::<Vec<_>>(), d, &dev)
    };
    Ok((
        t(y, &[b, cout, ho, wo])?,
        t(dx, &[b, cin, h, w])?,
        t(dw, &[cout, cin, k, k])?,
    ))
}

#[test]
fn fast_conv_matches_direct_loop_forward_and_gradients() -> anyhow::Result<()> {
    for (i, case) in CASES.iter().enumerate() {
        let seed = 100 + 10 * i as u64;
        let (y0, dx0, dw0) = naive(case, seed)?;
        let (y1, dx1, dw1) = run(case, ops::fast_conv2d, seed)?;
        // candle's forward agrees too.
        let x = rand_tensor(seed, &[case.0, case.1, case.2, case.3])?;
        let w = (rand_tensor(seed + 1, &[case.4, case.1, case.5, case.5])? * 0.5)?;
        assert!(
            max_rel_diff(&y1, &ops::reference_conv2d(&x, &w, case.6, case.7)?)? < TOL,
            "case {case:?}"
        );
        assert_eq!(y0.dims(), y1.dims(), "case {case:?}");
        let (ey, ex, ew) = (
            max_rel_diff(&y1, &y0)?,
            max_rel_diff(&dx1, &dx0)?,
            max_rel_diff(&dw1, &dw0)?,
        );
        assert!(
            ey < TOL && ex < TOL && ew < TOL,
            "case {case:?}: y {ey} dx {ex} dw {ew}"
        );
        // The output is not trivially zero (the comparison would then prove little).
        assert!(y1.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
    }
    Ok(())
}

/// candle's conv2d backward (the path of every non-CPU device) against the direct loop on every case.
/// Its input gradient is our vendored patch (a stride-1 conv2d of the dilated, padded gradient with the
/// flipped kernel instead of conv_transpose2d): odd sizes, strides 1 and 2, 1x1 and 5x5 kernels,
/// padding 0 to 2 and past every window, and the stride-2 shapes upstream's conv_transpose2d rejected
/// (W = 6, k 3, s 2, p 1).
#[test]
fn candle_conv_gradients_match_direct_loop() -> anyhow::Result<()> {
    let mut cases = CASES.to_vec();
    cases.push((2, 3, 6, 6, 4, 3, 2, 1));
    cases.push((1, 3, 15, 15, 4, 7, 2, 3)); // ImageNet stem shape (7x7 s2 p3), odd size
    cases.push((2, 3, 5, 5, 2, 1, 1, 1)); // padding beyond k - 1: the gradient is cropped
    cases.push((1, 2, 1, 1, 2, 1, 5, 2)); // every window in the padding: a zero input gradient
    for (i, case) in cases.iter().enumerate() {
        let seed = 300 + 10 * i as u64;
        let (y0, dx0, dw0) = naive(case, seed)?;
        let (y1, dx1, dw1) = run(case, ops::reference_conv2d, seed)?;
        let (ey, ex, ew) = (
            max_rel_diff(&y1, &y0)?,
            max_rel_diff(&dx1, &dx0)?,
            max_rel_diff(&dw1, &dw0)?,
        );
        assert!(
            ey < TOL && ex < TOL && ew < TOL,
            "case {case:?}: y {ey} dx {ex} dw {ew}"
        );
        let zero_grad = case.2 == 1 && case.6 == 5;
        assert_eq!(
            dx1.abs()?.sum_all()?.to_scalar::<f32>()? == 0.0,
            zero_grad,
            "case {case:?}"
        );
    }
    Ok(())
}

/// The direct AVX-512 kernels on every stride-1 "same" shape (including those the layer routes to
/// im2col + gemm): vectors spanning rows of small planes, a plane that is not a multiple of 16 lanes,
/// channel counts that leave partial register tiles, a 5x5 kernel (forward only: the weight gradient
/// kernel is 3x3). On a CPU without AVX-512 they must refuse with an error instead.
#[test]
fn direct_same_conv_kernels_match_direct_loop() -> anyhow::Result<()> {
    use ops::raw::{conv_same_bwd_weight, conv_same_fwd, ConvGeom};
    let mut cases: Vec<Case> = CASES
        .iter()
        .copied()
        .filter(|c| c.6 == 1 && c.5 > 1 && 2 * c.7 + 1 == c.5)
        .collect();
    cases.push((4, 9, 8, 8, 17, 3, 1, 1)); // 8x8 plane, 3 tiles of output channels (8 + 8 + 1)
    cases.push((1, 2, 9, 9, 3, 3, 1, 1)); // 81 positions: a 1-lane last vector, batch 1
    assert!(cases.len() >= 9, "{cases:?}");
    for (i, case) in cases.iter().enumerate() {
        let seed = 500 + 10 * i as u64;
        let &(b, cin, h, w, cout, k, s, p) = case;
        let g = ConvGeom::new(&[b, cin, h, w], &[cout, cin, k, k], s, p)?;
        let host = |t: Tensor| t.flatten_all()?.to_vec1::<f32>();
        let x = host(rand_tensor(seed, &[b, cin, h, w])?)?;
        let wt = host((rand_tensor(seed + 1, &[cout, cin, k, k])? * 0.5)?)?;
        let r = host(rand_tensor(seed + 2, &[b, cout, h, w])?)?;
        let fwd = conv_same_fwd(&g, &x, &wt);
        if !ops::raw::direct_conv_available(&g) {
            assert!(fwd.is_err(), "case {case:?}: ran without AVX-512");
            continue;
        }
        let (y0, _, dw0) = naive(case, seed)?;
        let y = Tensor::from_vec(fwd?, y0.dims(), &candle_core::Device::Cpu)?;
        let ey = max_rel_diff(&y, &y0)?;
        assert!(ey < TOL, "case {case:?}: y {ey}");
        if k == 3 {
            let dw = Tensor::from_vec(
                conv_same_bwd_weight(&g, &x, &r)?,
                dw0.dims(),
                &candle_core::Device::Cpu,
            )?;
            let ew = max_rel_diff(&dw, &dw0)?;
            assert!(ew < TOL, "case {case:?}: dw {ew}");
        } else {
            assert!(conv_same_bwd_weight(&g, &x, &r).is_err(), "case {case:?}");
        }
    }
    // Geometries outside the kernel are refused, not computed wrongly.
    let strided = ConvGeom::new(&[1, 2, 8, 8], &[3, 2, 3, 3], 2, 1)?;
    let (x, w) = (vec![0f32; 128], vec![0f32; 54]);
    assert!(conv_same_fwd(&strided, &x, &w).is_err());
    let valid = ConvGeom::new(&[1, 2, 8, 8], &[3, 2, 3, 3], 1, 0)?;
    assert!(conv_same_fwd(&valid, &x, &w).is_err());
    Ok(())
}

/// The Winograd F(2x2, 3x3) forward on every width it takes (4, 8, 16, 32): one and several tile rows
/// per plane, odd channel counts that leave partial register tiles, a plane of one tile row, a thread's
/// tiles (24) ending inside a 16-lane vector, and 64 input channels at 32x32, whose groups of 3 tile
/// rows straddle samples (16 rows each); on square 8x8 and 4x4 planes (16-tile vectors of one plane or
/// of four samples), 3-sample groups with a shorter last one and samples per thread (3, 2) that leave
/// a vector partly empty. On a CPU without AVX-512 it must refuse with an error instead, as it must on
/// geometries it does not take.
#[test]
fn winograd_kernel_matches_direct_loop() -> anyhow::Result<()> {
    use ops::raw::{conv3x3_fwd, winograd_available, ConvGeom};
    let cases: &[Case] = &[
        (2, 5, 8, 8, 11, 3, 1, 1),
        (3, 17, 16, 16, 9, 3, 1, 1),
        (1, 3, 32, 32, 13, 3, 1, 1),
        (2, 8, 4, 4, 19, 3, 1, 1),
        (2, 4, 6, 16, 3, 3, 1, 1),
        (3, 2, 2, 8, 5, 3, 1, 1),
        (3, 64, 32, 32, 9, 3, 1, 1),
        (7, 3, 8, 8, 5, 3, 1, 1),
        (5, 16, 4, 4, 7, 3, 1, 1),
    ];
    for (i, case) in cases.iter().enumerate() {
        let seed = 900 + 10 * i as u64;
        let &(b, cin, h, w, cout, k, s, p) = case;
        let g = ConvGeom::new(&[b, cin, h, w], &[cout, cin, k, k], s, p)?;
        let host = |t: Tensor| t.flatten_all()?.to_vec1::<f32>();
        let x = host(rand_tensor(seed, &[b, cin, h, w])?)?;
        let wt = host((rand_tensor(seed + 1, &[cout, cin, k, k])? * 0.5)?)?;
        let fwd = conv3x3_fwd(&g, &x, &wt);
        if !winograd_available(&g) {
            assert!(fwd.is_err(), "case {case:?}: ran without AVX-512");
            continue;
        }
        let (y0, _, _) = naive(case, seed)?;
        let y = Tensor::from_vec(fwd?, y0.dims(), &candle_core::Device::Cpu)?;
        let ey = max_rel_diff(&y, &y0)?;
        assert!(ey < TOL, "case {case:?}: y {ey}");
    }
    // Geometries outside the kernel are refused, not computed wrongly.
    let (x, w) = (vec![0f32; 2 * 12 * 12], vec![0f32; 3 * 2 * 9]);
    for (dims, stride, pad) in [
        ([1, 2, 8, 8], 2, 1),
        ([1, 2, 8, 8], 1, 0),
        ([1, 2, 12, 12], 1, 1),
    ] {
        let g = ConvGeom::new(&dims, &[3, 2, 3, 3], stride, pad)?;
        assert!(
            conv3x3_fwd(&g, &x[..2 * dims[2] * dims[3]], &w).is_err(),
            "{dims:?} s{stride} p{pad}"
        );
    }
    let odd = ConvGeom::new(&[1, 2, 7, 8], &[3, 2, 3, 3], 1, 1)?;
    assert!(conv3x3_fwd(&odd, &x[..112], &w).is_err());
    Ok(())
}

#[test]
fn public_conv2d_uses_the_fast_kernel_on_cpu_and_agrees() -> anyhow::Result<()> {
    let case = (2, 4, 6, 6, 3, 3, 1, 1);
    let (y0, dx0, dw0) = run(&case, ops::reference_conv2d, 7)?;
    let (y1, dx1, dw1) = run(&case, ops::conv2d, 7)?;
    assert!(max_rel_diff(&y1, &y0)? < TOL);
    assert!(max_rel_diff(&dx1, &dx0)? < TOL);
    assert!(max_rel_diff(&dw1, &dw0)? < TOL);
    Ok(())
}

#[test]
fn constant_input_gets_no_input_gradient_but_weight_gradient() -> anyhow::Result<()> {
    // x is plain data (not a Var): only the weight gradient exists, as with candle's conv.
    let x = rand_tensor(1, &[2, 3, 5, 5])?;
    let w = Var::from_tensor(&rand_tensor(2, &[4, 3, 3, 3])?)?;
    let y = ops::fast_conv2d(&x, w.as_tensor(), 1, 1)?;
    let grads = y.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    let dw = grads
        .get(w.as_tensor())
        .ok_or_else(|| anyhow::anyhow!("no dw"))?;
    let y0 = ops::reference_conv2d(&x, w.as_tensor(), 1, 1)?;
    let grads0 = y0.sum_all()?.backward()?;
    // candle's conv (the GPU path) computes no input gradient for it either.
    assert!(grads0.get(&x).is_none());
    let dw0 = grads0
        .get(w.as_tensor())
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no dw0"))?;
    assert!(max_rel_diff(dw, &dw0)? < TOL);
    Ok(())
}

#[test]
fn non_contiguous_input_is_handled() -> anyhow::Result<()> {
    // A transposed view (B,C,W,H) of a tensor: the kernel must read it in logical order.
    let x = rand_tensor(3, &[2, 3, 6, 5])?.transpose(2, 3)?;
    assert!(!x.is_contiguous());
    let w = rand_tensor(4, &[2, 3, 3, 3])?;
    let d = max_rel_diff(
        &ops::fast_conv2d(&x, &w, 2, 1)?,
        &ops::reference_conv2d(&x, &w, 2, 1)?,
    )?;
    assert!(d < TOL, "{d}");
    Ok(())
}

#[test]
fn bad_shapes_are_errors_not_panics() -> anyhow::Result<()> {
    let x = rand_tensor(5, &[1, 3, 4, 4])?;
    let w_bad_cin = rand_tensor(6, &[2, 4, 3, 3])?;
    let err = ops::fast_conv2d(&x, &w_bad_cin, 1, 1)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("incompatible"), "{err}");
    let w_big = rand_tensor(7, &[2, 3, 7, 7])?;
    let err = ops::fast_conv2d(&x, &w_big, 1, 0)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than"), "{err}");
    let x3 = rand_tensor(8, &[3, 4, 4])?;
    assert!(ops::fast_conv2d(&x3, &w_bad_cin, 1, 1).is_err());
    Ok(())
}
