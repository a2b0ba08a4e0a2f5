#!/usr/bin/env bash
# Subtitles for a recording as SubRip (.srt).
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 2 ] || usage "INPUT OUTPUT.srt"
exec gst-launch-1.0 -q filesrc location="$1" ! decodebin ! audioconvert ! audioresample ! \
  "${CANARY[@]}" ! srtenc ! filesink location="$2"
