/* gst-canary — the FastConformer encoder on the GPU (MODEL-SPEC §3; encoder.c is the reference
 * it follows step by step), then the decoder's cross-attention K/V for the window.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cuda_internal.h"

#include "canary.h"
#include "cuda_device.h"

typedef struct {
  canary_cuda_state *st;
  const canary_cuda_weights *w;
  ck_dtype dt;
  gsize es;
  GError **error;
} enc_ctx;

static gboolean
gemm (enc_ctx *c, const cw_linear *l, const void *x, int m, void *y, int ldy, canary_cuda_epilogue epi, float beta)
{
  cl_gemm g = { (guintptr) x, (guintptr) cuda_weight (c->st, l->w), (guintptr) cuda_weight (c->st, l->b),
    (guintptr) y, m, l->out, l->in, l->in, ldy, l->b == CANARY_CW_NONE ? CL_EPI_NONE : epi, beta, FALSE };
  return canary_cuda_gemm_run (c->st->gemm, c->w->dims.dtype, &g, c->st->stream, c->error);
}

static gboolean
ln (enc_ctx *c, const cw_norm *n, const void *x, void *y, int rows)
{
  return canary_cuda_ok (ck_layer_norm (c->dt, x, cuda_weight (c->st, n->g), cuda_weight (c->st, n->b), y, rows,
      c->w->dims.d, c->st->stream), "encoder LayerNorm", c->error);
}

/* dw_striding: conv.0 + ReLU, then per later stage depthwise → pointwise GEMM + ReLU, each map
 * masked past its length; flatten (already [t][f·C]) and pre_encode.out into x. The maps live in
 * sub_a/sub_b, sized for stage 2 (stage 1 is never stored, see ck_conv0_dw_s2). */
static gboolean
subsample (enc_ctx *c, const float *mel_dev, int n_frames, int n_valid, int *t, int *len, int *f)
{
  canary_cuda_state *st = c->st;
  const canary_cuda_dims *m = &c->w->dims;
  const int C = m->chans, S = m->n_stages;
  t[0] = n_frames;
  len[0] = n_valid;
  f[0] = m->n_mels;
  for (int s = 1; s <= S; s++) {
    t[s] = canary_cuda_stride2 (t[s - 1]);
    len[s] = canary_cuda_stride2 (len[s - 1]);
    f[s] = canary_cuda_stride2 (f[s - 1]);
  }
  guint8 *cur = cuda_region (st, CR_SUB_A), *other = cuda_region (st, CR_SUB_B);
  const float *w0 = cuda_weight (st, c->w->conv0_w), *b0 = cuda_weight (st, c->w->conv0_b);
  if (S == 1)
    return canary_cuda_ok (ck_conv0_relu (c->dt, mel_dev, n_frames, m->n_mels, n_valid, w0, b0, cur, C, t[1], f[1],
            len[1], st->stream), "subsampling conv.0", c->error)
        && gemm (c, &c->w->pre_out, cur, t[1], cuda_region (st, CR_X), m->d, CL_EPI_BIAS, 0.0f);
  for (int s = 2; s <= S; s++) {
    /* Stage 2's depthwise conv runs fused with conv.0 (its input map is never stored). */
    const float *dw = cuda_weight (st, c->w->sub_dw_w[s - 1]), *db = cuda_weight (st, c->w->sub_dw_b[s - 1]);
    const cudaError_t err = s == 2
        ? ck_conv0_dw_s2 (c->dt, mel_dev, n_frames, m->n_mels, n_valid, w0, b0, f[1], len[1], dw, db, other, C,
            t[2], f[2], len[2], st->stream)
        : ck_depthwise_s2 (c->dt, cur, t[s - 1], f[s - 1], dw, db, other, C, t[s], f[s], len[s], st->stream);
    if (!canary_cuda_ok (err, "subsampling depthwise conv", c->error))
      return FALSE;
    /* Pointwise + ReLU on the valid rows only; the padding rows are zero (NeMo's mask). */
    const gsize valid = (gsize) len[s] * f[s], all = (gsize) t[s] * f[s];
    if (!gemm (c, &c->w->sub_pw[s - 1], other, (int) valid, cur, C, CL_EPI_RELU_BIAS, 0.0f)
        || !canary_cuda_ok (cudaMemsetAsync (cur + valid * C * c->es, 0, (all - valid) * C * c->es, st->stream),
            "masking the subsampling", c->error))
      return FALSE;
  }
  return gemm (c, &c->w->pre_out, cur, t[S], cuda_region (st, CR_X), m->d, CL_EPI_BIAS, 0.0f);
}

/* x += 0.5·FF(LN x): linear1 + bias (epilogue), Swish, linear2 (pre-scaled by 0.5) + bias + x. */
static gboolean
feed_forward (enc_ctx *c, const cw_linear *l1, const cw_linear *l2, int T)
{
  canary_cuda_state *st = c->st;
  void *h = cuda_region (st, CR_H), *big = cuda_region (st, CR_BIG), *x = cuda_region (st, CR_X);
  return gemm (c, l1, h, T, big, l1->out, CL_EPI_BIAS, 0.0f)
      && canary_cuda_ok (ck_swish (c->dt, big, (gsize) T * l1->out, st->stream), "encoder Swish", c->error)
      && gemm (c, l2, big, T, x, c->w->dims.d, CL_EPI_BIAS, 1.0f);
}

static gboolean
self_attention (enc_ctx *c, const cw_enc_layer *L, int T, int len)
{
  canary_cuda_state *st = c->st;
  const canary_cuda_dims *m = &c->w->dims;
  const int D = m->d;
  guint8 *qkv = cuda_region (st, CR_QKV), *p = cuda_region (st, CR_P), *ctx = cuda_region (st, CR_CTX);
  /* p = linear_pos(pos_emb) for positions len−1 … −(len−1): rows t_max−len … of the table. */
  const guint8 *table = (const guint8 *) cuda_region (st, CR_POS_TABLE) + (gsize) (st->plan.t_max - len) * D * c->es;
  return ln (c, &L->ln_att, cuda_region (st, CR_X), cuda_region (st, CR_H), T)
      && gemm (c, &L->qkv, cuda_region (st, CR_H), T, qkv, 3 * D, CL_EPI_BIAS, 0.0f)
      && gemm (c, &L->pos, table, 2 * len - 1, p, D, CL_EPI_NONE, 0.0f)
      && canary_cuda_ok (ck_relpos_attention (c->dt, qkv, qkv + D * c->es, qkv + 2 * D * c->es, 3 * D, p,
          cuda_weight (st, L->bias_u), cuda_weight (st, L->bias_v), ctx, T, len, m->heads, m->dk, st->stream),
          "encoder relative-position attention", c->error)
      && gemm (c, &L->att_out, ctx, T, cuda_region (st, CR_X), D, CL_EPI_BIAS, 1.0f);
}

static gboolean
conv_module (enc_ctx *c, const cw_enc_layer *L, int T, int len)
{
  canary_cuda_state *st = c->st;
  const canary_cuda_dims *m = &c->w->dims;
  void *big = cuda_region (st, CR_BIG), *ctx = cuda_region (st, CR_CTX);
  return ln (c, &L->ln_conv, cuda_region (st, CR_X), cuda_region (st, CR_H), T)
      && gemm (c, &L->pw1, cuda_region (st, CR_H), T, big, 2 * m->d, CL_EPI_BIAS, 0.0f)
      && canary_cuda_ok (ck_glu_dwconv_swish (c->dt, big, cuda_weight (st, L->dw_w), cuda_weight (st, L->dw_b), ctx,
          T, len, m->d, m->kernel, st->stream), "encoder convolution module", c->error)
      && gemm (c, &L->pw2, ctx, T, cuda_region (st, CR_X), m->d, CL_EPI_BIAS, 1.0f);
}

/* One layer except its norm_out, which runs fused with the next layer's first LayerNorm. */
static gboolean
layer (enc_ctx *c, int i, int T, int len)
{
  canary_cuda_state *st = c->st;
  const cw_enc_layer *L = &c->w->enc[i], *prev = i > 0 ? &c->w->enc[i - 1] : NULL;
  void *x = cuda_region (st, CR_X), *h = cuda_region (st, CR_H);
  const gsize n = (gsize) T * c->w->dims.d;
  gboolean ok = prev ? canary_cuda_ok (ck_layer_norm2 (c->dt, x, cuda_weight (st, prev->ln_out.g),
                           cuda_weight (st, prev->ln_out.b), cuda_weight (st, L->ln_ff1.g), cuda_weight (st, L->ln_ff1.b),
                           h, T, c->w->dims.d, st->stream), "encoder LayerNorm", c->error)
                     : ln (c, &L->ln_ff1, x, h, T);
  return ok && feed_forward (c, &L->ff1_1, &L->ff1_2, T) && canary_cuda_check_finite (st, x, n, "FF1", i, c->error)
      && self_attention (c, L, T, len) && canary_cuda_check_finite (st, x, n, "self-attention", i, c->error)
      && conv_module (c, L, T, len) && canary_cuda_check_finite (st, x, n, "convolution", i, c->error)
      && ln (c, &L->ln_ff2, x, h, T) && feed_forward (c, &L->ff2_1, &L->ff2_2, T)
      && canary_cuda_check_finite (st, x, n, "FF2", i, c->error);
}

gboolean
canary_cuda_encode (canary_cuda_state *st, const float *mel, int n_frames, int n_valid, int *t_enc, int *enc_len,
    GError **error)
{
  g_return_val_if_fail (st && mel, FALSE);
  const canary_cuda_weights *w = st->model->w;
  const canary_cuda_dims *m = &w->dims;
  if (n_frames < 1 || n_frames > st->plan.max_frames || n_valid < 0 || n_valid > n_frames) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO,
        "CUDA encoder: %d mel frames (%d valid); this state's arena takes 1..%d frames (%.0f s)", n_frames, n_valid,
        st->plan.max_frames, st->plan.max_frames / 100.0);
    return FALSE;
  }
  enc_ctx c = { st, w, cuda_ck (st), m->dtype == CANARY_CUDA_F16 ? 2 : 4, error };
  int t[CANARY_CUDA_MAX_STAGES + 1], len[CANARY_CUDA_MAX_STAGES + 1], f[CANARY_CUDA_MAX_STAGES + 1];
  st->has_memory = FALSE;
  if (!canary_cuda_ok (cudaSetDevice (st->model->device), "selecting the GPU", error)
      || !canary_cuda_ok (cudaMemcpyAsync (cuda_region (st, CR_MEL), mel, (gsize) m->n_mels * n_frames * 4,
          cudaMemcpyHostToDevice, st->stream), "uploading the features", error)
      || !subsample (&c, cuda_region (st, CR_MEL), n_frames, n_valid, t, len, f))
    return FALSE;
  const int T = t[m->n_stages], L = len[m->n_stages];
  if (!canary_cuda_check_finite (st, cuda_region (st, CR_X), (gsize) T * m->d, "the subsampling", -1, error))
    return FALSE;
  for (int i = 0; i < m->enc_layers; i++)
    if (!layer (&c, i, T, L))
      return FALSE;
  void *x = cuda_region (st, CR_X);
  if (m->enc_layers > 0 && !ln (&c, &w->enc[m->enc_layers - 1].ln_out, x, x, T))
    return FALSE;
  void *enc = x;
  if (m->has_proj) {
    enc = cuda_region (st, CR_ENC_OUT);
    if (!gemm (&c, &w->proj, x, T, enc, m->out_dim, CL_EPI_BIAS, 0.0f))
      return FALSE;
  }
  /* Every decoder layer's cross-attention K|V from the window, in one GEMM. */
  if (!gemm (&c, &w->cross_kv, enc, T, cuda_region (st, CR_CROSS_KV), w->cross_kv.out, CL_EPI_BIAS, 0.0f))
    return FALSE;
  st->T = T;
  st->enc_len = L;
  st->h_params->pos = 0;
  st->h_params->T = T;
  st->h_params->enc_len = L;
  st->h_params->pad = 0;
  if (!canary_cuda_upload_params (st, error)
      || !canary_cuda_ok (cudaStreamSynchronize (st->stream), "running the encoder", error))
    return FALSE;
  st->has_memory = TRUE;
  st->length = 0;
  st->n_beams = 0;
  *t_enc = T;
  *enc_len = L;
  return TRUE;
}

gboolean
canary_cuda_encoder_output (canary_cuda_state *st, float *out, GError **error)
{
  const canary_cuda_dims *m = &st->model->w->dims;
  if (!st->has_memory) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT, "CUDA encoder: no output yet");
    return FALSE;
  }
  const gsize n = (gsize) st->T * m->out_dim;
  const void *enc = cuda_region (st, m->has_proj ? CR_ENC_OUT : CR_X);
  /* Converted to FP32 in the FF buffer, which the encoder no longer needs. */
  float *tmp = cuda_region (st, CR_BIG);
  if (n * 4 > st->plan.region[CR_BIG].bytes) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "CUDA encoder: output of %" G_GSIZE_FORMAT " values is larger than the staging area", n);
    return FALSE;
  }
  return canary_cuda_ok (ck_to_f32 (cuda_ck (st), enc, tmp, n, st->stream), "converting the encoder output", error)
      && canary_cuda_ok (cudaMemcpyAsync (out, tmp, n * 4, cudaMemcpyDeviceToHost, st->stream),
          "reading the encoder output", error)
      && canary_cuda_ok (cudaStreamSynchronize (st->stream), "reading the encoder output", error);
}
