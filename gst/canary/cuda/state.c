/* gst-canary — the CUDA state: the arena, the stream, cuBLASLt, pinned staging and the
 * positional table, all set up once.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cuda/internal.h"

#include <math.h>
#include <string.h>

#include "canary.h"
#include "cuda/device.h"
#include "util.h"

/* The host mirror of the device structs (cuda/launch.h) must match the kernels' layout. */
G_STATIC_ASSERT (sizeof (canary_cuda_step_params) == sizeof (ck_step_params));
G_STATIC_ASSERT (sizeof (canary_cuda_choice) == sizeof (ck_choice));

/* The encoder's positional table (canary_cuda_pos_table), stored once in the activation type. */
static gboolean
upload_pos_table (canary_cuda_state *st, GError **error)
{
  const canary_cuda_dims *m = &st->model->w->dims;
  const int D = m->d, rows = 2 * st->plan.t_max - 1;
  const gsize n = (gsize) rows * D;
  float *tab = g_try_new (float, n);
  if (!tab) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY, "cannot allocate %" G_GSIZE_FORMAT
        " bytes for the positional table", n * 4);
    return FALSE;
  }
  canary_cuda_pos_table (st->plan.t_max, D, tab);
  /* Through the FP32 staging area of the features (the largest FP32 region), in slices. */
  float *stage = cuda_region (st, CR_MEL);
  const gsize cap = st->plan.region[CR_MEL].bytes / 4;
  gboolean ok = TRUE;
  for (gsize at = 0; ok && at < n; at += cap) {
    const gsize len = MIN (cap, n - at);
    ok = canary_cuda_ok (cudaMemcpyAsync (stage, tab + at, len * 4, cudaMemcpyHostToDevice, st->stream),
            "uploading the positional table", error)
        && canary_cuda_ok (ck_from_f32 (cuda_ck (st), stage, (guint8 *) cuda_region (st, CR_POS_TABLE)
            + at * (m->dtype == CANARY_CUDA_F16 ? 2 : 4), len, st->stream), "converting the positional table", error)
        && canary_cuda_ok (cudaStreamSynchronize (st->stream), "uploading the positional table", error);
  }
  g_free (tab);
  return ok;
}

static gboolean
alloc_pinned (gsize bytes, void **p, GError **error)
{
  return canary_cuda_ok (cudaMallocHost (p, bytes), "allocating pinned host memory", error);
}

canary_cuda_state *
canary_cuda_state_new (canary_cuda_model *m, int max_frames, int max_beam, int max_step_tokens, int pad_id,
    GError **error)
{
  g_return_val_if_fail (m != NULL, NULL);
  canary_cuda_state *st = g_new0 (canary_cuda_state, 1);
  st->model = m;
  st->pad_id = pad_id;
#ifdef CANARY_CUDA_DEBUG
  st->check_finite = TRUE;
#else
  st->check_finite = g_strcmp0 (g_getenv ("CANARY_CUDA_CHECK_FINITE"), "1") == 0;
#endif
  st->launches = g_array_new (FALSE, FALSE, sizeof (canary_cuda_launch));
  void *arena = NULL;
  if (!canary_cuda_plan_make (&m->w->dims, max_frames, max_beam, max_step_tokens, &st->plan, error)
      || !canary_cuda_ok (cudaSetDevice (m->device), "selecting the GPU", error)
      || !canary_cuda_alloc (st->plan.total, "workspace arena", &arena, error)) {
    canary_cuda_state_free (st);
    return NULL;
  }
  st->arena = arena;
  void *p[5] = { NULL };
  const int R = st->plan.max_rows, B = st->plan.max_beam;
  gboolean ok = canary_cuda_ok (cudaStreamCreateWithFlags (&st->stream, cudaStreamNonBlocking),
          "creating a stream", error)
      && alloc_pinned (sizeof (ck_step_params), &p[0], error) && alloc_pinned (sizeof (ck_choice), &p[1], error)
      && alloc_pinned (sizeof (int) * R, &p[2], error) && alloc_pinned (sizeof (int) * B, &p[3], error)
      && alloc_pinned (sizeof (int) * 4, &p[4], error);
  st->h_params = p[0];
  st->h_choice = p[1];
  st->h_tokens = p[2];
  st->h_slot = p[3];
  st->h_flags = p[4];
  st->slot_next = g_new0 (int, B);
  st->claimed = g_new0 (guint8, B);
  if (ok)
    st->gemm = canary_cuda_gemm_new (cuda_region (st, CR_LT_WS), st->plan.region[CR_LT_WS].bytes, error);
  ok = ok && st->gemm && upload_pos_table (st, error);
  if (!ok) {
    canary_cuda_state_free (st);
    return NULL;
  }
  CANARY_DEBUG ("CUDA state: arena of %" G_GSIZE_FORMAT " bytes (%d mel frames, beam %d, %d rows)",
      st->plan.total, max_frames, max_beam, st->plan.max_rows);
  return st;
}

void
canary_cuda_state_free (canary_cuda_state *st)
{
  if (!st)
    return;
  cudaSetDevice (st->model->device);
  if (st->stream)
    cudaStreamSynchronize (st->stream);
  if (st->graph_exec)
    cudaGraphExecDestroy (st->graph_exec);
  if (st->graph)
    cudaGraphDestroy (st->graph);
  canary_cuda_gemm_free (st->gemm);
  if (st->stream)
    cudaStreamDestroy (st->stream);
  void *pinned[] = { st->h_params, st->h_choice, st->h_tokens, st->h_slot, st->h_flags };
  for (gsize i = 0; i < G_N_ELEMENTS (pinned); i++)
    if (pinned[i])
      cudaFreeHost (pinned[i]);
  if (st->arena)
    cudaFree (st->arena);
  g_free (st->slot_next);
  g_free (st->claimed);
  g_array_unref (st->launches);
  g_free (st);
}

guint64
canary_cuda_state_device_bytes (const canary_cuda_state *st)
{
  return st->plan.total;
}

const canary_cuda_plan *
canary_cuda_state_plan (const canary_cuda_state *st)
{
  return &st->plan;
}

gboolean
canary_cuda_state_mem_info (canary_cuda_state *st, guint64 *free_bytes, guint64 *total_bytes, GError **error)
{
  return canary_cuda_ok (cudaSetDevice (st->model->device), "selecting the GPU", error)
      && canary_cuda_mem_info (free_bytes, total_bytes, error);
}

gboolean
canary_cuda_upload_params (canary_cuda_state *st, GError **error)
{
  return canary_cuda_ok (cudaMemcpyAsync (cuda_region (st, CR_PARAMS), st->h_params, sizeof (ck_step_params),
      cudaMemcpyHostToDevice, st->stream), "uploading the step parameters", error);
}

gboolean
canary_cuda_check_finite (canary_cuda_state *st, const void *buf, gsize n, const char *stage, int layer,
    GError **error)
{
  if (!st->check_finite)
    return TRUE;
  int *flag = cuda_region (st, CR_FLAGS);
  if (!canary_cuda_ok (cudaMemsetAsync (flag, 0, sizeof (int), st->stream), "clearing the finite check", error)
      || !canary_cuda_ok (ck_count_nonfinite (cuda_ck (st), buf, n, flag, st->stream), "the finite check", error)
      || !canary_cuda_ok (cudaMemcpyAsync (st->h_flags, flag, sizeof (int), cudaMemcpyDeviceToHost, st->stream),
          "reading the finite check", error)
      || !canary_cuda_ok (cudaStreamSynchronize (st->stream), "the finite check", error))
    return FALSE;
  if (st->h_flags[0] == 0)
    return TRUE;
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE,
      "CUDA %s: %d non-finite values after %s (layer %d) — an FP16 overflow; run with precision=fp32",
      st->model->w->dims.dtype == CANARY_CUDA_F16 ? "fp16" : "fp32", st->h_flags[0], stage, layer);
  return FALSE;
}
