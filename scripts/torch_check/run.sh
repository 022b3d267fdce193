#!/bin/sh
# Checkpoint conformance with PyTorch (dev-time only: apt-get install python3-torch; use
# Debian's /usr/bin/python3). Needs build/ci (cmake --preset ci && cmake --build build/ci).
set -e
cd "$(dirname "$0")/../.."
out="${TMPDIR:-/tmp}/normgrad_torch_check"
mkdir -p "$out"
g++ -std=c++20 -O1 -I. scripts/torch_check/write_modules.cpp -o "$out/write_modules" build/ci/libnormgrad.a \
  -lfmt -lopenblas -lz -fopenmp
"$out/write_modules" "$out"
/usr/bin/python3 scripts/torch_check/check.py "$out"
