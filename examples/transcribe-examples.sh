#!/usr/bin/env bash
# The README's first command: install what is needed, build, and transcribe examples/audio/*.wav
# through gst-launch-1.0 and canarytranscribe, printing the text of each clip.
#
#   bash examples/transcribe-examples.sh            # default model
#   MODEL=/path/to/canary-180m-flash.nemo bash examples/transcribe-examples.sh
#
# The default is the bundled demo model (examples/models/canary-default.nemo). Until that model
# exists in this tree, the script says so and uses the NeMo-made test model
# tests/fixtures/canary2-tiny/model.nemo instead: a real Canary-architecture checkpoint whose
# weights are random, so its output is what NeMo itself produces for it — not English.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

missing=$(while read -r p; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done < .ci/debian-packages.txt)
if [ -n "$missing" ]; then
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

if [ -z "${MODEL:-}" ]; then
  if [ -f examples/models/canary-default.nemo ]; then
    MODEL=$root/examples/models/canary-default.nemo
  else
    MODEL=$root/tests/fixtures/canary2-tiny/model.nemo
    echo "note: no bundled demo model yet (examples/models/canary-default.nemo); using the random-weight" >&2
    echo "      test model $MODEL — its text is not English. Set MODEL=/path/to/a/real/canary.nemo." >&2
  fi
fi

export GST_PLUGIN_PATH="$root/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
for wav in examples/audio/*.wav; do
  printf '%s: ' "$(basename "$wav")"
  gst-launch-1.0 -q filesrc location="$wav" ! decodebin ! audioconvert ! audioresample ! \
    canarytranscribe model-path="$MODEL" ! fdsink
  echo
done
