#!/usr/bin/env bash
# Deterministic speech/silence clips for the NeMo reference fixtures.
# espeak-ng (fixed voice, rate, pitch, text) -> sox resample to 16 kHz mono
# 16-bit PCM with dither disabled (-D) so the bytes are reproducible.
set -euo pipefail
OUT=${1:-"$(cd "$(dirname "$0")/../fixtures" && pwd)/audio"}
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

say() { # name text
  espeak-ng -v en-us -s 160 -p 50 -a 100 -w "$TMP/$1.raw.wav" "$2"
  sox -D "$TMP/$1.raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$OUT/$1.wav" rate -h
}

say short "yes"
say speech4s "The quick brown fox jumps over the lazy dog near the river bank."
say speech10s "Every morning the old fisherman walked down to the harbour, checked his nets, and waited patiently for the tide to turn before he finally set out to sea with his dog."
say speech13s "In the small village at the foot of the mountains, the children gathered every evening to listen to stories about dragons, lost treasure, and brave travellers who crossed the frozen lakes in the middle of a very cold winter."
# 2 s of pure digital silence
sox -D -n -r 16000 -c 1 -b 16 -e signed-integer "$OUT/silence.wav" trim 0 2.0
# 3 s of digital silence followed by speech
espeak-ng -v en-us -s 160 -p 50 -a 100 -w "$TMP/lead.raw.wav" "Hello there, good morning."
sox -D "$TMP/lead.raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$TMP/lead16.wav" rate -h
sox -D "$TMP/lead16.wav" "$OUT/lead_silence.wav" pad 3.0 0
for f in "$OUT"/*.wav; do printf '%s %ss\n' "$(basename "$f")" "$(soxi -D "$f")"; done
