/* gst-canary — the CUDA decoder's calls for the shared beam search and for teacher forcing:
 * tokens and positions up, the step's launch list, logits (FP32) down; beam reordering on the
 * device. Same contracts and checks as decoder.c.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cuda/internal.h"

#include <string.h>

#include "canary.h"
#include "cuda/device.h"
#include "cpu/decoder.h"

static gboolean
check_call (const canary_cuda_state *st, const gint32 *tokens, int n_beams, int n_tokens, int start_pos,
    GError **error)
{
  const canary_cuda_dims *m = &st->model->w->dims;
  /* the arena bounds rows (hypotheses × tokens), not tokens on their own */
  const canary_step_limits lim = {
    .max_beam = st->plan.max_beam, .max_tokens = st->plan.max_rows, .max_rows = st->plan.max_rows,
    .max_len = m->max_len, .V = m->V,
    .cache_len = st->length, .cache_beams = st->n_beams, .has_memory = st->has_memory,
  };
  return canary_decoder_check_step ("CUDA decoder step", &lim, tokens, n_beams, n_tokens, start_pos, error);
}

static gboolean
upload_slots (canary_cuda_state *st, GError **error)
{
  return canary_cuda_ok (cudaMemcpyAsync (cuda_region (st, CR_SLOT), st->h_slot, sizeof (int) * st->plan.max_beam,
      cudaMemcpyHostToDevice, st->stream), "uploading the cache slots", error);
}

gboolean
canary_cuda_run_call (canary_cuda_state *st, const gint32 *tokens, int n_beams, int n_tokens, int start_pos, gboolean all_rows,
    gboolean argmax, GError **error)
{
  if (!check_call (st, tokens, n_beams, n_tokens, start_pos, error))
    return FALSE;
  if (start_pos == 0) {
    for (int b = 0; b < st->plan.max_beam; b++)
      st->h_slot[b] = b;
    st->n_beams = n_beams;
    if (!upload_slots (st, error))
      return FALSE;
  }
  memcpy (st->h_tokens, tokens, sizeof (int) * n_beams * n_tokens);
  st->h_params->pos = start_pos;
  g_array_set_size (st->launches, 0);
  if (!canary_cuda_ok (cudaSetDevice (st->model->device), "selecting the GPU", error)
      || !canary_cuda_ok (cudaMemcpyAsync (cuda_region (st, CR_TOKENS), st->h_tokens, sizeof (int) * n_beams * n_tokens,
          cudaMemcpyHostToDevice, st->stream), "uploading the tokens", error)
      || !canary_cuda_upload_params (st, error)
      || !canary_cuda_step_launches (st->model->w, &st->plan, (guintptr) st->model->dev, (guintptr) st->arena, n_beams,
          n_tokens, all_rows, argmax, st->launches, error)
      || !canary_cuda_exec_list (st, st->launches, error))
    return FALSE;
  st->length = start_pos + n_tokens;
  return TRUE;
}

/* The FP32 logits of `rows` rows to the host (the one synchronisation of a beam step). */
static gboolean
read_logits (canary_cuda_state *st, int rows, float *logits, GError **error)
{
  const gsize bytes = (gsize) rows * st->model->w->dims.V * sizeof (float);
  return canary_cuda_ok (cudaMemcpyAsync (logits, cuda_region (st, CR_LOGITS), bytes, cudaMemcpyDeviceToHost,
      st->stream), "reading the logits", error)
      && canary_cuda_ok (cudaStreamSynchronize (st->stream), "running the decoder step", error)
      && canary_cuda_check_finite (st, cuda_region (st, CR_DX), (gsize) rows * st->model->w->dims.H,
          "the decoder step", -1, error);
}

gboolean
canary_cuda_step (gpointer state, const gint32 *tokens, int n_beams, int n_tokens, int start_pos, float *logits,
    GError **error)
{
  canary_cuda_state *st = state;
  g_return_val_if_fail (st && tokens && logits, FALSE);
  return canary_cuda_run_call (st, tokens, n_beams, n_tokens, start_pos, FALSE, FALSE, error)
      && read_logits (st, n_beams, logits, error);
}

gboolean
canary_cuda_step_all (canary_cuda_state *st, const gint32 *tokens, int n_tokens, int start_pos, float *logits,
    GError **error)
{
  g_return_val_if_fail (st && tokens && logits, FALSE);
  return canary_cuda_run_call (st, tokens, 1, n_tokens, start_pos, TRUE, FALSE, error)
      && read_logits (st, n_tokens, logits, error);
}

/* decoder.c's reorder: the first child of a parent keeps its slot, further children get a free
 * slot and a device copy of the parent's cache (positions [0, length) of every layer). */
gboolean
canary_cuda_reorder (gpointer state, const int *parent, int n_beams, GError **error)
{
  canary_cuda_state *st = state;
  g_return_val_if_fail (st && parent, FALSE);
  const canary_cuda_dims *m = &st->model->w->dims;
  if (n_beams < 1 || n_beams > st->plan.max_beam || st->n_beams < 1) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "CUDA decoder reorder: %d hypotheses (state has %d, at most %d)", n_beams, st->n_beams, st->plan.max_beam);
    return FALSE;
  }
  for (int b = 0; b < n_beams; b++) {
    if (parent[b] < 0 || parent[b] >= st->n_beams) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
          "CUDA decoder reorder: parent %d of hypothesis %d outside 0..%d", parent[b], b, st->n_beams - 1);
      return FALSE;
    }
  }
  const gsize es = m->dtype == CANARY_CUDA_F16 ? 2 : 4;
  const gsize slot_bytes = (gsize) m->max_len * m->H * es, used = (gsize) st->length * m->H * es;
  const gsize layer_bytes = (gsize) st->plan.max_beam * slot_bytes;
  canary_plan_slots (st->h_slot, parent, n_beams, st->plan.max_beam, st->claimed, st->slot_next);
  for (int b = 0; b < n_beams; b++) {
    const int from = st->h_slot[parent[b]], to = st->slot_next[b];
    if (to == from)
      continue;
    for (int j = 0; j < m->dec_layers; j++) {
      for (int kv = 0; kv < 2; kv++) {
        guint8 *base = (guint8 *) cuda_region (st, kv ? CR_SELF_V : CR_SELF_K) + (gsize) j * layer_bytes;
        if (used && !canary_cuda_ok (cudaMemcpyAsync (base + (gsize) to * slot_bytes, base + (gsize) from * slot_bytes,
                used, cudaMemcpyDeviceToDevice, st->stream), "copying a beam's cache", error))
          return FALSE;
      }
    }
  }
  memcpy (st->h_slot, st->slot_next, sizeof (int) * n_beams);
  st->n_beams = n_beams;
  return upload_slots (st, error);
}

void
canary_cuda_step_ops (canary_cuda_state *st, canary_step_ops *ops)
{
  const canary_cuda_dims *m = &st->model->w->dims;
  ops->step = canary_cuda_step;
  ops->reorder = canary_cuda_reorder;
  ops->vocab = m->V;
  ops->max_beam = st->plan.max_beam;
  ops->max_seq_len = m->max_len;
  ops->pad_id = st->pad_id;
}
