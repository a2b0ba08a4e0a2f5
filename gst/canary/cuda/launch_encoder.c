/* gst-canary — the CUDA encoder as a launch list (see cuda/launch.h), following encoder.c and
 * docs/MODEL.md (Encoder) step by step.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   subsampling: conv.0 + ReLU fused with stage 2's depthwise conv, then per stage the
 *     pointwise conv as a GEMM with a ReLU epilogue over the valid rows and the padding rows
 *     zeroed (NeMo's masks); maps are [t][f][C], so pre_encode.out (columns permuted at load)
 *     is a plain GEMM over the flattened rows;
 *   per layer: x += ½FF(LN x) (the ½ in the weights, the add as beta = 1); x += MHSA(LN x);
 *     x += Conv(LN x); x += ½FF(LN x); norm_out, fused with the next layer's first LayerNorm;
 *   then the optional projection and every decoder layer's cross K/V in one GEMM. */
#include "cuda/launch.h"

#include "canary.h"

typedef struct {
  const canary_cuda_weights *w;
  const canary_cuda_plan *p;
  guintptr wbase, abase;
  gsize es;
  int layer;
  GArray *out;
} enc_builder;

static guintptr
region (const enc_builder *b, canary_cuda_region_id id)
{
  return b->abase + b->p->region[id].offset;
}

static guintptr
weight (const enc_builder *b, gsize off)
{
  return off == CANARY_CW_NONE ? 0 : b->wbase + off;
}

static canary_cuda_launch *
emit (enc_builder *b, canary_cuda_op op)
{
  canary_cuda_launch l = { .op = op, .layer = b->layer };
  g_array_append_val (b->out, l);
  return &g_array_index (b->out, canary_cuda_launch, b->out->len - 1);
}

static void
gemm (enc_builder *b, const cw_linear *lin, guintptr x, int m, guintptr y, int ldy, canary_cuda_epilogue epi,
    float beta)
{
  emit (b, CL_GEMM)->u.gemm = (cl_gemm) { x, weight (b, lin->w), weight (b, lin->b), y, m, lin->out, lin->in,
    lin->in, ldy, lin->b == CANARY_CW_NONE ? CL_EPI_NONE : epi, beta, FALSE };
}

static void
norm (enc_builder *b, const cw_norm *n, guintptr x, guintptr y, int rows)
{
  emit (b, CL_LAYER_NORM)->u.norm = (cl_norm) { x, weight (b, n->g), weight (b, n->b), y, rows, b->w->dims.d };
}

static void
check (enc_builder *b, guintptr buf, gsize n, const char *stage)
{
  emit (b, CL_CHECK)->u.check = (cl_check) { buf, n, stage };
}

static void
subsample (enc_builder *b, int n_frames, int n_valid, const int *t, const int *len, const int *f)
{
  const canary_cuda_weights *w = b->w;
  const canary_cuda_dims *m = &w->dims;
  const int C = m->chans, S = m->n_stages;
  guintptr cur = region (b, CR_SUB_A), other = region (b, CR_SUB_B);
  cl_conv0 c0 = { region (b, CR_MEL), weight (b, w->conv0_w), weight (b, w->conv0_b), 0, 0, cur, n_frames, m->n_mels,
    n_valid, f[1], len[1], C, t[1], f[1], len[1] };
  if (S == 1) {
    emit (b, CL_CONV0)->u.conv0 = c0;
  } else {
    for (int s = 2; s <= S; s++) {
      const guintptr dw = weight (b, w->sub_dw_w[s - 1]), db = weight (b, w->sub_dw_b[s - 1]);
      if (s == 2) {
        /* Stage 2's depthwise conv runs fused with conv.0 (whose output is never stored). */
        c0.w = dw;
        c0.b = db;
        c0.out = other;
        c0.t_out = t[2];
        c0.f_out = f[2];
        c0.len_out = len[2];
        emit (b, CL_CONV0)->u.conv0 = c0;
      } else {
        emit (b, CL_DEPTHWISE)->u.depthwise = (cl_depthwise) { cur, dw, db, other, t[s - 1], f[s - 1], C, t[s], f[s],
          len[s] };
      }
      /* Pointwise + ReLU on the valid rows; the padding rows zeroed (NeMo's mask). */
      const gsize valid = (gsize) len[s] * f[s], all = (gsize) t[s] * f[s];
      gemm (b, &w->sub_pw[s - 1], other, (int) valid, cur, C, CL_EPI_RELU_BIAS, 0.0f);
      if (all > valid)
        emit (b, CL_ZERO)->u.zero = (cl_zero) { cur + valid * C * b->es, (all - valid) * C * b->es };
    }
  }
  gemm (b, &w->pre_out, cur, t[S], region (b, CR_X), m->d, CL_EPI_BIAS, 0.0f);
}

/* x += ½FF(h): linear1 + bias, Swish, linear2 (pre-scaled by ½) + bias + x. */
static void
feed_forward (enc_builder *b, const cw_linear *l1, const cw_linear *l2, int T)
{
  gemm (b, l1, region (b, CR_H), T, region (b, CR_BIG), l1->out, CL_EPI_BIAS, 0.0f);
  emit (b, CL_SWISH)->u.swish = (cl_swish) { region (b, CR_BIG), (gsize) T * l1->out };
  gemm (b, l2, region (b, CR_BIG), T, region (b, CR_X), b->w->dims.d, CL_EPI_BIAS, 1.0f);
}

static void
layer (enc_builder *b, int i, int T, int L)
{
  const canary_cuda_weights *w = b->w;
  const canary_cuda_dims *m = &w->dims;
  const int D = m->d;
  const cw_enc_layer *ly = &w->enc[i], *prev = i > 0 ? &w->enc[i - 1] : NULL;
  const guintptr x = region (b, CR_X), h = region (b, CR_H), qkv = region (b, CR_QKV);
  const gsize n = (gsize) T * D;
  b->layer = i;

  if (prev)
    emit (b, CL_LAYER_NORM2)->u.norm2 = (cl_norm2) { x, weight (b, prev->ln_out.g), weight (b, prev->ln_out.b),
      weight (b, ly->ln_ff1.g), weight (b, ly->ln_ff1.b), h, T, D };
  else
    norm (b, &ly->ln_ff1, x, h, T);
  feed_forward (b, &ly->ff1_1, &ly->ff1_2, T);
  check (b, x, n, "FF1");

  /* Relative-position attention; p = linear_pos(pos_emb) for positions L−1 … −(L−1). */
  norm (b, &ly->ln_att, x, h, T);
  gemm (b, &ly->qkv, h, T, qkv, 3 * D, CL_EPI_BIAS, 0.0f);
  if (L > 0)
    gemm (b, &ly->pos, region (b, CR_POS_TABLE) + (gsize) (b->p->t_max - L) * D * b->es, 2 * L - 1, region (b, CR_P),
        D, CL_EPI_NONE, 0.0f);
  emit (b, CL_RELPOS)->u.relpos = (cl_relpos) { qkv, region (b, CR_P), weight (b, ly->bias_u), weight (b, ly->bias_v),
    region (b, CR_CTX), T, L, m->heads, m->dk };
  gemm (b, &ly->att_out, region (b, CR_CTX), T, x, D, CL_EPI_BIAS, 1.0f);
  check (b, x, n, "self-attention");

  norm (b, &ly->ln_conv, x, h, T);
  gemm (b, &ly->pw1, h, T, region (b, CR_BIG), 2 * D, CL_EPI_BIAS, 0.0f);
  emit (b, CL_GLU_CONV)->u.glu = (cl_glu_conv) { region (b, CR_BIG), weight (b, ly->dw_w), weight (b, ly->dw_b),
    region (b, CR_CTX), T, L, D, m->kernel };
  gemm (b, &ly->pw2, region (b, CR_CTX), T, x, D, CL_EPI_BIAS, 1.0f);
  check (b, x, n, "convolution");

  norm (b, &ly->ln_ff2, x, h, T);
  feed_forward (b, &ly->ff2_1, &ly->ff2_2, T);
  check (b, x, n, "FF2");
}

/* Every decoder layer's cross-attention K|V from the window's encoder output, in one GEMM. */
static void
memory (enc_builder *b, int T)
{
  const canary_cuda_weights *w = b->w;
  gemm (b, &w->cross_kv, region (b, canary_cuda_encoder_output_region (w)), T, region (b, CR_CROSS_KV),
      w->cross_kv.out, CL_EPI_BIAS, 0.0f);
}

canary_cuda_region_id
canary_cuda_encoder_output_region (const canary_cuda_weights *w)
{
  return w->dims.has_proj ? CR_ENC_OUT : CR_X;
}

gboolean
canary_cuda_memory_launches (const canary_cuda_weights *w, const canary_cuda_plan *plan, guintptr wbase,
    guintptr abase, int t_enc, GArray *out, GError **error)
{
  g_return_val_if_fail (w && plan && out, FALSE);
  if (t_enc < 1 || t_enc > plan->t_max) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO,
        "CUDA decoder memory: %d encoder frames; this state's arena takes 1..%d", t_enc, plan->t_max);
    return FALSE;
  }
  enc_builder b = { w, plan, wbase, abase, w->dims.dtype == CANARY_CUDA_F16 ? 2 : 4, -1, out };
  memory (&b, t_enc);
  return TRUE;
}

gboolean
canary_cuda_encoder_launches (const canary_cuda_weights *w, const canary_cuda_plan *plan, guintptr wbase,
    guintptr abase, int n_frames, int n_valid, int *t_enc, int *enc_len, GArray *out, GError **error)
{
  g_return_val_if_fail (w && plan && out && t_enc && enc_len, FALSE);
  const canary_cuda_dims *m = &w->dims;
  if (n_frames < 1 || n_frames > plan->max_frames || n_valid < 0 || n_valid > n_frames) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO,
        "CUDA encoder: %d mel frames (%d valid); this state's arena takes 1..%d frames (%.0f s)", n_frames, n_valid,
        plan->max_frames, plan->max_frames / 100.0);
    return FALSE;
  }
  enc_builder b = { w, plan, wbase, abase, m->dtype == CANARY_CUDA_F16 ? 2 : 4, -1, out };
  int t[CANARY_CUDA_MAX_STAGES + 1], len[CANARY_CUDA_MAX_STAGES + 1], f[CANARY_CUDA_MAX_STAGES + 1];
  t[0] = n_frames;
  len[0] = n_valid;
  f[0] = m->n_mels;
  for (int s = 1; s <= m->n_stages; s++) {
    t[s] = canary_cuda_stride2 (t[s - 1]);
    len[s] = canary_cuda_stride2 (len[s - 1]);
    f[s] = canary_cuda_stride2 (f[s - 1]);
  }
  const int T = t[m->n_stages], L = len[m->n_stages];
  subsample (&b, n_frames, n_valid, t, len, f);
  check (&b, region (&b, CR_X), (gsize) T * m->d, "the subsampling");
  for (int i = 0; i < m->enc_layers; i++)
    layer (&b, i, T, L);
  b.layer = -1;
  const guintptr x = region (&b, CR_X);
  if (m->enc_layers > 0)
    norm (&b, &w->enc[m->enc_layers - 1].ln_out, x, x, T);
  if (m->has_proj)
    gemm (&b, &w->proj, x, T, region (&b, CR_ENC_OUT), m->out_dim, CL_EPI_BIAS, 0.0f);
  memory (&b, T);
  *t_enc = T;
  *enc_len = L;
  return TRUE;
}
