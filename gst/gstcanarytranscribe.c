/* gst-canary — canarytranscribe: speech to text with NVIDIA Canary models.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/**
 * SECTION:element-canarytranscribe
 * @title: canarytranscribe
 *
 * Transcribes (or translates) speech with an NVIDIA Canary model read straight from its `.nemo`
 * file. Input is 16 kHz mono audio (put `audioconvert ! audioresample` in front); output is UTF-8
 * text, one buffer per window of audio, with PTS and DURATION in the input's timeline so that
 * `webvttenc`, `srtenc`, `textoverlay` and `matroskamux` can take it as it is.
 *
 * ## Windows
 *
 * Audio is cut into windows of `window-length`; consecutive windows share `overlap` of audio, so a
 * new window starts every `window-length - overlap`. Window times are counted in samples since the
 * last discontinuity, never taken from a wall clock. Each window's text buffer covers the part of
 * the timeline that the previous window did not: the first window covers [0, window-length), the
 * next ones [end of previous window, end of this window). The buffers (and GAP events) therefore
 * tile the timeline without holes or overlaps.
 *
 * With overlap > 0 the words spoken in the shared audio come out of both windows; the element
 * drops, from the start of the new window's text, the longest run of words that repeats the end of
 * the previous window's text (compared without case and punctuation, tolerating one cut word at
 * the end of the previous text and up to two at the start of the new one; see canarytextmerge.c).
 * Words that do not match are always kept, so nothing is lost when the model hears the shared audio
 * differently twice.
 *
 * At EOS (and before a new SEGMENT, a GAP without duration, or a timestamp discontinuity) the last,
 * partial window is transcribed. A window whose text is empty, or that holds only digital silence
 * (every sample below one 16-bit step; it is not sent to the model, which could only invent text
 * there), produces a GAP event instead of a buffer. Incoming GAP events with a duration are treated
 * as digital silence.
 *
 * ## Threading and latency
 *
 * A worker thread loads the model (asynchronously after NULL→READY, announced by a `progress`
 * message with code `loading`) and runs the engine; the streaming thread only cuts windows and
 * queues them. Non-live input waits when two windows are queued (back-pressure). Live input never
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
 * samples far beyond full scale (clipped to [-1, 1]).
 *
 * ## Errors
 *
 * - no model-path and no bundled default model, or a model path that does not exist or cannot be
 *   read: RESOURCE/NOT_FOUND (or OPEN_READ) and a failed NULL→READY;
 * - a file that is not a Canary model (corrupt, truncated, foreign): STREAM/WRONG_TYPE (or
 *   RESOURCE/NOT_FOUND for a missing archive member) from the loading thread, naming the file;
 *   READY→PAUSED then fails and streaming stops with an error;
 * - overlap not shorter than window-length: LIBRARY/SETTINGS and a failed READY→PAUSED;
 * - a language-code/target-language the model does not know, or a target language with
 *   task=transcribe: LIBRARY/SETTINGS once the model is loaded (and again for any window
 *   transcribed with such settings, since they may change while playing);
 * - device=cuda without a usable GPU: RESOURCE/FAILED; device=auto falls back to the CPU with a
 *   warning.
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

#include "gstcanarytranscribe.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <glib/gstdio.h>
#include <gst/audio/audio.h>
#include <gst/base/gstadapter.h>

#include "canary.h"
#include "canarytextmerge.h"

GST_DEBUG_CATEGORY_STATIC (canary_transcribe_debug);
#define GST_CAT_DEFAULT canary_transcribe_debug
GST_DEBUG_CATEGORY_STATIC (canary_engine_debug);

#define RATE 16000
#define DEFAULT_MODEL_NAME "canary-default.nemo"

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
#define DEFAULT_BEAM_SIZE 1
#define MAX_BEAM_SIZE 16
#define DEFAULT_LATENCY_MS 1000
#define DEFAULT_LATENESS_MS 0
#define DEFAULT_POST_MESSAGES TRUE

/* Windows that may wait for the worker before the streaming thread blocks. Two keep the model
 * busy without holding much memory; live input gets up to LIVE_MAX_QUEUED_MS of audio, so a
 * model that is slower for a moment never makes the source drop audio. */
#define MAX_QUEUED_WINDOWS 2
#define LIVE_MAX_QUEUED_MS 60000

/* Timestamps that differ by less than this from the sample count are treated as jitter. */
#define ALIGN_THRESHOLD (40 * GST_MSECOND)
#define ALIGN_DISCONT_WAIT GST_SECOND

/* Samples below one 16-bit step are digital silence. */
#define SILENCE_LEVEL (1.0f / 32768.0f)
/* Float input up to this peak is resampler overshoot, clipped quietly; beyond it the input is
 * probably mis-scaled and the user is told. */
#define HUGE_PEAK 2.0f

typedef enum {
  GST_CANARY_TRANSCRIBE_DEVICE_AUTO,
  GST_CANARY_TRANSCRIBE_DEVICE_CUDA,
  GST_CANARY_TRANSCRIBE_DEVICE_CPU,
} GstCanaryTranscribeDevice;

typedef enum {
  GST_CANARY_TRANSCRIBE_PRECISION_AUTO,
  GST_CANARY_TRANSCRIBE_PRECISION_FP16,
  GST_CANARY_TRANSCRIBE_PRECISION_FP32,
} GstCanaryTranscribePrecision;

typedef enum {
  GST_CANARY_TRANSCRIBE_TASK_TRANSCRIBE,
  GST_CANARY_TRANSCRIBE_TASK_TRANSLATE,
} GstCanaryTranscribeTask;

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
};

typedef enum {
  LOAD_NONE,
  LOAD_PENDING,
  LOAD_DONE,
  LOAD_FAILED,
} LoadState;

/* One window on its way to the worker. */
typedef struct {
  guint epoch;
  gfloat *samples;
  gsize n_samples;
  GstClockTime pts, duration;   /* the stretch of timeline this window's new text covers */
  GstClockTime end_running_time;        /* of the window's end, to measure live lag */
  gboolean new_run;             /* first window after a discontinuity: nothing to merge with */
  gboolean merge;               /* overlap > 0: drop the text repeated from the previous window */
  gboolean silent;              /* digital silence: not worth running the model */
} CanaryJob;

/* What the worker hands back for one window. An empty text becomes a GAP event. */
typedef struct {
  guint epoch;
  gchar *text;
  gchar *language;
  GstClockTime pts, duration;
  GstClockTime processing_time;
} CanaryResult;

/* Model options fixed when the worker starts. */
typedef struct {
  GstCanaryTranscribe *self;
  gchar *path;
  canary_model_options options;
  GstCanaryTranscribeDevice device;
} WorkerConfig;

struct _GstCanaryTranscribe {
  GstBaseTransform parent;

  /* Properties, under the object lock. */
  gchar *model_path;
  GstCanaryTranscribeDevice device;
  GstCanaryTranscribePrecision precision;
  gint gpu_device_id;
  guint window_ms;
  guint overlap_ms;
  gchar *language_code;
  gchar *target_language;
  GstCanaryTranscribeTask task;
  gboolean pnc;
  guint beam_size;
  guint latency_ms;
  guint lateness_ms;
  gboolean post_messages;
  gboolean model_settings_changed;      /* since the worker started loading */

  /* Streaming thread only. */
  GstAudioInfo info;
  GstAdapter *adapter;          /* F32 samples of the current run, from window_start on */
  GstAudioStreamAlign *align;
  gboolean run_active;          /* a run = samples since the last discontinuity */
  GstClockTime run_base;        /* timestamp of the run's first sample */
  guint64 window_start;         /* run sample index of the adapter's first sample */
  guint64 emitted_end;          /* run sample index where the last window's text ends */
  gboolean next_new_run;
  guint window_samples, hop_samples;
  gboolean merge;
  guint64 bad_nonfinite, bad_clipped;   /* sanitised since the last window was cut */
  gfloat bad_peak;
  gboolean live_known;
  gboolean backlog_warned;

  /* Upstream liveness, written by LATENCY queries from any thread. */
  gint live;

  /* Shared with the worker, under `lock`. */
  GMutex lock;
  GCond cond;
  GThread *worker;
  gboolean worker_stop;
  gboolean flushing;
  guint epoch;                  /* bumped by flushes: older jobs and results are stale */
  GQueue jobs;
  GQueue results;
  gboolean busy;
  LoadState load_state;
  canary_state *engine_state;   /* owned by the worker; here so that a flush can cancel it */
  GstFlowReturn worker_flow;    /* GST_FLOW_ERROR once the worker posted an error */

  /* Worker thread only. */
  gchar *prev_text;             /* full text of the previous window, for merging */
  GstClockTime last_warned_lag;
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
    {GST_CANARY_TRANSCRIBE_PRECISION_AUTO, "FP16 on CUDA, FP32 on the CPU", "auto"},
    {GST_CANARY_TRANSCRIBE_PRECISION_FP16, "FP16 weights and activations (CUDA only)", "fp16"},
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

/* ---------------------------------------------------------------------------------------------
 * Engine logging
 */

static void
engine_log (canary_log_level level, const char *message, gpointer user_data)
{
  GstDebugLevel gst_level;

  switch (level) {
    case CANARY_LOG_ERROR:
      gst_level = GST_LEVEL_ERROR;
      break;
    case CANARY_LOG_WARNING:
      gst_level = GST_LEVEL_WARNING;
      break;
    case CANARY_LOG_INFO:
      gst_level = GST_LEVEL_INFO;
      break;
    default:
      gst_level = GST_LEVEL_DEBUG;
      break;
  }
  GST_CAT_LEVEL_LOG (canary_engine_debug, gst_level, NULL, "%s", message);
}

void
gst_canary_transcribe_init_engine_logging (void)
{
  GST_DEBUG_CATEGORY_INIT (canary_engine_debug, "canaryengine", 0, "Canary inference engine");
  canary_set_log_func (engine_log, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Jobs and results
 */

static void
job_free (CanaryJob *job)
{
  g_free (job->samples);
  g_free (job);
}

static void
result_free (CanaryResult *res)
{
  g_free (res->text);
  g_free (res->language);
  g_free (res);
}

/* Called with `lock`. */
static void
clear_queues_locked (GstCanaryTranscribe *self)
{
  CanaryJob *job;
  CanaryResult *res;

  while ((job = g_queue_pop_head (&self->jobs)))
    job_free (job);
  while ((res = g_queue_pop_head (&self->results)))
    result_free (res);
}

/* Drops everything queued and interrupts the window being transcribed. Called with `lock`. */
static void
cancel_pending_locked (GstCanaryTranscribe *self)
{
  self->epoch++;
  clear_queues_locked (self);
  if (self->engine_state)
    canary_state_cancel (self->engine_state);
  g_cond_broadcast (&self->cond);
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 */

/* Maps an engine error onto the GStreamer error domain/code that says the same thing. */
static void
engine_error_to_gst (const GError *err, GQuark *domain, gint *code)
{
  *domain = GST_LIBRARY_ERROR;
  *code = GST_LIBRARY_ERROR_FAILED;
  if (!err || err->domain != CANARY_ERROR)
    return;

  switch ((canary_error_code) err->code) {
    case CANARY_ERROR_NOT_FOUND:
      *domain = GST_RESOURCE_ERROR;
      *code = GST_RESOURCE_ERROR_NOT_FOUND;
      break;
    case CANARY_ERROR_FORMAT:
    case CANARY_ERROR_UNSUPPORTED:
      *domain = GST_STREAM_ERROR;
      *code = GST_STREAM_ERROR_WRONG_TYPE;
      break;
    case CANARY_ERROR_INVALID_ARGUMENT:
      *domain = GST_LIBRARY_ERROR;
      *code = GST_LIBRARY_ERROR_SETTINGS;
      break;
    case CANARY_ERROR_INVALID_AUDIO:
      *domain = GST_STREAM_ERROR;
      *code = GST_STREAM_ERROR_DECODE;
      break;
    case CANARY_ERROR_OUT_OF_MEMORY:
      *domain = GST_RESOURCE_ERROR;
      *code = GST_RESOURCE_ERROR_NO_SPACE_LEFT;
      break;
    case CANARY_ERROR_DEVICE:
      *domain = GST_RESOURCE_ERROR;
      *code = GST_RESOURCE_ERROR_FAILED;
      break;
    case CANARY_ERROR_CANCELLED:
      break;
  }
}

/* Posts an ERROR message; takes @text and @debug. */
static void
post_error (GstCanaryTranscribe *self, GQuark domain, gint code, gchar *text, gchar *debug)
{
  GST_ERROR_OBJECT (self, "%s (%s)", text, debug ? debug : "");
  gst_element_message_full (GST_ELEMENT (self), GST_MESSAGE_ERROR, domain, code, text, debug,
      __FILE__, GST_FUNCTION, __LINE__);
}

/* Posts a WARNING whose details structure is @details (taken), named after what happened so
 * that applications can tell warnings apart; takes @text and @debug. */
static void
post_warning (GstCanaryTranscribe *self, GQuark domain, gint code, gchar *text, gchar *debug,
    GstStructure *details)
{
  GST_WARNING_OBJECT (self, "%s (%s)", text, debug ? debug : "");
  gst_element_message_full_with_details (GST_ELEMENT (self), GST_MESSAGE_WARNING, domain, code,
      text, debug, __FILE__, GST_FUNCTION, __LINE__, details);
}

/* Marks the worker as failed so that the streaming thread stops with GST_FLOW_ERROR. */
static void
set_worker_failed (GstCanaryTranscribe *self)
{
  g_mutex_lock (&self->lock);
  self->worker_flow = GST_FLOW_ERROR;
  clear_queues_locked (self);
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
}

/* ---------------------------------------------------------------------------------------------
 * Model location
 */

/* The model-path property, or the bundled default model; NULL with @err when there is none. */
static gchar *
resolve_model_path (GstCanaryTranscribe *self, GError **err)
{
  gchar *path;

  GST_OBJECT_LOCK (self);
  path = g_strdup (self->model_path);
  GST_OBJECT_UNLOCK (self);
  if (path && *path)
    return path;
  g_free (path);

  const gchar *dirs[] = { CANARY_MODEL_DIR, CANARY_SOURCE_MODEL_DIR };
  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++) {
    gchar *candidate = g_build_filename (dirs[i], DEFAULT_MODEL_NAME, NULL);
    if (g_file_test (candidate, G_FILE_TEST_EXISTS))
      return candidate;
    g_free (candidate);
  }

  g_set_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "No Canary model: the model-path property is not set and the default model "
      DEFAULT_MODEL_NAME " is installed neither in %s nor in %s. Set model-path to a Canary "
      ".nemo file or extracted model directory, for example "
      "canarytranscribe model-path=/path/to/canary-180m-flash.nemo", CANARY_MODEL_DIR,
      CANARY_SOURCE_MODEL_DIR);
  return NULL;
}

/* Catches a missing or unreadable model while the state change can still fail; whether the file
 * is a Canary model is found out by the (asynchronous) load. */
static gboolean
check_model_path (const gchar *path, GError **err)
{
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_set_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
        "Canary model '%s' does not exist (check the model-path property)", path);
    return FALSE;
  }
  if (g_access (path, R_OK) != 0) {
    int errsv = errno;
    g_set_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ,
        "Canary model '%s' cannot be read: %s", path, g_strerror (errsv));
    return FALSE;
  }
  return TRUE;
}

/* ---------------------------------------------------------------------------------------------
 * Worker thread: model loading
 */

static void
post_progress (GstCanaryTranscribe *self, GstProgressType type, gchar *text)
{
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_progress (GST_OBJECT (self), type, "loading", text));
  g_free (text);
}

static const gchar *
device_name (canary_device device)
{
  switch (device) {
    case CANARY_DEVICE_CUDA:
      return "cuda";
    case CANARY_DEVICE_CPU:
      return "cpu";
    default:
      return "auto";
  }
}

static const gchar *
precision_name (canary_precision precision)
{
  switch (precision) {
    case CANARY_PRECISION_FP16:
      return "fp16";
    case CANARY_PRECISION_FP32:
      return "fp32";
    default:
      return "auto";
  }
}

/* Loads the model; with device=auto a CUDA failure falls back to the CPU with a warning. */
static canary_model *
worker_load_model (WorkerConfig *cfg, GError **err)
{
  GstCanaryTranscribe *self = cfg->self;
  canary_model *model;

  post_progress (self, GST_PROGRESS_TYPE_START,
      g_strdup_printf ("Loading Canary model %s", cfg->path));

  model = canary_model_load (cfg->path, &cfg->options, err);
  /* No usable GPU (or, for precision=fp16, no CUDA backend at all): device=auto means "the GPU
   * if there is one", so run on the CPU and say so. */
  if (!model && cfg->device == GST_CANARY_TRANSCRIBE_DEVICE_AUTO
      && (g_error_matches (*err, CANARY_ERROR, CANARY_ERROR_DEVICE)
          || (g_error_matches (*err, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED)
              && cfg->options.precision == CANARY_PRECISION_FP16))) {
    GST_ELEMENT_WARNING (self, RESOURCE, FAILED,
        ("CUDA is not usable, transcribing on the CPU instead"),
        ("device=auto and the engine reported: %s", (*err)->message));
    g_clear_error (err);
    cfg->options.device = CANARY_DEVICE_CPU;
    cfg->options.precision = CANARY_PRECISION_AUTO;
    model = canary_model_load (cfg->path, &cfg->options, err);
  }
  if (!model)
    return NULL;

  const canary_model_info *info = canary_model_get_info (model);
  post_progress (self, GST_PROGRESS_TYPE_COMPLETE,
      g_strdup_printf ("Loaded %s (%s, %s) in %.0f ms", cfg->path, device_name (info->device),
          precision_name (info->precision), info->load_ms));
  return model;
}

/* Reports a failed load; the state is already LOAD_FAILED, so whoever reacts to the error
 * message sees an element that refuses to start. */
static void
worker_report_load_error (WorkerConfig *cfg, GError *err)
{
  GstCanaryTranscribe *self = cfg->self;
  GQuark domain;
  gint code;

  engine_error_to_gst (err, &domain, &code);
  post_progress (self, GST_PROGRESS_TYPE_ERROR,
      g_strdup_printf ("Could not load %s", cfg->path));
  post_error (self, domain, code,
      g_strdup_printf ("Could not load Canary model '%s': %s", cfg->path, err->message),
      g_strdup_printf ("device=%s precision=%s gpu-device-id=%d, engine error code %d",
          device_name (cfg->options.device), precision_name (cfg->options.precision),
          cfg->options.gpu_device_id, err->code));
}

/* ---------------------------------------------------------------------------------------------
 * Worker thread: transcription
 */

/* Decode settings read from the properties for one window. */
typedef struct {
  gchar *language_code;
  gchar *target_language;
  GstCanaryTranscribeTask task;
  gboolean pnc;
  guint beam_size;
} DecodeSettings;

static void
decode_settings_read (GstCanaryTranscribe *self, DecodeSettings *s)
{
  GST_OBJECT_LOCK (self);
  s->language_code = g_strdup (self->language_code);
  s->target_language = g_strdup (self->target_language);
  s->task = self->task;
  s->pnc = self->pnc;
  s->beam_size = self->beam_size;
  GST_OBJECT_UNLOCK (self);
}

static void
decode_settings_clear (DecodeSettings *s)
{
  g_free (s->language_code);
  g_free (s->target_language);
}

static gchar *
model_languages (const canary_model *model)
{
  const canary_model_info *info = canary_model_get_info (model);
  return info->languages ? g_strjoinv (", ", (gchar **) info->languages) : g_strdup ("none");
}

/* Turns the language properties into the model's language codes, or explains what is wrong. The
 * returned strings in @opts belong to the model. */
static gboolean
resolve_languages (const canary_model *model, const DecodeSettings *s,
    canary_decode_options *opts, GError **err)
{
  const char *source = NULL, *target = NULL;

  if (s->language_code && *s->language_code)
    source = canary_model_lookup_language (model, s->language_code);
  if (!source) {
    gchar *known = model_languages (model);
    g_set_error (err, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS,
        "language-code '%s' is not a language of this model (it knows: %s)",
        s->language_code ? s->language_code : "(none)", known);
    g_free (known);
    return FALSE;
  }

  if (s->target_language && *s->target_language) {
    target = canary_model_lookup_language (model, s->target_language);
    if (!target) {
      gchar *known = model_languages (model);
      g_set_error (err, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS,
          "target-language '%s' is not a language of this model (it knows: %s)",
          s->target_language, known);
      g_free (known);
      return FALSE;
    }
  }

  if (s->task == GST_CANARY_TRANSCRIBE_TASK_TRANSCRIBE) {
    if (target && strcmp (target, source) != 0) {
      g_set_error (err, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS,
          "target-language '%s' differs from language-code '%s' but task is 'transcribe'; "
          "set task=translate to translate", target, source);
      return FALSE;
    }
    target = source;
  } else if (!target) {
    /* Canary translates between English and the other languages. */
    if (strcmp (source, "en") == 0) {
      g_set_error (err, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS,
          "task=translate needs target-language when language-code is English");
      return FALSE;
    }
    target = canary_model_lookup_language (model, "en");
    if (!target)
      target = source;
  }

  opts->source_lang = source;
  opts->target_lang = target;
  opts->task = s->task == GST_CANARY_TRANSCRIBE_TASK_TRANSLATE ?
      CANARY_TASK_TRANSLATE : CANARY_TASK_TRANSCRIBE;
  opts->pnc = s->pnc;
  opts->beam_size = s->beam_size;
  return TRUE;
}

/* Checks the language properties against the model as soon as it is loaded, so that a wrong
 * language is reported before any audio arrives. */
static void
worker_check_settings (GstCanaryTranscribe *self, const canary_model *model)
{
  canary_decode_options opts;
  DecodeSettings settings;
  GError *err = NULL;

  canary_decode_options_init (&opts);
  decode_settings_read (self, &settings);
  if (!resolve_languages (model, &settings, &opts, &err)) {
    post_error (self, err->domain, err->code, g_strdup (err->message), NULL);
    g_error_free (err);
    set_worker_failed (self);
  }
  decode_settings_clear (&settings);
}

static gboolean
job_is_current (GstCanaryTranscribe *self, const CanaryJob *job)
{
  gboolean current;

  g_mutex_lock (&self->lock);
  current = job->epoch == self->epoch && !self->worker_stop && self->worker_flow == GST_FLOW_OK;
  g_mutex_unlock (&self->lock);
  return current;
}

/* Runs the engine on one window; NULL text with TRUE return = nothing to say. FALSE = the job
 * was cancelled or failed (an error has been posted when it failed). */
static gboolean
worker_run_engine (GstCanaryTranscribe *self, canary_model *model, canary_state *state,
    const CanaryJob *job, gchar **text, gchar **language)
{
  canary_decode_options opts;
  DecodeSettings settings;
  GError *err = NULL;
  canary_result *r;
  gboolean ok;

  canary_decode_options_init (&opts);
  decode_settings_read (self, &settings);
  ok = resolve_languages (model, &settings, &opts, &err);
  decode_settings_clear (&settings);
  if (!ok) {
    post_error (self, err->domain, err->code, g_strdup (err->message),
        g_strdup ("the language properties can be changed while playing; they are checked "
            "for every window"));
    g_error_free (err);
    set_worker_failed (self);
    return FALSE;
  }

  /* A flush may have come while this job waited; skip the inference then. */
  if (!job_is_current (self, job))
    return FALSE;

  r = canary_transcribe (state, job->samples, job->n_samples, &opts, &err);
  if (!r) {
    if (g_error_matches (err, CANARY_ERROR, CANARY_ERROR_CANCELLED)) {
      GST_DEBUG_OBJECT (self, "window at %" GST_TIME_FORMAT " cancelled", GST_TIME_ARGS (job->pts));
      g_error_free (err);
      return FALSE;
    }
    if (g_error_matches (err, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO)) {
      /* Input is sanitised, so this is the engine's own limit; lose the window, not the stream. */
      GST_ELEMENT_WARNING (self, STREAM, DECODE, ("Could not transcribe a window of audio"),
          ("window at %" GST_TIME_FORMAT ": %s", GST_TIME_ARGS (job->pts), err->message));
      g_error_free (err);
      *text = NULL;
      *language = NULL;
      return TRUE;
    }
    GQuark domain;
    gint code;
    engine_error_to_gst (err, &domain, &code);
    post_error (self, domain, code, g_strdup_printf ("Transcription failed: %s", err->message),
        g_strdup_printf ("window at %" GST_TIME_FORMAT ", %" G_GSIZE_FORMAT " samples",
            GST_TIME_ARGS (job->pts), job->n_samples));
    g_error_free (err);
    set_worker_failed (self);
    return FALSE;
  }

  *text = g_strdup (r->text);
  *language = g_strdup (opts.target_lang);
  canary_result_free (r);
  return TRUE;
}

/* Warns when the text of a live window comes out later than the latency budget allows; again
 * whenever the lag has grown by another window since the last warning. */
static void
worker_check_lag (GstCanaryTranscribe *self, const CanaryJob *job, GstClockTime processing)
{
  GstClockTime now, base, lag, budget, window;
  GstClock *clock;
  guint queued;

  if (!g_atomic_int_get (&self->live) || !GST_CLOCK_TIME_IS_VALID (job->end_running_time))
    return;
  clock = gst_element_get_clock (GST_ELEMENT (self));
  if (!clock)
    return;
  now = gst_clock_get_time (clock);
  gst_object_unref (clock);
  base = gst_element_get_base_time (GST_ELEMENT (self));
  if (now < base || now - base <= job->end_running_time)
    return;
  now -= base;
  lag = now - job->end_running_time;

  GST_OBJECT_LOCK (self);
  budget = self->latency_ms * GST_MSECOND;
  window = self->window_ms * GST_MSECOND;
  GST_OBJECT_UNLOCK (self);

  if (lag <= budget) {
    self->last_warned_lag = 0;
    return;
  }
  if (self->last_warned_lag && lag < self->last_warned_lag + window)
    return;
  self->last_warned_lag = lag;

  g_mutex_lock (&self->lock);
  queued = g_queue_get_length (&self->jobs);
  g_mutex_unlock (&self->lock);

  post_warning (self, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED,
      g_strdup_printf ("Transcription is falling behind the live input by %.1f s",
          (gdouble) lag / GST_SECOND),
      g_strdup_printf ("the text for the window ending at running time %" GST_TIME_FORMAT
          " is ready %" GST_TIME_FORMAT " after it, more than latency=%u ms; the window took %"
          GST_TIME_FORMAT " to transcribe and %u more are queued. Raise latency, shorten "
          "window-length, use device=cuda or a smaller model. No audio is dropped.",
          GST_TIME_ARGS (job->end_running_time), GST_TIME_ARGS (lag),
          (guint) (budget / GST_MSECOND), GST_TIME_ARGS (processing), queued),
      gst_structure_new ("canarytranscribe/behind",
          "behind", G_TYPE_UINT64, (guint64) lag,
          "latency", G_TYPE_UINT64, (guint64) budget,
          "processing-time", G_TYPE_UINT64, (guint64) processing,
          "window-length", G_TYPE_UINT64, (guint64) window,
          "queued-windows", G_TYPE_UINT, queued, NULL));
}

static gboolean
is_blank (const gchar *text)
{
  for (const gchar *p = text; *p; p = g_utf8_next_char (p)) {
    if (!g_unichar_isspace (g_utf8_get_char (p)))
      return FALSE;
  }
  return TRUE;
}

/* Turns one job into a result, or NULL when the job is dropped. */
static CanaryResult *
worker_process (GstCanaryTranscribe *self, canary_model *model, canary_state *state,
    CanaryJob *job)
{
  gchar *text = NULL, *language = NULL;
  gint64 start = g_get_monotonic_time ();

  if (job->new_run)
    g_clear_pointer (&self->prev_text, g_free);

  if (!job->silent && !worker_run_engine (self, model, state, job, &text, &language))
    return NULL;

  CanaryResult *res = g_new0 (CanaryResult, 1);
  res->epoch = job->epoch;
  res->pts = job->pts;
  res->duration = job->duration;
  res->language = language;
  res->processing_time = (g_get_monotonic_time () - start) * GST_USECOND;

  if (text && !g_utf8_validate (text, -1, NULL)) {
    /* The src caps promise UTF-8; keep what can be kept. */
    GST_WARNING_OBJECT (self, "engine text is not valid UTF-8, repairing it");
    gchar *valid = g_utf8_make_valid (text, -1);
    g_free (text);
    text = valid;
  }
  if (text && is_blank (text))
    g_clear_pointer (&text, g_free);
  if (job->merge && self->prev_text && text)
    res->text = canary_text_merge (self->prev_text, text);
  else
    res->text = g_strdup (text);
  g_free (self->prev_text);
  self->prev_text = text;

  GST_DEBUG_OBJECT (self, "window %" GST_TIME_FORMAT " + %" GST_TIME_FORMAT " -> '%s' (%"
      GST_TIME_FORMAT ")", GST_TIME_ARGS (res->pts), GST_TIME_ARGS (res->duration),
      res->text ? res->text : "", GST_TIME_ARGS (res->processing_time));
  worker_check_lag (self, job, res->processing_time);
  return res;
}

/* Waits for the next job; NULL when the worker must exit. Called with `lock`. */
static CanaryJob *
worker_next_job_locked (GstCanaryTranscribe *self)
{
  while (!self->worker_stop && g_queue_is_empty (&self->jobs))
    g_cond_wait (&self->cond, &self->lock);
  if (self->worker_stop)
    return NULL;
  self->busy = TRUE;
  return g_queue_pop_head (&self->jobs);
}

static void
worker_loop (GstCanaryTranscribe *self, canary_model *model, canary_state *state)
{
  CanaryJob *job;

  g_mutex_lock (&self->lock);
  while ((job = worker_next_job_locked (self))) {
    g_mutex_unlock (&self->lock);

    CanaryResult *res = NULL;
    if (job_is_current (self, job))
      res = worker_process (self, model, state, job);
    job_free (job);

    g_mutex_lock (&self->lock);
    self->busy = FALSE;
    if (res && res->epoch == self->epoch && self->worker_flow == GST_FLOW_OK)
      g_queue_push_tail (&self->results, res);
    else if (res)
      result_free (res);
    g_cond_broadcast (&self->cond);
  }
  g_mutex_unlock (&self->lock);
}

static gpointer
worker_main (gpointer data)
{
  WorkerConfig *cfg = data;
  GstCanaryTranscribe *self = cfg->self;
  canary_state *state = NULL;
  GError *err = NULL;

  canary_model *model = worker_load_model (cfg, &err);
  if (model)
    state = canary_state_new (model, &err);

  g_mutex_lock (&self->lock);
  self->load_state = state ? LOAD_DONE : LOAD_FAILED;
  self->engine_state = state;
  if (!state)
    self->worker_flow = GST_FLOW_ERROR;
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);

  if (err) {
    worker_report_load_error (cfg, err);
    g_clear_error (&err);
  }

  if (state) {
    worker_check_settings (self, model);
    worker_loop (self, model, state);
  }

  /* Stay until told to stop, so that the element's state tells what happened. */
  g_mutex_lock (&self->lock);
  while (!self->worker_stop)
    g_cond_wait (&self->cond, &self->lock);
  self->engine_state = NULL;
  g_mutex_unlock (&self->lock);

  canary_state_free (state);
  if (model)
    canary_model_unref (model);
  g_clear_pointer (&self->prev_text, g_free);
  g_free (cfg->path);
  g_free (cfg);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Worker lifetime (state changes)
 */

static canary_device
to_engine_device (GstCanaryTranscribeDevice device)
{
  switch (device) {
    case GST_CANARY_TRANSCRIBE_DEVICE_CUDA:
      return CANARY_DEVICE_CUDA;
    case GST_CANARY_TRANSCRIBE_DEVICE_CPU:
      return CANARY_DEVICE_CPU;
    default:
      return CANARY_DEVICE_AUTO;
  }
}

static canary_precision
to_engine_precision (GstCanaryTranscribePrecision precision)
{
  switch (precision) {
    case GST_CANARY_TRANSCRIBE_PRECISION_FP16:
      return CANARY_PRECISION_FP16;
    case GST_CANARY_TRANSCRIBE_PRECISION_FP32:
      return CANARY_PRECISION_FP32;
    default:
      return CANARY_PRECISION_AUTO;
  }
}

/* FP16 is a GPU format: asking for it on the CPU is a contradiction in the settings. */
static gboolean
check_device_settings (GstCanaryTranscribe *self)
{
  gboolean ok;

  GST_OBJECT_LOCK (self);
  ok = !(self->device == GST_CANARY_TRANSCRIBE_DEVICE_CPU
      && self->precision == GST_CANARY_TRANSCRIBE_PRECISION_FP16);
  GST_OBJECT_UNLOCK (self);
  if (!ok)
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS,
        ("precision=fp16 needs device=cuda (or auto); the CPU runs in fp32"), (NULL));
  return ok;
}

/* Checks the model path and starts the worker, which loads the model. */
static gboolean
worker_start (GstCanaryTranscribe *self)
{
  GError *err = NULL;

  if (!check_device_settings (self))
    return FALSE;

  gchar *path = resolve_model_path (self, &err);

  if (!path || !check_model_path (path, &err)) {
    post_progress (self, GST_PROGRESS_TYPE_ERROR, g_strdup (err->message));
    post_error (self, err->domain, err->code, g_strdup (err->message),
        path ? g_strdup_printf ("model path: %s", path) : NULL);
    g_error_free (err);
    g_free (path);
    return FALSE;
  }

  WorkerConfig *cfg = g_new0 (WorkerConfig, 1);
  cfg->self = self;
  cfg->path = path;
  canary_model_options_init (&cfg->options);
  GST_OBJECT_LOCK (self);
  cfg->device = self->device;
  cfg->options.device = to_engine_device (self->device);
  cfg->options.precision = to_engine_precision (self->precision);
  cfg->options.gpu_device_id = self->gpu_device_id;
  self->model_settings_changed = FALSE;
  GST_OBJECT_UNLOCK (self);

  g_mutex_lock (&self->lock);
  self->worker_stop = FALSE;
  self->load_state = LOAD_PENDING;
  self->worker_flow = GST_FLOW_OK;
  g_mutex_unlock (&self->lock);

  GST_INFO_OBJECT (self, "loading %s (device %s, precision %s)", path,
      device_name (cfg->options.device), precision_name (cfg->options.precision));
  self->worker = g_thread_try_new ("canarytranscribe", worker_main, cfg, &err);
  if (!self->worker) {
    post_error (self, GST_CORE_ERROR, GST_CORE_ERROR_THREAD,
        g_strdup ("Could not start the transcription thread"), g_strdup (err->message));
    g_error_free (err);
    g_free (cfg->path);
    g_free (cfg);
    return FALSE;
  }
  return TRUE;
}

/* Stops and joins the worker. A model load in progress cannot be interrupted (the engine has no
 * way to), so this waits for it to finish. */
static void
worker_stop (GstCanaryTranscribe *self)
{
  if (!self->worker)
    return;

  g_mutex_lock (&self->lock);
  self->worker_stop = TRUE;
  cancel_pending_locked (self);
  g_mutex_unlock (&self->lock);

  g_thread_join (self->worker);
  self->worker = NULL;

  g_mutex_lock (&self->lock);
  clear_queues_locked (self);
  self->load_state = LOAD_NONE;
  self->busy = FALSE;
  g_mutex_unlock (&self->lock);
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
static GstBuffer *
result_to_output (GstCanaryTranscribe *self, const CanaryResult *res)
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
static CanaryResult *
pop_result (GstCanaryTranscribe *self)
{
  CanaryResult *res;

  g_mutex_lock (&self->lock);
  while ((res = g_queue_pop_head (&self->results)) && res->epoch != self->epoch)
    result_free (res);
  g_mutex_unlock (&self->lock);
  return res;
}

static GstFlowReturn
worker_flow (GstCanaryTranscribe *self)
{
  GstFlowReturn flow;

  g_mutex_lock (&self->lock);
  flow = self->flushing ? GST_FLOW_FLUSHING : self->worker_flow;
  g_mutex_unlock (&self->lock);
  return flow;
}

/* Pushes every finished result from the streaming thread (outside the chain function). */
static GstFlowReturn
push_ready_results (GstCanaryTranscribe *self)
{
  GstFlowReturn flow = GST_FLOW_OK;
  CanaryResult *res;

  while (flow == GST_FLOW_OK && (res = pop_result (self))) {
    GstBuffer *buf = result_to_output (self, res);
    result_free (res);
    if (buf)
      flow = gst_pad_push (GST_BASE_TRANSFORM_SRC_PAD (self), buf);
  }
  return flow;
}

static GstFlowReturn
gst_canary_transcribe_generate_output (GstBaseTransform *trans, GstBuffer **outbuf)
{
  GstCanaryTranscribe *self = GST_CANARY_TRANSCRIBE (trans);
  CanaryResult *res;

  *outbuf = NULL;
  while ((res = pop_result (self))) {
    *outbuf = result_to_output (self, res);
    result_free (res);
    if (*outbuf)
      return GST_FLOW_OK;
  }
  return worker_flow (self);
}

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
    post_warning (self, GST_STREAM_ERROR, GST_STREAM_ERROR_FORMAT,
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
    job_free (job);
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
static GstFlowReturn
end_run (GstCanaryTranscribe *self)
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
static GstFlowReturn
place_samples (GstCanaryTranscribe *self, GstClockTime pts, gboolean discont_flag, guint n)
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
      flow = end_run (self);
    start_run (self, ts);
  }
  return flow;
}

/* Converts to F32 in [-1, 1]. Non-finite samples become 0 and out-of-range ones are clipped:
 * the engine rejects the former, and the latter would overflow its power spectrum. */
static GstBuffer *
to_float (GstCanaryTranscribe *self, GstBuffer *in, guint n)
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

static GstFlowReturn
append_samples (GstCanaryTranscribe *self, GstBuffer *fbuf)
{
  gst_adapter_push (self->adapter, fbuf);
  return cut_windows (self, FALSE);
}

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
  GstFlowReturn flow = worker_flow (self);
  gint bpf = GST_AUDIO_INFO_BPF (&self->info);

  if (flow != GST_FLOW_OK)
    goto out;
  if (!gst_base_transform_reconfigure (trans) || bpf == 0) {
    flow = GST_PAD_IS_FLUSHING (GST_BASE_TRANSFORM_SRC_PAD (trans)) ?
        GST_FLOW_FLUSHING : GST_FLOW_NOT_NEGOTIATED;
    goto out;
  }

  /* is_discont stays set until the next output buffer, which here comes only once per window:
   * the buffer's own flag is what says this buffer follows missing data. */
  gboolean discont = GST_BUFFER_IS_DISCONT (buf);
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

  flow = place_samples (self, GST_BUFFER_PTS (buf), discont, n);
  if (flow == GST_FLOW_OK)
    flow = append_samples (self, to_float (self, buf, n));

out:
  gst_buffer_unref (buf);
  return flow;
}

/* ---------------------------------------------------------------------------------------------
 * Events
 */

/* Waits until the worker has finished every queued window, then pushes the results. */
static GstFlowReturn
drain (GstCanaryTranscribe *self)
{
  GstFlowReturn flow = end_run (self);

  gst_audio_stream_align_mark_discont (self->align);
  if (flow != GST_FLOW_OK)
    return flow;

  g_mutex_lock (&self->lock);
  while (!self->flushing && self->worker_flow == GST_FLOW_OK
      && (!g_queue_is_empty (&self->jobs) || self->busy))
    g_cond_wait (&self->cond, &self->lock);
  g_mutex_unlock (&self->lock);

  flow = push_ready_results (self);
  return flow == GST_FLOW_OK ? worker_flow (self) : flow;
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
    flow = place_samples (self, pts, FALSE, n);
    if (flow == GST_FLOW_OK) {
      GstBuffer *zeros = gst_buffer_new_allocate (NULL, n * sizeof (gfloat), NULL);
      gst_buffer_memset (zeros, 0, 0, n * sizeof (gfloat));
      flow = append_samples (self, zeros);
    }
    done += n;
  }
  if (flow == GST_FLOW_OK)
    push_ready_results (self);
  return TRUE;
}

static void
reset_stream (GstCanaryTranscribe *self)
{
  if (self->adapter)
    gst_adapter_clear (self->adapter);
  if (self->align)
    gst_audio_stream_align_mark_discont (self->align);
  self->run_active = FALSE;
  self->bad_nonfinite = self->bad_clipped = 0;
  self->bad_peak = 0.0f;
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
      cancel_pending_locked (self);
      g_mutex_unlock (&self->lock);
      break;
    case GST_EVENT_FLUSH_STOP:
      reset_stream (self);
      g_mutex_lock (&self->lock);
      self->flushing = FALSE;
      clear_queues_locked (self);
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
      if (!trans->have_segment || !gst_segment_is_equal (&trans->segment, segment))
        drain (self);
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
  gst_audio_info_init (&self->info);
  self->adapter = gst_adapter_new ();
  self->align = gst_audio_stream_align_new (RATE, ALIGN_THRESHOLD, ALIGN_DISCONT_WAIT);
  reset_stream (self);

  g_mutex_lock (&self->lock);
  self->flushing = FALSE;
  clear_queues_locked (self);
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
  cancel_pending_locked (self);
  g_mutex_unlock (&self->lock);

  g_clear_object (&self->adapter);
  g_clear_pointer (&self->align, gst_audio_stream_align_free);
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
      if (!worker_start (self))
        return GST_STATE_CHANGE_FAILURE;
      break;
    case GST_STATE_CHANGE_READY_TO_PAUSED:{
      /* Model properties changed in READY: load again. */
      if (model_settings_changed (self)) {
        worker_stop (self);
        if (!worker_start (self))
          return GST_STATE_CHANGE_FAILURE;
      }
      g_mutex_lock (&self->lock);
      gboolean failed = self->load_state == LOAD_FAILED;
      g_mutex_unlock (&self->lock);
      if (failed) {
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
      cancel_pending_locked (self);
      g_mutex_unlock (&self->lock);
      break;
    default:
      break;
  }

  ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);

  switch (transition) {
    case GST_STATE_CHANGE_NULL_TO_READY:
      if (ret == GST_STATE_CHANGE_FAILURE)
        worker_stop (self);
      break;
    case GST_STATE_CHANGE_READY_TO_NULL:
      worker_stop (self);
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

  worker_stop (self);
  clear_queues_locked (self);
  g_clear_object (&self->adapter);
  g_clear_pointer (&self->align, gst_audio_stream_align_free);
  g_free (self->model_path);
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
  self->worker_flow = GST_FLOW_OK;
  g_mutex_init (&self->lock);
  g_cond_init (&self->cond);
  g_queue_init (&self->jobs);
  g_queue_init (&self->results);
  gst_audio_info_init (&self->info);

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
          "model " DEFAULT_MODEL_NAME " installed with the plugin (or, in a build tree, found "
          "in the source's examples/models)", NULL, ready));
  g_object_class_install_property (gobject_class, PROP_DEVICE,
      g_param_spec_enum ("device", "Device",
          "Where the model runs; auto falls back to the CPU with a warning when CUDA is not "
          "usable", GST_TYPE_CANARY_TRANSCRIBE_DEVICE, DEFAULT_DEVICE, ready));
  g_object_class_install_property (gobject_class, PROP_PRECISION,
      g_param_spec_enum ("precision", "Precision", "Arithmetic precision of the model",
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
          "Beam search width; 1 is greedy decoding (fastest)", 1, MAX_BEAM_SIZE,
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
      "(.nemo), run on the CPU or a CUDA GPU by a built-in engine. Audio is cut into windows of "
      "window-length (consecutive windows share 'overlap', whose repeated words are merged); each "
      "window gives one text buffer, or a GAP event when nothing was said, with PTS and DURATION "
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
}
