#!/usr/bin/env python3
"""Turn foolbox 3.3.4's 20 CIFAR-10 + 20 CIFAR-100 test PNGs into the official CIFAR *binary* formats
(python3 standard library only), so the readers in kaizen-data are tested on real bytes.

Get the wheel with `pip download --no-deps foolbox==3.3.4` (MIT licence, Jonas Rauber et al.).
The PNGs `foolbox/data/cifar10_<i>_<label>.png` / `cifar100_<i>_<fine>.png` are the first 20 images of each
official test set; the label is the last number of the name.

Outputs (under kaizen-data/tests/fixtures/):
  cifar-10-batches-bin/test_batch.bin     20 records of 1 label byte + 3072 pixel bytes (R plane, G plane, B plane)
  cifar-10-batches-bin/data_batch_{1..5}.bin  4 records each: the same 20 images split in order (so the reader's
                                          multi-file train path is exercised on real bytes too)
  cifar-100-binary/test.bin, train.bin    20 records of coarse byte + fine byte + 3072 pixel bytes
  foolbox/*.png + foolbox/LICENSE         the source PNGs, so tests can decode them and compare pixels

The coarse label is filled from the standard CIFAR-100 fine -> coarse table (fine ids are the alphabetical
index of the fine names, coarse ids the index in the official coarse name list); the table below is checked
against the superclass grouping at run time.

Usage: python3 scripts/make_cifar_fixtures.py path/to/foolbox-3.3.4-py3-none-any.whl
"""
import os
import re
import struct
import sys
import zipfile
import zlib

FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
SUPER = [
    ("aquatic_mammals", "beaver dolphin otter seal whale"),
    ("fish", "aquarium_fish flatfish ray shark trout"),
    ("flowers", "orchid poppy rose sunflower tulip"),
    ("food_containers", "bottle bowl can cup plate"),
    ("fruit_and_vegetables", "apple mushroom orange pear sweet_pepper"),
    ("household_electrical_devices", "clock keyboard lamp telephone television"),
    ("household_furniture", "bed chair couch table wardrobe"),
    ("insects", "bee beetle butterfly caterpillar cockroach"),
    ("large_carnivores", "bear leopard lion tiger wolf"),
    ("large_man-made_outdoor_things", "bridge castle house road skyscraper"),
    ("large_natural_outdoor_scenes", "cloud forest mountain plain sea"),
    ("large_omnivores_and_herbivores", "camel cattle chimpanzee elephant kangaroo"),
    ("medium_mammals", "fox porcupine possum raccoon skunk"),
    ("non-insect_invertebrates", "crab lobster snail spider worm"),
    ("people", "baby boy girl man woman"),
    ("reptiles", "crocodile dinosaur lizard snake turtle"),
    ("small_mammals", "hamster mouse rabbit shrew squirrel"),
    ("trees", "maple_tree oak_tree palm_tree pine_tree willow_tree"),
    ("vehicles_1", "bicycle bus motorcycle pickup_truck train"),
    ("vehicles_2", "lawn_mower rocket streetcar tank tractor"),
]
# fine id -> coarse id (the widely used table, e.g. in the CIFAR-100 coarse-label helpers).
FINE_TO_COARSE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]


def check_table():
    assert len(FINE) == 100 and sorted(FINE) == FINE, "fine names must be the 100 sorted CIFAR-100 names"
    derived = [None] * 100
    for c, (_, members) in enumerate(SUPER):
        for name in members.split():
            derived[FINE.index(name)] = c
    assert derived == FINE_TO_COARSE, "fine->coarse table disagrees with the superclass grouping"


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png_rgb8(data, name):
    """Minimal decoder for 8-bit RGB, non-interlaced PNGs (what foolbox ships). Returns (w, h, HWC bytes)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{name}: not a PNG")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = ihdr
    if (depth, ctype, interlace) != (8, 2, 0):
        sys.exit(f"{name}: unsupported PNG (depth {depth}, colour type {ctype}, interlace {interlace})")
    raw = zlib.decompress(idat)
    bpp, stride = 3, 3 * w
    out = bytearray()
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 0xFF
            elif f == 2:
                line[x] = (line[x] + b) & 0xFF
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif f == 4:
                line[x] = (line[x] + paeth(a, b, c)) & 0xFF
            elif f != 0:
                sys.exit(f"{name}: bad filter {f}")
        out += line
        prev = line
    return w, h, bytes(out)


def planar(hwc):
    return bytes(hwc[i * 3 + ch] for ch in range(3) for i in range(1024))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    check_table()
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(here, "..", "kaizen-data", "tests", "fixtures")
    for d in ("cifar-10-batches-bin", "cifar-100-binary", "foolbox"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    whl = zipfile.ZipFile(sys.argv[1])
    with open(os.path.join(root, "foolbox", "LICENSE"), "wb") as f:
        f.write(whl.read("foolbox-3.3.4.dist-info/LICENSE"))
    recs = {"cifar10": [], "cifar100": []}
    for name in sorted(whl.namelist()):
        m = re.fullmatch(r"foolbox/data/(cifar10|cifar100)_(\d+)_(\d+)\.png", name)
        if not m:
            continue
        data = whl.read(name)
        with open(os.path.join(root, "foolbox", os.path.basename(name)), "wb") as f:
            f.write(data)
        w, h, hwc = decode_png_rgb8(data, name)
        assert (w, h) == (32, 32), name
        recs[m.group(1)].append((int(m.group(2)), int(m.group(3)), planar(hwc)))
    for k in recs:
        recs[k].sort()
        assert [r[0] for r in recs[k]] == list(range(20)), k
    c10 = [bytes([lab]) + px for _, lab, px in recs["cifar10"]]
    with open(os.path.join(root, "cifar-10-batches-bin", "test_batch.bin"), "wb") as f:
        f.write(b"".join(c10))
    for b in range(5):
        with open(os.path.join(root, "cifar-10-batches-bin", f"data_batch_{b + 1}.bin"), "wb") as f:
            f.write(b"".join(c10[4 * b : 4 * b + 4]))
    c100 = b"".join(bytes([FINE_TO_COARSE[lab], lab]) + px for _, lab, px in recs["cifar100"])
    for split in ("train", "test"):
        with open(os.path.join(root, "cifar-100-binary", f"{split}.bin"), "wb") as f:
            f.write(c100)
    print("cifar10 labels:", [r[1] for r in recs["cifar10"]])
    print("cifar100 fine labels:", [r[1] for r in recs["cifar100"]])
    print("cifar100 coarse labels:", [FINE_TO_COARSE[r[1]] for r in recs["cifar100"]])


if __name__ == "__main__":
    main()
