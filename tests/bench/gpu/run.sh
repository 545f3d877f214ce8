#!/usr/bin/env bash
# tests/bench/gpu/run.sh — the GPU benchmark in one command, on the GPU machine: our engine
# (engine-bench, CUDA backend) next to Hugging Face transformers (static cache, compiled decode)
# on random-weight Llama-3.2-1B and Llama-3.1-8B shapes: decode tokens/s at batch 1, 16, 64 and
# 128 (128-token prompts, 128 new tokens), time to first token of a 2,048-token prompt, and the
# achieved memory bandwidth against the copy bandwidth torch measures (gpu_bench.py does the
# work and prints the table). About 6-8 minutes for both shapes on an H200, most of it
# transformers compiling; models are kept in --work for later runs.
#
# engine-bench: $BIN_DIR/engine-bench (carried: tests/gpu/pack.sh), else build/bin/engine-bench,
# else this script tries to build it with CMake (which needs the project's apt packages: gRPC,
# hiredis, OpenBLAS, ... usually absent on the GPU machine; then carry it). Its libraries: see
# tests/gpu/twin_programs.py (lib/ beside BIN_DIR, or TWIN_LD_LIBRARY_PATH).
# Usage: tests/bench/gpu/run.sh [--skip-8b] [--skip-hf] [--shapes 1b,8b] [--batches 1,16,64,128]
#          [--hf-batches LIST] [--hf-budget 1b:130,8b:170] [--deadline 450] [--work DIR]
# Exit status: 0 when every stage of ours ran, 1 otherwise.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
args=()
shapes=1b,8b
while [ $# -gt 0 ]; do
  case $1 in
    --skip-8b) shapes=1b ;;
    --skip-hf) args+=(--skip-hf) ;;
    --shapes) shapes=$2; shift ;;
    --batches|--hf-batches|--hf-budget|--deadline|--work|--hf-steps|--ttft-prompt)
      args+=("$1" "$2"); shift ;;
    *) echo "run.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>/dev/null ||
  echo "(nvidia-smi unavailable)"
python3 -c 'import torch, transformers; assert torch.cuda.is_available(), "torch sees no GPU"
print("torch", torch.__version__, "transformers", transformers.__version__)' || {
  echo "run.sh: python3 needs torch (with a GPU) and transformers" >&2; exit 1; }

exe=""
for d in "${BIN_DIR:-}" "$root/build/bin"; do
  if [ -n "$d" ] && [ -x "$d/engine-bench" ]; then exe=$d/engine-bench; break; fi
done
if [ -z "$exe" ]; then
  echo "== engine-bench not found in \$BIN_DIR or build/bin: building it with CMake"
  if cmake -S "$root" -B "$root/build-gpubench" -DTWIN_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
       >/tmp/twin-gpubench-cmake.log 2>&1 &&
     cmake --build "$root/build-gpubench" -j "$(nproc)" --target engine-bench \
       >>/tmp/twin-gpubench-cmake.log 2>&1; then
    exe=$root/build-gpubench/bin/engine-bench
  else
    tail -n 15 /tmp/twin-gpubench-cmake.log
    echo "run.sh: cannot build engine-bench here (see above; the project's apt packages are" \
         "missing): build it with -DTWIN_CUDA=ON elsewhere, pack it with tests/gpu/pack.sh," \
         "carry the archive and set BIN_DIR" >&2
    exit 1
  fi
fi
echo "engine-bench: $exe"
# fail now, with the names, if a library of it cannot be found
lib_env=$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import twin_programs as t
print(t.program_env(sys.argv[2])["LD_LIBRARY_PATH"])' "$root/tests/gpu" "$exe")
missing=$(LD_LIBRARY_PATH=$lib_env ldd "$exe" | grep 'not found' || true)
if [ -n "$missing" ]; then
  echo "run.sh: engine-bench cannot find these libraries (LD_LIBRARY_PATH=$lib_env):" >&2
  echo "$missing" >&2
  exit 1
fi

cd "$root"
PYTHONUNBUFFERED=1 python3 "$here/gpu_bench.py" --engine-bench "$exe" --shapes "$shapes" "${args[@]}"
