#!/usr/bin/env bash
# One shot on a machine with an NVIDIA GPU: build kaizen with `--features cuda`, time `kaizen bench` on the GPU at
# widths 16 and 64, run the `smoke` preset and one `mini` Kaizen run on the GPU, and print one JSON line of figures.
#
#   bash scripts/gpu-smoke.sh        (needs an NVIDIA driver; nvcc from the system, or from PyPI through
#                                     scripts/check-cuda-build.sh when there is none)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || { echo "gpu-smoke: no NVIDIA GPU here (nvidia-smi -L failed)" >&2; exit 2; }
GPU="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)}"
START=$(date +%s)
if command -v nvcc >/dev/null; then
  cargo build --release -p kaizen-cli --features cuda >&2
  KAIZEN=target/release/kaizen
else
  bash scripts/check-cuda-build.sh >&2
  KAIZEN="${CARGO_TARGET_DIR:-target/cuda-check}/release/kaizen"
fi
BUILD_S=$(( $(date +%s) - START ))
T="$(mktemp -d /tmp/kaizen-gpu.XXXXXX)"
trap 'rm -rf "$T"' EXIT
bench() { "$KAIZEN" bench --device cuda --mode "$1" --width "$2" --batch "$3" --steps 10 --warmup 3 --json; }
bench kaizen 16 64 > "$T/k16.json"
bench kaizen 64 32 > "$T/k64.json"
bench kaizen 64 256 > "$T/k64b256.json"
bench supervised 64 256 > "$T/s64.json"
timed() { local s; s=$(date +%s.%N); "$@" >"$T/run-$s.log" 2>&1; python3 -c "import time; print(round(time.time() - $s, 1))"; }
SMOKE_S=$(timed "$KAIZEN" run --preset smoke --device cuda --quiet --out "$T/smoke")
MINI_S=$(timed "$KAIZEN" run --device cuda --quiet --strategy kaizen --seed 1 --out "$T/mini")
python3 - "$T" "$GPU" "$CUDA_COMPUTE_CAP" "$BUILD_S" "$SMOKE_S" "$MINI_S" <<'PY'
import json, sys
t, gpu, cap, build, smoke, mini = sys.argv[1:]
b = lambda f: json.load(open(f"{t}/{f}.json"))["step_ms_median"]
summary = json.load(open(f"{t}/mini/summary.json"))["protocols"]["classifier"]
print(json.dumps({
    "gpu": gpu, "compute_cap": cap, "build_s": int(build),
    "bench_step_ms": {"kaizen_w16_b64": b("k16"), "kaizen_w64_b32": b("k64"), "kaizen_w64_b256": b("k64b256"),
                      "supervised_w64_b256": b("s64")},
    "smoke_run_s": float(smoke), "mini_kaizen_seed1_s": float(mini),
    "mini_kaizen_seed1_final_accuracy": summary["final_accuracy"],
    "mini_kaizen_seed1_forgetting": summary["forgetting"],
}))
PY
