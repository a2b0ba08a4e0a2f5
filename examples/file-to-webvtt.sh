#!/usr/bin/env bash
# Subtitles for a recording as WebVTT: one cue per window, timed like the audio.
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 2 ] || usage "INPUT OUTPUT.vtt"
exec gst-launch-1.0 -q filesrc location="$1" ! decodebin ! audioconvert ! audioresample ! \
  "${CANARY[@]}" ! webvttenc ! filesink location="$2"
