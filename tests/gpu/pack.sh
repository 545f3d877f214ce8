#!/usr/bin/env bash
# tests/gpu/pack.sh — gathers prebuilt programs and the shared libraries they need into one
# folder to carry to the GPU machine, where our apt packages (gRPC, protobuf-c, hiredis, curl,
# OpenBLAS, PCRE2, utf8proc, cJSON ...) are absent. Run it here after a CUDA build
# (cmake -DTWIN_CUDA=ON; targets engine-bench forward-dump engine-check llm-svc serve-load).
# Libraries the GPU machine has, or must provide itself, stay out: the C runtime (libc, libm,
# libpthread, libdl, librt, ld-linux), the compiler runtime (libstdc++, libgcc_s: a newer one
# there must win) and CUDA (libcuda, libcudart, libcublas, libcublasLt: the toolkit there).
# The programs are stripped of debug information and everything goes into one xz archive
# (OpenBLAS alone is 36 MB unpacked; the archive is ~20 MB, within what a run may carry), laid out
# as bin/<programs>, lib/<libraries>, env.sh (sets BIN_DIR and TWIN_LD_LIBRARY_PATH when sourced;
# the GPU scripts also find lib/ beside BIN_DIR by themselves: tests/gpu/twin_programs.py).
# There: mkdir -p /tmp/twin && tar -xJf ARCHIVE -C /tmp/twin && . /tmp/twin/env.sh
# Usage: tests/gpu/pack.sh [BUILD_DIR] [ARCHIVE]   (defaults: build, .devcarry/twin-gpu.tar.xz)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
archive=${2:-$root/.devcarry/twin-gpu.tar.xz}
programs=(engine-bench forward-dump engine-check llm-svc serve-load)

for p in "${programs[@]}"; do
  if [ ! -x "$build/bin/$p" ]; then
    echo "pack.sh: $build/bin/$p is missing: build it first (cmake -S $root -B $build -DTWIN_CUDA=ON;" \
         "cmake --build $build --target ${programs[*]})" >&2
    exit 1
  fi
done
if ! ldd "$build/bin/engine-bench" | grep libcudart >/dev/null; then
  echo "pack.sh: $build/bin/engine-bench has no CUDA backend (configure with -DTWIN_CUDA=ON)" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/bin" "$out/lib"
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libresolv|libgcc_s|libstdc\+\+|libcuda\.so|libcudart|libcublas|libcublasLt|libnvidia)'
for p in "${programs[@]}"; do
  strip --strip-debug -o "$out/bin/$p" "$build/bin/$p"
  if ldd "$build/bin/$p" | grep 'not found' >/dev/null; then
    echo "pack.sh: $p has unresolved libraries here:" >&2
    ldd "$build/bin/$p" | grep 'not found' >&2
    exit 1
  fi
  ldd "$build/bin/$p" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' |
    while read -r name path; do
      if [[ $name =~ $skip ]]; then continue; fi
      [ -e "$out/lib/$name" ] || cp -L "$path" "$out/lib/$name"
    done
done
cat >"$out/env.sh" <<'EOF'
# . <this folder>/env.sh: BIN_DIR for the GPU scripts, and TWIN_LD_LIBRARY_PATH, which they
# put in front of LD_LIBRARY_PATH for our programs only (python and torch keep their own).
twin_carry=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export BIN_DIR=$twin_carry/bin
export TWIN_LD_LIBRARY_PATH=$twin_carry/lib
unset twin_carry
EOF
mkdir -p "$(dirname "$archive")"
tar -C "$out" -cf - bin lib env.sh | xz -T2 -9 >"$archive.tmp"
mv "$archive.tmp" "$archive"
echo "pack.sh: $(ls "$out/bin" | wc -l) programs, $(ls "$out/lib" | wc -l) libraries" \
     "($(du -sh "$out" | cut -f1) unpacked): $archive, $(du -h "$archive" | cut -f1)"
