#!/usr/bin/env bash
# GPU benchmark: the CUDA backend on Canary-1B and Canary-1B-flash shapes (random weights), a 10 s
# window decoding 40 tokens, FP16 and FP32 side by side. Prints a header (date, commit, GPU,
# driver) and one JSON line per shape and precision, to paste into docs/benchmarks.md.
#
#   tools/bench-gpu.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1 || echo unknown)
echo "# $(date -u +%FT%TZ) commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown) GPU: $gpu"
for shape in canary-1b canary-1b-flash; do
  "$build/tools/canary-bench-gpu" --shape "$shape" --tokens 40 --repeats 20
done
