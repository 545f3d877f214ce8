#!/usr/bin/env bash
# deploy/docker/runtime-packages.sh — prints, one a line and sorted, the Debian/Ubuntu packages
# that own the shared libraries the given executables load (ldd, then dpkg). The image build
# stages run it so that each final image installs exactly its runtime libraries and no -dev
# package. The NVIDIA driver's libraries (libcuda, libnvidia-*) are left out: the container
# runtime mounts them. Fails, naming the library, when one is not found or has no package.
# Usage: deploy/docker/runtime-packages.sh EXECUTABLE...
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 EXECUTABLE..." >&2; exit 2; }

# Every library path ldd resolves, once.
libs=()
for exe in "$@"; do
  [ -x "$exe" ] || { echo "runtime-packages: $exe: not an executable" >&2; exit 1; }
  while read -r line; do
    case $line in
      *"=> not found"*)
        lib=${line%% *}
        case $lib in libcuda.so*|libnvidia-*) continue ;; esac
        echo "runtime-packages: $exe needs $lib, which is not installed here" >&2
        exit 1 ;;
      *"=> /"*) path=${line#*=> }; path=${path%% (*} ;;
      /*) path=${line%% (*} ;;
      *) continue ;;   # linux-vdso and the like
    esac
    case $(basename "$path") in libcuda.so*|libnvidia-*) continue ;; esac
    libs+=("$path")
  done < <(ldd "$exe")
done
mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)

# dpkg may record a library under /lib or /usr/lib (merged /usr), and under its symlink name or
# its real name: ask for every spelling in one dpkg-query call (one read of its database).
candidates() {
  local path=$1 real
  real=$(readlink -f "$path")
  printf '%s\n' "$path" "$real" "${path#/usr}" "${real#/usr}" "/usr${path}" "/usr${real}"
}
mapfile -t all < <(for l in "${libs[@]}"; do candidates "$l"; done | grep '^/' | sort -u)
declare -A owner_of=()
while IFS= read -r line; do
  pkg=${line%%: /*}
  pkg=${pkg%%,*}
  pkg=${pkg%%:*}
  owner_of["/${line#*: /}"]=$pkg
done < <(dpkg-query -S "${all[@]}" 2>/dev/null || true)

for l in "${libs[@]}"; do
  pkg=""
  while read -r c; do
    if [ -n "${owner_of[$c]:-}" ]; then pkg=${owner_of[$c]}; break; fi
  done < <(candidates "$l")
  [ -n "$pkg" ] || { echo "runtime-packages: no package owns $l" >&2; exit 1; }
  echo "$pkg"
done | sort -u
