#!/usr/bin/env bash
# Prints the bus messages: model loading progress and one 'canarytranscribe' element message
# per segment (text, timestamp, stream-time, running-time, duration, language, final,
# processing-time).
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 1 ] || usage "INPUT"
gst-launch-1.0 -m filesrc location="$1" ! decodebin ! audioconvert ! audioresample ! \
  "${CANARY[@]}" ! fakesink | grep -E '\((progress|element|error|warning)\)'
