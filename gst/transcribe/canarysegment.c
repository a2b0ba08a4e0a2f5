/* gst-canary — canarytranscribe's VAD segmentation, on the streaming thread: the run's samples go
 * through Silero VAD 32 ms at a time (canary_vad.h), the segmenter closes a segment at a pause
 * (min-silence after speech) or at window-length, and each segment, padded by speech-pad, goes to
 * the model as one job whose text covers it. What lies between segments is never sent to the
 * model and comes out as GAP events, queued in order with the text, so buffers and GAPs tile the
 * timeline as with fixed windows. Audio is kept only from where a future segment could start.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "build-config.h"

#include "canarysegment.h"

#include "canaryoutput.h"
#include "canarywindow.h"

#include <string.h>

/* In a long stretch without speech, a GAP goes out at least every second of audio, so that
 * downstream (subtitle encoders, muxers, a live sink) sees time advance. */
#define GAP_EVERY RATE

static gchar *
default_vad_path (void)
{
  const gchar *env = g_getenv ("CANARY_VAD_MODEL");
  if (env && *env)
    return g_strdup (env);
  return g_build_filename (CANARY_VAD_DIR, DEFAULT_VAD_NAME, NULL);
}

gboolean
canary_segment_setup (GstCanaryTranscribe *self)
{
  GstCanaryTranscribeSegmentation mode;
  gchar *path;
  gboolean explicit_path;
  canary_vad_segmenter_options opt;

  GST_OBJECT_LOCK (self);
  mode = self->segmentation;
  explicit_path = self->vad_model_path != NULL;
  path = explicit_path ? g_strdup (self->vad_model_path) : NULL;
  canary_vad_segmenter_options_init (&opt);
  opt.threshold = self->vad_threshold;
  opt.neg_threshold = MAX (0.01f, self->vad_threshold - 0.15f);
  opt.min_silence = (guint64) self->min_silence_ms * (RATE / 1000);
  opt.pad = (guint64) self->speech_pad_ms * (RATE / 1000);
  opt.min_speech = (guint64) self->min_speech_ms * (RATE / 1000);
  GST_OBJECT_UNLOCK (self);

  canary_segment_teardown (self);
  GST_OBJECT_LOCK (self);
  self->active_segmentation = GST_CANARY_TRANSCRIBE_SEGMENTATION_FIXED;
  GST_OBJECT_UNLOCK (self);
  if (mode == GST_CANARY_TRANSCRIBE_SEGMENTATION_FIXED) {
    g_free (path);
    GST_INFO_OBJECT (self, "fixed windows");
    return TRUE;
  }
  if (!path)
    path = default_vad_path ();

  GError *err = NULL;
  self->vad = canary_vad_load (path, &err);
  if (!self->vad) {
    gboolean missing = g_error_matches (err, CANARY_ERROR, CANARY_ERROR_NOT_FOUND);
    if (mode == GST_CANARY_TRANSCRIBE_SEGMENTATION_VAD || explicit_path) {
      if (missing)
        GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
            ("VAD weights not found: %s", path),
            ("%s; fetch them with tools/fetch-vad.sh, set vad-model-path, or use "
                "segmentation=fixed", err->message));
      else
        GST_ELEMENT_ERROR (self, STREAM, WRONG_TYPE,
            ("Cannot use %s as Silero VAD weights", path), ("%s", err->message));
      g_error_free (err);
      g_free (path);
      return FALSE;
    }
    if (!self->vad_warned) {
      self->vad_warned = TRUE;
      GST_ELEMENT_WARNING (self, RESOURCE, NOT_FOUND,
          ("No VAD weights (%s): cutting fixed windows", path),
          ("%s; with the weights (tools/fetch-vad.sh) windows are cut at pauses and noise is "
              "never transcribed", err->message));
    }
    g_error_free (err);
    g_free (path);
    return TRUE;
  }

  opt.max_length = self->window_samples;
  canary_vad_segmenter_init (&self->segmenter, &opt);
  GST_OBJECT_LOCK (self);
  self->active_segmentation = GST_CANARY_TRANSCRIBE_SEGMENTATION_VAD;
  GST_OBJECT_UNLOCK (self);
  GST_INFO_OBJECT (self, "VAD segmentation with %s: threshold %.2f, min-silence %"
      G_GUINT64_FORMAT " ms, speech-pad %" G_GUINT64_FORMAT " ms, at most %u ms", path,
      self->segmenter.opt.threshold, self->segmenter.opt.min_silence / (RATE / 1000),
      self->segmenter.opt.pad / (RATE / 1000), self->window_samples / (RATE / 1000));
  g_free (path);
  return TRUE;
}

void
canary_segment_teardown (GstCanaryTranscribe *self)
{
  g_clear_pointer (&self->vad, canary_vad_free);
}

void
canary_segment_start_run (GstCanaryTranscribe *self)
{
  canary_vad_reset (self->vad);
  canary_vad_segmenter_init (&self->segmenter, &self->segmenter.opt);
  self->vad_pos = 0;
}

/* Queues a segment for the model, after a GAP for what lies before it. */
static GstFlowReturn
queue_segment (GstCanaryTranscribe *self, const canary_speech_segment *seg, guint64 total)
{
  guint64 start = MAX (seg->start, self->emitted_end), end = MIN (seg->end, total);
  GstFlowReturn flow;

  if (end <= start)
    return GST_FLOW_OK;
  flow = canary_window_queue_gap (self, start);
  if (flow == GST_FLOW_OK)
    flow = canary_window_submit (self, start, end);
  self->vad_speech_samples += end - start;
  return flow;
}

/* Audio before the segmenter's keep point is never sent: GAP it (at once in speech, else once a
 * second has gathered) and drop it from the adapter. */
static GstFlowReturn
release (GstCanaryTranscribe *self)
{
  guint64 keep = canary_vad_segmenter_keep_from (&self->segmenter);
  GstFlowReturn flow = GST_FLOW_OK;

  if (keep > self->emitted_end && (canary_vad_segmenter_in_speech (&self->segmenter)
          || keep - self->emitted_end >= GAP_EVERY))
    flow = canary_window_queue_gap (self, keep);
  if (keep > self->window_start) {
    gst_adapter_flush (self->adapter, (keep - self->window_start) * sizeof (gfloat));
    self->window_start = keep;
  }
  return flow;
}

GstFlowReturn
canary_segment_cut (GstCanaryTranscribe *self, gboolean final)
{
  guint64 total = canary_window_run_samples (self);
  gfloat chunk[CANARY_VAD_CHUNK];
  canary_speech_segment seg;
  GstFlowReturn flow = GST_FLOW_OK;

  while (flow == GST_FLOW_OK && total - self->vad_pos >= CANARY_VAD_CHUNK) {
    gst_adapter_copy (self->adapter, chunk, (self->vad_pos - self->window_start) * sizeof (gfloat),
        sizeof chunk);
    canary_window_repair_quietly (chunk, CANARY_VAD_CHUNK);
    gfloat p = canary_vad_process (self->vad, chunk);
    self->vad_pos += CANARY_VAD_CHUNK;
    if (canary_vad_segmenter_push (&self->segmenter, p, &seg))
      flow = queue_segment (self, &seg, total);
    if (flow == GST_FLOW_OK)
      flow = release (self);
  }
  if (flow != GST_FLOW_OK || !final)
    return flow;

  /* The end of the run: its last partial chunk (zero-padded, as the Python package does), then
   * whatever segment is still open, then a GAP for the rest. */
  if (total > self->vad_pos) {
    gsize n = total - self->vad_pos;
    memset (chunk, 0, sizeof chunk);
    gst_adapter_copy (self->adapter, chunk, (self->vad_pos - self->window_start) * sizeof (gfloat),
        n * sizeof (gfloat));
    canary_window_repair_quietly (chunk, n);
    gfloat p = canary_vad_process (self->vad, chunk);
    self->vad_pos += CANARY_VAD_CHUNK;
    if (canary_vad_segmenter_push (&self->segmenter, p, &seg))
      flow = queue_segment (self, &seg, total);
  }
  if (flow == GST_FLOW_OK && canary_vad_segmenter_finish (&self->segmenter, total, &seg))
    flow = queue_segment (self, &seg, total);
  if (flow == GST_FLOW_OK)
    flow = canary_window_queue_gap (self, total);
  gst_adapter_clear (self->adapter);
  self->window_start = total;
  self->vad_pos = total;
  return flow;
}
