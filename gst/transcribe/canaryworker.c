/* gst-canary — canarytranscribe's worker thread: loads the model (posting `progress` messages),
 * reads the decode settings and checks the languages against the model, runs the engine on each
 * queued window, merges the text of overlapping windows and warns when live input outruns the
 * model. Also the job and result queues it shares with the streaming thread, the mapping of
 * engine errors onto GStreamer's, and starting and stopping the thread with the state changes.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "build-config.h"

#include "canaryworker.h"

#include "canaryoutput.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "canarytextmerge.h"

GST_DEBUG_CATEGORY_STATIC (canary_engine_debug);

/* Model options fixed when the worker starts. */
typedef struct {
  GstCanaryTranscribe *self;
  gchar *path;
  canary_model_options options;
  GstCanaryTranscribeDevice device;
} WorkerConfig;

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

/* Called with `lock`. */
void
canary_worker_clear_queues_locked (GstCanaryTranscribe *self)
{
  CanaryJob *job;
  CanaryResult *res;

  while ((job = g_queue_pop_head (&self->jobs)))
    canary_job_free (job);
  while ((res = g_queue_pop_head (&self->results)))
    canary_job_result_free (res);
}

/* Drops everything queued and interrupts the window being transcribed. Called with `lock`. */
void
canary_worker_cancel_pending_locked (GstCanaryTranscribe *self)
{
  self->epoch++;
  canary_worker_clear_queues_locked (self);
  if (self->engine_state)
    canary_state_cancel (self->engine_state);
  g_cond_broadcast (&self->cond);
}

GstFlowReturn
canary_worker_flow (GstCanaryTranscribe *self)
{
  GstFlowReturn flow;

  g_mutex_lock (&self->lock);
  flow = self->flushing ? GST_FLOW_FLUSHING : self->worker_flow;
  g_mutex_unlock (&self->lock);
  return flow;
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

/* Marks the worker as failed so that the streaming thread stops with GST_FLOW_ERROR. */
static void
set_worker_failed (GstCanaryTranscribe *self)
{
  g_mutex_lock (&self->lock);
  self->worker_flow = GST_FLOW_ERROR;
  canary_worker_clear_queues_locked (self);
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

  /* $CANARY_DEFAULT_MODEL_DIR first (set by `meson test` and `meson devenv` to the source's
   * examples/models), then the installed data dir. */
  const gchar *dirs[] = { g_getenv ("CANARY_DEFAULT_MODEL_DIR"), CANARY_MODEL_DIR };
  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++) {
    if (!dirs[i] || !*dirs[i])
      continue;
    gchar *candidate = g_build_filename (dirs[i], DEFAULT_MODEL_NAME, NULL);
    if (g_file_test (candidate, G_FILE_TEST_EXISTS))
      return candidate;
    g_free (candidate);
  }

  g_set_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "No Canary model: the model-path property is not set and the default model "
      DEFAULT_MODEL_NAME " is found neither in %s nor in %s. Set model-path to a Canary "
      ".nemo file or extracted model directory, for example "
      "canarytranscribe model-path=/path/to/canary-180m-flash.nemo", CANARY_MODEL_DIR,
      g_getenv ("CANARY_DEFAULT_MODEL_DIR") ? g_getenv ("CANARY_DEFAULT_MODEL_DIR") :
      "$CANARY_DEFAULT_MODEL_DIR (unset)");
  return NULL;
}

/* Catches a missing, unreadable or unsuitable model while the state change can still fail;
 * whether the file is a Canary model is found out by the load. Only a regular file (a .nemo
 * archive) or a directory (an extracted one) will do: opening a FIFO blocks until someone
 * writes to it, and a device such as /dev/zero never ends, so neither is ever opened. */
static gboolean
check_model_path (const gchar *path, GError **err)
{
  GStatBuf st;

  if (g_stat (path, &st) != 0) {
    int errsv = errno;
    if (errsv == ENOENT || errsv == ENOTDIR)
      g_set_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
          "Canary model '%s' does not exist (check the model-path property)", path);
    else
      g_set_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ,
          "Canary model '%s' cannot be read: %s", path, g_strerror (errsv));
    return FALSE;
  }
  if (!S_ISREG (st.st_mode) && !S_ISDIR (st.st_mode)) {
    const gchar *what = S_ISFIFO (st.st_mode) ? "a FIFO" : S_ISCHR (st.st_mode) ?
        "a character device" : S_ISBLK (st.st_mode) ? "a block device" :
        S_ISSOCK (st.st_mode) ? "a socket" : "not a regular file";
    g_set_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ,
        "Canary model '%s' is %s; model-path must be a .nemo file or an extracted model "
        "directory", path, what);
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

/* Tells the application, once per load, that device=auto runs on the CPU, and why. */
static void
warn_cpu_fallback (GstCanaryTranscribe *self, const gchar *reason)
{
  canary_output_post_warning (self, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED,
      g_strdup_printf ("CUDA is not usable, transcribing on the CPU instead: %s", reason),
      g_strdup ("device=auto; set device=cpu to silence this warning, or device=cuda to make "
          "it an error"),
      gst_structure_new ("canarytranscribe/cpu-fallback", "reason", G_TYPE_STRING, reason,
          NULL));
}

/* A failure that the GPU, not the file, is to blame for. */
static gboolean
is_device_error (const GError *err, const canary_model_options *options)
{
  return g_error_matches (err, CANARY_ERROR, CANARY_ERROR_DEVICE)
      || g_error_matches (err, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY)
      || (g_error_matches (err, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED)
          && options->precision == CANARY_PRECISION_FP16);
}

/* Loads the model. device=auto asks the engine for the GPU first (unless $CANARY_AUTO_DEVICE=cpu
 * pins auto to the CPU, as the test suites do): when that fails for a reason of the GPU's (none
 * there, no CUDA backend in this build, out of GPU memory), the model is
 * loaded on the CPU and a WARNING says why. The engine's own auto mode would fall back too, but
 * silently, and without the reason. */
static canary_model *
worker_load_model (WorkerConfig *cfg, GError **err)
{
  GstCanaryTranscribe *self = cfg->self;
  canary_model *model;

  post_progress (self, GST_PROGRESS_TYPE_START,
      g_strdup_printf ("Loading Canary model %s", cfg->path));

  if (cfg->device == GST_CANARY_TRANSCRIBE_DEVICE_AUTO
      && g_strcmp0 (g_getenv ("CANARY_AUTO_DEVICE"), "cpu") != 0)
    cfg->options.device = CANARY_DEVICE_CUDA;
  model = canary_model_load (cfg->path, &cfg->options, err);
  if (!model && cfg->device == GST_CANARY_TRANSCRIBE_DEVICE_AUTO
      && is_device_error (*err, &cfg->options)) {
    warn_cpu_fallback (self, (*err)->message);
    g_clear_error (err);
    cfg->options.device = CANARY_DEVICE_CPU;  /* the precision asked for: the CPU has FP16 too */
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
  canary_output_post_error (self, domain, code,
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
 * language fails READY->PAUSED instead of the first window. */
static gboolean
worker_check_settings (GstCanaryTranscribe *self, const canary_model *model, GError **err)
{
  canary_decode_options opts;
  DecodeSettings settings;
  gboolean ok;

  canary_decode_options_init (&opts);
  decode_settings_read (self, &settings);
  ok = resolve_languages (model, &settings, &opts, err);
  decode_settings_clear (&settings);
  return ok;
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
    canary_output_post_error (self, err->domain, err->code, g_strdup (err->message),
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
    canary_output_post_error (self, domain, code,
        g_strdup_printf ("Transcription failed: %s", err->message),
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

  /* (under a second in milliseconds: "0.0 s" behind would read as not behind at all) */
  gchar *how_far = lag < GST_SECOND ?
      g_strdup_printf ("%u ms", (guint) ((lag + GST_MSECOND / 2) / GST_MSECOND)) :
      g_strdup_printf ("%.1f s", (gdouble) lag / GST_SECOND);
  canary_output_post_warning (self, GST_STREAM_ERROR, GST_STREAM_ERROR_FAILED,
      g_strdup_printf ("Transcription is falling behind the live input by %s", how_far),
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
  g_free (how_far);
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
  /* The window's own text, before the merge drops what the previous window already said. */
  GST_LOG_OBJECT (self, "engine text for %" GST_TIME_FORMAT ": '%s'", GST_TIME_ARGS (job->pts),
      text ? text : "");
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
    canary_job_free (job);

    g_mutex_lock (&self->lock);
    self->busy = FALSE;
    if (res && res->epoch == self->epoch && self->worker_flow == GST_FLOW_OK)
      g_queue_push_tail (&self->results, res);
    else if (res)
      canary_job_result_free (res);
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

  /* The error goes on the bus before the state change that waits for this load can see the
   * failure, so that the application hears the real reason first. */
  if (err) {
    worker_report_load_error (cfg, err);
    g_clear_error (&err);
  } else if (!worker_check_settings (self, model, &err)) {
    canary_output_post_error (self, err->domain, err->code, g_strdup (err->message),
        g_strdup ("checked when the model is loaded"));
    g_clear_error (&err);
    g_clear_pointer (&state, canary_state_free);
  }

  g_mutex_lock (&self->lock);
  self->load_state = state ? LOAD_DONE : LOAD_FAILED;
  self->engine_state = state;
  if (!state)
    self->worker_flow = GST_FLOW_ERROR;
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);

  if (state)
    worker_loop (self, model, state);

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

/* Checks the model path and starts the worker, which loads the model. */
gboolean
canary_worker_start (GstCanaryTranscribe *self)
{
  GError *err = NULL;


  gchar *path = resolve_model_path (self, &err);

  if (!path || !check_model_path (path, &err)) {
    post_progress (self, GST_PROGRESS_TYPE_ERROR, g_strdup (err->message));
    canary_output_post_error (self, err->domain, err->code, g_strdup (err->message),
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
    canary_output_post_error (self, GST_CORE_ERROR, GST_CORE_ERROR_THREAD,
        g_strdup ("Could not start the transcription thread"), g_strdup (err->message));
    g_error_free (err);
    g_free (cfg->path);
    g_free (cfg);
    return FALSE;
  }
  return TRUE;
}

/* Waits for the model load that canary_worker_start began; FALSE when it failed (its error has
 * been posted by then). A load reads a regular file or directory (canary_worker_start refuses
 * anything else), so it ends. */
gboolean
canary_worker_wait_loaded (GstCanaryTranscribe *self)
{
  LoadState state;

  g_mutex_lock (&self->lock);
  while (self->load_state == LOAD_PENDING)
    g_cond_wait (&self->cond, &self->lock);
  state = self->load_state;
  g_mutex_unlock (&self->lock);
  return state == LOAD_DONE;
}

/* Stops and joins the worker. A model load in progress cannot be interrupted (the engine has no
 * way to), so this waits for it to finish. */
void
canary_worker_stop (GstCanaryTranscribe *self)
{
  if (!self->worker)
    return;

  g_mutex_lock (&self->lock);
  self->worker_stop = TRUE;
  canary_worker_cancel_pending_locked (self);
  g_mutex_unlock (&self->lock);

  g_thread_join (self->worker);
  self->worker = NULL;

  g_mutex_lock (&self->lock);
  canary_worker_clear_queues_locked (self);
  self->load_state = LOAD_NONE;
  self->busy = FALSE;
  g_mutex_unlock (&self->lock);
}
