"""Cross-check kaizen-metrics' weighted kNN against a PyTorch implementation of solo-learn's WeightedKNNClassifier
(cosine: L2-normalise, top-k similarities, weights exp(sim / T), votes summed per class, argmax).

Usage (from the repo root, with the optional PyTorch venv):
  ~/.venv-torch/bin/python kaizen-metrics/tools/knn_crosscheck.py /tmp/knncheck
  cargo run --release -p kaizen-metrics --example knn_from_files -- /tmp/knncheck
  ~/.venv-torch/bin/python kaizen-metrics/tools/knn_crosscheck.py /tmp/knncheck --compare
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

M, N, D, C, K, T = 3000, 500, 64, 10, 20, 0.07


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if "--compare" not in sys.argv:
        rng = np.random.default_rng(0)
        means = rng.normal(size=(C, D)).astype(np.float32)
        bank_labels = rng.integers(0, C, size=M).astype(np.uint16)
        test_labels = rng.integers(0, C, size=N).astype(np.uint16)
        bank = means[bank_labels] + 5.0 * rng.normal(size=(M, D)).astype(np.float32)
        test = means[test_labels] + 5.0 * rng.normal(size=(N, D)).astype(np.float32)
        bank.astype("<f4").tofile(out / "bank.f32")
        test.astype("<f4").tofile(out / "test.f32")
        bank_labels.astype("<u2").tofile(out / "bank_labels.u16")
        test_labels.astype("<u2").tofile(out / "test_labels.u16")
        (out / "shape.txt").write_text(f"{M} {N} {D} {C}\n")
        print(f"wrote inputs to {out}")
        return
    bank = torch.from_numpy(np.fromfile(out / "bank.f32", dtype="<f4").reshape(M, D)).double()
    test = torch.from_numpy(np.fromfile(out / "test.f32", dtype="<f4").reshape(N, D)).double()
    bank_labels = torch.from_numpy(np.fromfile(out / "bank_labels.u16", dtype="<u2").astype(np.int64))
    sim = F.normalize(test, dim=1) @ F.normalize(bank, dim=1).T
    top_sim, top_idx = sim.topk(K, dim=1)
    votes = torch.zeros(N, C, dtype=torch.float64).scatter_add_(1, bank_labels[top_idx], (top_sim / T).exp())
    torch_pred = votes.argmax(dim=1).numpy()
    rust_pred = np.array([int(x) for x in (out / "rust_pred.txt").read_text().split()])
    agree = (torch_pred == rust_pred).mean()
    test_labels = np.fromfile(out / "test_labels.u16", dtype="<u2").astype(np.int64)
    print(f"agreement {agree:.4f} ({(torch_pred != rust_pred).sum()} of {N} differ); "
          f"accuracy torch {(torch_pred == test_labels).mean():.4f} rust {(rust_pred == test_labels).mean():.4f}")
    sys.exit(0 if agree == 1.0 else 1)


if __name__ == "__main__":
    main()
