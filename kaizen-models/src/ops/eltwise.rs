//! Fused element-wise kernels: the residual join `relu(a + b)` of a ResNet block.
//!
//! Through candle ops that join is an add and a ReLU node, and their backward is five full passes
//! on one thread (candle's ReLU gradient builds a 0/1 mask, converts it and multiplies); here it is
//! one parallel pass forward and one backward, which hands the same gated gradient to both inputs.

use super::host::{assume_init_vec, cpu_slice, par_chunks, uninit_vec, with_slice};
use super::profile::{timed, Kernel, TimedScope};
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// Values per parallel piece of an element-wise pass.
const CHUNK: usize = 1 << 16;

/// The custom op `y = max(a + b, 0)` (same shapes, f32, contiguous, CPU).
pub(crate) struct AddReluOp;

impl CustomOp2 for AddReluOp {
    fn name(&self) -> &'static str {
        "kaizen-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            bail!(
                "add_relu: shapes differ: {:?} and {:?}",
                l1.dims(),
                l2.dims()
            )
        }
        let a = cpu_slice(s1, l1, "add_relu lhs")?;
        let b = cpu_slice(s2, l2, "add_relu rhs")?;
        if b.len() != a.len() {
            bail!("add_relu: operand sizes differ")
        }
        let mut y = uninit_vec(a.len());
        timed(Kernel::AddRelu, || {
            par_chunks(&mut y, CHUNK, |i, yc| {
                let o = i * CHUNK;
                for ((d, &u), &v) in yc.iter_mut().zip(&a[o..]).zip(&b[o..]) {
                    d.write((u + v).max(0.0));
                }
                Ok(())
            })
        })?;
        // SAFETY: the chunks cover y and each zips its full length against a and b, which are at
        // least as long (same length, checked above).
        #[allow(unsafe_code)]
        let y = unsafe { assume_init_vec(y) };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if !a.track_op() && !b.track_op() {
            return Ok((None, None));
        }
        let _t = TimedScope::new(Kernel::AddRelu);
        let g = with_slice(res, "add_relu output", |ys| {
            with_slice(dy, "add_relu output grad", |gs| {
                if ys.len() != gs.len() {
                    bail!("add_relu backward: output and gradient sizes differ")
                }
                let mut g = uninit_vec(ys.len());
                par_chunks(&mut g, CHUNK, |i, gc| {
                    let o = i * CHUNK;
                    for ((d, &yv), &gv) in gc.iter_mut().zip(&ys[o..]).zip(&gs[o..]) {
                        d.write(if yv > 0.0 { gv } else { 0.0 });
                    }
                    Ok(())
                })?;
                // SAFETY: the chunks cover g; each zips its full length against ys and gs (same
                // length, checked above).
                #[allow(unsafe_code)]
                let g = unsafe { assume_init_vec(g) };
                Ok(g)
            })
        })?;
        let g = Tensor::from_vec(g, res.shape(), res.device())?;
        let ga = a.track_op().then(|| g.clone());
        let gb = b.track_op().then_some(g);
        Ok((ga, gb))
    }
}
