/* gst-canary — canary-dictate: the listening gate in front of the transcriber.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The microphone runs all the time and the model stays loaded; a stock `valve` decides which
 * audio reaches `canarytranscribe`. Its `drop` property is only ever changed here, on the
 * streaming thread, from a probe on the valve's input, just before the valve sees a buffer.
 * So every buffer is either wholly dropped (gate closed: discarded on purpose) or wholly
 * passed (gate open: nothing is ever lost), and the samples counted here are exactly those the
 * transcriber received. */
#include "dictate-gate.h"

#include <gst/audio/audio.h>

/* Timestamps of consecutive buffers may jitter by rounding; a larger jump is lost audio. */
#define HOLE_TOLERANCE (5 * GST_MSECOND)

struct _DictateGate {
  GstElement *valve;
  GstPad *valve_sink;
  GstPad *valve_src;
  gulong probe;
  DictateSessionFunc on_session_end;
  gpointer user_data;
  gint want_open;               /* atomic: what the application asked for */

  /* Streaming thread only. */
  gboolean open;
  GstAudioInfo info;
  DictateSession session;
};

static void
start_session (DictateGate *gate)
{
  gate->session.samples = 0;
  gate->session.start = GST_CLOCK_TIME_NONE;
  gate->session.end = GST_CLOCK_TIME_NONE;
  gate->session.missing = 0;
}

static void
end_session (DictateGate *gate)
{
  if (gate->on_session_end)
    gate->on_session_end (&gate->session, gate->user_data);
  /* A GAP without duration makes canarytranscribe transcribe the partial window it holds now,
   * so the last words appear when the user stops talking, not when the next session starts. */
  if (gate->session.samples > 0 && GST_CLOCK_TIME_IS_VALID (gate->session.end))
    gst_pad_push_event (gate->valve_src,
        gst_event_new_gap (gate->session.end, GST_CLOCK_TIME_NONE));
}

/* Applies the requested state before the valve handles the next buffer. */
static void
apply_request (DictateGate *gate)
{
  gboolean want = g_atomic_int_get (&gate->want_open);

  if (want == gate->open)
    return;
  if (want)
    start_session (gate);
  else
    end_session (gate);
  g_object_set (gate->valve, "drop", !want, NULL);
  gate->open = want;
}

static gboolean
count_buffer (GstBuffer **buffer, guint idx, gpointer data)
{
  DictateGate *gate = data;
  DictateSession *s = &gate->session;
  gint bpf = GST_AUDIO_INFO_BPF (&gate->info), rate = GST_AUDIO_INFO_RATE (&gate->info);
  guint64 n = bpf > 0 ? gst_buffer_get_size (*buffer) / bpf : 0;
  GstClockTime pts = GST_BUFFER_PTS (*buffer);

  s->samples += n;
  if (GST_CLOCK_TIME_IS_VALID (pts) && rate > 0) {
    if (!GST_CLOCK_TIME_IS_VALID (s->start))
      s->start = pts;
    else if (pts > s->end + HOLE_TOLERANCE)
      s->missing += pts - s->end;
    s->end = pts + gst_util_uint64_scale_int (n, GST_SECOND, rate);
  }
  return TRUE;
}

static void
handle_event (DictateGate *gate, GstEvent *event)
{
  if (GST_EVENT_TYPE (event) == GST_EVENT_CAPS) {
    GstCaps *caps;
    gst_event_parse_caps (event, &caps);
    if (!gst_audio_info_from_caps (&gate->info, caps))
      gst_audio_info_init (&gate->info);
  } else if (GST_EVENT_TYPE (event) == GST_EVENT_EOS && gate->open) {
    /* The source ended while listening: the transcriber drains at EOS by itself. */
    if (gate->on_session_end)
      gate->on_session_end (&gate->session, gate->user_data);
    start_session (gate);
  }
}

static GstPadProbeReturn
on_valve_input (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  DictateGate *gate = data;

  if (info->type & GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM) {
    handle_event (gate, GST_PAD_PROBE_INFO_EVENT (info));
    return GST_PAD_PROBE_OK;
  }
  apply_request (gate);
  if (!gate->open)
    return GST_PAD_PROBE_OK;
  if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
    GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER (info);
    count_buffer (&buffer, 0, gate);
  } else if (info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
    gst_buffer_list_foreach (GST_PAD_PROBE_INFO_BUFFER_LIST (info), count_buffer, gate);
  }
  return GST_PAD_PROBE_OK;
}

DictateGate *
dictate_gate_new (GstElement *valve, DictateSessionFunc on_session_end, gpointer user_data)
{
  DictateGate *gate;

  g_return_val_if_fail (GST_IS_ELEMENT (valve), NULL);
  gate = g_new0 (DictateGate, 1);
  gate->valve = gst_object_ref (valve);
  gate->valve_sink = gst_element_get_static_pad (valve, "sink");
  gate->valve_src = gst_element_get_static_pad (valve, "src");
  gate->on_session_end = on_session_end;
  gate->user_data = user_data;
  gst_audio_info_init (&gate->info);
  start_session (gate);
  /* Sticky events (EOS above all) still pass while closed, so a source that ends while nobody
   * listens still ends the pipeline. Must be set before the valve leaves READY. */
  gst_util_set_object_arg (G_OBJECT (valve), "drop-mode", "forward-sticky-events");
  g_object_set (valve, "drop", TRUE, NULL);
  gate->probe = gst_pad_add_probe (gate->valve_sink, GST_PAD_PROBE_TYPE_BUFFER
      | GST_PAD_PROBE_TYPE_BUFFER_LIST | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, on_valve_input,
      gate, NULL);
  return gate;
}

void
dictate_gate_set_open (DictateGate *gate, gboolean open)
{
  g_atomic_int_set (&gate->want_open, open ? 1 : 0);
}

gboolean
dictate_gate_toggle (DictateGate *gate)
{
  gint old;

  do
    old = g_atomic_int_get (&gate->want_open);
  while (!g_atomic_int_compare_and_exchange (&gate->want_open, old, !old));
  return !old;
}

void
dictate_gate_free (DictateGate *gate)
{
  if (!gate)
    return;
  gst_pad_remove_probe (gate->valve_sink, gate->probe);
  gst_object_unref (gate->valve_sink);
  gst_object_unref (gate->valve_src);
  gst_object_unref (gate->valve);
  g_free (gate);
}
