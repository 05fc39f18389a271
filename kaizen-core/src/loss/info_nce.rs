//! InfoNCE losses: MoCo's query/key against a queue of negatives, and CaSSLe's contrastive distiller.

use super::ops::{
    check_matrix, check_same_matrices, check_temperature, cross_entropy_rows, l2_normalize,
};
use candle_core::{bail, Result, Tensor};

/// MoCo v2+ InfoNCE against a queue of negatives (He et al. 2020), reference key `info_nce_queue`:
///
/// `q`, `k` and the queue rows are normalised; `logits_i = [q_i.k_i, q_i.queue_1, ..., q_i.queue_K] / t`;
/// the loss is the mean over i of the cross-entropy with target 0 (the positive key).
///
/// - `q`: (N, D) queries from the online encoder (the only input that gets a gradient).
/// - `k`: (N, D) keys of the other view from the momentum encoder; **detached** here.
/// - `queue`: (K, D) negative keys (K >= 1), e.g. [`crate::queue::KeyQueue::keys`]; **detached** here.
/// - `temperature`: t > 0 (MoCo v2+ default 0.2).
///
/// The symmetrised MoCo v2+ loss is `info_nce_queue(q1, k2, ..) + info_nce_queue(q2, k1, ..)`, left to
/// the method.
pub fn info_nce_queue(q: &Tensor, k: &Tensor, queue: &Tensor, temperature: f64) -> Result<Tensor> {
    let (n, d) = check_same_matrices("info_nce_queue", &[("q", q), ("k", k)])?;
    let (_, dq) = check_matrix("info_nce_queue", "queue", queue)?;
    if dq != d || queue.dtype() != q.dtype() {
        bail!(
            "info_nce_queue: `queue` is {:?} {:?} but the keys have dimension D = {d} and dtype {:?}",
            queue.dims(),
            queue.dtype(),
            q.dtype()
        );
    }
    check_temperature("info_nce_queue", temperature)?;
    // The (N, K) logits dominate the cost at MoCo sizes (K = 65536), so this avoids materialising the
    // concatenated (N, K + 1) matrix: q is scaled by 1/t before the matmul (N x D instead of N x K),
    // and the cross-entropy with target 0 is written as logsumexp(pos, neg) - pos, with the row
    // maximum detached (it cancels analytically).
    let qn = l2_normalize(q)?.affine(1.0 / temperature, 0.0)?;
    let kn = l2_normalize(&k.detach())?;
    let negatives = l2_normalize(&queue.detach())?;
    let pos = (&qn * &kn)?.sum_keepdim(1)?; // (N, 1) = q.k / t
    let neg = qn.matmul(&negatives.t()?)?; // (N, K) = q.queue / t
    let max = pos.maximum(&neg.max_keepdim(1)?)?.detach();
    let sum = ((&pos - &max)?.exp()? + neg.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?)?;
    let lse = (sum.log()? + max)?;
    debug_assert_eq!(lse.dims(), [n, 1]);
    (lse - pos)?.mean_all()
}

/// CaSSLe's contrastive distillation loss (Fini et al. 2022), reference key `contrastive_distill`:
///
/// `P = normalize([p1; p2])`, `O = normalize([o1; o2])`; `logits = P O^T / t` (2N x 2N); the loss is the
/// mean over the 2N rows of the cross-entropy of row k with target k (the same image and view).
///
/// - `p1`, `p2`: (N, D) distillation-predictor outputs h(z_v) for views 1 and 2 (get gradients).
/// - `o1`, `o2`: (N, D) frozen previous-model projections of views 1 and 2; **detached** here.
/// - `temperature`: t > 0 (0.2 for MoCoV2+, 0.1 for SimCLR in the official scripts).
pub fn contrastive_distill(
    p1: &Tensor,
    p2: &Tensor,
    o1: &Tensor,
    o2: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    let (n, _) = check_same_matrices(
        "contrastive_distill",
        &[("p1", p1), ("p2", p2), ("o1", o1), ("o2", o2)],
    )?;
    check_temperature("contrastive_distill", temperature)?;
    let p = l2_normalize(&Tensor::cat(&[p1, p2], 0)?)?;
    let o = l2_normalize(&Tensor::cat(&[o1.detach(), o2.detach()], 0)?)?;
    let logits = p.matmul(&o.t()?)?.affine(1.0 / temperature, 0.0)?;
    let targets: Vec<u32> = (0..2 * n as u32).collect();
    cross_entropy_rows(&logits, &targets)?.mean_all()
}
