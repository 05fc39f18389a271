//! Fully connected layer `y = x W^T + b` as one custom op, for the MLP heads.
//!
//! Through candle ops the layer is a matmul (whose gemm packs the whole weight on the calling
//! thread while the pool waits), a broadcast add, and in the backward a transposed copy of the
//! weight gradient and single-threaded adds. Here every gemm is split over the rows of its output
//! (the weight's rows for `y^T` and `dW`, its columns for `dx^T`), so each pool thread packs only its
//! share, and the bias is added during the transpose back to `y`. The input gradient of an
//! expanding layer (O >= 4 I, e.g. 128 -> 4096) is a small output with a long depth: there the
//! depth is split instead and the per-thread partials added in order.

use super::host::{
    assume_init_vec, cpu_slice, num_threads, par_chunks, par_map, sgemm_uninit, uninit_vec,
    with_slice, Mat, Uninit,
};
use super::profile::{timed, Kernel, TimedScope};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// The custom op: arg1 = x (B, I), arg2 = w (O, I), arg3 = b (O,), f32 contiguous on the CPU.
pub(crate) struct LinearOp;

fn dims(x: &[usize], w: &[usize], b: &[usize]) -> Result<(usize, usize, usize)> {
    match (x, w, b) {
        (&[bs, i], &[o, i2], &[o2]) if i == i2 && o == o2 => Ok((bs, i, o)),
        _ => bail!("linear: expected x (B, I), w (O, I), b (O), got {x:?}, {w:?}, {b:?}"),
    }
}

/// Rows per parallel piece of an `rows`-row gemm output: two pieces per thread.
fn rows_per_piece(rows: usize) -> usize {
    rows.div_ceil(2 * num_threads()).max(1)
}

/// `out (rows x cols)` = transpose of `src (cols x rows)` [+ `bias[col]`], in parallel over rows.
fn transpose_into(src: &[f32], rows: usize, cols: usize, bias: Option<&[f32]>) -> Result<Vec<f32>> {
    let mut out = uninit_vec(rows * cols);
    let per = rows_per_piece(rows);
    par_chunks(&mut out, per * cols, |i, chunk: &mut [Uninit]| {
        for (r, row) in chunk.chunks_mut(cols).enumerate() {
            let rr = i * per + r;
            for (c, d) in row.iter_mut().enumerate() {
                let v = src[c * rows + rr];
                d.write(bias.map_or(v, |b| v + b[c]));
            }
        }
        Ok(())
    })?;
    // SAFETY: the chunks cover `out` and every row of every chunk is written in full.
    #[allow(unsafe_code)]
    Ok(unsafe { assume_init_vec(out) })
}

/// `dst (rows x n) = a (rows x k) * b (k x n)` split over row blocks of `a`/`dst`; `a_at(r0)` is
/// the matrix `a` starting at row `r0`.
fn split_gemm<'a>(
    what: &str,
    rows: usize,
    n: usize,
    k: usize,
    a_at: impl Fn(usize) -> Mat<'a> + Sync,
    b: Mat<'a>,
) -> Result<Vec<f32>> {
    let mut dst = uninit_vec(rows * n);
    if dst.is_empty() {
        return Ok(Vec::new());
    }
    let per = rows_per_piece(rows);
    par_chunks(&mut dst, per * n, |i, chunk| {
        let r = chunk.len() / n;
        sgemm_uninit(what, r, n, k, chunk, n, a_at(i * per), b, 1)
    })?;
    // SAFETY: each chunk is an `r x n` block written in full by its gemm; the chunks cover dst.
    #[allow(unsafe_code)]
    Ok(unsafe { assume_init_vec(dst) })
}

/// `dx (B x I) = dy (B x O) * W (O x I)` with the depth O split into one range per pool thread:
/// each thread's partial product over its range, the partials then added in range order (fixed
/// for a given thread count, so deterministic).
fn depth_split_gemm(g: &[f32], w: &[f32], bs: usize, i: usize, o: usize) -> Result<Vec<f32>> {
    let parts = num_threads().min(o).max(1);
    let partials = par_map(parts, |p| {
        let (o0, o1) = (p * o / parts, (p + 1) * o / parts);
        let mut dst = uninit_vec(bs * i);
        sgemm_uninit(
            "linear input grad",
            bs,
            i,
            o1 - o0,
            &mut dst,
            i,
            Mat {
                data: &g[o0..],
                rs: o,
                cs: 1,
            },
            Mat {
                data: &w[o0 * i..],
                rs: i,
                cs: 1,
            },
            1,
        )?;
        // SAFETY: the gemm wrote all `bs x i` elements (row stride i).
        #[allow(unsafe_code)]
        Ok(unsafe { assume_init_vec(dst) })
    })?;
    let mut it = partials.into_iter();
    let mut dx = it.next().unwrap_or_else(|| vec![0f32; bs * i]);
    for p in it {
        for (d, v) in dx.iter_mut().zip(&p) {
            *d += *v;
        }
    }
    Ok(dx)
}

/// Forward on host slices: y (B x O).
pub(crate) fn linear_fwd(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    bs: usize,
    i: usize,
    o: usize,
) -> Result<Vec<f32>> {
    // y^T (O x B) = W (O x I) * x^T (I x B), split over W's rows; then y = (y^T)^T + b. x^T is copied out
    // row-major first: the gemm packs a row-major right-hand side about twice as fast as the column-major view of
    // x (64 x 4096 -> 256, two threads: 1.08 ms with the copy against 2.18 ms without).
    let xt_rows = transpose_into(x, i, bs, None)?;
    let xt = Mat {
        data: &xt_rows,
        rs: bs,
        cs: 1,
    };
    let yt = split_gemm(
        "linear forward",
        o,
        bs,
        i,
        |r0| Mat {
            data: &w[r0 * i..],
            rs: i,
            cs: 1,
        },
        xt,
    )?;
    transpose_into(&yt, bs, o, Some(b))
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "kaizen-linear"
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
        let (bs, i, o) = dims(l1.dims(), l2.dims(), l3.dims())?;
        let x = cpu_slice(s1, l1, "linear input")?;
        let w = cpu_slice(s2, l2, "linear weight")?;
        let b = cpu_slice(s3, l3, "linear bias")?;
        let y = timed(Kernel::Linear, || linear_fwd(x, w, b, bs, i, o))?;
        Ok((CpuStorage::F32(y), Shape::from((bs, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (bs, i, o) = dims(x.dims(), w.dims(), b.dims())?;
        let _t = TimedScope::new(Kernel::Linear);
        with_slice(dy, "linear output grad", |g| {
            // dy^T (O x B), copied out row-major (see the forward): the right-hand side of dx^T
            // and the left-hand side of dW.
            let expand = o >= 4 * i;
            let need_gt = w.track_op() || (x.track_op() && !expand);
            let gt_rows = if need_gt {
                transpose_into(g, o, bs, None)?
            } else {
                Vec::new()
            };
            let dx = if !x.track_op() {
                None
            } else if expand {
                // An expanding layer (128 -> 4096): dx (B x I) = dy (B x O) * W (O x I) is a small
                // output with a long depth, so the depth is split over the pool and the partials
                // added in order (split over dx^T's rows instead, every piece packed all of dy^T:
                // 128 -> 4096 at batch 64, 2 threads: forward + backward 2.5 -> 2.3 ms; dW also reads
                // dy^T row-major now).
                let v = with_slice(w, "linear weight", |ws| depth_split_gemm(g, ws, bs, i, o))?;
                Some(Tensor::from_vec(v, (bs, i), x.device())?)
            } else {
                // dx^T (I x B) = W^T (I x O) * dy^T (O x B), split over W's columns.
                let dxt = with_slice(w, "linear weight", |ws| {
                    split_gemm(
                        "linear input grad",
                        i,
                        bs,
                        o,
                        |r0| Mat {
                            data: &ws[r0..],
                            rs: 1,
                            cs: i,
                        },
                        Mat {
                            data: &gt_rows,
                            rs: bs,
                            cs: 1,
                        },
                    )
                })?;
                let v = transpose_into(&dxt, bs, i, None)?;
                Some(Tensor::from_vec(v, (bs, i), x.device())?)
            };
            let dw = if w.track_op() {
                // dW (O x I) = dy^T (O x B) * x (B x I), split over dW's rows.
                let v = with_slice(x, "linear input", |xs| {
                    split_gemm(
                        "linear weight grad",
                        o,
                        i,
                        bs,
                        |r0| Mat {
                            data: &gt_rows[r0 * bs..],
                            rs: bs,
                            cs: 1,
                        },
                        Mat {
                            data: xs,
                            rs: i,
                            cs: 1,
                        },
                    )
                })?;
                Some(Tensor::from_vec(v, (o, i), w.device())?)
            } else {
                None
            };
            let db = if b.track_op() {
                // Column sums of dy, over the batch in order (deterministic), split over columns.
                let mut v = vec![0f32; o];
                let per = rows_per_piece(o);
                par_chunks(&mut v, per, |k, chunk| {
                    let c0 = k * per;
                    for row in g.chunks_exact(o) {
                        for (d, s) in chunk.iter_mut().zip(&row[c0..]) {
                            *d += *s;
                        }
                    }
                    Ok(())
                })?;
                Some(Tensor::from_vec(v, o, b.device())?)
            } else {
                None
            };
            Ok((dx, dw, db))
        })
    }
}
