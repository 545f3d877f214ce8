#!/bin/sh
# deploy/docker/install-runtime-packages.sh — run in a final image stage: installs the packages
# named in LIST (one a line, as runtime-packages.sh wrote it in the build stage) that the base
# image does not already have, plus EXTRA packages (curl for the health check), without
# recommends, then empties apt's lists. Packages already installed are left at their version.
# Usage: install-runtime-packages.sh LIST [EXTRA...]
set -eu

list=$1
shift
need=""
for p in $(cat "$list") "$@"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    need="$need $p"
  fi
done
if [ -n "$need" ]; then
  echo "install-runtime-packages:$need"
  apt-get update
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need
fi
rm -rf /var/lib/apt/lists/*
