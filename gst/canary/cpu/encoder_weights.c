/* gst-canary — binding the FastConformer encoder's weights (see encoder.h): every tensor looked
 * up by name, checked against the shapes model_config.yaml implies, and used in place where the
 * checkpoint's mapping allows (else converted to FP32 once); the depthwise conv gets its
 * BatchNorm folded in. Only the configuration Canary uses is accepted.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <string.h>

#include "canary.h"
#include "cpu/encoder_internal.h"
#include "cpu/gemm.h"
#include "cpu/simd.h"
#include "formats/tensor.h"
#include "layout.h"
#include "util.h"

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

/* Layer li's tensor <part>.<leaf> (layout.h) with the given shape (ndim <= 3). */
static const float *
lt (loader *ld, int li, canary_enc_part part, const char *leaf, int ndim, gint64 d0, gint64 d1,
    gint64 d2)
{
  if (ld->failed)
    return NULL;
  const gint64 shape[4] = { d0, d1, d2, 0 };
  char *key = canary_enc_key (li, part, leaf);
  const float *r = loader_tensor (ld, key, ndim, shape);
  g_free (key);
  return r;
}

/* conv.0 (full 3x3, 1 → C), then per later stage a depthwise 3x3 and a pointwise 1x1
 * (canary_sub_conv_index), ReLUs between (no parameters); then `out`. */
static void
load_subsampling (loader *ld)
{
  canary_encoder *e = ld->enc;
  const gint64 C = e->chans;
  e->conv0_w = wt (ld, 4, C, 1, SUB_K, SUB_K, CANARY_KEY_SUB_CONV ".0.weight");
  e->conv0_b = wt (ld, 1, C, 0, 0, 0, CANARY_KEY_SUB_CONV ".0.bias");
  for (int s = 1; s < e->n_stages; s++) {
    const int dw = canary_sub_conv_index (s), pw = dw + 1;
    e->dw_w[s] = wt (ld, 4, C, 1, SUB_K, SUB_K, CANARY_KEY_SUB_CONV ".%d.weight", dw);
    e->dw_b[s] = wt (ld, 1, C, 0, 0, 0, CANARY_KEY_SUB_CONV ".%d.bias", dw);
    e->pw[s].w = wt (ld, 4, C, C, 1, 1, CANARY_KEY_SUB_CONV ".%d.weight", pw);
    e->pw[s].b = wt (ld, 1, C, 0, 0, 0, CANARY_KEY_SUB_CONV ".%d.bias", pw);
  }
  e->pre_out.w = wt (ld, 2, e->d, C * e->f_out, 0, 0, CANARY_KEY_PRE_OUT ".weight");
  e->pre_out.b = wt (ld, 1, e->d, 0, 0, 0, CANARY_KEY_PRE_OUT ".bias");
}

/* The depthwise conv with the eval-mode BatchNorm that follows it folded in (layout.h). */
static void
fold_batch_norm (loader *ld, enc_layer *L, int li)
{
  canary_encoder *e = ld->enc;
  const int D = e->d, K = e->kernel;
  const float *w = lt (ld, li, CANARY_ENC_CONV_DW, "weight", 3, D, 1, K);
  const float *b = lt (ld, li, CANARY_ENC_CONV_DW, "bias", 1, D, 0, 0);
  const float *g = lt (ld, li, CANARY_ENC_CONV_BN, "weight", 1, D, 0, 0);
  const float *beta = lt (ld, li, CANARY_ENC_CONV_BN, "bias", 1, D, 0, 0);
  const float *mean = lt (ld, li, CANARY_ENC_CONV_BN, "running_mean", 1, D, 0, 0);
  const float *var = lt (ld, li, CANARY_ENC_CONV_BN, "running_var", 1, D, 0, 0);
  if (ld->failed)
    return;
  float *fw = g_new (float, (gsize) K * D);
  float *fb = g_new (float, D);
  canary_fold_batch_norm (w, b, g, beta, mean, var, D, K, fw, fb);
  g_ptr_array_add (e->owned, fw);
  g_ptr_array_add (e->owned, fb);
  e->owned_bytes += ((gsize) K * D + D) * sizeof (float);
  L->dw_w = fw;
  L->dw_b = fb;
}

/* A Linear part: weight [out][in] (3-D [out][in][1] for the pointwise convs), bias [out]. */
static void
load_linear (loader *ld, int li, canary_enc_part part, gint64 out, gint64 in, gboolean conv,
    linear *l)
{
  l->w = conv ? lt (ld, li, part, "weight", 3, out, in, 1)
      : lt (ld, li, part, "weight", 2, out, in, 0);
  l->b = part == CANARY_ENC_ATT_POS ? NULL : lt (ld, li, part, "bias", 1, out, 0, 0);
}

static void
load_norm (loader *ld, int li, canary_enc_part part, const float **w, const float **b)
{
  *w = lt (ld, li, part, "weight", 1, ld->enc->d, 0, 0);
  *b = lt (ld, li, part, "bias", 1, ld->enc->d, 0, 0);
}

static void
load_attention (loader *ld, enc_layer *L, int li)
{
  const gint64 D = ld->enc->d, H = ld->enc->heads, dk = ld->enc->dk;
  load_linear (ld, li, CANARY_ENC_ATT_Q, D, D, FALSE, &L->q);
  load_linear (ld, li, CANARY_ENC_ATT_K, D, D, FALSE, &L->k);
  load_linear (ld, li, CANARY_ENC_ATT_V, D, D, FALSE, &L->v);
  load_linear (ld, li, CANARY_ENC_ATT_OUT, D, D, FALSE, &L->o);
  L->pos_w = lt (ld, li, CANARY_ENC_ATT_POS, "weight", 2, D, D, 0);
  if (ld->cfg->untie_biases) {
    L->bias_u = lt (ld, li, CANARY_ENC_POS_BIAS_U, NULL, 2, H, dk, 0);
    L->bias_v = lt (ld, li, CANARY_ENC_POS_BIAS_V, NULL, 2, H, dk, 0);
  } else {
    /* untie_biases: false → one pair of biases on the encoder, shared by every layer. */
    L->bias_u = wt (ld, 2, H, dk, 0, 0, CANARY_KEY_POS_BIAS_U);
    L->bias_v = wt (ld, 2, H, dk, 0, 0, CANARY_KEY_POS_BIAS_V);
  }
}

static void
load_layer (loader *ld, enc_layer *L, int li)
{
  const gint64 D = ld->enc->d, F = ld->enc->ff;
  load_norm (ld, li, CANARY_ENC_NORM_FF1, &L->ln_ff1_w, &L->ln_ff1_b);
  load_linear (ld, li, CANARY_ENC_FF1_LINEAR1, F, D, FALSE, &L->ff1_1);
  load_linear (ld, li, CANARY_ENC_FF1_LINEAR2, D, F, FALSE, &L->ff1_2);
  load_norm (ld, li, CANARY_ENC_NORM_ATT, &L->ln_att_w, &L->ln_att_b);
  load_attention (ld, L, li);
  load_norm (ld, li, CANARY_ENC_NORM_CONV, &L->ln_conv_w, &L->ln_conv_b);
  load_linear (ld, li, CANARY_ENC_CONV_PW1, 2 * D, D, TRUE, &L->pw1);
  fold_batch_norm (ld, L, li);
  load_linear (ld, li, CANARY_ENC_CONV_PW2, D, D, TRUE, &L->pw2);
  load_norm (ld, li, CANARY_ENC_NORM_FF2, &L->ln_ff2_w, &L->ln_ff2_b);
  load_linear (ld, li, CANARY_ENC_FF2_LINEAR1, F, D, FALSE, &L->ff2_1);
  load_linear (ld, li, CANARY_ENC_FF2_LINEAR2, D, F, FALSE, &L->ff2_2);
  load_norm (ld, li, CANARY_ENC_NORM_OUT, &L->ln_out_w, &L->ln_out_b);
}

/* NeMo uses Identity when encoder and decoder widths agree (no keys), a Linear otherwise. */
static void
load_projection (loader *ld)
{
  canary_encoder *e = ld->enc;
  const int H = ld->cfg->dec_hidden;
  if (ld->failed)
    return;
  const canary_tensor *t = canary_ckpt_get (ld->ck, CANARY_KEY_PROJ ".weight");
  if (t) {
    /* The decoder's hidden size fixes the rows; without one, the tensor's own. */
    const gint64 rows = H > 0 ? H : (t->ndim == 2 ? t->shape[0] : 0);
    e->proj.w = wt (ld, 2, rows, e->d, 0, 0, CANARY_KEY_PROJ ".weight");
    e->proj.b = wt (ld, 1, rows, 0, 0, 0, CANARY_KEY_PROJ ".bias");
    e->out_dim = (int) rows;
    return;
  }
  if (H > 0 && H != e->d) {
    g_set_error (ld->error, CANARY_ERROR, CANARY_ERROR_NOT_FOUND,
        CANARY_KEY_PROJ ".weight: missing, but the encoder (d_model %d) and decoder (hidden "
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
  e->simd = canary_simd_enabled ();
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
    char *extra = canary_enc_key (e->n_layers, CANARY_ENC_NORM_OUT, "weight");
    if (canary_ckpt_get (ck, extra)) {
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

/* The GEMM weights canary_encoder_use_f16 converts, in allocation order. */
typedef struct {
  const float *w;
  const guint16 **w16;
  gsize n;
} f16_slot;

static int
f16_slots (canary_encoder *e, f16_slot *s)
{
  int n = 0;
  const gsize D = e->d, F = e->ff, C = e->chans;
#define SLOT(lin, elems) s[n++] = (f16_slot) { (lin).w, &(lin).w16, (elems) }
  for (int st = 1; st < e->n_stages; st++)
    SLOT (e->pw[st], C * C);
  SLOT (e->pre_out, D * C * e->f_out);
  for (int i = 0; i < e->n_layers; i++) {
    enc_layer *L = &e->layers[i];
    SLOT (L->ff1_1, F * D);
    SLOT (L->ff1_2, D * F);
    SLOT (L->q, D * D);
    SLOT (L->k, D * D);
    SLOT (L->v, D * D);
    SLOT (L->o, D * D);
    s[n++] = (f16_slot) { L->pos_w, &L->pos_w16, D * D };
    SLOT (L->pw1, 2 * D * D);
    SLOT (L->pw2, D * D);
    SLOT (L->ff2_1, F * D);
    SLOT (L->ff2_2, D * F);
  }
  if (e->proj.w)
    SLOT (e->proj, (gsize) e->out_dim * D);
#undef SLOT
  return n;
}

gboolean
canary_encoder_use_f16 (canary_encoder *enc, canary_release_fn release, gpointer user_data,
    GError **error)
{
  g_return_val_if_fail (enc && !enc->f16, FALSE);
  f16_slot *s = g_new (f16_slot, (gsize) MAX_STAGES + 2 + 11 * (gsize) enc->n_layers);
  const int n = f16_slots (enc, s);
  gsize total = 0;
  for (int i = 0; i < n; i++)
    total += s[i].n;
  guint16 *buf = g_try_new (guint16, MAX (total, 1));
  if (!buf) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "encoder: cannot allocate %" G_GSIZE_FORMAT " bytes of FP16 weights", total * 2);
    g_free (s);
    return FALSE;
  }
  gsize at = 0;
  for (int i = 0; i < n; i++) {
    canary_f32_to_f16_n (s[i].w, buf + at, s[i].n);
    *s[i].w16 = buf + at;
    if (release)
      release (s[i].w, s[i].n * sizeof (float), user_data);
    at += s[i].n;
  }
  g_free (s);
  enc->f16 = buf;
  enc->f16_elems = total;
  enc->f16_simd = canary_f16_simd_enabled ();
  enc->owned_bytes += total * sizeof (guint16);
  return TRUE;
}

gsize
canary_encoder_f16_elems (const canary_encoder *enc)
{
  return enc->f16_elems;
}

void
canary_encoder_free (canary_encoder *enc)
{
  if (!enc)
    return;
  g_free (enc->f16);
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
