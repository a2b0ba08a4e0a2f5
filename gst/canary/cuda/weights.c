/* gst-canary — the CUDA backend's weight image (see cuda/weights.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Built in two passes over the same code: the first only lays the offsets out (and checks that
 * every tensor is there with the expected element count), the second allocates the blob and
 * fills it. One code path for both keeps the layout and the contents in step. */
#include "cuda/weights.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "canary.h"
#include "layout.h"
#include "util.h"

#define KERNEL_MAX_WIDTH 4096   /* LayerNorm kernels keep a row in registers (kernels/common.cuh) */
#define KERNEL_MAX_HEAD 256     /* attention kernels: 8 channels per lane */

/* ---- The packer ---------------------------------------------------------------------------- */

typedef struct {
  const canary_ckpt *ck;
  canary_cuda_dtype dtype;
  guint8 *blob;     /* NULL in the layout pass */
  gsize off;
  GError **error;
  gboolean failed;
} packer;

static gsize
reserve (packer *pk, gsize bytes)
{
  const gsize at = (pk->off + CANARY_CUDA_ALIGN - 1) / CANARY_CUDA_ALIGN * CANARY_CUDA_ALIGN;
  pk->off = at + bytes;
  return at;
}

/* The tensor `key` as a new FP32 array of `numel` elements; in the layout pass only checked, and
 * NULL returned. */
static float *G_GNUC_PRINTF (3, 4)
fetch (packer *pk, gint64 numel, const char *fmt, ...)
{
  if (pk->failed)
    return NULL;
  va_list ap;
  va_start (ap, fmt);
  char *key = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const canary_tensor *t = canary_ckpt_get (pk->ck, key);
  if (!t || t->numel != numel) {
    g_set_error (pk->error, CANARY_ERROR, CANARY_ERROR_FORMAT, "CUDA weights: %s %s (expected %"
        G_GINT64_FORMAT " elements)", key, t ? "has the wrong size" : "is missing", numel);
    pk->failed = TRUE;
    g_free (key);
    return NULL;
  }
  g_free (key);
  return pk->blob ? canary_tensor_to_f32 (t) : NULL;
}

/* Stores n FP32 values (src may be NULL in the layout pass). */
static gsize
put_f32 (packer *pk, const float *src, gsize n)
{
  const gsize at = reserve (pk, n * 4);
  if (pk->blob && src)
    memcpy (pk->blob + at, src, n * 4);
  return at;
}

/* Stores n values · scale in the GEMM type. */
static gsize
put_w (packer *pk, const float *src, gsize n, float scale)
{
  const gsize es = pk->dtype == CANARY_CUDA_F16 ? 2 : 4;
  const gsize at = reserve (pk, n * es);
  if (!pk->blob || !src)
    return at;
  if (pk->dtype == CANARY_CUDA_F16) {
    guint16 *dst = (guint16 *) (pk->blob + at);
    for (gsize i = 0; i < n; i++)
      dst[i] = canary_f32_to_f16 (src[i] * scale);
  } else {
    float *dst = (float *) (pk->blob + at);
    for (gsize i = 0; i < n; i++)
      dst[i] = src[i] * scale;
  }
  return at;
}

/* A Linear stored as it is (weight [out][in] at `wkey`, bias at `bkey` or none), times `scale`. */
static cw_linear
put_linear (packer *pk, const char *wkey, const char *bkey, int out, int in, float scale)
{
  cw_linear l = { CANARY_CW_NONE, CANARY_CW_NONE, out, in };
  float *w = fetch (pk, (gint64) out * in, "%s", wkey);
  l.w = put_w (pk, w, (gsize) out * in, scale);
  g_free (w);
  if (bkey) {
    float *b = fetch (pk, out, "%s", bkey);
    l.b = put_w (pk, b, out, scale);
    g_free (b);
  }
  return l;
}

/* Several Linears of the same input width stacked by rows into one ([Σ out][in]), with biases. */
static cw_linear
put_stacked (packer *pk, char **wkeys, char **bkeys, int n, int out_each, int in)
{
  const gsize rows = (gsize) n * out_each, per = (gsize) out_each * in;
  cw_linear l = { CANARY_CW_NONE, CANARY_CW_NONE, (int) rows, in };
  float *w = pk->blob ? g_new (float, rows * in) : NULL, *b = pk->blob ? g_new (float, rows) : NULL;
  for (int i = 0; i < n; i++) {
    float *wi = fetch (pk, (gint64) per, "%s", wkeys[i]), *bi = fetch (pk, out_each, "%s", bkeys[i]);
    if (wi)
      memcpy (w + i * per, wi, per * 4);
    if (bi)
      memcpy (b + (gsize) i * out_each, bi, (gsize) out_each * 4);
    g_free (wi);
    g_free (bi);
  }
  l.w = put_w (pk, w, rows * in, 1.0f);
  l.b = put_w (pk, b, rows, 1.0f);
  g_free (w);
  g_free (b);
  return l;
}

static cw_norm
put_norm (packer *pk, const char *prefix, int width)
{
  cw_norm n;
  float *g = fetch (pk, width, "%s.weight", prefix), *b = fetch (pk, width, "%s.bias", prefix);
  n.g = put_f32 (pk, g, width);
  n.b = put_f32 (pk, b, width);
  g_free (g);
  g_free (b);
  return n;
}

static gsize
put_tensor_f32 (packer *pk, gint64 numel, const char *key)
{
  float *v = fetch (pk, numel, "%s", key);
  const gsize at = put_f32 (pk, v, (gsize) numel);
  g_free (v);
  return at;
}

/* ---- Encoder ------------------------------------------------------------------------------- */

static void
pack_subsampling (packer *pk, canary_cuda_weights *cw, int f_out, float xscale)
{
  const canary_cuda_dims *m = &cw->dims;
  const int C = m->chans, D = m->d;
  cw->conv0_w = put_tensor_f32 (pk, (gint64) C * 9, CANARY_KEY_SUB_CONV ".0.weight");
  cw->conv0_b = put_tensor_f32 (pk, C, CANARY_KEY_SUB_CONV ".0.bias");
  for (int s = 1; s < m->n_stages; s++) {
    const int dw = canary_sub_conv_index (s), pw = dw + 1;
    char *k1 = canary_key (CANARY_KEY_SUB_CONV, dw, "weight");
    char *k2 = canary_key (CANARY_KEY_SUB_CONV, dw, "bias");
    char *k3 = canary_key (CANARY_KEY_SUB_CONV, pw, "weight");
    char *k4 = canary_key (CANARY_KEY_SUB_CONV, pw, "bias");
    cw->sub_dw_w[s] = put_tensor_f32 (pk, (gint64) C * 9, k1);
    cw->sub_dw_b[s] = put_tensor_f32 (pk, C, k2);
    cw->sub_pw[s] = put_linear (pk, k3, k4, C, C, 1.0f);
    g_free (k1);
    g_free (k2);
    g_free (k3);
    g_free (k4);
  }
  /* pre_encode.out reads features c·F'+f; the GPU's maps are [t][f][c], so permute the columns
   * to f·C+c. xscaling (sqrt(D) on the subsampled features) is folded in here. */
  const gsize K = (gsize) C * f_out;
  float *w = fetch (pk, (gint64) D * K, CANARY_KEY_PRE_OUT ".weight");
  float *b = fetch (pk, D, CANARY_KEY_PRE_OUT ".bias");
  float *perm = w ? g_new (float, (gsize) D * K) : NULL;
  for (int d = 0; perm && d < D; d++)
    for (int c = 0; c < C; c++)
      for (int f = 0; f < f_out; f++)
        perm[(gsize) d * K + (gsize) f * C + c] = w[(gsize) d * K + (gsize) c * f_out + f];
  cw->pre_out.w = put_w (pk, perm, (gsize) D * K, xscale);
  cw->pre_out.b = put_w (pk, b, D, xscale);
  cw->pre_out.out = D;
  cw->pre_out.in = (int) K;
  g_free (perm);
  g_free (w);
  g_free (b);
}

/* Layer li's tensor <part>.<leaf> of the encoder (e) or decoder, as a new FP32 array. */
static float *
fetch_part (packer *pk, gboolean e, int li, int part, const char *leaf, gint64 numel)
{
  char *key = e ? canary_enc_key (li, part, leaf) : canary_dec_key (li, part, leaf);
  float *v = fetch (pk, numel, "%s", key);
  g_free (key);
  return v;
}

/* A Linear part of layer li, times `scale`; bias: whether it has one. */
static cw_linear
put_part_linear (packer *pk, gboolean e, int li, int part, int out, int in, gboolean bias,
    float scale)
{
  char *wk = e ? canary_enc_key (li, part, "weight") : canary_dec_key (li, part, "weight");
  char *bk = !bias ? NULL : e ? canary_enc_key (li, part, "bias") : canary_dec_key (li, part, "bias");
  const cw_linear l = put_linear (pk, wk, bk, out, in, scale);
  g_free (wk);
  g_free (bk);
  return l;
}

static cw_norm
put_part_norm (packer *pk, gboolean e, int li, int part, int width)
{
  char *p = e ? canary_enc_key (li, part, NULL) : canary_dec_key (li, part, NULL);
  const cw_norm n = put_norm (pk, p, width);
  g_free (p);
  return n;
}

/* Parts [first, first + n) of layer li stacked by rows into one Linear ([n·out][in]). */
static cw_linear
put_part_stacked (packer *pk, gboolean e, int li, int first, int n, int out, int in)
{
  char *wk[4], *bk[4];
  for (int i = 0; i < n; i++) {
    wk[i] = e ? canary_enc_key (li, first + i, "weight") : canary_dec_key (li, first + i, "weight");
    bk[i] = e ? canary_enc_key (li, first + i, "bias") : canary_dec_key (li, first + i, "bias");
  }
  const cw_linear l = put_stacked (pk, wk, bk, n, out, in);
  for (int i = 0; i < n; i++) {
    g_free (wk[i]);
    g_free (bk[i]);
  }
  return l;
}

static void
pack_conv (packer *pk, cw_enc_layer *L, int li, int D, int K)
{
  float *w = fetch_part (pk, TRUE, li, CANARY_ENC_CONV_DW, "weight", (gint64) D * K);
  float *b = fetch_part (pk, TRUE, li, CANARY_ENC_CONV_DW, "bias", D);
  float *g = fetch_part (pk, TRUE, li, CANARY_ENC_CONV_BN, "weight", D);
  float *beta = fetch_part (pk, TRUE, li, CANARY_ENC_CONV_BN, "bias", D);
  float *mean = fetch_part (pk, TRUE, li, CANARY_ENC_CONV_BN, "running_mean", D);
  float *var = fetch_part (pk, TRUE, li, CANARY_ENC_CONV_BN, "running_var", D);
  float *fw = NULL, *fb = NULL;
  if (w && b && g && beta && mean && var) {
    fw = g_new (float, (gsize) D * K);
    fb = g_new (float, D);
    canary_fold_batch_norm (w, b, g, beta, mean, var, D, K, fw, fb);
  }
  L->dw_w = put_f32 (pk, fw, (gsize) D * K);
  L->dw_b = put_f32 (pk, fb, D);
  float *all[] = { w, b, g, beta, mean, var, fw, fb };
  for (gsize i = 0; i < G_N_ELEMENTS (all); i++)
    g_free (all[i]);
}

/* One conformer layer; `untie`: per-layer position biases (else the encoder's shared pair). */
static void
pack_enc_layer (packer *pk, cw_enc_layer *L, int li, const canary_cuda_dims *m, gboolean untie)
{
  const int D = m->d, F = m->ff;
  L->ln_ff1 = put_part_norm (pk, TRUE, li, CANARY_ENC_NORM_FF1, D);
  L->ln_att = put_part_norm (pk, TRUE, li, CANARY_ENC_NORM_ATT, D);
  L->ln_conv = put_part_norm (pk, TRUE, li, CANARY_ENC_NORM_CONV, D);
  L->ln_ff2 = put_part_norm (pk, TRUE, li, CANARY_ENC_NORM_FF2, D);
  L->ln_out = put_part_norm (pk, TRUE, li, CANARY_ENC_NORM_OUT, D);
  /* x + 0.5·FF(x): the half goes into linear2's weights. */
  L->ff1_1 = put_part_linear (pk, TRUE, li, CANARY_ENC_FF1_LINEAR1, F, D, TRUE, 1.0f);
  L->ff1_2 = put_part_linear (pk, TRUE, li, CANARY_ENC_FF1_LINEAR2, D, F, TRUE, 0.5f);
  L->ff2_1 = put_part_linear (pk, TRUE, li, CANARY_ENC_FF2_LINEAR1, F, D, TRUE, 1.0f);
  L->ff2_2 = put_part_linear (pk, TRUE, li, CANARY_ENC_FF2_LINEAR2, D, F, TRUE, 0.5f);
  G_STATIC_ASSERT (CANARY_ENC_ATT_K == CANARY_ENC_ATT_Q + 1 && CANARY_ENC_ATT_V == CANARY_ENC_ATT_Q + 2);
  L->qkv = put_part_stacked (pk, TRUE, li, CANARY_ENC_ATT_Q, 3, D, D);
  L->att_out = put_part_linear (pk, TRUE, li, CANARY_ENC_ATT_OUT, D, D, TRUE, 1.0f);
  L->pos = put_part_linear (pk, TRUE, li, CANARY_ENC_ATT_POS, D, D, FALSE, 1.0f);
  char *bu = untie ? canary_enc_key (li, CANARY_ENC_POS_BIAS_U, NULL) : g_strdup (CANARY_KEY_POS_BIAS_U);
  char *bv = untie ? canary_enc_key (li, CANARY_ENC_POS_BIAS_V, NULL) : g_strdup (CANARY_KEY_POS_BIAS_V);
  L->bias_u = put_tensor_f32 (pk, D, bu);
  L->bias_v = put_tensor_f32 (pk, D, bv);
  g_free (bu);
  g_free (bv);
  L->pw1 = put_part_linear (pk, TRUE, li, CANARY_ENC_CONV_PW1, 2 * D, D, TRUE, 1.0f);
  pack_conv (pk, L, li, D, m->kernel);
  L->pw2 = put_part_linear (pk, TRUE, li, CANARY_ENC_CONV_PW2, D, D, TRUE, 1.0f);
}

/* ---- Decoder ------------------------------------------------------------------------------- */

static void
pack_dec_layer (packer *pk, cw_dec_layer *L, int li, const canary_cuda_dims *m)
{
  const int H = m->H;
  L->ln1 = put_part_norm (pk, FALSE, li, CANARY_DEC_LN1, H);
  L->ln2 = put_part_norm (pk, FALSE, li, CANARY_DEC_LN2, H);
  L->ln3 = put_part_norm (pk, FALSE, li, CANARY_DEC_LN3, H);
  G_STATIC_ASSERT (CANARY_DEC_SELF_K == CANARY_DEC_SELF_Q + 1 && CANARY_DEC_SELF_V == CANARY_DEC_SELF_Q + 2);
  L->self_qkv = put_part_stacked (pk, FALSE, li, CANARY_DEC_SELF_Q, 3, H, H);
  L->self_out = put_part_linear (pk, FALSE, li, CANARY_DEC_SELF_OUT, H, H, TRUE, 1.0f);
  L->cross_q = put_part_linear (pk, FALSE, li, CANARY_DEC_CROSS_Q, H, H, TRUE, 1.0f);
  L->cross_out = put_part_linear (pk, FALSE, li, CANARY_DEC_CROSS_OUT, H, H, TRUE, 1.0f);
  L->ff_in = put_part_linear (pk, FALSE, li, CANARY_DEC_FF_IN, m->inner, H, TRUE, 1.0f);
  L->ff_out = put_part_linear (pk, FALSE, li, CANARY_DEC_FF_OUT, H, m->inner, TRUE, 1.0f);
}

static void
pack_decoder (packer *pk, canary_cuda_weights *cw)
{
  const canary_cuda_dims *m = &cw->dims;
  const int H = m->H;
  const char *head_key = CANARY_KEY_HEAD ".weight";
  const char *emb_key = CANARY_KEY_TOKEN_EMB;
  const canary_tensor *head = canary_ckpt_get (pk->ck, head_key), *emb = canary_ckpt_get (pk->ck, emb_key);
  cw->head = put_linear (pk, head_key, NULL, m->V, H, 1.0f);
  /* NeMo ties the embedding to the head: one matrix unless the file really holds two. */
  if (emb && head && emb->data != head->data) {
    float *e = fetch (pk, (gint64) m->V * H, "%s", emb_key);
    cw->tok_emb = put_w (pk, e, (gsize) m->V * H, 1.0f);
    g_free (e);
  } else {
    cw->tok_emb = cw->head.w;
  }
  cw->head.b = put_tensor_f32 (pk, m->V, CANARY_KEY_HEAD ".bias");  /* FP32: logits are FP32 */
  float *pe = fetch (pk, (gint64) m->max_len * H, CANARY_KEY_POS_ENC);
  cw->pos_enc = put_w (pk, pe, (gsize) m->max_len * H, 1.0f);
  g_free (pe);
  cw->emb_ln = put_norm (pk, CANARY_KEY_EMB_LN, H);
  for (int li = 0; li < m->dec_layers; li++)
    pack_dec_layer (pk, &cw->dec[li], li, m);
  cw->final_ln = put_norm (pk, CANARY_KEY_FINAL_LN, H);

  /* Every layer's cross K and V in one matrix: the window's memory is projected by one GEMM. */
  const int n = 2 * m->dec_layers;
  char **wk = g_new0 (char *, n + 1), **bk = g_new0 (char *, n + 1);  /* NULL-terminated */
  for (int li = 0; li < m->dec_layers; li++) {
    for (int j = 0; j < 2; j++) {
      const canary_dec_part part = j ? CANARY_DEC_CROSS_V : CANARY_DEC_CROSS_K;
      wk[2 * li + j] = canary_dec_key (li, part, "weight");
      bk[2 * li + j] = canary_dec_key (li, part, "bias");
    }
  }
  cw->cross_kv = put_stacked (pk, wk, bk, n, H, H);
  g_strfreev (wk);
  g_strfreev (bk);
}

/* ---- The image ----------------------------------------------------------------------------- */

gboolean
canary_cuda_dims_from_config (const canary_config *cfg, const canary_ckpt *ck, canary_cuda_dtype dtype, canary_cuda_dims *m,
    GError **error)
{
  memset (m, 0, sizeof *m);
  m->dtype = dtype;
  m->n_mels = cfg->n_mels;
  m->chans = cfg->subsampling_channels;
  for (int f = cfg->subsampling_factor; f > 1; f /= 2)
    m->n_stages++;
  m->d = cfg->enc_d_model;
  m->heads = cfg->enc_heads;
  m->dk = m->heads > 0 ? m->d / m->heads : 0;
  m->ff = m->d * cfg->enc_ff_expansion;
  m->kernel = cfg->enc_conv_kernel;
  m->enc_layers = cfg->enc_layers;
  m->H = cfg->dec_hidden;
  m->dec_heads = cfg->dec_heads;
  m->inner = cfg->dec_inner;
  m->dec_layers = cfg->dec_layers;
  m->max_len = cfg->dec_max_seq_len;
  const canary_tensor *head = canary_ckpt_get (ck, CANARY_KEY_HEAD ".weight");
  const canary_tensor *proj = canary_ckpt_get (ck, CANARY_KEY_PROJ ".weight");
  m->V = head && head->ndim == 2 ? (int) head->shape[0] : 0;
  m->has_proj = proj != NULL;
  m->out_dim = proj ? m->H : m->d;

  const char *why = NULL;
  if (cfg->subsampling && g_strcmp0 (cfg->subsampling, "dw_striding") != 0)
    why = "a subsampling other than dw_striding";
  else if (m->n_stages < 1 || m->n_stages > CANARY_CUDA_MAX_STAGES)
    why = "this subsampling factor";
  else if (m->heads <= 0 || m->dk * m->heads != m->d || m->dk > KERNEL_MAX_HEAD)
    why = "encoder attention heads wider than 256 channels";
  else if (m->dec_heads <= 0 || m->H % m->dec_heads != 0 || m->H / m->dec_heads > KERNEL_MAX_HEAD)
    why = "decoder attention heads wider than 256 channels";
  else if (m->d > KERNEL_MAX_WIDTH || m->H > KERNEL_MAX_WIDTH)
    why = "model widths above 4096";
  else if (m->V <= 0 || m->kernel <= 0 || m->chans <= 0 || m->n_mels <= 0 || m->inner <= 0 || m->max_len <= 0
      || m->dec_layers <= 0)
    why = "these model sizes";
  if (why) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED, "the CUDA backend does not run %s", why);
    return FALSE;
  }
  return TRUE;
}

/* One pass of the packer: offsets into `cw`, and contents when pk->blob is set. */
static gboolean
pack_all (packer *pk, const canary_config *cfg, canary_cuda_weights *cw)
{
  const canary_cuda_dims *m = &cw->dims;
  int f_out = m->n_mels;
  for (int s = 0; s < m->n_stages; s++)
    f_out = (f_out - 1) / 2 + 1;
  pk->off = 0;
  pack_subsampling (pk, cw, f_out, cfg->xscaling ? (float) sqrt ((double) m->d) : 1.0f);
  for (int li = 0; li < m->enc_layers; li++)
    pack_enc_layer (pk, &cw->enc[li], li, m, cfg->untie_biases);
  cw->proj = (cw_linear) { CANARY_CW_NONE, CANARY_CW_NONE, m->out_dim, m->d };
  if (m->has_proj)
    cw->proj = put_linear (pk, CANARY_KEY_PROJ ".weight", CANARY_KEY_PROJ ".bias", m->H, m->d, 1.0f);
  pack_decoder (pk, cw);
  cw->bytes = reserve (pk, 0);
  return !pk->failed;
}

canary_cuda_weights *
canary_cuda_weights_build (const canary_config *cfg, const canary_ckpt *ck, canary_cuda_dtype dtype,
    GError **error)
{
  g_return_val_if_fail (cfg && ck, NULL);
  canary_cuda_weights *cw = g_new0 (canary_cuda_weights, 1);
  if (!canary_cuda_dims_from_config (cfg, ck, dtype, &cw->dims, error)) {
    g_free (cw);
    return NULL;
  }
  cw->enc = g_new0 (cw_enc_layer, MAX (cw->dims.enc_layers, 1));
  cw->dec = g_new0 (cw_dec_layer, cw->dims.dec_layers);

  packer pk = { ck, dtype, NULL, 0, error, FALSE };
  if (!pack_all (&pk, cfg, cw)) {
    canary_cuda_weights_free (cw);
    return NULL;
  }
  const gsize bytes = cw->bytes;
  pk.blob = g_try_malloc (MAX (bytes, 1));
  if (!pk.blob) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "cannot allocate %" G_GSIZE_FORMAT " bytes of host memory for the CUDA weight image", bytes);
    canary_cuda_weights_free (cw);
    return NULL;
  }
  memset (pk.blob, 0, bytes);  /* alignment gaps: deterministic bytes in the image */
  if (!pack_all (&pk, cfg, cw) || cw->bytes != bytes) {
    if (!pk.failed)
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT, "CUDA weights: layout changed between passes");
    g_free (pk.blob);
    canary_cuda_weights_free (cw);
    return NULL;
  }
  cw->blob = pk.blob;
  return cw;
}

void
canary_cuda_weights_drop_blob (canary_cuda_weights *w)
{
  g_clear_pointer (&w->blob, g_free);
}

void
canary_cuda_weights_free (canary_cuda_weights *w)
{
  if (!w)
    return;
  g_free (w->blob);
  g_free (w->enc);
  g_free (w->dec);
  g_free (w);
}
