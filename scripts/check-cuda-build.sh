#!/usr/bin/env bash
# Compile-checks the CUDA build on a machine without a GPU or a CUDA toolkit: installs nvcc and the CUDA headers
# from PyPI into a throwaway venv (CUDA 13: the `nvidia-cuda-nvcc` wheels ship nvcc; the CUDA 12 `-cu12` ones
# ship only ptxas), points candle's build scripts at them, and runs
#   cargo build --release -p kaizen-cli --features cuda
# with CUDA_COMPUTE_CAP set (there is no GPU to ask). The binary it builds loads the CUDA driver at run time, so it
# links here and runs only where a driver exists (scripts/gpu-smoke.sh).
#
#   bash scripts/check-cuda-build.sh            (env: CUDA_COMPUTE_CAP=90, CUDA_PIP_VERSION=13.0.*, KEEP=1 keeps
#                                                the folder, CARGO_TARGET_DIR defaults to target/cuda-check,
#                                                RUSTFLAGS defaults to -C target-cpu=x86-64-v3)
# The binary is meant to be carried to a GPU machine, so it is compiled for x86-64-v3 (AVX2 + FMA) rather than for
# this CPU (.cargo/config.toml's target-cpu=native): a build for this AMD CPU's AVX-512 extensions stopped with an
# illegal instruction on an H200 host. The gemm kernels still pick AVX-512 at run time where the CPU has it.
# Not part of CI: the first build compiles candle's CUDA kernels (several minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
CAP=${CUDA_COMPUTE_CAP:-90}
VER=${CUDA_PIP_VERSION:-13.0.*}
W="$(mktemp -d /tmp/kaizen-cuda.XXXXXX)"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$W"' EXIT
START=$(date +%s)
echo "check-cuda-build: installing nvcc and CUDA headers ($VER) from PyPI into $W"
python3 -m venv "$W/venv"
"$W/venv/bin/pip" install -q --disable-pip-version-check \
  "nvidia-cuda-nvcc==$VER" "nvidia-nvvm==$VER" "nvidia-cuda-crt==$VER" "nvidia-cuda-runtime==$VER" \
  "nvidia-cuda-nvrtc==$VER" "nvidia-cublas" "nvidia-curand" \
  "nvidia-cuda-cccl"
SITE="$("$W/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia"
# One CUDA root the build scripts understand: bin/ (nvcc), nvvm/, include/ and lib64/, merged from the packages.
ROOT="$W/cuda"
mkdir -p "$ROOT/lib64"
for pkg in "$SITE"/cu13 "$SITE"/*/; do
  [ -d "$pkg" ] || continue
  for sub in bin nvvm include; do
    [ -d "$pkg/$sub" ] && { mkdir -p "$ROOT/$sub"; cp -r "$pkg/$sub/." "$ROOT/$sub/"; }
  done
  [ -d "$pkg/lib" ] && cp -r "$pkg/lib/." "$ROOT/lib64/"
done
[ -x "$ROOT/bin/nvcc" ] || { echo "check-cuda-build: no nvcc in the PyPI packages ($SITE)" >&2; exit 1; }
# candle links cudarc with `dynamic-linking`: the linker wants libcuda.so, libnvrtc.so, libcublas.so, ... The
# wheels ship versioned libraries only (add the unversioned names), and the driver's libcuda is not on PyPI: build
# a stub with its SONAME (libcuda.so.1) and every driver function cudarc declares, as the toolkit's lib64/stubs
# does. The binary then loads the real driver at run time.
for lib in "$ROOT"/lib64/lib*.so.*; do
  base="${lib%%.so.*}.so"
  [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done
cargo fetch -q
CUDARC_VER=$(awk '/^name = "cudarc"/ {getline; gsub(/[version =""]/, ""); print; exit}' Cargo.lock)
CUDARC_SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$CUDARC_VER"/src/driver/sys/mod.rs | head -n 1)
python3 - "$CUDARC_SYS" "$W/cuda_stub.c" <<'PY'
import re, sys
names = sorted(set(re.findall(r"^\s+fn (cu\w+)\(.*;\s*$", open(sys.argv[1]).read(), re.M)))
open(sys.argv[2], "w").write("".join(f"void {n}(void) {{}}\n" for n in names))
print(f"check-cuda-build: libcuda stub with {len(names)} driver functions")
PY
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$ROOT/lib64/libcuda.so" "$W/cuda_stub.c"
export CUDA_ROOT="$ROOT" CUDA_PATH="$ROOT" CUDA_HOME="$ROOT" CUDA_TOOLKIT_ROOT_DIR="$ROOT"
export PATH="$ROOT/bin:$PATH" CUDA_COMPUTE_CAP="$CAP"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda-check}"
export RUSTFLAGS="${RUSTFLAGS:--C target-cpu=x86-64-v3}"
echo "check-cuda-build: $(nvcc --version | tail -n 2 | head -n 1); compute capability $CAP; RUSTFLAGS=$RUSTFLAGS"
SETUP=$(( $(date +%s) - START ))
cargo build --release -p kaizen-cli --features cuda
TOTAL=$(( $(date +%s) - START ))
echo "check-cuda-build: OK: $CARGO_TARGET_DIR/release/kaizen built with --features cuda (setup ${SETUP} s, total ${TOTAL} s)"
