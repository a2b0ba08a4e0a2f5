/* gst-canary — FastConformer encoder (NeMo ConformerEncoder, NeMo >= 2.5 behaviour), FP32 CPU.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Reference: NeMo 2.5.3 nemo/collections/asr/modules/conformer_encoder.py (forward_internal,
 * _create_masks), parts/submodules/subsampling.py (ConvSubsampling dw_striding,
 * MaskedConvSequential), conformer_modules.py (ConformerLayer, ConformerConvolution,
 * ConformerFeedForward), multi_head_attention.py (RelPositionMultiHeadAttention,
 * RelPositionalEncoding) and MODEL-SPEC §3.
 *
 * Layouts: the subsampling keeps activations channel-major [C][T][F] (NeMo's NCHW without the
 * batch), so the pointwise convs are single GEMMs over all (t, f); the conformer keeps
 * row-major [T][D]. Only one utterance at a time: "padding" below is the part of the input
 * past the valid length, which NeMo treats exactly like batch padding.
 *
 * Exactness shortcuts (each gives NeMo's values, not an approximation):
 *  - The subsampling masks every layer's input past the current length, so conv outputs past the
 *    new length are only ever multiplied by 0: we skip computing them and write zeros.
 *  - Attention: masked scores are -10000 before the softmax (exp underflows to exactly 0 in
 *    FP32 next to any valid score) and masked probabilities are zeroed after it, so a valid
 *    query attends only over valid keys, and a padding query's context is 0 (its output is the
 *    linear_out bias). We therefore run attention on the valid block only, with the positional
 *    table for the valid length (pos_emb values depend only on the relative position).
 */
#include "encoder.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "canary.h"
#include "util.h"

#define LN_EPS 1e-5f          /* torch.nn.LayerNorm default */
#define BN_EPS 1e-5           /* torch.nn.BatchNorm1d default */
#define ATT_MASK_VALUE -10000.0f  /* NeMo INF_VAL, used as the masked score */
#define POS_BASE 10000.0      /* NeMo reuses INF_VAL as the sinusoid base */
#define SUB_K 3               /* dw_striding: 3x3 kernels, stride 2, padding 1 */
#define MAX_STAGES 6          /* subsampling factor up to 64 */
#define MAX_FRAMES (1 << 20)  /* ~2.9 hours of 10 ms frames; attention scratch grows as (frames/8)^2 */

typedef struct {
  const float *w;  /* [out][in], torch Linear / 1x1 conv layout */
  const float *b;  /* [out] or NULL */
} linear;

typedef struct {
  const float *ln_ff1_w, *ln_ff1_b;
  linear ff1_1, ff1_2;
  const float *ln_att_w, *ln_att_b;
  linear q, k, v, o;
  const float *pos_w;     /* linear_pos [D][D], no bias */
  const float *bias_u;    /* pos_bias_u [H][dk] */
  const float *bias_v;
  const float *ln_conv_w, *ln_conv_b;
  linear pw1;             /* [2D][D] */
  const float *dw_w;      /* BatchNorm folded, transposed to [K][D] (owned) */
  const float *dw_b;      /* [D] (owned) */
  linear pw2;             /* [D][D] */
  const float *ln_ff2_w, *ln_ff2_b;
  linear ff2_1, ff2_2;
  const float *ln_out_w, *ln_out_b;
} enc_layer;

struct _canary_encoder {
  int d;          /* d_model */
  int heads;
  int dk;
  int ff;         /* d_model * ff_expansion_factor */
  int kernel;     /* conformer depthwise kernel */
  int n_layers;
  int n_mels;
  int chans;      /* subsampling channels */
  int n_stages;   /* log2(subsampling_factor) */
  int f_out;      /* frequency bins after subsampling */
  int out_dim;
  gboolean xscale;
  const float *conv0_w, *conv0_b;           /* [C][1][3][3], [C] */
  /* Depthwise/pointwise pair i (1 ≤ i < n_stages) makes stage i + 1; conv indices 2+3(i-1),
   * 3+3(i-1). dw [C][1][3][3], pw [C][C][1][1]. */
  const float *dw_w[MAX_STAGES], *dw_b[MAX_STAGES];
  linear pw[MAX_STAGES];
  linear pre_out;                           /* [D][C * f_out] */
  enc_layer *layers;
  linear proj;                              /* w == NULL: identity */
  GPtrArray *owned;                         /* buffers we allocated (converted/folded) */
  gsize owned_bytes;
};

/* The sizes of one input, shared by the work layout and the forward pass. */
typedef struct {
  int n_frames;
  int t[MAX_STAGES + 1];   /* time extent after stage s (t[0] = mel frames) */
  int len[MAX_STAGES + 1]; /* valid length after stage s */
  int f[MAX_STAGES + 1];   /* frequency extent after stage s */
} sub_dims;

struct _canary_encoder_work {
  int max_frames;
  int max_t;      /* encoder frames for max_frames */
  gsize bytes;
  float *arena;
  float *col;     /* conv0 im2col [t1 * f1][9] */
  float *sa, *sb; /* subsampling ping-pong buffers */
  float *x, *h, *tmp, *q, *qv, *k, *v, *ctx;  /* [T][D] */
  float *big;     /* [T][max(ff, 2D)] */
  float *pe;      /* positional table [2 max_t - 1][D], positions max_t-1 … -(max_t-1) */
  float *p;       /* linear_pos output [2T - 1][D] */
  float *scores;  /* [T][T] */
  float *bd;      /* [T][2T - 1] */
  float *out;     /* [T][out_dim] (projection only) */
};

/* ---------------------------------------------------------------------------------------- */
/* Loading.                                                                                  */

typedef struct {
  canary_encoder *enc;
  const canary_ckpt *ck;
  const canary_config *cfg;
  GError **error;
  gboolean failed;
} loader;

static void
format_shape (GString *s, int ndim, const gint64 *shape)
{
  g_string_append_c (s, '[');
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
}

static void
loader_shape_error (loader *ld, const char *key, int ndim, const gint64 *want,
    const canary_tensor *t)
{
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "%s: model_config.yaml (d_model %d, n_heads %d, ff %d, "
      "conv_kernel_size %d, subsampling_conv_channels %d, features %d) implies shape ",
      key, ld->cfg->enc_d_model, ld->cfg->enc_heads, ld->enc->ff, ld->cfg->enc_conv_kernel,
      ld->cfg->subsampling_channels, ld->cfg->n_mels);
  format_shape (s, ndim, want);
  g_string_append (s, ", the checkpoint has ");
  gint64 got[CANARY_MAX_DIMS];
  for (int i = 0; i < t->ndim; i++)
    got[i] = t->shape[i];
  format_shape (s, t->ndim, got);
  g_set_error_literal (ld->error, CANARY_ERROR, CANARY_ERROR_FORMAT, s->str);
  g_string_free (s, TRUE);
  ld->failed = TRUE;
}

/* Looks `key` up, checks it has exactly the given shape and a float dtype, and returns it as
 * FP32: in place when the mapping allows, else converted once into a buffer the encoder owns. */
static const float *
loader_tensor (loader *ld, const char *key, int ndim, const gint64 *shape)
{
  if (ld->failed)
    return NULL;
  const canary_tensor *t = canary_ckpt_get (ld->ck, key);
  if (!t) {
    GString *s = g_string_new (NULL);
    format_shape (s, ndim, shape);
    g_set_error (ld->error, CANARY_ERROR, CANARY_ERROR_NOT_FOUND,
        "encoder: the checkpoint has no tensor %s (expected shape %s)", key, s->str);
    g_string_free (s, TRUE);
    ld->failed = TRUE;
    return NULL;
  }
  gboolean same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++)
    same = t->shape[i] == shape[i];
  if (!same) {
    loader_shape_error (ld, key, ndim, shape, t);
    return NULL;
  }
  if (t->dtype != CANARY_DTYPE_F32 && t->dtype != CANARY_DTYPE_F16
      && t->dtype != CANARY_DTYPE_BF16 && t->dtype != CANARY_DTYPE_F64) {
    g_set_error (ld->error, CANARY_ERROR, CANARY_ERROR_FORMAT,
        "%s: dtype %s is not a floating-point type", key, canary_dtype_name (t->dtype));
    ld->failed = TRUE;
    return NULL;
  }
  const float *view = canary_tensor_f32_view (t);
  if (view)
    return view;
  float *copy = canary_tensor_to_f32 (t);
  g_ptr_array_add (ld->enc->owned, copy);
  ld->enc->owned_bytes += (gsize) t->numel * sizeof (float);
  return copy;
}

/* loader_tensor with the key given printf-style and the shape as up to four extents. */
static const float *G_GNUC_PRINTF (7, 8)
wt (loader *ld, int ndim, gint64 d0, gint64 d1, gint64 d2, gint64 d3, const char *fmt, ...)
{
  if (ld->failed)
    return NULL;
  const gint64 shape[4] = { d0, d1, d2, d3 };
  va_list ap;
  va_start (ap, fmt);
  char *key = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const float *r = loader_tensor (ld, key, ndim, shape);
  g_free (key);
  return r;
}

static gboolean
ckpt_has (const canary_ckpt *ck, const char *key)
{
  return canary_ckpt_get (ck, key) != NULL;
}

/* Only the FastConformer configuration Canary uses is implemented; refuse the rest by name. */
static gboolean
check_config (const canary_config *cfg, GError **error)
{
  const char *why = NULL;
  if (cfg->subsampling && g_strcmp0 (cfg->subsampling, "dw_striding") != 0)
    why = "encoder.subsampling (only dw_striding)";
  else if (cfg->self_attention_model && g_strcmp0 (cfg->self_attention_model, "rel_pos") != 0)
    why = "encoder.self_attention_model (only rel_pos)";
  else if (cfg->conv_norm_type && g_strcmp0 (cfg->conv_norm_type, "batch_norm") != 0)
    why = "encoder.conv_norm_type (only batch_norm)";
  else if (cfg->feat_out > 0)
    why = "encoder.feat_out (an output projection)";
  if (why) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED, "unsupported %s", why);
    return FALSE;
  }
  const int f = cfg->subsampling_factor;
  if (cfg->enc_d_model <= 0 || cfg->enc_d_model > 65536 || cfg->enc_d_model % 2 != 0
      || cfg->enc_heads <= 0 || cfg->enc_d_model % cfg->enc_heads != 0
      || cfg->enc_ff_expansion <= 0 || cfg->enc_ff_expansion > 64
      || cfg->enc_conv_kernel <= 0 || cfg->enc_conv_kernel % 2 == 0 || cfg->enc_conv_kernel > 1024
      || cfg->enc_layers < 0 || cfg->enc_layers > 1024
      || cfg->subsampling_channels <= 0 || cfg->subsampling_channels > 65536
      || f < 2 || f > (1 << MAX_STAGES) || (f & (f - 1)) != 0
      || cfg->n_mels <= 0 || cfg->n_mels > 4096) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
        "encoder: invalid sizes in model_config.yaml (d_model %d, n_heads %d, ff_expansion_factor "
        "%d, conv_kernel_size %d (must be odd), n_layers %d, subsampling_conv_channels %d, "
        "subsampling_factor %d (must be a power of 2), features %d)", cfg->enc_d_model, cfg->enc_heads,
        cfg->enc_ff_expansion, cfg->enc_conv_kernel, cfg->enc_layers, cfg->subsampling_channels,
        f, cfg->n_mels);
    return FALSE;
  }
  return TRUE;
}

/* conv.0 (full 3x3, 1 → C), then per later stage a depthwise 3x3 (index 2 + 3i) and a
 * pointwise 1x1 (index 3 + 3i), ReLUs between (no parameters); then `out`. */
static void
load_subsampling (loader *ld)
{
  canary_encoder *e = ld->enc;
  const gint64 C = e->chans;
  e->conv0_w = wt (ld, 4, C, 1, SUB_K, SUB_K, "encoder.pre_encode.conv.0.weight");
  e->conv0_b = wt (ld, 1, C, 0, 0, 0, "encoder.pre_encode.conv.0.bias");
  for (int s = 1; s < e->n_stages; s++) {
    const int dw = 2 + 3 * (s - 1), pw = dw + 1;
    e->dw_w[s] = wt (ld, 4, C, 1, SUB_K, SUB_K, "encoder.pre_encode.conv.%d.weight", dw);
    e->dw_b[s] = wt (ld, 1, C, 0, 0, 0, "encoder.pre_encode.conv.%d.bias", dw);
    e->pw[s].w = wt (ld, 4, C, C, 1, 1, "encoder.pre_encode.conv.%d.weight", pw);
    e->pw[s].b = wt (ld, 1, C, 0, 0, 0, "encoder.pre_encode.conv.%d.bias", pw);
  }
  e->pre_out.w = wt (ld, 2, e->d, C * e->f_out, 0, 0, "encoder.pre_encode.out.weight");
  e->pre_out.b = wt (ld, 1, e->d, 0, 0, 0, "encoder.pre_encode.out.bias");
}

/* Folds the eval-mode BatchNorm that follows the depthwise conv into it:
 * bn(conv(x)) = s·(w∗x + b − mean) + beta with s = gamma / sqrt(var + eps). Stores the weight
 * transposed to [K][D] so the time loop reads contiguous channel rows. */
static void
fold_batch_norm (loader *ld, enc_layer *L, int li)
{
  canary_encoder *e = ld->enc;
  const int D = e->d, K = e->kernel;
  const char *pre = "encoder.layers";
  const float *w = wt (ld, 3, D, 1, K, 0, "%s.%d.conv.depthwise_conv.weight", pre, li);
  const float *b = wt (ld, 1, D, 0, 0, 0, "%s.%d.conv.depthwise_conv.bias", pre, li);
  const float *g = wt (ld, 1, D, 0, 0, 0, "%s.%d.conv.batch_norm.weight", pre, li);
  const float *beta = wt (ld, 1, D, 0, 0, 0, "%s.%d.conv.batch_norm.bias", pre, li);
  const float *mean = wt (ld, 1, D, 0, 0, 0, "%s.%d.conv.batch_norm.running_mean", pre, li);
  const float *var = wt (ld, 1, D, 0, 0, 0, "%s.%d.conv.batch_norm.running_var", pre, li);
  if (ld->failed)
    return;
  float *fw = g_new (float, (gsize) K * D);
  float *fb = g_new (float, D);
  for (int c = 0; c < D; c++) {
    const double s = (double) g[c] / sqrt ((double) var[c] + BN_EPS);
    for (int k = 0; k < K; k++)
      fw[(gsize) k * D + c] = (float) (w[(gsize) c * K + k] * s);
    fb[c] = (float) (((double) b[c] - mean[c]) * s + beta[c]);
  }
  g_ptr_array_add (e->owned, fw);
  g_ptr_array_add (e->owned, fb);
  e->owned_bytes += ((gsize) K * D + D) * sizeof (float);
  L->dw_w = fw;
  L->dw_b = fb;
}

static void
load_ff (loader *ld, int li, int which, linear *l1, linear *l2)
{
  const gint64 D = ld->enc->d, F = ld->enc->ff;
  const char *pre = "encoder.layers";
  l1->w = wt (ld, 2, F, D, 0, 0, "%s.%d.feed_forward%d.linear1.weight", pre, li, which);
  l1->b = wt (ld, 1, F, 0, 0, 0, "%s.%d.feed_forward%d.linear1.bias", pre, li, which);
  l2->w = wt (ld, 2, D, F, 0, 0, "%s.%d.feed_forward%d.linear2.weight", pre, li, which);
  l2->b = wt (ld, 1, D, 0, 0, 0, "%s.%d.feed_forward%d.linear2.bias", pre, li, which);
}

static void
load_norm (loader *ld, int li, const char *name, const float **w, const float **b)
{
  *w = wt (ld, 1, ld->enc->d, 0, 0, 0, "encoder.layers.%d.%s.weight", li, name);
  *b = wt (ld, 1, ld->enc->d, 0, 0, 0, "encoder.layers.%d.%s.bias", li, name);
}

static void
load_attention (loader *ld, enc_layer *L, int li)
{
  const gint64 D = ld->enc->d, H = ld->enc->heads, dk = ld->enc->dk;
  const char *pre = "encoder.layers";
  linear *lins[4] = { &L->q, &L->k, &L->v, &L->o };
  const char *names[4] = { "q", "k", "v", "out" };
  for (int i = 0; i < 4; i++) {
    lins[i]->w = wt (ld, 2, D, D, 0, 0, "%s.%d.self_attn.linear_%s.weight", pre, li, names[i]);
    lins[i]->b = wt (ld, 1, D, 0, 0, 0, "%s.%d.self_attn.linear_%s.bias", pre, li, names[i]);
  }
  L->pos_w = wt (ld, 2, D, D, 0, 0, "%s.%d.self_attn.linear_pos.weight", pre, li);
  if (ld->cfg->untie_biases) {
    L->bias_u = wt (ld, 2, H, dk, 0, 0, "%s.%d.self_attn.pos_bias_u", pre, li);
    L->bias_v = wt (ld, 2, H, dk, 0, 0, "%s.%d.self_attn.pos_bias_v", pre, li);
  } else {
    /* untie_biases: false → one pair of biases on the encoder, shared by every layer. */
    L->bias_u = wt (ld, 2, H, dk, 0, 0, "encoder.pos_bias_u");
    L->bias_v = wt (ld, 2, H, dk, 0, 0, "encoder.pos_bias_v");
  }
}

static void
load_layer (loader *ld, enc_layer *L, int li)
{
  const gint64 D = ld->enc->d;
  const char *pre = "encoder.layers";
  load_norm (ld, li, "norm_feed_forward1", &L->ln_ff1_w, &L->ln_ff1_b);
  load_ff (ld, li, 1, &L->ff1_1, &L->ff1_2);
  load_norm (ld, li, "norm_self_att", &L->ln_att_w, &L->ln_att_b);
  load_attention (ld, L, li);
  load_norm (ld, li, "norm_conv", &L->ln_conv_w, &L->ln_conv_b);
  L->pw1.w = wt (ld, 3, 2 * D, D, 1, 0, "%s.%d.conv.pointwise_conv1.weight", pre, li);
  L->pw1.b = wt (ld, 1, 2 * D, 0, 0, 0, "%s.%d.conv.pointwise_conv1.bias", pre, li);
  fold_batch_norm (ld, L, li);
  L->pw2.w = wt (ld, 3, D, D, 1, 0, "%s.%d.conv.pointwise_conv2.weight", pre, li);
  L->pw2.b = wt (ld, 1, D, 0, 0, 0, "%s.%d.conv.pointwise_conv2.bias", pre, li);
  load_norm (ld, li, "norm_feed_forward2", &L->ln_ff2_w, &L->ln_ff2_b);
  load_ff (ld, li, 2, &L->ff2_1, &L->ff2_2);
  load_norm (ld, li, "norm_out", &L->ln_out_w, &L->ln_out_b);
}

/* NeMo uses Identity when encoder and decoder widths agree (no keys), a Linear otherwise. */
static void
load_projection (loader *ld)
{
  canary_encoder *e = ld->enc;
  const int H = ld->cfg->dec_hidden;
  if (ld->failed)
    return;
  if (ckpt_has (ld->ck, "encoder_decoder_proj.weight")) {
    /* The decoder's hidden size fixes the rows; without one, the tensor's own. */
    const canary_tensor *t = canary_ckpt_get (ld->ck, "encoder_decoder_proj.weight");
    const gint64 rows = H > 0 ? H : (t->ndim == 2 ? t->shape[0] : 0);
    e->proj.w = wt (ld, 2, rows, e->d, 0, 0, "encoder_decoder_proj.weight");
    e->proj.b = wt (ld, 1, rows, 0, 0, 0, "encoder_decoder_proj.bias");
    e->out_dim = (int) rows;
    return;
  }
  if (H > 0 && H != e->d) {
    g_set_error (ld->error, CANARY_ERROR, CANARY_ERROR_NOT_FOUND,
        "encoder_decoder_proj.weight: missing, but the encoder (d_model %d) and decoder (hidden "
        "%d) widths differ", e->d, H);
    ld->failed = TRUE;
    return;
  }
  e->out_dim = e->d;
}

canary_encoder *
canary_encoder_new (const canary_config *cfg, const canary_ckpt *ck, GError **error)
{
  g_return_val_if_fail (cfg != NULL && ck != NULL, NULL);
  if (!check_config (cfg, error))
    return NULL;
  canary_encoder *e = g_new0 (canary_encoder, 1);
  e->owned = g_ptr_array_new_with_free_func (g_free);
  e->d = cfg->enc_d_model;
  e->heads = cfg->enc_heads;
  e->dk = e->d / e->heads;
  e->ff = e->d * cfg->enc_ff_expansion;
  e->kernel = cfg->enc_conv_kernel;
  e->n_layers = cfg->enc_layers;
  e->n_mels = cfg->n_mels;
  e->chans = cfg->subsampling_channels;
  e->xscale = cfg->xscaling;
  for (int f = cfg->subsampling_factor; f > 1; f /= 2)
    e->n_stages++;
  e->f_out = e->n_mels;
  for (int s = 0; s < e->n_stages; s++)
    e->f_out = (e->f_out - 1) / 2 + 1;

  loader ld = { e, ck, cfg, error, FALSE };
  load_subsampling (&ld);
  e->layers = g_new0 (enc_layer, MAX (e->n_layers, 1));
  for (int i = 0; i < e->n_layers && !ld.failed; i++)
    load_layer (&ld, &e->layers[i], i);
  load_projection (&ld);
  if (!ld.failed) {
    /* A checkpoint with more layers than the config is a mismatch, not something to ignore. */
    char *extra = g_strdup_printf ("encoder.layers.%d.norm_out.weight", e->n_layers);
    if (ckpt_has (ck, extra)) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
          "%s: the checkpoint has more encoder layers than model_config.yaml's n_layers %d",
          extra, e->n_layers);
      ld.failed = TRUE;
    }
    g_free (extra);
  }
  if (ld.failed) {
    canary_encoder_free (e);
    return NULL;
  }
  return e;
}

void
canary_encoder_free (canary_encoder *enc)
{
  if (!enc)
    return;
  g_ptr_array_unref (enc->owned);
  g_free (enc->layers);
  g_free (enc);
}

gsize
canary_encoder_weight_bytes (const canary_encoder *enc)
{
  return enc->owned_bytes;
}

int
canary_encoder_out_dim (const canary_encoder *enc)
{
  return enc->out_dim;
}

int
canary_encoder_d_model (const canary_encoder *enc)
{
  return enc->d;
}

/* ---------------------------------------------------------------------------------------- */
/* Sizes and scratch.                                                                        */

/* NeMo's calc_length / calculate_conv_output_size for k=3, s=2, p=1: floor((L - 1) / 2) + 1,
 * with Python's floor division (0 stays 0). */
static int
stride2_len (int len)
{
  return len <= 0 ? 0 : (len - 1) / 2 + 1;
}

static void
compute_dims (const canary_encoder *enc, int n_frames, int n_valid, sub_dims *d)
{
  d->n_frames = n_frames;
  d->t[0] = n_frames;
  d->len[0] = n_valid;
  d->f[0] = enc->n_mels;
  for (int s = 1; s <= enc->n_stages; s++) {
    d->t[s] = stride2_len (d->t[s - 1]);
    d->len[s] = stride2_len (d->len[s - 1]);
    d->f[s] = stride2_len (d->f[s - 1]);
  }
}

int
canary_encoder_n_out (const canary_encoder *enc, int n_mel_frames)
{
  sub_dims d;
  compute_dims (enc, n_mel_frames, 0, &d);
  return d.t[enc->n_stages];
}

/* Element counts of every scratch buffer for inputs of n_frames mel frames (see the struct). */
typedef struct {
  gsize col, sa, sb, td, big, pe, p, scores, bd, out;
} work_sizes;

/* Channels per block of the first conv when a depthwise stage follows. A quarter of the channels
 * makes a block's output ([C/4][t1][f1]) about the size of the next stage's full output
 * ([C][t1/2][f1/2]), which the scratch holds anyway; larger blocks mean fewer repackings of the
 * im2col matrix by the GEMM. */
static int
conv0_block (const canary_encoder *e)
{
  return e->n_stages == 1 ? e->chans : MAX (1, (e->chans + 3) / 4);
}

static void
work_sizes_for (const canary_encoder *e, int n_frames, work_sizes *z)
{
  sub_dims d;
  compute_dims (e, n_frames, n_frames, &d);
  const gsize C = e->chans, T = d.t[e->n_stages], D = e->d;
  const gsize plane1 = (gsize) d.t[1] * d.f[1];
  z->col = plane1 * SUB_K * SUB_K;
  /* sa: conv0 output (a block of channels when a depthwise stage follows), then each stage's
   * pointwise output. sb: each depthwise output, then the flattened [T][C * f_out]. */
  z->sa = (gsize) conv0_block (e) * plane1;
  z->sb = T * C * e->f_out;
  for (int s = 2; s <= e->n_stages; s++) {
    z->sa = MAX (z->sa, C * d.t[s] * d.f[s]);
    z->sb = MAX (z->sb, C * d.t[s] * d.f[s]);
  }
  z->td = T * D;
  z->big = T * MAX ((gsize) e->ff, 2 * D);
  z->pe = (2 * T - 1) * D;
  z->p = z->pe;
  z->scores = T * T;
  z->bd = T * (2 * T - 1);
  z->out = e->proj.w ? T * (gsize) e->out_dim : 0;
}

/* Carves the buffers out of one allocation, each 64-byte aligned. Returns the float count. */
static gsize
work_carve (canary_encoder_work *w, const work_sizes *z, float *base)
{
  gsize off = 0;
#define CARVE(field, count) \
  do { \
    w->field = base ? base + off : NULL; \
    off += ((count) + 15) & ~(gsize) 15; \
  } while (0)
  CARVE (col, z->col);
  CARVE (sa, z->sa);
  CARVE (sb, z->sb);
  CARVE (x, z->td);
  CARVE (h, z->td);
  CARVE (tmp, z->td);
  CARVE (q, z->td);
  CARVE (qv, z->td);
  CARVE (k, z->td);
  CARVE (v, z->td);
  CARVE (ctx, z->td);
  CARVE (big, z->big);
  CARVE (pe, z->pe);
  CARVE (p, z->p);
  CARVE (scores, z->scores);
  CARVE (bd, z->bd);
  CARVE (out, z->out);
#undef CARVE
  return off;
}

/* pe[r] holds relative position max_t - 1 - r: pe[2j] = sin(p·div_j), pe[2j+1] = cos(p·div_j)
 * with div_j = exp(2j · −ln(10000)/D), all in FP32 like NeMo's create_pe. */
static void
fill_positional_table (const canary_encoder *e, canary_encoder_work *w)
{
  const int D = e->d, rows = 2 * w->max_t - 1;
  const float scale = (float) (-(log (POS_BASE) / D));
  float *div = g_new (float, D / 2);
  for (int j = 0; j < D / 2; j++)
    div[j] = expf ((float) (2 * j) * scale);
  for (int r = 0; r < rows; r++) {
    const float pos = (float) (w->max_t - 1 - r);
    float *row = w->pe + (gsize) r * D;
    for (int j = 0; j < D / 2; j++) {
      const float a = pos * div[j];
      row[2 * j] = sinf (a);
      row[2 * j + 1] = cosf (a);
    }
  }
  g_free (div);
}

static gboolean
work_alloc (const canary_encoder *enc, canary_encoder_work *w, int max_frames, GError **error)
{
  work_sizes z;
  work_sizes_for (enc, max_frames, &z);
  const gsize count = work_carve (w, &z, NULL);
  gsize bytes;
  void *mem = NULL;
  if (!canary_mul_size (count, sizeof (float), &bytes) || posix_memalign (&mem, 64, bytes) != 0) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "encoder: cannot allocate %" G_GSIZE_FORMAT " bytes of scratch for %d mel frames",
        count * sizeof (float), max_frames);
    return FALSE;
  }
  free (w->arena);
  w->arena = mem;
  w->bytes = bytes;
  w->max_frames = max_frames;
  w->max_t = canary_encoder_n_out (enc, max_frames);
  work_carve (w, &z, w->arena);
  fill_positional_table (enc, w);
  return TRUE;
}

canary_encoder_work *
canary_encoder_work_new (const canary_encoder *enc, int max_frames, GError **error)
{
  g_return_val_if_fail (enc != NULL, NULL);
  if (max_frames < 1 || max_frames > MAX_FRAMES) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "encoder: max_frames %d out of range [1, %d]", max_frames, MAX_FRAMES);
    return NULL;
  }
  canary_encoder_work *w = g_new0 (canary_encoder_work, 1);
  if (!work_alloc (enc, w, max_frames, error)) {
    g_free (w);
    return NULL;
  }
  return w;
}

void
canary_encoder_work_free (canary_encoder_work *work)
{
  if (!work)
    return;
  free (work->arena);
  g_free (work);
}

gsize
canary_encoder_work_bytes (const canary_encoder_work *work)
{
  return work->bytes;
}

/* ---------------------------------------------------------------------------------------- */
/* Building blocks.                                                                          */

/* y[rows][out] = x[rows][in] · Wᵀ + b, as torch's addmm (bias preloaded, beta = 1). */
static void
linear_fwd (const linear *l, const float *x, int rows, int in, int out, float *y)
{
  if (rows <= 0)
    return;
  for (int r = 0; r < rows; r++) {
    if (l->b)
      memcpy (y + (gsize) r * out, l->b, (gsize) out * sizeof (float));
    else
      memset (y + (gsize) r * out, 0, (gsize) out * sizeof (float));
  }
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, l->w, in,
      1.0f, y, out);
}

static void
layer_norm (const float *x, int rows, int D, const float *g, const float *b, float *y)
{
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (gsize) r * D;
    float *yr = y + (gsize) r * D;
    double sum = 0.0;
    for (int c = 0; c < D; c++)
      sum += xr[c];
    const double mean = sum / D;
    double ss = 0.0;
    for (int c = 0; c < D; c++)
      ss += (xr[c] - mean) * (xr[c] - mean);
    const float m = (float) mean, rstd = (float) (1.0 / sqrt (ss / D + LN_EPS));
    for (int c = 0; c < D; c++)
      yr[c] = (xr[c] - m) * rstd * g[c] + b[c];
  }
}

static inline float
sigmoidf (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

/* Swish / SiLU: x · sigmoid(x). */
static void
swish (float *x, gsize n)
{
  for (gsize i = 0; i < n; i++)
    x[i] = x[i] / (1.0f + expf (-x[i]));
}

/* x += scale · y over n elements (the residual adds; scale 0.5 for the macaron FF halves). */
static void
residual_add (float *x, const float *y, gsize n, float scale)
{
  if (scale == 1.0f) {
    for (gsize i = 0; i < n; i++)
      x[i] += y[i];
  } else {
    for (gsize i = 0; i < n; i++)
      x[i] += y[i] * scale;
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Subsampling.                                                                              */

/* im2col of the masked mel image for conv.0: image[t][f] = mel[f][t] for t < len[0], else 0
 * (MaskedConvSequential masks the input); zero padding 1 on both axes. Only the first len[1]
 * output rows are built: later rows are masked before use. */
static void
conv0_im2col (const canary_encoder *e, const sub_dims *d, const float *mel, float *col)
{
  const int T0 = d->t[0], L0 = d->len[0], F0 = d->f[0], F1 = d->f[1], L1 = d->len[1];
  for (int t = 0; t < L1; t++) {
    for (int f = 0; f < F1; f++) {
      float *c = col + ((gsize) t * F1 + f) * (SUB_K * SUB_K);
      for (int i = 0; i < SUB_K; i++) {
        const int ti = 2 * t + i - 1;
        for (int j = 0; j < SUB_K; j++) {
          const int fj = 2 * f + j - 1;
          const gboolean in = ti >= 0 && ti < L0 && fj >= 0 && fj < F0;
          c[i * SUB_K + j] = in ? mel[(gsize) fj * T0 + ti] : 0.0f;
        }
      }
    }
  }
}

/* ReLU without a data-dependent branch (which mispredicts on about half of the inputs and was
 * the subsampling's largest cost): clear the value when its sign bit is set. */
static inline float
relu (float v)
{
  guint32 u;
  memcpy (&u, &v, sizeof u);
  u &= ~(guint32) ((gint32) u >> 31);
  memcpy (&v, &u, sizeof v);
  return v;
}

/* Adds the per-channel bias and applies ReLU to the first `valid` elements of each channel plane
 * (stride `plane`) and zeros the rest: NeMo's mask → ReLU → mask around each activation. */
static void
bias_relu_mask (float *x, int chans, gsize plane, gsize valid, const float *bias)
{
  for (int c = 0; c < chans; c++) {
    float *restrict p = x + (gsize) c * plane;
    const float b = bias[c];
    for (gsize i = 0; i < valid; i++)
      p[i] = relu (p[i] + b);
    memset (p + valid, 0, (plane - valid) * sizeof (float));
  }
}

/* One output row of a 3x3 stride-2 depthwise conv tap row: o[f] += w_j · r[2f + j − 1] for the
 * f whose input column is inside [0, f_in) (zero padding elsewhere). */
static void
dw_tap_row (float *restrict o, const float *restrict r, const float *w3, int f_in, int f_out)
{
  for (int j = 0; j < SUB_K; j++) {
    const float wj = w3[j];
    const int f_lo = j == 0 ? 1 : 0, f_hi = MIN (f_out - 1, (f_in - j) / 2);
    for (int f = f_lo; f <= f_hi; f++)
      o[f] += wj * r[2 * f + j - 1];
  }
}

/* Depthwise 3x3, stride 2, padding 1, per channel: out[c][t][f] for t < len_out (the rest 0).
 * The input rows past the previous length are already zero. No activation follows directly
 * (the pointwise conv does), but NeMo masks before it, hence the zeroed tail. */
static void
depthwise_s2 (const float *in, int chans, int t_in, int f_in, const float *w, const float *b,
    float *out, int t_out, int f_out, int len_out)
{
  for (int c = 0; c < chans; c++) {
    const float *ip = in + (gsize) c * t_in * f_in;
    const float *wc = w + (gsize) c * SUB_K * SUB_K;
    float *op = out + (gsize) c * t_out * f_out;
    for (int t = 0; t < len_out; t++) {
      float *o = op + (gsize) t * f_out;
      for (int f = 0; f < f_out; f++)
        o[f] = b[c];
      for (int i = 0; i < SUB_K; i++) {
        const int ti = 2 * t + i - 1;
        if (ti >= 0 && ti < t_in)
          dw_tap_row (o, ip + (gsize) ti * f_in, wc + i * SUB_K, f_in, f_out);
      }
    }
    memset (op + (gsize) len_out * f_out, 0, (gsize) (t_out - len_out) * f_out * sizeof (float));
  }
}

/* Stage 1: conv.0 + ReLU, channel block by channel block; when a depthwise stage follows, each
 * block is consumed at once by that stage's depthwise conv (into sb) so conv.0's full output,
 * the largest tensor of the encoder, never has to exist. */
static void
subsample_stage1 (const canary_encoder *e, canary_encoder_work *w, const sub_dims *d,
    const float *mel)
{
  const gsize plane1 = (gsize) d->t[1] * d->f[1], valid1 = (gsize) d->len[1] * d->f[1];
  const int block = conv0_block (e);
  conv0_im2col (e, d, mel, w->col);
  for (int c0 = 0; c0 < e->chans; c0 += block) {
    const int nb = MIN (block, e->chans - c0);
    if (valid1 > 0)
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, nb, (int) valid1, SUB_K * SUB_K,
          1.0f, e->conv0_w + (gsize) c0 * SUB_K * SUB_K, SUB_K * SUB_K, w->col, SUB_K * SUB_K,
          0.0f, w->sa, (int) plane1);
    bias_relu_mask (w->sa, nb, plane1, valid1, e->conv0_b + c0);
    if (e->n_stages > 1)
      depthwise_s2 (w->sa, nb, d->t[1], d->f[1], e->dw_w[1] + (gsize) c0 * SUB_K * SUB_K,
          e->dw_b[1] + c0, w->sb + (gsize) c0 * d->t[2] * d->f[2], d->t[2], d->f[2], d->len[2]);
  }
}

/* Pointwise 1x1 conv of stage s (s >= 2, weights pw[s - 1]) over all channels (sb → sa), bias,
 * ReLU, mask. */
static void
subsample_pointwise (const canary_encoder *e, canary_encoder_work *w, const sub_dims *d, int s)
{
  const int C = e->chans;
  const linear *pw = &e->pw[s - 1];
  const gsize plane = (gsize) d->t[s] * d->f[s], valid = (gsize) d->len[s] * d->f[s];
  if (valid > 0)
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, C, (int) valid, C, 1.0f, pw->w, C,
        w->sb, (int) plane, 0.0f, w->sa, (int) plane);
  bias_relu_mask (w->sa, C, plane, valid, pw->b);
}

/* The whole ConvSubsampling: stages, then flatten [C][T][F'] → [T][C·F'] (feature c·F' + f)
 * and `out` into w->x. */
static void
subsample (const canary_encoder *e, canary_encoder_work *w, const sub_dims *d, const float *mel)
{
  const int S = e->n_stages, C = e->chans;
  subsample_stage1 (e, w, d, mel);
  for (int s = 2; s <= S; s++) {
    if (s > 2)
      depthwise_s2 (w->sa, C, d->t[s - 1], d->f[s - 1], e->dw_w[s - 1], e->dw_b[s - 1], w->sb,
          d->t[s], d->f[s], d->len[s]);
    subsample_pointwise (e, w, d, s);
  }
  const int T = d->t[S], F = d->f[S];
  for (int t = 0; t < T; t++)
    for (int c = 0; c < C; c++)
      memcpy (w->sb + ((gsize) t * C + c) * F, w->sa + ((gsize) c * T + t) * F,
          (gsize) F * sizeof (float));
  linear_fwd (&e->pre_out, w->sb, T, C * F, e->d, w->x);
}

/* ---------------------------------------------------------------------------------------- */
/* Conformer layer.                                                                          */

/* FF(x) = linear2(swish(linear1(x))) into w->tmp. */
static void
feed_forward (const canary_encoder *e, canary_encoder_work *w, const linear *l1, const linear *l2,
    int T)
{
  linear_fwd (l1, w->h, T, e->d, e->ff, w->big);
  swish (w->big, (gsize) T * e->ff);
  linear_fwd (l2, w->big, T, e->ff, e->d, w->tmp);
}

/* Softmax of one score row over the valid keys, in place. */
static void
softmax_row (float *s, int n)
{
  float mx = s[0];
  for (int j = 1; j < n; j++)
    mx = MAX (mx, s[j]);
  double sum = 0.0;
  for (int j = 0; j < n; j++) {
    s[j] = expf (s[j] - mx);
    sum += s[j];
  }
  const float inv = (float) (1.0 / sum);
  for (int j = 0; j < n; j++)
    s[j] *= inv;
}

/* One head over the valid block: scores[i][j] = ((q_i+u)·k_j + (q_i+v)·p_{L-1-i+j}) / sqrt(dk),
 * i.e. Transformer-XL's rel_shift read by index (p row r is relative position L-1-r), softmax,
 * ctx_h = probs · v_h. */
static void
attention_head (const canary_encoder *e, canary_encoder_work *w, int hd, int L)
{
  const int D = e->d, dk = e->dk, P = 2 * L - 1;
  const gsize off = (gsize) hd * dk;
  const float sqrt_dk = (float) sqrt ((double) dk);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, L, L, dk, 1.0f, w->q + off, D,
      w->k + off, D, 0.0f, w->scores, L);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, L, P, dk, 1.0f, w->qv + off, D,
      w->p + off, D, 0.0f, w->bd, P);
  for (int i = 0; i < L; i++) {
    float *s = w->scores + (gsize) i * L;
    const float *bd = w->bd + (gsize) i * P + (L - 1 - i);
    for (int j = 0; j < L; j++)
      s[j] = (s[j] + bd[j]) / sqrt_dk;
    softmax_row (s, L);
  }
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, L, dk, L, 1.0f, w->scores, L,
      w->v + off, D, 0.0f, w->ctx + off, D);
}

/* RelPositionMultiHeadAttention on w->h (T rows, L valid) into w->tmp. */
static void
self_attention (const canary_encoder *e, canary_encoder_work *w, const enc_layer *ly, int T,
    int L)
{
  const int D = e->d;
  if (L > 0) {
    linear_fwd (&ly->q, w->h, L, D, D, w->q);
    linear_fwd (&ly->k, w->h, L, D, D, w->k);
    linear_fwd (&ly->v, w->h, L, D, D, w->v);
    /* p = linear_pos(pos_emb) for positions L-1 … -(L-1): the centre slice of the table. */
    const linear pos = { ly->pos_w, NULL };
    linear_fwd (&pos, w->pe + (gsize) (w->max_t - L) * D, 2 * L - 1, D, D, w->p);
    for (int i = 0; i < L; i++) {
      float *q = w->q + (gsize) i * D, *qv = w->qv + (gsize) i * D;
      for (int c = 0; c < D; c++) {
        qv[c] = q[c] + ly->bias_v[c];
        q[c] = q[c] + ly->bias_u[c];
      }
    }
    for (int hd = 0; hd < e->heads; hd++)
      attention_head (e, w, hd, L);
    linear_fwd (&ly->o, w->ctx, L, D, D, w->tmp);
  }
  /* Fully masked (padding) queries: zero context, so linear_out gives its bias. */
  for (int t = L; t < T; t++)
    memcpy (w->tmp + (gsize) t * D, ly->o.b, (gsize) D * sizeof (float));
}

/* Depthwise conv along time (kernel K, zero padding (K-1)/2 both sides) with the BatchNorm
 * folded in, over all T steps (padding steps read valid neighbours, as in NeMo). */
static void
depthwise_time (const canary_encoder *e, const enc_layer *ly, const float *in, float *out, int T)
{
  const int D = e->d, K = e->kernel, half = (K - 1) / 2;
  for (int t = 0; t < T; t++) {
    float *o = out + (gsize) t * D;
    memcpy (o, ly->dw_b, (gsize) D * sizeof (float));
    for (int k = 0; k < K; k++) {
      const int ti = t + k - half;
      if (ti < 0 || ti >= T)
        continue;
      const float *x = in + (gsize) ti * D, *wk = ly->dw_w + (gsize) k * D;
      for (int c = 0; c < D; c++)
        o[c] += wk[c] * x[c];
    }
  }
}

/* ConformerConvolution on w->h into w->tmp: pw1 → GLU → zero padding steps → depthwise (BN
 * folded) → Swish → pw2. */
static void
conv_module (const canary_encoder *e, canary_encoder_work *w, const enc_layer *ly, int T, int L)
{
  const int D = e->d;
  linear_fwd (&ly->pw1, w->h, L, D, 2 * D, w->big);
  for (int t = 0; t < L; t++) {
    const float *a = w->big + (gsize) t * 2 * D, *g = a + D;
    float *o = w->ctx + (gsize) t * D;
    for (int c = 0; c < D; c++)
      o[c] = a[c] * sigmoidf (g[c]);
  }
  memset (w->ctx + (gsize) L * D, 0, (gsize) (T - L) * D * sizeof (float));
  depthwise_time (e, ly, w->ctx, w->h, T);
  swish (w->h, (gsize) T * D);
  linear_fwd (&ly->pw2, w->h, T, D, D, w->tmp);
}

static void
conformer_layer (const canary_encoder *e, canary_encoder_work *w, const enc_layer *ly, int T,
    int L)
{
  const int D = e->d;
  const gsize n = (gsize) T * D;
  layer_norm (w->x, T, D, ly->ln_ff1_w, ly->ln_ff1_b, w->h);
  feed_forward (e, w, &ly->ff1_1, &ly->ff1_2, T);
  residual_add (w->x, w->tmp, n, 0.5f);
  layer_norm (w->x, T, D, ly->ln_att_w, ly->ln_att_b, w->h);
  self_attention (e, w, ly, T, L);
  residual_add (w->x, w->tmp, n, 1.0f);
  layer_norm (w->x, T, D, ly->ln_conv_w, ly->ln_conv_b, w->h);
  conv_module (e, w, ly, T, L);
  residual_add (w->x, w->tmp, n, 1.0f);
  layer_norm (w->x, T, D, ly->ln_ff2_w, ly->ln_ff2_b, w->h);
  feed_forward (e, w, &ly->ff2_1, &ly->ff2_2, T);
  residual_add (w->x, w->tmp, n, 0.5f);
  layer_norm (w->x, T, D, ly->ln_out_w, ly->ln_out_b, w->x);
}

/* ---------------------------------------------------------------------------------------- */
/* Entry points.                                                                             */

/* Checks the arguments, grows the scratch if needed and runs the subsampling into w->x. */
static gboolean
run_pre_encode (const canary_encoder *e, canary_encoder_work *w, const float *mel, int n_frames,
    int n_valid, sub_dims *d, GError **error)
{
  if (!mel || n_frames < 1 || n_frames > MAX_FRAMES || n_valid < 0 || n_valid > n_frames) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "encoder: bad input (%s, %d frames, %d valid; 1 <= frames <= %d, valid <= frames)",
        mel ? "mel" : "NULL mel", n_frames, n_valid, MAX_FRAMES);
    return FALSE;
  }
  if (n_frames > w->max_frames && !work_alloc (e, w, n_frames, error))
    return FALSE;
  compute_dims (e, n_frames, n_valid, d);
  subsample (e, w, d, mel);
  return TRUE;
}

gboolean
canary_encoder_pre_encode (const canary_encoder *enc, canary_encoder_work *work,
    const float *mel, int n_frames, int n_valid, const float **out, int *t_enc, int *enc_len,
    GError **error)
{
  g_return_val_if_fail (enc != NULL && work != NULL, FALSE);
  sub_dims d;
  if (!run_pre_encode (enc, work, mel, n_frames, n_valid, &d, error))
    return FALSE;
  if (out)
    *out = work->x;
  if (t_enc)
    *t_enc = d.t[enc->n_stages];
  if (enc_len)
    *enc_len = d.len[enc->n_stages];
  return TRUE;
}

gboolean
canary_encoder_forward (const canary_encoder *enc, canary_encoder_work *work, const float *mel,
    int n_frames, int n_valid, const float **out, int *t_enc, int *enc_len, GError **error)
{
  g_return_val_if_fail (enc != NULL && work != NULL, FALSE);
  sub_dims d;
  if (!run_pre_encode (enc, work, mel, n_frames, n_valid, &d, error))
    return FALSE;
  const int T = d.t[enc->n_stages], L = d.len[enc->n_stages], D = enc->d;
  if (enc->xscale) {
    const float s = (float) sqrt ((double) D);
    for (gsize i = 0; i < (gsize) T * D; i++)
      work->x[i] *= s;
  }
  for (int i = 0; i < enc->n_layers; i++)
    conformer_layer (enc, work, &enc->layers[i], T, L);
  const float *res = work->x;
  if (enc->proj.w) {
    linear_fwd (&enc->proj, work->x, T, D, enc->out_dim, work->out);
    res = work->out;
  }
  if (out)
    *out = res;
  if (t_enc)
    *t_enc = T;
  if (enc_len)
    *enc_len = L;
  return TRUE;
}
