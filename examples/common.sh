# Sourced by the example scripts: finds the plugin and the model.
#
#   MODEL=/path/to/model.nemo   Canary model (default: the bundled canary-default.nemo, if installed)
#   BUILD=/path/to/build        build tree to take the plugin from (default: ../build next to this
#                               directory, when it holds the plugin; else the installed plugin)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${BUILD:-$here/../build}
if [ -f "$BUILD/gst/libgstcanary.so" ]; then
  export GST_PLUGIN_PATH="$BUILD/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
  # The build tree's plugin finds the default model here (an installed one in its data dir).
  export CANARY_DEFAULT_MODEL_DIR=${CANARY_DEFAULT_MODEL_DIR:-$here/models}
fi
# Properties for canarytranscribe, as separate words for gst-launch-1.0.
CANARY=(canarytranscribe)
if [ -n "${MODEL:-}" ]; then CANARY+=("model-path=$MODEL"); fi
if [ -n "${LANGUAGE:-}" ]; then CANARY+=("language-code=$LANGUAGE"); fi
usage() { echo "usage: $(basename "$0") $*" >&2; exit 2; }
