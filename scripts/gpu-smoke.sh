#!/usr/bin/env bash
# One shot on a machine with an NVIDIA GPU: build kaizen with `--features cuda` (or take a binary built elsewhere),
# time `kaizen bench` on the GPU at widths 16 and 64, run the `smoke` preset and one `mini` Kaizen run on the GPU,
# optionally time PyTorch's step on the same GPU, and print one JSON line of figures (the last line of output).
#
#   bash scripts/gpu-smoke.sh
# Environment:
#   KAIZEN=path      a kaizen binary built with `--features cuda` elsewhere (e.g. by scripts/check-cuda-build.sh on a
#                    machine without a GPU); skips the build. Missing CUDA libraries (libcublas, libcurand, libcudart)
#                    are looked up in the CUDA toolkit and in Python's `nvidia-*` wheels (PyTorch's) and added to
#                    LD_LIBRARY_PATH.
#   TORCH_REF=path   ../shared/tools/torch_reference.py: also time the same steps in PyTorch on this GPU (python3 with
#                    a CUDA build of torch), in plain fp32 (TF32 off, as candle computes) and with PyTorch's default
#                    (TF32 convolutions).
#   OUT=dir          keep the logs and the figures there (default: a temporary folder, removed at the end).
#   STAGE_TIMEOUT=s  stop any one stage after s seconds (default 900); it is then recorded as failed (124).
# Each stage runs on its own: a failing stage is recorded (its exit status and log) and the next one still runs.
set -uo pipefail
# Paths given relative to where the script was called from stay valid after the cd below.
for v in KAIZEN TORCH_REF OUT; do
  if [ -n "${!v:-}" ]; then printf -v "$v" '%s' "$(realpath -m -- "${!v}")"; fi
done
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || { echo "gpu-smoke: no NVIDIA GPU here (nvidia-smi -L failed)" >&2; exit 2; }
GPU="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
DRIVER="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)}"
if [ -n "${OUT:-}" ]; then
  # An earlier run's logs and run folders would be read back as this run's figures.
  if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then echo "gpu-smoke: OUT=$OUT is not empty; give a new folder" >&2; exit 2; fi
  T="$OUT"; mkdir -p "$T"
else
  T="$(mktemp -d /tmp/kaizen-gpu.XXXXXX)"; trap 'rm -rf "$T"' EXIT
fi

START=$(date +%s)
if [ -n "${KAIZEN:-}" ]; then
  BUILT="prebuilt"
elif command -v nvcc >/dev/null && command -v cargo >/dev/null; then
  cargo build --release -p kaizen-cli --features cuda >&2 || exit 1
  KAIZEN=target/release/kaizen BUILT="here"
else
  bash scripts/check-cuda-build.sh >&2 || exit 1
  KAIZEN="${CARGO_TARGET_DIR:-target/cuda-check}/release/kaizen" BUILT="here (PyPI nvcc)"
fi
BUILD_S=$(( $(date +%s) - START ))

# Shared libraries the binary needs but the loader cannot find: look in the toolkit and in Python's nvidia wheels.
roots=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64)
if command -v python3 >/dev/null; then
  while read -r d; do roots+=("$d"); done < <(python3 -c 'import site, glob
for s in site.getsitepackages(): print("\n".join(glob.glob(s + "/nvidia/*/lib") + glob.glob(s + "/nvidia/cu*/lib")))' 2>/dev/null)
fi
for lib in $(ldd "$KAIZEN" | awk '/not found/ {print $1}'); do
  for d in "${roots[@]}"; do
    if [ -e "$d/$lib" ]; then export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; break; fi
  done
done
if ldd "$KAIZEN" | grep -q 'not found'; then
  echo "gpu-smoke: libraries still missing:" >&2; ldd "$KAIZEN" | grep 'not found' >&2; exit 1
fi
"$KAIZEN" --version >&2 || { echo "gpu-smoke: $KAIZEN does not start" >&2; exit 1; }

# stage NAME CMD...: runs CMD with its output in $T/NAME.log, records its status and seconds in $T/stages.tsv.
stage() {
  local name=$1 s rc; shift
  s=$(date +%s.%N)
  timeout "${STAGE_TIMEOUT:-900}" "$@" >"$T/$name.out" 2>"$T/$name.log"; rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(python3 -c "import time; print(round(time.time() - $s, 1))")" >>"$T/stages.tsv"
  [ "$rc" = 0 ] || { echo "gpu-smoke: stage $name failed ($rc); the end of its log:" >&2; tail -n 20 "$T/$name.log" >&2; }
  echo "gpu-smoke: $name done ($rc)" >&2
}
CONFIGS=("kaizen 16 64" "kaizen 64 32" "kaizen 64 256" "supervised 64 256")
for cfg in "${CONFIGS[@]}"; do
  read -r mode width batch <<<"$cfg"
  stage "bench_${mode}_w${width}_b${batch}" "$KAIZEN" bench --device cuda --mode "$mode" --width "$width" \
    --batch "$batch" --steps 20 --warmup 5 --json
done
stage profile_kaizen_w64_b256 "$KAIZEN" bench --device cuda --mode kaizen --width 64 --batch 256 --kernel-profile \
  --steps 10 --warmup 3 --json
stage bench_tf32_kaizen_w64_b256 "$KAIZEN" bench --device cuda --mode kaizen --width 64 --batch 256 --tf32 \
  --steps 20 --warmup 5 --json
stage smoke "$KAIZEN" run --preset smoke --device cuda --quiet --out "$T/smoke"
stage smoke_again "$KAIZEN" run --preset smoke --device cuda --quiet --out "$T/smoke_again"
if [ -n "${TORCH_REF:-}" ] && python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  # torch_reference.py builds everything on the default device and syncs every step (loss.item()).
  TORCH_ON_CUDA='import os, runpy, sys, torch
torch.set_default_device("cuda")
torch.backends.cudnn.allow_tf32 = os.environ["TF32"] == "1"
torch.backends.cudnn.benchmark = True
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")'
  for cfg in "${CONFIGS[@]}"; do
    read -r mode width batch <<<"$cfg"
    stage "torch_fp32_${mode}_w${width}_b${batch}" env TF32=0 python3 -c "$TORCH_ON_CUDA" "$TORCH_REF" --mode "$mode" --width "$width" --batch "$batch" \
      --steps 20 --warmup 5 --json
  done
  stage torch_tf32_kaizen_w64_b256 env TF32=1 python3 -c "$TORCH_ON_CUDA" "$TORCH_REF" --mode kaizen --width 64 --batch 256 --steps 20 --warmup 5 --json
fi
stage mini "$KAIZEN" run --device cuda --quiet --strategy kaizen --seed 1 --out "$T/mini"

python3 - "$T" "$GPU" "$DRIVER" "$CUDA_COMPUTE_CAP" "$BUILT" "$BUILD_S" <<'PY'
import json, os, sys
t, gpu, driver, cap, built, build_s = sys.argv[1:]
stages = {}
for line in open(f"{t}/stages.tsv"):
    name, rc, secs = line.rstrip("\n").split("\t")
    stages[name] = {"rc": int(rc), "s": float(secs)}
def last_json(name):
    try:
        return json.loads(open(f"{t}/{name}.out").read().strip().splitlines()[-1])
    except Exception:
        return {}
def step_ms(name):
    return last_json(name).get("step_ms_median")
bench = {n[len("bench_"):]: step_ms(n) for n in stages if n.startswith("bench_")}
torch = {n[len("torch_"):]: step_ms(n) for n in stages if n.startswith("torch_")}
phases = {n[len("bench_"):]: last_json(n).get("phase_ms_median") for n in stages if n.startswith("bench_")}
profile = last_json("profile_kaizen_w64_b256").get("kernel_ms_per_step")
# Plain fp32 against PyTorch with TF32 off; `--tf32` (TF32 for every cuBLAS f32 product, linear layers included)
# against PyTorch's default (TF32 for cuDNN convolutions only). The PyTorch side also sets cudnn.benchmark.
ratio = {}
for k, v in bench.items():
    ref = torch.get(k if k.startswith("tf32_") else f"fp32_{k}")
    if v and ref:
        ratio[k] = round(v / ref, 3)
# The same run twice on the same GPU: are the numbers the same (summary and every logged loss)?
def losses(run):
    try:
        return ([json.loads(l).get("loss") for l in open(f"{t}/{run}/metrics.jsonl")],
                json.load(open(f"{t}/{run}/summary.json")))
    except Exception:
        return None
ok = lambda n: stages.get(n, {}).get("rc") == 0
smoke_repeatable = (ok("smoke") and ok("smoke_again") and losses("smoke") is not None
                    and losses("smoke") == losses("smoke_again"))
mini = {}
try:
    if not ok("mini"):
        raise RuntimeError("the mini stage failed; see mini.log")
    c = json.load(open(f"{t}/mini/summary.json"))["protocols"]["classifier"]
    mini = {"final_accuracy": c["final_accuracy"], "forgetting": c["forgetting"]}
    for line in open(f"{t}/mini/metrics.jsonl"):
        e = json.loads(line)
        if e.get("event") == "finished":
            mini["phase_seconds"] = e["phase_seconds"]
except Exception as e:
    mini = {"error": str(e)}
print(json.dumps({
    "gpu": gpu, "driver": driver, "compute_cap": cap, "binary": built, "build_s": int(build_s),
    "failed_stages": [n for n, s in stages.items() if s["rc"] != 0],
    "stage_seconds": {n: s["s"] for n, s in stages.items()},
    "bench_step_ms": bench, "bench_phase_ms": phases, "kaizen_w64_b256_forward_profile_ms": profile, "torch_step_ms": torch, "kaizen_over_torch": ratio,
    "smoke_repeatable": smoke_repeatable, "mini_kaizen_seed1": mini,
}))
PY
