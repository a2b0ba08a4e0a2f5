#!/bin/sh
# gst-canary — runs one fuzz target for the `fuzz` test suite.
#
#   run-fuzz.sh TARGET SECONDS SRCROOT BUILDDIR REPLAY_EXE MODE SOURCES...
#
# With clang and libFuzzer (MODE auto or enabled) the target and the engine SOURCES it needs are
# compiled with -fsanitize=fuzzer,address,undefined into BUILDDIR/tests/fuzz/ and fuzzed for
# SECONDS on a scratch copy of tests/fuzz/corpus/TARGET; crash inputs land in
# BUILDDIR/tests/fuzz/artifacts/. Without them (MODE auto) the gcc-built REPLAY_EXE runs each seed
# once instead. MODE enabled makes a missing libFuzzer a failure.
set -eu

target=$1 seconds=$2 src=$3 build=$4 replay=$5 mode=$6
shift 6

seeds="$src/tests/fuzz/corpus/$target"
out="$build/tests/fuzz"
exe="$out/$target-libfuzzer"
cc=${CLANG:-clang}

have_libfuzzer() {
  command -v "$cc" >/dev/null 2>&1 || return 1
  probe="$out/.probe-$target"
  printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' > "$probe.c"
  "$cc" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" >/dev/null 2>&1
  status=$?
  rm -f "$probe" "$probe.c"
  return $status
}

mkdir -p "$out"
if ! have_libfuzzer; then
  if [ "$mode" = enabled ]; then
    echo "fuzz: -Dfuzz=enabled but $cc cannot build libFuzzer targets" >&2
    exit 1
  fi
  echo "fuzz: no clang/libFuzzer: replaying the seed corpus once with $replay"
  exec "$replay" "$seeds"
fi

# Rebuild when any input is newer than the binary.
stale=1
if [ -x "$exe" ]; then
  stale=0
  for f in "$src/tests/fuzz/$target.c" "$@"; do
    [ "$f" -nt "$exe" ] && stale=1
  done
fi
if [ $stale = 1 ]; then
  echo "fuzz: building $exe"
  # shellcheck disable=SC2046  # pkg-config output is a word list on purpose
  "$cc" -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src/gst/canary" -I"$src/gst" -I"$build/gst" \
    "$src/tests/fuzz/$target.c" "$@" \
    $(pkg-config --cflags --libs glib-2.0 json-glib-1.0 yaml-0.1 zlib) -lm -o "$exe"
fi

work="$out/corpus-$target"
mkdir -p "$work" "$out/artifacts"
# libFuzzer adds new inputs to the first directory only: the committed seeds stay untouched.
log="$out/$target.log"
status=0
"$exe" "$work" "$seeds" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$out/artifacts/$target-" >"$log" 2>&1 || status=$?
tail -n 40 "$log"
if [ $status != 0 ]; then
  echo "fuzz: $target failed (status $status); inputs in $out/artifacts/, full log $log" >&2
fi
exit $status
