/* gst-canary — the CUDA backend's weight image (see cuda_weights.h).
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
#include "util.h"

#define BN_EPS 1e-5
#define KERNEL_MAX_WIDTH 4096   /* LayerNorm kernels keep a row in registers (kernels/common.cuh) */
#define KERNEL_MAX_HEAD 256     /* attention kernels: 8 channels per lane */

/* ---- FP16 ---------------------------------------------------------------------------------- */

guint16
canary_f32_to_f16 (float x)
{
  guint32 f;
  memcpy (&f, &x, 4);
  const guint32 sign = (f >> 16) & 0x8000u;
  guint32 a = f & 0x7fffffffu;
  if (a >= 0x7f800000u)  /* inf or NaN (NaN keeps a quiet payload bit) */
    return (guint16) (sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0));
  if (a >= 0x477ff000u)  /* rounds to >= 65520: overflow to inf */
    return (guint16) (sign | 0x7c00u);
  if (a < 0x38800000u) {  /* below 2^-14: subnormal half (or zero) */
    if (a < 0x33000000u)  /* below half the smallest subnormal: ±0 */
      return (guint16) sign;
    const guint32 mant = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - (int) (a >> 23);  /* 14..24 */
    guint32 h = mant >> shift;
    const guint32 rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u)))
      h++;
    return (guint16) (sign | h);
  }
  /* Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even. */
  guint32 h = ((a >> 13) - (112u << 10));
  const guint32 rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
    h++;  /* a carry into the exponent is the correct rounding */
  return (guint16) (sign | h);
}

float
canary_f16_to_f32 (guint16 h)
{
  const guint32 sign = (guint32) (h & 0x8000u) << 16;
  const guint32 e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  guint32 f;
  if (e == 0) {
    float v = ldexpf ((float) m, -24);
    return sign ? -v : v;
  }
  if (e == 31)
    f = sign | 0x7f800000u | (m << 13);
  else
    f = sign | ((e + 112u) << 23) | (m << 13);
  float out;
  memcpy (&out, &f, 4);
  return out;
}

float
canary_round_f16 (float x)
{
  return canary_f16_to_f32 (canary_f32_to_f16 (x));
}

void
canary_cuda_fold_batch_norm (const float *w, const float *b, const float *gamma, const float *beta,
    const float *mean, const float *var, int D, int K, float *fw, float *fb)
{
  for (int c = 0; c < D; c++) {
    const double s = (double) gamma[c] / sqrt ((double) var[c] + BN_EPS);
    for (int k = 0; k < K; k++)
      fw[(gsize) c * K + k] = (float) (w[(gsize) c * K + k] * s);
    fb[c] = (float) (((double) b[c] - mean[c]) * s + beta[c]);
  }
}

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
  cw->conv0_w = put_tensor_f32 (pk, (gint64) C * 9, "encoder.pre_encode.conv.0.weight");
  cw->conv0_b = put_tensor_f32 (pk, C, "encoder.pre_encode.conv.0.bias");
  for (int s = 1; s < m->n_stages; s++) {
    const int dw = 2 + 3 * (s - 1), pw = dw + 1;
    char *k1 = g_strdup_printf ("encoder.pre_encode.conv.%d.weight", dw);
    char *k2 = g_strdup_printf ("encoder.pre_encode.conv.%d.bias", dw);
    char *k3 = g_strdup_printf ("encoder.pre_encode.conv.%d.weight", pw);
    char *k4 = g_strdup_printf ("encoder.pre_encode.conv.%d.bias", pw);
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
  float *w = fetch (pk, (gint64) D * K, "encoder.pre_encode.out.weight");
  float *b = fetch (pk, D, "encoder.pre_encode.out.bias");
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

static void
pack_conv (packer *pk, cw_enc_layer *L, int li, int D, int K)
{
  const char *pre = "encoder.layers";
  float *w = fetch (pk, (gint64) D * K, "%s.%d.conv.depthwise_conv.weight", pre, li);
  float *b = fetch (pk, D, "%s.%d.conv.depthwise_conv.bias", pre, li);
  float *g = fetch (pk, D, "%s.%d.conv.batch_norm.weight", pre, li);
  float *beta = fetch (pk, D, "%s.%d.conv.batch_norm.bias", pre, li);
  float *mean = fetch (pk, D, "%s.%d.conv.batch_norm.running_mean", pre, li);
  float *var = fetch (pk, D, "%s.%d.conv.batch_norm.running_var", pre, li);
  float *fw = NULL, *fb = NULL;
  if (w && b && g && beta && mean && var) {
    fw = g_new (float, (gsize) D * K);
    fb = g_new (float, D);
    canary_cuda_fold_batch_norm (w, b, g, beta, mean, var, D, K, fw, fb);
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
  char *p = g_strdup_printf ("encoder.layers.%d", li);
  char *k[16];
#define KEY(i, suffix) (k[i] = g_strconcat (p, suffix, NULL))
  KEY (0, ".norm_feed_forward1");
  KEY (1, ".norm_self_att");
  KEY (2, ".norm_conv");
  KEY (3, ".norm_feed_forward2");
  KEY (4, ".norm_out");
  L->ln_ff1 = put_norm (pk, k[0], D);
  L->ln_att = put_norm (pk, k[1], D);
  L->ln_conv = put_norm (pk, k[2], D);
  L->ln_ff2 = put_norm (pk, k[3], D);
  L->ln_out = put_norm (pk, k[4], D);
  for (int i = 0; i < 5; i++)
    g_free (k[i]);

  for (int which = 1; which <= 2; which++) {
    char *w1 = g_strdup_printf ("%s.feed_forward%d.linear1.weight", p, which);
    char *b1 = g_strdup_printf ("%s.feed_forward%d.linear1.bias", p, which);
    char *w2 = g_strdup_printf ("%s.feed_forward%d.linear2.weight", p, which);
    char *b2 = g_strdup_printf ("%s.feed_forward%d.linear2.bias", p, which);
    cw_linear *l1 = which == 1 ? &L->ff1_1 : &L->ff2_1, *l2 = which == 1 ? &L->ff1_2 : &L->ff2_2;
    *l1 = put_linear (pk, w1, b1, F, D, 1.0f);
    *l2 = put_linear (pk, w2, b2, D, F, 0.5f);  /* x + 0.5·FF(x): the half goes into the weights */
    g_free (w1);
    g_free (b1);
    g_free (w2);
    g_free (b2);
  }

  const char *qkv_names[3] = { "q", "k", "v" };
  char *wk[3], *bk[3];
  for (int i = 0; i < 3; i++) {
    wk[i] = g_strdup_printf ("%s.self_attn.linear_%s.weight", p, qkv_names[i]);
    bk[i] = g_strdup_printf ("%s.self_attn.linear_%s.bias", p, qkv_names[i]);
  }
  L->qkv = put_stacked (pk, wk, bk, 3, D, D);
  for (int i = 0; i < 3; i++) {
    g_free (wk[i]);
    g_free (bk[i]);
  }
  KEY (5, ".self_attn.linear_out.weight");
  KEY (6, ".self_attn.linear_out.bias");
  KEY (7, ".self_attn.linear_pos.weight");
  L->att_out = put_linear (pk, k[5], k[6], D, D, 1.0f);
  L->pos = put_linear (pk, k[7], NULL, D, D, 1.0f);
  if (untie) {
    KEY (8, ".self_attn.pos_bias_u");
    KEY (9, ".self_attn.pos_bias_v");
  } else {
    k[8] = g_strdup ("encoder.pos_bias_u");
    k[9] = g_strdup ("encoder.pos_bias_v");
  }
  L->bias_u = put_tensor_f32 (pk, D, k[8]);
  L->bias_v = put_tensor_f32 (pk, D, k[9]);
  KEY (10, ".conv.pointwise_conv1.weight");
  KEY (11, ".conv.pointwise_conv1.bias");
  KEY (12, ".conv.pointwise_conv2.weight");
  KEY (13, ".conv.pointwise_conv2.bias");
  L->pw1 = put_linear (pk, k[10], k[11], 2 * D, D, 1.0f);
  pack_conv (pk, L, li, D, m->kernel);
  L->pw2 = put_linear (pk, k[12], k[13], D, D, 1.0f);
#undef KEY
  for (int i = 5; i < 14; i++)
    g_free (k[i]);
  g_free (p);
}

/* ---- Decoder ------------------------------------------------------------------------------- */

static void
pack_dec_layer (packer *pk, cw_dec_layer *L, int li, const canary_cuda_dims *m)
{
  const int H = m->H;
  char *p = g_strdup_printf ("transf_decoder._decoder.layers.%d", li);
  char *n1 = g_strconcat (p, ".layer_norm_1", NULL), *n2 = g_strconcat (p, ".layer_norm_2", NULL);
  char *n3 = g_strconcat (p, ".layer_norm_3", NULL);
  L->ln1 = put_norm (pk, n1, H);
  L->ln2 = put_norm (pk, n2, H);
  L->ln3 = put_norm (pk, n3, H);
  const char *nets[3] = { "query_net", "key_net", "value_net" };
  char *wk[3], *bk[3];
  for (int i = 0; i < 3; i++) {
    wk[i] = g_strdup_printf ("%s.first_sub_layer.%s.weight", p, nets[i]);
    bk[i] = g_strdup_printf ("%s.first_sub_layer.%s.bias", p, nets[i]);
  }
  L->self_qkv = put_stacked (pk, wk, bk, 3, H, H);
  for (int i = 0; i < 3; i++) {
    g_free (wk[i]);
    g_free (bk[i]);
  }
  struct {
    cw_linear *l;
    const char *name;
    int out, in;
  } lins[] = {
    { &L->self_out, "first_sub_layer.out_projection", H, H },
    { &L->cross_q, "second_sub_layer.query_net", H, H },
    { &L->cross_out, "second_sub_layer.out_projection", H, H },
    { &L->ff_in, "third_sub_layer.dense_in", m->inner, H },
    { &L->ff_out, "third_sub_layer.dense_out", H, m->inner },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (lins); i++) {
    char *w = g_strdup_printf ("%s.%s.weight", p, lins[i].name), *b = g_strdup_printf ("%s.%s.bias", p, lins[i].name);
    *lins[i].l = put_linear (pk, w, b, lins[i].out, lins[i].in, 1.0f);
    g_free (w);
    g_free (b);
  }
  g_free (n1);
  g_free (n2);
  g_free (n3);
  g_free (p);
}

static void
pack_decoder (packer *pk, canary_cuda_weights *cw)
{
  const canary_cuda_dims *m = &cw->dims;
  const int H = m->H;
  const char *head_key = "log_softmax.mlp.layer0.weight";
  const char *emb_key = "transf_decoder._embedding.token_embedding.weight";
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
  cw->head.b = put_tensor_f32 (pk, m->V, "log_softmax.mlp.layer0.bias");  /* FP32: logits are FP32 */
  float *pe = fetch (pk, (gint64) m->max_len * H, "transf_decoder._embedding.position_embedding.pos_enc");
  cw->pos_enc = put_w (pk, pe, (gsize) m->max_len * H, 1.0f);
  g_free (pe);
  cw->emb_ln = put_norm (pk, "transf_decoder._embedding.layer_norm", H);
  for (int li = 0; li < m->dec_layers; li++)
    pack_dec_layer (pk, &cw->dec[li], li, m);
  cw->final_ln = put_norm (pk, "transf_decoder._decoder.final_layer_norm", H);

  /* Every layer's cross K and V in one matrix: the window's memory is projected by one GEMM. */
  const int n = 2 * m->dec_layers;
  char **wk = g_new0 (char *, n + 1), **bk = g_new0 (char *, n + 1);  /* NULL-terminated */
  for (int li = 0; li < m->dec_layers; li++) {
    for (int j = 0; j < 2; j++) {
      const char *net = j ? "value_net" : "key_net";
      wk[2 * li + j] = g_strdup_printf ("transf_decoder._decoder.layers.%d.second_sub_layer.%s.weight", li, net);
      bk[2 * li + j] = g_strdup_printf ("transf_decoder._decoder.layers.%d.second_sub_layer.%s.bias", li, net);
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
  const canary_tensor *head = canary_ckpt_get (ck, "log_softmax.mlp.layer0.weight");
  const canary_tensor *proj = canary_ckpt_get (ck, "encoder_decoder_proj.weight");
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
    cw->proj = put_linear (pk, "encoder_decoder_proj.weight", "encoder_decoder_proj.bias", m->H, m->d, 1.0f);
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
