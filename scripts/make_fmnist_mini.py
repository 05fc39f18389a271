#!/usr/bin/env python3
"""Build the embedded `fashion-mnist-mini` subset of Fashion-MNIST (python3 standard library only).

Input : the official gzipped IDX files, by default from the Debian package `dataset-fashion-mnist`
        (/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz).
Output: kaizen-data/data/fashion-mnist-mini/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz

Selection (deterministic, no randomness): walking each split in its original order, keep an image while its
class has fewer than N images kept so far (N = 1000 for train, 200 for test). The kept images stay in their
original relative order. The gzip streams are written with mtime=0 so the output is byte-identical on
every run.

Usage: python3 scripts/make_fmnist_mini.py [SRC_DIR] [OUT_DIR]
"""
import gzip
import os
import struct
import sys

PER_CLASS = {"train": 1000, "t10k": 200}
NUM_CLASSES = 10


def read_idx(path, expected_magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        sys.exit(f"{path}: wrong magic {magic:#x}, expected {expected_magic:#x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    item = 1
    for d in dims[1:]:
        item *= d
    if len(body) != dims[0] * item:
        sys.exit(f"{path}: body has {len(body)} bytes, header says {dims[0] * item}")
    return dims, body, item


def write_idx(path, magic, dims, body):
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims)
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
            f.write(header + body)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "kaizen-data", "data", "fashion-mnist-mini")
    os.makedirs(out, exist_ok=True)
    for split, n in PER_CLASS.items():
        idims, images, item = read_idx(os.path.join(src, f"{split}-images-idx3-ubyte.gz"), 0x00000803)
        ldims, labels, _ = read_idx(os.path.join(src, f"{split}-labels-idx1-ubyte.gz"), 0x00000801)
        if idims[0] != ldims[0]:
            sys.exit(f"{split}: {idims[0]} images but {ldims[0]} labels")
        kept = [0] * NUM_CLASSES
        sel = []
        for i, lab in enumerate(labels):
            if kept[lab] < n:
                kept[lab] += 1
                sel.append(i)
        if kept != [n] * NUM_CLASSES:
            sys.exit(f"{split}: only {kept} images per class available")
        img_body = b"".join(images[i * item : (i + 1) * item] for i in sel)
        lab_body = bytes(labels[i] for i in sel)
        write_idx(os.path.join(out, f"{split}-images-idx3-ubyte.gz"), 0x00000803, (len(sel),) + tuple(idims[1:]), img_body)
        write_idx(os.path.join(out, f"{split}-labels-idx1-ubyte.gz"), 0x00000801, (len(sel),), lab_body)
        print(f"{split}: kept {len(sel)} of {idims[0]} images ({n} per class); first indices {sel[:5]}")


if __name__ == "__main__":
    main()
