#!/usr/bin/env bash
# CPU benchmark: our engine (FP32 and FP16 weights) and NeMo, same shape, same 10 s window, same
# token count, same machine, run back to back (alternating) so the table reports ratios measured
# side by side; then the memory of a real .nemo file loaded at each precision.
#
#   tools/bench-cpu.sh [BUILD_DIR] [NEMO_PYTHON] [BIG.nemo]
#   SHAPES=canary-1b tools/bench-cpu.sh ...   # one shape only (default: canary-1b-flash canary-1b)
#
# NEMO_PYTHON is a Python with nemo_toolkit (tests/reference/requirements.txt). BIG.nemo is a file
# at a released shape (tests/reference/make_bench_nemo.py writes one with random weights); without
# it the memory part is skipped. OpenBLAS 0.3.21 (Debian 12) does not recognise recent Xeons and
# falls back to its generic SSE3 "Prescott" kernels; set OPENBLAS_CORETYPE (e.g. SkylakeX,
# Haswell) in the environment to name the core.
set -euo pipefail
build=${1:-build}
py=${2:-tests/reference/.venv/bin/python}
big=${3:-}
here=$(cd "$(dirname "$0")/.." && pwd)
threads=$(nproc)
largest=$(ls -S "$here"/tests/fixtures/*/model.nemo | head -n 1)

echo "# $(date -u +%FT%TZ) commit $(git -C "$here" rev-parse --short HEAD) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>}"
for shape in ${SHAPES:-canary-1b-flash canary-1b}; do
  for round in 1 2; do
    # Both precisions in one process, their windows alternating (one JSON line each).
    "$build/tools/canary-bench" --shape "$shape" --tokens 40 --repeats 4 --threads "$threads" \
      --load "$largest" --precision both
    "$py" "$here/tests/reference/bench_nemo.py" --shape "$shape" --tokens 40 --repeats 3 --threads "$threads" 2>/dev/null | tail -n 1
  done
done
if [ -n "$big" ]; then
  cat "$big" >/dev/null   # in the page cache first, so that neither load pays the disk
  for round in 1 2; do
    for precision in fp32 fp16; do
      "$build/tools/canary-bench" --load "$big" --load-only --precision "$precision"
    done
  done
fi
