/* gst-canary — textinjectsink: types text into the focused window.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <gst/base/gstbasesink.h>

G_BEGIN_DECLS

#define GST_TYPE_TEXT_INJECT_SINK (gst_text_inject_sink_get_type ())
G_DECLARE_FINAL_TYPE (GstTextInjectSink, gst_text_inject_sink, GST, TEXT_INJECT_SINK, GstBaseSink)

typedef enum {
  GST_TEXT_INJECT_METHOD_AUTO,
  GST_TEXT_INJECT_METHOD_WTYPE,
  GST_TEXT_INJECT_METHOD_YDOTOOL,
  GST_TEXT_INJECT_METHOD_XTEST,
  GST_TEXT_INJECT_METHOD_STDOUT,
} GstTextInjectMethod;

#define GST_TYPE_TEXT_INJECT_METHOD (gst_text_inject_method_get_type ())
GType gst_text_inject_method_get_type (void);

typedef enum {
  GST_TEXT_INJECT_APPEND_NONE,
  GST_TEXT_INJECT_APPEND_SPACE,
  GST_TEXT_INJECT_APPEND_NEWLINE,
} GstTextInjectAppend;

#define GST_TYPE_TEXT_INJECT_APPEND (gst_text_inject_append_get_type ())
GType gst_text_inject_append_get_type (void);

GST_ELEMENT_REGISTER_DECLARE (textinjectsink);

G_END_DECLS
