/* gst-canary — Canary-shaped random models in memory (see random_model.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "random_model.h"

#include <math.h>
#include <string.h>

#include "canary.h"
#include "layout.h"
#include "nemo_constants.h"
#include "util.h"

typedef struct {
  const char *name;
  int enc_layers, d_model, dec_layers, hidden, vocab, max_len, sub_channels;
  canary_prompt_format prompt;
} shape_def;

/* The released models' layer counts, widths, vocabularies and max_sequence_length
 * (docs/MODEL.md, Released models). */
static const shape_def shapes[] = {
  { "canary-1b", 24, 1024, 24, 1024, 4128, 512, 256, CANARY_PROMPT_CANARY },
  { "canary-1b-flash", 32, 1024, 4, 1024, 5248, 1024, 256, CANARY_PROMPT_CANARY2 },
  { "canary-180m-flash", 17, 512, 4, 1024, 5248, 1024, 256, CANARY_PROMPT_CANARY2 },
  { "canary-1b-v2", 32, 1024, 8, 1024, 16384, 1024, 256, CANARY_PROMPT_CANARY2 },
  { "tiny", 2, 64, 2, 64, 256, 128, 16, CANARY_PROMPT_CANARY2 },
};

static const char *const shape_names[] = {
  "canary-1b", "canary-1b-flash", "canary-180m-flash", "canary-1b-v2", "tiny", NULL
};

const char *const *
canary_synth_shapes (void)
{
  return shape_names;
}

static canary_config *
make_config (const shape_def *s)
{
  canary_config *c = g_new0 (canary_config, 1);
  c->sample_rate = 16000;
  c->n_window_size = 400;
  c->n_window_stride = 160;
  c->n_fft = 512;
  c->n_mels = 128;
  c->window = g_strdup ("hann");
  c->normalize = g_strdup ("per_feature");
  c->preemph = 0.97;
  c->log_zero_guard_value = ldexp (1.0, -24);
  c->log_zero_guard_type = g_strdup ("add");
  c->mag_power = 2.0;
  c->log = TRUE;
  c->pad_min_duration = 1.0;

  c->enc_layers = s->enc_layers;
  c->enc_d_model = s->d_model;
  c->enc_heads = 8;
  c->enc_ff_expansion = 4;
  c->enc_conv_kernel = 9;
  c->subsampling_factor = 8;
  c->subsampling_channels = s->sub_channels;
  c->subsampling = g_strdup ("dw_striding");
  c->self_attention_model = g_strdup ("rel_pos");
  c->untie_biases = TRUE;
  c->conv_norm_type = g_strdup ("batch_norm");
  c->feat_out = -1;

  c->dec_layers = s->dec_layers;
  c->dec_hidden = s->hidden;
  c->dec_heads = 8;
  c->dec_inner = 4 * s->hidden;
  c->dec_max_seq_len = s->max_len;
  c->dec_hidden_act = g_strdup ("relu");
  c->dec_pre_ln = TRUE;
  c->vocab_size = s->vocab;

  c->beam_size = 1;
  c->max_generation_delta = 50;
  c->prompt_format = s->prompt;
  c->tokenizer_kind = CANARY_TOKENIZER_AGGREGATE;
  c->tokenizer_langs = g_ptr_array_new ();
  c->target = g_strdup ("nemo.collections.asr.models.aed_multitask_models.EncDecMultiTaskModel");
  return c;
}

/* splitmix64: a tiny, well-mixed seeded generator (quality is irrelevant here, speed is not). */
static inline guint64
next_u64 (guint64 *s)
{
  guint64 z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

typedef struct {
  canary_ckpt *ck;
  guint64 rng;
  GError **error;
  gboolean ok;
} builder;

/* Adds a tensor of uniform values in [lo, hi) under a printf-formatted key. */
static void G_GNUC_PRINTF (6, 0)
vadd (builder *b, float lo, float hi, int ndim, const int64_t *shape, const char *fmt, va_list ap)
{
  if (!b->ok)
    return;
  gsize n = 1;
  for (int i = 0; i < ndim; i++)
    n *= (gsize) shape[i];
  float *data = g_try_new (float, n);
  if (!data) {
    g_set_error (b->error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "synthetic model: cannot allocate %" G_GSIZE_FORMAT " bytes", n * sizeof (float));
    b->ok = FALSE;
    return;
  }
  for (gsize i = 0; i < n; i++)
    data[i] = lo + (hi - lo) * (float) ((next_u64 (&b->rng) >> 40) * (1.0 / 16777216.0));
  char *name = g_strdup_vprintf (fmt, ap);
  b->ok = canary_ckpt_add_tensor (b->ck, name, CANARY_DTYPE_F32, ndim, shape, data, n * sizeof (float),
      b->error) != NULL;
  g_free (name);
}

/* A weight scaled by 1/sqrt(fan_in), which keeps activations O(1) through deep stacks. */
static void G_GNUC_PRINTF (5, 6)
add_w (builder *b, int fan_in, int ndim, const int64_t *shape, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  float r = 1.0f / sqrtf ((float) fan_in);
  vadd (b, -r, r, ndim, shape, fmt, ap);
  va_end (ap);
}

/* Biases, LayerNorm/BatchNorm parameters and statistics: values in [lo, hi). */
static void G_GNUC_PRINTF (6, 7)
add_v (builder *b, float lo, float hi, int ndim, const int64_t *shape, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vadd (b, lo, hi, ndim, shape, fmt, ap);
  va_end (ap);
}

#define SHAPE(...) ((const int64_t[]) { __VA_ARGS__ })

static void
add_linear (builder *b, const char *prefix, int out, int in, gboolean bias)
{
  add_w (b, in, 2, SHAPE (out, in), "%s.weight", prefix);
  if (bias)
    add_v (b, -0.1f, 0.1f, 1, SHAPE (out), "%s.bias", prefix);
}

static void
add_norm (builder *b, const char *prefix, int d)
{
  add_v (b, 0.8f, 1.2f, 1, SHAPE (d), "%s.weight", prefix);
  add_v (b, -0.1f, 0.1f, 1, SHAPE (d), "%s.bias", prefix);
}

/* Conv2d of the dw_striding subsampling: weight [out][in][k][k] and bias. */
static void
add_conv2d (builder *b, int idx, int out, int in, int k)
{
  add_w (b, in * k * k, 4, SHAPE (out, in, k, k), CANARY_KEY_SUB_CONV ".%d.weight", idx);
  add_v (b, -0.1f, 0.1f, 1, SHAPE (out), CANARY_KEY_SUB_CONV ".%d.bias", idx);
}

static void
add_enc_linear (builder *b, int l, canary_enc_part part, int out, int in, gboolean bias)
{
  char *n = canary_enc_key (l, part, NULL);
  add_linear (b, n, out, in, bias);
  g_free (n);
}

static void
add_enc_norm (builder *b, int l, canary_enc_part part, int D)
{
  char *n = canary_enc_key (l, part, NULL);
  add_norm (b, n, D);
  g_free (n);
}

/* Values in [lo, hi) for layer l's tensor <part>[.<leaf>]. */
static void
add_enc_v (builder *b, int l, canary_enc_part part, const char *leaf, float lo, float hi, int ndim,
    const int64_t *shape)
{
  char *n = canary_enc_key (l, part, leaf);
  add_v (b, lo, hi, ndim, shape, "%s", n);
  g_free (n);
}

/* One conformer layer, its tensors in the order that fixes the random stream. */
static void
add_conformer_layer (builder *b, int l, int D)
{
  const canary_enc_part ff[2][3] = {
    { CANARY_ENC_NORM_FF1, CANARY_ENC_FF1_LINEAR1, CANARY_ENC_FF1_LINEAR2 },
    { CANARY_ENC_NORM_FF2, CANARY_ENC_FF2_LINEAR1, CANARY_ENC_FF2_LINEAR2 },
  };
  for (int f = 0; f < 2; f++) {
    add_enc_norm (b, l, ff[f][0], D);
    add_enc_linear (b, l, ff[f][1], 4 * D, D, TRUE);
    add_enc_linear (b, l, ff[f][2], D, 4 * D, TRUE);
  }
  add_enc_norm (b, l, CANARY_ENC_NORM_ATT, D);
  const canary_enc_part lin[] = { CANARY_ENC_ATT_Q, CANARY_ENC_ATT_K, CANARY_ENC_ATT_V,
    CANARY_ENC_ATT_OUT, CANARY_ENC_ATT_POS };
  for (int i = 0; i < 5; i++)
    add_enc_linear (b, l, lin[i], D, D, i < 4);  /* linear_pos has no bias */
  add_enc_v (b, l, CANARY_ENC_POS_BIAS_U, NULL, -0.1f, 0.1f, 2, SHAPE (8, D / 8));
  add_enc_v (b, l, CANARY_ENC_POS_BIAS_V, NULL, -0.1f, 0.1f, 2, SHAPE (8, D / 8));
  add_enc_norm (b, l, CANARY_ENC_NORM_CONV, D);
  char *n = canary_enc_key (l, CANARY_ENC_CONV_PW1, "weight");
  add_w (b, D, 3, SHAPE (2 * D, D, 1), "%s", n);
  g_free (n);
  add_enc_v (b, l, CANARY_ENC_CONV_PW1, "bias", -0.1f, 0.1f, 1, SHAPE (2 * D));
  n = canary_enc_key (l, CANARY_ENC_CONV_DW, "weight");
  add_w (b, 9, 3, SHAPE (D, 1, 9), "%s", n);
  g_free (n);
  add_enc_v (b, l, CANARY_ENC_CONV_DW, "bias", -0.1f, 0.1f, 1, SHAPE (D));
  add_enc_norm (b, l, CANARY_ENC_CONV_BN, D);
  add_enc_v (b, l, CANARY_ENC_CONV_BN, "running_mean", -0.1f, 0.1f, 1, SHAPE (D));
  add_enc_v (b, l, CANARY_ENC_CONV_BN, "running_var", 0.5f, 1.5f, 1, SHAPE (D));
  n = canary_enc_key (l, CANARY_ENC_CONV_PW2, "weight");
  add_w (b, D, 3, SHAPE (D, D, 1), "%s", n);
  g_free (n);
  add_enc_v (b, l, CANARY_ENC_CONV_PW2, "bias", -0.1f, 0.1f, 1, SHAPE (D));
  add_enc_norm (b, l, CANARY_ENC_NORM_OUT, D);
}

static void
add_encoder (builder *b, const shape_def *s)
{
  int C = s->sub_channels, D = s->d_model;
  /* conv.0 full 3x3, then two stages of depthwise 3x3 + pointwise 1x1. */
  add_conv2d (b, 0, C, 1, 3);
  for (int st = 1; st <= 2; st++) {
    add_conv2d (b, canary_sub_conv_index (st), C, 1, 3);
    add_conv2d (b, canary_sub_conv_index (st) + 1, C, C, 1);
  }
  add_linear (b, CANARY_KEY_PRE_OUT, D, C * 16, TRUE);  /* 128 mels / 8 = 16 */
  for (int l = 0; l < s->enc_layers && b->ok; l++)
    add_conformer_layer (b, l, D);
  if (s->d_model != s->hidden)
    add_linear (b, CANARY_KEY_PROJ, s->hidden, s->d_model, TRUE);
}

/* NeMo's FixedPositionalEncoding table (sin/cos, divided by sqrt(H)), as stored in checkpoints. */
static void
add_position_table (builder *b, int max_len, int H)
{
  if (!b->ok)
    return;
  float *pe = g_new (float, (gsize) max_len * H);
  for (int p = 0; p < max_len; p++)
    for (int j = 0; j < H / 2; j++) {
      double div = exp (2.0 * j * (-log (CANARY_POS_BASE) / H));
      pe[(gsize) p * H + 2 * j] = (float) (sin (p * div) / sqrt (H));
      pe[(gsize) p * H + 2 * j + 1] = (float) (cos (p * div) / sqrt (H));
    }
  b->ok = canary_ckpt_add_tensor (b->ck, CANARY_KEY_POS_ENC, CANARY_DTYPE_F32,
      2, SHAPE (max_len, H), pe, (gsize) max_len * H * sizeof (float), b->error) != NULL;
}

static void
add_decoder (builder *b, const shape_def *s)
{
  int H = s->hidden, V = s->vocab;
  add_w (b, H, 2, SHAPE (V, H), CANARY_KEY_TOKEN_EMB);
  add_position_table (b, s->max_len, H);
  add_norm (b, CANARY_KEY_EMB_LN, H);
  const canary_dec_part norms[] = { CANARY_DEC_LN1, CANARY_DEC_LN2, CANARY_DEC_LN3 };
  const canary_dec_part lins[] = { CANARY_DEC_SELF_Q, CANARY_DEC_SELF_K, CANARY_DEC_SELF_V,
    CANARY_DEC_SELF_OUT, CANARY_DEC_CROSS_Q, CANARY_DEC_CROSS_K, CANARY_DEC_CROSS_V,
    CANARY_DEC_CROSS_OUT };
  for (int l = 0; l < s->dec_layers && b->ok; l++) {
    for (gsize i = 0; i < G_N_ELEMENTS (norms); i++) {
      char *p = canary_dec_key (l, norms[i], NULL);
      add_norm (b, p, H);
      g_free (p);
    }
    for (gsize i = 0; i < G_N_ELEMENTS (lins); i++) {
      char *p = canary_dec_key (l, lins[i], NULL);
      add_linear (b, p, H, H, TRUE);
      g_free (p);
    }
    char *p = canary_dec_key (l, CANARY_DEC_FF_IN, NULL);
    add_linear (b, p, 4 * H, H, TRUE);
    g_free (p);
    p = canary_dec_key (l, CANARY_DEC_FF_OUT, NULL);
    add_linear (b, p, H, 4 * H, TRUE);
    g_free (p);
  }
  add_norm (b, CANARY_KEY_FINAL_LN, H);
  /* The head is tied to the embedding (one storage), with its own bias. */
  if (b->ok)
    b->ok = canary_ckpt_add_alias (b->ck, CANARY_KEY_HEAD ".weight", CANARY_KEY_TOKEN_EMB, b->error);
  add_v (b, -0.1f, 0.1f, 1, SHAPE (V), CANARY_KEY_HEAD ".bias");
}

gboolean
canary_synth_build (const char *shape, guint64 seed, canary_config **cfg_out, canary_ckpt **ckpt_out,
    GError **error)
{
  const shape_def *s = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++)
    if (g_strcmp0 (shape, shapes[i].name) == 0)
      s = &shapes[i];
  if (!s) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT, "unknown model shape '%s'", shape);
    return FALSE;
  }
  builder b = { canary_ckpt_new_empty (), seed, error, TRUE };
  add_encoder (&b, s);
  add_decoder (&b, s);
  if (!b.ok) {
    canary_ckpt_free (b.ck);
    return FALSE;
  }
  *cfg_out = make_config (s);
  *ckpt_out = b.ck;
  return TRUE;
}
