//! Host-side helpers shared by the CPU kernels: borrowing a tensor's f32 data as a slice, a checked
//! wrapper around the `gemm` crate, and the thread count.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};

/// Number of worker threads the kernels split work into: candle's own count (`RAYON_NUM_THREADS`,
/// else the number of cores), so the custom ops use the same pool and width as candle's ops.
pub(crate) fn num_threads() -> usize {
    candle_core::utils::get_num_threads().max(1)
}

/// The contiguous f32 slice a CPU storage + layout describe. Errors (naming `what`) if the storage is
/// not f32 on the CPU or the layout is not contiguous (callers make their inputs contiguous first).
pub(crate) fn cpu_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => bail!("{what}: expected f32 storage, got {:?}", other.dtype()),
    };
    match l.contiguous_offsets() {
        Some((start, end)) if end <= data.len() => Ok(&data[start..end]),
        _ => bail!("{what}: expected a contiguous layout, got {l:?}"),
    }
}

/// Runs `f` on the contiguous f32 data of `t` (a CPU tensor), without copying when `t` already is
/// contiguous.
pub(crate) fn with_slice<R>(
    t: &Tensor,
    what: &str,
    f: impl FnOnce(&[f32]) -> Result<R>,
) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(cpu_slice(s, layout, what)?),
        _ => bail!("{what}: the fast kernels run on the CPU only"),
    }
}

/// Dense matrix with explicit strides over a slice: element (i, j) lives at `i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// Highest element offset a `rows x cols` matrix with strides (rs, cs) touches, plus one.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst (m x n) = [dst +] a (m x k) * b (k x n)`, single-threaded unless `threads > 1`.
/// `dst` is row-major with row stride `dst_rs` (column stride 1). Bounds are checked before the
/// call; a violation is an error naming `what`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    what: &str,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: Mat<'_>,
    b: Mat<'_>,
    threads: usize,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(0.0);
            }
        }
        return Ok(());
    }
    if extent(m, n, dst_rs, 1) > dst.len()
        || extent(m, k, a.rs, a.cs) > a.data.len()
        || extent(k, n, b.rs, b.cs) > b.data.len()
    {
        bail!("{what}: gemm operand out of bounds (m={m}, n={n}, k={k})");
    }
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    gemm_raw(m, n, k, dst, dst_rs, accumulate, a, b, par);
    Ok(())
}

#[allow(unsafe_code, clippy::too_many_arguments)]
fn gemm_raw(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: Mat<'_>,
    b: Mat<'_>,
    par: gemm::Parallelism,
) {
    // SAFETY: `sgemm` checked that every element the three strided matrices address lies inside its
    // slice (`extent` <= len), `dst` is uniquely borrowed and cannot alias `a` or `b` (shared
    // borrows), and all strides fit in isize because they index existing allocations.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    }
}
