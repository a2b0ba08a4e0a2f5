/* gst-canary — canarytranscribe's output side, on the streaming thread: turns the worker's
 * results into text buffers (or GAP events when there is no text), announces each buffer with a
 * `canarytranscribe` element message (schema in gstcanarytranscribe.c's doc comment), and posts
 * errors and warnings with details structures.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "build-config.h"

#include "canaryoutput.h"

#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Errors and warnings
 */

/* Posts an ERROR message; takes @text and @debug. */
void
canary_output_post_error (GstCanaryTranscribe *self, GQuark domain, gint code, gchar *text,
    gchar *debug)
{
  GST_ERROR_OBJECT (self, "%s (%s)", text, debug ? debug : "");
  gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_ERROR, domain, code, text, debug,
      __FILE__, GST_FUNCTION, __LINE__);
}

/* Posts a WARNING whose details structure is @details (taken), named after what happened so
 * that applications can tell warnings apart; takes @text and @debug. */
void
canary_output_post_warning (GstCanaryTranscribe *self, GQuark domain, gint code, gchar *text,
    gchar *debug, GstStructure *details)
{
  GST_WARNING_OBJECT (self, "%s (%s)", text, debug ? debug : "");
  gst_element_message_full_with_details (GST_ELEMENT (self), GST_MESSAGE_WARNING, domain, code,
      text, debug, __FILE__, GST_FUNCTION, __LINE__, details);
}

/* ---------------------------------------------------------------------------------------------
 * Output
 */

static GstClockTime
lateness (GstCanaryTranscribe *self)
{
  GstClockTime ns;

  GST_OBJECT_LOCK (self);
  ns = self->lateness_ms * GST_MSECOND;
  GST_OBJECT_UNLOCK (self);
  return ns;
}

static void
post_segment_message (GstCanaryTranscribe *self, const CanaryResult *res, GstClockTime pts)
{
  GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
  gboolean post;

  GST_OBJECT_LOCK (self);
  post = self->post_messages;
  GST_OBJECT_UNLOCK (self);
  if (!post)
    return;

  GstClockTime stream_time = gst_segment_to_stream_time (&trans->segment, GST_FORMAT_TIME, pts);
  GstClockTime running_time = gst_segment_to_running_time (&trans->segment, GST_FORMAT_TIME, pts);
  GstStructure *s = gst_structure_new ("canarytranscribe",
      "text", G_TYPE_STRING, res->text,
      "timestamp", G_TYPE_UINT64, (guint64) pts,
      "stream-time", G_TYPE_UINT64, (guint64) stream_time,
      "running-time", G_TYPE_UINT64, (guint64) running_time,
      "duration", G_TYPE_UINT64, (guint64) res->duration,
      "language", G_TYPE_STRING, res->language ? res->language : "",
      "final", G_TYPE_BOOLEAN, TRUE,
      "processing-time", G_TYPE_UINT64, (guint64) res->processing_time, NULL);
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self), s));
}

/* The text buffer for @res, or NULL (after pushing a GAP event) when it holds no text. */
GstBuffer *
canary_output_result_to_buffer (GstCanaryTranscribe *self, const CanaryResult *res)
{
  GstClockTime pts = res->pts + lateness (self);

  if (!res->text || !*res->text) {
    GST_LOG_OBJECT (self, "no text, GAP %" GST_TIME_FORMAT " + %" GST_TIME_FORMAT,
        GST_TIME_ARGS (pts), GST_TIME_ARGS (res->duration));
    gst_pad_push_event (GST_BASE_TRANSFORM_SRC_PAD (self), gst_event_new_gap (pts, res->duration));
    return NULL;
  }

  gsize len = strlen (res->text);
  GstBuffer *buf = gst_buffer_new_memdup (res->text, len);
  GST_BUFFER_PTS (buf) = pts;
  GST_BUFFER_DURATION (buf) = res->duration;
  post_segment_message (self, res, pts);
  return buf;
}

/* Next finished result of the current epoch, without waiting. */
CanaryResult *
canary_output_pop_result (GstCanaryTranscribe *self)
{
  CanaryResult *res;

  g_mutex_lock (&self->lock);
  while ((res = g_queue_pop_head (&self->results)) && res->epoch != self->epoch)
    canary_job_result_free (res);
  g_mutex_unlock (&self->lock);
  return res;
}

/* Pushes every finished result from the streaming thread (outside the chain function). */
GstFlowReturn
canary_output_push_ready_results (GstCanaryTranscribe *self)
{
  GstFlowReturn flow = GST_FLOW_OK;
  CanaryResult *res;

  while (flow == GST_FLOW_OK && (res = canary_output_pop_result (self))) {
    GstBuffer *buf = canary_output_result_to_buffer (self, res);
    canary_job_result_free (res);
    if (buf)
      flow = gst_pad_push (GST_BASE_TRANSFORM_SRC_PAD (self), buf);
  }
  return flow;
}
