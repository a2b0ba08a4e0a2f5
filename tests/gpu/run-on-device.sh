#!/usr/bin/env bash
# GPU first contact: every check of the CUDA backend in one call, one report.
#
#   tests/gpu/run-on-device.sh [BUILD_DIR] [OUT_DIR]
#
# BUILD_DIR: a build with the CUDA backend (default .device/build, made by tests/gpu/prepare.sh;
# else build). OUT_DIR: where report.md and the raw logs go (default $OUT, the device tool's
# folder, else a new temporary folder). On a machine without a GPU it runs to its end too and
# marks every GPU step "not run: no GPU", so a typo shows up here and not in device time (the
# engine suite runs it that way: tests/meson.build, gpu-script). docs/cuda.md has the device call.
#
# Steps, with their time caps (total well under 8 minutes):
#   nvidia-smi; compute-sanitizer memcheck and racecheck over the cuda suite binary; the cuda suite
#   (a GPU that is visible but unusable FAILS there); tools/bench-gpu.sh (Canary-1B and -1B-flash
#   shapes, FP16 and FP32: latency, RTFx, engine and process device memory); the element on the
#   example clips and a 120 s long-form file with device=cuda precision=fp16, fp32 and device=cpu,
#   transcripts side by side with their WER against the reference text.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${1:-}
if [ -z "$build" ]; then
  if [ -d .device/build ]; then build=.device/build; else build=build; fi
fi
build=$(cd "$build" && pwd)
out=${2:-${OUT:-}}
[ -n "$out" ] || out=$(mktemp -d)
mkdir -p "$out/logs"
report=$out/report.md
t_start=$(date +%s)

# The lent machine has no GStreamer: the carried Debian packages (tests/gpu/prepare.sh).
if ! command -v gst-launch-1.0 >/dev/null && [ -f .device/unpack-runtime.sh ]; then
  . .device/unpack-runtime.sh .device/debs
fi
export GST_PLUGIN_PATH="$build/gst"
export GST_REGISTRY_1_0="$out/logs/registry.bin"
py=$(command -v python3 || true)

say () { printf '%s\n' "$*" >> "$report"; }
# step NAME CAP_SECONDS CMD...: runs CMD with a time cap, its output in logs/NAME.log; says how it went.
step () {
  local name=$1 cap=$2; shift 2
  local t0=$(date +%s)
  timeout --kill-after=10 "$cap" "$@" > "$out/logs/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  local verdict=ok
  case $rc in
    0) verdict=ok ;;
    77) verdict="skip (exit 77)" ;;
    124|137) verdict="TIMEOUT after ${cap} s" ;;
    *) verdict="FAIL (exit $rc)" ;;
  esac
  local line="- \`$name\`: $verdict, ${dt} s (logs/$name.log)"
  printf '%s\n' "$line" >> "$out/steps.md"
  [ -n "${in_table:-}" ] || say "$line"
  return $rc
}
not_run () { say "- \`$1\`: not run: $2"; }

{
  echo "# GPU first contact"
  echo
  echo "$(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), build $build"
  echo
} > "$report"

# 1. The GPU.
say "## GPU"
has_gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L > "$out/logs/nvidia-smi-L.log" 2>&1 \
    && grep -q '^GPU ' "$out/logs/nvidia-smi-L.log"; then
  has_gpu=1
  nvidia-smi > "$out/logs/nvidia-smi.log" 2>&1
  say '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,compute_cap --format=csv >> "$report" 2>&1
  say '```'
else
  say "no GPU: nvidia-smi $(command -v nvidia-smi >/dev/null && echo 'lists none' || echo 'not found')"
fi
gpu_reason="no GPU"
test_cuda=$build/tests/test_cuda
[ -x "$test_cuda" ] || gpu_reason="this build has no CUDA backend ($test_cuda missing)"
: > "$out/steps.md"

# 2. compute-sanitizer over the cuda suite (run directly: the sanitizer follows one process).
say ""
say "## Sanitizers and the cuda suite"
export G_TEST_SRCDIR=$root/tests CANARY_TEST_FIXTURES=$root/tests/fixtures
if [ $has_gpu = 1 ] && [ -x "$test_cuda" ]; then
  san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [ -n "$san" ]; then
    for tool in memcheck racecheck; do
      step "sanitizer-$tool" 150 "$san" --tool "$tool" --error-exitcode 3 "$test_cuda"
      if grep -qiE "unable to|not supported|device not supported|Target application terminated before" \
          "$out/logs/sanitizer-$tool.log"; then
        say "  - the sanitizer may have refused this device or runtime: see its log"
      fi
      grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/logs/sanitizer-$tool.log" | sed 's/^/  - /' >> "$report"
    done
  else
    not_run sanitizers "compute-sanitizer not found"
  fi
else
  not_run sanitizer-memcheck "$gpu_reason"
  not_run sanitizer-racecheck "$gpu_reason"
fi
if [ -x "$test_cuda" ]; then
  step cuda-suite 120 "$test_cuda"
  grep -E "^(ok|not ok|SKIP|FAIL)" "$out/logs/cuda-suite.log" | sed 's/^/  - /' >> "$report"
else
  not_run cuda-suite "$gpu_reason"
fi

# 3. Benchmark.
say ""
say "## Benchmark (random weights at the released shapes)"
if [ $has_gpu = 1 ] && [ -x "$build/tools/canary-bench-gpu" ]; then
  step bench-gpu 150 tools/bench-gpu.sh "$build"
  say '```'
  cat "$out/logs/bench-gpu.log" >> "$report"
  say '```'
else
  not_run bench-gpu "$gpu_reason"
fi

# 4. The element: the example clips and a long-form file, three ways.
say ""
say "## The element on the example audio"
model=${MODEL:-}
if [ -z "$model" ]; then
  if [ -f examples/models/canary-default.nemo ]; then model=examples/models/canary-default.nemo
  else model=tests/fixtures/canary2-tiny/model.nemo; fi
fi
say "model: \`$model\`"
clips=()
refs=()
for wav in examples/audio/*.wav; do
  name=$(basename "$wav")
  text=$(awk -F' [|] ' -v f="| $name" 'index($0, f) == 1 { print $NF }' examples/audio/README.md)
  text=${text% |}
  clips+=("$wav"); refs+=("$text")
done
audio=$out/audio
mkdir -p "$audio"
if [ -n "$py" ] && [ ${#clips[@]} -gt 0 ]; then
  args=()
  for i in "${!clips[@]}"; do args+=("${clips[$i]}=${refs[$i]}"); done
  "$py" tests/gpu/longform.py "$audio/longform-120s.wav" "$audio/longform-120s.txt" 120 "${args[@]}"
  clips+=("$audio/longform-120s.wav"); refs+=("$(cat "$audio/longform-120s.txt")")
fi
configs=("device=cuda precision=fp16" "device=cuda precision=fp32" "device=cpu")
cell () { cut -c1-160 | sed 's/|/\\|/g'; }  # a transcript in a markdown table cell
in_table=1
say ""
say "| clip | config | WER | transcript |"
say "|---|---|---|---|"
for i in "${!clips[@]}"; do
  wav=${clips[$i]}
  name=$(basename "$wav" .wav)
  printf '%s\n' "${refs[$i]}" > "$audio/$name.ref.txt"
  for cfg in "${configs[@]}"; do
    tag=$(echo "$cfg" | tr ' =' '__')
    if [ $has_gpu = 0 ] && [[ $cfg == device=cuda* ]]; then
      say "| $name | $cfg | | not run: $gpu_reason |"
      continue
    fi
    # shellcheck disable=SC2086
    if step "element-$name-$tag" 120 gst-launch-1.0 -m filesrc location="$wav" ! decodebin ! audioconvert ! \
        audioresample ! canarytranscribe model-path="$model" $cfg ! fakesink; then
      "$py" tests/gpu/messages_text.py < "$out/logs/element-$name-$tag.log" > "$audio/$name.$tag.txt"
      w=$("$py" tests/gpu/wer.py "$audio/$name.ref.txt" "$audio/$name.$tag.txt")
      say "| $name | $cfg | ${w#WER } | $(cell < "$audio/$name.$tag.txt") |"
    else
      say "| $name | $cfg | | failed: $(grep -m1 -i error "$out/logs/element-$name-$tag.log" | cell) |"
    fi
  done
  say "| $name | reference | | $(printf '%s' "${refs[$i]}" | cell) |"
done
in_table=
say ""
say "## Steps"
cat "$out/steps.md" >> "$report"

say ""
say "total: $(( $(date +%s) - t_start )) s"
echo "report: $report"
cat "$report"
