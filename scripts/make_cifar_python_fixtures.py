"""Writes the CIFAR *python version* test fixtures from the binary-version fixtures (real CIFAR test images, see
make_cifar_fixtures.py): kaizen-data/tests/fixtures/cifar-10-batches-py/ and cifar-100-python/, each batch a pickled
dict with a numpy uint8 `data` array (N x 3072) and the label lists, as torchvision's downloads hold them.

The CIFAR-10 batches are pickled at protocol 2 with bytes keys (numpy arrays through `_reconstruct`, bytes through
`_codecs.encode`: what Python 3 writes at protocol 2); the CIFAR-100 ones at protocol 5 with str keys (frames, memoize,
stack globals, short binbytes). Requires numpy.

    python scripts/make_cifar_python_fixtures.py
"""
import os
import pickle

import numpy as np

HERE = os.path.join(os.path.dirname(__file__), "..", "kaizen-data", "tests", "fixtures")


def records(path, label_bytes):
    raw = np.fromfile(path, dtype=np.uint8)
    rec = raw.reshape(-1, label_bytes + 3072)
    return rec[:, :label_bytes], np.ascontiguousarray(rec[:, label_bytes:])


def main():
    out = os.path.join(HERE, "cifar-10-batches-py")
    os.makedirs(out, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        labels, data = records(os.path.join(HERE, "cifar-10-batches-bin", name + ".bin"), 1)
        d = {b"batch_label": name.encode(), b"labels": [int(x) for x in labels[:, 0]], b"data": data,
             b"filenames": [f"{name}_{i}.png".encode() for i in range(len(data))]}
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump(d, f, protocol=2)
    out = os.path.join(HERE, "cifar-100-python")
    os.makedirs(out, exist_ok=True)
    for name in ["train", "test"]:
        labels, data = records(os.path.join(HERE, "cifar-100-binary", name + ".bin"), 2)
        d = {"filenames": [f"{name}_{i}.png" for i in range(len(data))], "batch_label": name,
             "fine_labels": [int(x) for x in labels[:, 1]], "coarse_labels": [int(x) for x in labels[:, 0]],
             "data": data}
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump(d, f, protocol=5)


if __name__ == "__main__":
    main()
