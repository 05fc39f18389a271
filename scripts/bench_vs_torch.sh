#!/usr/bin/env bash
# Side-by-side step timing: `kaizen bench` and ../shared/tools/torch_reference.py, run alternately
# ROUNDS times per configuration (2 threads each), then the median of each side and their ratio.
# Usage: scripts/bench_vs_torch.sh [ROUNDS] ["mode width batch" ...]
#   PYTHON=~/.venv-torch/bin/python KAIZEN=target/release/kaizen STEPS=7 scripts/bench_vs_torch.sh 3
# ALSO_ENV="KAIZEN_WINOGRAD=0" adds, in every round, a run of the same binary under that environment
# (between ours and PyTorch's) and prints its median as a last column: an A/B inside the same series.
# ALSO_KAIZEN=/path/to/another/kaizen does the same with another build (e.g. the commit before), under
# ALSO_ENV if that is set too.
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
ALSO_ENV=${ALSO_ENV:-}
ALSO_KAIZEN=${ALSO_KAIZEN:-}
ALSO="${ALSO_ENV:+ $ALSO_ENV}${ALSO_KAIZEN:+ $ALSO_KAIZEN}"
[ -x "$KAIZEN" ] || { echo "build first: cargo build --release -p kaizen-cli ($KAIZEN missing)" >&2; exit 2; }
[ -x "$PYTHON" ] || { echo "no PyTorch venv at $PYTHON (see the header of $TORCH_REF)" >&2; exit 2; }
ms() { python3 -c 'import json,sys; print(json.load(sys.stdin)["step_ms_median"])'; }
rss() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["peak_rss_mb"])' "$1"; }
# torch_reference.py run through a wrapper that prints its peak RSS (ru_maxrss, MiB) to fd 3.
torch_run() {
  "$PYTHON" -c 'import resource, runpy, sys, os
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    os.write(3, ("%.1f\n" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)).encode())' "$TORCH_REF" "$@"
}
med() { python3 -c 'import statistics,sys; print(statistics.median(float(v) for v in sys.argv[1:]))' "$@"; }
printf '%-24s %10s %10s %7s %9s %9s   %s\n' config kaizen_ms torch_ms ratio kaizen_MB torch_MB \
  "per-round ratios (min-max)${ALSO:+ | median ms with$ALSO}"
for cfg in "${CONFIGS[@]}"; do
  read -r mode width batch <<<"$cfg"
  ks=(); ts=(); rs=(); kr=(); tr=(); alt=()
  for _ in $(seq "$ROUNDS"); do
    out=$("$KAIZEN" bench --mode "$mode" --width "$width" --batch "$batch" --steps "$STEPS" --warmup 2 --json)
    k=$(echo "$out" | ms); echo "$out" > /tmp/kaizen-bench.json; kr+=("$(rss /tmp/kaizen-bench.json)")
    if [ -n "$ALSO" ]; then
      # shellcheck disable=SC2086 # ALSO_ENV is a list of VAR=value words
      alt+=("$(env $ALSO_ENV "${ALSO_KAIZEN:-$KAIZEN}" bench --mode "$mode" --width "$width" --batch "$batch" --steps "$STEPS" --warmup 2 --json | ms)")
    fi
    t=$( { torch_run --mode "$mode" --width "$width" --batch "$batch" --steps "$STEPS" --warmup 2 --threads 2 --json 3>/tmp/torch-rss.txt; } | ms)
    tr+=("$(cat /tmp/torch-rss.txt)")
    ks+=("$k"); ts+=("$t"); rs+=("$(python3 -c "print(f'{$k/$t:.2f}')")")
  done
  km=$(med "${ks[@]}"); tm=$(med "${ts[@]}")
  spread=$(python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print(f"{min(v):.2f}-{max(v):.2f}")' "${rs[@]}")
  also=""
  if [ -n "$ALSO" ]; then also=" | $(med "${alt[@]}")"; fi
  printf '%-24s %10.1f %10.1f %7.2f %9.0f %9.0f   %s (%s)%s\n' "$mode w$width b$batch" "$km" "$tm" \
    "$(python3 -c "print($km/$tm)")" "$(med "${kr[@]}")" "$(med "${tr[@]}")" "${rs[*]}" "$spread" "$also"
done
