#!/usr/bin/env python3
"""Replay the classifier's training offline on the features a run saw, to screen classifier recipes in seconds.

Kaizen's classifier reads detached backbone features (stop-gradient), so nothing the classifier does changes the
backbone's trajectory. A run started with `--dump-classifier-inputs DIR` writes, for every step, the online
backbone's features of both views (and the frozen backbone's, from task 1 on) with the labels, and after every task
the eval-mode test features (format: kaizen-core/src/dump.rs). This script retrains a classifier on those features
with the trainer's step: CE summed over both views, soft-label KD averaged over them, SGD momentum 0.9 with optional
LARS (eta 0.02, clipping, rank-1 parameters excluded), the dumped warm-up + cosine schedule, optimiser state reset
and frozen classifier snapshotted at every task boundary; then evaluates the argmax over all classes after each task
and prints the continual-learning metrics (../shared/docs/metrics.md definitions) as mean ± std over the dumps.

It is a screening tool: PyTorch initialises the classifier differently, so a replay of a run's own recipe differs
from the run by the classifier's seed only (checked: final accuracy 0.499 replayed vs 0.495 trained, seed 1).
Confirm any finding with real runs (`kaizen run --seeds ...`).

    ~/.venv-torch/bin/pip install torch numpy            # once (see ../shared/tools/torch_reference.py)
    kaizen run --seed 1 --dump-classifier-inputs /tmp/d1 --out /tmp/r1     # one dump per seed
    ~/.venv-torch/bin/python scripts/classifier_replay.py /tmp/d1 /tmp/d2 \\
        --v '{"ce": "all", "arch": "plain"}' --v '{"ce": "seen", "arch": "input_norm"}'

A variant is a JSON object; keys (defaults in brackets):
  lr [0.1]          peak classifier lr        lars [true]   LARS on the classifier (the official code)
  ce ["seen"]       "all" | "seen" | "anchored" (softmax over all classes, the unseen classes' logits as constants)
  kd [2.0]          weight of the soft-label KD                 T [1.0]  its temperature
  kd_classes ["all"]  "all" | "old" (KD between the softmaxes over the previous tasks' classes only, as LwF)
  arch ["input_norm"]  "plain" (Linear-ReLU-Linear, official) | "input_norm" (BatchNorm without affine first)
                    | "hidden_bn" (Linear-BN-ReLU-Linear) | "leaky" (LeakyReLU 0.1)
  balance [null]    null | "oldnew" (current-task and replayed samples weigh the same in the CE)
                    | "class" (every class in the batch weighs the same)
  zero_last [false] zero-initialised output layer
  hidden [1000]     hidden width              show [false]  print each dump's accuracy matrix
"""
import argparse
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)


def load(d):
    idx = [json.loads(line) for line in open(f"{d}/steps.jsonl")]
    raw = np.fromfile(f"{d}/steps.bin", dtype=np.float32)
    steps = []
    for r in idx:
        n, dim, k = r["n"], r["d"], r["k"]
        off = r["offset"] // 4
        a = raw[off: off + k * n * dim].reshape(k, n, dim)
        steps.append(dict(task=r["task"], lr=r["lr"], feats=torch.from_numpy(a.copy()),
                          labels=torch.tensor(r["labels"], dtype=torch.long)))
    tasks = json.load(open(f"{d}/tasks.json"))
    labels = torch.tensor(json.load(open(f"{d}/eval_labels.json")), dtype=torch.long)
    evals = [torch.from_numpy(np.fromfile(f"{d}/eval_{t}.bin", dtype=np.float32).reshape(len(labels), -1))
             for t in range(len(tasks))]
    return steps, tasks, labels, evals


def classifier(arch, d, hidden, c):
    act = nn.LeakyReLU(0.1) if arch == "leaky" else nn.ReLU()
    if arch == "hidden_bn":
        return nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, c))
    pre = [nn.BatchNorm1d(d, affine=False)] if arch == "input_norm" else []
    return nn.Sequential(*pre, nn.Linear(d, hidden), act, nn.Linear(hidden, c))


def sgd_step(params, lr, bufs, lars, momentum=0.9, eta=0.02):
    """Our optimiser's classifier group: weight decay 0, LARS (clipped) on rank >= 2 tensors when `lars`."""
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                continue
            d = p.grad.clone()
            if lars and p.ndim > 1:
                pn, gn = p.norm().item(), d.norm().item()
                if pn > 0 and gn > 0:
                    d *= min(eta * pn / (gn + 1e-8) / lr, 1.0) if lr > 0 else 1.0
            b = bufs.get(p)
            bufs[p] = d if b is None else b.mul_(momentum).add_(d)
            p.add_(bufs[p], alpha=-lr)


def ce_term(logits, y, cur, seen_mask, v):
    lab = y >= 0
    if not lab.any():
        return logits.sum() * 0
    ce = v.get("ce", "seen")
    if ce == "seen":
        lm = logits.masked_fill(~seen_mask, -1e9)
    elif ce == "anchored":
        lm = torch.where(seen_mask, logits, logits.detach())
    else:
        lm = logits
    per = F.cross_entropy(lm[lab], y[lab], reduction="none")
    yl = y[lab]
    balance = v.get("balance")
    if balance == "class":
        return torch.stack([per[yl == c].mean() for c in yl.unique()]).mean()
    if balance == "oldnew":
        is_cur = torch.tensor([int(c) in cur for c in yl])
        parts = [per[is_cur].mean()] + ([per[~is_cur].mean()] if (~is_cur).any() else [])
        return torch.stack(parts).mean()
    return per.mean()


def replay(steps, tasks, labels, evals, v, seed=0):
    torch.manual_seed(seed)
    n_cls = sum(len(t) for t in tasks)
    n_tasks = len(tasks)
    task_of = {c: i for i, t in enumerate(tasks) for c in t}
    lab_task = torch.tensor([task_of[int(y)] for y in labels])
    dim = steps[0]["feats"].shape[2]
    make = lambda: classifier(v.get("arch", "input_norm"), dim, v.get("hidden", 1000), n_cls)  # noqa: E731
    g, old = make(), None
    if v.get("zero_last"):  # output layer initialised to zero: unseen classes' logits start (and stay) at 0
        with torch.no_grad():
            g[-1].weight.zero_()
            g[-1].bias.zero_()
    R = np.zeros((n_tasks, n_tasks))
    for t in range(n_tasks):
        st = [s for s in steps if s["task"] == t]
        peak = max(s["lr"] for s in st)
        bufs = {}
        seen_mask = torch.zeros(n_cls, dtype=torch.bool)
        for k in range(t + 1):
            seen_mask[tasks[k]] = True
        for s in st:
            f, y = s["feats"], s["labels"]
            l1, l2 = g(f[0]), g(f[1])
            loss = ce_term(l1, y, tasks[t], seen_mask, v) + ce_term(l2, y, tasks[t], seen_mask, v)
            if old is not None and v.get("kd", 2.0) > 0 and f.shape[0] == 4:
                temp = v.get("T", 1.0)
                kd = 0
                old_classes = [c for k in range(t) for c in tasks[k]]
                for logits, h_old in ((l1, f[2]), (l2, f[3])):
                    with torch.no_grad():
                        teacher = old(h_old)
                    if v.get("kd_classes", "all") == "old":
                        logits, teacher = logits[:, old_classes], teacher[:, old_classes]
                    target = F.softmax(teacher / temp, 1)
                    kd = kd - (target * F.log_softmax(logits / temp, 1)).sum(1).mean()
                loss = loss + v.get("kd", 2.0) * kd / 2
            g.zero_grad()
            loss.backward()
            sgd_step(list(g.parameters()), v.get("lr", 0.1) * s["lr"] / peak, bufs, v.get("lars", True))
        g.eval()
        with torch.no_grad():
            pred = g(evals[t]).argmax(1)
        g.train()
        for j in range(n_tasks):
            m = lab_task == j
            R[t, j] = (pred[m] == labels[m]).float().mean().item()
        old = make()
        old.load_state_dict(g.state_dict())
        old.eval()
    return R


def metrics(R):
    T = len(R)
    return dict(
        final=R[-1].mean(),
        avg_inc=np.mean([R[i, :i + 1].mean() for i in range(T)]),
        forgetting=np.mean([max(R[l, j] for l in range(j, T - 1)) - R[-1, j] for j in range(T - 1)]),
        plasticity=np.mean([R[j, j] for j in range(T)]),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dumps", nargs="+", help="folders written by --dump-classifier-inputs")
    ap.add_argument("--v", action="append", default=[], help="a variant (JSON object); repeatable")
    a = ap.parse_args()
    data = [load(d) for d in a.dumps]
    for text in a.v or ["{}"]:
        v = json.loads(text)
        ms = []
        for d, dd in zip(a.dumps, data):
            R = replay(*dd, v)
            ms.append(metrics(R))
            if v.get("show"):
                print(d)
                print(np.round(R, 3))
        cells = "  ".join(
            f"{k} {np.mean([m[k] for m in ms]):.3f} ± {np.std([m[k] for m in ms], ddof=1) if len(ms) > 1 else 0:.3f}"
            for k in ms[0])
        print(f"{text}  {cells}  per-dump final {[round(float(m['final']), 3) for m in ms]}")


if __name__ == "__main__":
    main()
