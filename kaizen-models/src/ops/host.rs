//! Host-side helpers shared by the CPU kernels: borrowing a tensor's f32 data as a slice, a checked
//! wrapper around the `gemm` crate, and the thread count.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Number of worker threads the kernels split work into: candle's own count (`RAYON_NUM_THREADS`,
/// else the number of cores), so the custom ops use the same pool and width as candle's ops.
/// Looked up once per process: candle re-reads the environment and, without `RAYON_NUM_THREADS`,
/// `/proc/cpuinfo` on every call, which cost ~3% of a small model's step when done per kernel.
pub(crate) fn num_threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| candle_core::utils::get_num_threads().max(1))
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

/// An f32 slot a kernel writes before anyone reads it.
pub(crate) type Uninit = std::mem::MaybeUninit<f32>;

/// `len` uninitialised output slots. A kernel output built with `vec![0.0; len]` is zero-filled on
/// the calling thread before the parallel kernel overwrites it: measured ~7% of a w16 training step
/// of serial `memset` (the pool idles meanwhile). Fill every slot, then [`assume_init_vec`].
pub(crate) fn uninit_vec(len: usize) -> Vec<Uninit> {
    let mut v: Vec<Uninit> = Vec::with_capacity(len);
    v.resize_with(len, Uninit::uninit);
    v
}

/// The `Vec<f32>` behind a fully written [`uninit_vec`].
///
/// # Safety
/// Every element of `v` must have been written.
#[allow(unsafe_code)]
pub(crate) unsafe fn assume_init_vec(v: Vec<Uninit>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: same allocation, layout and capacity (`MaybeUninit<f32>` is layout-identical to
    // `f32`), ownership moves (the original is not dropped), all elements initialised (contract).
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, cap) }
}

/// Writes `src` into the uninitialised slots `dst` (same length).
pub(crate) fn write_slice(dst: &mut [Uninit], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        d.write(*s);
    }
}

/// Fills uninitialised slots with zeros and returns them as the initialised `f32`s they now are.
pub(crate) fn zeroed(dst: &mut [Uninit]) -> &mut [f32] {
    for d in dst.iter_mut() {
        d.write(0.0);
    }
    // SAFETY: every element was just written; `MaybeUninit<f32>` has the layout of `f32`, and the
    // returned borrow is the input's (unique, same length).
    #[allow(unsafe_code)]
    unsafe {
        &mut *(dst as *mut [Uninit] as *mut [f32])
    }
}

/// Dense matrix with explicit strides over a slice: element (i, j) lives at `i * rs + j * cs`.
#[derive(Clone, Copy)]
#[allow(missing_docs)] // data, row stride, column stride
pub struct Mat<'a> {
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
pub fn sgemm(
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
    if k == 0 && !accumulate {
        for i in 0..m {
            dst[i * dst_rs..i * dst_rs + n].fill(0.0);
        }
        return Ok(());
    }
    let len = dst.len();
    // SAFETY: the pointer and length come from a uniquely borrowed slice of initialised f32
    // (readable and writable), which cannot alias the shared borrows `a` and `b`.
    #[allow(unsafe_code)]
    unsafe {
        sgemm_raw(
            what,
            m,
            n,
            k,
            dst.as_mut_ptr(),
            len,
            dst_rs,
            accumulate,
            a,
            b,
            threads,
        )
    }
}

/// [`sgemm`] without accumulation into a not yet initialised `dst`: every element of the
/// `m x n` block (row stride `dst_rs`) is written, none is read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_uninit(
    what: &str,
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [Uninit],
    dst_rs: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    threads: usize,
) -> Result<()> {
    if k == 0 {
        for i in 0..m {
            for v in &mut dst[i * dst_rs..i * dst_rs + n] {
                v.write(0.0);
            }
        }
        return Ok(());
    }
    let len = dst.len();
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the slice is uniquely borrowed (no alias
    // with `a`, `b`) and writable for `len` elements; with `accumulate == false` the gemm only
    // writes `dst`, so nothing uninitialised is read.
    #[allow(unsafe_code)]
    unsafe {
        sgemm_raw(
            what,
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            len,
            dst_rs,
            false,
            a,
            b,
            threads,
        )
    }
}

/// Bounds checks, then the gemm into `dst_len` elements at `dst` (read only when `accumulate`).
///
/// # Safety
/// `dst` must be valid for writes of `dst_len` f32 (and for reads, initialised, when
/// `accumulate`), and must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments, unsafe_code)]
unsafe fn sgemm_raw(
    what: &str,
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_len: usize,
    dst_rs: usize,
    accumulate: bool,
    a: Mat<'_>,
    b: Mat<'_>,
    threads: usize,
) -> Result<()> {
    if m == 0 || n == 0 || k == 0 {
        return Ok(());
    }
    if extent(m, n, dst_rs, 1) > dst_len
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
    // SAFETY: every element the three strided matrices address lies inside its buffer (checked
    // above: `extent` <= length), `dst` is valid and unaliased (this function's contract), and all
    // strides fit in isize because they index existing allocations.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
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
    Ok(())
}

/// Which threads the kernels split their work over (`KAIZEN_POOL`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// Default: the pool the caller runs on. Through [`on_kernel_pool`] that is the kernels' own
    /// rayon pool, whose thread runs the caller's code too; elsewhere rayon's global pool.
    Rayon,
    /// `KAIZEN_POOL=global`: [`on_kernel_pool`] runs its closure on the calling thread, so the
    /// kernels inject their work into rayon's global pool and the caller sleeps until it is done
    /// (the behaviour before the kernel pool; A/B).
    Global,
    /// `KAIZEN_POOL=candle`: candle's barrier pool (the one its element-wise ops use; its waits spin).
    Candle,
}

fn pool_choice() -> Pool {
    static CHOICE: OnceLock<Pool> = OnceLock::new();
    *CHOICE.get_or_init(|| match std::env::var("KAIZEN_POOL").as_deref() {
        Ok("candle") => Pool::Candle,
        Ok("global") => Pool::Global,
        _ => Pool::Rayon,
    })
}

fn use_candle_pool() -> bool {
    pool_choice() == Pool::Candle
}

/// Runs `f` on a thread of the kernels' own rayon pool (candle's thread count, created on first
/// use) and returns its result. A kernel called from a thread outside any pool injects its work
/// into the pool and sleeps until a worker finishes it: two thread wake-ups per kernel call, a few
/// thousand per training step. Called from a pool thread, the caller takes one share of the work
/// itself and at most one other thread is woken (measured on 2 cores: the Kaizen w16 step 4-5%
/// faster, supervised w16 3-10%, supervised w64 5%). A separate pool, not rayon's global one, so
/// that code waiting on other threads that use the global pool (the data prefetcher) can never
/// hold the only thread they need.
pub fn on_kernel_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    if pool_choice() != Pool::Rayon {
        return f();
    }
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(num_threads())
            .thread_name(|i| format!("kaizen-kernels-{i}"))
            // The caller's whole program runs here (autograd walks the graph recursively).
            .stack_size(64 << 20)
            .build()
            .ok()
    });
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// Runs `f(i)` for every `i in 0..n` in parallel. One slot per thread pulls items one at a time
/// from a shared cursor, so a descheduled thread delays the rest by one item at most.
pub(crate) fn par_slots(n: usize, f: impl Fn(usize) + Sync) {
    let threads = num_threads().min(n);
    if threads <= 1 {
        (0..n).for_each(f);
        return;
    }
    let cursor = AtomicUsize::new(0);
    let drain = || loop {
        let i = cursor.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        f(i);
    };
    if use_candle_pool() {
        candle_core::utils::barrier_pool()
            .execute_chunked(threads, |slots| slots.for_each(|_| drain()));
    } else {
        use rayon::prelude::*;
        (0..threads).into_par_iter().for_each(|_| drain());
    }
}

/// `f(i)` for `i in 0..n` in parallel, results in order; the first error (by index) wins.
pub(crate) fn par_map<R: Send>(n: usize, f: impl Fn(usize) -> Result<R> + Sync) -> Result<Vec<R>> {
    let cells: Vec<Mutex<Option<Result<R>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    par_slots(n, |i| {
        let r = f(i);
        *lock(&cells[i]) = Some(r);
    });
    cells
        .into_iter()
        .map(
            |c| match c.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(r) => r,
                None => bail!("parallel kernel: item skipped"),
            },
        )
        .collect()
}

/// `f(i, chunk_i)` over the `chunk`-sized pieces of `data`, in parallel.
pub(crate) fn par_chunks<T: Send>(
    data: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    let pieces: Vec<Mutex<&mut [T]>> = data.chunks_mut(chunk.max(1)).map(Mutex::new).collect();
    par_map(pieces.len(), |i| f(i, &mut lock(&pieces[i])))?;
    Ok(())
}

/// Locks a mutex, ignoring poisoning (a panicking kernel thread already propagates its panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SCRATCH_INNER: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a per-thread scratch buffer of `len` f32 (contents unspecified: `f` must write
/// before it reads). The buffer is reused across calls, so im2col tiles cost no allocation.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    scratch_in(&SCRATCH, len, f)
}

/// Like [`with_scratch`], on a second per-thread buffer, for a kernel that runs inside another
/// kernel's `with_scratch` (im2col's padded plane inside the column buffer's scope).
pub(crate) fn with_inner_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    scratch_in(&SCRATCH_INNER, len, f)
}

fn scratch_in<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        // Re-entrant use on the same thread: fall back to a fresh buffer.
        Err(_) => f(&mut vec![0f32; len]),
    })
}

/// Tunes glibc's allocator once per process for training workloads: large tensors are served from
/// the heap (mmap threshold 32 MiB, the maximum) and freed memory is kept (trim threshold 1 GiB),
/// so the per-step churn of multi-MiB activation buffers stops costing page faults and TLB
/// shootdowns (measured: ~15% of a CPU training step). No-op on other platforms.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(mallopt_for_training);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn mallopt_for_training() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_TOP_PAD: i32 = -2;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: `mallopt` is glibc's documented, thread-safe tuning entry point; it takes two plain
    // integers and only changes allocator parameters (a rejected value returns 0 and changes nothing).
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
        mallopt(M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn mallopt_for_training() {}
