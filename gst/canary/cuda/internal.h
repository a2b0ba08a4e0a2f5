/* gst-canary — the CUDA backend's private structures, shared by its host files.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <cuda_runtime_api.h>

#include "canary_kernels.h"
#include "cuda/backend.h"
#include "cuda/gemm.h"
#include "cuda/launch.h"
#include "cuda/weights.h"

G_BEGIN_DECLS

struct _canary_cuda_model {
  int device;
  canary_cuda_weights *w;   /* offsets; the host image is dropped after the upload */
  guint8 *dev;              /* the one weight allocation */
};

struct _canary_cuda_state {
  canary_cuda_model *model;
  canary_cuda_plan plan;
  guint8 *arena;            /* the one workspace allocation */
  cudaStream_t stream;
  canary_cuda_gemm *gemm;
  int pad_id;
  gboolean check_finite;    /* debug builds, or CANARY_CUDA_CHECK_FINITE=1 */

  /* Pinned staging for the few host↔device copies of a window. */
  ck_step_params *h_params;
  ck_choice *h_choice;
  int *h_tokens;            /* max_rows */
  int *h_slot;              /* max_beam */
  int *h_flags;

  /* Hypothesis → cache slot (decoder.c's scheme, copies on the device). */
  int *slot_next;
  guint8 *claimed;
  int n_beams, length;
  int T, enc_len;
  gboolean has_memory;

  GArray *launches;         /* scratch launch list */
  cudaGraph_t graph;
  cudaGraphExec_t graph_exec;  /* the captured one-token greedy step */
  gboolean graph_failed;       /* capture/instantiation failed once: plain launches from then on */
};

static inline void *
cuda_region (const canary_cuda_state *st, canary_cuda_region_id id)
{
  return st->arena + st->plan.region[id].offset;
}

static inline const void *
cuda_weight (const canary_cuda_state *st, gsize off)
{
  return off == CANARY_CW_NONE ? NULL : st->model->dev + off;
}

static inline ck_dtype
cuda_ck (const canary_cuda_state *st)
{
  return st->model->w->dims.dtype == CANARY_CUDA_F16 ? CK_F16 : CK_F32;
}

/* Runs one launch record (cuda/exec.c). */
gboolean canary_cuda_exec (canary_cuda_state *st, const canary_cuda_launch *l, GError **error);
/* Runs a list of records. */
gboolean canary_cuda_exec_list (canary_cuda_state *st, const GArray *launches, GError **error);
/* The debug inf/NaN check of n elements at `buf` after `stage` (no-op unless enabled). */
gboolean canary_cuda_check_finite (canary_cuda_state *st, const void *buf, gsize n, const char *stage,
    int layer, GError **error);
/* One decoder call: tokens, position and (at start_pos 0) the slots up, then the step's launch
 * list (cuda/launch.h) on the stream; no synchronisation. */
gboolean canary_cuda_run_call (canary_cuda_state *st, const gint32 *tokens, int n_beams, int n_tokens,
    int start_pos, gboolean all_rows, gboolean argmax, GError **error);
/* Copies the step parameters from st->h_params to the device. */
gboolean canary_cuda_upload_params (canary_cuda_state *st, GError **error);

G_END_DECLS
