#!/usr/bin/env bash
# Transcribes any audio or video file that GStreamer can decode; the text goes to stdout.
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 1 ] || usage "INPUT"
exec gst-launch-1.0 -q filesrc location="$1" ! decodebin ! audioconvert ! audioresample ! \
  "${CANARY[@]}" ! fdsink
