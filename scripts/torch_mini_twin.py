#!/usr/bin/env python3
"""Whole-run PyTorch twin of our `mini` recipe: the accuracy matrix of a continual-learning run, from PyTorch.

A developer tool: nothing in the build, the CLI or the tests runs it. It trains the same recipe as
`kaizen run` (preset `mini`, `configs/presets/mini.toml` + the defaults of `kaizen-core/src/config.rs`) in
PyTorch, task by task, evaluates the classifier after every task and writes the accuracy matrix R and the
continual-learning metrics of `/work/shared/docs/metrics.md`, so that a PyTorch matrix can be set side by side
with ours over seeds. Same data, same class order (given or read from one of our runs), same model, losses,
optimiser, schedules and evaluation; NOT bit-identical (other random streams, see "Differences").

Install torch once (CPU is enough; torchvision is not needed):
    python3 -m venv ~/.venv-torch && ~/.venv-torch/bin/pip install torch numpy
(It imports scripts/torch_step_twin.py, which must sit next to it: the losses, schedules and constants are
shared; safetensors is only needed to write the step twin's fixture, not here.)

Examples (from the repository root):
    # one seed, the three strategies, the class order given explicitly (ours: manifest.json -> class_order)
    ~/.venv-torch/bin/python scripts/torch_mini_twin.py --seeds 1 --class-order 9,6,1,7,8,0,5,4,2,3 \
        --threads 2 --out runs/twin-s1
    # the 3-seed x 3-strategy comparison against a `kaizen run --compare kaizen,cassle,finetune --seeds 1,2,3
    # --out runs/cmp` directory: seeds and per-seed class orders are read from it, and its finished runs'
    # numbers (summary.json, protocol classifier) are printed next to the PyTorch ones
    ~/.venv-torch/bin/python scripts/torch_mini_twin.py --from-run runs/cmp --threads 2 --out runs/twin-cmp
    # smoke test (a few steps per task)
    ~/.venv-torch/bin/python scripts/torch_mini_twin.py --seeds 1 --strategies kaizen,finetune --epochs 1 \
        --max-steps-per-task 3 --out /tmp/twin-smoke

Expected run time (measured with --threads 1 on the 2-core machine while it ran other experiments, load ~5, so
the process had about 60% of a core): about 0.29 s per step at task 0 and for finetune, 0.35 s per step for cassle
at tasks >= 1, 0.55 s per step for kaizen at tasks >= 1 (96 images per view with the replay batch, plus the frozen
model's forward); about 1 s of evaluation per task. One task is 155 steps (2000 images // 64 = 31 steps x 5
epochs), so one seed is about 6.5 min (kaizen) + 4.5 min (cassle) + 4 min (finetune) = 15 min, and 3 seeds x 3
strategies about 45 min; expect roughly half of that on an idle machine. (`kaizen run --compare` takes under 10
minutes per seed on the same 2 cores, kNN and linear probes included.)
Sanity check of the step alone (no data, seconds): `--check-step` runs this twin's step (its modules, loss_terms,
LarsSgd, ema_update) in float64 on the two cases of `scripts/torch_step_twin.py` (the float64 reference behind our
step_twin fixture; one case with the classifier's input BatchNorm, one without), each from that case's initial
state, and prints the largest relative differences of lr / tau, losses, gradients, updated weights and EMA target
(~1e-15 when written; it fails above 1e-10 or when an expected value of the step twin goes unchecked).

What it mirrors (our code is the spec; file names relative to the repository root)
- Config: the `mini` preset on top of `ExperimentConfig::default()`; `--set section.key=value` takes our config
  names, `--recipe-from-run` adopts the recipe of the run named by `--from-run` (its manifest's `config`).
  Only `method = "byol"`, distiller `auto`/`predictive` and the IDX datasets (fashion-mnist-mini, fashion-mnist,
  mnist; 1 channel) are supported.
- Data (`kaizen-data`): the embedded fashion-mnist-mini IDX files (`kaizen-data/data/fashion-mnist-mini/`, 1000 train
  + 200 test per class) or `--data-root DIR` with the standard IDX names (`[raw/|FashionMNIST/raw/|MNIST/raw/]
  train-images-idx3-ubyte[.gz]`, ...); `data.train_per_class` / `data.test_per_class` keep the first N / M images
  of each class; normalisation with the per-channel mean and std of the training images in use, std floored at
  1/255 (`channel_stats`). Tasks: the class order cut into `num_tasks` tasks; a task's training images in dataset
  order; `data.label_fraction` labels round(f * n_c) images per class.
- Model (`kaizen-core/src/network.rs`, `kaizen-models/src/{resnet,mlp,batch_norm,init}.rs`): CIFAR ResNet-18
  (3x3 stride-1 stem with padding `stem_padding`, BN, ReLU, no max-pool; BasicBlocks w, 2w, 4w, 8w with strides
  1, 2, 2, 2 and 1x1-conv+BN shortcuts; global average pool), width 8, 1 input channel; BYOL projector and
  predictor and the distillation predictor Linear-BN-ReLU-Linear (512 hidden, 128 out); classifier
  [BatchNorm1d(64, affine=False) when `model.classifier_input_norm`] -> Linear(64, 1000)-ReLU-Linear(1000, C) on
  DETACHED features (`train.classifier_detach`). Initialisation: PyTorch's defaults (U(+-1/sqrt(fan_in)) for conv
  and linear weights and linear biases, BN 1/0), which are exactly the rules of our `init.rs`. BN: PyTorch
  semantics (eps 1e-5, momentum 0.1, unbiased running variance); three modes as our `BnMode`: train (batch
  statistics + running update), batch (batch statistics, no update) and eval (running statistics).
- One step (`kaizen-core/src/step.rs::loss_terms`, `method.rs`, `distill/mod.rs`, `loss/`): each view through the
  online backbone and projector separately (view 1 then view 2, so running statistics update twice per step);
  ssl = byol(pred(z1), t2) + byol(pred(z2), t1) with t_v the momentum target's projection in batch-statistics
  mode, byol(p, z) = 2 - 2 mean cos(p, z); cls_ce = masked_ce(l1) + masked_ce(l2) (a SUM over views, mean over
  labelled images; with `loss.ce_classes = "seen"` the logits of classes of tasks after the current one are set
  to -1e9 first); fe_kd = (byol(h(z1), z_old1) + byol(h(z2), z_old2)) / 2; cls_kd = (soft_ce(l1, l_old1, T) +
  soft_ce(l2, l_old2, T)) / 2 (unmasked logits, no T^2); total = 1 ssl + 1 cls_ce + 1 fe_kd + 2 cls_kd. The two
  distillation terms exist only at tasks >= 1 and only for the distilling strategies; the frozen model is a
  snapshot of backbone + projector + classifier taken at the start of the task, run with running statistics
  (`train.teacher_bn = "eval"`; "train" = batch statistics).
- Strategies (`StrategyKind`): kaizen (all four terms + labelled replay), cassle (ssl + fe_kd + cls_ce), finetune
  (ssl + cls_ce).
- Loop (`kaizen-core/src/train.rs`): per task, epochs of shuffled batches of 64 (drop_last when the task has at
  least 64 images; steps per epoch = max(n // 64, 1)); kaizen adds a replay mini-batch of min(32, memory size)
  distinct stored images (true labels) to every batch, through every term; two augmented views per image;
  optimiser rebuilt (momentum buffers cleared) at every task; warm-up + cosine lr per step restarted every task
  (`WarmupCosine`: warmup_steps = round(warmup_epochs * steps_per_epoch), linear from warmup_start_lr 0.003 to
  lr at warmup_steps - 1, cosine to 0 at the task's last step); EMA target <- tau target + (1 - tau) online for
  backbone + projector, parameters AND running statistics, after every step with tau = cosine_tau(0.99, 1.0,
  step_in_task + 1, total_steps) restarted every task; the target is created once (a copy of the initial online
  model) and persists across tasks. Replay memory (`kaizen-data/src/replay.rs`): after each kaizen task,
  round(0.01 * task images) labelled images (20 for mini), class-balanced by water-filling.
- Optimiser (`step.rs::build_optimizer`, `kaizen-models/src/optim.rs`): group main (backbone, projector,
  predictor, distillation predictor) at lr with weight decay 1e-5 and LARS; group classifier at
  lr * classifier_lr / lr (the same schedule, scaled), weight decay 0, LARS when `train.classifier_lars`. LARS as
  solo-learn: tensors of rank <= 1 and biases skip LARS and weight decay; otherwise r = eta |p| / (|g| + wd |p| +
  1e-8) (norms in float64) clipped to min(r / lr_g, 1), d = (g + wd p) r; momentum 0.9 as torch.optim.SGD
  (buf = d on the first step); p -= lr_g buf. Parameters without a gradient at a step (the distillation
  predictor at task 0 and for finetune) are skipped entirely.
- Augmentation (`kaizen-data/src/augment/`): random resized crop with torchvision's sampling (10 attempts, scale
  crop_min_scale..crop_max_scale, log-uniform ratio 3/4..4/3, sizes rounded half away from zero, uniform offset,
  else the whole (square) image), bilinear resize back to 28x28 with half-pixel centres and edge clamping inside
  the crop (our `crop.rs` tables), horizontal flip p 0.5 folded into the resampling; colour jitter with p 0.8:
  brightness and contrast factors U[0.6, 1.4] applied in random order (contrast blends with the image mean, both
  clamp to [0, 1]); grayscale is a no-op on 1 channel; solarisation (x >= 128/255 -> 1 - x) with p 0 (view 1) /
  0.2 (view 2); normalisation. Pixels stay float in [0, 1] between the operations.
- Evaluation (`kaizen-core/src/eval.rs`, protocol `classifier`): after each task, backbone and classifier in eval
  mode on every test image, argmax over ALL classes, accuracy per task -> one row of R. Metrics (`kaizen-metrics`,
  `metrics.md`): final accuracy, average incremental accuracy, forgetting (per task and mean), backward transfer,
  plasticity. Not implemented: classifier_seen, kNN, linear probe, forward transfer, intransigence.

Differences from our Rust trainer (know them before reading a gap as a bug)
- Random streams: ours draw every random number from ChaCha8 streams keyed by (seed, purpose, counters)
  (`kaizen-data/src/rng.rs`, `kaizen-models/src/init.rs`); the twin uses torch's generator (initialisation,
  `torch.manual_seed(seed)`) and numpy's PCG64 (`default_rng([seed, purpose, ...])`) for the seeded class order,
  batch order, augmentation parameters, replay filling and replay sampling. So initial weights, batches, views
  and replayed images all differ from ours for the same seed; only their distributions agree. Like ours, the
  random numbers depend on (seed, task, epoch, step) but not on the strategy, so the three strategies of one seed
  see the same initial model, the same batches and the same views of the current-task images.
- Class order: without `--class-order` / `--from-run`, a seeded numpy permutation, which is NOT our
  `ClassOrder::Seeded(seed)` order (the script says so when it happens).
- Numerics: PyTorch's float32 kernels vs ours (convolutions, reductions, the fused LARS/SGD update); the
  augmentation's interpolation is computed in float32 from float64 coordinates as ours, but the order of float
  operations differs. Nothing here aims at bit equality; `scripts/torch_step_twin.py` checks one step exactly.
- `--max-steps-per-task N` truncates every task after N steps without shortening its lr / tau schedules (a smoke
  test, not a recipe); the results then say `"truncated": true`.
- Not mirrored: checkpoints and resume, the NaN guard's error message details, the prefetch thread, metrics.jsonl,
  kNN / linear-probe / classifier_seen matrices, joint and random strategies, methods other than BYOL, 3-channel
  datasets (CIFAR, image folders).

Output (--out DIR, default runs/torch-twin):
  DIR/seed-<s>/<strategy>/acc_matrix_classifier.csv   R in our CSV format (a `#` comment line, then T rows)
  DIR/seed-<s>/<strategy>/results.json                matrix, metrics, per-epoch mean losses, timings, config
  DIR/comparison.md, DIR/comparison.json               mean +- sample std over the seeds per strategy, per-seed
                                                       final accuracies; with --from-run also ours from the run's
                                                       summary.json files (same seeds, protocol classifier)
Progress (task, epoch, mean losses per epoch, seconds) goes to stderr; the comparison table to stdout.
"""
import argparse
import copy
import gzip
import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
# One definition of each formula for both twins: the losses (kaizen-core/src/loss/), the lr and tau schedules
# (optim.rs WarmupCosine, ema.rs cosine_tau) and the BatchNorm / masking constants are the step twin's
# (scripts/torch_step_twin.py: importing it only defines things). The model, loss_terms, LarsSgd and ema_update
# below are this twin's own (what --check-step compares with the step twin's functional float64 reference).
from torch_step_twin import (BN_EPS, BN_MOMENTUM, MASKED_LOGIT, byol, cosine_tau, masked_ce,  # noqa: E402
                             soft_ce, warmup_cosine)

REPO = Path(__file__).resolve().parent.parent
EMBEDDED = REPO / "kaizen-data" / "data" / "fashion-mnist-mini"

STRATEGIES = ("kaizen", "cassle", "finetune")

# ExperimentConfig::default() (kaizen-core/src/config.rs, kaizen-data AugmentConfig::default()) with the mini
# preset (configs/presets/mini.toml) applied: only the keys this twin reads.
MINI = {
    "seed": 5,
    "strategy": "kaizen",
    "method": "byol",
    "distiller": "auto",
    "data": {
        "dataset": "fashion-mnist-mini",
        "data_root": "",
        "num_tasks": 5,
        "class_order": [],
        "label_fraction": 1.0,
        "train_per_class": 0,
        "test_per_class": 0,
        "replay_fraction": 0.01,
        "replay_count": 0,
        "replay_batch": 32,
    },
    "model": {
        "arch": "resnet18",
        "width": 8,
        "stem_padding": 1,
        "proj_hidden": 512,
        "proj_out": 128,
        "pred_hidden": 512,
        "distill_hidden": 512,
        "classifier_hidden": 1000,
        "classifier_input_norm": True,
    },
    "train": {
        "epochs": 5,
        "batch_size": 64,
        "optimizer": "lars",
        "lr": 0.25,
        "classifier_lr": 0.1,
        "classifier_lars": True,
        "weight_decay": 1e-5,
        "momentum": 0.9,
        "lars_eta": 0.02,
        "warmup_epochs": 1.0,
        "warmup_start_lr": 0.003,
        "base_tau": 0.99,
        "final_tau": 1.0,
        "classifier_detach": True,
        "teacher_bn": "eval",
    },
    "loss": {
        "ssl": 1.0,
        "feature_distill": -1.0,
        "classifier_ce": 1.0,
        "ce_classes": "seen",
        "classifier_distill": 2.0,
        "distill_temperature": 1.0,
    },
    "eval": {"batch_size": 256},
    "augment": {
        "crop_min_scale": 0.2,
        "crop_max_scale": 1.0,
        "flip_p": 0.5,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.2,
        "hue": 0.1,
        "jitter_p": 0.8,
        "grayscale_p": 0.2,
        "solarize_p": [0.0, 0.2],
    },
}

# Keys of our config that change nothing in a BYOL classifier-protocol run (not compared with a run's config).
IGNORED_KEYS = {"seed", "strategy", "data.class_order", "train.checkpoint_every", "eval.knn", "eval.knn_k",
                "eval.knn_temperature", "eval.linear", "eval.linear_epochs", "eval.linear_lr",
                "eval.bank_per_class", "loss.temperature", "loss.distill_contrastive_temperature",
                "loss.queue_size"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ================================================================ config
def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def set_key(cfg, dotted, value):
    parts = dotted.split(".")
    node = cfg
    for p in parts[:-1]:
        if p not in node or not isinstance(node[p], dict):
            raise SystemExit(f"--set {dotted}: unknown config section `{p}` (this twin knows {sorted(cfg)})")
        node = node[p]
    if parts[-1] not in node:
        raise SystemExit(f"--set {dotted}: unknown or unsupported key (this twin reads: "
                         f"{', '.join(sorted(flatten(cfg)))})")
    node[parts[-1]] = value


def parse_value(text):
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return json.loads(t)
    except json.JSONDecodeError:
        return t.strip('"')


def resolved_weights(cfg, strategy):
    lo = cfg["loss"]
    fe = 0.0
    if strategy in ("kaizen", "cassle"):
        fe = 1.0 if lo["feature_distill"] < 0 else float(lo["feature_distill"])
    kd = float(lo["classifier_distill"]) if strategy == "kaizen" else 0.0
    return {"ssl": float(lo["ssl"]), "cls_ce": float(lo["classifier_ce"]), "fe_kd": fe, "cls_kd": kd}


def validate(cfg):
    if cfg["method"] != "byol":
        raise SystemExit(f"method `{cfg['method']}`: this twin implements BYOL only")
    if cfg["distiller"] not in ("auto", "predictive"):
        raise SystemExit(f"distiller `{cfg['distiller']}`: this twin implements the predictive distiller only")
    if cfg["model"]["arch"] != "resnet18":
        raise SystemExit("model.arch: only resnet18")
    if cfg["data"]["dataset"] not in ("fashion-mnist-mini", "fashion-mnist", "mnist"):
        raise SystemExit(f"dataset `{cfg['data']['dataset']}`: this twin reads IDX datasets only "
                         "(fashion-mnist-mini, fashion-mnist, mnist)")
    if cfg["train"]["optimizer"] not in ("lars", "sgd"):
        raise SystemExit("train.optimizer: lars or sgd")
    if cfg["train"]["teacher_bn"] not in ("eval", "train"):
        raise SystemExit("train.teacher_bn: eval or train")
    if cfg["loss"]["ce_classes"] not in ("seen", "all"):
        raise SystemExit("loss.ce_classes: seen or all")
    if cfg["train"]["batch_size"] < 2:
        raise SystemExit("train.batch_size must be at least 2")
    if not 0.0 <= cfg["train"]["base_tau"] <= cfg["train"]["final_tau"] <= 1.0:
        raise SystemExit("need 0 <= train.base_tau <= train.final_tau <= 1")


# ================================================================ our run directories
def find_runs(path):
    """Every run below `path` (a run dir, a `--compare` dir or a `--seeds` dir): dicts with seed, strategy,
    class_order, config, summary (None unless finished)."""
    path = Path(path)
    found = []
    for mf in sorted(path.glob("manifest.json")) + sorted(path.glob("*/manifest.json")) + \
            sorted(path.glob("seed-*/*/manifest.json")):
        try:
            m = json.loads(mf.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log(f"warning: {mf}: unreadable ({e}); skipped")
            continue
        if m.get("format") != "kaizen-run":
            continue
        summary = None
        sp = mf.parent / "summary.json"
        if sp.exists():
            try:
                summary = json.loads(sp.read_text())
            except (OSError, json.JSONDecodeError):
                summary = None
        found.append({"dir": str(mf.parent), "seed": int(m["seed"]), "strategy": str(m.get("strategy")),
                      "class_order": [int(c) for c in m["class_order"]], "config": m.get("config") or {},
                      "summary": summary, "finished": "end_time" in m})
    if not found:
        raise SystemExit(f"--from-run {path}: no kaizen run (manifest.json) there, in DIR/<strategy>/ or in "
                         "DIR/seed-<s>/<strategy>/")
    return found


def compare_configs(ours, twin):
    """Differences between a run's config and the twin's resolved one, on the keys the twin reads."""
    a, b = flatten(ours), flatten(twin)
    diffs = []
    for k in sorted(b):
        if k in IGNORED_KEYS:
            continue
        if k not in a:
            diffs.append(f"{k}: absent from the run's config (an older run?), twin uses {b[k]!r}")
        elif a[k] != b[k] and not (isinstance(a[k], (int, float)) and isinstance(b[k], (int, float))
                                   and float(a[k]) == float(b[k])):
            diffs.append(f"{k}: run {a[k]!r}, twin {b[k]!r}")
    for k in sorted(a):
        if k not in b and k not in IGNORED_KEYS:
            diffs.append(f"{k}: run sets {a[k]!r}, the twin does not implement this key")
    return diffs


# ================================================================ data
def gunzip_maybe(raw):
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def read_idx(path, ndim):
    raw = gunzip_maybe(Path(path).read_bytes())
    magic, = struct.unpack(">I", raw[:4])
    if magic >> 8 != 0x08 or (magic & 0xFF) != ndim:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file with {ndim} dimensions (magic {magic:#x})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: {data.size} bytes of data for dimensions {dims}")
    return data.reshape(dims)


def find_idx(root, stem, dataset):
    """Our idx.rs::find_file: DIR, DIR/raw, DIR/<MNIST|FashionMNIST>/raw; `-idx` or `.idx`; optional `.gz`."""
    sub = "MNIST" if dataset == "mnist" else "FashionMNIST"
    alt = stem.replace("-idx", ".idx", 1)
    dirs = (root, root / "raw", root / sub / "raw")
    for d in dirs:
        for n in (stem, stem + ".gz", alt, alt + ".gz"):
            if (d / n).is_file():
                return d / n
    raise SystemExit(f"{stem}[.gz] not found in {', '.join(str(d) for d in dirs)} (dataset {dataset}; "
                     "--dataset mnist looks in MNIST/raw, fashion-mnist in FashionMNIST/raw)")


def cap_per_class(labels, n):
    if n <= 0:
        return np.arange(len(labels))
    seen = {}
    keep = []
    for i, l in enumerate(labels.tolist()):
        seen[l] = seen.get(l, 0) + 1
        if seen[l] <= n:
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def load_data(cfg):
    dataset = cfg["data"]["dataset"]
    if dataset == "fashion-mnist-mini":
        root = EMBEDDED
    else:
        if not cfg["data"]["data_root"]:
            raise SystemExit(f"dataset {dataset} needs --data-root (the folder with the IDX files)")
        root = Path(cfg["data"]["data_root"])
    split = {}
    for name, prefix in (("train", "train"), ("test", "t10k")):
        x = read_idx(find_idx(root, f"{prefix}-images-idx3-ubyte", dataset), 3)
        y = read_idx(find_idx(root, f"{prefix}-labels-idx1-ubyte", dataset), 1).astype(np.int64)
        if len(x) != len(y):
            raise SystemExit(f"{root}: {len(x)} {name} images but {len(y)} labels")
        split[name] = (x, y)
    for name, key in (("train", "train_per_class"), ("test", "test_per_class")):
        x, y = split[name]
        keep = cap_per_class(y, cfg["data"][key])
        split[name] = (x[keep], y[keep])
    # channel_stats of the training images in use (load_config_dataset recomputes them after a per-class cap).
    px = split["train"][0].astype(np.float64)
    mean = px.mean() / 255.0
    std = max(math.sqrt(max((px * px).mean() - px.mean() ** 2, 0.0)) / 255.0, 1.0 / 255.0)
    num_classes = 10
    return {"train_x": split["train"][0], "train_y": split["train"][1], "test_x": split["test"][0],
            "test_y": split["test"][1], "mean": float(np.float32(mean)), "std": float(np.float32(std)),
            "num_classes": num_classes, "root": str(root)}


# ================================================================ augmentation (kaizen-data/src/augment/)
def round_half_away(x):
    return np.floor(np.abs(x) + 0.5) * np.sign(x)


def sample_crops(rng, n, height, width, min_scale, max_scale):
    """torchvision's RandomResizedCrop.get_params, vectorised over n images (as our crop::sample_crop)."""
    area = float(height * width)
    scale = rng.uniform(min_scale, max_scale, size=(n, 10)) if max_scale > min_scale else np.full((n, 10), min_scale)
    logr = rng.uniform(math.log(3 / 4), math.log(4 / 3), size=(n, 10))
    target = area * scale
    ratio = np.exp(logr)
    w = round_half_away(np.sqrt(target * ratio)).astype(np.int64)
    h = round_half_away(np.sqrt(target / ratio)).astype(np.int64)
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = np.argmax(ok, axis=1)
    any_ok = ok.any(axis=1)
    rows = np.arange(n)
    hh = np.where(any_ok, h[rows, first], height)
    ww = np.where(any_ok, w[rows, first], width)
    # Square images: the fallback is the whole image (ratio 1 lies in [3/4, 4/3]).
    if height != width:
        in_ratio = width / height
        if in_ratio < 3 / 4:
            fw, fh = width, min(max(int(round_half_away(width / (3 / 4))), 1), height)
        elif in_ratio > 4 / 3:
            fw, fh = min(max(int(round_half_away(height * (4 / 3))), 1), width), height
        else:
            fw, fh = width, height
        hh = np.where(any_ok, hh, fh)
        ww = np.where(any_ok, ww, fw)
    fi = (height - hh) // 2
    fj = (width - ww) // 2
    oi = np.floor(rng.random(n) * (height - hh + 1)).astype(np.int64)
    oj = np.floor(rng.random(n) * (width - ww + 1)).astype(np.int64)
    return np.where(any_ok, oi, fi), np.where(any_ok, oj, fj), hh, ww


def tap_table(offset, length, dst_len):
    """Our crop::table, vectorised: (n, dst_len) source indices s0, s1 (absolute) and weight of s1."""
    d = np.arange(dst_len, dtype=np.float64)[None, :]
    L = length[:, None].astype(np.float64)
    s = np.maximum((d + 0.5) * L / dst_len - 0.5, 0.0)
    s0 = np.minimum(np.floor(s), L - 1)
    s1 = np.minimum(s0 + 1, L - 1)
    f = (s - s0).astype(np.float32)
    off = offset[:, None]
    return (off + s0).astype(np.int64), (off + s1).astype(np.int64), f


class Augmenter:
    def __init__(self, acfg, mean, std, height, width):
        self.a = acfg
        self.mean, self.std = mean, std
        self.h, self.w = height, width

    def views(self, images, rng, view):
        """images: (n, H, W) uint8 tensor -> (n, 1, H, W) float32 normalised view `view` (0 or 1)."""
        a = self.a
        n, H, W = images.shape[0], self.h, self.w
        i, j, h, w = sample_crops(rng, n, H, W, a["crop_min_scale"], a["crop_max_scale"])
        jit = rng.random(n) < a["jitter_p"]
        bright_first = rng.random(n) < 0.5  # the Fisher-Yates permutation of (brightness, contrast)
        bf = rng.uniform(max(0.0, 1 - a["brightness"]), 1 + a["brightness"], n)
        cf = rng.uniform(max(0.0, 1 - a["contrast"]), 1 + a["contrast"], n)
        _gray = rng.random(n) < a["grayscale_p"]  # a no-op on 1 channel (drawn for the record)
        sol = rng.random(n) < a["solarize_p"][min(view, 1)]
        flip = rng.random(n) < a["flip_p"]
        y0, y1, fy = tap_table(i, h, H)
        x0, x1, fx = tap_table(j, w, W)
        x0 = np.where(flip[:, None], x0[:, ::-1], x0)
        x1 = np.where(flip[:, None], x1[:, ::-1], x1)
        fx = np.where(flip[:, None], fx[:, ::-1], fx)
        src = images.float()
        b = torch.arange(n)[:, None, None]
        Y0, Y1 = torch.from_numpy(y0)[:, :, None], torch.from_numpy(y1)[:, :, None]
        X0, X1 = torch.from_numpy(np.ascontiguousarray(x0))[:, None, :], torch.from_numpy(np.ascontiguousarray(x1))[:, None, :]
        FX = torch.from_numpy(np.ascontiguousarray(fx))[:, None, :]
        FY = torch.from_numpy(fy)[:, :, None]
        pa, pb, pc, pe = src[b, Y0, X0], src[b, Y0, X1], src[b, Y1, X0], src[b, Y1, X1]
        top = pa + (pb - pa) * FX
        bot = pc + (pe - pc) * FX
        x = (top + (bot - top) * FY) * (1.0 / 255.0)
        # colour jitter (factors 1 for the images without jitter: both operations are then the identity)
        bfac = torch.from_numpy(np.where(jit, bf, 1.0).astype(np.float32))[:, None, None]
        cfac = torch.from_numpy(np.where(jit, cf, 1.0).astype(np.float32))[:, None, None]

        def brightness(v):
            return (v * bfac).clamp(0.0, 1.0)

        def contrast(v):
            m = v.mean(dim=(1, 2), keepdim=True)
            return (cfac * v + (1.0 - cfac) * m).clamp(0.0, 1.0)

        order = torch.from_numpy(bright_first)[:, None, None]
        x = torch.where(order, contrast(brightness(x)), brightness(contrast(x)))
        s = torch.from_numpy(sol)[:, None, None]
        x = torch.where(s & (x >= 128.0 / 255.0), 1.0 - x, x)
        x = (x - self.mean) / self.std
        return x.unsqueeze(1).contiguous()


# ================================================================ model
class BN(nn.Module):
    """BatchNorm over dim 1 with our three BnModes: train (batch stats + running update), batch, eval."""

    def __init__(self, n, affine=True):
        super().__init__()
        if affine:
            self.weight = nn.Parameter(torch.ones(n))
            self.bias = nn.Parameter(torch.zeros(n))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x, mode):
        if mode == "eval":
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, BN_EPS)
        if mode == "batch":
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, BN_EPS)
        assert mode == "train"
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True, BN_MOMENTUM,
                            BN_EPS)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = BN(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = BN(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down_conv = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
            self.down_bn = BN(cout)
            self.down = True

    def forward(self, x, mode):
        h = F.relu(self.bn1(self.conv1(x), mode))
        h = self.bn2(self.conv2(h), mode)
        skip = self.down_bn(self.down_conv(x), mode) if self.down else x
        return F.relu(h + skip)


class ResNet18(nn.Module):
    """CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool), widths w, 2w, 4w, 8w; (B, C, H, W) -> (B, 8w)."""

    def __init__(self, width, in_channels, stem_padding):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, stem_padding, bias=False)
        self.bn1 = BN(width)
        blocks = []
        cin = width
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            cout = width * mult
            blocks += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x, mode):
        h = F.relu(self.bn1(self.conv1(x), mode))
        for blk in self.blocks:
            h = blk(h, mode)
        return h.mean(dim=(2, 3))


class Head(nn.Module):
    """[input BN without affine] -> Linear -> [BN] -> ReLU -> Linear (our Mlp with one hidden layer)."""

    def __init__(self, din, hidden, dout, batch_norm, input_norm=False):
        super().__init__()
        self.inorm = BN(din, affine=False) if input_norm else None
        self.fc1 = nn.Linear(din, hidden)
        self.bn = BN(hidden) if batch_norm else None
        self.fc2 = nn.Linear(hidden, dout)

    def forward(self, x, mode):
        if self.inorm is not None:
            x = self.inorm(x, mode)
        h = self.fc1(x)
        if self.bn is not None:
            h = self.bn(h, mode)
        return self.fc2(F.relu(h))


class Online(nn.Module):
    def __init__(self, m, in_channels, num_classes):
        super().__init__()
        feat = 8 * m["width"]
        self.backbone = ResNet18(m["width"], in_channels, m["stem_padding"])
        self.projector = Head(feat, m["proj_hidden"], m["proj_out"], True)
        self.predictor = Head(m["proj_out"], m["pred_hidden"], m["proj_out"], True)
        self.classifier = Head(feat, m["classifier_hidden"], num_classes, False, m["classifier_input_norm"])
        self.distill_predictor = Head(m["proj_out"], m["distill_hidden"], m["proj_out"], True)


class Snapshot(nn.Module):
    """The BYOL target (backbone + projector) or the frozen previous model (+ classifier): no gradients."""

    def __init__(self, online, with_classifier):
        super().__init__()
        self.backbone = copy.deepcopy(online.backbone)
        self.projector = copy.deepcopy(online.projector)
        self.classifier = copy.deepcopy(online.classifier) if with_classifier else None
        for p in self.parameters():
            p.requires_grad_(False)


# ================================================================ optimiser (step.rs::build_optimizer, optim.rs)
class LarsSgd:
    def __init__(self, tc, online):
        main = []
        for part in ("backbone", "projector", "predictor", "distill_predictor"):
            main += [(f"{part}.{n}", p) for n, p in getattr(online, part).named_parameters()]
        cls = [(f"classifier.{n}", p) for n, p in online.classifier.named_parameters()]
        lars = tc["optimizer"] == "lars"
        self.groups = [
            {"params": main, "scale": 1.0, "wd": tc["weight_decay"], "lars": lars},
            {"params": cls, "scale": tc["classifier_lr"] / tc["lr"] if tc["lr"] > 0 else 0.0, "wd": 0.0,
             "lars": lars and tc["classifier_lars"]},
        ]
        self.eta, self.momentum = tc["lars_eta"], tc["momentum"]
        self.buffers = {}

    @torch.no_grad()
    def step(self, lr):
        for g in self.groups:
            lr_g = lr * g["scale"]
            wd = g["wd"]
            for name, p in g["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                excluded = p.dim() <= 1 or name.endswith(".bias")
                wd_eff, r = 0.0, 1.0
                if not excluded:
                    if g["lars"]:
                        pn = torch.linalg.vector_norm(p, dtype=torch.float64).item()
                        gn = torch.linalg.vector_norm(grad, dtype=torch.float64).item()
                        if pn != 0.0 and gn != 0.0:
                            r = self.eta * pn / (gn + wd * pn + 1e-8)
                            r = min(r / lr_g, 1.0) if lr_g > 0 else 1.0
                            wd_eff = wd
                    else:
                        wd_eff = wd
                d = grad.add(p, alpha=wd_eff) if wd_eff != 0.0 else grad.clone()
                if r != 1.0:
                    d.mul_(r)
                if self.momentum != 0.0:
                    buf = self.buffers.get(name)
                    if buf is None:
                        self.buffers[name] = buf = d
                    else:
                        buf.mul_(self.momentum).add_(d)
                    d = buf
                p.add_(d, alpha=-lr_g)

    def zero_grad(self):
        for g in self.groups:
            for _, p in g["params"]:
                p.grad = None


@torch.no_grad()
def ema_update(target, online, tau):
    if tau == 1.0:
        return
    t = [*target.backbone.parameters(), *target.backbone.buffers(), *target.projector.parameters(),
         *target.projector.buffers()]
    o = [*online.backbone.parameters(), *online.backbone.buffers(), *online.projector.parameters(),
         *online.projector.buffers()]
    torch._foreach_mul_(t, tau)
    torch._foreach_add_(t, o, alpha=1.0 - tau)


# ================================================================ replay (kaizen-data/src/replay.rs)
def replay_add(memory, train_y, labelled, cfg, seed, task):
    d = cfg["data"]
    labelled = np.asarray(labelled, dtype=np.int64)
    classes = sorted(set(train_y[labelled].tolist()))
    by_class = [labelled[train_y[labelled] == c] for c in classes]
    total = sum(len(v) for v in by_class)
    if d["replay_count"] > 0:
        n = min(d["replay_count"], total)
    else:
        f = min(max(d["replay_fraction"], 0.0), 1.0)
        task_size = int(np.isin(train_y, classes).sum())
        n = min(int(math.floor(f * task_size + 0.5)), total)
    if n == 0:
        return
    avail = [len(v) for v in by_class]
    quota = [0] * len(avail)
    left = n
    while True:
        open_ = [k for k in range(len(avail)) if quota[k] < avail[k]]
        if left == 0 or not open_:
            break
        share = left // len(open_)
        if share == 0:
            rng = np.random.default_rng([seed, 3, task, 2 ** 63])
            for k in rng.choice(open_, size=left, replace=False):
                quota[k] += 1
            break
        for k in open_:
            add = min(share, avail[k] - quota[k])
            quota[k] += add
            left -= add
    chosen = []
    for c, pos, q in zip(classes, by_class, quota):
        rng = np.random.default_rng([seed, 3, task, c])
        chosen += rng.choice(pos, size=q, replace=False).tolist()
    memory += sorted(chosen)


def labelled_mask(train_y, idx, fraction, seed, task):
    f = min(max(fraction, 0.0), 1.0)
    mask = np.zeros(len(idx), dtype=bool)
    for c in sorted(set(train_y[idx].tolist())):
        pos = np.nonzero(train_y[idx] == c)[0]
        k = int(math.floor(f * len(pos) + 0.5))
        rng = np.random.default_rng([seed, 2, task, c])
        mask[rng.choice(pos, size=k, replace=False)] = True
    return mask


# ================================================================ metrics (kaizen-metrics, metrics.md)
def cl_metrics(R):
    T = len(R)
    m = {"final_accuracy": sum(R[T - 1]) / T,
         "average_incremental_accuracy": sum(sum(R[i][:i + 1]) / (i + 1) for i in range(T)) / T,
         "plasticity": sum(R[j][j] for j in range(T)) / T}
    if T > 1:
        f = [max(R[l][j] for l in range(j, T - 1)) - R[T - 1][j] for j in range(T - 1)]
        m["per_task_forgetting"] = f
        m["forgetting"] = sum(f) / (T - 1)
        m["backward_transfer"] = sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)
    else:
        m["per_task_forgetting"], m["forgetting"], m["backward_transfer"] = [], None, None
    return m


def write_matrix_csv(path, R):
    lines = ["# accuracy matrix R[i][j]: row i = after training task i, column j = test set of task j; "
             "fractions in [0, 1]; NA = not evaluated"]
    lines += [",".join(repr(float(v)) for v in row) for row in R]
    Path(path).write_text("\n".join(lines) + "\n")


# ================================================================ one run
def evaluate(online, data, task_of_class, T, bs):
    online.eval()
    with torch.no_grad():
        feats = torch.cat([online.backbone(data["test_xn"][k:k + bs], "eval")
                           for k in range(0, len(data["test_xn"]), bs)])
        preds = online.classifier(feats, "eval").argmax(dim=1).numpy()
    y = data["test_y"]
    task = task_of_class[y]
    row = []
    for j in range(T):
        sel = task == j
        row.append(float((preds[sel] == y[sel]).mean()) if sel.any() else float("nan"))
    return row


def run_one(cfg, strategy, seed, class_order, data, max_steps, out_dir, tag):
    torch.manual_seed(seed)
    C, T = data["num_classes"], cfg["data"]["num_tasks"]
    per_task = C // T
    tasks = [class_order[k * per_task:(k + 1) * per_task] for k in range(T)]
    task_of_class = np.zeros(C, dtype=np.int64)
    for k, cl in enumerate(tasks):
        task_of_class[cl] = k
    online = Online(cfg["model"], 1, C)
    target = Snapshot(online, with_classifier=False)
    weights = resolved_weights(cfg, strategy)
    distilling = weights["fe_kd"] > 0 or weights["cls_kd"] > 0
    tc, lo = cfg["train"], cfg["loss"]
    teacher_mode = "eval" if tc["teacher_bn"] == "eval" else "batch"
    aug = Augmenter(cfg["augment"], data["mean"], data["std"], 28, 28)
    train_x, train_y = data["train_x_t"], data["train_y"]
    memory = []
    R, epochs_log = [], []
    truncated = False
    t_run = time.time()
    steps_done = 0
    for t in range(T):
        idx = np.nonzero(np.isin(train_y, tasks[t]))[0]
        mask = labelled_mask(train_y, idx, cfg["data"]["label_fraction"], seed, t)
        visible = np.where(mask, train_y[idx], -1)
        vis_of = dict(zip(idx.tolist(), visible.tolist()))
        bs = tc["batch_size"]
        spe = max(len(idx) // bs, 1)
        total = spe * tc["epochs"]
        warm = min(int(math.floor(tc["warmup_epochs"] * spe + 0.5)), total)
        frozen = None
        if t > 0 and distilling:
            frozen = Snapshot(online, with_classifier=True)
        opt = LarsSgd(tc, online)
        seen = np.zeros(C, dtype=bool)
        if lo["ce_classes"] == "seen":
            for k in range(t + 1):
                seen[tasks[k]] = True
        else:
            seen[:] = True
        seen_t = torch.from_numpy(seen)
        replay_n = cfg["data"]["replay_batch"] if (strategy == "kaizen" and memory) else 0
        online.train()
        done = 0  # steps run in this task (differs from the schedule position only when truncated)
        t_task = time.time()
        for e in range(tc["epochs"]):
            if max_steps is not None and done >= max_steps:
                truncated = True
                break
            t_ep = time.time()
            order = np.random.default_rng([seed, 5, t, e]).permutation(idx)
            batches = [order[k:k + bs] for k in range(0, len(order), bs)]
            if len(idx) >= bs:  # drop_last
                batches = [b for b in batches if len(b) == bs]
            sums = {}
            for s, b in enumerate(batches):
                if max_steps is not None and done >= max_steps:
                    truncated = True
                    break
                step_in_task = e * spe + s
                labels = [vis_of[i] for i in b.tolist()]
                parts = [(b, np.random.default_rng([seed, 6, t, e, s, 0]))]
                if replay_n > 0:
                    rr = np.random.default_rng([seed, 4, t, step_in_task])
                    r = rr.permutation(np.asarray(memory))[:min(replay_n, len(memory))]
                    labels += train_y[r].tolist()
                    parts.append((r, np.random.default_rng([seed, 6, t, e, s, 1])))
                v1, v2 = [], []
                for ids, rng in parts:
                    imgs = train_x[torch.from_numpy(ids)]
                    v1.append(aug.views(imgs, rng, 0))
                    v2.append(aug.views(imgs, rng, 1))
                x1, x2 = torch.cat(v1), torch.cat(v2)
                y = torch.tensor(labels, dtype=torch.int64)
                lr = warmup_cosine(step_in_task, tc["lr"], warm, total, tc["warmup_start_lr"])
                terms = loss_terms(online, target, frozen, x1, x2, y, seen_t, weights, lo, tc, teacher_mode,
                                   lo["ce_classes"] == "seen")
                total_loss = None
                values = {}
                tv = 0.0
                for name, w, val in terms:
                    v = float(val.detach())
                    if not math.isfinite(v):
                        raise SystemExit(f"{tag}: loss term `{name}` is {v} at task {t}, step {step_in_task}")
                    values[name] = v
                    tv += w * v
                    total_loss = val * w if total_loss is None else total_loss + val * w
                values["total"] = tv
                opt.zero_grad()
                total_loss.backward()
                opt.step(lr)
                ema_update(target, online, cosine_tau(tc["base_tau"], tc["final_tau"], step_in_task + 1, total))
                for k, v in values.items():
                    sums.setdefault(k, []).append(v)
                done += 1
                steps_done += 1
            if not sums:
                break
            means = {k: sum(v) / len(v) for k, v in sums.items()}
            secs = time.time() - t_ep
            n_steps = len(next(iter(sums.values()), []))
            epochs_log.append({"task": t, "epoch": e, "steps": n_steps, "loss": means, "seconds": secs})
            log(f"[{tag}] task {t + 1}/{T} epoch {e + 1}/{tc['epochs']}: "
                + " ".join(f"{k} {means[k]:.4f}" for k in ("ssl", "cls_ce", "fe_kd", "cls_kd", "total")
                           if k in means)
                + f"  ({n_steps} steps, {secs:.1f} s, {secs / max(n_steps, 1):.3f} s/step)")
        row = evaluate(online, data, task_of_class, T, cfg["eval"]["batch_size"])
        R.append(row)
        log(f"[{tag}] after task {t + 1}: accuracy per task " + " ".join(f"{a:.3f}" for a in row)
            + f"  (task {time.time() - t_task:.1f} s)")
        if strategy == "kaizen":
            labelled = idx[mask]
            replay_add(memory, train_y, labelled, cfg, seed, t)
    metrics = cl_metrics(R)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_matrix_csv(out_dir / "acc_matrix_classifier.csv", R)
    result = {
        "format": "kaizen-torch-twin", "seed": seed, "strategy": strategy, "protocol": "classifier",
        "class_order": [int(c) for c in class_order], "tasks": [[int(c) for c in k] for k in tasks],
        "matrix": R, "metrics": metrics, "effective_weights": weights, "truncated": truncated,
        "max_steps_per_task": max_steps, "steps": steps_done, "seconds": time.time() - t_run,
        "epochs": epochs_log, "replay_memory_size": len(memory), "config": cfg,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    (out_dir / "results.json").write_text(json.dumps(result, indent=2))
    return result


def loss_terms(online, target, frozen, x1, x2, y, seen, w, lo, tc, teacher_mode, mask_unseen):
    """step.rs::loss_terms: [(name, weight, value)] in the order ssl, cls_ce, fe_kd, cls_kd (weight > 0 only)."""
    h1, h2 = online.backbone(x1, "train"), online.backbone(x2, "train")
    z1, z2 = online.projector(h1, "train"), online.projector(h2, "train")
    terms = []
    if w["ssl"] > 0:
        p1, p2 = online.predictor(z1, "train"), online.predictor(z2, "train")
        with torch.no_grad():
            t1 = target.projector(target.backbone(x1, "batch"), "batch")
            t2 = target.projector(target.backbone(x2, "batch"), "batch")
        terms.append(("ssl", w["ssl"], byol(p1, t2) + byol(p2, t1)))
    need_logits = w["cls_ce"] > 0 or (w["cls_kd"] > 0 and frozen is not None)
    if need_logits:
        f1, f2 = (h1.detach(), h2.detach()) if tc["classifier_detach"] else (h1, h2)
        l1, l2 = online.classifier(f1, "train"), online.classifier(f2, "train")
    if w["cls_ce"] > 0:
        if mask_unseen:
            m1 = torch.where(seen, l1, torch.full_like(l1, MASKED_LOGIT))
            m2 = torch.where(seen, l2, torch.full_like(l2, MASKED_LOGIT))
        else:
            m1, m2 = l1, l2
        terms.append(("cls_ce", w["cls_ce"], masked_ce(m1, y) + masked_ce(m2, y)))
    if frozen is not None:
        with torch.no_grad():
            g1, g2 = frozen.backbone(x1, teacher_mode), frozen.backbone(x2, teacher_mode)
            o1, o2 = frozen.projector(g1, teacher_mode), frozen.projector(g2, teacher_mode)
            if w["cls_kd"] > 0:
                ol1, ol2 = frozen.classifier(g1, teacher_mode), frozen.classifier(g2, teacher_mode)
        if w["fe_kd"] > 0:
            q1, q2 = online.distill_predictor(z1, "train"), online.distill_predictor(z2, "train")
            terms.append(("fe_kd", w["fe_kd"], (byol(q1, o1) + byol(q2, o2)) / 2))
        if w["cls_kd"] > 0:
            T = lo["distill_temperature"]
            terms.append(("cls_kd", w["cls_kd"], (soft_ce(l1, ol1, T) + soft_ce(l2, ol2, T)) / 2))
    if not terms:
        raise SystemExit("every loss term is switched off (all weights are 0): nothing to train")
    return terms


# ================================================================ aggregation
def mean_std(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return m, s


def fmt(m, s):
    if m is None:
        return "-"
    return f"{m:.3f} ± {s:.3f}" if s is not None else f"{m:.3f}"


METRIC_COLS = [("final_accuracy", "final acc"), ("average_incremental_accuracy", "avg inc acc"),
               ("forgetting", "forgetting"), ("plasticity", "plasticity"), ("backward_transfer", "BWT")]


def comparison(results, ours, seeds, strategies, notes):
    rows, js = [], {"seeds": seeds, "protocol": "classifier", "strategies": {}, "notes": notes}
    header = "| strategy | source | seeds | " + " | ".join(c for _, c in METRIC_COLS) + " | final acc per seed |"
    rows.append(header)
    rows.append("|" + "---|" * (len(METRIC_COLS) + 4))
    for st in strategies:
        for source, table in (("torch twin", results), ("ours (kaizen)", ours)):
            per_seed = {s: table.get((s, st)) for s in seeds if table.get((s, st)) is not None}
            if not per_seed:
                continue
            agg = {}
            cells = []
            for key, _ in METRIC_COLS:
                m, sd = mean_std([per_seed[s].get(key) for s in per_seed])
                agg[key] = {"mean": m, "std": sd, "per_seed": {str(s): per_seed[s].get(key) for s in per_seed}}
                cells.append(fmt(m, sd))
            finals = ", ".join(f"s{s}: {per_seed[s]['final_accuracy']:.3f}" for s in per_seed)
            rows.append(f"| {st} | {source} | {len(per_seed)} | " + " | ".join(cells) + f" | {finals} |")
            js["strategies"].setdefault(st, {})["torch" if source == "torch twin" else "ours"] = agg
    md = ["# PyTorch twin of the mini recipe: classifier protocol", "",
          "mean ± sample standard deviation over the seeds; R[i][j] after task i on task j's test images, "
          "argmax over all classes", ""] + rows + [""]
    if notes:
        md += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(md), js


# ================================================================ --check-step
def step_twin_names(model):
    """{name in model.state_dict(): the step twin's name}: torchvision names for the backbone (blocks.k ->
    layer{k // 2 + 1}.{k % 2}, down_conv / down_bn -> downsample.0 / .1) and nn.Sequential indices for the heads,
    as our Mlp (kaizen-models/src/mlp.rs): [inorm ->] 0, then fc1, bn, ReLU, fc2 with BN (0, 1, 3) or fc1, ReLU,
    fc2 without (0, 2); every index one higher after an input BatchNorm (classifier_input_norm: 1, 3)."""
    import re

    out = {}
    for name in model.state_dict():
        part, rest = name.split(".", 1)
        m = re.fullmatch(r"blocks\.(\d+)\.(.*)", rest) if part == "backbone" else None
        if m:
            k, leaf = int(m.group(1)), m.group(2)
            leaf = re.sub(r"^down_conv\.", "downsample.0.", re.sub(r"^down_bn\.", "downsample.1.", leaf))
            out[name] = f"backbone.layer{k // 2 + 1}.{k % 2}.{leaf}"
        elif part == "backbone":
            out[name] = name
        else:
            head = getattr(model, part)
            assert isinstance(head, Head), name
            layer, leaf = rest.split(".", 1)
            first = 1 if head.inorm is not None else 0
            step = 3 if head.bn is not None else 2
            idx = {"inorm": 0, "fc1": first, "bn": first + 1, "fc2": first + step}[layer]
            out[name] = f"{part}.{idx}.{leaf}"
    assert len(set(out.values())) == len(out), "two tensors map to one step-twin name"
    return out


def check_step():
    """Run this twin's step (its model classes, loss_terms, LarsSgd, ema_update) on the two-step cases of
    scripts/torch_step_twin.py (its functional float64 reference of one Kaizen step, the generator of our
    step_twin fixture), each case from its own initial state (the classifier with or without its input
    BatchNorm), and report the largest relative difference per quantity. Every expected value of the step twin
    (schedule, losses, total, gradients, online and target tensors) must be compared. No data; a few seconds."""
    import torch_step_twin as ref

    settings = copy.deepcopy(ref.SETTINGS)
    online0, target0, frozen0, batches, seen = ref.build_initial_state(settings)
    base_model = settings["cases"][0]["config"]["model"]
    channels, num_classes = settings["batch"]["channels"], settings["num_classes"]

    def load(model, src):
        """model <- src (step-twin names, float32) in float64; the two must hold exactly the same tensors."""
        names = step_twin_names(model)
        missing = sorted(set(src) - set(names.values()))
        extra = sorted(n for n in names.values() if n not in src)
        assert not missing and not extra, f"state mismatch: step twin only {missing}, this twin only {extra}"
        model.load_state_dict({k: src[names[k]].double() for k in model.state_dict()})

    worst_all = 0.0
    for case in settings["cases"]:
        cfg = case["config"]
        state, _ = ref.case_initial_state(case, base_model, online0, target0, frozen0)
        case_online, case_target, case_frozen = state
        expected = ref.run_case(case, settings, state, batches, seen, torch.float64)
        on = Online(cfg["model"], channels, num_classes).double()
        load(on, case_online)
        tg = Snapshot(on, with_classifier=False)
        fr = Snapshot(on, with_classifier=True)
        load(tg, case_target)
        load(fr, case_frozen)
        names = {"online": step_twin_names(on), "target": step_twin_names(tg)}
        tc, lo = cfg["train"], cfg["loss"]
        weights = resolved_weights(cfg, "kaizen")
        opt = LarsSgd(tc, on)
        seen_mask = torch.zeros(num_classes, dtype=torch.bool)
        seen_mask[seen] = True
        spe = settings["steps_per_epoch"]
        total = spe * tc["epochs"]
        warm = min(int(math.floor(tc["warmup_epochs"] * spe + 0.5)), total)
        worst = {}
        checked = set()

        def cmp(kind, a, key):
            b = expected[key]
            assert a.shape == b.shape, f"{key}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
            e = (a.double() - b).abs().max().item() / max(b.abs().max().item(), 1e-12)
            worst[kind] = max(worst.get(kind, 0.0), e)
            checked.add(key)

        pre = f"expect.{case['name']}"
        for k, (v1, v2, y) in enumerate(batches):
            lr = warmup_cosine(k, tc["lr"], warm, total, tc["warmup_start_lr"])
            tau = cosine_tau(tc["base_tau"], tc["final_tau"], k + 1, total)
            cmp("lr/tau", torch.tensor([lr], dtype=torch.float64), f"{pre}.step{k}.lr")
            cmp("lr/tau", torch.tensor([tau], dtype=torch.float64), f"{pre}.step{k}.tau")
            terms = loss_terms(on, tg, fr, v1.double(), v2.double(), y, seen_mask, weights, lo, tc,
                               "eval" if tc["teacher_bn"] == "eval" else "batch", lo["ce_classes"] == "seen")
            tot = None
            for name, wt, val in terms:
                cmp("loss", val.detach().reshape(1), f"{pre}.step{k}.loss.{name}")
                tot = val * wt if tot is None else tot + val * wt
            cmp("total", tot.detach().reshape(1), f"{pre}.step{k}.total")
            opt.zero_grad()
            tot.backward()
            if k in case["stored"]["grad"]:
                for n, p in on.named_parameters():
                    assert p.grad is not None, f"{n} got no gradient"
                    cmp("grad", p.grad, f"{pre}.step{k}.grad.{names['online'][n]}")
            opt.step(lr)
            ema_update(tg, on, tau)
            if k in case["stored"]["online"]:
                for n, v in on.state_dict().items():
                    cmp("online", v, f"{pre}.step{k}.online.{names['online'][n]}")
            if k in case["stored"]["target"]:
                for n, v in tg.state_dict().items():
                    cmp("target", v, f"{pre}.step{k}.target.{names['target'][n]}")
        unchecked = sorted(set(expected) - checked)
        assert not unchecked, f"{case['name']}: expected values this check did not compare: {unchecked[:5]} ..."
        inorm = "with" if cfg["model"]["classifier_input_norm"] else "without"
        print(f"{case['name']} (classifier {inorm} input norm; {len(checked)} values): largest relative difference "
              + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
        worst_all = max(worst_all, *worst.values())
    ok = worst_all < 1e-10
    print(f"--check-step: {'OK' if ok else 'MISMATCH'} (worst {worst_all:.1e}, float64 on both sides)")
    return ok


# ================================================================ main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (head of this file) for what is mirrored.")
    ap.add_argument("--strategies", default="kaizen,cassle,finetune", help="comma list of kaizen, cassle, finetune")
    ap.add_argument("--seeds", default=None, help="comma list (default: the seeds of --from-run, else 1)")
    ap.add_argument("--class-order", default=None, help="explicit class order, e.g. 9,6,1,7,8,0,5,4,2,3 (every seed)")
    ap.add_argument("--from-run", default=None,
                    help="one of our run directories (DIR/manifest.json), a --compare directory (DIR/<strategy>/) "
                         "or a --seeds directory (DIR/seed-<s>/<strategy>/): seeds and class orders from it, its "
                         "finished runs' metrics printed next to the twin's")
    ap.add_argument("--recipe-from-run", action="store_true",
                    help="also adopt the run's config (its manifest's `config`) as the recipe (flags and --set "
                         "still override)")
    ap.add_argument("--data-root", default=None, help="folder of IDX files (then --dataset fashion-mnist or mnist)")
    ap.add_argument("--dataset", default=None, help="fashion-mnist-mini (default), fashion-mnist or mnist")
    ap.add_argument("--train-per-class", type=int, default=None, help="keep the first N train images per class")
    ap.add_argument("--test-per-class", type=int, default=None, help="keep the first M test images per class")
    ap.add_argument("--ce-classes", choices=("seen", "all"), default=None)
    ap.add_argument("--classifier-input-norm", dest="cin", action="store_true", default=None)
    ap.add_argument("--no-classifier-input-norm", dest="cin", action="store_false")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--classifier-lr", type=float, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--kd-weight", type=float, default=None, help="loss.classifier_distill (lambda_C)")
    ap.add_argument("--kd-temperature", type=float, default=None, help="loss.distill_temperature")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any key of our config the twin reads, e.g. train.classifier_lars=false (repeatable)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--max-steps-per-task", type=int, default=None, help="smoke tests: stop each task after N steps")
    ap.add_argument("--out", default="runs/torch-twin")
    ap.add_argument("--check-step", action="store_true",
                    help="only compare this twin's step with scripts/torch_step_twin.py's float64 reference, then exit")
    args = ap.parse_args()
    if args.check_step:
        torch.set_num_threads(max(args.threads, 1))
        raise SystemExit(0 if check_step() else 1)

    torch.set_num_threads(max(args.threads, 1))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in STRATEGIES:
            raise SystemExit(f"unknown strategy `{s}`: the twin runs {', '.join(STRATEGIES)}")

    cfg = copy.deepcopy(MINI)
    notes = []
    runs = find_runs(args.from_run) if args.from_run else []
    if runs and args.recipe_from_run:
        base = flatten(runs[0]["config"])
        for k, v in base.items():
            if k in flatten(cfg) and k not in ("seed", "strategy", "data.class_order"):
                set_key(cfg, k, v)
        notes.append(f"recipe adopted from {runs[0]['dir']}/manifest.json")
    for kv in args.set:
        if "=" not in kv:
            raise SystemExit(f"--set {kv}: expected KEY=VALUE")
        k, v = kv.split("=", 1)
        set_key(cfg, k.strip(), parse_value(v))
    for flag, key in ((args.ce_classes, "loss.ce_classes"), (args.cin, "model.classifier_input_norm"),
                      (args.lr, "train.lr"), (args.classifier_lr, "train.classifier_lr"),
                      (args.epochs, "train.epochs"), (args.kd_weight, "loss.classifier_distill"),
                      (args.kd_temperature, "loss.distill_temperature"),
                      (args.train_per_class, "data.train_per_class"), (args.test_per_class, "data.test_per_class"),
                      (args.dataset, "data.dataset"), (args.data_root, "data.data_root")):
        if flag is not None:
            set_key(cfg, key, flag)
    if args.data_root and not args.dataset and cfg["data"]["dataset"] == "fashion-mnist-mini":
        cfg["data"]["dataset"] = "mnist" if "mnist" in Path(args.data_root).name.lower() and \
            "fashion" not in str(args.data_root).lower() else "fashion-mnist"
        log(f"--data-root without --dataset: reading it as `{cfg['data']['dataset']}` (class names only differ)")
    validate(cfg)

    # seeds and class orders
    orders = {}
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    elif runs:
        seeds = sorted({r["seed"] for r in runs})
    else:
        seeds = [1]
    if args.class_order:
        co = [int(c) for c in args.class_order.split(",")]
        for s in seeds:
            orders[s] = co
        notes.append(f"class order {co} (given) for every seed")
    elif runs:
        for s in seeds:
            cos = {tuple(r["class_order"]) for r in runs if r["seed"] == s}
            if not cos:
                raise SystemExit(f"--from-run {args.from_run}: no run with seed {s} (found seeds "
                                 f"{sorted({r['seed'] for r in runs})}); pass --class-order or other --seeds")
            if len(cos) > 1:
                raise SystemExit(f"--from-run: the runs of seed {s} disagree on the class order: {sorted(cos)}")
            orders[s] = list(next(iter(cos)))
        notes.append("class orders read from " + args.from_run)
    else:
        for s in seeds:
            orders[s] = np.random.default_rng([s, 1]).permutation(10).tolist()
        msg = ("no --class-order / --from-run: class orders are seeded numpy permutations, NOT the orders our "
               "runs use for the same seeds (theirs: manifest.json -> class_order)")
        log("warning: " + msg)
        notes.append(msg)

    if runs:
        diffs = compare_configs(runs[0]["config"], cfg)
        if diffs:
            log(f"note: the config of {runs[0]['dir']} differs from the twin's recipe on:")
            for d in diffs:
                log("  " + d)
            notes += ["config difference vs our run: " + d for d in diffs]

    data = load_data(cfg)
    C = data["num_classes"]
    T = cfg["data"]["num_tasks"]
    if C % T:
        raise SystemExit(f"{C} classes cannot be split into {T} tasks")
    for s, co in orders.items():
        if sorted(co) != list(range(C)):
            raise SystemExit(f"class order {co} of seed {s} is not a permutation of 0..{C - 1}")
    data["train_x_t"] = torch.from_numpy(np.ascontiguousarray(data["train_x"]))
    test = torch.from_numpy(data["test_x"].astype(np.float32)) * (1.0 / 255.0)
    data["test_xn"] = ((test - data["mean"]) / data["std"]).unsqueeze(1).contiguous()
    log(f"data: {data['root']}: {len(data['train_y'])} train / {len(data['test_y'])} test images, mean "
        f"{data['mean']:.4f} std {data['std']:.4f}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    if args.max_steps_per_task is not None:
        notes.append(f"SMOKE TEST: every task stopped after {args.max_steps_per_task} steps")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for s in seeds:
        for st in strategies:
            tag = f"seed {s} {st}"
            log(f"[{tag}] class order {orders[s]}, weights {resolved_weights(cfg, st)}")
            c = copy.deepcopy(cfg)
            c["seed"], c["strategy"], c["data"]["class_order"] = s, st, orders[s]
            r = run_one(c, st, s, orders[s], data, args.max_steps_per_task, out / f"seed-{s}" / st, tag)
            results[(s, st)] = r["metrics"]
            log(f"[{tag}] done in {r['seconds']:.0f} s: final accuracy {r['metrics']['final_accuracy']:.3f}")
    ours = {}
    for r in runs:
        if r["summary"] and "classifier" in r["summary"].get("protocols", {}):
            ours[(r["seed"], r["strategy"])] = r["summary"]["protocols"]["classifier"]
    md, js = comparison(results, ours, seeds, strategies, notes)
    (out / "comparison.md").write_text(md)
    (out / "comparison.json").write_text(json.dumps(js, indent=2))
    print(md)


if __name__ == "__main__":
    main()
