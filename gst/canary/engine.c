/* gst-canary — the engine's public API: model loading and cache, per-stream state, transcribe().
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * This file only wires the stages together; each stage lives in its own file:
 *   formats/tar.c (archive) → formats/ckpt.c (tensors) + formats/config.c (yaml)
 *   → text/tokenizer.c (prompt, text) → cpu/mel.c (features) → a backend (backend.h: the CPU's
 *   cpu/encoder.c + cpu/decoder.c + search.c, or the CUDA backend of cuda/) → text. */
#include "canary.h"

#include <cblas.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "backend.h"
#include "formats/ckpt.h"
#include "formats/config.h"
#include "formats/tar.h"
#include "search.h"
#include "cpu/decoder.h"
#include "cpu/encoder.h"
#include "cpu/mel.h"
#include "text/tokenizer.h"
#include "util.h"

struct _canary_model {
  gint ref_count;          /* protected by cache_lock */
  char *cache_key;
  canary_model_options opts;

  canary_archive *archive;
  canary_config *config;
  canary_ckpt *ckpt;
  canary_tokenizer *tokenizer;
  canary_mel *mel;
  canary_encoder *encoder;
  canary_decoder *decoder;

  canary_model_info info;
  char *path;
  int eos_id, pad_id;
  const canary_backend *backend;  /* runs the network: backend.h */
  gpointer backend_model;
};

struct _canary_state {
  canary_model *model;
  gpointer backend_state;
  float *mel_buf;
  gsize mel_cap;           /* floats */
  volatile gint cancel;
};

/* ---------------------------------------------------------------------------------------------
 * Options
 * --------------------------------------------------------------------------------------------- */

void
canary_model_options_init (canary_model_options *opts)
{
  memset (opts, 0, sizeof *opts);
  opts->device = CANARY_DEVICE_AUTO;
  opts->precision = CANARY_PRECISION_AUTO;
}

void
canary_decode_options_init (canary_decode_options *opts)
{
  memset (opts, 0, sizeof *opts);
  opts->source_lang = "en";
  opts->task = CANARY_TASK_TRANSCRIBE;
  opts->pnc = TRUE;
  opts->beam_size = CANARY_BEAM_FROM_MODEL;
  opts->length_penalty = 0.0;
  opts->max_generation_delta = CANARY_DELTA_FROM_MODEL;
}

/* ---------------------------------------------------------------------------------------------
 * Model loading and the process-wide cache
 * --------------------------------------------------------------------------------------------- */

static GMutex cache_lock;
static GHashTable *cache;  /* cache_key → canary_model* (not referenced: entries leave on last unref) */

/* precision on the CPU: as asked, or for auto canary_cpu_auto_precision of the file's size. */
static canary_precision
cpu_precision (const char *path, canary_precision asked)
{
  if (asked != CANARY_PRECISION_AUTO)
    return asked;
  GStatBuf sb;
  const guint64 bytes = g_stat (path, &sb) == 0 ? (guint64) sb.st_size : 0;
  return canary_cpu_auto_precision (bytes);
}

/* Picks the backend for the requested device/precision. device=auto means "the GPU when this
 * build has the CUDA backend and a usable GPU is there, else the CPU" ($CANARY_AUTO_DEVICE=cpu
 * pins it to the CPU, which the CPU test suites do); precision=auto is FP16 on the GPU and
 * cpu_precision's choice on the CPU. */
static gboolean
resolve_backend (const char *path, const canary_model_options *in, canary_device *device,
    canary_precision *precision, GError **error)
{
  const canary_backend *cuda = canary_backend_cuda ();
  gboolean want_cuda = in->device == CANARY_DEVICE_CUDA;
  if (in->device == CANARY_DEVICE_AUTO && cuda) {
    GError *why = NULL;
    if (g_strcmp0 (g_getenv ("CANARY_AUTO_DEVICE"), "cpu") == 0) {
      want_cuda = FALSE;
    } else if (cuda->probe (in->gpu_device_id, &why)) {
      want_cuda = TRUE;
    } else {
      CANARY_INFO ("device=auto: %s; running on the CPU", why->message);
      g_error_free (why);
    }
  }
  if (want_cuda) {
    if (!cuda) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE,
          "device=cuda requested, but this build of the engine has no CUDA backend (built with -Dcuda=disabled "
          "or without the CUDA toolkit)");
      return FALSE;
    }
    if (in->device == CANARY_DEVICE_CUDA && !cuda->probe (in->gpu_device_id, error))
      return FALSE;
    *device = CANARY_DEVICE_CUDA;
    *precision = in->precision == CANARY_PRECISION_FP32 ? CANARY_PRECISION_FP32 : CANARY_PRECISION_FP16;
    return TRUE;
  }
  *device = CANARY_DEVICE_CPU;
  *precision = cpu_precision (path, in->precision);
  return TRUE;
}

static void
model_free (canary_model *m)
{
  if (m->backend_model)
    m->backend->model_free (m->backend_model);
  canary_decoder_free (m->decoder);
  canary_encoder_free (m->encoder);
  canary_mel_free (m->mel);
  if (m->tokenizer)
    canary_tokenizer_free (m->tokenizer);
  if (m->ckpt)
    canary_ckpt_free (m->ckpt);
  if (m->config)
    canary_config_free (m->config);
  if (m->archive)
    canary_archive_free (m->archive);
  g_free (m->cache_key);
  g_free (m->path);
  g_free (m);
}

static gboolean
find_member (canary_archive *ar, const char *name, const guint8 **data, gsize *len, GError **error)
{
  if (canary_archive_find (ar, name, data, len))
    return TRUE;
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
      "%s: no member '%s' — not a NeMo model archive", canary_archive_path (ar), name);
  return FALSE;
}

/* Bytes of the encoder's tensors (and the projection) in the checkpoint, as FP32. */
static guint64
encoder_weight_bytes (const canary_ckpt *ck)
{
  guint64 total = 0;
  for (guint i = 0; i < canary_ckpt_n_tensors (ck); i++) {
    const canary_tensor *t = canary_ckpt_tensor (ck, i);
    if ((g_str_has_prefix (t->name, "encoder.") || g_str_has_prefix (t->name, "encoder_decoder_proj.")) &&
        !g_str_has_suffix (t->name, "num_batches_tracked"))
      total += (guint64) t->numel * sizeof (float);
  }
  return total;
}

static canary_backend_args
backend_args (const canary_model *m)
{
  const canary_backend_args a = {
    .config = m->config,
    .ckpt = m->ckpt,
    .mel = m->mel,
    .encoder = m->encoder,
    .decoder = m->decoder,
    .opts = &m->opts,
    .precision = m->info.precision,
    .sample_rate = m->info.sample_rate,
    .pad_id = m->pad_id,
  };
  return a;
}

/* Opens and binds everything; `m->path` and options are set by the caller. */
/* canary_release_fn for the FP16 converters: a converted tensor's FP32 pages leave memory. */
static void
release_source (const void *src, gsize bytes, gpointer archive)
{
  canary_archive_release_range (archive, src, bytes);
}

static gboolean
model_build (canary_model *m, GError **error)
{
  const guint8 *data;
  gsize len;
  double t0 = canary_now_ms ();

  m->archive = canary_archive_open (m->path, error);
  if (!m->archive)
    return FALSE;

  if (!find_member (m->archive, "model_config.yaml", &data, &len, error))
    return FALSE;
  m->config = canary_config_parse ((const char *) data, len, error);
  if (!m->config)
    goto prefix_path;

  if (!find_member (m->archive, "model_weights.ckpt", &data, &len, error))
    return FALSE;
  m->ckpt = canary_ckpt_parse (data, len, error);
  if (!m->ckpt)
    goto prefix_path;

  m->tokenizer = canary_tokenizer_new (m->config, m->archive, error);
  if (!m->tokenizer)
    goto prefix_path;
  m->mel = canary_mel_new (m->config, m->ckpt, error);
  if (!m->mel)
    goto prefix_path;
  m->encoder = canary_encoder_new (m->config, m->ckpt, error);
  if (!m->encoder)
    goto prefix_path;
  m->decoder = canary_decoder_new (m->config, m->ckpt, error);
  if (!m->decoder)
    goto prefix_path;
  if (m->info.device == CANARY_DEVICE_CPU && m->info.precision == CANARY_PRECISION_FP16) {
    /* FP16 weights for every GEMM, converted once; each tensor's FP32 pages leave memory as soon
     * as it is converted, the rest at the end (what stays FP32 — norms, biases, position tables —
     * is read back from the file on use). */
    if (!canary_encoder_use_f16 (m->encoder, release_source, m->archive, error)
        || !canary_decoder_use_f16 (m->decoder, release_source, m->archive, error))
      goto prefix_path;
    canary_archive_release_pages (m->archive);
  }

  m->eos_id = canary_tokenizer_eos (m->tokenizer);
  m->pad_id = canary_tokenizer_pad (m->tokenizer);
  if (m->eos_id < 0) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT, "the tokenizer has no <|endoftext|> token");
    goto prefix_path;
  }
  int V = canary_decoder_vocab (m->decoder);
  if (canary_tokenizer_vocab_size (m->tokenizer) > V) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
        "the tokenizer has %d ids but the output head only %d classes",
        canary_tokenizer_vocab_size (m->tokenizer), V);
    goto prefix_path;
  }
  if (canary_encoder_out_dim (m->encoder) != canary_decoder_hidden (m->decoder)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
        "encoder output width %d does not match decoder hidden size %d (missing encoder_decoder_proj?)",
        canary_encoder_out_dim (m->encoder), canary_decoder_hidden (m->decoder));
    goto prefix_path;
  }

  canary_model_info *info = &m->info;
  const canary_config *cfg = m->config;
  info->path = m->path;
  info->prompt_format = cfg->prompt_format == CANARY_PROMPT_CANARY ? "canary" : "canary2";
  info->tokenizer_kind = cfg->tokenizer_kind == CANARY_TOKENIZER_AGGREGATE ? "aggregate" : "unified";
  info->languages = canary_tokenizer_languages (m->tokenizer);
  info->sample_rate = cfg->sample_rate;
  info->n_mels = cfg->n_mels;
  info->enc_layers = cfg->enc_layers;
  info->enc_d_model = cfg->enc_d_model;
  info->dec_layers = cfg->dec_layers;
  info->dec_hidden = cfg->dec_hidden;
  info->vocab_size = V;
  info->max_seq_len = canary_decoder_max_seq_len (m->decoder);
  /* The default beam: the config's; capped on a GPU at the beam its states are planned for, so a
   * model asking for more still runs by default. */
  info->beam_size = CLAMP (m->config->beam_size, 1, CANARY_MAX_BEAM);
  if (info->device == CANARY_DEVICE_CUDA)
    info->beam_size = MIN (info->beam_size, canary_gpu_max_beam (m->opts.max_beam));
  info->weight_bytes = encoder_weight_bytes (m->ckpt) - 2 * canary_encoder_f16_elems (m->encoder)
      + canary_decoder_weight_bytes (m->decoder);
  info->copied_weight_bytes = canary_encoder_weight_bytes (m->encoder) + canary_decoder_owned_bytes (m->decoder);
  m->backend = info->device == CANARY_DEVICE_CUDA ? canary_backend_cuda () : &canary_backend_cpu;
  const canary_backend_args args = backend_args (m);
  m->backend_model = m->backend->model_new (&args, error);
  if (!m->backend_model)
    goto prefix_path;
  info->device_weight_bytes = m->backend->model_device_bytes (m->backend_model);
  info->load_ms = canary_now_ms () - t0;
  return TRUE;

prefix_path:
  /* Stage errors name the member/key; add which file they came from. */
  if (error && *error)
    g_prefix_error (error, "%s: ", m->path);
  return FALSE;
}

/* One model per file, backend and (on the GPU, where states are sized from them) device id and
 * state limits. */
static char *
make_cache_key (const char *path, canary_device device, canary_precision precision,
    const canary_model_options *o)
{
  char *abs = g_canonicalize_filename (path, NULL);
  char *real = realpath (abs, NULL);  /* symlinks to one file share one model */
  const gboolean gpu = device == CANARY_DEVICE_CUDA;
  char *key = g_strdup_printf ("%s|%d|%d|%d|%d|%d", real ? real : abs, device, precision,
      gpu ? o->gpu_device_id : 0, gpu ? o->max_window_seconds : 0, gpu ? o->max_beam : 0);
  free (real);
  g_free (abs);
  return key;
}

/* Loads (or takes from the cache) the model for an already resolved backend. */
static canary_model *
load_resolved (const char *path, const canary_model_options *opts, canary_device device,
    canary_precision precision, GError **error)
{
  char *key = make_cache_key (path, device, precision, opts);
  g_mutex_lock (&cache_lock);
  if (!cache)
    cache = g_hash_table_new (g_str_hash, g_str_equal);
  canary_model *m = g_hash_table_lookup (cache, key);
  if (m) {
    m->ref_count++;
    g_mutex_unlock (&cache_lock);
    g_free (key);
    CANARY_DEBUG ("model %s taken from the cache (%d users)", path, m->ref_count);
    return m;
  }

  /* Loading holds the cache lock: a second instance asking for the same file waits and then
   * shares the result instead of mapping and binding it twice (one copy of the weights per GPU). */
  m = g_new0 (canary_model, 1);
  m->ref_count = 1;
  m->cache_key = key;
  m->opts = *opts;
  m->path = g_strdup (path);
  m->info.device = device;
  m->info.precision = precision;
  if (!model_build (m, error)) {
    g_mutex_unlock (&cache_lock);
    model_free (m);
    return NULL;
  }
  g_hash_table_insert (cache, m->cache_key, m);
  g_mutex_unlock (&cache_lock);
  CANARY_INFO ("loaded %s in %.1f ms: %s prompt, %s tokenizer, %d+%d layers, V=%d, %s %s",
      path, m->info.load_ms, m->info.prompt_format, m->info.tokenizer_kind, m->info.enc_layers,
      m->info.dec_layers, m->info.vocab_size, device == CANARY_DEVICE_CUDA ? "cuda" : "cpu",
      precision == CANARY_PRECISION_FP16 ? "fp16" : "fp32");
  return m;
}

canary_model *
canary_model_load (const char *path, const canary_model_options *opts, GError **error)
{
  canary_model_options defaults;
  canary_device device;
  canary_precision precision;

  g_return_val_if_fail (error == NULL || *error == NULL, NULL);
  if (!path || !*path) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT, "no model path given");
    return NULL;
  }
  if (!opts) {
    canary_model_options_init (&defaults);
    opts = &defaults;
  }
  if (!resolve_backend (path, opts, &device, &precision, error))
    return NULL;
  if (opts->n_threads > 0)
    openblas_set_num_threads (opts->n_threads);  /* process-wide, as canary.h says */

  GError *gpu_error = NULL;
  canary_model *m = load_resolved (path, opts, device, precision, &gpu_error);
  /* device=auto: a GPU that cannot take the model (out of memory, a CUDA failure) means the CPU,
   * with a warning; file errors are reported as they are. */
  if (!m && device == CANARY_DEVICE_CUDA && opts->device == CANARY_DEVICE_AUTO
      && (g_error_matches (gpu_error, CANARY_ERROR, CANARY_ERROR_DEVICE)
          || g_error_matches (gpu_error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY))
      && opts->precision != CANARY_PRECISION_FP16) {
    CANARY_WARN ("device=auto: the GPU cannot run %s (%s); falling back to the CPU", path, gpu_error->message);
    g_clear_error (&gpu_error);
    m = load_resolved (path, opts, CANARY_DEVICE_CPU, cpu_precision (path, opts->precision), &gpu_error);
  }
  if (!m)
    g_propagate_error (error, gpu_error);
  return m;
}

canary_model *
canary_model_ref (canary_model *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  g_mutex_lock (&cache_lock);
  model->ref_count++;
  g_mutex_unlock (&cache_lock);
  return model;
}

void
canary_model_unref (canary_model *model)
{
  if (!model)
    return;
  g_mutex_lock (&cache_lock);
  gboolean last = --model->ref_count == 0;
  if (last)
    g_hash_table_remove (cache, model->cache_key);
  g_mutex_unlock (&cache_lock);
  if (last)
    model_free (model);
}

const canary_model_info *
canary_model_get_info (const canary_model *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  return &model->info;
}

const char *
canary_model_lookup_language (const canary_model *model, const char *code)
{
  g_return_val_if_fail (model != NULL, NULL);
  return canary_tokenizer_lookup_language (model->tokenizer, code);
}

/* ---------------------------------------------------------------------------------------------
 * Per-stream state
 * --------------------------------------------------------------------------------------------- */

canary_state *
canary_state_new (canary_model *model, GError **error)
{
  g_return_val_if_fail (model != NULL, NULL);
  canary_state *st = g_new0 (canary_state, 1);
  st->model = canary_model_ref (model);
  const canary_backend_args args = backend_args (model);
  st->backend_state = model->backend->state_new (model->backend_model, &args, error);
  if (!st->backend_state) {
    canary_state_free (st);
    return NULL;
  }
  return st;
}

void
canary_state_free (canary_state *state)
{
  if (!state)
    return;
  if (state->backend_state)
    state->model->backend->state_free (state->backend_state);
  g_free (state->mel_buf);
  canary_model_unref (state->model);
  g_free (state);
}

gboolean
canary_state_device_memory (canary_state *state, canary_device_memory *out, GError **error)
{
  g_return_val_if_fail (state != NULL && out != NULL, FALSE);
  return state->model->backend->device_memory (state->backend_state, out, error);
}

void
canary_state_cancel (canary_state *state)
{
  g_return_if_fail (state != NULL);
  g_atomic_int_set (&state->cancel, 1);
}

static gboolean
ensure_mel_buffer (canary_state *st, gsize floats, GError **error)
{
  if (floats <= st->mel_cap)
    return TRUE;
  float *buf = g_try_new (float, floats);
  if (!buf) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "cannot allocate %" G_GSIZE_FORMAT " bytes for mel features", floats * sizeof (float));
    return FALSE;
  }
  g_free (st->mel_buf);
  st->mel_buf = buf;
  st->mel_cap = floats;
  return TRUE;
}

/* ---------------------------------------------------------------------------------------------
 * Transcription
 * --------------------------------------------------------------------------------------------- */

/* The beam size a decode runs with: the caller's, or for CANARY_BEAM_FROM_MODEL the model's
 * (info.beam_size: the config's decoding.beam.beam_size, which NeMo's transcribe() decodes with). */
static int
resolve_beam_size (const canary_model *m, int beam_size)
{
  return beam_size == CANARY_BEAM_FROM_MODEL ? m->info.beam_size : beam_size;
}

static gboolean
check_decode_options (const canary_model *m, const canary_decode_options *o, GError **error)
{
  if (o->beam_size < 1 || o->beam_size > CANARY_MAX_BEAM) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "beam size %d out of range [1, %d]", o->beam_size, CANARY_MAX_BEAM);
    return FALSE;
  }
  if (!(o->length_penalty >= 0.0) || !isfinite (o->length_penalty)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "length penalty %g must be finite and >= 0", o->length_penalty);
    return FALSE;
  }
  if (o->task != CANARY_TASK_TRANSCRIBE && o->task != CANARY_TASK_TRANSLATE) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT, "unknown task %d", o->task);
    return FALSE;
  }
  if (m->config->prompt_format == CANARY_PROMPT_CANARY && (o->itn || o->diarize)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "itn and diarize need a canary2-format model; %s uses the canary format", m->path);
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_audio (const float *samples, gsize n, int rate, GError **error)
{
  if (n > (gsize) CANARY_MAX_WINDOW_SECONDS * rate) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO,
        "window of %.1f s is longer than the %d s one call accepts; split the audio",
        (double) n / rate, CANARY_MAX_WINDOW_SECONDS);
    return FALSE;
  }
  for (gsize i = 0; i < n; i++) {
    if (!isfinite (samples[i])) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO,
          "sample %" G_GSIZE_FORMAT " is not a finite number (%f)", i, samples[i]);
      return FALSE;
    }
  }
  return TRUE;
}

static GArray *
build_prompt (const canary_model *m, const canary_decode_options *o, GError **error)
{
  canary_prompt_options p = {
    .source_lang = o->source_lang ? o->source_lang : "en",
    .target_lang = o->target_lang,
    .task = o->task == CANARY_TASK_TRANSLATE ? "translate" : "transcribe",
    .pnc = o->pnc ? 1 : 0,
    .itn = o->itn ? 1 : 0,
    .timestamp = 0,
    .diarize = o->diarize ? 1 : 0,
    .emotion = NULL,
  };
  GArray *prompt = canary_tokenizer_build_prompt (m->tokenizer, m->config->prompt_format, &p, error);
  if (prompt && prompt->len > CANARY_MAX_PROMPT_TOKENS) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "prompt of %u tokens is longer than %d", prompt->len, CANARY_MAX_PROMPT_TOKENS);
    g_array_unref (prompt);
    return NULL;
  }
  return prompt;
}

/* Python's str.isspace for one code point: what NeMo's str.strip() removes. */
static gboolean
py_isspace (gunichar c)
{
  return g_unichar_isspace (c) || (c >= 0x1c && c <= 0x1f) || c == 0x85;
}

/* NeMo's single-file transcribe() strips the text of each chunk (chunking_utils.merge_all_hypotheses:
 * hyp.text.strip()), which drops the leading space an aggregate tokenizer's first "▁" piece gives.
 * Done in place on valid UTF-8 (the tokenizer's output). */
static char *
strip_whitespace (char *text)
{
  char *start = text;
  while (*start && py_isspace (g_utf8_get_char (start)))
    start = g_utf8_next_char (start);
  char *end = start + strlen (start);
  while (end > start) {
    char *prev = g_utf8_prev_char (end);
    if (!py_isspace (g_utf8_get_char (prev)))
      break;
    end = prev;
  }
  *end = '\0';
  memmove (text, start, (gsize) (end - start) + 1);
  return text;
}

/* NeMo's beam-search settings for one window; the generation cap uses the padded encoder length
 * t_enc (the tensor size), as NeMo's generator does. */
static canary_beam_options
beam_options (canary_state *st, const canary_decode_options *opts, int t_enc)
{
  const canary_model *m = st->model;
  const canary_beam_options bo = {
    .beam_size = opts->beam_size,
    .length_penalty = opts->length_penalty,
    .max_len_total = canary_beam_max_len_total (m->info.max_seq_len, t_enc,
        opts->max_generation_delta == CANARY_DELTA_FROM_MODEL ? m->config->max_generation_delta
                                                              : opts->max_generation_delta),
    .eos_id = m->eos_id,
    .pad_id = m->pad_id,
    .cancel = &st->cancel,
  };
  return bo;
}

canary_result *
canary_transcribe (canary_state *st, const float *samples, gsize n_samples,
    const canary_decode_options *opts, GError **error)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (samples != NULL || n_samples == 0, NULL);
  canary_model *m = st->model;
  canary_decode_options resolved;
  if (opts)
    resolved = *opts;
  else
    canary_decode_options_init (&resolved);
  resolved.beam_size = resolve_beam_size (m, resolved.beam_size);
  opts = &resolved;
  g_atomic_int_set (&st->cancel, 0);
  double t_start = canary_now_ms ();

  if (!check_decode_options (m, opts, error) || !check_audio (samples, n_samples, m->info.sample_rate, error))
    return NULL;
  GArray *prompt = build_prompt (m, opts, error);
  if (!prompt)
    return NULL;

  canary_result *res = g_new0 (canary_result, 1);
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  float *padded = NULL;
  gboolean ok = FALSE;

  /* 1. NeMo's transcribe path pads clips shorter than pad_min_duration (1 s) on both sides. */
  gsize n = canary_pad_short_audio (samples, n_samples, m->info.sample_rate,
      m->config->pad_min_duration, &padded);
  const float *pcm = padded ? padded : samples;

  /* 2. Features. */
  gsize frames = canary_mel_n_frames (m->mel, n);
  gsize floats;
  int n_valid;
  if (!canary_mul_size (frames, (gsize) canary_mel_n_mels (m->mel), &floats) ||
      !ensure_mel_buffer (st, floats, error))
    goto out;
  if (!canary_mel_compute (m->mel, pcm, n, st->mel_buf, &n_valid, error))
    goto out;
  /* Finite samples far outside [-1, 1] can overflow the FP32 power spectrum; say so rather than
   * let inf/NaN features run through the model and come out as arbitrary tokens. */
  for (gsize i = 0; i < floats; i++) {
    if (!isfinite (st->mel_buf[i])) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO,
          "audio amplitude overflows the features (samples are expected in [-1, 1])");
      goto out;
    }
  }
  double t_mel = canary_now_ms ();

  /* 3. Encoder, and the decoder's cross-attention K/V once per window. */
  const canary_backend *be = m->backend;
  int t_enc, enc_len;
  if (!be->encode (st->backend_state, st->mel_buf, (int) frames, n_valid, opts->beam_size, &t_enc, &enc_len,
          error))
    goto out;
  double t_enc_done = canary_now_ms ();
  if (g_atomic_int_get (&st->cancel)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_CANCELLED, "transcription cancelled");
    goto out;
  }

  /* 4. NeMo's beam search. The generation cap uses the padded encoder length (the tensor size),
   * as NeMo's generator does. */
  const canary_beam_options bo = beam_options (st, opts, t_enc);
  if (!be->decode (st->backend_state, (const gint32 *) prompt->data, (int) prompt->len, &bo, ids, &res->score,
          &res->n_decoder_steps, error))
    goto out;
  double t_dec = canary_now_ms ();
  res->mel_ms = t_mel - t_start;
  res->encoder_ms = t_enc_done - t_mel;
  res->decoder_ms = t_dec - t_enc_done;

  res->n_tokens = ids->len;
  res->tokens = (gint32 *) g_array_free (ids, FALSE);
  ids = NULL;
  res->text = strip_whitespace (canary_tokenizer_decode (m->tokenizer, res->tokens, res->n_tokens));
  res->n_samples = n_samples;
  res->total_ms = canary_now_ms () - t_start;
  CANARY_DEBUG ("window of %" G_GSIZE_FORMAT " samples: %zu tokens, mel %.1f ms, encoder %.1f ms, "
      "decoder %.1f ms (%d steps)", n_samples, res->n_tokens, res->mel_ms, res->encoder_ms,
      res->decoder_ms, res->n_decoder_steps);
  ok = TRUE;

out:
  g_free (padded);
  g_array_unref (prompt);
  if (ids)
    g_array_unref (ids);
  if (!ok) {
    canary_result_free (res);
    return NULL;
  }
  return res;
}

void
canary_result_free (canary_result *result)
{
  if (!result)
    return;
  g_free (result->text);
  g_free (result->tokens);
  g_free (result);
}
