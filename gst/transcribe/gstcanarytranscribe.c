/* gst-canary — canarytranscribe: speech to text with NVIDIA Canary models.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * This file is the element itself: its documentation, properties, caps, queries, events and
 * state changes, and the GstBaseTransform entry points that take audio in and hand text out.
 * The work behind them is in canarywindow.c (audio to windows), canaryworker.c (the inference
 * thread) and canaryoutput.c (results to buffers and messages); gstcanarytranscribe-private.h
 * holds what they share.
 */

/**
 * SECTION:element-canarytranscribe
 * @title: canarytranscribe
 *
 * Transcribes (or translates) speech with an NVIDIA Canary model read straight from its `.nemo`
 * file. Input is 16 kHz mono audio (put `audioconvert ! audioresample` in front); output is UTF-8
 * text, one buffer per stretch of speech (or per window of audio), with PTS and DURATION in the
 * input's timeline so that `webvttenc`, `srtenc`, `textoverlay` and `matroskamux` can take it as
 * it is.
 *
 * ## Segmentation
 *
 * With `segmentation=vad` (what `auto`, the default, chooses when the Silero VAD weights load:
 * they install with the plugin after `tools/fetch-vad.sh`, or `vad-model-path` names them), a
 * voice activity detector hears every 32 ms of audio and the model only ever receives speech: a
 * segment opens where speech starts and closes after `min-silence` (500 ms) of non-speech, or when
 * it reaches `window-length`, where it is split at its quietest moment. Each segment gets
 * `speech-pad` (200 ms) of audio on both sides, is transcribed on its own, and gives one text
 * buffer whose PTS and DURATION cover it. Everything between segments (silence, room noise,
 * music, keyboard clicks) is never sent to the model and comes out as GAP events, at least one
 * per second of it, so the text of a sentence comes min-silence plus the model's time after the
 * speaker stops, and noise never turns into invented text. Speech shorter than `min-speech` is
 * dropped. Without the weights `auto` cuts fixed windows (below) and posts one warning;
 * `segmentation=vad` is then an error. `active-segmentation` says which is in use. See
 * docs/vad.md.
 *
 * ## Windows
 *
 * With `segmentation=fixed` (or without VAD weights), audio is cut into windows of
 * `window-length`; consecutive windows share `overlap` of audio, so a new window starts every
 * `window-length - overlap`. Window times are counted in samples since the last discontinuity,
 * never taken from a wall clock. Each window's text buffer covers the part of the timeline that
 * the previous window did not: the first window covers [0, window-length), the next ones [end of
 * previous window, end of this window). The buffers (and GAP events) therefore tile the timeline
 * without holes or overlaps.
 *
 * With overlap > 0 the words spoken in the shared audio come out of both windows; the element
 * drops, from the start of the new window's text, the longest run of words that repeats the end of
 * the previous window's text (compared without case and punctuation, tolerating the words cut at
 * either window's edge and a word spelt two ways; see canarytextmerge.c).
 * Words that do not match are always kept, so nothing is lost when the model hears the shared audio
 * differently twice.
 *
 * At EOS (and before a new SEGMENT, a GAP without duration, or a long gap in the timestamps) the
 * last, partial window is transcribed. A window whose text is empty, or that holds only digital silence
 * (every sample below one 16-bit step; it is not sent to the model, which could only invent text
 * there), produces a GAP event instead of a buffer. Incoming GAP events with a duration are treated
 * as digital silence.
 *
 * ## Timestamps
 *
 * Where a sample lies is counted in samples since the start of its run; input timestamps are
 * compared with that count, and the buffers and GAP events tile the timeline in every case:
 *
 * - a difference under 40 ms is jitter and changes nothing (a DISCONT flag on such a buffer
 *   neither: no audio is missing);
 * - a hole shorter than 1 s (a leaky queue, a capture glitch) is filled with silence, as
 *   `audiobuffersplit`'s gapless mode does, and the window stays whole: the model hears a pause;
 * - a hole of 1 s or more, with or without DISCONT, ends the run: its partial window is
 *   transcribed, a GAP event covers the hole, and a new run starts at the new timestamp;
 * - timestamps less than 1 s earlier than the count (a live source resumed after PAUSED steps
 *   back a few tens of ms) continue the run: the samples come after the ones before them;
 * - timestamps 1 s or more earlier (a reset) end the run, and the next starts where the output
 *   ends, later timestamps shifted by the same amount until a forward jump takes the shift back;
 * - a new SEGMENT (or a flush) starts a new timeline: no GAP for the distance from the old one.
 *
 * ## Threading and latency
 *
 * A worker thread loads the model and runs the engine; the streaming thread only cuts windows
 * and queues them. The load starts at NULL→READY (announced by `progress` messages with code
 * `loading`: START, then COMPLETE or ERROR), so READY is reached at once and the LATENCY query
 * works there; READY→PAUSED waits for the load to end and fails when it failed, after the
 * load's ERROR has been posted, so the application always hears the real reason first and no
 * data ever flows into an element without a model. READY→NULL during a load waits for it to end
 * (a load reads a regular file or directory, so it does). Non-live input waits when two windows are queued (back-pressure). Live input never
 * waits before 60 s of audio are queued; when the text for a window comes out later than
 * `latency` after the window's end, the element posts a warning whose details structure
 * `canarytranscribe/behind` says how far behind it is. No audio is ever dropped by the element.
 * With a live upstream the LATENCY query adds `window-length + latency`.
 *
 * ## Messages
 *
 * With `post-messages` (default), each text buffer is announced by an element message whose
 * structure is named `canarytranscribe`:
 *
 * | field | type | meaning |
 * |---|---|---|
 * | `text` | string | the text of the buffer |
 * | `timestamp` | guint64 | the buffer's PTS (ns) |
 * | `stream-time` | guint64 | PTS as stream time |
 * | `running-time` | guint64 | PTS as running time |
 * | `duration` | guint64 | the buffer's DURATION (ns) |
 * | `language` | string | language of the text (the target language when translating) |
 * | `final` | boolean | always TRUE: the element emits no partial hypotheses |
 * | `processing-time` | guint64 | wall-clock time the engine spent on the window (ns) |
 *
 * Warnings carry a details structure: `canarytranscribe/behind` (`behind`, `latency`,
 * `processing-time`, `window-length` as guint64 ns, `queued-windows` as guint) when live input
 * outruns the model, `canarytranscribe/invalid-samples` (`timestamp` guint64, `non-finite`,
 * `clipped` guint64, `peak` double) when input contained NaN/infinite samples (replaced by 0) or
 * samples far beyond full scale (clipped to [-1, 1]); its `timestamp` is the start of the text
 * of the window that held them. `canarytranscribe/cpu-fallback` (`reason` string) when
 * device=auto runs on the CPU because CUDA is not usable (posted once per model load).
 *
 * ## Errors
 *
 * - no model-path and no bundled default model, or a model path that does not exist or cannot be
 *   read: RESOURCE/NOT_FOUND (or OPEN_READ) and a failed NULL→READY;
 * - a model path that is neither a regular file nor a directory (a FIFO, /dev/zero, a socket):
 *   RESOURCE/OPEN_READ naming what it is, and a failed NULL→READY; it is never opened;
 * - a file that is not a Canary model (corrupt, truncated, foreign): STREAM/WRONG_TYPE (or
 *   RESOURCE/NOT_FOUND for a missing archive member) from the loading thread, naming the file;
 *   READY→PAUSED then fails, every time, after that error;
 * - overlap not shorter than window-length: LIBRARY/SETTINGS and a failed READY→PAUSED;
 * - a language-code/target-language the model does not know, or a target language with
 *   task=transcribe: LIBRARY/SETTINGS once the model is loaded, and a failed READY→PAUSED (and
 *   again for any window transcribed with such settings, since they may change while playing);
 * - device=cuda without a usable GPU: RESOURCE/FAILED; device=auto falls back to the CPU with a
 *   WARNING (RESOURCE/FAILED, details `canarytranscribe/cpu-fallback`) that gives the reason;
 * - caps the sink refuses (44.1 kHz or stereo audio from a pad linked without `audioconvert !
 *   audioresample`): CORE/NEGOTIATION naming the converter that is missing, before upstream's
 *   generic not-negotiated error.
 *
 * ## Example launch lines
 *
 * |[
 * gst-launch-1.0 pulsesrc ! audioconvert ! audioresample ! canarytranscribe ! fdsink
 * gst-launch-1.0 filesrc location=talk.wav ! decodebin ! audioconvert ! audioresample ! \
 *     canarytranscribe model-path=canary-180m-flash.nemo ! webvttenc ! filesink location=talk.vtt
 * gst-launch-1.0 -m filesrc location=talk.wav ! decodebin ! audioconvert ! audioresample ! \
 *     canarytranscribe ! fakesink
 * ]|
 */

#include "build-config.h"

#include "gstcanarytranscribe-private.h"
#include "canaryoutput.h"
#include "canarysegment.h"
#include "canarywindow.h"
#include "canaryworker.h"

GST_DEBUG_CATEGORY (canary_transcribe_debug);

#define DEFAULT_DEVICE GST_CANARY_TRANSCRIBE_DEVICE_AUTO
#define DEFAULT_PRECISION GST_CANARY_TRANSCRIBE_PRECISION_AUTO
#define DEFAULT_GPU_DEVICE_ID 0
#define DEFAULT_WINDOW_MS 10000
#define MIN_WINDOW_MS 1000
#define MAX_WINDOW_MS 40000     /* Canary models are trained on at most ~40 s of audio */
#define DEFAULT_OVERLAP_MS 1000
#define DEFAULT_LANGUAGE "en"
#define DEFAULT_TASK GST_CANARY_TRANSCRIBE_TASK_TRANSCRIBE
#define DEFAULT_PNC TRUE
#define DEFAULT_BEAM_SIZE CANARY_BEAM_FROM_MODEL  /* 0: the model config's beam size */
#define MAX_BEAM_SIZE 16
#define DEFAULT_LATENCY_MS 1000
#define DEFAULT_LATENESS_MS 0
#define DEFAULT_POST_MESSAGES TRUE
#define DEFAULT_SEGMENTATION GST_CANARY_TRANSCRIBE_SEGMENTATION_AUTO
#define DEFAULT_VAD_THRESHOLD 0.5f
#define DEFAULT_MIN_SILENCE_MS 500
#define DEFAULT_SPEECH_PAD_MS 200
#define DEFAULT_MIN_SPEECH_MS 250

enum {
  PROP_0,
  PROP_MODEL_PATH,
  PROP_DEVICE,
  PROP_PRECISION,
  PROP_GPU_DEVICE_ID,
  PROP_WINDOW_LENGTH,
  PROP_OVERLAP,
  PROP_LANGUAGE_CODE,
  PROP_TARGET_LANGUAGE,
  PROP_TASK,
  PROP_PNC,
  PROP_BEAM_SIZE,
  PROP_LATENCY,
  PROP_LATENESS,
  PROP_POST_MESSAGES,
  PROP_SEGMENTATION,
  PROP_VAD_MODEL_PATH,
  PROP_VAD_THRESHOLD,
  PROP_MIN_SILENCE,
  PROP_SPEECH_PAD,
  PROP_MIN_SPEECH,
  PROP_ACTIVE_SEGMENTATION,
};

#define gst_canary_transcribe_parent_class parent_class
G_DEFINE_TYPE (GstCanaryTranscribe, gst_canary_transcribe, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE (canarytranscribe, "canarytranscribe", GST_RANK_NONE,
    GST_TYPE_CANARY_TRANSCRIBE);

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK,
    GST_PAD_ALWAYS,
    GST_STATIC_CAPS ("audio/x-raw, format = (string) { F32LE, S16LE }, rate = (int) 16000, "
        "channels = (int) 1, layout = (string) interleaved"));

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC,
    GST_PAD_ALWAYS,
    GST_STATIC_CAPS ("text/x-raw, format = (string) utf8"));

/* ---------------------------------------------------------------------------------------------
 * Enum types
 */

GType
gst_canary_transcribe_device_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CANARY_TRANSCRIBE_DEVICE_AUTO, "CUDA GPU if the engine has one, else the CPU", "auto"},
    {GST_CANARY_TRANSCRIBE_DEVICE_CUDA, "CUDA GPU (error if none is usable)", "cuda"},
    {GST_CANARY_TRANSCRIBE_DEVICE_CPU, "CPU", "cpu"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstCanaryTranscribeDevice", values));
  return type;
}

GType
gst_canary_transcribe_precision_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CANARY_TRANSCRIBE_PRECISION_AUTO, "FP16 on CUDA; on the CPU FP16 for models larger than its cache, else FP32", "auto"},
    {GST_CANARY_TRANSCRIBE_PRECISION_FP16, "FP16 weights, FP32 sums (on CUDA FP16 activations too)", "fp16"},
    {GST_CANARY_TRANSCRIBE_PRECISION_FP32, "FP32 throughout", "fp32"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstCanaryTranscribePrecision", values));
  return type;
}

GType
gst_canary_transcribe_task_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CANARY_TRANSCRIBE_TASK_TRANSCRIBE, "Speech to text in the spoken language", "transcribe"},
    {GST_CANARY_TRANSCRIBE_TASK_TRANSLATE, "Speech to text in target-language", "translate"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstCanaryTranscribeTask", values));
  return type;
}

GType
gst_canary_transcribe_segmentation_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CANARY_TRANSCRIBE_SEGMENTATION_AUTO,
        "VAD segments when the VAD weights are found, else fixed windows (with a warning)", "auto"},
    {GST_CANARY_TRANSCRIBE_SEGMENTATION_FIXED,
        "Fixed windows of window-length sharing overlap", "fixed"},
    {GST_CANARY_TRANSCRIBE_SEGMENTATION_VAD,
        "Segments of speech cut at pauses by the VAD (error without its weights)", "vad"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstCanaryTranscribeSegmentation", values));
  return type;
}

/* ---------------------------------------------------------------------------------------------
 * Streaming: audio in, text out
 */

static void
query_upstream_live (GstCanaryTranscribe *self)
{
  GstQuery *q = gst_query_new_latency ();
  gboolean live = FALSE;

  if (gst_pad_peer_query (GST_BASE_TRANSFORM_SINK_PAD (self), q))
    gst_query_parse_latency (q, &live, NULL, NULL);
  gst_query_unref (q);
  g_atomic_int_set (&self->live, live);
  self->live_known = TRUE;
  GST_DEBUG_OBJECT (self, "upstream is %slive", live ? "" : "not ");
}

static GstFlowReturn
gst_canary_transcribe_submit_input_buffer (GstBaseTransform *trans, gboolean is_discont,
    GstBuffer *buf)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (trans);
  GstFlowReturn flow = canary_worker_flow (self);
  gint bpf = GST_AUDIO_INFO_BPF (&self->info);

  if (flow != GST_FLOW_OK)
    goto out;
  if (!gst_base_transform_reconfigure (trans) || bpf == 0) {
    flow = GST_PAD_IS_FLUSHING (GST_BASE_TRANSFORM_SRC_PAD (trans)) ?
        GST_FLOW_FLUSHING : GST_FLOW_NOT_NEGOTIATED;
    goto out;
  }

  /* Where the samples go is decided by their timestamps against the samples counted so far
   * (canary_window_place_samples); a DISCONT flag alone says nothing the timestamps do not. */
  if (trans->segment.format == GST_FORMAT_TIME) {
    buf = gst_audio_buffer_clip (buf, &trans->segment, RATE, bpf);
    if (!buf)
      return GST_FLOW_OK;
  }
  if (!self->live_known)
    query_upstream_live (self);

  guint n = gst_buffer_get_size (buf) / bpf;
  if (n == 0)
    goto out;

  flow = canary_window_place_samples (self, GST_BUFFER_PTS (buf), n);
  if (flow == GST_FLOW_OK)
    flow = canary_window_append_samples (self, canary_window_to_float (self, buf, n));

out:
  gst_buffer_unref (buf);
  return flow;
}

static GstFlowReturn
gst_canary_transcribe_generate_output (GstBaseTransform *trans, GstBuffer **outbuf)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (trans);
  CanaryResult *res;

  *outbuf = NULL;
  while ((res = canary_output_pop_result (self))) {
    *outbuf = canary_output_result_to_buffer (self, res);
    canary_job_result_free (res);
    if (*outbuf)
      return GST_FLOW_OK;
  }
  return canary_worker_flow (self);
}

/* ---------------------------------------------------------------------------------------------
 * Events
 */

/* Waits until the worker has finished every queued window, then pushes the results. */
static GstFlowReturn
drain (GstCanaryTranscribe *self)
{
  GstFlowReturn flow = canary_window_end_run (self);

  if (flow != GST_FLOW_OK)
    return flow;

  g_mutex_lock (&self->lock);
  while (!self->flushing && self->worker_flow == GST_FLOW_OK
      && (!g_queue_is_empty (&self->jobs) || self->busy))
    g_cond_wait (&self->cond, &self->lock);
  g_mutex_unlock (&self->lock);

  flow = canary_output_push_ready_results (self);
  return flow == GST_FLOW_OK ? canary_worker_flow (self) : flow;
}

/* A GAP with a duration is digital silence: it fills the windows like audio would, so windows
 * keep their regular times, and comes out as this element's own text or GAP events. */
static gboolean
handle_gap (GstCanaryTranscribe *self, GstEvent *event)
{
  GstClockTime ts, duration;
  GstFlowReturn flow = GST_FLOW_OK;

  gst_event_parse_gap (event, &ts, &duration);
  if (!GST_CLOCK_TIME_IS_VALID (ts) || !GST_CLOCK_TIME_IS_VALID (duration)
      || GST_AUDIO_INFO_BPF (&self->info) == 0) {
    drain (self);
    return FALSE;
  }

  guint64 total = gst_util_uint64_scale_round (duration, RATE, GST_SECOND);
  guint64 done = 0;
  GST_DEBUG_OBJECT (self, "GAP %" GST_TIME_FORMAT " + %" GST_TIME_FORMAT " as %" G_GUINT64_FORMAT
      " samples of silence", GST_TIME_ARGS (ts), GST_TIME_ARGS (duration), total);
  /* In window-sized pieces, so that an hour-long gap never sits in memory at once. */
  while (flow == GST_FLOW_OK && done < total) {
    guint n = MIN (total - done, self->window_samples);
    GstClockTime pts = ts + gst_util_uint64_scale_int (done, GST_SECOND, RATE);
    flow = canary_window_place_samples (self, pts, n);
    if (flow == GST_FLOW_OK) {
      GstBuffer *zeros = gst_buffer_new_allocate (NULL, n * sizeof (gfloat), NULL);
      gst_buffer_memset (zeros, 0, 0, n * sizeof (gfloat));
      flow = canary_window_append_samples (self, zeros);
    }
    done += n;
  }
  if (flow == GST_FLOW_OK)
    canary_output_push_ready_results (self);
  return TRUE;
}

static void
reset_stream (GstCanaryTranscribe *self)
{
  if (self->adapter)
    gst_adapter_clear (self->adapter);
  self->run_active = FALSE;
  canary_window_reset_timeline (self);
  self->live_known = FALSE;
  self->backlog_warned = FALSE;
}

static gboolean
gst_canary_transcribe_sink_event (GstBaseTransform *trans, GstEvent *event)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (trans);

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_FLUSH_START:
      /* Not on the streaming thread: only wake it up and stop the engine. */
      g_mutex_lock (&self->lock);
      self->flushing = TRUE;
      canary_worker_cancel_pending_locked (self);
      g_mutex_unlock (&self->lock);
      break;
    case GST_EVENT_FLUSH_STOP:
      reset_stream (self);
      g_mutex_lock (&self->lock);
      self->flushing = FALSE;
      canary_worker_clear_queues_locked (self);
      g_mutex_unlock (&self->lock);
      break;
    case GST_EVENT_EOS:
      drain (self);
      break;
    case GST_EVENT_SEGMENT:{
      /* Text still pending belongs to the old segment: push it before the new one goes out.
       * A repeated, identical segment changes nothing and must not cut a window short. */
      const GstSegment *segment;
      gst_event_parse_segment (event, &segment);
      if (!trans->have_segment || !gst_segment_is_equal (&trans->segment, segment)) {
        drain (self);
        /* a new timeline: no GAP for the distance from the old one */
        canary_window_reset_timeline (self);
      }
      break;
    }
    case GST_EVENT_GAP:
      if (handle_gap (self, event)) {
        gst_event_unref (event);
        return TRUE;
      }
      break;
    default:
      break;
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

/* ---------------------------------------------------------------------------------------------
 * Caps, queries, start/stop
 */

static GstCaps *
gst_canary_transcribe_transform_caps (GstBaseTransform *trans, GstPadDirection direction,
    GstCaps *caps, GstCaps *filter)
{
  GstCaps *other = direction == GST_PAD_SINK ?
      gst_static_pad_template_get_caps (&src_template) :
      gst_static_pad_template_get_caps (&sink_template);

  if (filter) {
    GstCaps *tmp = gst_caps_intersect_full (filter, other, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref (other);
    other = tmp;
  }
  return other;
}

static gboolean
gst_canary_transcribe_set_caps (GstBaseTransform *trans, GstCaps *incaps, GstCaps *outcaps)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (trans);
  GstAudioInfo info;

  if (!gst_audio_info_from_caps (&info, incaps) || GST_AUDIO_INFO_RATE (&info) != RATE
      || GST_AUDIO_INFO_CHANNELS (&info) != 1) {
    GST_WARNING_OBJECT (self, "unusable caps %" GST_PTR_FORMAT, incaps);
    return FALSE;
  }
  self->info = info;
  GST_DEBUG_OBJECT (self, "input %s", gst_audio_format_to_string (GST_AUDIO_INFO_FORMAT (&info)));
  return TRUE;
}

/* Caps the sink pad will refuse: the pad's accept-caps check turns the CAPS event down before
 * the element sees it, and upstream then fails with a generic "not-negotiated" that does not
 * say what is wrong. A probe sees the event first, so the element can post an error naming the
 * caps it needs and the converter that is missing; the event then goes on to be refused. */
static GstPadProbeReturn
sink_caps_probe (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  GstCanaryTranscribe *self = user_data;
  GstEvent *event = GST_PAD_PROBE_INFO_EVENT (info);
  GstCaps *caps, *accepted;
  GstAudioInfo ai;

  if (GST_EVENT_TYPE (event) != GST_EVENT_CAPS)
    return GST_PAD_PROBE_OK;
  gst_event_parse_caps (event, &caps);
  accepted = gst_static_pad_template_get_caps (&sink_template);
  gboolean ok = gst_caps_is_subset (caps, accepted);
  gst_caps_unref (accepted);
  if (ok)
    return GST_PAD_PROBE_OK;

  GString *missing = g_string_new (NULL);
  if (gst_audio_info_from_caps (&ai, caps)) {
    if (GST_AUDIO_INFO_CHANNELS (&ai) != 1 || (GST_AUDIO_INFO_FORMAT (&ai) != GST_AUDIO_FORMAT_S16LE
            && GST_AUDIO_INFO_FORMAT (&ai) != GST_AUDIO_FORMAT_F32LE)
        || GST_AUDIO_INFO_LAYOUT (&ai) != GST_AUDIO_LAYOUT_INTERLEAVED)
      g_string_append (missing, "audioconvert");
    if (GST_AUDIO_INFO_RATE (&ai) != RATE)
      g_string_append_printf (missing, "%saudioresample", missing->len ? " ! " : "");
  } else {
    g_string_append (missing, "a decoder and audioconvert ! audioresample");
  }
  gchar *got = gst_caps_to_string (caps);
  GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
      ("canarytranscribe needs 16 kHz mono audio (S16LE or F32LE); put %s in front of it",
          missing->str),
      ("upstream offered %s; the sink pad accepts audio/x-raw, format={F32LE, S16LE}, "
          "rate=16000, channels=1, layout=interleaved", got));
  g_free (got);
  g_string_free (missing, TRUE);
  return GST_PAD_PROBE_OK;
}

/* Live upstream: the text of a sample comes out after the rest of its window has arrived and
 * the model has run, so min and max grow by window-length + latency. Non-live upstream: the
 * answer is upstream's. Needs neither caps nor the model, so transcriberbin can ask early. */
static gboolean
handle_latency_query (GstCanaryTranscribe *self, GstQuery *query)
{
  gboolean live = FALSE;
  GstClockTime min = 0, max = GST_CLOCK_TIME_NONE, ours;

  if (gst_pad_peer_query (GST_BASE_TRANSFORM_SINK_PAD (self), query))
    gst_query_parse_latency (query, &live, &min, &max);
  g_atomic_int_set (&self->live, live);

  if (live) {
    GST_OBJECT_LOCK (self);
    ours = (self->window_ms + (GstClockTime) self->latency_ms) * GST_MSECOND;
    GST_OBJECT_UNLOCK (self);
    min += ours;
    if (GST_CLOCK_TIME_IS_VALID (max))
      max += ours;
  }
  GST_DEBUG_OBJECT (self, "latency: live %d, min %" GST_TIME_FORMAT ", max %" GST_TIME_FORMAT,
      live, GST_TIME_ARGS (min), GST_TIME_ARGS (max));
  gst_query_set_latency (query, live, min, max);
  return TRUE;
}

static gboolean
gst_canary_transcribe_query (GstBaseTransform *trans, GstPadDirection direction,
    GstQuery *query)
{
  if (direction == GST_PAD_SRC && GST_QUERY_TYPE (query) == GST_QUERY_LATENCY)
    return handle_latency_query (GST_CANARY_TRANSCRIBE (trans), query);
  return GST_BASE_TRANSFORM_CLASS (parent_class)->query (trans, direction, query);
}

/* Checks the window settings and takes them for the stream. */
static gboolean
gst_canary_transcribe_start (GstBaseTransform *trans)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (trans);
  guint window_ms, overlap_ms;

  GST_OBJECT_LOCK (self);
  window_ms = self->window_ms;
  overlap_ms = self->overlap_ms;
  GST_OBJECT_UNLOCK (self);

  if (overlap_ms >= window_ms) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS,
        ("overlap (%u ms) must be shorter than window-length (%u ms)", overlap_ms, window_ms),
        (NULL));
    return FALSE;
  }

  self->window_samples = window_ms * (RATE / 1000);
  self->hop_samples = (window_ms - overlap_ms) * (RATE / 1000);
  self->merge = overlap_ms > 0;
  if (!canary_segment_setup (self))
    return FALSE;
  gst_audio_info_init (&self->info);
  self->adapter = gst_adapter_new ();
  reset_stream (self);

  g_mutex_lock (&self->lock);
  self->flushing = FALSE;
  canary_worker_clear_queues_locked (self);
  if (self->load_state != LOAD_FAILED)
    self->worker_flow = GST_FLOW_OK;
  g_mutex_unlock (&self->lock);
  return TRUE;
}

static gboolean
gst_canary_transcribe_stop (GstBaseTransform *trans)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (trans);

  g_mutex_lock (&self->lock);
  canary_worker_cancel_pending_locked (self);
  g_mutex_unlock (&self->lock);

  g_clear_object (&self->adapter);
  canary_segment_teardown (self);
  gst_audio_info_init (&self->info);
  return TRUE;
}

/* ---------------------------------------------------------------------------------------------
 * State changes
 */

static gboolean
model_settings_changed (GstCanaryTranscribe *self)
{
  gboolean changed;

  GST_OBJECT_LOCK (self);
  changed = self->model_settings_changed;
  GST_OBJECT_UNLOCK (self);
  return changed;
}

static GstStateChangeReturn
gst_canary_transcribe_change_state (GstElement *element, GstStateChange transition)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (element);
  GstStateChangeReturn ret;

  switch (transition) {
    case GST_STATE_CHANGE_NULL_TO_READY:
      if (!canary_worker_start (self))
        return GST_STATE_CHANGE_FAILURE;
      break;
    case GST_STATE_CHANGE_READY_TO_PAUSED:{
      /* Model properties changed in READY: load again. */
      if (model_settings_changed (self)) {
        canary_worker_stop (self);
        if (!canary_worker_start (self))
          return GST_STATE_CHANGE_FAILURE;
      }
      /* The model must be usable before any data flows: wait for the load here, so that a
       * model that cannot load fails this state change every time, after its error. */
      if (!canary_worker_wait_loaded (self)) {
        GST_DEBUG_OBJECT (self, "the model failed to load, refusing to start");
        return GST_STATE_CHANGE_FAILURE;
      }
      break;
    }
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      /* Release a streaming thread waiting for queue space or a drain before the pads are
       * deactivated (which waits for that thread). */
      g_mutex_lock (&self->lock);
      self->flushing = TRUE;
      canary_worker_cancel_pending_locked (self);
      g_mutex_unlock (&self->lock);
      break;
    default:
      break;
  }

  ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);

  switch (transition) {
    case GST_STATE_CHANGE_NULL_TO_READY:
      if (ret == GST_STATE_CHANGE_FAILURE)
        canary_worker_stop (self);
      break;
    case GST_STATE_CHANGE_READY_TO_NULL:
      canary_worker_stop (self);
      break;
    default:
      break;
  }
  return ret;
}

/* ---------------------------------------------------------------------------------------------
 * Properties
 */

/* MUTABLE_READY properties are refused past READY, where they would change a model or windows
 * in use. Called with the object lock. */
static gboolean
can_change_locked (GstCanaryTranscribe *self, GParamSpec *pspec)
{
  if (GST_STATE (self) <= GST_STATE_READY && GST_STATE_PENDING (self) <= GST_STATE_READY)
    return TRUE;
  GST_WARNING_OBJECT (self, "%s can only be changed in the NULL or READY state; ignored",
      pspec->name);
  return FALSE;
}

static void
gst_canary_transcribe_set_property (GObject *object, guint prop_id, const GValue *value,
    GParamSpec *pspec)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (object);
  gboolean latency_changed = FALSE;

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL_PATH:
      if (can_change_locked (self, pspec)) {
        g_free (self->model_path);
        self->model_path = g_value_dup_string (value);
        self->model_settings_changed = TRUE;
      }
      break;
    case PROP_DEVICE:
      if (can_change_locked (self, pspec)) {
        self->device = g_value_get_enum (value);
        self->model_settings_changed = TRUE;
      }
      break;
    case PROP_PRECISION:
      if (can_change_locked (self, pspec)) {
        self->precision = g_value_get_enum (value);
        self->model_settings_changed = TRUE;
      }
      break;
    case PROP_GPU_DEVICE_ID:
      if (can_change_locked (self, pspec)) {
        self->gpu_device_id = g_value_get_int (value);
        self->model_settings_changed = TRUE;
      }
      break;
    case PROP_WINDOW_LENGTH:
      if (can_change_locked (self, pspec))
        self->window_ms = g_value_get_uint (value);
      break;
    case PROP_OVERLAP:
      if (can_change_locked (self, pspec))
        self->overlap_ms = g_value_get_uint (value);
      break;
    case PROP_LANGUAGE_CODE:
      g_free (self->language_code);
      self->language_code = g_value_dup_string (value);
      break;
    case PROP_TARGET_LANGUAGE:
      g_free (self->target_language);
      self->target_language = g_value_dup_string (value);
      break;
    case PROP_TASK:
      self->task = g_value_get_enum (value);
      break;
    case PROP_PNC:
      self->pnc = g_value_get_boolean (value);
      break;
    case PROP_BEAM_SIZE:
      self->beam_size = g_value_get_uint (value);
      break;
    case PROP_LATENCY:
      self->latency_ms = g_value_get_uint (value);
      latency_changed = GST_STATE (self) >= GST_STATE_PAUSED;
      break;
    case PROP_LATENESS:
      self->lateness_ms = g_value_get_uint (value);
      latency_changed = GST_STATE (self) >= GST_STATE_PAUSED;
      break;
    case PROP_POST_MESSAGES:
      self->post_messages = g_value_get_boolean (value);
      break;
    case PROP_SEGMENTATION:
      if (can_change_locked (self, pspec))
        self->segmentation = g_value_get_enum (value);
      break;
    case PROP_VAD_MODEL_PATH:
      if (can_change_locked (self, pspec)) {
        g_free (self->vad_model_path);
        self->vad_model_path = g_value_dup_string (value);
      }
      break;
    case PROP_VAD_THRESHOLD:
      if (can_change_locked (self, pspec))
        self->vad_threshold = g_value_get_float (value);
      break;
    case PROP_MIN_SILENCE:
      if (can_change_locked (self, pspec))
        self->min_silence_ms = g_value_get_uint (value);
      break;
    case PROP_SPEECH_PAD:
      if (can_change_locked (self, pspec))
        self->speech_pad_ms = g_value_get_uint (value);
      break;
    case PROP_MIN_SPEECH:
      if (can_change_locked (self, pspec))
        self->min_speech_ms = g_value_get_uint (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);

  /* The pipeline recomputes its latency (and so asks again) when told. */
  if (latency_changed)
    gst_element_post_message (GST_ELEMENT (self), gst_message_new_latency (GST_OBJECT (self)));
}

static void
gst_canary_transcribe_get_property (GObject *object, guint prop_id, GValue *value,
    GParamSpec *pspec)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL_PATH:
      g_value_set_string (value, self->model_path);
      break;
    case PROP_DEVICE:
      g_value_set_enum (value, self->device);
      break;
    case PROP_PRECISION:
      g_value_set_enum (value, self->precision);
      break;
    case PROP_GPU_DEVICE_ID:
      g_value_set_int (value, self->gpu_device_id);
      break;
    case PROP_WINDOW_LENGTH:
      g_value_set_uint (value, self->window_ms);
      break;
    case PROP_OVERLAP:
      g_value_set_uint (value, self->overlap_ms);
      break;
    case PROP_LANGUAGE_CODE:
      g_value_set_string (value, self->language_code);
      break;
    case PROP_TARGET_LANGUAGE:
      g_value_set_string (value, self->target_language);
      break;
    case PROP_TASK:
      g_value_set_enum (value, self->task);
      break;
    case PROP_PNC:
      g_value_set_boolean (value, self->pnc);
      break;
    case PROP_BEAM_SIZE:
      g_value_set_uint (value, self->beam_size);
      break;
    case PROP_LATENCY:
      g_value_set_uint (value, self->latency_ms);
      break;
    case PROP_LATENESS:
      g_value_set_uint (value, self->lateness_ms);
      break;
    case PROP_POST_MESSAGES:
      g_value_set_boolean (value, self->post_messages);
      break;
    case PROP_SEGMENTATION:
      g_value_set_enum (value, self->segmentation);
      break;
    case PROP_VAD_MODEL_PATH:
      g_value_set_string (value, self->vad_model_path);
      break;
    case PROP_VAD_THRESHOLD:
      g_value_set_float (value, self->vad_threshold);
      break;
    case PROP_MIN_SILENCE:
      g_value_set_uint (value, self->min_silence_ms);
      break;
    case PROP_SPEECH_PAD:
      g_value_set_uint (value, self->speech_pad_ms);
      break;
    case PROP_MIN_SPEECH:
      g_value_set_uint (value, self->min_speech_ms);
      break;
    case PROP_ACTIVE_SEGMENTATION:
      g_value_set_enum (value, self->active_segmentation);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

/* ---------------------------------------------------------------------------------------------
 * GObject
 */

static void
gst_canary_transcribe_finalize (GObject *object)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (object);

  canary_worker_stop (self);
  canary_worker_clear_queues_locked (self);
  g_clear_object (&self->adapter);
  canary_segment_teardown (self);
  g_free (self->model_path);
  g_free (self->vad_model_path);
  g_free (self->language_code);
  g_free (self->target_language);
  g_free (self->prev_text);
  g_mutex_clear (&self->lock);
  g_cond_clear (&self->cond);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_canary_transcribe_init (GstCanaryTranscribe *self)
{
  self->device = DEFAULT_DEVICE;
  self->precision = DEFAULT_PRECISION;
  self->gpu_device_id = DEFAULT_GPU_DEVICE_ID;
  self->window_ms = DEFAULT_WINDOW_MS;
  self->overlap_ms = DEFAULT_OVERLAP_MS;
  self->language_code = g_strdup (DEFAULT_LANGUAGE);
  self->task = DEFAULT_TASK;
  self->pnc = DEFAULT_PNC;
  self->beam_size = DEFAULT_BEAM_SIZE;
  self->latency_ms = DEFAULT_LATENCY_MS;
  self->lateness_ms = DEFAULT_LATENESS_MS;
  self->post_messages = DEFAULT_POST_MESSAGES;
  self->segmentation = DEFAULT_SEGMENTATION;
  self->vad_threshold = DEFAULT_VAD_THRESHOLD;
  self->min_silence_ms = DEFAULT_MIN_SILENCE_MS;
  self->speech_pad_ms = DEFAULT_SPEECH_PAD_MS;
  self->min_speech_ms = DEFAULT_MIN_SPEECH_MS;
  self->active_segmentation = GST_CANARY_TRANSCRIBE_SEGMENTATION_FIXED;
  self->worker_flow = GST_FLOW_OK;
  g_mutex_init (&self->lock);
  g_cond_init (&self->cond);
  g_queue_init (&self->jobs);
  g_queue_init (&self->results);
  gst_audio_info_init (&self->info);

  gst_pad_add_probe (GST_BASE_TRANSFORM_SINK_PAD (self), GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM,
      sink_caps_probe, self, NULL);
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), FALSE);
  gst_base_transform_set_in_place (GST_BASE_TRANSFORM (self), FALSE);
}

static void
install_properties (GObjectClass *gobject_class)
{
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  const GParamFlags ready = rw | GST_PARAM_MUTABLE_READY;
  const GParamFlags playing = rw | GST_PARAM_MUTABLE_PLAYING;

  g_object_class_install_property (gobject_class, PROP_MODEL_PATH,
      g_param_spec_string ("model-path", "Model path",
          "Canary model: a .nemo file or an extracted model directory. Unset: the default "
          "model " DEFAULT_MODEL_NAME " in $CANARY_DEFAULT_MODEL_DIR when set (meson test and "
          "meson devenv set it to the source's examples/models), else the one installed with the "
          "plugin", NULL, ready));
  g_object_class_install_property (gobject_class, PROP_DEVICE,
      g_param_spec_enum ("device", "Device",
          "Where the model runs; auto falls back to the CPU with a warning when CUDA is not "
          "usable", GST_TYPE_CANARY_TRANSCRIBE_DEVICE, DEFAULT_DEVICE, ready));
  g_object_class_install_property (gobject_class, PROP_PRECISION,
      g_param_spec_enum ("precision", "Precision",
          "Arithmetic precision of the model: fp16 stores the weights in half precision (FP32 "
          "sums) on CUDA and on the CPU; auto is fp16 on CUDA, and on the CPU fp16 for a model "
          "file larger than the last-level cache (with F16C/AVX-512; ~54 % of the memory, faster "
          "where the weights stream from memory, same accuracy) and fp32 for smaller models, "
          "which gain nothing (docs/cpu-fp16.md)",
          GST_TYPE_CANARY_TRANSCRIBE_PRECISION, DEFAULT_PRECISION, ready));
  g_object_class_install_property (gobject_class, PROP_GPU_DEVICE_ID,
      g_param_spec_int ("gpu-device-id", "GPU device ID",
          "Index of the CUDA device to use when running on a GPU", 0, 255,
          DEFAULT_GPU_DEVICE_ID, ready));
  g_object_class_install_property (gobject_class, PROP_WINDOW_LENGTH,
      g_param_spec_uint ("window-length", "Window length",
          "Length of the audio windows the model transcribes (milliseconds)",
          MIN_WINDOW_MS, MAX_WINDOW_MS, DEFAULT_WINDOW_MS, ready));
  g_object_class_install_property (gobject_class, PROP_OVERLAP,
      g_param_spec_uint ("overlap", "Overlap",
          "Audio shared by consecutive windows, so that words at a window boundary are heard "
          "whole; the repeated words are merged (milliseconds, less than window-length)",
          0, MAX_WINDOW_MS - 1, DEFAULT_OVERLAP_MS, ready));
  g_object_class_install_property (gobject_class, PROP_LANGUAGE_CODE,
      g_param_spec_string ("language-code", "Language code",
          "Spoken language, e.g. en, de, es, fr (a region suffix as in en-US is accepted); "
          "must be one of the model's languages", DEFAULT_LANGUAGE, playing));
  g_object_class_install_property (gobject_class, PROP_TARGET_LANGUAGE,
      g_param_spec_string ("target-language", "Target language",
          "Language of the output text when task=translate (unset: English); with "
          "task=transcribe it must be unset or equal language-code", NULL, playing));
  g_object_class_install_property (gobject_class, PROP_TASK,
      g_param_spec_enum ("task", "Task", "Transcribe, or translate into target-language",
          GST_TYPE_CANARY_TRANSCRIBE_TASK, DEFAULT_TASK, playing));
  g_object_class_install_property (gobject_class, PROP_PNC,
      g_param_spec_boolean ("pnc", "Punctuation and capitalisation",
          "Ask the model for punctuation and capitalisation", DEFAULT_PNC, playing));
  g_object_class_install_property (gobject_class, PROP_BEAM_SIZE,
      g_param_spec_uint ("beam-size", "Beam size",
          "Beam search width; 1 is greedy decoding (fastest), 0 the model's own setting "
          "(decoding.beam.beam_size in its config, as NeMo decodes it: 1 in the released Canary "
          "models, 4 in the bundled demo model)", 0, MAX_BEAM_SIZE,
          DEFAULT_BEAM_SIZE, playing));
  g_object_class_install_property (gobject_class, PROP_LATENCY,
      g_param_spec_uint ("latency", "Latency",
          "Time the model may take per window (milliseconds). Added to window-length in the "
          "reported latency of live pipelines; a warning is posted when the model is slower",
          0, G_MAXUINT, DEFAULT_LATENCY_MS, playing));
  g_object_class_install_property (gobject_class, PROP_LATENESS,
      g_param_spec_uint ("lateness", "Lateness",
          "Shifts the output timestamps later by this much (milliseconds), for pipelines that "
          "report less latency than the model needs; 0 keeps the input timeline",
          0, G_MAXUINT, DEFAULT_LATENESS_MS, playing));
  g_object_class_install_property (gobject_class, PROP_POST_MESSAGES,
      g_param_spec_boolean ("post-messages", "Post messages",
          "Post a 'canarytranscribe' element message for every text buffer",
          DEFAULT_POST_MESSAGES, playing));
  g_object_class_install_property (gobject_class, PROP_SEGMENTATION,
      g_param_spec_enum ("segmentation", "Segmentation",
          "How audio is cut for the model: vad sends only speech, cut at pauses (min-silence) "
          "or at window-length, and turns the rest into GAP events; fixed cuts windows of "
          "window-length sharing overlap; auto is vad when the VAD weights load, else fixed "
          "(with a warning)", GST_TYPE_CANARY_TRANSCRIBE_SEGMENTATION, DEFAULT_SEGMENTATION,
          ready));
  g_object_class_install_property (gobject_class, PROP_VAD_MODEL_PATH,
      g_param_spec_string ("vad-model-path", "VAD model path",
          "Silero VAD weights (" DEFAULT_VAD_NAME " from the silero-vad package). Unset: "
          "$CANARY_VAD_MODEL when set (meson test and meson devenv set it), else the file "
          "installed with the plugin. A path set here that cannot load is an error",
          NULL, ready));
  g_object_class_install_property (gobject_class, PROP_VAD_THRESHOLD,
      g_param_spec_float ("vad-threshold", "VAD threshold",
          "Speech probability at which speech starts; it ends below threshold - 0.15",
          0.02f, 0.99f, DEFAULT_VAD_THRESHOLD, ready));
  g_object_class_install_property (gobject_class, PROP_MIN_SILENCE,
      g_param_spec_uint ("min-silence", "Minimum silence",
          "Silence after speech that ends a VAD segment (milliseconds): shorter pauses stay "
          "inside the segment, and the text comes this long after the speaker stops",
          32, 10000, DEFAULT_MIN_SILENCE_MS, ready));
  g_object_class_install_property (gobject_class, PROP_SPEECH_PAD,
      g_param_spec_uint ("speech-pad", "Speech padding",
          "Audio kept on each side of a VAD segment's speech (milliseconds; at most half of "
          "min-silence)", 0, 5000, DEFAULT_SPEECH_PAD_MS, ready));
  g_object_class_install_property (gobject_class, PROP_MIN_SPEECH,
      g_param_spec_uint ("min-speech", "Minimum speech",
          "Speech shorter than this is dropped as a click or a cough (milliseconds)",
          0, 10000, DEFAULT_MIN_SPEECH_MS, ready));
  g_object_class_install_property (gobject_class, PROP_ACTIVE_SEGMENTATION,
      g_param_spec_enum ("active-segmentation", "Active segmentation",
          "The segmentation in use since the element started (fixed or vad): what "
          "segmentation=auto chose", GST_TYPE_CANARY_TRANSCRIBE_SEGMENTATION,
          GST_CANARY_TRANSCRIBE_SEGMENTATION_FIXED, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
}

static void
gst_canary_transcribe_class_init (GstCanaryTranscribeClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (canary_transcribe_debug, "canarytranscribe", 0,
      "Canary speech to text element");

  gobject_class->set_property = gst_canary_transcribe_set_property;
  gobject_class->get_property = gst_canary_transcribe_get_property;
  gobject_class->finalize = gst_canary_transcribe_finalize;
  install_properties (gobject_class);

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "Canary speech transcriber",
      "Audio/Text/Filter",
      "Transcribes or translates speech into timestamped UTF-8 text with an NVIDIA Canary model "
      "(.nemo), run on the CPU or a CUDA GPU by a built-in engine. A voice activity detector cuts "
      "the audio at pauses and sends only speech to the model (segmentation=vad, the default when "
      "its weights are installed), or it is cut into windows of window-length sharing 'overlap', "
      "whose repeated words are merged (segmentation=fixed); each segment or window gives one "
      "text buffer, non-speech GAP events, with PTS and DURATION "
      "in the input's timeline, ready for webvttenc, srtenc, textoverlay or matroskamux. Each "
      "buffer is also announced by a 'canarytranscribe' element message (text, timestamp, "
      "stream-time, running-time, duration, language, final, processing-time).",
      "gst-canary developers");
  element_class->change_state = GST_DEBUG_FUNCPTR (gst_canary_transcribe_change_state);

  trans_class->passthrough_on_same_caps = FALSE;
  trans_class->transform_caps = GST_DEBUG_FUNCPTR (gst_canary_transcribe_transform_caps);
  trans_class->set_caps = GST_DEBUG_FUNCPTR (gst_canary_transcribe_set_caps);
  trans_class->start = GST_DEBUG_FUNCPTR (gst_canary_transcribe_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_canary_transcribe_stop);
  trans_class->sink_event = GST_DEBUG_FUNCPTR (gst_canary_transcribe_sink_event);
  trans_class->query = GST_DEBUG_FUNCPTR (gst_canary_transcribe_query);
  trans_class->submit_input_buffer = GST_DEBUG_FUNCPTR (gst_canary_transcribe_submit_input_buffer);
  trans_class->generate_output = GST_DEBUG_FUNCPTR (gst_canary_transcribe_generate_output);

  gst_type_mark_as_plugin_api (GST_TYPE_CANARY_TRANSCRIBE_DEVICE, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_CANARY_TRANSCRIBE_PRECISION, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_CANARY_TRANSCRIBE_TASK, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_CANARY_TRANSCRIBE_SEGMENTATION, 0);
}
