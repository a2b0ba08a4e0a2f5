/* gst-canary — canarytranscribe's input side, on the streaming thread: converts audio to F32
 * (NaN/infinite and out-of-range samples are repaired, and warned about, per window), places the
 * samples on the output timeline (jitter ignored, short holes filled with silence, long ones
 * ending the run with a GAP, timestamps that go backwards moved after what was queued), cuts
 * each run into overlapping windows, marks windows of digital silence, and queues them for the
 * worker with back-pressure. The text and GAPs queued therefore tile the timeline.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "build-config.h"

#include "canarywindow.h"

#include "canaryoutput.h"
#include "canarysegment.h"

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

/* Invalid samples found in one window. */
typedef struct {
  guint64 nonfinite, clipped;
  gfloat peak;
} Repairs;

/* Repairs the window's samples for the engine: non-finite ones become 0 (the engine rejects
 * them) and out-of-range ones are clipped (they would overflow its power spectrum). Only the
 * samples from @first on, the part of the timeline this window's text covers, are counted: the
 * ones before were counted with the previous window. */
static void
repair_samples (gfloat *s, gsize n, gsize first, Repairs *r)
{
  memset (r, 0, sizeof *r);
  for (gsize i = 0; i < n; i++) {
    gfloat v = s[i];
    if (G_UNLIKELY (!isfinite (v))) {
      s[i] = 0.0f;
      if (i >= first)
        r->nonfinite++;
    } else if (G_UNLIKELY (fabsf (v) > 1.0f)) {
      s[i] = v > 0 ? 1.0f : -1.0f;
      if (i >= first) {
        r->clipped++;
        r->peak = MAX (r->peak, fabsf (v));
      }
    }
  }
}

void
canary_window_repair_quietly (gfloat *s, gsize n)
{
  Repairs r;
  repair_samples (s, n, n, &r);   /* counted and reported when the samples go to the model */
}

/* Tells the user, for the window whose text covers them, that samples had to be repaired, so
 * that nothing they fed in changes silently. */
static void
report_repairs (GstCanaryTranscribe *self, const Repairs *r, GstClockTime pts)
{
  if (r->nonfinite || r->peak > HUGE_PEAK) {
    canary_output_post_warning (self, GST_STREAM_ERROR, GST_STREAM_ERROR_FORMAT,
        g_strdup_printf ("Input audio has invalid samples: %" G_GUINT64_FORMAT " NaN/infinite "
            "replaced by silence, %" G_GUINT64_FORMAT " beyond full scale clipped",
            r->nonfinite, r->clipped),
        g_strdup_printf ("in the audio at %" GST_TIME_FORMAT "; peak magnitude %g "
            "(float audio must be in [-1, 1])", GST_TIME_ARGS (pts), r->peak),
        gst_structure_new ("canarytranscribe/invalid-samples",
            "timestamp", G_TYPE_UINT64, (guint64) pts,
            "non-finite", G_TYPE_UINT64, r->nonfinite,
            "clipped", G_TYPE_UINT64, r->clipped,
            "peak", G_TYPE_DOUBLE, (gdouble) r->peak, NULL));
  } else if (r->clipped) {
    GST_DEBUG_OBJECT (self, "clipped %" G_GUINT64_FORMAT " samples (peak %g)", r->clipped,
        r->peak);
  }
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

/* Queues the run's samples [@from, @to) (in the adapter, from >= window_start) as a job for the
 * worker. Its text covers the part of the timeline no earlier job covered: [max(from,
 * emitted_end), to). Fixed windows overlap and are merged; VAD segments never overlap, and each
 * is transcribed on its own. */
GstFlowReturn
canary_window_submit (GstCanaryTranscribe *self, guint64 from, guint64 to)
{
  GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
  CanaryJob *job = g_new0 (CanaryJob, 1);
  gsize n = to - from;
  guint64 start = MAX (from, self->emitted_end);

  g_assert (from >= self->window_start && to > from);
  job->samples = g_new (gfloat, n);
  job->n_samples = n;
  gst_adapter_copy (self->adapter, job->samples, (from - self->window_start) * sizeof (gfloat),
      n * sizeof (gfloat));
  job->pts = run_time_at (self, start);
  job->duration = run_time_at (self, to) - job->pts;
  job->end_running_time = trans->segment.format == GST_FORMAT_TIME ?
      gst_segment_to_running_time (&trans->segment, GST_FORMAT_TIME, run_time_at (self, to)) :
      GST_CLOCK_TIME_NONE;
  job->new_run = self->next_new_run || self->vad;
  job->merge = self->merge && !self->vad;
  Repairs repairs;
  repair_samples (job->samples, n, start - from, &repairs);
  job->silent = is_digital_silence (job->samples, n);
  self->next_new_run = FALSE;
  self->emitted_end = to;
  self->out_end = run_time_at (self, to);

  GST_LOG_OBJECT (self, "%s of %" G_GSIZE_FORMAT " samples, text for %" GST_TIME_FORMAT
      " + %" GST_TIME_FORMAT "%s", self->vad ? "speech segment" : "window", n,
      GST_TIME_ARGS (job->pts), GST_TIME_ARGS (job->duration),
      job->silent ? " (digital silence)" : "");
  report_repairs (self, &repairs, job->pts);
  return enqueue_job (self, job);
}

/* Queues a GAP for the run's samples [emitted_end, @to): audio that no text will cover. */
GstFlowReturn
canary_window_queue_gap (GstCanaryTranscribe *self, guint64 to)
{
  if (to <= self->emitted_end)
    return GST_FLOW_OK;
  CanaryJob *job = g_new0 (CanaryJob, 1);
  job->pts = run_time_at (self, self->emitted_end);
  job->duration = run_time_at (self, to) - job->pts;
  job->end_running_time = GST_CLOCK_TIME_NONE;
  job->silent = TRUE;
  self->emitted_end = to;
  self->out_end = run_time_at (self, to);
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
    flow = canary_window_submit (self, self->window_start, self->window_start + self->window_samples);
    gst_adapter_flush (self->adapter, self->hop_samples * sizeof (gfloat));
    self->window_start += self->hop_samples;
    avail -= self->hop_samples;
  }
  if (flow == GST_FLOW_OK && final) {
    if (avail > 0 && self->window_start + avail > self->emitted_end)
      flow = canary_window_submit (self, self->window_start, self->window_start + avail);
    gst_adapter_clear (self->adapter);
    self->window_start += avail;
  }
  return flow;
}

/* Queues a GAP for the stretch of timeline from the end of the output to @ts, in order with
 * the text: a job without samples, which the worker turns into an empty result. */
static GstFlowReturn
queue_hole (GstCanaryTranscribe *self, GstClockTime ts)
{
  CanaryJob *job = g_new0 (CanaryJob, 1);

  job->pts = self->out_end;
  job->duration = ts - self->out_end;
  job->end_running_time = GST_CLOCK_TIME_NONE;
  job->silent = TRUE;
  self->out_end = ts;
  GST_DEBUG_OBJECT (self, "hole %" GST_TIME_FORMAT " + %" GST_TIME_FORMAT " between runs",
      GST_TIME_ARGS (job->pts), GST_TIME_ARGS (job->duration));
  return enqueue_job (self, job);
}

/* Starts a run at input time @pts: where the output ends when that is about the same time or
 * later (timestamps that went backwards are shifted from here on, so that nothing overlaps),
 * else at @pts after a GAP for the hole. */
static GstFlowReturn
start_run (GstCanaryTranscribe *self, GstClockTime pts)
{
  GstClockTime t = pts;
  GstFlowReturn flow = GST_FLOW_OK;

  if (GST_CLOCK_TIME_IS_VALID (self->out_end)) {
    GstClockTimeDiff hole = GST_CLOCK_DIFF (self->out_end, t);
    if (hole < (GstClockTimeDiff) ALIGN_THRESHOLD) {
      if (hole != 0)
        GST_DEBUG_OBJECT (self, "run at %" GST_TIME_FORMAT " moved to the output's end %"
            GST_TIME_FORMAT, GST_TIME_ARGS (t), GST_TIME_ARGS (self->out_end));
      self->ts_offset -= hole;
      t = self->out_end;
    } else {
      flow = queue_hole (self, t);
    }
  }

  GST_DEBUG_OBJECT (self, "new run at %" GST_TIME_FORMAT, GST_TIME_ARGS (t));
  gst_adapter_clear (self->adapter);
  self->run_active = TRUE;
  self->run_base = t;
  self->window_start = 0;
  self->emitted_end = 0;
  self->next_new_run = TRUE;
  if (self->vad)
    canary_segment_start_run (self);
  return flow;
}

/* Queues what is left of the current run; the next samples start a new one. */
GstFlowReturn
canary_window_end_run (GstCanaryTranscribe *self)
{
  GstFlowReturn flow = GST_FLOW_OK;

  if (self->run_active)
    flow = self->vad ? canary_segment_cut (self, TRUE) : cut_windows (self, TRUE);
  self->run_active = FALSE;
  return flow;
}

void
canary_window_reset_timeline (GstCanaryTranscribe *self)
{
  self->out_end = GST_CLOCK_TIME_NONE;
  self->ts_offset = 0;
}

/* Samples of the current run so far. */
guint64
canary_window_run_samples (GstCanaryTranscribe *self)
{
  return self->window_start + gst_adapter_available (self->adapter) / sizeof (gfloat);
}

static GstFlowReturn
append_silence (GstCanaryTranscribe *self, guint64 n)
{
  GstBuffer *zeros = gst_buffer_new_allocate (NULL, n * sizeof (gfloat), NULL);

  gst_buffer_memset (zeros, 0, 0, n * sizeof (gfloat));
  return canary_window_append_samples (self, zeros);
}

/* Places @n samples stamped @pts (input time) on the output timeline, where the sample count
 * of the run, not the timestamps, says where each sample is:
 * - within ALIGN_THRESHOLD of the count: jitter, the run goes on (a DISCONT flag on such a
 *   buffer changes nothing: no audio is missing);
 * - a hole shorter than MAX_FILLED_HOLE: filled with silence, the window stays whole;
 * - a longer hole (with or without DISCONT): the run ends, a GAP covers the hole, a new run
 *   starts at @pts;
 * - earlier than the count by less than MAX_FILLED_HOLE (a live source resuming a little
 *   before where it stopped): the run goes on, the samples after the ones before them;
 * - earlier by more (timestamps reset): the run ends and the next starts where the output
 *   ends, every later timestamp shifted by the same amount until a forward jump takes it up.
 * So the text and GAPs tile the timeline whatever the timestamps do. */
GstFlowReturn
canary_window_place_samples (GstCanaryTranscribe *self, GstClockTime pts, guint n)
{
  GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
  GstClockTime t;

  if (GST_CLOCK_TIME_IS_VALID (pts)) {
    GstClockTimeDiff st = (GstClockTimeDiff) pts + self->ts_offset;
    t = st > 0 ? (GstClockTime) st : 0;
  } else {
    t = GST_CLOCK_TIME_NONE;
  }

  if (!self->run_active) {
    if (!GST_CLOCK_TIME_IS_VALID (t))
      t = GST_CLOCK_TIME_IS_VALID (self->out_end) ? self->out_end :
          trans->segment.format == GST_FORMAT_TIME ? trans->segment.start : 0;
    return start_run (self, t);
  }
  if (!GST_CLOCK_TIME_IS_VALID (t))
    return GST_FLOW_OK;

  GstClockTime expected = run_time_at (self, canary_window_run_samples (self));
  GstClockTimeDiff diff = GST_CLOCK_DIFF (expected, t);

  if (diff >= (GstClockTimeDiff) ALIGN_THRESHOLD && self->ts_offset > 0) {
    /* the input jumps ahead after it had gone backwards: take the shift back first */
    GstClockTimeDiff take = MIN (self->ts_offset, diff);
    self->ts_offset -= take;
    diff -= take;
    t -= take;
  }
  if (diff >= (GstClockTimeDiff) MAX_FILLED_HOLE) {
    GST_DEBUG_OBJECT (self, "%" GST_STIME_FORMAT " hole at %" GST_TIME_FORMAT ": new run",
        GST_STIME_ARGS (diff), GST_TIME_ARGS (expected));
    GstFlowReturn flow = canary_window_end_run (self);
    return flow == GST_FLOW_OK ? start_run (self, t) : flow;
  }
  if (diff >= (GstClockTimeDiff) ALIGN_THRESHOLD) {
    guint64 fill = gst_util_uint64_scale_round (diff, RATE, GST_SECOND);
    GST_DEBUG_OBJECT (self, "%" GST_STIME_FORMAT " hole at %" GST_TIME_FORMAT ": %"
        G_GUINT64_FORMAT " samples of silence", GST_STIME_ARGS (diff), GST_TIME_ARGS (expected),
        fill);
    return append_silence (self, fill);
  }
  if (diff <= -(GstClockTimeDiff) MAX_FILLED_HOLE) {
    GST_DEBUG_OBJECT (self, "timestamps went back %" GST_STIME_FORMAT " at %" GST_TIME_FORMAT
        ": new run", GST_STIME_ARGS (-diff), GST_TIME_ARGS (expected));
    GstFlowReturn flow = canary_window_end_run (self);
    return flow == GST_FLOW_OK ? start_run (self, t) : flow;
  }
  if (diff <= -(GstClockTimeDiff) ALIGN_THRESHOLD)
    GST_LOG_OBJECT (self, "timestamps %" GST_STIME_FORMAT " behind the samples at %"
        GST_TIME_FORMAT ", going on", GST_STIME_ARGS (-diff), GST_TIME_ARGS (expected));
  return GST_FLOW_OK;
}

/* Converts to F32. Float input is copied as it is: the samples are repaired when a window is
 * cut (repair_samples), so that the warning names the window they are in. */
GstBuffer *
canary_window_to_float (GstCanaryTranscribe *self, GstBuffer *in, guint n)
{
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
  if (GST_AUDIO_INFO_FORMAT (&self->info) != GST_AUDIO_FORMAT_S16LE)
    return gst_buffer_copy_region (in, GST_BUFFER_COPY_MEMORY, 0, n * sizeof (gfloat));
#endif

  GstBuffer *out = gst_buffer_new_allocate (NULL, n * sizeof (gfloat), NULL);
  GstMapInfo im, om;

  gst_buffer_map (in, &im, GST_MAP_READ);
  gst_buffer_map (out, &om, GST_MAP_WRITE);
  gfloat *dst = (gfloat *) om.data;
  if (GST_AUDIO_INFO_FORMAT (&self->info) == GST_AUDIO_FORMAT_S16LE) {
    for (guint i = 0; i < n; i++) {
      gint16 v;
      memcpy (&v, im.data + 2 * i, 2);
      dst[i] = GINT16_FROM_LE (v) / 32768.0f;
    }
  } else {
    for (guint i = 0; i < n; i++) {
      guint32 bits;
      memcpy (&bits, im.data + 4 * i, 4);
      bits = GUINT32_FROM_LE (bits);
      memcpy (dst + i, &bits, 4);
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
  return self->vad ? canary_segment_cut (self, FALSE) : cut_windows (self, FALSE);
}
