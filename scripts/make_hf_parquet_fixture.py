#!/usr/bin/env python3
"""Writes kaizen-data/tests/fixtures/hf-cifar100/: the 20 real CIFAR-100 test images of the foolbox fixture (their
PNG files, byte for byte) as a Hugging Face CIFAR-100 parquet dataset, written by pyarrow (an independent parquet
writer), with the hub's schema: `img` struct<bytes: binary, path: string>, `fine_label` int64, `coarse_label`
int64, and the `huggingface` schema metadata naming the fine and coarse classes. Train: the first 12 images,
test: the last 8.

Run: python3 scripts/make_hf_parquet_fixture.py (needs pyarrow; the output is committed).
"""
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

root = pathlib.Path(__file__).resolve().parent.parent / "kaizen-data/tests/fixtures"
import re

# The class names and the fine -> coarse table as kaizen-data states them (checked there against the official files).
src = (root.parent.parent / "src/cifar.rs").read_text()
fine_names = re.findall(r'"([^"]+)"', src.split("pub const CIFAR100_CLASSES")[1].split("];")[0])
fine_to_coarse = [int(x) for x in re.findall(r"\d+", src.split("pub const CIFAR100_FINE_TO_COARSE")[1].split("= [")[1].split("];")[0])]
assert len(fine_names) == 100 and len(fine_to_coarse) == 100
coarse_names = """aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices
household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes
large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees vehicles_1
vehicles_2""".split()
assert len(coarse_names) == 20
pngs = sorted((root / "foolbox").glob("cifar100_*.png"))
assert len(pngs) == 20
rows = []
for k, p in enumerate(pngs):
    fine = int(p.stem.rsplit("_", 1)[1])
    rows.append((p.read_bytes(), fine, fine_to_coarse[fine]))
features = {
    "img": {"_type": "Image"},
    "fine_label": {"names": fine_names, "_type": "ClassLabel"},
    "coarse_label": {"names": coarse_names, "_type": "ClassLabel"},
}
schema = pa.schema(
    [
        ("img", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("fine_label", pa.int64()),
        ("coarse_label", pa.int64()),
    ],
    metadata={"huggingface": json.dumps({"info": {"features": features}})},
)
out = root / "hf-cifar100/cifar100"
out.mkdir(parents=True, exist_ok=True)
for name, part in [("train", rows[:12]), ("test", rows[12:])]:
    table = pa.table(
        {
            "img": [{"bytes": b, "path": None} for b, _, _ in part],
            "fine_label": [f for _, f, _ in part],
            "coarse_label": [c for _, _, c in part],
        },
        schema=schema,
    )
    pq.write_table(table, out / f"{name}-00000-of-00001.parquet", compression="snappy")
print("wrote", out)
