/* gst-canary — plugin entry point.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "build-config.h"

#include <gst/gst.h>

#include "transcribe/gstcanarytranscribe.h"
#if HAVE_TEXTINJECT
#include "textinject/gsttextinjectsink.h"
#endif

static gboolean
plugin_init (GstPlugin *plugin)
{
  gst_canary_transcribe_init_engine_logging ();
  gboolean ok = GST_ELEMENT_REGISTER (canarytranscribe, plugin);
#if HAVE_TEXTINJECT
  ok &= GST_ELEMENT_REGISTER (textinjectsink, plugin);
#endif
  return ok;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, canary,
    "Speech to text with NVIDIA Canary models, run by a built-in C engine",
    plugin_init, VERSION, GST_LICENSE, GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
