/* gst-canary — the CUDA backend's table (backend.h) over cuda/backend.h.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "backend.h"

#include <string.h>

#include "cuda/backend.h"
#include "cuda/device.h"

/* Arena default (canary_model_options.max_window_seconds): the longest window the released
 * models were trained on (the beam's: canary_gpu_max_beam). */
#define CUDA_DEFAULT_WINDOW_SECONDS 40

static gboolean
cuda_probe (int device_id, GError **error)
{
  return canary_cuda_use_device (device_id, error);
}

static gpointer
cuda_model_new (const canary_backend_args *a, GError **error)
{
  return canary_cuda_model_new (a->config, a->ckpt,
      a->precision == CANARY_PRECISION_FP32 ? CANARY_CUDA_F32 : CANARY_CUDA_F16, a->opts->gpu_device_id, error);
}

static void
cuda_model_free (gpointer model)
{
  canary_cuda_model_free (model);
}

static guint64
cuda_model_device_bytes (gpointer model)
{
  return canary_cuda_model_device_bytes (model);
}

typedef struct {
  canary_cuda_model *model;
  canary_cuda_state *cuda;
} cuda_state;

static void
cuda_state_free (gpointer state)
{
  cuda_state *st = state;
  if (!st)
    return;
  canary_cuda_state_free (st->cuda);
  g_free (st);
}

static gpointer
cuda_state_new (gpointer model, const canary_backend_args *a, GError **error)
{
  /* The arena is sized once for the longest window and the largest beam of this model's
   * options: nothing is allocated per window or per token. */
  const canary_model_options *o = a->opts;
  const int secs = o->max_window_seconds > 0 ? MIN (o->max_window_seconds, CANARY_MAX_WINDOW_SECONDS)
                                             : CUDA_DEFAULT_WINDOW_SECONDS;
  const int beam = canary_gpu_max_beam (o->max_beam);
  const int frames = (int) canary_mel_n_frames (a->mel, (gsize) secs * a->sample_rate);
  cuda_state *st = g_new0 (cuda_state, 1);
  st->model = model;
  st->cuda = canary_cuda_state_new (model, frames, beam, CANARY_MAX_PROMPT_TOKENS, a->pad_id, error);
  if (!st->cuda) {
    g_free (st);
    return NULL;
  }
  return st;
}

static gboolean
cuda_encode (gpointer state, const float *mel, int n_frames, int n_valid, int beam, int *t_enc,
    int *enc_len, GError **error)
{
  cuda_state *st = state;
  const canary_cuda_plan *plan = canary_cuda_state_plan (st->cuda);
  if (beam > plan->max_beam) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "beam size %d is larger than the %d this CUDA state was sized for (canary_model_options.max_beam)",
        beam, plan->max_beam);
    return FALSE;
  }
  return canary_cuda_encode (st->cuda, mel, n_frames, n_valid, t_enc, enc_len, error);
}

/* Beam 1 with the device argmax and the captured step; wider beams through the shared search. */
static gboolean
cuda_decode (gpointer state, const gint32 *prompt, int P, const canary_beam_options *opt, GArray *out_ids,
    double *out_score, int *out_steps, GError **error)
{
  cuda_state *st = state;
  if (opt->beam_size == 1)
    return canary_cuda_greedy (st->cuda, prompt, P, opt, TRUE, out_ids, out_score, out_steps, error);
  canary_step_ops ops;
  canary_cuda_step_ops (st->cuda, &ops);
  return canary_beam_search_ops (&ops, st->cuda, prompt, P, opt, out_ids, out_score, out_steps, error);
}

static gboolean
cuda_device_memory (gpointer state, canary_device_memory *out, GError **error)
{
  cuda_state *st = state;
  guint64 free_b = 0, total = 0;
  memset (out, 0, sizeof *out);
  if (!canary_cuda_state_mem_info (st->cuda, &free_b, &total, error))
    return FALSE;
  out->weight_bytes = canary_cuda_model_device_bytes (st->model);
  out->arena_bytes = canary_cuda_state_device_bytes (st->cuda);
  out->engine_bytes = out->weight_bytes + out->arena_bytes;
  out->process_used = total - free_b;
  out->device_total = total;
  return TRUE;
}

static const canary_backend cuda_backend = {
  .name = "cuda",
  .probe = cuda_probe,
  .model_new = cuda_model_new,
  .model_free = cuda_model_free,
  .model_device_bytes = cuda_model_device_bytes,
  .state_new = cuda_state_new,
  .state_free = cuda_state_free,
  .encode = cuda_encode,
  .decode = cuda_decode,
  .device_memory = cuda_device_memory,
};

const canary_backend *
canary_backend_cuda (void)
{
  return &cuda_backend;
}
