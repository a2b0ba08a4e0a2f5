#!/usr/bin/env bash
# Burns the transcript into the picture of a video (textoverlay) and writes a WebM file.
#
# textoverlay holds each video frame until the text for its time has arrived, and that text
# only exists once the transcriber has heard the whole window: the video queue must therefore
# hold at least window-length + processing time of decoded video (here 15 s; lower it with a
# shorter window-length for large videos, it is raw video memory).
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 2 ] || usage "INPUT-VIDEO OUTPUT.webm"
exec gst-launch-1.0 -q filesrc location="$1" ! decodebin name=dec \
  dec. ! queue max-size-time=15000000000 max-size-buffers=0 max-size-bytes=0 ! videoconvert ! \
    overlay.video_sink \
  dec. ! audioconvert ! audioresample ! tee name=audio \
    audio. ! queue ! "${CANARY[@]}" ! overlay.text_sink \
    audio. ! queue max-size-time=15000000000 max-size-buffers=0 max-size-bytes=0 ! \
      audioconvert ! vorbisenc ! mux. \
  textoverlay name=overlay valignment=bottom wrap-mode=wordchar ! videoconvert ! \
    vp8enc deadline=1 ! webmmux name=mux ! filesink location="$2"
