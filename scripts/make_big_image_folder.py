#!/usr/bin/env python3
"""Writes an image folder of N real Fashion-MNIST images (train) + N/10 (test) as PNG files of mixed sizes
(16x16 to 44x44, both sides drawn per image), for the memory check of the streamed image-folder reader:

    python3 scripts/make_big_image_folder.py /tmp/fm100k 100000
    /usr/bin/time -v kaizen data inspect --dataset image-folder --data-root /tmp/fm100k --image-size 32

Needs Pillow and numpy; reads the Debian package's files (/usr/share/datasets/fashion-mnist).
"""
import gzip
import pathlib
import sys

import numpy as np
from PIL import Image

out = pathlib.Path(sys.argv[1])
n = int(sys.argv[2])
src = pathlib.Path("/usr/share/datasets/fashion-mnist")


def idx(name, offset, shape):
    return np.frombuffer(gzip.open(src / name).read(), dtype=np.uint8, offset=offset).reshape(shape)


imgs = idx("train-images-idx3-ubyte.gz", 16, (-1, 28, 28))
labels = idx("train-labels-idx1-ubyte.gz", 8, (-1,))
rng = np.random.default_rng(0)
for part, count in [("train", n), ("test", max(n // 10, 10))]:
    for k in range(count):
        i = (k * 7919 + (0 if part == "train" else 13)) % len(imgs)
        w, h = (int(x) for x in rng.integers(16, 45, size=2))
        d = out / part / f"class{labels[i]}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(imgs[i]).resize((w, h), Image.BILINEAR).save(d / f"{k:06d}.png")
print("wrote", out)
