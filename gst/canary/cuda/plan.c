/* gst-canary — the CUDA backend's workspace arena plan (see cuda/plan.h, docs/cuda.md).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cuda/plan.h"

#include <math.h>
#include <string.h>

#include "canary.h"
#include "nemo_constants.h"
#include "util.h"

/* Longest window the plan takes: 2^20 mel frames (about 2.9 h), far beyond any real window; it
 * bounds every product below inside 64 bits. */
#define PLAN_MAX_FRAMES (1 << 20)
#define PLAN_MAX_BEAM 64
#define PLAN_MAX_STEP 4096

int
canary_cuda_stride2 (int n)
{
  return n <= 0 ? 0 : (n - 1) / 2 + 1;
}

/* The largest subsampling map stored: stage 1's only when it is the last stage (otherwise conv.0
 * runs fused with stage 2's depthwise conv and its output is never stored). */
static guint64
largest_map (const canary_cuda_dims *m, const int *t, const int *f)
{
  if (m->n_stages == 1)
    return (guint64) t[1] * f[1] * m->chans;
  guint64 sub = 0;
  for (int s = 2; s <= m->n_stages; s++)
    sub = MAX (sub, (guint64) t[s] * f[s] * m->chans);
  return sub;
}

/* Element counts of every region (in its own element type) and that type's size. */
static void
region_sizes (const canary_cuda_dims *m, const canary_cuda_plan *p, guint64 elems[CR_N_REGIONS],
    guint64 esize[CR_N_REGIONS])
{
  const guint64 es = m->dtype == CANARY_CUDA_F16 ? 2 : 4;
  const guint64 T = p->t_max, D = m->d, H = m->H, R = p->max_rows;
  const guint64 sub = largest_map (m, p->sub_t, p->sub_f);
  for (int i = 0; i < CR_N_REGIONS; i++)
    esize[i] = es;
  elems[CR_MEL] = (guint64) m->n_mels * p->max_frames;
  esize[CR_MEL] = 4;
  elems[CR_SUB_A] = sub;
  elems[CR_SUB_B] = sub;
  elems[CR_X] = T * D;
  elems[CR_H] = T * D;
  elems[CR_BIG] = T * MAX ((guint64) m->ff, 2 * D);
  elems[CR_QKV] = T * 3 * D;
  elems[CR_CTX] = T * D;
  elems[CR_POS_TABLE] = (2 * T - 1) * D;
  elems[CR_P] = (2 * T - 1) * D;
  elems[CR_ENC_OUT] = m->has_proj ? T * m->out_dim : 0;
  elems[CR_CROSS_KV] = T * m->dec_layers * 2 * H;
  elems[CR_SELF_K] = (guint64) m->dec_layers * p->max_beam * m->max_len * H;
  elems[CR_SELF_V] = elems[CR_SELF_K];
  elems[CR_DX] = R * H;
  elems[CR_DH] = R * H;
  elems[CR_DQKV] = R * 3 * H;
  elems[CR_DCTX] = R * H;
  elems[CR_DFF] = R * m->inner;
  elems[CR_LOGITS] = R * m->V;
  esize[CR_LOGITS] = 4;
  elems[CR_TOKENS] = R;
  esize[CR_TOKENS] = 4;
  elems[CR_SLOT] = p->max_beam;
  esize[CR_SLOT] = 4;
  elems[CR_PARAMS] = 4;  /* ck_step_params: four ints */
  esize[CR_PARAMS] = 4;
  elems[CR_CHOICE] = 2;  /* ck_choice: an int and a float */
  esize[CR_CHOICE] = 4;
  elems[CR_FLAGS] = 4;
  esize[CR_FLAGS] = 4;
  elems[CR_LT_WS] = CANARY_CUDA_LT_WORKSPACE;
  esize[CR_LT_WS] = 1;
}

static const char *const region_names[CR_N_REGIONS] = {
  "mel", "sub_a", "sub_b", "x", "h", "big", "qkv", "ctx", "pos_table", "p", "enc_out", "cross_kv",
  "self_k", "self_v", "dec_x", "dec_h", "dec_qkv", "dec_ctx", "dec_ff", "logits", "tokens", "slot",
  "params", "choice", "flags", "lt_workspace",
};

static gboolean
dims_valid (const canary_cuda_dims *m)
{
  return m->n_mels > 0 && m->chans > 0 && m->n_stages >= 1 && m->n_stages <= CANARY_CUDA_MAX_STAGES
      && m->d > 0 && m->heads > 0 && m->ff > 0 && m->kernel > 0 && m->enc_layers >= 0 && m->out_dim > 0
      && m->H > 0 && m->dec_heads > 0 && m->inner > 0 && m->dec_layers > 0 && m->max_len > 0 && m->V > 0
      && (m->dtype == CANARY_CUDA_F16 || m->dtype == CANARY_CUDA_F32);
}

static void
fill_stages (const canary_cuda_dims *m, int max_frames, canary_cuda_plan *p)
{
  p->sub_t[0] = max_frames;
  p->sub_f[0] = m->n_mels;
  for (int s = 1; s <= m->n_stages; s++) {
    p->sub_t[s] = canary_cuda_stride2 (p->sub_t[s - 1]);
    p->sub_f[s] = canary_cuda_stride2 (p->sub_f[s - 1]);
  }
  p->t_max = p->sub_t[m->n_stages];
}

gboolean
canary_cuda_plan_make (const canary_cuda_dims *dims, int max_frames, int max_beam, int max_step_tokens,
    canary_cuda_plan *plan, GError **error)
{
  memset (plan, 0, sizeof *plan);
  if (!dims_valid (dims) || max_frames < 1 || max_frames > PLAN_MAX_FRAMES || max_beam < 1
      || max_beam > PLAN_MAX_BEAM || max_step_tokens < 1 || max_step_tokens > PLAN_MAX_STEP) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "CUDA arena: limits out of range (%d mel frames, beam %d, %d tokens per call; at most %d, %d, %d)",
        max_frames, max_beam, max_step_tokens, PLAN_MAX_FRAMES, PLAN_MAX_BEAM, PLAN_MAX_STEP);
    return FALSE;
  }
  plan->max_frames = max_frames;
  plan->max_beam = max_beam;
  plan->max_rows = MAX (max_beam, max_step_tokens);
  fill_stages (dims, max_frames, plan);

  guint64 elems[CR_N_REGIONS], esize[CR_N_REGIONS];
  region_sizes (dims, plan, elems, esize);
  gsize off = 0;
  for (int i = 0; i < CR_N_REGIONS; i++) {
    gsize bytes, padded;
    /* Sizes are bounded by the limits above, so the checks only guard against a gsize that is
     * narrower than 64 bits. */
    if (!canary_mul_size (elems[i], esize[i], &bytes)
        || !canary_add_size (off, CANARY_CUDA_ALIGN - 1, &padded)) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
          "CUDA arena: region %s does not fit in memory", region_names[i]);
      return FALSE;
    }
    off = padded / CANARY_CUDA_ALIGN * CANARY_CUDA_ALIGN;
    plan->region[i] = (canary_cuda_region) { region_names[i], off, bytes };
    if (!canary_add_size (off, bytes, &off)) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
          "CUDA arena: region %s does not fit in memory", region_names[i]);
      return FALSE;
    }
  }
  plan->total = off;
  return TRUE;
}

guint64
canary_cuda_plan_formula (const canary_cuda_dims *m, int max_frames, int max_beam, int max_step_tokens)
{
  /* docs/cuda.md, "Arena": with e the element size, T the encoder frames of the longest window,
   * R = max(beam, step tokens), S the largest subsampling map:
   *   4·mels·F + e·(2S + T·D·(1+1+3+1) + T·max(ff, 2D) + 2·(2T−1)·D + T·out·[proj]
   *   + T·Ld·2H + 2·Ld·B·max_len·H + R·(6H + inner)) + 4·R·V + 4·(R + B + 10) + 4 MiB. */
  canary_cuda_plan p = { 0 };
  fill_stages (m, max_frames, &p);
  const guint64 e = m->dtype == CANARY_CUDA_F16 ? 2 : 4;
  const guint64 T = p.t_max, D = m->d, H = m->H, B = max_beam, R = MAX (max_beam, max_step_tokens);
  const guint64 S = largest_map (m, p.sub_t, p.sub_f);
  const guint64 act = 2 * S + T * D * 6 + T * MAX ((guint64) m->ff, 2 * D) + 2 * (2 * T - 1) * D
      + (m->has_proj ? T * m->out_dim : 0) + T * m->dec_layers * 2 * H
      + 2 * (guint64) m->dec_layers * B * m->max_len * H + R * (6 * H + m->inner);
  return 4 * (guint64) m->n_mels * max_frames + e * act + 4 * R * m->V + 4 * (R + B + 10)
      + CANARY_CUDA_LT_WORKSPACE;
}

void
canary_cuda_pos_table (int t_max, int D, float *out)
{
  const float scale = (float) (-(log (CANARY_POS_BASE) / D));
  const int rows = 2 * t_max - 1;
  for (int j = 0; j < D / 2; j++) {
    const float div = expf ((float) (2 * j) * scale);
    for (int r = 0; r < rows; r++) {
      const float a = (float) (t_max - 1 - r) * div;
      out[(gsize) r * D + 2 * j] = sinf (a);
      out[(gsize) r * D + 2 * j + 1] = cosf (a);
    }
  }
}
