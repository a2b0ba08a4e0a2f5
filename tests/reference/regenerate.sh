#!/usr/bin/env bash
# Regenerate every NeMo reference fixture under tests/fixtures/ with ONE command:
#
#   tests/reference/regenerate.sh            # creates tests/reference/.venv if missing
#   NEMO_VENV=/path/to/venv tests/reference/regenerate.sh   # reuse an existing venv
#
# Needs: python3.11, espeak-ng, sox (apt), network access to PyPI for the first venv build.
# CPU only; never run in CI.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${NEMO_VENV:-$HERE/.venv}"
PY="${PYTHON:-python3.11}"
FIX="$REPO/tests/fixtures"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --upgrade pip
  "$VENV/bin/pip" install -r "$HERE/requirements.txt" -c "$HERE/constraints.txt"
fi

start=$(date +%s)
# start from a clean slate (keeps tests/fixtures/README.md)
rm -rf "$FIX/audio" "$FIX"/canary*-tiny "$FIX/manifest.json"
"$HERE/make_audio.sh" "$FIX/audio"
CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=1 PYTHONHASHSEED=0 \
  "$VENV/bin/python" "$HERE/make_fixtures.py" --out "$FIX"
# Checks that read the new models with torch / NeMo (tests/test_ckpt.c, tests/test_tokenizer.c),
# the sentencepiece decode cases, and the fuzzers' seed corpus.
"$VENV/bin/python" "$HERE/dump_ckpt_checks.py" --fixtures "$FIX"
"$VENV/bin/python" "$HERE/make_tokenizer_checks.py" "$FIX"
"$VENV/bin/python" "$HERE/make_spm_checks.py"
"$VENV/bin/python" "$REPO/tests/fuzz/make-corpus.py"
echo "regenerated in $(( $(date +%s) - start )) s; total size: $(du -sh "$FIX" | cut -f1)"
