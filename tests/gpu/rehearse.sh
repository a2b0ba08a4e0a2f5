#!/usr/bin/env bash
# The engine suite's rehearsal of tests/gpu/run-on-device.sh (meson test gpu-script): runs it on
# this build into a scratch folder and fails when it does not reach its end, when a step fails or
# times out, or, on a machine without a GPU, when a GPU step is not marked "not run" / skipped.
set -euo pipefail
build=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/run-on-device.sh" "$build" "$out" > "$out/stdout.log" 2>&1 || { cat "$out/stdout.log"; exit 1; }
report=$out/report.md
cat "$report"
for section in "## GPU" "## Sanitizers and the cuda suite" "## Benchmark" "## The element" "## Steps" "total:"; do
  grep -q "^$section" "$report" || { echo "report lacks '$section'"; exit 1; }
done
if grep -E '^- `[^`]+`: (FAIL|TIMEOUT)' "$out/steps.md"; then
  echo "a step failed"; exit 1
fi
if ! grep -q '^GPU ' "$out/logs/nvidia-smi-L.log" 2>/dev/null; then
  for s in sanitizer-memcheck sanitizer-racecheck bench-gpu; do
    grep -q "^- \`$s\`: not run: " "$report" || { echo "$s should be 'not run' without a GPU"; exit 1; }
  done
  if grep -q "device=cuda" "$report" && grep "device=cuda" "$report" | grep -qv "not run:"; then
    echo "a device=cuda run is not marked 'not run' without a GPU"; exit 1
  fi
fi
n_cpu=$(grep -c '^- `element-.*-device_cpu`: ok' "$out/steps.md" || true)
[ "$n_cpu" -ge 2 ] || { echo "the element's CPU runs did not all run ($n_cpu ok)"; exit 1; }
echo "rehearsal: ok"
