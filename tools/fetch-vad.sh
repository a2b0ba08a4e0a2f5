#!/usr/bin/env bash
# Fetches the Silero VAD weights that canarytranscribe's VAD segmentation reads (docs/vad.md):
# downloads the silero-vad wheel from PyPI with pip (pinned version and hash,
# data/silero-vad-requirements.txt), extracts silero_vad/data/silero_vad_16k.safetensors, checks
# its hash and writes it to data/silero_vad_16k.safetensors (git-ignored), where meson finds it
# (installs it into <datadir>/gst-canary/vad and points the tests at it). The weights are a
# dependency, not part of this repository. Idempotent: does nothing when the file is there and
# matches.
#
#   bash tools/fetch-vad.sh [OUT_DIR]     # default: data/
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/data}
member=silero_vad/data/silero_vad_16k.safetensors
sha=c59271c284ae9c8335d795d60e0bfdb71aaaceec578d9bd9ffc1b8153c319ea1
dest=$out/silero_vad_16k.safetensors

if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then
  exit 0
fi
py=$(command -v python3)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
  -r "$repo/data/silero-vad-requirements.txt" -d "$tmp"
"$py" - "$tmp" "$member" "$tmp/weights" <<'PY'
import glob, sys, zipfile
wheel, = glob.glob(sys.argv[1] + "/silero_vad-*.whl")
with zipfile.ZipFile(wheel) as z, open(sys.argv[3], "wb") as f:
    f.write(z.read(sys.argv[2]))
PY
if ! echo "$sha  $tmp/weights" | sha256sum -c --status; then
  echo "fetch-vad.sh: $member in the wheel does not have the expected sha256 $sha" >&2
  exit 1
fi
mkdir -p "$out"
mv "$tmp/weights" "$dest"
echo "fetch-vad.sh: $dest"
