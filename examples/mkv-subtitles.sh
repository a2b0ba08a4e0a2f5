#!/usr/bin/env bash
# Stores a recording in Matroska with the transcript as a subtitle track (UTF-8 text).
# The audio waits in a queue until the transcriber has caught up with it (window-length +
# processing time), so that the muxer can interleave both tracks.
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 2 ] || usage "INPUT OUTPUT.mkv"
exec gst-launch-1.0 -q filesrc location="$1" ! decodebin ! audioconvert ! audioresample ! \
  tee name=audio \
  audio. ! queue ! "${CANARY[@]}" ! mux.subtitle_0 \
  audio. ! queue max-size-time=15000000000 max-size-buffers=0 max-size-bytes=0 ! \
    audioconvert ! vorbisenc ! mux.audio_0 \
  matroskamux name=mux ! filesink location="$2"
