#!/usr/bin/env bash
# The README's first command: install what is needed, build, and transcribe examples/audio/*.wav
# through gst-launch-1.0 and canarytranscribe, printing the text of each clip (and, below it, what
# was said, from examples/audio/README.md).
#
#   bash examples/transcribe-examples.sh            # the bundled demo model (no model-path)
#   MODEL=/path/to/canary-180m-flash.nemo bash examples/transcribe-examples.sh
#
# Without MODEL the element loads its default model, examples/models/canary-default.nemo (a small
# Canary trained on synthetic English speech by training/). Until that model exists in this tree,
# the script says so and uses the NeMo-made test model tests/fixtures/canary2-tiny/model.nemo: a
# real Canary-architecture checkpoint whose weights are random, so its output is what NeMo itself
# produces for it — not English.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

missing=$(while read -r p; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done < .ci/debian-packages.txt)
if [ -n "$missing" ]; then
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The VAD weights (PyPI's silero-vad wheel, pinned): windows are then cut at pauses.
bash tools/fetch-vad.sh
if [ -d build ]; then meson setup --reconfigure build >/dev/null; else meson setup build >/dev/null; fi
ninja -C build >/dev/null

canary=(canarytranscribe)
if [ -z "${MODEL:-}" ] && [ ! -f examples/models/canary-default.nemo ]; then
  MODEL=$root/tests/fixtures/canary2-tiny/model.nemo
  echo "note: no bundled demo model yet (examples/models/canary-default.nemo, see training/README.md);" >&2
  echo "      using the random-weight test model $MODEL — its text is not English." >&2
  echo "      Set MODEL=/path/to/a/real/canary.nemo for a transcript." >&2
fi
if [ -n "${MODEL:-}" ]; then canary+=("model-path=$MODEL"); fi

export GST_PLUGIN_PATH="$root/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
# The build tree's plugin finds the default model here (an installed one looks in its data dir).
export CANARY_DEFAULT_MODEL_DIR="$root/examples/models"
export CANARY_VAD_MODEL="$root/data/silero_vad_16k.safetensors"
for wav in examples/audio/*.wav; do
  name=$(basename "$wav")
  printf '%s: ' "$name"
  # One WebVTT cue per stretch of speech (VAD segment); print the cues' text on one line.
  gst-launch-1.0 -q filesrc location="$wav" ! decodebin ! audioconvert ! audioresample ! \
    "${canary[@]}" ! webvttenc ! fdsink |
    awk 'NR > 1 && NF && !/-->/ && !/^[0-9]+$/ { printf "%s%s", sep, $0; sep = " " } END { print "" }'
  said=$(awk -F' [|] ' -v f="| $name" 'index($0, f) == 1 { print $NF }' examples/audio/README.md)
  [ -z "$said" ] || printf '    (said: %s)\n' "${said% |}"
done
