#!/usr/bin/env bash
# Prepares the carry for tests/gpu/run-on-device.sh on the lent GPU machine (run it here):
#   .device/build/   the plugin, the cuda suite and the GPU benchmark, built here with the CUDA
#                    backend for sm_90 (H100/H200) plus PTX (built in .device/build-full, which
#                    stays here: only the three binaries travel, well inside the 64 MiB carry)
#   .device/debs/    the Debian runtime packages the lent machine lacks (GLib, GStreamer, libyaml,
#                    OpenBLAS, FFTW), downloaded, not installed
#   .device/unpack-runtime.sh   unpacks them there into /tmp/gstrt and sets the loader paths
#
#   bash tests/gpu/prepare.sh [ARCHS]        # ARCHS default "90"
# Then the device call of docs/cuda.md: carry [".device"], command
#   bash tests/gpu/run-on-device.sh .device/build "$OUT"
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
archs=${1:-90}
grep -qx '/.device/' .gitignore 2>/dev/null || grep -qx '/.device/' .git/info/exclude 2>/dev/null \
  || echo /.device/ >> .git/info/exclude
export PATH="/usr/local/cuda/bin:$PATH"
full=.device/build-full
[ -d "$full" ] || meson setup "$full" -Dcuda=enabled -Dcuda-archs="$archs" -Dfuzz=disabled \
  -Dtextinject=disabled -Dbuildtype=release >/dev/null
ninja -C "$full" gst/libgstcanary.so tests/test_cuda tools/canary-bench-gpu >/dev/null
rm -rf .device/build
mkdir -p .device/build/gst .device/build/tests .device/build/tools
cp "$full/gst/libgstcanary.so" .device/build/gst/
cp "$full/tests/test_cuda" .device/build/tests/
cp "$full/tools/canary-bench-gpu" .device/build/tools/

mkdir -p .device/debs
(cd .device/debs && apt-get download \
  libglib2.0-0 libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-tools \
  libyaml-0-2 liborc-0.4-0 libunwind8 libdw1 libelf1 libcap2 libopenblas0-pthread libgfortran5 \
  libfftw3-single3 libfftw3-double3 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
cat > .device/unpack-runtime.sh <<'UNPACK'
# Sourced on the lent GPU machine: unpacks the carried .debs into /tmp/gstrt (never into /) and
# points the loader, PATH and GStreamer at them. Safe to source twice.
debs=${1:-.device/debs}
rt=/tmp/gstrt
if [ ! -d "$rt/usr" ]; then
  mkdir -p "$rt"
  for f in "$debs"/*.deb; do dpkg -x "$f" "$rt"; done
fi
lib=$rt/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH="$lib:$lib/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$rt/usr/bin:$PATH"
export GST_PLUGIN_SYSTEM_PATH_1_0="$lib/gstreamer-1.0"
export GST_PLUGIN_SCANNER_1_0="$lib/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner"
UNPACK
du -sh .device/build .device/debs | sed 's/^/carry: /'
