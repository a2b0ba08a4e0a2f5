#!/usr/bin/env bash
# Install suite (docs/install.md, issue #17): the installed tree, not the build tree.
#
#   test_install.sh SOURCE_ROOT WORK_DIR BUILD_ROOT
#
# 1. Configures this source tree again under a scratch prefix (WORK_DIR/prefix; CPU only, no
#    tests: about half a minute), builds and installs it; then installs the build under test
#    (BUILD_ROOT, whatever it was configured with, CUDA included) into a scratch DESTDIR.
# 2. With an emptied environment (env -i) in which only installed directories are reachable
#    (GST_PLUGIN_SYSTEM_PATH = the scratch plugin dir and GStreamer's own; no GST_PLUGIN_PATH, a
#    scratch HOME, registry and runtime dir; the installed example clip) it runs
#    gst-inspect-1.0 canarytranscribe, the README's pipeline and canary-dictate --listen
#    --method=stdout on a file, each on the installed default model found without any variable,
#    and checks that a missing default model is reported in the installed data dir; and
#    canary-dictate once more with only GStreamer's own plugin directory scanned, where it must
#    find the plugin it was installed with.
# 3. Checks that no installed binary holds a path of the source or build trees.
#
# The default model: examples/models/canary-default.nemo, which meson installs when it exists;
# until it does, the NeMo-made test model tests/fixtures/canary2-tiny/model.nemo is copied into
# the scratch data dir under the default's name (its text is not English; the test checks that
# the pipelines run and which model they loaded, not the words).
set -euo pipefail

src=$(cd "$1" && pwd)
work=$2
main_build=$(cd "$3" && pwd)
meson=${MESON:-meson}
ninja=${NINJA:-ninja}

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
run_logged() { # name, command...: runs it, shows its output only when it fails
  local log="$work/$1.log"; shift
  if ! "$@" >"$log" 2>&1; then tail -n 40 "$log" >&2; fail "$* (log: $log)"; fi
}

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
prefix=$work/prefix

step "configure, build and install under $prefix"
run_logged setup "$meson" setup "$work/build" "$src" --prefix="$prefix" \
  -Dcuda=disabled -Dtests=disabled -Dfuzz=disabled
run_logged build "$ninja" -C "$work/build"
run_logged install "$meson" install -C "$work/build" --no-rebuild

plugin=$(find "$prefix" -name libgstcanary.so -print -quit)
[ -n "$plugin" ] || fail "no libgstcanary.so under $prefix"
plugin_dir=$(dirname "$plugin")
model_dir=$prefix/share/gst-canary/models
[ -x "$prefix/bin/canary-dictate" ] || fail "canary-dictate not installed in $prefix/bin"
unit=$prefix/share/systemd/user/canary-dictate.service
[ -f "$unit" ] || fail "the user unit is not installed: $unit"
grep -qx "ExecStart=$prefix/bin/canary-dictate" "$unit" ||
  fail "$unit does not run the installed canary-dictate: $(grep '^ExecStart' "$unit")"

if [ -f "$model_dir/canary-default.nemo" ]; then
  echo "default model: the installed examples/models/canary-default.nemo"
else
  echo "default model: examples/models/canary-default.nemo does not exist yet; installing the" \
       "test model tests/fixtures/canary2-tiny/model.nemo in its place"
  mkdir -p "$model_dir"
  cp "$src/tests/fixtures/canary2-tiny/model.nemo" "$model_dir/canary-default.nemo"
fi

step "install the build under test ($main_build) into a scratch DESTDIR"
run_logged install-destdir "$meson" install -C "$main_build" --no-rebuild --destdir "$work/destdir"

# The environment of a user who installed the project: nothing but PATH (GStreamer's tools and
# the installed bin/), and the variables that keep this test off the real home and registry.
gst_system_dir=$(pkg-config --variable=pluginsdir gstreamer-1.0)
mkdir -p "$work/home" "$work/run"
chmod 700 "$work/run"
clip=$prefix/share/gst-canary/audio/seen-voice-1.wav
[ -f "$clip" ] || fail "the example clips are not installed: $clip"
installed() {
  env -i PATH="$prefix/bin:/usr/bin:/bin" HOME="$work/home" XDG_RUNTIME_DIR="$work/run" \
    GST_REGISTRY_1_0="$work/registry.bin" GST_PLUGIN_SYSTEM_PATH_1_0="$plugin_dir:$gst_system_dir" \
    ${OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE} "$@"
}

step "gst-inspect-1.0 canarytranscribe"
installed gst-inspect-1.0 canarytranscribe >"$work/inspect.txt" 2>&1 ||
  { cat "$work/inspect.txt" >&2; fail "gst-inspect-1.0 canarytranscribe"; }
found=$(awk '$1 == "Filename" { print $2 }' "$work/inspect.txt")
[ "$found" = "$plugin" ] || fail "canarytranscribe came from '$found', not the installed $plugin"
echo "canarytranscribe from $found"

step "the README's pipeline on the installed default model"
installed gst-launch-1.0 -q filesrc location="$clip" ! decodebin ! audioconvert ! \
  audioresample ! canarytranscribe ! webvttenc ! fdsink >"$work/fox.vtt" 2>"$work/launch.err" ||
  { cat "$work/launch.err" >&2; fail "gst-launch-1.0 ... canarytranscribe ... (exit $?)"; }
head -n 1 "$work/fox.vtt" | grep -q '^WEBVTT' || fail "no WebVTT from the pipeline"
grep -q -- '-->' "$work/fox.vtt" || fail "the pipeline produced no cue"
echo "$(grep -c -- '-->' "$work/fox.vtt") cue(s)"

# The VAD weights (tools/fetch-vad.sh) install with the plugin when the tree has them; the
# installed plugin must then find them with no variable set.
if [ -f "$src/data/silero_vad_16k.safetensors" ]; then
  step "segmentation=vad with the installed VAD weights"
  [ -f "$prefix/share/gst-canary/vad/silero_vad_16k.safetensors" ] ||
    fail "the VAD weights are not installed in $prefix/share/gst-canary/vad"
  installed gst-launch-1.0 -q filesrc location="$clip" ! decodebin ! audioconvert ! \
    audioresample ! canarytranscribe segmentation=vad ! webvttenc ! fdsink >"$work/vad.vtt" \
    2>"$work/vad.err" || { cat "$work/vad.err" >&2; fail "segmentation=vad on the installed tree"; }
  grep -q -- '-->' "$work/vad.vtt" || fail "segmentation=vad produced no cue"
  echo "VAD segments: $(grep -c -- '-->' "$work/vad.vtt") cue(s)"
else
  echo "no VAD weights in this tree (tools/fetch-vad.sh): the VAD install is not checked"
fi

step "canary-dictate --method=stdout --listen --source='filesrc location=... ! decodebin'"
installed timeout 300 canary-dictate --method=stdout --listen \
  --source="filesrc location=$clip ! decodebin" >"$work/dictate.out" 2>"$work/dictate.err" ||
  { cat "$work/dictate.err" >&2; fail "canary-dictate (exit $?)"; }
grep -q "^model: Loaded $model_dir/canary-default.nemo " "$work/dictate.err" ||
  { cat "$work/dictate.err" >&2; fail "canary-dictate did not load the installed default model"; }
grep -q '^transcript: ' "$work/dictate.err" || { cat "$work/dictate.err" >&2; fail "no transcript"; }
[ -s "$work/dictate.out" ] || fail "canary-dictate typed nothing on stdout"
echo "canary-dictate: $(grep -c '^transcript: ' "$work/dictate.err") transcript(s) typed"

step "canary-dictate finds its own plugin where GStreamer does not look"
# GStreamer's own plugin directory only: the scratch prefix's is one it does not scan, as
# /usr/local's is not; canary-dictate falls back to the plugin directory it was installed with.
env -i PATH="$prefix/bin:/usr/bin:/bin" HOME="$work/home" XDG_RUNTIME_DIR="$work/run" \
  GST_REGISTRY_1_0="$work/registry-unscanned.bin" GST_PLUGIN_SYSTEM_PATH_1_0="$gst_system_dir" \
  timeout 300 canary-dictate --method=stdout --listen \
  --source="filesrc location=$clip ! decodebin" >/dev/null 2>"$work/dictate-unscanned.err" ||
  { cat "$work/dictate-unscanned.err" >&2; fail "canary-dictate without its plugin dir scanned"; }
grep -q "^model: Loaded $model_dir/canary-default.nemo " "$work/dictate-unscanned.err" ||
  { cat "$work/dictate-unscanned.err" >&2; fail "canary-dictate (plugin dir unscanned) loaded no model"; }

step "without a default model the error names the installed data dir"
mv "$model_dir/canary-default.nemo" "$work/canary-default.nemo.away"
if installed gst-launch-1.0 -q audiotestsrc num-buffers=1 ! canarytranscribe ! fakesink \
     >"$work/nomodel.err" 2>&1; then
  fail "the pipeline ran without a default model"
fi
grep -qF "$model_dir" "$work/nomodel.err" ||
  { cat "$work/nomodel.err" >&2; fail "the error does not name $model_dir"; }
mv "$work/canary-default.nemo.away" "$model_dir/canary-default.nemo"

step "no source or build path in the installed binaries"
leaks=0
while IFS= read -r -d '' f; do
  # The prefix is the install's own; any other path of these trees is the build machine's.
  hits=$(strings -a "$f" | grep -v -F "$prefix" | grep -F -e "$src" -e "$main_build" -e "$work/build" |
    sort -u || true)
  if [ -n "$hits" ]; then
    echo "$f:" >&2; echo "$hits" | sed 's/^/    /' >&2; leaks=1
  fi
done < <(find "$prefix" "$work/destdir" -type f \( -name '*.so' -o -perm -u+x \) -print0)
[ "$leaks" = 0 ] || fail "installed binaries hold source or build tree paths (above)"

echo "PASS: the installed tree works on its own"
