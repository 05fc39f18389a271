#!/usr/bin/env python3
"""PyTorch twin of two Kaizen training steps; writes the fixture of `kaizen-core/tests/step_twin.rs`.

A developer tool: nothing in the build or the tests runs it; the test reads the committed fixture
`kaizen-core/tests/fixtures/step_twin.safetensors` that this script wrote.

Install torch once (CPU is enough; the default wheel is large):
    python3 -m venv ~/.venv-torch && ~/.venv-torch/bin/pip install torch numpy safetensors
Regenerate the fixture (from the repository root; a few seconds), then run the Rust side:
    ~/.venv-torch/bin/python scripts/torch_step_twin.py
    cargo test --release -p kaizen-core --test step_twin -- --nocapture
(`--out PATH` writes elsewhere, and the test reads another file from `KAIZEN_STEP_TWIN=PATH`; `--torch-seed N`
draws another initial state; `--force` writes even when the checks at the end fail.)

What it does. `SETTINGS` (below; written into the fixture's metadata) holds, per case, a partial
`ExperimentConfig` in serde JSON (missing keys take the Rust defaults, so every key a step reads is set
here), plus the batch shape, the task index and the steps per epoch. The script
1. builds the online model with torch's default initialisation from `torch_seed`: CIFAR ResNet-18 at width w
   (torchvision names), the BYOL projector and predictor and the distillation predictor (Linear-BN-ReLU-Linear),
   the classifier (Linear-ReLU-Linear, after a BatchNorm without affine parameters when
   `model.classifier_input_norm`), all with `nn.Sequential` names and without `num_batches_tracked` (our models
   have no such tensor). Its BatchNorm weights and biases then get seeded noise (`online_bn_affine`): a frozen
   model only exists at task t >= 1, when the online model is trained, and a zero-initialised BN bias would make
   its value after two steps a pure update, whose float32 error is that of the gradient (see the checks below);
2. builds the BYOL momentum target (backbone + projector) as the online tensors plus seeded noise, with other
   running statistics (at t >= 1 the trainer's target is the EMA of a whole task, not a copy of the online
   model), and the frozen previous-task model (backbone + projector + classifier) as the online tensors plus
   larger seeded noise, its running statistics set from a calibration batch and then perturbed (so
   `teacher_bn = "eval"` matters), its classifier's last layer scaled by `frozen_logit_scale` (confident soft
   labels for cls_kd);
3. draws two batches of two views (standard normal, (B, C, H, W)) and int64 labels (seen classes, every third
   sample -1);
4. runs, for every case, two training steps (batch 0 at step_in_task 0, batch 1 at step_in_task 1) the way
   `Trainer::step` (`kaizen-core/src/train.rs`) does through `kaizen-core/src/step.rs`:
   - online backbone and projector on view 1 then view 2 (BN in train mode: batch statistics; running
     statistics updated with momentum 0.1 and the unbiased variance), then the terms
     ssl    = byol(pred(z1), t2) + byol(pred(z2), t1), t_v = target projector(target backbone(x_v)) with batch
              statistics and no running-statistics update (BnMode::BatchStats), detached;
     cls_ce = masked_ce(g(h1), y) + masked_ce(g(h2), y) (a sum over the views; mean over labels != -1; with
              ce_classes = "seen" the logits of unseen classes are replaced by -1e9 first);
     fe_kd  = (byol(h(z1), z_old1) + byol(h(z2), z_old2)) / 2 (predictive distiller);
     cls_kd = (soft_ce(g(h1), g_old(h_old1), T) + soft_ce(g(h2), g_old(h_old2), T)) / 2 (unmasked logits);
     the classifier reads detached features when classifier_detach; the frozen model runs on running
     statistics (teacher_bn = "eval") or batch statistics (teacher_bn = "train"); byol(p, z) =
     2 - 2 mean_i p_i.z_i / sqrt(max(|p_i|^2 |z_i|^2, 1e-24)); total = the weighted sum; backward;
   - the optimiser of `step::build_optimizer` (`kaizen-models/src/optim.rs`): group main (backbone, projector,
     predictor, distillation predictor; weight decay; LARS when optimizer = "lars") and group classifier
     (lr * classifier_lr / lr, weight decay 0, LARS only when classifier_lars); tensors of rank <= 1 and `*.bias`
     skip LARS and weight decay; LARS r = eta |p| / (|g| + wd |p| + 1e-8) (norms in float64) clipped to
     min(r / lr_g, 1), d = (g + wd p) r; momentum buffer = d at the first step, then m buf + d; p -= lr_g buf;
     lr of step s: the warm-up + cosine schedule (`WarmupCosine`) with total_steps = steps_per_epoch * epochs
     and warmup_steps = round(warmup_epochs * steps_per_epoch);
   - the EMA (`kaizen-models/src/ema.rs`): tau = cosine_tau(base_tau, final_tau, s + 1, total_steps),
     target <- tau target + (1 - tau) online for every target tensor, running statistics included.
   The twin computes in float64 from the float32 values it stores, so the fixture holds the exact answer
   rounded to float32.
5. checks the fixture before writing it (refusing, unless --force):
   - no LARS ratio r / lr_g within 2% of the clip at 1 (float32 must not be able to flip the min), and both
     sides of the clip occur;
   - conditioning: under the Rust test's metric, (a) this twin run in float32 and (b) the float64 twin started
     from inputs perturbed by float32-rounding-sized noise (2^-24 N(0, 1) relative, `--trials` times) must stay
     within a quarter of the test's tolerance. This network's backward pass has heavy cancellation (BatchNorm
     over few values, scale invariances): for many seeds PyTorch's own float32 gradients miss the exact ones by
     up to ~1e-4 relative on some BatchNorm parameters, so a fixture is only useful when both measures are well
     below the tolerance. `torch_seed` was chosen that way; the measured values are stored in the metadata
     (`settings.conditioning`).

Fixture layout (float32 unless noted; a name below `init.<group>.` is a name of our online `VarMap`
(`online`), of our `Target` `VarMap` (`target`: `backbone.*`, `projector.*`) or one `Frozen::from_tensors`
reads (`frozen`); below `grad.` and `online.` an online name, below `target.` a target name):
  __metadata__ {"settings": "<JSON of SETTINGS, plus `conditioning`>"}
  init.<group>.<name>                     the initial state shared by the cases
  init.<case>.<group>.<name>              a case's own tensors of one head: they replace every shared
                                          `init.<group>.<head>.*` (the case without the classifier's input norm)
  batch{k}.view1, batch{k}.view2          (B, C, H, W); batch{k}.labels (B,) int64
  expect.<case>.step{k}.lr, .tau          float64 (1,): the schedule values used
  expect.<case>.step{k}.loss.<term>       float64 (1,): ssl, cls_ce, fe_kd, cls_kd, unweighted
  expect.<case>.step{k}.total             float64 (1,): the weighted sum
  expect.<case>.step{k}.grad.<name>       every trainable online tensor, for k in the case's `stored.grad`
  expect.<case>.step{k}.online.<name>     every online tensor (running statistics included) after the optimiser
                                          step and the EMA of step k, for k in `stored.online`
  expect.<case>.step{k}.target.<name>     every target tensor, likewise, for k in `stored.target`
"""
import argparse
import copy
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

# Everything the Rust test needs to rebuild the same config, model, schedule and batches.
_BASE_CONFIG = {
    "seed": 5,  # Online::new's init seed: irrelevant, the test overwrites every tensor with init.online.*
    "strategy": "kaizen",
    "method": "byol",
    "distiller": "predictive",
    "data": {"num_tasks": 3, "class_order": [0, 1, 3, 4, 2, 5]},
    "model": {
        "arch": "resnet18",
        "width": 2,
        "stem_padding": 1,
        "proj_hidden": 16,
        "proj_out": 8,
        "pred_hidden": 16,
        "distill_hidden": 16,
        "classifier_hidden": 12,
        "classifier_input_norm": True,
    },
    "train": {
        "epochs": 2,
        "batch_size": 8,
        "optimizer": "lars",
        "lr": 0.025,  # puts some LARS ratios r / lr above the clip at 1 and most below
        "classifier_lr": 0.05,
        "classifier_lars": False,
        "weight_decay": 0.05,  # large, so that wd * p is visible next to the gradient
        "momentum": 0.9,
        "lars_eta": 0.02,
        "warmup_epochs": 0.0,
        "warmup_start_lr": 0.003,
        "base_tau": 0.9,
        "final_tau": 1.0,
        "classifier_detach": True,
        "teacher_bn": "eval",
    },
    "loss": {
        "ssl": 1.0,
        "feature_distill": 1.0,
        "classifier_ce": 1.0,
        "ce_classes": "seen",
        "classifier_distill": 2.0,
        "distill_temperature": 2.0,
    },
}


def _case(name, stored, **overrides):
    cfg = copy.deepcopy(_BASE_CONFIG)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        cfg[section][key] = value
    return {"name": name, "stored": stored, "config": cfg}


SETTINGS = {
    "format": 1,
    "torch_seed": 1,  # chosen by the conditioning check (see main)
    # Batch shape; the labels come from the classes of tasks 0..=task of data.class_order.
    "batch": {"size": 8, "channels": 1, "height": 16, "width": 16},
    "num_classes": 6,
    "task": 1,
    "steps_per_epoch": 2,
    "steps": 2,
    # The online model's BatchNorm weight and bias: torch's 1 and 0 plus N(0, std^2) noise.
    "online_bn_affine": {"weight_std": 0.2, "bias_std": 0.5},
    # The frozen classifier's last layer is multiplied by this (confident soft labels for cls_kd).
    "frozen_logit_scale": 8.0,
    # Per case, the steps after which the gradients (before the optimiser step) and the online and target
    # tensors (after the optimiser step and the EMA) are stored; the losses and totals of every step always are.
    "cases": [
        # The main case: frozen model on running statistics, softmax over the seen classes, plain SGD
        # momentum on the classifier (detached features).
        _case("eval_seen", {"grad": [0], "online": [0, 1], "target": [1]}),
        # Frozen model on batch statistics, softmax over all classes, LARS on the classifier, gradient of
        # the classifier reaching the backbone. Fewer snapshots to keep the file small (the EMA is the same).
        _case(
            "batchstats_all",
            {"grad": [0], "online": [1], "target": []},
            train__teacher_bn="train",
            train__classifier_lars=True,
            train__classifier_detach=False,
            model__classifier_input_norm=False,
            loss__ce_classes="all",
        ),
    ],
}

BN_EPS = 1e-5
# The Rust test's metric and tolerance (kaizen-core/tests/step_twin.rs).
FLOOR_FRACTION = 1e-2
TOLERANCE = 1e-4
# The conditioning check refuses a fixture where float32-sized noise alone moves a checked tensor by more than this.
CONDITION_LIMIT = TOLERANCE / 4
BN_MOMENTUM = 0.1
MASKED_LOGIT = -1e9
NORM_EPS = 1e-12


# ---------------------------------------------------------------- modules (only for the default init)
class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet18(nn.Module):
    """CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool), torchvision names, no fc."""

    def __init__(self, width, in_channels, stem_padding):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, stem_padding, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        for i, (mult, stride) in enumerate([(1, 1), (2, 2), (4, 2), (8, 2)]):
            cout = width * mult
            setattr(self, f"layer{i + 1}", nn.Sequential(Block(cin, cout, stride), Block(cout, cout, 1)))
            cin = cout


def bn_mlp(din, hidden, dout):
    return nn.Sequential(nn.Linear(din, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dout))


def classifier_mlp(din, hidden, dout, input_norm):
    """Linear-ReLU-Linear, after a BatchNorm without affine parameters when `input_norm`."""
    layers = [nn.BatchNorm1d(din, affine=False)] if input_norm else []
    return nn.Sequential(*layers, nn.Linear(din, hidden), nn.ReLU(), nn.Linear(hidden, dout))


def state(prefix, module):
    return {f"{prefix}.{k}": v.detach().clone().float() for k, v in module.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def is_stat(name):
    return name.endswith("running_mean") or name.endswith("running_var")


# ---------------------------------------------------------------- functional forward over a dict of tensors
def bn(P, name, x, mode):
    """mode: "train" (batch stats, running stats updated in place as PyTorch train mode),
    "batch" (batch stats, no update: BnMode::BatchStats), "eval" (running stats);
    "calib" (batch stats, running stats set to them: only to build the initial frozen model)."""
    w, b = P.get(f"{name}.weight"), P.get(f"{name}.bias")  # None: affine=False
    rm, rv = P[f"{name}.running_mean"], P[f"{name}.running_var"]
    if mode == "eval":
        return F.batch_norm(x, rm, rv, w, b, training=False, eps=BN_EPS)
    if mode == "batch":
        return F.batch_norm(x, None, None, w, b, training=True, eps=BN_EPS)
    assert mode in ("train", "calib") and not rm.requires_grad and not rv.requires_grad
    momentum = BN_MOMENTUM if mode == "train" else 1.0
    return F.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum, eps=BN_EPS)


def resnet(P, x, mode, stem_padding):
    p = "backbone"
    h = F.relu(bn(P, f"{p}.bn1", F.conv2d(x, P[f"{p}.conv1.weight"], stride=1, padding=stem_padding), mode))
    for i, stride0 in enumerate([1, 2, 2, 2]):
        for blk in range(2):
            q = f"{p}.layer{i + 1}.{blk}"
            stride = stride0 if blk == 0 else 1
            y = F.relu(bn(P, f"{q}.bn1", F.conv2d(h, P[f"{q}.conv1.weight"], stride=stride, padding=1), mode))
            y = bn(P, f"{q}.bn2", F.conv2d(y, P[f"{q}.conv2.weight"], stride=1, padding=1), mode)
            if f"{q}.downsample.0.weight" in P:
                skip = bn(P, f"{q}.downsample.1",
                          F.conv2d(h, P[f"{q}.downsample.0.weight"], stride=stride, padding=0), mode)
            else:
                skip = h
            h = F.relu(y + skip)
    return h.mean((2, 3))


def classifier(P, x, mode):
    """The classifier head; its input BatchNorm (if any) is `classifier.0`."""
    if "classifier.0.running_mean" in P:
        x = bn(P, "classifier.0", x, mode)
        h = F.relu(F.linear(x, P["classifier.1.weight"], P["classifier.1.bias"]))
        return F.linear(h, P["classifier.3.weight"], P["classifier.3.bias"])
    return mlp(P, "classifier", x, mode, False)


def mlp(P, prefix, x, mode, batch_norm):
    if batch_norm:
        h = F.relu(bn(P, f"{prefix}.1", F.linear(x, P[f"{prefix}.0.weight"], P[f"{prefix}.0.bias"]), mode))
        return F.linear(h, P[f"{prefix}.3.weight"], P[f"{prefix}.3.bias"])
    h = F.relu(F.linear(x, P[f"{prefix}.0.weight"], P[f"{prefix}.0.bias"]))
    return F.linear(h, P[f"{prefix}.2.weight"], P[f"{prefix}.2.bias"])


# ---------------------------------------------------------------- losses (shared/reference/README.md)
def cosine(a, b):
    dot = (a * b).sum(-1)
    sq = (a * a).sum(-1) * (b * b).sum(-1)
    return dot / torch.clamp(sq, min=NORM_EPS * NORM_EPS).sqrt()


def byol(p, z):
    return 2 - 2 * cosine(p, z.detach()).mean()


def masked_ce(logits, labels):
    keep = labels >= 0
    if not bool(keep.any()):
        return logits[:0].sum()
    lp = F.log_softmax(logits[keep], dim=-1)
    return -lp.gather(1, labels[keep].unsqueeze(1)).squeeze(1).mean()


def soft_ce(logits, target_logits, t):
    target = F.softmax(target_logits.detach() / t, dim=-1)
    return -(target * F.log_softmax(logits / t, dim=-1)).sum(-1).mean()


# ---------------------------------------------------------------- schedules
def round_half_away(x):
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def warmup_cosine(step, base_lr, warmup_steps, total_steps, warmup_start_lr, min_lr=0.0):
    if step < warmup_steps:
        denom = max(warmup_steps - 1, 1)
        return warmup_start_lr + step * (base_lr - warmup_start_lr) / denom
    if step >= total_steps:
        return min_lr
    frac = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * frac)) / 2


def cosine_tau(base, final, step, total):
    if total == 0 or step >= total:
        return final
    return final - (final - base) * (math.cos(math.pi * step / total) + 1) / 2


# ---------------------------------------------------------------- one step
MAIN_PREFIXES = ("backbone.", "projector.", "predictor.", "distill_predictor.")


def loss_terms(cfg, on, tg, fr, x1, x2, y, seen, stem):
    """The terms of step::loss_terms, in its order; BN updates of `on` happen in place."""
    tr, lo = cfg["train"], cfg["loss"]
    h1, h2 = resnet(on, x1, "train", stem), resnet(on, x2, "train", stem)
    z1, z2 = mlp(on, "projector", h1, "train", True), mlp(on, "projector", h2, "train", True)
    terms = []
    # ssl (BYOL against the momentum target, which runs on batch statistics)
    p1, p2 = mlp(on, "predictor", z1, "train", True), mlp(on, "predictor", z2, "train", True)
    with torch.no_grad():
        t1 = mlp(tg, "projector", resnet(tg, x1, "batch", stem), "batch", True)
        t2 = mlp(tg, "projector", resnet(tg, x2, "batch", stem), "batch", True)
    terms.append(("ssl", lo["ssl"], byol(p1, t2) + byol(p2, t1)))
    f1, f2 = (h1.detach(), h2.detach()) if tr["classifier_detach"] else (h1, h2)
    l1, l2 = classifier(on, f1, "train"), classifier(on, f2, "train")
    if lo["ce_classes"] == "seen":
        mask = torch.zeros(l1.shape[1], dtype=torch.bool)
        mask[list(seen)] = True
        m1 = torch.where(mask, l1, torch.full_like(l1, MASKED_LOGIT))
        m2 = torch.where(mask, l2, torch.full_like(l2, MASKED_LOGIT))
    else:
        m1, m2 = l1, l2
    terms.append(("cls_ce", lo["classifier_ce"], masked_ce(m1, y) + masked_ce(m2, y)))
    fmode = {"eval": "eval", "train": "batch"}[tr["teacher_bn"]]
    with torch.no_grad():
        g1, g2 = resnet(fr, x1, fmode, stem), resnet(fr, x2, fmode, stem)
        o1, o2 = mlp(fr, "projector", g1, fmode, True), mlp(fr, "projector", g2, fmode, True)
        ol1, ol2 = classifier(fr, g1, fmode), classifier(fr, g2, fmode)
    q1, q2 = mlp(on, "distill_predictor", z1, "train", True), mlp(on, "distill_predictor", z2, "train", True)
    terms.append(("fe_kd", lo["feature_distill"], (byol(q1, o1) + byol(q2, o2)) / 2))
    t = lo["distill_temperature"]
    terms.append(("cls_kd", lo["classifier_distill"], (soft_ce(l1, ol1, t) + soft_ce(l2, ol2, t)) / 2))
    return terms


def optimizer_step(cfg, on, buffers, lr, lars_log):
    """One step of step::build_optimizer's optimiser on the online tensors (in place); appends every LARS
    ratio r / lr_g (before the clip) to lars_log."""
    tr = cfg["train"]
    eta, wd_main, mom = tr["lars_eta"], tr["weight_decay"], tr["momentum"]
    lars = tr["optimizer"] == "lars"
    with torch.no_grad():
        for name in sorted(on):
            p = on[name]
            if is_stat(name) or p.grad is None:
                continue
            if name.startswith(MAIN_PREFIXES):
                lr_g, wd, group_lars = lr, wd_main, lars
            else:
                assert name.startswith("classifier.")
                scale = tr["classifier_lr"] / tr["lr"] if tr["lr"] > 0 else 0.0
                lr_g, wd, group_lars = lr * scale, 0.0, lars and tr["classifier_lars"]
            g = p.grad
            excluded = p.dim() <= 1 or name.endswith(".bias")
            if excluded:
                wd_eff, r = 0.0, 1.0
            elif group_lars:
                pn, gn = p.double().norm().item(), g.double().norm().item()
                if pn != 0.0 and gn != 0.0:
                    r = eta * pn / (gn + wd * pn + 1e-8)
                    ratio = r / lr_g if lr_g > 0 else float("inf")
                    lars_log.append((name, ratio))
                    r = min(ratio, 1.0)
                    wd_eff = wd
                else:
                    wd_eff, r = 0.0, 1.0
            else:
                wd_eff, r = wd, 1.0
            d = (g + wd_eff * p) * r
            if name in buffers:
                buffers[name] = mom * buffers[name] + d
            else:
                buffers[name] = d.clone()
            p -= lr_g * buffers[name]


def ema_update(tg, on, tau):
    with torch.no_grad():
        for name in tg:
            tg[name].copy_(tau * tg[name] + (1 - tau) * on[name])



# ---------------------------------------------------------------- initial state
def perturbed(base, gen, rel):
    """base + rel * rms(base) * N(0, 1) per tensor (a tensor of zeros: rel * 0.1 * N(0, 1))."""
    out = {}
    for k, v in base.items():
        rms = v.pow(2).mean().sqrt().item()
        out[k] = (v + rel * (rms if rms > 0 else 0.1) * torch.randn(v.shape, generator=gen)).float()
    return out


def calibrated(P, x, stem):
    """P with every BN running statistic set to the statistics of batch x."""
    Q = {k: v.double().clone() for k, v in P.items()}
    with torch.no_grad():
        h = resnet(Q, x.double(), "calib", stem)
        mlp(Q, "projector", h, "calib", True)
        classifier(Q, h, "calib")
    return {k: Q[k].float() if is_stat(k) else P[k] for k in P}


def build_initial_state(settings):
    """(online, target, frozen, batches, seen): float32 tensors keyed by our names, built from the first case's
    model; batches of (view1, view2, labels)."""
    cfg0 = settings["cases"][0]["config"]
    m, bt = cfg0["model"], settings["batch"]
    torch.manual_seed(settings["torch_seed"])
    w = m["width"]
    feat = 8 * w
    backbone = ResNet18(w, bt["channels"], m["stem_padding"])
    projector = bn_mlp(feat, m["proj_hidden"], m["proj_out"])
    predictor = bn_mlp(m["proj_out"], m["pred_hidden"], m["proj_out"])
    head = classifier_mlp(feat, m["classifier_hidden"], settings["num_classes"], m["classifier_input_norm"])
    distill = bn_mlp(m["proj_out"], m["distill_hidden"], m["proj_out"])
    online = {}
    for prefix, mod in [("backbone", backbone), ("projector", projector), ("predictor", predictor),
                        ("classifier", head), ("distill_predictor", distill)]:
        online.update(state(prefix, mod))

    gen = torch.Generator().manual_seed(settings["torch_seed"] + 1)
    # Trained-looking BatchNorm affine parameters (see the module docs).
    bn_init = settings["online_bn_affine"]
    for k in sorted(online):
        stem_name, leaf = k.rsplit(".", 1)
        if f"{stem_name}.running_mean" in online and leaf in ("weight", "bias"):
            v = online[k]
            noise = torch.randn(v.shape, generator=gen)
            online[k] = (v + bn_init[f"{leaf}_std"] * noise).float()

    bb_proj = {k: v for k, v in online.items() if k.startswith(("backbone.", "projector."))}
    target = perturbed({k: v for k, v in bb_proj.items() if not is_stat(k)}, gen, 0.05)
    for k, v in bb_proj.items():
        if k.endswith("running_mean"):
            target[k] = (0.1 * torch.randn(v.shape, generator=gen)).float()
        elif k.endswith("running_var"):
            target[k] = (0.5 + torch.rand(v.shape, generator=gen)).float()

    frozen = perturbed({k: v for k, v in online.items()
                        if k.startswith(("backbone.", "projector.", "classifier.")) and not is_stat(k)}, gen, 0.3)
    for k, v in online.items():
        if is_stat(k) and k.startswith(("backbone.", "projector.", "classifier.")):
            frozen[k] = v.clone()
    calib = torch.randn(32, bt["channels"], bt["height"], bt["width"], generator=gen)
    frozen = calibrated(frozen, calib, m["stem_padding"])
    for k in sorted(frozen):
        v = frozen[k]
        if k.endswith("running_mean"):
            frozen[k] = (v + 0.1 * v.abs().mean() * torch.randn(v.shape, generator=gen)).float()
        elif k.endswith("running_var"):
            frozen[k] = (v * (0.8 + 0.45 * torch.rand(v.shape, generator=gen))).float()
    # A confident previous classifier (logits of order 1, not the near-uniform soft labels of a fresh init), so
    # that cls_kd depends on the teacher: its last layer scaled up.
    last = max(int(k.split(".")[1]) for k in frozen if k.startswith("classifier."))
    for leaf in ("weight", "bias"):
        frozen[f"classifier.{last}.{leaf}"] = frozen[f"classifier.{last}.{leaf}"] * settings["frozen_logit_scale"]

    num_tasks = cfg0["data"]["num_tasks"]
    order = cfg0["data"]["class_order"]
    per_task = len(order) // num_tasks
    seen = sorted(order[: (settings["task"] + 1) * per_task])
    batches = []
    for k in range(settings["steps"]):
        shape = (bt["size"], bt["channels"], bt["height"], bt["width"])
        v1 = torch.randn(shape, generator=gen)
        v2 = torch.randn(shape, generator=gen)
        # Every third sample unlabelled (-1), the others labelled with a seen class.
        labels = [-1 if i % 3 == 2 - k % 3 else seen[int(torch.randint(len(seen), (1,), generator=gen))]
                  for i in range(bt["size"])]
        batches.append((v1, v2, torch.tensor(labels, dtype=torch.int64)))
    return online, target, frozen, batches, seen


def case_initial_state(case, base_model, online, target, frozen):
    """A case's initial (online, target, frozen) and what it overrides of the shared state ({group: tensors}).
    The cases share the state built from the first case's model; a later case may only switch
    `model.classifier_input_norm` off: its classifier is the same Linear-ReLU-Linear without the input BatchNorm
    (classifier.1 -> classifier.0, classifier.3 -> classifier.2, same values)."""
    m = case["config"]["model"]
    diff = {k for k in set(m) | set(base_model) if m.get(k) != base_model.get(k)}
    assert diff <= {"classifier_input_norm"}, f"a case may differ in model.classifier_input_norm only, not {diff}"
    if not diff:
        return (online, target, frozen), {}
    assert base_model["classifier_input_norm"] and not m["classifier_input_norm"]

    def plain(d):
        head = {}
        for k, v in d.items():
            for old, new in [("classifier.1.", "classifier.0."), ("classifier.3.", "classifier.2.")]:
                if k.startswith(old):
                    head[new + k[len(old):]] = v
        rest = {k: v for k, v in d.items() if not k.startswith("classifier.")}
        return {**rest, **head}, head

    (on, on_head), (fr, fr_head) = plain(online), plain(frozen)
    return (on, target, fr), {"online": on_head, "frozen": fr_head}


# ---------------------------------------------------------------- the two steps of one case
def run_case(case, settings, state, batches, seen, dtype, lars_report=None):
    """Expected tensors of one case (float64 values, keyed as in the fixture), computed in `dtype` from
    `state` = the case's initial (online, target, frozen)."""
    online0, target0, frozen0 = state
    cfg = case["config"]
    tr = cfg["train"]
    stem = cfg["model"]["stem_padding"]
    on = {k: v.to(dtype).clone().requires_grad_(not is_stat(k)) for k, v in online0.items()}
    tg = {k: v.to(dtype).clone() for k, v in target0.items()}
    fr = {k: v.to(dtype).clone() for k, v in frozen0.items()}
    spe = settings["steps_per_epoch"]
    total_steps = spe * tr["epochs"]
    warmup = min(round_half_away(tr["warmup_epochs"] * spe), total_steps)
    buffers = {}
    out = {}
    pre = f"expect.{case['name']}"
    for k, (v1, v2, y) in enumerate(batches):
        lr = warmup_cosine(k, tr["lr"], warmup, total_steps, tr["warmup_start_lr"])
        tau = cosine_tau(tr["base_tau"], tr["final_tau"], k + 1, total_steps)
        terms = loss_terms(cfg, on, tg, fr, v1.to(dtype), v2.to(dtype), y, seen, stem)
        total = None
        for name, weight, value in terms:
            assert weight > 0, f"{name}: every term is on in this twin"
            out[f"{pre}.step{k}.loss.{name}"] = value.detach().reshape(1).double()
            total = weight * value if total is None else total + weight * value
        out[f"{pre}.step{k}.total"] = total.detach().reshape(1).double()
        out[f"{pre}.step{k}.lr"] = torch.tensor([lr], dtype=torch.float64)
        out[f"{pre}.step{k}.tau"] = torch.tensor([tau], dtype=torch.float64)
        for p in on.values():
            p.grad = None
        total.backward()
        if k in case["stored"]["grad"]:
            for name, p in on.items():
                if not is_stat(name):
                    assert p.grad is not None, f"{name} got no gradient"
                    out[f"{pre}.step{k}.grad.{name}"] = p.grad.detach().double().clone()
        log = []
        optimizer_step(cfg, on, buffers, lr, log)
        if lars_report is not None:
            lars_report.append((case["name"], k, log))
        ema_update(tg, on, tau)
        for group, d in [("online", on), ("target", tg)]:
            if k in case["stored"][group]:
                for name, v in d.items():
                    out[f"{pre}.step{k}.{group}.{name}"] = v.detach().double().clone()
    return out


# ---------------------------------------------------------------- the test's metric, for the conditioning check
def snapshot_of(key):
    """The snapshot a checked key belongs to (as the Rust test groups them), or None (lr, tau)."""
    parts = key.split(".")
    if parts[3] in ("grad", "online", "target"):
        return ".".join(parts[:4])
    if parts[3] in ("loss", "total"):
        return ".".join(parts[:3]) + ".loss"
    return None


def max_errors(ref, other):
    """Largest relative error per snapshot kind under the Rust test's metric: max|a - b| / max(max|b|, 1e-3 S)."""
    snaps = {}
    for k in ref:
        s = snapshot_of(k)
        if s is not None:
            snaps.setdefault(s, []).append(k)
    worst = {}
    for s, keys in snaps.items():
        scale = max(ref[k].abs().max().item() for k in keys)
        floor = FLOOR_FRACTION * scale
        kind = s.split(".", 2)[2]
        for k in keys:
            rel = (other[k] - ref[k]).abs().max().item() / max(ref[k].abs().max().item(), floor)
            if rel >= worst.get(kind, (0.0, ""))[0]:
                worst[kind] = (rel, k)
    return worst


def jittered(d, gen):
    """float64 copies perturbed by float32 rounding-sized relative noise (2^-24 * N(0, 1))."""
    return {k: v.double() * (1 + 2.0 ** -24 * torch.randn(v.shape, generator=gen, dtype=torch.float64))
            for k, v in d.items()}


def conditioning(settings, states, batches, seen, expected, trials):
    """How far float32-sized noise moves the checked tensors, under the test's metric: (1) this twin run in
    float32, (2) the float64 twin from inputs perturbed by float32 rounding-sized noise (the conditioning of
    the exact problem: no float32 implementation can be expected to do much better)."""
    result = {}
    f32 = {}
    for case in settings["cases"]:
        f32.update(run_case(case, settings, states[case["name"]], batches, seen, torch.float32))
    result["torch_float32"] = max_errors(expected, f32)
    gen = torch.Generator().manual_seed(12345)
    worst = {}
    for _ in range(trials):
        bt = [(jittered({"x": a}, gen)["x"], jittered({"x": b}, gen)["x"], y) for a, b, y in batches]
        out = {}
        for case in settings["cases"]:
            state = tuple(jittered(d, gen) for d in states[case["name"]])
            out.update(run_case(case, settings, state, bt, seen, torch.float64))
        for kind, (rel, k) in max_errors(expected, out).items():
            if rel >= worst.get(kind, (0.0, ""))[0]:
                worst[kind] = (rel, k)
    result["float64_from_jittered_inputs"] = worst
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "kaizen-core", "tests", "fixtures",
                                                  "step_twin.safetensors"))
    ap.add_argument("--torch-seed", type=int, default=None, help="override SETTINGS['torch_seed']")
    ap.add_argument("--trials", type=int, default=4, help="jittered float64 runs of the conditioning check")
    ap.add_argument("--force", action="store_true", help="write the fixture even if it is ill-conditioned")
    a = ap.parse_args()
    torch.set_num_threads(1)
    settings = copy.deepcopy(SETTINGS)
    if a.torch_seed is not None:
        settings["torch_seed"] = a.torch_seed
    online, target, frozen, batches, seen = build_initial_state(settings)
    tensors = {}
    for group, d in [("online", online), ("target", target), ("frozen", frozen)]:
        for k, v in d.items():
            tensors[f"init.{group}.{k}"] = v.contiguous()
    states = {}
    for case in settings["cases"]:
        states[case["name"]], overrides = case_initial_state(
            case, settings["cases"][0]["config"]["model"], online, target, frozen)
        for group, d in overrides.items():
            for k, v in d.items():
                tensors[f"init.{case['name']}.{group}.{k}"] = v.clone().contiguous()
    for k, (v1, v2, y) in enumerate(batches):
        tensors[f"batch{k}.view1"] = v1.contiguous()
        tensors[f"batch{k}.view2"] = v2.contiguous()
        tensors[f"batch{k}.labels"] = y.contiguous()
        print(f"batch{k} labels {y.tolist()} (seen classes {seen})")
    lars_report = []
    expected = {}
    for case in settings["cases"]:
        out = run_case(case, settings, states[case["name"]], batches, seen, torch.float64, lars_report)
        for k in range(settings["steps"]):
            pre = f"expect.{case['name']}.step{k}"
            print(f"{case['name']} step {k}: lr {out[pre + '.lr'].item():.6f} tau {out[pre + '.tau'].item():.6f} "
                  + " ".join(f"{n}={out[f'{pre}.loss.{n}'].item():.6f}" for n in ("ssl", "cls_ce", "fe_kd", "cls_kd"))
                  + f" total={out[pre + '.total'].item():.6f}")
        expected.update(out)
    # LARS clip: min(r / lr_g, 1). Both sides of the min should occur, none within rounding of 1.
    ok = True
    for name, k, log in lars_report:
        clipped = sum(1 for _, r in log if r >= 1.0)
        closest = min(log, key=lambda e: abs(math.log(e[1])))
        print(f"{name} step {k}: LARS on {len(log)} tensors: r / lr_g >= 1 (capped at 1) on {clipped}, "
              f"< 1 on {len(log) - clipped}; closest to 1: {closest[0]} {closest[1]:.4f}")
        if abs(math.log(closest[1])) < 0.02:
            print("  a LARS ratio within 2% of 1: float32 could take the other side of the clip")
            ok = False
        if clipped in (0, len(log)):
            print("  only one side of the LARS clip occurs")
            ok = False
    cond = conditioning(settings, states, batches, seen, expected, a.trials)
    for what, worst in cond.items():
        for kind, (rel, k) in sorted(worst.items()):
            flag = "" if rel <= CONDITION_LIMIT else f"  > {CONDITION_LIMIT:g}"
            ok &= rel <= CONDITION_LIMIT
            print(f"conditioning {what:30s} {kind:8s} {rel:.2e}  ({k}){flag}")
    if not ok and not a.force:
        raise SystemExit(f"ill-conditioned fixture: a LARS ratio at the clip, or float32-sized noise moving a "
                         f"checked tensor by more than {CONDITION_LIMIT:g} (a quarter of the test's tolerance); "
                         f"try another --torch-seed")
    settings["conditioning"] = {what: {kind: float(f"{rel:.3g}") for kind, (rel, _) in worst.items()}
                                for what, worst in cond.items()}
    for k, v in expected.items():
        scalar = k.endswith((".lr", ".tau", ".total")) or ".loss." in k
        tensors[k] = (v.double() if scalar else v.float()).contiguous()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    from safetensors.torch import save_file  # only needed to write the fixture

    save_file(tensors, a.out, metadata={"settings": json.dumps(settings, sort_keys=True)})
    print(f"wrote {a.out}: {len(tensors)} tensors, {os.path.getsize(a.out)} bytes")


if __name__ == "__main__":
    main()
