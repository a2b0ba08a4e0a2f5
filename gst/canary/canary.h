/* gst-canary — the Canary speech-to-text engine's public API.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The engine reads NVIDIA NeMo `.nemo` checkpoints of the Canary family (EncDecMultiTaskModel)
 * directly and transcribes 16 kHz mono float audio. It has no GStreamer dependency.
 *
 * Objects:
 *   canary_model  config, tokenizer and weights. Read-only after load, reference counted, and shared
 *                 through a process-wide cache keyed by (path, device, precision): loading the same
 *                 file twice returns the same object.
 *   canary_state  per-stream scratch (activations, decoder K/V caches). One per thread/stream.
 *
 * Thread safety: canary_model_* functions are thread-safe (the cache is locked; a loaded model is
 * immutable). A canary_state must be used by one thread at a time; different states of the same
 * model may run concurrently. canary_set_log_func is process-wide and thread-safe.
 *
 * Errors: every fallible function takes a GError** and reports CANARY_ERROR codes; nothing aborts
 * on bad input.
 *
 * Environment variables the engine reads (none is needed in normal use):
 *   CANARY_AUTO_DEVICE=cpu        device=auto stays on the CPU even where a GPU is usable
 *                                 (the CPU test suites set it)
 *   CANARY_ENCODER_SIMD=0         the CPU encoder uses the portable cblas path instead of its
 *                                 AVX-512 kernels (the portable test runs set it)
 *   CANARY_CUDA_CHECK_FINITE=1    the CUDA backend checks every activation for inf/NaN (slow;
 *                                 debugging FP16 overflow)
 *   OpenBLAS's own (OPENBLAS_NUM_THREADS, OPENBLAS_CORETYPE): see README.md.
 *
 * Example:
 *
 *   GError *err = NULL;
 *   canary_model_options mo;
 *   canary_model_options_init (&mo);
 *   canary_model *m = canary_model_load ("canary-180m-flash.nemo", &mo, &err);
 *   if (!m) { g_printerr ("%s\n", err->message); g_error_free (err); return 1; }
 *   canary_state *st = canary_state_new (m, &err);
 *   canary_decode_options dopt;
 *   canary_decode_options_init (&dopt);
 *   dopt.source_lang = "en";
 *   canary_result *r = canary_transcribe (st, pcm, n_samples, &dopt, &err);
 *   if (r) { g_print ("%s\n", r->text); canary_result_free (r); }
 *   canary_state_free (st);
 *   canary_model_unref (m);
 */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define CANARY_ERROR (canary_error_quark ())
GQuark canary_error_quark (void);

typedef enum {
  CANARY_ERROR_NOT_FOUND,        /* file or member missing */
  CANARY_ERROR_FORMAT,           /* corrupt, truncated or foreign file */
  CANARY_ERROR_UNSUPPORTED,      /* valid file, but a model/feature this engine does not run */
  CANARY_ERROR_INVALID_ARGUMENT, /* bad option: unknown language, bad beam size, ... */
  CANARY_ERROR_INVALID_AUDIO,    /* NaN/inf samples, too long a window */
  CANARY_ERROR_OUT_OF_MEMORY,    /* host or device allocation failed (message has byte counts) */
  CANARY_ERROR_DEVICE,           /* no GPU, driver error, CUDA failure */
  CANARY_ERROR_CANCELLED,
} canary_error_code;

typedef enum {
  CANARY_DEVICE_AUTO,
  CANARY_DEVICE_CPU,
  CANARY_DEVICE_CUDA,
} canary_device;

typedef enum {
  CANARY_PRECISION_AUTO,  /* fp16 on CUDA; on the CPU fp16 for models larger than the last-level cache (where the
                           * FP16 kernels have SIMD), else fp32 (canary_cpu_auto_precision) */
  CANARY_PRECISION_FP32,
  CANARY_PRECISION_FP16,
} canary_precision;

typedef enum {
  CANARY_LOG_ERROR,
  CANARY_LOG_WARNING,
  CANARY_LOG_INFO,
  CANARY_LOG_DEBUG,
} canary_log_level;

typedef void (*canary_log_func) (canary_log_level level, const char *message, gpointer user_data);

/* Routes the engine's log lines (default: dropped). Process-wide. */
void canary_set_log_func (canary_log_func func, gpointer user_data);

typedef struct _canary_model canary_model;
typedef struct _canary_state canary_state;

typedef struct {
  canary_device device;
  canary_precision precision;
  int gpu_device_id;
  /* OpenBLAS threads on the CPU; 0 = leave OpenBLAS's setting. PROCESS-WIDE: OpenBLAS has one
   * thread pool per process, so a load with n_threads > 0 sets it for every model and state in
   * the process (the last such load wins). */
  int n_threads;
  /* CUDA: the workspace of each state is sized once for the longest window and the largest beam
   * it will see (0 = 40 s and beam 4). Longer windows / larger beams are refused with a clear
   * error rather than allocating on the hot path. Part of the cache key on the GPU: loads with
   * other limits get their own model (and weights). */
  int max_window_seconds;
  int max_beam;
} canary_model_options;

void canary_model_options_init (canary_model_options *opts);

/* Loads (or takes from the cache) the model at `path`: a .nemo file or an extracted directory. */
canary_model *canary_model_load (const char *path, const canary_model_options *opts, GError **error);
canary_model *canary_model_ref (canary_model *model);
void canary_model_unref (canary_model *model);

typedef struct {
  const char *path;
  const char *prompt_format;      /* "canary" or "canary2" */
  const char *tokenizer_kind;     /* "aggregate" or "unified" */
  const char *const *languages;   /* NULL-terminated language codes */
  int sample_rate;
  int n_mels;
  int enc_layers, enc_d_model;
  int dec_layers, dec_hidden;
  int vocab_size;                 /* V of the output head */
  int max_seq_len;
  int beam_size;                  /* what CANARY_BEAM_FROM_MODEL decodes with (the config's
                                   * decoding.beam.beam_size; on a GPU capped at max_beam) */
  canary_device device;           /* resolved */
  canary_precision precision;     /* resolved */
  guint64 weight_bytes;           /* bytes of weights the model reads (shared tensors once) */
  guint64 copied_weight_bytes;    /* of which held as copies beyond the file mapping (converted
                                   * dtypes, BatchNorm folded into the depthwise conv) */
  guint64 device_weight_bytes;    /* CUDA: the one device allocation holding the weights; 0 on CPU */
  double load_ms;
} canary_model_info;

const canary_model_info *canary_model_get_info (const canary_model *model);

/* Normalises "en", "en-US", "EN_us", "<|en|>" to the model's code ("en"); NULL if unknown. */
const char *canary_model_lookup_language (const canary_model *model, const char *code);

typedef enum {
  CANARY_TASK_TRANSCRIBE,
  CANARY_TASK_TRANSLATE,
} canary_task;

typedef struct {
  const char *source_lang;   /* default "en" */
  const char *target_lang;   /* default: source_lang for transcribe */
  canary_task task;
  gboolean pnc;              /* default TRUE */
  gboolean itn;              /* canary2 only, default FALSE */
  gboolean diarize;          /* canary2 only, default FALSE */
  /* (No timestamps option: canary2's <|timestamp|> prompt makes the model emit time tokens, which
   * this engine does not turn into times; the element times text by its windows instead.) */
  int beam_size;             /* default CANARY_BEAM_FROM_MODEL: the model config's
                              * decoding.beam.beam_size, as NeMo's transcribe() uses it (1 in the
                              * released models: NeMo's default path; on a GPU capped at the
                              * model's max_beam) */
  double length_penalty;     /* default 0 (what NeMo effectively uses) */
  int max_generation_delta;  /* cap = min(max_seq_len, T_enc + delta) when delta >= 0; default
                              * CANARY_DELTA_FROM_MODEL: the model config's value (50 in the
                              * released models, -1 = no cap when absent, as NeMo) */
} canary_decode_options;

#define CANARY_DELTA_FROM_MODEL G_MININT
#define CANARY_BEAM_FROM_MODEL 0

void canary_decode_options_init (canary_decode_options *opts);

canary_state *canary_state_new (canary_model *model, GError **error);
void canary_state_free (canary_state *state);

/* GPU memory as the CUDA backend sees it (all zero on the CPU backend). */
typedef struct {
  guint64 weight_bytes;     /* the model's weight allocation (shared by every state) */
  guint64 arena_bytes;      /* this state's workspace arena */
  guint64 engine_bytes;     /* weights + arena: what the engine allocated for this stream */
  guint64 process_used;     /* device memory in use on the GPU (cudaMemGetInfo: total − free) */
  guint64 device_total;
} canary_device_memory;

gboolean canary_state_device_memory (canary_state *state, canary_device_memory *out, GError **error);

/* Asks a running canary_transcribe on this state to stop at its next step (thread-safe);
 * it then fails with CANARY_ERROR_CANCELLED. The flag clears when the next call starts. */
void canary_state_cancel (canary_state *state);

typedef struct {
  char *text;                /* as NeMo's transcribe() returns it: ids_to_text, then str.strip() */
  gint32 *tokens;            /* output ids, prompt and trailing EOS/PAD stripped */
  gsize n_tokens;
  double score;              /* sum of log-probs of the chosen hypothesis */
  gsize n_samples;           /* audio samples consumed (before < 1 s padding) */
  double mel_ms, encoder_ms, decoder_ms, total_ms;
  int n_decoder_steps;
} canary_result;

/* Transcribes one window of 16 kHz mono samples in [-1, 1]. Audio shorter than 1 s is padded to
 * 1 s as NeMo does; non-finite samples are rejected (CANARY_ERROR_INVALID_AUDIO). */
canary_result *canary_transcribe (canary_state *state, const float *samples, gsize n_samples,
    const canary_decode_options *opts, GError **error);
void canary_result_free (canary_result *result);

G_END_DECLS
