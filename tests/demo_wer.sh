#!/usr/bin/env bash
# End-to-end test of the bundled default model (meson test demo-wer): every clip in
# examples/audio/ through a real pipeline, `filesrc ! decodebin ! audioconvert ! audioresample !
# canarytranscribe` with NO model-path (the element's default model) on the CPU in FP32, the
# text read from the element's messages and scored against examples/audio/README.md's reference
# text. Fails when the WER over all clips is above MAX_WER (percent), a bound set in
# tests/meson.build from the WER measured on these clips (docs/accuracy.md), never from our own
# output as the expected text.
#
#   tests/demo_wer.sh BUILD_DIR MAX_WER
set -euo pipefail
build=$1
max=$2
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export GST_PLUGIN_PATH="$build/gst"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: > "$tmp/ref.txt"
: > "$tmp/hyp.txt"
n=0
for wav in examples/audio/*.wav; do
  name=$(basename "$wav")
  ref=$(awk -F' [|] ' -v f="| $name" 'index($0, f) == 1 { print $NF }' examples/audio/README.md)
  ref=${ref% |}
  [ -n "$ref" ] || { echo "$name: no reference text in examples/audio/README.md"; exit 1; }
  hyp=$(gst-launch-1.0 -m filesrc location="$wav" ! decodebin ! audioconvert ! audioresample ! \
      canarytranscribe device=cpu precision=fp32 ! fakesink | python3 tests/gpu/messages_text.py)
  printf '%s: %s\n    (said: %s)\n' "$name" "$hyp" "$ref"
  printf '%s\n' "$ref" >> "$tmp/ref.txt"
  printf '%s\n' "$hyp" >> "$tmp/hyp.txt"
  n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "no clips in examples/audio/"; exit 1; }
w=$(python3 tests/gpu/wer.py "$tmp/ref.txt" "$tmp/hyp.txt")
echo "$n clips: $w (bound: ${max} %)"
python3 - "$w" "$max" <<'PY'
import re, sys
wer = float(re.search(r"WER ([0-9.]+) %", sys.argv[1]).group(1))
sys.exit(0 if wer <= float(sys.argv[2]) else 1)
PY
