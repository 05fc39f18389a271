#!/usr/bin/env bash
# Side-by-side step timing: `kaizen bench` and ../shared/tools/torch_reference.py, run alternately
# ROUNDS times per configuration (2 threads each), then the median of each side and their ratio.
# Usage: scripts/bench_vs_torch.sh [ROUNDS] ["mode width batch" ...]
#   PYTHON=~/.venv-torch/bin/python KAIZEN=target/release/kaizen STEPS=7 scripts/bench_vs_torch.sh 3
set -euo pipefail
ROUNDS=${1:-3}
shift || true
CONFIGS=("$@")
if [ ${#CONFIGS[@]} -eq 0 ]; then
  CONFIGS=("kaizen 16 64" "kaizen 64 32" "supervised 16 64" "supervised 64 32")
fi
PYTHON=${PYTHON:-$HOME/.venv-torch/bin/python}
KAIZEN=${KAIZEN:-target/release/kaizen}
TORCH_REF=${TORCH_REF:-../shared/tools/torch_reference.py}
STEPS=${STEPS:-7}
[ -x "$KAIZEN" ] || { echo "build first: cargo build --release -p kaizen-cli ($KAIZEN missing)" >&2; exit 2; }
[ -x "$PYTHON" ] || { echo "no PyTorch venv at $PYTHON (see the header of $TORCH_REF)" >&2; exit 2; }
ms() { python3 -c 'import json,sys; print(json.load(sys.stdin)["step_ms_median"])'; }
med() { python3 -c 'import statistics,sys; print(statistics.median(float(v) for v in sys.argv[1:]))' "$@"; }
printf '%-24s %10s %10s %7s   %s\n' config kaizen_ms torch_ms ratio "per-round ratios"
for cfg in "${CONFIGS[@]}"; do
  read -r mode width batch <<<"$cfg"
  ks=(); ts=(); rs=()
  for _ in $(seq "$ROUNDS"); do
    k=$("$KAIZEN" bench --mode "$mode" --width "$width" --batch "$batch" --steps "$STEPS" --warmup 2 --json | ms)
    t=$("$PYTHON" "$TORCH_REF" --mode "$mode" --width "$width" --batch "$batch" --steps "$STEPS" --warmup 2 --threads 2 --json | ms)
    ks+=("$k"); ts+=("$t"); rs+=("$(python3 -c "print(f'{$k/$t:.2f}')")")
  done
  km=$(med "${ks[@]}"); tm=$(med "${ts[@]}")
  printf '%-24s %10.1f %10.1f %7.2f   %s\n' "$mode w$width b$batch" "$km" "$tm" "$(python3 -c "print($km/$tm)")" "${rs[*]}"
done
