/* gst-canary — the CUDA decoder step as a launch list (see cuda/launch.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Mirrors decoder.c (NeMo's pre-LN TransformerDecoderBlock): per layer
 *   x += SelfAttn(LN1 x);  x += CrossAttn(LN2 x);  x += FF(LN3 x)
 * with the residual adds done by the output GEMMs (beta = 1), q/k/v as one GEMM, and the
 * cross-attention K/V read from the per-window buffer. */
#include "cuda/launch.h"

#include "canary.h"

typedef struct {
  const canary_cuda_weights *w;
  const canary_cuda_plan *p;
  guintptr wbase, abase;
  gsize es;   /* activation element size */
  GArray *out;
} builder;

static guintptr
region (const builder *b, canary_cuda_region_id id)
{
  return b->abase + b->p->region[id].offset;
}

static guintptr
weight (const builder *b, gsize off)
{
  return off == CANARY_CW_NONE ? 0 : b->wbase + off;
}

static void
emit (builder *b, const canary_cuda_launch *l)
{
  g_array_append_val (b->out, *l);
}

static void
norm (builder *b, int layer, const cw_norm *n, guintptr x, guintptr y, int rows)
{
  canary_cuda_launch l = { .op = CL_LAYER_NORM, .layer = layer };
  l.u.norm = (cl_norm) { x, weight (b, n->g), weight (b, n->b), y, rows, b->w->dims.H };
  emit (b, &l);
}

static void
gemm (builder *b, int layer, const cw_linear *lin, guintptr x, int m, guintptr y, int ldy,
    canary_cuda_epilogue epi, float beta, gboolean y_f32)
{
  canary_cuda_launch l = { .op = CL_GEMM, .layer = layer };
  l.u.gemm = (cl_gemm) { x, weight (b, lin->w), weight (b, lin->b), y, m, lin->out, lin->in, lin->in, ldy,
    lin->b == CANARY_CW_NONE ? CL_EPI_NONE : epi, beta, y_f32 };
  emit (b, &l);
}

static void
block (builder *b, int j, int n_beams, int n_tokens)
{
  const canary_cuda_dims *m = &b->w->dims;
  const cw_dec_layer *L = &b->w->dec[j];
  const int H = m->H, rows = n_beams * n_tokens;
  const guintptr x = region (b, CR_DX), h = region (b, CR_DH), qkv = region (b, CR_DQKV);
  const guintptr ctx = region (b, CR_DCTX), ff = region (b, CR_DFF);
  const gsize cache_layer = (gsize) b->p->max_beam * m->max_len * H * b->es;

  norm (b, j, &L->ln1, x, h, rows);
  gemm (b, j, &L->self_qkv, h, rows, qkv, 3 * H, CL_EPI_BIAS, 0.0f, FALSE);
  canary_cuda_launch l = { .op = CL_SELF_ATTENTION, .layer = j };
  l.u.self = (cl_self) { qkv, region (b, CR_TOKENS), region (b, CR_SLOT),
    region (b, CR_SELF_K) + j * cache_layer, region (b, CR_SELF_V) + j * cache_layer, ctx, n_beams, n_tokens };
  emit (b, &l);
  gemm (b, j, &L->self_out, ctx, rows, x, H, CL_EPI_BIAS, 1.0f, FALSE);

  norm (b, j, &L->ln2, x, h, rows);
  gemm (b, j, &L->cross_q, h, rows, qkv, H, CL_EPI_BIAS, 0.0f, FALSE);
  canary_cuda_launch c = { .op = CL_CROSS_ATTENTION, .layer = j };
  c.u.cross = (cl_cross) { qkv, region (b, CR_CROSS_KV) + (gsize) j * 2 * H * b->es, ctx, rows,
    2 * H * m->dec_layers };
  emit (b, &c);
  gemm (b, j, &L->cross_out, ctx, rows, x, H, CL_EPI_BIAS, 1.0f, FALSE);

  norm (b, j, &L->ln3, x, h, rows);
  gemm (b, j, &L->ff_in, h, rows, ff, m->inner, CL_EPI_RELU_BIAS, 0.0f, FALSE);
  gemm (b, j, &L->ff_out, ff, rows, x, H, CL_EPI_BIAS, 1.0f, FALSE);
}

gboolean
canary_cuda_step_launches (const canary_cuda_weights *w, const canary_cuda_plan *plan, guintptr wbase,
    guintptr abase, int n_beams, int n_tokens, gboolean all_rows, gboolean argmax, GArray *out,
    GError **error)
{
  g_return_val_if_fail (w && plan && out, FALSE);
  if (n_beams < 1 || n_tokens < 1 || n_beams > plan->max_beam || (gint64) n_beams * n_tokens > plan->max_rows
      || n_tokens > w->dims.max_len || (argmax && n_beams != 1)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "CUDA decoder: %d hypotheses × %d tokens%s outside the arena's limits (%d hypotheses, %d rows)",
        n_beams, n_tokens, argmax ? " with device argmax" : "", plan->max_beam, plan->max_rows);
    return FALSE;
  }
  builder b = { w, plan, wbase, abase, w->dims.dtype == CANARY_CUDA_F16 ? 2 : 4, out };
  const canary_cuda_dims *m = &w->dims;
  const int H = m->H, rows = n_beams * n_tokens;

  canary_cuda_launch e = { .op = CL_EMBED, .layer = -1 };
  e.u.embed = (cl_embed) { region (&b, CR_TOKENS), weight (&b, w->tok_emb), weight (&b, w->pos_enc),
    weight (&b, w->emb_ln.g), weight (&b, w->emb_ln.b), region (&b, CR_DX), rows, n_tokens, H };
  emit (&b, &e);
  for (int j = 0; j < m->dec_layers; j++)
    block (&b, j, n_beams, n_tokens);

  /* Final LayerNorm of the scored rows into dec_h (rows packed), then the head in FP32. */
  const guintptr x = region (&b, CR_DX), h = region (&b, CR_DH);
  int scored = rows;
  if (all_rows || n_tokens == 1) {
    norm (&b, -1, &w->final_ln, x, h, rows);
  } else {
    for (int i = 0; i < n_beams; i++)
      norm (&b, -1, &w->final_ln, x + ((gsize) i * n_tokens + n_tokens - 1) * H * b.es, h + (gsize) i * H * b.es, 1);
    scored = n_beams;
  }
  gemm (&b, -1, &w->head, h, scored, region (&b, CR_LOGITS), m->V, CL_EPI_BIAS, 0.0f, TRUE);
  if (argmax) {
    canary_cuda_launch a = { .op = CL_ARGMAX, .layer = -1 };
    a.u.argmax = (cl_argmax) { region (&b, CR_LOGITS), region (&b, CR_CHOICE), region (&b, CR_TOKENS), n_tokens };
    emit (&b, &a);
  }
  return TRUE;
}
