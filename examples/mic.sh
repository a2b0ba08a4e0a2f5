#!/usr/bin/env bash
# Live transcription of the default PulseAudio/PipeWire microphone, text on stdout.
# Each window's text is written as it comes (every window-length, 10 s by default); stop with
# Ctrl-C. For one line per segment with timestamps, use transcribe-app --mic.
set -euo pipefail
source "$(dirname "$0")/common.sh"
exec gst-launch-1.0 -q pulsesrc ! audioconvert ! audioresample ! "${CANARY[@]}" ! fdsink
