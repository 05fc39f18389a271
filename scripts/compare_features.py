#!/usr/bin/env python3
"""PyTorch cross-check of kaizen-rs backbones: the same images must give the same eval features.

Needs the PyTorch venv (torch + safetensors): ~/.venv-torch/bin/python scripts/compare_features.py [--width 16 ...]
and a built binary (cargo build --release -p kaizen-cli). For every width it checks both directions:

  kaizen -> torch: `kaizen init-model` (seeded), then `kaizen export`; a torchvision-named CIFAR ResNet-18 built here
                   loads the export with load_state_dict(strict=True) and computes eval features; `kaizen features`
                   computes them from the kaizen checkpoint.
  torch -> kaizen: a torch-initialised model with randomised BN affine parameters and running statistics (so eval mode
                   is exercised for real) is saved as safetensors (num_batches_tracked and an fc head included),
                   `kaizen import`ed, `kaizen features` run on it; then our re-export is loaded back into torch with
                   strict=True and must reproduce the torch state_dict exactly.

Relative error = max|ours - torch| / max|torch| over all features (reported with the elementwise max abs error).
With --train-check it also runs two SGD training steps (BatchNorm in training mode, cross-entropy on a linear head,
momentum 0.9, weight decay 5e-4) in torch and in kaizen (`cargo run --release -p kaizen-models --example train_check`)
from the same weights and compares the losses, the train-mode features, and every tensor afterwards (parameters and
running statistics): this checks the fast conv/BN kernels' gradients and the optimiser against PyTorch.

Exits non-zero when any relative error exceeds --tol (default 1e-4).
The model class follows torchvision's resnet18 names (conv1, bn1, layerN.M.{conv1,bn1,conv2,bn2,downsample.0/1});
at width 64 it is torchvision's resnet18 with the CIFAR stem (3x3 stride-1 conv1, no max-pool, fc removed).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class CifarResNet18(nn.Module):
    def __init__(self, width, in_channels, stem_padding=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, stem_padding, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        for i, (mult, stride) in enumerate([(1, 1), (2, 2), (4, 2), (8, 2)]):
            cout = width * mult
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return h.mean((2, 3))


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")


def rel_err(ours, ref):
    diff = (ours.double() - ref.double()).abs().max().item()
    return diff / max(ref.double().abs().max().item(), 1e-30), diff


def train_check(a, w, tmp):
    """Two torch SGD steps vs the kaizen example; returns the worst relative error."""
    torch.manual_seed(a.seed + 7 * w)
    model, head = CifarResNet18(w, 3), nn.Linear(8 * w, 10)
    x = torch.randn(8, 3, 16, 16)
    dt = torch.float64 if a.train_f64 else torch.float32
    y = torch.arange(8) % 10
    sd = {f"backbone.{k}": v.clone().contiguous() for k, v in model.state_dict().items() if "num_batches" not in k}
    sd.update({f"head.0.{k}": v.clone().contiguous() for k, v in head.state_dict().items()})
    save_file({**sd, "x": x, "y": y}, os.path.join(tmp, "train_in.safetensors"))  # f32; both sides convert for f64
    model, head, x = model.to(dt), head.to(dt), x.to(dt)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=a.train_lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    ref = {}
    for step in range(2):
        feats = model(x)
        loss = F.cross_entropy(head(feats), y)
        if step == 0:
            ref["feats0"] = feats.detach()
        ref[f"loss{step}"] = loss.detach()
        opt.zero_grad()
        loss.backward()
        if step == 0:
            for prefix, m in (("backbone.", model), ("head.0.", head)):
                ref.update({f"grad0.{prefix}{k}": v.grad.detach().clone() for k, v in m.named_parameters()})
        opt.step()
    ref.update({f"backbone.{k}": v for k, v in model.state_dict().items() if "num_batches" not in k})
    ref.update({f"head.0.{k}": v for k, v in head.state_dict().items()})
    out = os.path.join(tmp, "train_out.safetensors")
    env = dict(os.environ, **({"KAIZEN_TRAIN_CHECK_F64": "1"} if a.train_f64 else {}))
    run(["cargo", "run", "-q", "--release", "-p", "kaizen-models", "--example", "train_check", "--",
         os.path.join(tmp, "train_in.safetensors"), out, str(w), str(a.train_lr)], env)
    ours = load_file(out)
    assert set(ours) == set(ref), sorted(set(ours) ^ set(ref))
    errs = {k: rel_err(ours[k], ref[k])[0] for k in ref}
    if os.environ.get("DEBUG_TRAIN_CHECK"):
        for k in sorted(errs, key=lambda k: -errs[k])[:5]:
            print(f"  {k}: rel err {errs[k]:.2e}")
    # Forward values (loss of step 0, train-mode features) must agree to the tolerance. Gradients and updated tensors
    # are reported: a pre-activation within f32 rounding of 0 can take the other side of a ReLU (torch's backward
    # masks x > 0, candle's x >= 0), which changes one channel's gradient; the script counts such tensors.
    fwd = max(errs["loss0"], errs["feats0"])
    rest = {k: e for k, e in errs.items() if k not in ("loss0", "feats0")}
    bad = sorted(k for k, e in rest.items() if e > a.tol)
    worst_name = max(rest, key=rest.get)
    moved, _ = rel_err(ref["backbone.conv1.weight"], sd["backbone.conv1.weight"])
    print(f"width {w:3d}: train check ({'f64' if a.train_f64 else 'f32'}), loss {ref['loss0'].item():.6f} / {ours['loss0'].item():.6f} (torch / kaizen), "
          f"forward rel err {fwd:.2e}; grads and params after 2 SGD steps: {len(rest) - len(bad)}/{len(rest)} tensors "
          f"within {a.tol:.0e}, worst {rest[worst_name]:.2e} on `{worst_name}` (conv1 moved by {moved:.1e} relative)")
    return fwd, len(bad)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kaizen", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "kaizen"))
    ap.add_argument("--widths", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--in-channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=32, help="image height and width")
    ap.add_argument("--n", type=int, default=8, help="number of images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--train-check", action="store_true", help="also compare two SGD training steps with torch")
    ap.add_argument("--train-f64", action="store_true", help="run the training check in float64 on both sides")
    ap.add_argument("--train-lr", type=float, default=0.1, help="learning rate of the training check")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    worst = 0.0
    bad_tensors = 0
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda name: os.path.join(tmp, name)  # noqa: E731
        images = torch.randn(a.n, a.in_channels, a.size, a.size)
        save_file({"images": images.contiguous()}, p("images.safetensors"))
        for w in a.widths:
            common = ["--width", str(w), "--in-channels", str(a.in_channels)]
            # kaizen -> torch
            run([a.kaizen, "init-model", "--arch", "resnet18", *common, "--seed", str(a.seed + w), "--out", p("k.safetensors")])
            run([a.kaizen, "export", "--checkpoint", p("k.safetensors"), "--out", p("k_tv.safetensors")])
            model = CifarResNet18(w, a.in_channels)
            missing, unexpected = model.load_state_dict(load_file(p("k_tv.safetensors")), strict=True)
            model.eval()
            with torch.no_grad():
                ref = model(images)
            run([a.kaizen, "features", "--checkpoint", p("k.safetensors"), "--input", p("images.safetensors"), "--out", p("kf.safetensors")])
            ours = load_file(p("kf.safetensors"))["features"]
            assert ours.shape == ref.shape == (a.n, 8 * w), (ours.shape, ref.shape)
            r1, d1 = rel_err(ours, ref)

            # torch -> kaizen
            model = CifarResNet18(w, a.in_channels)
            g = torch.Generator().manual_seed(a.seed + 1000 + w)
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        c = m.num_features
                        m.weight.copy_(0.5 + torch.rand(c, generator=g))
                        m.bias.copy_(0.2 * torch.randn(c, generator=g))
                        m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                        m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                        m.num_batches_tracked.fill_(7)
            sd = {k: v.contiguous() for k, v in model.state_dict().items()}
            sd["fc.weight"] = torch.zeros(10, 8 * w)
            sd["fc.bias"] = torch.zeros(10)
            save_file(sd, p("t.safetensors"))
            model.eval()
            with torch.no_grad():
                ref = model(images)
            run([a.kaizen, "import", "--torch-backbone", p("t.safetensors"), "--arch", "resnet18", *common, "--out", p("t_k.safetensors")])
            run([a.kaizen, "features", "--checkpoint", p("t_k.safetensors"), "--input", p("images.safetensors"), "--out", p("tf.safetensors"), "--batch-size", "3"])
            ours = load_file(p("tf.safetensors"))["features"]
            r2, d2 = rel_err(ours, ref)
            # and back: our export of the imported model reproduces torch's tensors exactly
            run([a.kaizen, "export", "--checkpoint", p("t_k.safetensors"), "--out", p("t_k_tv.safetensors")])
            back = load_file(p("t_k_tv.safetensors"))
            model2 = CifarResNet18(w, a.in_channels)
            model2.load_state_dict(back, strict=True)
            exact = all(torch.equal(back[k], v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))
            print(f"width {w:3d}: kaizen->torch rel err {r1:.2e} (max abs {d1:.2e}); "
                  f"torch->kaizen rel err {r2:.2e} (max abs {d2:.2e}); re-export bit-exact: {exact}")
            worst = max(worst, r1, r2)
            if not exact:
                worst = float("inf")
            if a.train_check:
                fwd, nbad = train_check(a, w, tmp)
                worst = max(worst, fwd)
                bad_tensors += nbad
    print(f"worst relative error {worst:.2e} (tolerance {a.tol:.0e}): {'OK' if worst <= a.tol else 'FAIL'}")
    if a.train_check:
        print(f"train check: {bad_tensors} gradient/parameter tensors beyond the tolerance in total (ReLU ties, see above)")
    sys.exit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
