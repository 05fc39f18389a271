#!/usr/bin/env python3
"""PyTorch CPU timings of the same loss calls as the criterion group `losses` (benches/benches/losses.rs),
for a candle/PyTorch ratio. Same sizes: batch 256 x dim 256, 256 x 100 classes, MoCo queue 65536 x 256.
Formulas: shared/reference/README.md (the contract kaizen_core::loss implements).

    ~/.venv-torch/bin/python benches/torch_losses.py [--threads 2] [--json]

For each loss: median wall time of the forward call, and of forward + backward (gradient w.r.t. the first
input, which is a leaf with requires_grad), after warm-up, float32, torch.set_num_threads(threads).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

N, D, CLASSES, QUEUE = 256, 256, 100, 65536


def normalize(x):
    return x / torch.clamp(x.norm(dim=1, keepdim=True), min=1e-12)


def cos(a, b):
    return (a * b).sum(1) / torch.clamp(a.norm(dim=1) * b.norm(dim=1), min=1e-12)


def byol(p, z):
    return 2 - 2 * cos(p, z.detach()).mean()


def simsiam(p, z):
    return -cos(p, z.detach()).mean()


def mse(p, z):
    return ((p - z) ** 2).mean()


def nt_xent(z1, z2, t):
    n = z1.shape[0]
    u = normalize(torch.cat([z1, z2]))
    s = (u @ u.T / t).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(s, target)


def info_nce_queue(q, k, queue, t):
    q, k, queue = normalize(q), normalize(k.detach()), normalize(queue.detach())
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / t
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))


def vicreg(z1, z2, sw, vw, cw):
    def v(z):
        return F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()

    def c(z):
        n, d = z.shape
        zc = z - z.mean(0)
        cov = zc.T @ zc / (n - 1)
        off = cov * (1 - torch.eye(d))
        return (off ** 2).sum() / d

    return sw * F.mse_loss(z1, z2) + vw * (v(z1) + v(z2)) + cw * (c(z1) + c(z2))


def barlow_twins(z1, z2, lam, scale):
    n, d = z1.shape
    z1n = F.batch_norm(z1, None, None, training=True, eps=1e-5)
    z2n = F.batch_norm(z2, None, None, training=True, eps=1e-5)
    c = z1n.T @ z2n / n
    on = ((torch.diagonal(c) - 1) ** 2).sum()
    off = ((c * (1 - torch.eye(d))) ** 2).sum()
    return scale * (on + lam * off)


def contrastive_distill(p1, p2, o1, o2, t):
    p = normalize(torch.cat([p1, p2]))
    o = normalize(torch.cat([o1.detach(), o2.detach()]))
    return F.cross_entropy(p @ o.T / t, torch.arange(p.shape[0]))


def soft_ce(logits, target_logits, t):
    return -(F.softmax(target_logits.detach() / t, 1) * F.log_softmax(logits / t, 1)).sum(1).mean()


def masked_ce(logits, labels):
    keep = labels >= 0
    return F.cross_entropy(logits[keep], labels[keep])


def time_call(fn, min_time, min_reps=5):
    fn()
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement (at least 5 reps)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    z, o1, o2, p2 = randn(N, D), randn(N, D), randn(N, D), randn(N, D)
    queue = randn(QUEUE, D)
    target_logits = randn(N, CLASSES)
    labels = torch.tensor([-1 if i % 4 == 3 else i % CLASSES for i in range(N)])
    cases = [
        ("byol", (N, D), lambda x: byol(x, z)),
        ("simsiam", (N, D), lambda x: simsiam(x, z)),
        ("mse", (N, D), lambda x: mse(x, z)),
        ("nt_xent", (N, D), lambda x: nt_xent(x, z, 0.1)),
        ("vicreg", (N, D), lambda x: vicreg(x, z, 25.0, 25.0, 1.0)),
        ("barlow_twins", (N, D), lambda x: barlow_twins(x, z, 0.0051, 0.1)),
        ("contrastive_distill", (N, D), lambda x: contrastive_distill(x, p2, o1, o2, 0.2)),
        ("info_nce_queue", (N, D), lambda x: info_nce_queue(x, z, queue, 0.2)),
        ("soft_ce", (N, CLASSES), lambda x: soft_ce(x, target_logits, 1.0)),
        ("masked_ce", (N, CLASSES), lambda x: masked_ce(x, labels)),
    ]
    rows = []
    for name, shape, f in cases:
        x = randn(*shape).requires_grad_(True)

        def fwd():
            with torch.no_grad():
                f(x)

        def fwd_bwd():
            x.grad = None
            f(x).backward()

        rows.append({"loss": name, "shape": "x".join(map(str, shape)),
                     "fwd_ms": 1e3 * time_call(fwd, a.min_time), "fwd_bwd_ms": 1e3 * time_call(fwd_bwd, a.min_time)})
    if a.json:
        print(json.dumps({"torch": torch.__version__, "threads": a.threads, "rows": rows}))
    else:
        print(f"torch {torch.__version__}, {a.threads} threads, float32, median ms")
        for r in rows:
            print(f"{r['loss']:<20} {r['shape']:>8}  fwd {r['fwd_ms']:9.3f}  fwd+bwd {r['fwd_bwd_ms']:9.3f}")


if __name__ == "__main__":
    main()
