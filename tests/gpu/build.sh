#!/usr/bin/env bash
# tests/gpu/build.sh — builds the GPU harnesses with nvcc and the host C compiler alone: no CMake
# and none of the project's other dependencies (gRPC, hiredis, OpenBLAS ...), only the CUDA
# toolkit and cuBLAS, so it runs on a bare GPU machine. Compiles the CUDA backend's kernels and
# host files, the plain C references, every tests/gpu/test_*.cu (checks) and bench_*.cu (speed),
# for sm_90, warnings as errors, in parallel; an object is rebuilt when its source or any header
# is newer.
# The programs that also need the model layer and the engine (engine-check, forward-dump,
# engine-bench, llm-svc) link the project's apt libraries (cJSON, PCRE2, utf8proc, curl,
# OpenBLAS, gRPC ...), absent on a bare GPU machine: they come from the CMake build
# (-DTWIN_CUDA=ON) and travel prebuilt, packed with their libraries by tests/gpu/pack.sh.
# Usage: tests/gpu/build.sh [build dir]   (default: build-gpu at the repository root)
# Environment: NVCC (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc), CC (default cc),
# JOBS (default: the number of cores).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build-gpu}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$nvcc" ]; then
  echo "build.sh: nvcc not found (set NVCC=/path/to/nvcc)" >&2
  exit 1
fi
cuda_home=$(cd "$(dirname "$nvcc")/.." && pwd)
cc=${CC:-cc}
jobs=${JOBS:-$(nproc)}
mkdir -p "$out/obj"

nvflags=(-arch=sm_90 -O3 -std=c++17 -lineinfo --expt-relaxed-constexpr -Werror all-warnings -I"$root"
         -Xcompiler=-Wall,-Wextra,-Werror)
# function sections + --gc-sections at link: only what the backend uses of the model layer's
# files is linked, so their other dependencies need not be built here
cflags=(-std=c11 -O2 -Wall -Wextra -Werror -Wno-format-truncation -D_GNU_SOURCE -I"$root"
        -I"$cuda_home/include" -ffunction-sections -fdata-sections)

# The backend without cuda_create.c (which binds checkpoint tensors through the model layer's
# weights reader); the harnesses build the backend from in-memory tensors instead.
lib_srcs=("$root"/llm-svc/backend/cuda/*.cu
          "$root"/llm-svc/backend/cuda/cuda_backend.c
          "$root"/llm-svc/backend/cuda/cuda_check.c
          "$root"/llm-svc/backend/cuda/gemm.c
          "$root"/llm-svc/backend/cuda/linear.c
          "$root"/llm-svc/backend/cuda/profile.c
          "$root"/common/error.c
          "$root"/common/util.c
          "$root"/llm-svc/model/tensor.c
          "$root"/llm-svc/model/rope.c
          "$root"/llm-svc/model/quant.c
          "$root"/llm-svc/backend/batch_check.c
          "$here"/ref.c)
test_srcs=("$here"/test_*.cu "$here"/bench_*.cu)

# newest header anywhere the sources include from
newest_header=$( (ls -t "$root"/llm-svc/backend/cuda/*.h "$root"/llm-svc/backend/cuda/*.cuh \
                    "$root"/tests/gpu/*.h "$root"/common/error.h "$root"/llm-svc/model/*.h \
                    "$root"/llm-svc/engine/backend.h 2>/dev/null || true) | head -n 1)

obj_of() { # source -> object path (unique by directory)
  local rel=${1#"$root"/}
  echo "$out/obj/${rel//\//_}.o"
}

compile() { # source object
  case "$1" in
    *.cu) "$nvcc" "${nvflags[@]}" -c "$1" -o "$2" ;;
    *.c) "$cc" "${cflags[@]}" -c "$1" -o "$2" ;;
  esac
}

failed=0
running=0
reap() {
  if ! wait -n; then failed=1; fi
  running=$((running - 1))
}
for src in "${lib_srcs[@]}" "${test_srcs[@]}"; do
  obj=$(obj_of "$src")
  if [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt "$newest_header" ]; then
    continue
  fi
  echo "  compile ${src#"$root"/}"
  compile "$src" "$obj" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then reap; fi
done
while [ "$running" -gt 0 ]; do reap; done
if [ "$failed" -ne 0 ]; then
  echo "build.sh: compilation failed" >&2
  exit 1
fi

lib_objs=()
for src in "${lib_srcs[@]}"; do lib_objs+=("$(obj_of "$src")"); done
for src in "${test_srcs[@]}"; do
  name=$(basename "$src" .cu)
  "$nvcc" -arch=sm_90 -o "$out/$name" "$(obj_of "$src")" "${lib_objs[@]}" -lcublasLt -lcublas -lm \
    -Xlinker --gc-sections
done
echo "build.sh: programs in $out: $(cd "$out" && ls test_* bench_* | tr '\n' ' ')"
