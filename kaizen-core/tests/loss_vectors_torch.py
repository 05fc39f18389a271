#!/usr/bin/env python3
"""Writes a loss-vector file in the layout of shared/reference/losses.safetensors (see its README),
from PyTorch in float64, for other seeds and shapes. Used to stress `reference_losses.rs`:

    ~/.venv-torch/bin/python kaizen-core/tests/loss_vectors_torch.py --seed 7 --shapes 256x256,2x3,64x2048 --out /tmp/v.safetensors
    KAIZEN_LOSS_VECTORS=/tmp/v.safetensors cargo test --release -p kaizen-core --test reference_losses -- --nocapture

The formulas are written from the README table with torch's own functions, not from the Rust code.
"""
import argparse

import torch
import torch.nn.functional as F
from safetensors.torch import save_file


def cos(a, b):
    return (a * b).sum(1) / torch.clamp(a.norm(dim=1) * b.norm(dim=1), min=1e-12)


def normalize(x):
    return x / torch.clamp(x.norm(dim=1, keepdim=True), min=1e-12)


def byol(p, z):
    return 2 - 2 * cos(p, z).mean()


def simsiam(p, z):
    return -cos(p, z).mean()


def mse(p, z):
    return ((p - z) ** 2).mean()


def nt_xent(z1, z2, t):
    n = z1.shape[0]
    u = normalize(torch.cat([z1, z2]))
    s = u @ u.T / t
    s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(s, target)


def info_nce_queue(q, k, queue, t):
    q, k, queue = normalize(q), normalize(k), normalize(queue)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / t
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))


def vicreg(z1, z2, sw, vw, cw):
    def v(z):
        return F.relu(1 - torch.sqrt(z.var(0, unbiased=True) + 1e-4)).mean()

    def c(z):
        n, d = z.shape
        zc = z - z.mean(0)
        cov = zc.T @ zc / (n - 1)
        off = cov - torch.diag(torch.diag(cov))
        return (off ** 2).sum() / d

    return sw * ((z1 - z2) ** 2).mean() + vw * (v(z1) + v(z2)) + cw * (c(z1) + c(z2))


def barlow_twins(z1, z2, lam, scale):
    n = z1.shape[0]
    z1n = F.batch_norm(z1, None, None, training=True, eps=1e-5)
    z2n = F.batch_norm(z2, None, None, training=True, eps=1e-5)
    c = z1n.T @ z2n / n
    on = ((torch.diag(c) - 1) ** 2).sum()
    off = (c ** 2).sum() - (torch.diag(c) ** 2).sum()
    return scale * (on + lam * off)


def contrastive_distill(p1, p2, o1, o2, t):
    p = normalize(torch.cat([p1, p2]))
    o = normalize(torch.cat([o1, o2]))
    logits = p @ o.T / t
    return F.cross_entropy(logits, torch.arange(p.shape[0]))


def soft_ce(logits, target_logits, t):
    return -(F.softmax(target_logits / t, 1) * F.log_softmax(logits / t, 1)).sum(1).mean()


def masked_ce(logits, labels):
    keep = labels >= 0
    if keep.sum() == 0:
        return logits.sum() * 0
    return F.cross_entropy(logits[keep], labels[keep])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shapes", default="256x256,2x3,64x512")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(a.seed)
    out = {}

    def f32(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).float()

    def put(name, c, inputs, params, fn):
        xs = {k: v.double().requires_grad_(i == 0) if v.dtype != torch.long else v
              for i, (k, v) in enumerate(inputs.items())}
        val = fn(*xs.values(), *params.values())
        first = next(iter(inputs))
        (grad,) = torch.autograd.grad(val, xs[first], allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(xs[first])
        for k, v in inputs.items():
            out[f"{name}/{c}/{k}"] = v.clone().contiguous()
        for k, v in params.items():
            out[f"{name}/{c}/{k}"] = torch.tensor([float(v)], dtype=torch.float64)
        out[f"{name}/{c}/expected"] = val.detach().reshape(1).double()
        out[f"{name}/{c}/grad_{first}"] = grad.detach().double().contiguous()

    shapes = [tuple(int(x) for x in s.split("x")) for s in a.shapes.split(",")]
    for c, (n, d) in enumerate(shapes):
        z = f32(n, d)
        put("byol", c, {"p": z + 0.5 * f32(n, d), "z": z}, {}, byol)
        put("simsiam", c, {"p": z + 0.5 * f32(n, d), "z": z}, {}, simsiam)
        put("mse", c, {"p": f32(n, d), "z": f32(n, d)}, {}, mse)
        t = [0.1, 0.2, 0.5][c % 3]
        put("nt_xent", c, {"z1": z, "z2": z + 0.3 * f32(n, d)}, {"temperature": t}, nt_xent)
        put("info_nce_queue", c, {"q": z, "k": z + 0.3 * f32(n, d), "queue": f32(3 * n + 1, d)},
            {"temperature": t}, info_nce_queue)
        if n >= 2:
            put("vicreg", c, {"z1": z, "z2": z + 0.3 * f32(n, d)},
                {"sim_weight": 25.0, "var_weight": 25.0, "cov_weight": 1.0}, vicreg)
            put("barlow_twins", c, {"z1": z, "z2": z + 0.3 * f32(n, d)}, {"lambda": 0.0051, "scale": 0.1},
                barlow_twins)
        put("contrastive_distill", c, {"p1": z, "p2": f32(n, d), "o1": z + 0.3 * f32(n, d), "o2": f32(n, d)},
            {"temperature": t}, contrastive_distill)
        classes = max(d // 2, 2)
        put("soft_ce", c, {"logits": f32(n, classes, scale=2), "target_logits": f32(n, classes, scale=2)},
            {"temperature": [1.0, 2.0, 0.5][c % 3]}, soft_ce)
        labels = torch.randint(-1, classes, (n,), generator=g)
        if c == 1:
            labels[:] = -1  # a case with no labelled sample: expected 0, gradient 0
        put("masked_ce", c, {"logits": f32(n, classes, scale=3), "labels": labels}, {}, masked_ce)
    save_file(out, a.out)
    print(f"wrote {len(out)} tensors to {a.out}")


if __name__ == "__main__":
    main()
