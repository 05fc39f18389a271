#!/usr/bin/env python3
"""Writes kaizen-data/tests/fixtures/resize/pil_bilinear.json: PIL's antialiased bilinear resize of crops of a
real CIFAR-100 test image (the foolbox fixture), the reference for kaizen-data's shrinking resize.

PIL works in 8 bits with a rounding after each pass, so the test allows ~1.5/255 of difference.
Run: python3 scripts/make_resize_reference.py (needs Pillow; the output is committed).
"""
import json
import pathlib

from PIL import Image

root = pathlib.Path(__file__).resolve().parent.parent / "kaizen-data/tests/fixtures"
src = Image.open(root / "foolbox/cifar100_00_49.png").convert("RGB")
cases = []
# (left, top, width, height) of the crop, and the output (width, height)
for (j, i, w, h), (ow, oh) in [((0, 0, 32, 32), (7, 7)), ((3, 2, 25, 28), (12, 10)), ((5, 1, 20, 30), (9, 11)), ((0, 4, 32, 20), (16, 10))]:
    # torchvision's resized_crop on a PIL image: crop, then resize (PIL's `box=` would read pixels outside it).
    out = src.crop((j, i, j + w, i + h)).resize((ow, oh), Image.BILINEAR)
    cases.append({"rect": [i, j, h, w], "out": [oh, ow], "pixels": list(out.tobytes())})
doc = {
    "source": "foolbox/cifar100_00_49.png",
    "pillow": Image.__version__ if hasattr(Image, "__version__") else "",
    "width": src.width,
    "height": src.height,
    "src": list(src.tobytes()),
    "cases": cases,
}
(root / "resize").mkdir(exist_ok=True)
(root / "resize/pil_bilinear.json").write_text(json.dumps(doc))
print("wrote", len(cases), "cases")
