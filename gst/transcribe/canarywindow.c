/* gst-canary — canarytranscribe's input side, on the streaming thread: converts audio to F32
 * (repairing NaN/infinite and out-of-range samples, and warning about them), keeps the run of
 * samples since the last discontinuity on the input's timeline, cuts it into overlapping
 * windows, marks windows of digital silence, and queues them for the worker with back-pressure.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "build-config.h"

#include "canarywindow.h"

#include "canaryoutput.h"

#include <math.h>
#include <string.h>

/* Windows that may wait for the worker before the streaming thread blocks. Two keep the model
 * busy without holding much memory; live input gets up to LIVE_MAX_QUEUED_MS of audio, so a
 * model that is slower for a moment never makes the source drop audio. */
#define MAX_QUEUED_WINDOWS 2
#define LIVE_MAX_QUEUED_MS 60000

/* Samples below one 16-bit step are digital silence. */
#define SILENCE_LEVEL (1.0f / 32768.0f)
/* Float input up to this peak is resampler overshoot, clipped quietly; beyond it the input is
 * probably mis-scaled and the user is told. */
#define HUGE_PEAK 2.0f

/* ---------------------------------------------------------------------------------------------
 * Input: windows
 */

static gboolean
is_digital_silence (const gfloat *samples, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    if (fabsf (samples[i]) >= SILENCE_LEVEL)
      return FALSE;
  }
  return TRUE;
}

static GstClockTime
run_time_at (GstCanaryTranscribe *self, guint64 sample)
{
  return self->run_base + gst_util_uint64_scale_int (sample, GST_SECOND, RATE);
}

/* Tells the user once per window that samples had to be repaired, so that nothing they fed in
 * changes silently. */
static void
report_sanitised (GstCanaryTranscribe *self, GstClockTime pts)
{
  if (self->bad_nonfinite || self->bad_peak > HUGE_PEAK) {
    canary_output_post_warning (self, GST_STREAM_ERROR, GST_STREAM_ERROR_FORMAT,
        g_strdup_printf ("Input audio has invalid samples: %" G_GUINT64_FORMAT " NaN/infinite "
            "replaced by silence, %" G_GUINT64_FORMAT " beyond full scale clipped",
            self->bad_nonfinite, self->bad_clipped),
        g_strdup_printf ("in the window starting at %" GST_TIME_FORMAT "; peak magnitude %g "
            "(float audio must be in [-1, 1])", GST_TIME_ARGS (pts), self->bad_peak),
        gst_structure_new ("canarytranscribe/invalid-samples",
            "timestamp", G_TYPE_UINT64, (guint64) pts,
            "non-finite", G_TYPE_UINT64, self->bad_nonfinite,
            "clipped", G_TYPE_UINT64, self->bad_clipped,
            "peak", G_TYPE_DOUBLE, (gdouble) self->bad_peak, NULL));
  } else if (self->bad_clipped) {
    GST_DEBUG_OBJECT (self, "clipped %" G_GUINT64_FORMAT " samples (peak %g)",
        self->bad_clipped, self->bad_peak);
  }
  self->bad_nonfinite = self->bad_clipped = 0;
  self->bad_peak = 0.0f;
}

/* Hands a window to the worker, waiting while the queue is full (back-pressure). */
static GstFlowReturn
enqueue_job (GstCanaryTranscribe *self, CanaryJob *job)
{
  guint limit = MAX_QUEUED_WINDOWS;
  gboolean live = g_atomic_int_get (&self->live);
  GstFlowReturn flow;

  if (live)
    limit = MAX (MAX_QUEUED_WINDOWS, LIVE_MAX_QUEUED_MS * RATE / 1000 / self->hop_samples);

  g_mutex_lock (&self->lock);
  if (live && g_queue_get_length (&self->jobs) >= limit && !self->backlog_warned) {
    self->backlog_warned = TRUE;
    g_mutex_unlock (&self->lock);
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("Transcription is more than %d s behind the live input; holding up the source",
            LIVE_MAX_QUEUED_MS / 1000),
        ("%u windows are waiting for the model; the source may now drop audio", limit));
    g_mutex_lock (&self->lock);
  }
  while (!self->flushing && self->worker_flow == GST_FLOW_OK
      && g_queue_get_length (&self->jobs) >= limit)
    g_cond_wait (&self->cond, &self->lock);

  flow = self->flushing ? GST_FLOW_FLUSHING : self->worker_flow;
  if (flow == GST_FLOW_OK) {
    job->epoch = self->epoch;
    g_queue_push_tail (&self->jobs, job);
    g_cond_broadcast (&self->cond);
  } else {
    canary_job_free (job);
  }
  g_mutex_unlock (&self->lock);
  return flow;
}

/* Copies the first @n samples of the adapter into a job for the worker. */
static GstFlowReturn
submit_window (GstCanaryTranscribe *self, gsize n)
{
  GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
  CanaryJob *job = g_new0 (CanaryJob, 1);
  guint64 start = MAX (self->window_start, self->emitted_end);
  guint64 end = self->window_start + n;

  job->samples = g_new (gfloat, n);
  job->n_samples = n;
  gst_adapter_copy (self->adapter, job->samples, 0, n * sizeof (gfloat));
  job->pts = run_time_at (self, start);
  job->duration = run_time_at (self, end) - job->pts;
  job->end_running_time = trans->segment.format == GST_FORMAT_TIME ?
      gst_segment_to_running_time (&trans->segment, GST_FORMAT_TIME, run_time_at (self, end)) :
      GST_CLOCK_TIME_NONE;
  job->new_run = self->next_new_run;
  job->merge = self->merge;
  job->silent = is_digital_silence (job->samples, n);
  self->next_new_run = FALSE;
  self->emitted_end = end;

  GST_LOG_OBJECT (self, "window of %" G_GSIZE_FORMAT " samples, text for %" GST_TIME_FORMAT
      " + %" GST_TIME_FORMAT "%s", n, GST_TIME_ARGS (job->pts), GST_TIME_ARGS (job->duration),
      job->silent ? " (digital silence)" : "");
  report_sanitised (self, run_time_at (self, self->window_start));
  return enqueue_job (self, job);
}

/* Cuts every complete window out of the adapter; with @final also the partial window left at the
 * end of a run, unless it holds nothing the previous window did not cover. */
static GstFlowReturn
cut_windows (GstCanaryTranscribe *self, gboolean final)
{
  GstFlowReturn flow = GST_FLOW_OK;
  gsize avail = gst_adapter_available (self->adapter) / sizeof (gfloat);

  while (flow == GST_FLOW_OK && avail >= self->window_samples) {
    flow = submit_window (self, self->window_samples);
    gst_adapter_flush (self->adapter, self->hop_samples * sizeof (gfloat));
    self->window_start += self->hop_samples;
    avail -= self->hop_samples;
  }
  if (flow == GST_FLOW_OK && final) {
    if (avail > 0 && self->window_start + avail > self->emitted_end)
      flow = submit_window (self, avail);
    gst_adapter_clear (self->adapter);
    self->window_start += avail;
  }
  return flow;
}

static void
start_run (GstCanaryTranscribe *self, GstClockTime base)
{
  GST_DEBUG_OBJECT (self, "new run at %" GST_TIME_FORMAT, GST_TIME_ARGS (base));
  gst_adapter_clear (self->adapter);
  self->run_active = TRUE;
  self->run_base = base;
  self->window_start = 0;
  self->emitted_end = 0;
  self->next_new_run = TRUE;
}

/* Queues what is left of the current run; the next samples start a new one. */
GstFlowReturn
canary_window_end_run (GstCanaryTranscribe *self)
{
  GstFlowReturn flow = GST_FLOW_OK;

  if (self->run_active) {
    flow = cut_windows (self, TRUE);
    report_sanitised (self, run_time_at (self, self->window_start));
  }
  self->run_active = FALSE;
  return flow;
}

/* Places @n samples stamped @pts on the run's timeline; a discontinuity ends the run. A DISCONT
 * flag on audio whose timestamps still line up with the samples counted so far continues the
 * current window: nothing is missing from it. */
GstFlowReturn
canary_window_place_samples (GstCanaryTranscribe *self, GstClockTime pts, gboolean discont_flag,
    guint n)
{
  GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
  GstClockTime expected = GST_CLOCK_TIME_NONE, ts;
  GstFlowReturn flow = GST_FLOW_OK;
  gboolean force = !self->run_active;

  if (self->run_active) {
    expected = gst_audio_stream_align_get_timestamp_at_discont (self->align) +
        gst_util_uint64_scale_int (gst_audio_stream_align_get_samples_since_discont (self->align),
        GST_SECOND, RATE);
    if (!GST_CLOCK_TIME_IS_VALID (pts))
      pts = expected;
    else if (discont_flag && (GstClockTime) ABS (GST_CLOCK_DIFF (expected, pts)) >= ALIGN_THRESHOLD)
      force = TRUE;
  } else if (!GST_CLOCK_TIME_IS_VALID (pts)) {
    pts = trans->segment.format == GST_FORMAT_TIME ? trans->segment.start : 0;
  }

  if (gst_audio_stream_align_process (self->align, force, pts, n, &ts, NULL, NULL)) {
    if (self->run_active)
      flow = canary_window_end_run (self);
    start_run (self, ts);
  }
  return flow;
}

/* Converts to F32 in [-1, 1]. Non-finite samples become 0 and out-of-range ones are clipped:
 * the engine rejects the former, and the latter would overflow its power spectrum. */
GstBuffer *
canary_window_to_float (GstCanaryTranscribe *self, GstBuffer *in, guint n)
{
  GstBuffer *out = gst_buffer_new_allocate (NULL, n * sizeof (gfloat), NULL);
  GstMapInfo im, om;

  gst_buffer_map (in, &im, GST_MAP_READ);
  gst_buffer_map (out, &om, GST_MAP_WRITE);
  gfloat *dst = (gfloat *) om.data;

  if (GST_AUDIO_INFO_FORMAT (&self->info) == GST_AUDIO_FORMAT_S16LE) {
    const guint8 *src = im.data;
    for (guint i = 0; i < n; i++) {
      gint16 v;
      memcpy (&v, src + 2 * i, 2);
      dst[i] = GINT16_FROM_LE (v) / 32768.0f;
    }
  } else {
    const guint8 *src = im.data;
    for (guint i = 0; i < n; i++) {
      guint32 bits;
      gfloat v;
      memcpy (&bits, src + 4 * i, 4);
      bits = GUINT32_FROM_LE (bits);
      memcpy (&v, &bits, 4);
      if (G_UNLIKELY (!isfinite (v))) {
        self->bad_nonfinite++;
        v = 0.0f;
      } else if (G_UNLIKELY (fabsf (v) > 1.0f)) {
        self->bad_clipped++;
        self->bad_peak = MAX (self->bad_peak, fabsf (v));
        v = v > 0 ? 1.0f : -1.0f;
      }
      dst[i] = v;
    }
  }

  gst_buffer_unmap (out, &om);
  gst_buffer_unmap (in, &im);
  return out;
}

GstFlowReturn
canary_window_append_samples (GstCanaryTranscribe *self, GstBuffer *fbuf)
{
  gst_adapter_push (self->adapter, fbuf);
  return cut_windows (self, FALSE);
}
