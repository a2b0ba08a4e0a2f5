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
 * batch), so the pointwise convs are single GEMMs over all (t, f); the conformer keeps the
 * residual stream row-major [T][D] and every GEMM input and output transposed, [feature][time]
 * with rows padded to whole GEMM tiles (see gemm_job): a GEMM's output is the next one's input,
 * and the attention works on the transposed q/k/v/p directly. Only one utterance at a time:
 * "padding" below is the part of the input past the valid length, which NeMo treats exactly
 * like batch padding.
 *
 * Speed: on CPUs with AVX-512F (checked at run time) the GEMMs use our own micro-kernel (weights
 * broadcast from the checkpoint in place, no packing) and the forward pass runs on a small team
 * of threads (as many as OpenBLAS is told to use); elsewhere every GEMM is one cblas_sgemm and
 * the rest runs on the calling thread. CANARY_ENCODER_SIMD=0 in the environment forces the
 * latter. Both give NeMo's values within FP32 rounding (summation order differs).
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
#include "cpu/encoder.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX512_PATH 1
#define AVX512 __attribute__ ((target ("avx512f")))
#else
#define HAVE_AVX512_PATH 0
#endif

#include "canary.h"
#include "util.h"

#define LN_EPS 1e-5f          /* torch.nn.LayerNorm default */
#define BN_EPS 1e-5           /* torch.nn.BatchNorm1d default */
#define ATT_MASK_VALUE -10000.0f  /* NeMo INF_VAL, used as the masked score */
#define POS_BASE 10000.0      /* NeMo reuses INF_VAL as the sinusoid base */
#define SUB_K 3               /* dw_striding: 3x3 kernels, stride 2, padding 1 */
#define MAX_STAGES 6          /* subsampling factor up to 64 */
#define MAX_FRAMES (1 << 20)  /* ~2.9 hours of 10 ms frames; attention scratch grows as (frames/8)^2 */
#define TILE_N 6              /* GEMM micro-tile: output rows (weight rows) */
#define TILE_M 64             /* GEMM micro-tile: output columns (time steps), 4 vectors */
#define KC 1024               /* GEMM k block, at most: a 6 x 1024 weight tile stays in L1 */
#define CHUNK_N 48            /* GEMM rows per work item: 8 tiles, 3 blocks of 16 to transpose */
#define MAX_THREADS 64
#define ATT_QB 128            /* attention queries per work item (and the PT row stride) */

enum { ACT_NONE, ACT_SWISH, ACT_RELU };

typedef struct _team team;

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
  const float *dw_w;      /* BatchNorm folded, [D][K] (owned) */
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
  gboolean simd;                            /* AVX-512 kernels and threads */
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
  int tp;         /* row stride of the transposed [feature][time] buffers: max_t, whole tiles */
  int pp;         /* row stride of pT: 2 max_t - 1, whole tiles */
  int pe_w;       /* row stride of peT */
  gsize bytes;
  float *arena;
  float *col;     /* conv0 im2col, transposed [9][t1 * f1] */
  float *sa, *sb; /* subsampling ping-pong buffers */
  float *x;       /* the residual stream [T][D] */
  float *h;       /* LayerNorm output [T][D] (rows rounded up to 16) */
  float *hT;      /* GEMM input [max(D, C·F')][tp]: LN output, flattened subsampling, conv */
  float *bigT;    /* [max(ff, 2D)][tp]: FF hidden, pw1 output */
  float *quT, *qvT, *kT, *vT, *ctxT;  /* [D][tp]: q + pos_bias_u, q + pos_bias_v, k, v, context */
  float *pT;      /* linear_pos output [D][pp], positions L-1 … -(L-1) */
  float *peT;     /* positional table [D][pe_w], positions max_t-1 … -(max_t-1) */
  float *ct;      /* GEMM output on its way into rows [max(D, out_dim)][tp] */
  float *out;     /* [T][out_dim] (projection only) */
  team *team;     /* the threads of the forward pass (work_prepare) */
  int team_want;  /* the thread count asked for (the team may have fewer) */
  /* Per thread: attention scratch for one block of queries, a conv row. */
  float *thread_mem;
  int thread_n;
  gsize thread_stride, thread_bytes;
  /* Partial sums of GEMMs split along K (grown on first use). */
  float *part;
  gsize part_n;
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
 * bn(conv(x)) = s·(w∗x + b − mean) + beta with s = gamma / sqrt(var + eps). */
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
      fw[(gsize) c * K + k] = (float) (w[(gsize) c * K + k] * s);
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
#if HAVE_AVX512_PATH
  const char *simd = g_getenv ("CANARY_ENCODER_SIMD");
  e->simd = __builtin_cpu_supports ("avx512f") && !(simd && g_strcmp0 (simd, "0") == 0);
#endif
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

/* Element counts of every scratch buffer for inputs of n_frames mel frames (see the struct), and
 * the row strides of the transposed buffers. */
typedef struct {
  gsize col, sa, sb, x, h, hT, bigT, td, pT, peT, ct, out;
  int tp, pp, pe_w;
} work_sizes;

static gsize
round_up (gsize n, gsize m)
{
  return (n + m - 1) / m * m;
}

/* Channels per block of the first conv when a depthwise stage follows. A quarter of the channels
 * makes a block's output ([C/4][t1][f1]) about the size of the next stage's full output
 * ([C][t1/2][f1/2]), which the scratch holds anyway. */
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
  z->tp = (int) round_up (T, TILE_M);
  z->pp = (int) round_up (2 * T - 1, TILE_M);
  /* The pos GEMM reads a full tile past its slice of the table: room for it, zero-filled. */
  z->pe_w = (int) round_up (2 * T + TILE_M, 16);
  const gsize tp = z->tp;
  /* Every buffer a GEMM reads as its XT gets TILE_M floats of slack: the last tile of its last
   * row reads whole vectors. col: the transposed im2col [9][plane1]. sa: conv0 output (a block
   * of channels when a depthwise stage follows), then each stage's pointwise output; sb: each
   * depthwise output. */
  z->col = SUB_K * SUB_K * plane1 + TILE_M;
  z->sa = (gsize) conv0_block (e) * plane1;
  z->sb = 0;
  for (int s = 2; s <= e->n_stages; s++) {
    z->sa = MAX (z->sa, C * d.t[s] * d.f[s]);
    z->sb = MAX (z->sb, C * d.t[s] * d.f[s]);
  }
  z->sa += TILE_M;
  z->sb += TILE_M;
  z->x = T * D;
  z->h = round_up (T, 16) * D;
  z->hT = MAX (D, C * e->f_out) * tp;
  z->bigT = MAX ((gsize) e->ff, 2 * D) * tp;
  z->td = D * tp;
  z->pT = D * z->pp;
  z->peT = D * z->pe_w;
  z->ct = MAX (D, (gsize) e->out_dim) * tp;
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
  CARVE (x, z->x);
  CARVE (h, z->h);
  CARVE (hT, z->hT);
  CARVE (bigT, z->bigT);
  CARVE (quT, z->td);
  CARVE (qvT, z->td);
  CARVE (kT, z->td);
  CARVE (vT, z->td);
  CARVE (ctxT, z->td);
  CARVE (pT, z->pT);
  CARVE (peT, z->peT);
  CARVE (ct, z->ct);
  CARVE (out, z->out);
#undef CARVE
  return off;
}

/* peT[., c] holds relative position max_t - 1 - c: row 2j = sin(p·div_j), row 2j+1 =
 * cos(p·div_j) with div_j = exp(2j · −ln(10000)/D), all in FP32 like NeMo's create_pe. Columns
 * past 2 max_t - 1 stay zero. */
static void
fill_positional_table (const canary_encoder *e, canary_encoder_work *w)
{
  const int D = e->d, cols = 2 * w->max_t - 1;
  const gsize ld = w->pe_w;
  const float scale = (float) (-(log (POS_BASE) / D));
  for (int j = 0; j < D / 2; j++) {
    const float div = expf ((float) (2 * j) * scale);
    float *s = w->peT + (gsize) (2 * j) * ld, *c = s + ld;
    for (int r = 0; r < cols; r++) {
      const float a = (float) (w->max_t - 1 - r) * div;
      s[r] = sinf (a);
      c[r] = cosf (a);
    }
  }
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
  /* Zeroed once: the padding columns of the transposed buffers are read (never used) by the
   * GEMM tiles and must hold ordinary numbers. */
  memset (mem, 0, bytes);
  free (w->arena);
  w->arena = mem;
  w->bytes = bytes;
  w->max_frames = max_frames;
  w->max_t = canary_encoder_n_out (enc, max_frames);
  w->tp = z.tp;
  w->pp = z.pp;
  w->pe_w = z.pe_w;
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

static void team_free (team *t);

void
canary_encoder_work_free (canary_encoder_work *work)
{
  if (!work)
    return;
  team_free (work->team);
  free (work->thread_mem);
  free (work->part);
  free (work->arena);
  g_free (work);
}

gsize
canary_encoder_work_bytes (const canary_encoder_work *work)
{
  return work->bytes + work->thread_bytes + work->part_n * sizeof (float);
}

/* ---------------------------------------------------------------------------------------- */
/* Threads.                                                                                  */

/* A team runs one function on n threads (the caller is thread 0), for the parallel parts of
 * the forward pass. Helpers spin for a moment after each job (the next one usually follows
 * within microseconds), then sleep on a condition variable. */
typedef void (*team_fn) (void *ctx, int tid);

typedef struct {
  team *t;
  int tid;
} team_member;

struct _team {
  int n;
  GThread *threads[MAX_THREADS];
  team_member members[MAX_THREADS];
  team_fn fn;
  void *ctx;
  gint gen;      /* bumped for every job (and to quit) */
  gint done;     /* helpers finished with the current job */
  gint next;     /* work-item counter of the current job */
  gint quit;
  int sleepers;  /* under lock */
  GMutex lock;
  GCond cond;
};

#define TEAM_SPIN_US 2000

static inline void
cpu_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#endif
}

static gpointer
team_main (gpointer data)
{
  team_member *me = data;
  team *t = me->t;
  int seen = 0;
  for (;;) {
    int g = g_atomic_int_get (&t->gen);
    gint64 until = 0;
    for (int i = 1; g == seen; i++) {
      cpu_relax ();
      if ((i & 1023) == 0) {
        const gint64 now = g_get_monotonic_time ();
        if (!until)
          until = now + TEAM_SPIN_US;
        else if (now > until)
          break;
      }
      g = g_atomic_int_get (&t->gen);
    }
    if (g == seen) {
      g_mutex_lock (&t->lock);
      while ((g = g_atomic_int_get (&t->gen)) == seen) {
        t->sleepers++;
        g_cond_wait (&t->cond, &t->lock);
        t->sleepers--;
      }
      g_mutex_unlock (&t->lock);
    }
    seen = g;
    if (g_atomic_int_get (&t->quit))
      return NULL;
    t->fn (t->ctx, me->tid);
    g_atomic_int_inc (&t->done);
  }
}

/* A team of up to n threads (fewer if threads cannot be started). */
static team *
team_new (int n)
{
  team *t = g_new0 (team, 1);
  g_mutex_init (&t->lock);
  g_cond_init (&t->cond);
  t->n = 1;
  for (int i = 1; i < n; i++) {
    t->members[i] = (team_member) { t, i };
    t->threads[i] = g_thread_try_new ("canary-enc", team_main, &t->members[i], NULL);
    if (!t->threads[i])
      break;
    t->n++;
  }
  return t;
}

static void
team_free (team *t)
{
  if (!t)
    return;
  g_mutex_lock (&t->lock);
  g_atomic_int_set (&t->quit, 1);
  g_atomic_int_inc (&t->gen);
  g_cond_broadcast (&t->cond);
  g_mutex_unlock (&t->lock);
  for (int i = 1; i < t->n; i++)
    g_thread_join (t->threads[i]);
  g_mutex_clear (&t->lock);
  g_cond_clear (&t->cond);
  g_free (t);
}

/* Runs fn (ctx, tid) on every thread of the team and returns when all have. */
static void
team_run (team *t, team_fn fn, void *ctx)
{
  g_atomic_int_set (&t->next, 0);
  if (t->n == 1) {
    fn (ctx, 0);
    return;
  }
  t->fn = fn;
  t->ctx = ctx;
  g_atomic_int_set (&t->done, 0);
  g_mutex_lock (&t->lock);
  g_atomic_int_inc (&t->gen);
  if (t->sleepers > 0)
    g_cond_broadcast (&t->cond);
  g_mutex_unlock (&t->lock);
  fn (ctx, 0);
  /* The helpers' shares are about as long as ours: spin, and only after a while (a helper that
   * lost its core) give the core away now and then. */
  for (int i = 1; g_atomic_int_get (&t->done) < t->n - 1; i++) {
    cpu_relax ();
    if (i >= 16384 && (i & 1023) == 0)
      g_thread_yield ();
  }
}

/* The next work item of the current job (items are handed out in order, each once). */
static int
team_next (team *t)
{
  return g_atomic_int_add (&t->next, 1);
}

/* Starts the team and the per-thread scratch for this call: as many threads as OpenBLAS is told
 * to use (the engine's n_threads), one without the AVX-512 path (BLAS threads instead). */
static gboolean
work_prepare (const canary_encoder *e, canary_encoder_work *w, GError **error)
{
  const int n = e->simd ? CLAMP (openblas_get_num_threads (), 1, MAX_THREADS) : 1;
  if (!w->team || w->team_want != n) {
    team_free (w->team);
    w->team = team_new (n);
    w->team_want = n;
  }
  const int nt = w->team->n;
  /* Per thread: S [ATT_QB][tp], BD [ATT_QB][pp], PT [tp][ATT_QB], a padded conv row. */
  const gsize stride = round_up ((gsize) ATT_QB * (2 * w->tp + w->pp) + w->tp + e->kernel + 32,
      16);
  if (nt != w->thread_n || stride != w->thread_stride) {
    free (w->thread_mem);
    w->thread_mem = NULL;
    w->thread_n = 0;
    w->thread_bytes = 0;
    void *mem = NULL;
    gsize bytes;
    if (!canary_mul_size (stride * nt, sizeof (float), &bytes)
        || posix_memalign (&mem, 64, bytes) != 0) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
          "encoder: cannot allocate %" G_GSIZE_FORMAT " bytes of attention scratch",
          stride * nt * sizeof (float));
      return FALSE;
    }
    memset (mem, 0, bytes);
    w->thread_mem = mem;
    w->thread_n = nt;
    w->thread_stride = stride;
    w->thread_bytes = bytes;
  }
  return TRUE;
}

static float *
thread_scores (canary_encoder_work *w, int tid)
{
  return w->thread_mem + (gsize) tid * w->thread_stride;
}

static float *
thread_bd (canary_encoder_work *w, int tid)
{
  return thread_scores (w, tid) + (gsize) ATT_QB * w->tp;
}

static float *
thread_pt (canary_encoder_work *w, int tid)
{
  return thread_bd (w, tid) + (gsize) ATT_QB * w->pp;
}

static float *
thread_row (canary_encoder_work *w, int tid)
{
  return thread_pt (w, tid) + (gsize) ATT_QB * w->tp;
}

/* ---------------------------------------------------------------------------------------- */
/* Building blocks.                                                                          */

static inline float
sigmoidf (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

/* Swish / SiLU: x · sigmoid(x). */
static inline float
swishf (float x)
{
  return x / (1.0f + expf (-x));
}

/* ReLU without a data-dependent branch (which mispredicts on about half of the inputs): clear
 * the value when its sign bit is set. */
static inline float
relu (float v)
{
  guint32 u;
  memcpy (&u, &v, sizeof u);
  u &= ~(guint32) ((gint32) u >> 31);
  memcpy (&v, &u, sizeof v);
  return v;
}

static inline float
activate (float v, int act)
{
  return act == ACT_SWISH ? swishf (v) : act == ACT_RELU ? relu (v) : v;
}

/* LayerNorm of one row (y may be x): double sums, as before the vector path existed. */
static void
ln_row_scalar (const float *x, int D, const float *g, const float *b, float *y)
{
  double sum = 0.0;
  for (int c = 0; c < D; c++)
    sum += x[c];
  const double mean = sum / D;
  double ss = 0.0;
  for (int c = 0; c < D; c++)
    ss += (x[c] - mean) * (x[c] - mean);
  const float m = (float) mean, rstd = (float) (1.0 / sqrt (ss / D + LN_EPS));
  for (int c = 0; c < D; c++)
    y[c] = (x[c] - m) * rstd * g[c] + b[c];
}

/* dst[c][r] = src[r][c] for r < rows, c < cols; dst[c][r] = 0 for rows <= r < rows_pad. */
static void
transpose_scalar (const float *src, gsize lds, int rows, int cols, float *dst, gsize ldd,
    int rows_pad)
{
  for (int c = 0; c < cols; c++) {
    float *d = dst + (gsize) c * ldd;
    for (int r = 0; r < rows; r++)
      d[r] = src[(gsize) r * lds + c];
    for (int r = rows; r < rows_pad; r++)
      d[r] = 0.0f;
  }
}

/* One query row of the attention: s[j] = (s[j] + bd[j]) / sqrt_dk over the L valid keys (bd:
 * the positional scores already shifted to this query), then softmax, in place. */
static void
score_row_scalar (float *s, const float *bd, int L, float sqrt_dk)
{
  for (int j = 0; j < L; j++)
    s[j] = (s[j] + bd[j]) / sqrt_dk;
  float mx = s[0];
  for (int j = 1; j < L; j++)
    mx = MAX (mx, s[j]);
  double sum = 0.0;
  for (int j = 0; j < L; j++) {
    s[j] = expf (s[j] - mx);
    sum += s[j];
  }
  const float inv = (float) (1.0 / sum);
  for (int j = 0; j < L; j++)
    s[j] *= inv;
}

/* One channel of the convolution module after pw1: GLU of rows a and g over the L valid steps
 * (zero past them, as NeMo masks the padding), the depthwise conv along time (BN folded, taps
 * w[K], zero padding), Swish, into out[0 … T). `row` is scratch of T + K - 1 floats. */
static void
conv_channel_scalar (const float *a, const float *g, int L, int T, const float *w, int K,
    float bias, float *row, float *out)
{
  const int half = (K - 1) / 2;
  for (int t = 0; t < half; t++)
    row[t] = 0.0f;
  for (int t = 0; t < L; t++)
    row[half + t] = a[t] * sigmoidf (g[t]);
  for (int t = half + L; t < T + K - 1; t++)
    row[t] = 0.0f;
  for (int t = 0; t < T; t++) {
    float o = bias;
    for (int k = 0; k < K; k++)
      o += w[k] * row[t + k];
    out[t] = swishf (o);
  }
}

#if HAVE_AVX512_PATH
/* ---- AVX-512 versions (chosen at run time when the CPU has AVX-512F) ---- */

AVX512 static inline __mmask16
tail_mask (int n)
{
  return n >= 16 ? (__mmask16) 0xffff : n <= 0 ? 0 : (__mmask16) ((1u << n) - 1);
}

/* exp on 16 lanes: Cephes' expf scheme (range reduction by ln 2, degree-6 polynomial, scale by
 * 2^n), within 1 ulp of libm's expf; NaN stays NaN, large arguments give 0 / inf. */
AVX512 static inline __m512
exp16 (__m512 x)
{
  x = _mm512_max_ps (_mm512_set1_ps (-200.0f), _mm512_min_ps (_mm512_set1_ps (200.0f), x));
  const __m512 n = _mm512_roundscale_ps (_mm512_mul_ps (x, _mm512_set1_ps (1.44269504088896341f)),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps (n, _mm512_set1_ps (0.693359375f), x);
  r = _mm512_fnmadd_ps (n, _mm512_set1_ps (-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps (1.9875691500e-4f);
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (1.3981999507e-3f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (8.3334519073e-3f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (4.1665795894e-2f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (1.6666665459e-1f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (5.0000001201e-1f));
  p = _mm512_fmadd_ps (p, _mm512_mul_ps (r, r), _mm512_add_ps (r, _mm512_set1_ps (1.0f)));
  return _mm512_scalef_ps (p, n);
}

AVX512 static inline __m512
swish16 (__m512 v)
{
  const __m512 one = _mm512_set1_ps (1.0f);
  return _mm512_div_ps (v, _mm512_add_ps (one, exp16 (_mm512_sub_ps (_mm512_setzero_ps (), v))));
}

AVX512 static inline __m512
sigmoid16 (__m512 v)
{
  const __m512 one = _mm512_set1_ps (1.0f);
  return _mm512_div_ps (one, _mm512_add_ps (one, exp16 (_mm512_sub_ps (_mm512_setzero_ps (), v))));
}

/* In-register 16x16 transpose: r[i][j] → r[j][i]. */
AVX512 static inline void
tr16 (__m512 r[16])
{
  __m512 t[16], u[16], v[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps (r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps (r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    const __m512d a = _mm512_castps_pd (t[4 * i]), b = _mm512_castps_pd (t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd (t[4 * i + 2]), d = _mm512_castps_pd (t[4 * i + 3]);
    u[4 * i] = _mm512_castpd_ps (_mm512_unpacklo_pd (a, c));
    u[4 * i + 1] = _mm512_castpd_ps (_mm512_unpackhi_pd (a, c));
    u[4 * i + 2] = _mm512_castpd_ps (_mm512_unpacklo_pd (b, d));
    u[4 * i + 3] = _mm512_castpd_ps (_mm512_unpackhi_pd (b, d));
  }
  for (int q = 0; q < 4; q++) {
    v[q] = _mm512_shuffle_f32x4 (u[q], u[4 + q], 0x88);
    v[4 + q] = _mm512_shuffle_f32x4 (u[q], u[4 + q], 0xdd);
    v[8 + q] = _mm512_shuffle_f32x4 (u[8 + q], u[12 + q], 0x88);
    v[12 + q] = _mm512_shuffle_f32x4 (u[8 + q], u[12 + q], 0xdd);
  }
  for (int q = 0; q < 4; q++) {
    r[q] = _mm512_shuffle_f32x4 (v[q], v[8 + q], 0x88);
    r[8 + q] = _mm512_shuffle_f32x4 (v[q], v[8 + q], 0xdd);
    r[4 + q] = _mm512_shuffle_f32x4 (v[4 + q], v[12 + q], 0x88);
    r[12 + q] = _mm512_shuffle_f32x4 (v[4 + q], v[12 + q], 0xdd);
  }
}

/* Sum of the 8 doubles. */
AVX512 static inline double
hsum_pd (__m512d a)
{
  return _mm512_reduce_add_pd (a);
}

/* lo += v[0…7], hi += v[8…15], in double. */
AVX512 static inline void
widen_add (__m512 v, __m512d *lo, __m512d *hi)
{
  *lo = _mm512_add_pd (*lo, _mm512_cvtps_pd (_mm512_castps512_ps256 (v)));
  *hi = _mm512_add_pd (*hi, _mm512_cvtps_pd (_mm256_castpd_ps (
      _mm512_extractf64x4_pd (_mm512_castps_pd (v), 1))));
}

/* LayerNorm statistics of one row as the scalar path computes them: the mean and the variance
 * in double (two passes), then m and 1/sqrt(var + eps) in float. */
AVX512 static void
ln_stats_avx512 (const float *x, int D, float *m_out, float *rstd_out)
{
  const int D16 = D & ~15;
  __m512d s0 = _mm512_setzero_pd (), s1 = _mm512_setzero_pd ();
  for (int c = 0; c < D16; c += 16)
    widen_add (_mm512_loadu_ps (x + c), &s0, &s1);
  double sum = hsum_pd (_mm512_add_pd (s0, s1));
  for (int c = D16; c < D; c++)
    sum += x[c];
  const double mean = sum / D;
  const __m512d md = _mm512_set1_pd (mean);
  s0 = _mm512_setzero_pd ();
  s1 = _mm512_setzero_pd ();
  for (int c = 0; c < D16; c += 16) {
    const __m512 v = _mm512_loadu_ps (x + c);
    const __m512d lo = _mm512_sub_pd (_mm512_cvtps_pd (_mm512_castps512_ps256 (v)), md);
    const __m512d hi = _mm512_sub_pd (_mm512_cvtps_pd (_mm256_castpd_ps (
        _mm512_extractf64x4_pd (_mm512_castps_pd (v), 1))), md);
    s0 = _mm512_fmadd_pd (lo, lo, s0);
    s1 = _mm512_fmadd_pd (hi, hi, s1);
  }
  double ss = hsum_pd (_mm512_add_pd (s0, s1));
  for (int c = D16; c < D; c++)
    ss += (x[c] - mean) * (x[c] - mean);
  *m_out = (float) mean;
  *rstd_out = (float) (1.0 / sqrt (ss / D + LN_EPS));
}

AVX512 static void
ln_row_avx512 (const float *x, int D, const float *g, const float *b, float *y)
{
  const int D16 = D & ~15;
  float m, rstd;
  ln_stats_avx512 (x, D, &m, &rstd);
  const __m512 mv = _mm512_set1_ps (m), rv = _mm512_set1_ps (rstd);
  for (int c = 0; c < D16; c += 16) {
    const __m512 v = _mm512_mul_ps (_mm512_sub_ps (_mm512_loadu_ps (x + c), mv), rv);
    _mm512_storeu_ps (y + c, _mm512_add_ps (_mm512_mul_ps (v, _mm512_loadu_ps (g + c)),
        _mm512_loadu_ps (b + c)));
  }
  for (int c = D16; c < D; c++)
    y[c] = (x[c] - m) * rstd * g[c] + b[c];
}

/* LayerNorm of rows [0, rows) (rows <= 16) of x straight into xt[c][r] (columns rows … 15
 * zero): y = (x − m) · rstd · g + b, in the scalar path's operation order. */
AVX512 static void
ln_transpose_avx512 (const float *x, int D, int rows, const float *g, const float *b, float *xt,
    gsize ldx)
{
  float m[16], rstd[16];
  for (int r = 0; r < rows; r++)
    ln_stats_avx512 (x + (gsize) r * D, D, &m[r], &rstd[r]);
  for (int c0 = 0; c0 < D; c0 += 16) {
    const int nc = MIN (16, D - c0);
    const __mmask16 cm = tail_mask (nc);
    const __m512 gv = _mm512_maskz_loadu_ps (cm, g + c0), bv = _mm512_maskz_loadu_ps (cm, b + c0);
    __m512 v[16];
    for (int r = 0; r < 16; r++) {
      if (r < rows) {
        const __m512 t = _mm512_mul_ps (_mm512_sub_ps (_mm512_maskz_loadu_ps (cm,
            x + (gsize) r * D + c0), _mm512_set1_ps (m[r])), _mm512_set1_ps (rstd[r]));
        v[r] = _mm512_add_ps (_mm512_mul_ps (t, gv), bv);
      } else {
        v[r] = _mm512_setzero_ps ();
      }
    }
    tr16 (v);
    for (int i = 0; i < nc; i++)
      _mm512_storeu_ps (xt + (gsize) (c0 + i) * ldx, v[i]);
  }
}

AVX512 static void
transpose_avx512 (const float *src, gsize lds, int rows, int cols, float *dst, gsize ldd,
    int rows_pad)
{
  for (int r0 = 0; r0 < rows_pad; r0 += 16) {
    if (rows_pad - r0 < 16) {
      transpose_scalar (src + (gsize) r0 * lds, lds, MAX (0, rows - r0), cols, dst + r0, ldd,
          rows_pad - r0);
      break;
    }
    for (int c0 = 0; c0 < cols; c0 += 16) {
      const int nc = MIN (16, cols - c0);
      const __mmask16 cm = tail_mask (nc);
      __m512 v[16];
      for (int i = 0; i < 16; i++)
        v[i] = r0 + i < rows ? _mm512_maskz_loadu_ps (cm, src + (gsize) (r0 + i) * lds + c0)
            : _mm512_setzero_ps ();
      tr16 (v);
      for (int i = 0; i < nc; i++)
        _mm512_storeu_ps (dst + (gsize) (c0 + i) * ldd + r0, v[i]);
    }
  }
}

AVX512 static void
score_row_avx512 (float *s, const float *bd, int L, float sqrt_dk)
{
  const __m512 div = _mm512_set1_ps (sqrt_dk), lowest = _mm512_set1_ps (-G_MAXFLOAT);
  __m512 mx = lowest;
  for (int j = 0; j < L; j += 16) {
    const __mmask16 m = tail_mask (L - j);
    const __m512 v = _mm512_div_ps (_mm512_add_ps (_mm512_maskz_loadu_ps (m, s + j),
        _mm512_maskz_loadu_ps (m, bd + j)), div);
    _mm512_mask_storeu_ps (s + j, m, v);
    mx = _mm512_mask_max_ps (mx, m, mx, v);
  }
  const __m512 mv = _mm512_set1_ps (_mm512_reduce_max_ps (mx));
  __m512d s0 = _mm512_setzero_pd (), s1 = _mm512_setzero_pd ();
  for (int j = 0; j < L; j += 16) {
    const __mmask16 m = tail_mask (L - j);
    const __m512 e = _mm512_maskz_mov_ps (m, exp16 (_mm512_sub_ps (_mm512_maskz_loadu_ps (m,
        s + j), mv)));
    _mm512_mask_storeu_ps (s + j, m, e);
    widen_add (e, &s0, &s1);
  }
  const __m512 inv = _mm512_set1_ps ((float) (1.0 / hsum_pd (_mm512_add_pd (s0, s1))));
  for (int j = 0; j < L; j += 16) {
    const __mmask16 m = tail_mask (L - j);
    _mm512_mask_storeu_ps (s + j, m, _mm512_mul_ps (_mm512_maskz_loadu_ps (m, s + j), inv));
  }
}

AVX512 static void
conv_channel_avx512 (const float *a, const float *g, int L, int T, const float *w, int K,
    float bias, float *row, float *out)
{
  const int half = (K - 1) / 2, len = T + K - 1;
  for (int t = 0; t < half; t++)
    row[t] = 0.0f;
  for (int t = 0; t < L; t += 16) {
    const __mmask16 m = tail_mask (L - t);
    const __m512 av = _mm512_maskz_loadu_ps (m, a + t), gv = _mm512_maskz_loadu_ps (m, g + t);
    _mm512_mask_storeu_ps (row + half + t, m, _mm512_mul_ps (av, sigmoid16 (gv)));
  }
  for (int t = half + L; t < len + 16; t++)
    row[t] = 0.0f;
  for (int t = 0; t < T; t += 16) {
    __m512 o = _mm512_set1_ps (bias);
    for (int k = 0; k < K; k++)
      o = _mm512_fmadd_ps (_mm512_set1_ps (w[k]), _mm512_loadu_ps (row + t + k), o);
    _mm512_mask_storeu_ps (out + t, tail_mask (T - t), swish16 (o));
  }
}

/* The GEMM micro-kernel: a TILE_N x TILE_M block of CT (rows n, columns m) over kc steps of k:
 *   CT[j][m] (+)= Σ_k W[j·sn + k·sk] · XT[k][m].
 * Weights are broadcast from where they lie (the checkpoint's [out][in] rows, or a transposed
 * activation in the attention), the 64 columns are 4 vectors of XT: no packing, no horizontal
 * sums. Rows past nr repeat row nr-1 and are not stored; columns past mv are not stored.
 * first: store (else add to CT); last: then add the bias and apply act. (Software prefetch of
 * the next tile measured neutral: the hardware prefetchers follow the weight rows.) */
AVX512 static void
kernel_6x64 (const float *xt, gsize ldx, const float *w, gsize sn, gsize sk, int kc, float *ct,
    gsize ldc, int nr, int mv, gboolean first, gboolean last, const float *bias, int act)
{
  __m512 acc[TILE_N][4];
  gsize off[TILE_N];
  _Pragma ("GCC unroll 8")
  for (int j = 0; j < TILE_N; j++) {
    off[j] = (gsize) MIN (j, nr - 1) * sn;
    _Pragma ("GCC unroll 4")
    for (int v = 0; v < 4; v++)
      acc[j][v] = _mm512_setzero_ps ();
  }
  const float *x = xt, *wk = w;
  for (int k = 0; k < kc; k++, x += ldx, wk += sk) {
    __m512 a[4];
    _Pragma ("GCC unroll 4")
    for (int v = 0; v < 4; v++)
      a[v] = _mm512_loadu_ps (x + 16 * v);
    _Pragma ("GCC unroll 8")
    for (int j = 0; j < TILE_N; j++) {
      const __m512 b = _mm512_set1_ps (wk[off[j]]);
      _Pragma ("GCC unroll 4")
      for (int v = 0; v < 4; v++)
        acc[j][v] = _mm512_fmadd_ps (a[v], b, acc[j][v]);
    }
  }
  __mmask16 mask[4];
  for (int v = 0; v < 4; v++)
    mask[v] = tail_mask (mv - 16 * v);
  _Pragma ("GCC unroll 8")
  for (int j = 0; j < TILE_N; j++) {
    if (j >= nr)
      break;
    float *c = ct + (gsize) j * ldc;
    const __m512 bj = _mm512_set1_ps (bias && last ? bias[j] : 0.0f);
    _Pragma ("GCC unroll 4")
    for (int v = 0; v < 4; v++) {
      if (!mask[v])
        break;
      __m512 r = acc[j][v];
      if (!first)
        r = _mm512_add_ps (_mm512_maskz_loadu_ps (mask[v], c + 16 * v), r);
      if (last) {
        if (bias)
          r = _mm512_add_ps (r, bj);
        if (act == ACT_SWISH)
          r = swish16 (r);
        else if (act == ACT_RELU)
          r = _mm512_max_ps (r, _mm512_setzero_ps ());
      }
      _mm512_mask_storeu_ps (c + 16 * v, mask[v], r);
    }
  }
}
#endif /* HAVE_AVX512_PATH */

#if HAVE_AVX512_PATH
static gboolean
use_avx512 (const canary_encoder *e)
{
  return e->simd;
}
#endif

static void
ln_row (const canary_encoder *e, const float *x, int D, const float *g, const float *b, float *y)
{
#if HAVE_AVX512_PATH
  if (use_avx512 (e)) {
    ln_row_avx512 (x, D, g, b, y);
    return;
  }
#endif
  ln_row_scalar (x, D, g, b, y);
}

static void
transpose (const canary_encoder *e, const float *src, gsize lds, int rows, int cols, float *dst,
    gsize ldd, int rows_pad)
{
#if HAVE_AVX512_PATH
  if (use_avx512 (e)) {
    transpose_avx512 (src, lds, rows, cols, dst, ldd, rows_pad);
    return;
  }
#endif
  transpose_scalar (src, lds, rows, cols, dst, ldd, rows_pad);
}

/* ---------------------------------------------------------------------------------------- */
/* GEMMs.                                                                                    */

/* Every GEMM of the encoder, in one form: CT[n][m] = act(bias[n] + Σ_k W(n, k) · XT[k][m]) for
 * n < N, m < M, with W(n, k) = w[n·sn + k·sk] (sk = 1: a torch [out][in] weight in place; sn = 1:
 * a transposed activation). Activations are transposed ([feature][time]) around the GEMMs, so
 * a GEMM's output is the next one's input without copies. `done`, when set, runs once per
 * finished block of rows [n0, n1) (after bias and act), on the thread that computed it. */
typedef struct _gemm_job gemm_job;
typedef void (*gemm_done_fn) (const canary_encoder *e, const gemm_job *job, int n0, int n1);

struct _gemm_job {
  int N, M, K;
  const float *w;
  gsize sn, sk;
  const float *xt;
  gsize ldx;
  float *ct;
  gsize ldc;
  const float *bias;
  int act;
  int chunk;            /* rows per work item (0: CHUNK_N) */
  gemm_done_fn done;
  /* For the done callbacks. */
  float *dst;
  gsize ldd;
  float scale;
  int m_tot;
  const float *aux1, *aux2;
  const void *user;
};

#if HAVE_AVX512_PATH
/* Rows [n0, n1), columns [m0, m1) of a job over k in [k0, k1) (in equal blocks of at most KC),
 * into dst (row stride ldd, same row/column indexing as CT). epilogue: add the bias and apply
 * the activation at the end (else the raw sum is stored). */
static void
gemm_tiles (const gemm_job *j, int n0, int n1, int m0, int m1, int k0, int k1, float *dst,
    gsize ldd, gboolean epilogue)
{
  const int kblocks = (k1 - k0 + KC - 1) / KC;
  const int kcb = (int) round_up ((k1 - k0 + kblocks - 1) / kblocks, 16);
  for (int kb = k0; kb < k1; kb += kcb) {
    const int kc = MIN (kcb, k1 - kb);
    const gboolean first = kb == k0, last = kb + kc == k1 && epilogue;
    for (int n = n0; n < n1; n += TILE_N) {
      const int nr = MIN (TILE_N, n1 - n);
      const float *wt = j->w + (gsize) n * j->sn + (gsize) kb * j->sk;
      for (int m = m0; m < m1; m += TILE_M)
        kernel_6x64 (j->xt + (gsize) kb * j->ldx + m, j->ldx, wt, j->sn, j->sk, kc,
            dst + (gsize) n * ldd + m, ldd, nr, MIN (TILE_M, m1 - m), first, last,
            j->bias ? j->bias + n : NULL, j->act);
    }
  }
}
#endif

/* Rows [n0, n1) of a job, on the calling thread. */
static void
gemm_rows (const canary_encoder *e, const gemm_job *j, int n0, int n1)
{
  if (n1 <= n0)
    return;
  if (j->M > 0 && j->K > 0) {
#if HAVE_AVX512_PATH
    if (use_avx512 (e))
      gemm_tiles (j, n0, n1, 0, j->M, 0, j->K, j->ct, j->ldc, TRUE);
    else
#endif
    {
      const int rows = n1 - n0;
      if (j->sk == 1)
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, j->M, j->K, 1.0f,
            j->w + (gsize) n0 * j->sn, (int) j->sn, j->xt, (int) j->ldx, 0.0f,
            j->ct + (gsize) n0 * j->ldc, (int) j->ldc);
      else
        cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, rows, j->M, j->K, 1.0f,
            j->w + n0, (int) j->sk, j->xt, (int) j->ldx, 0.0f, j->ct + (gsize) n0 * j->ldc,
            (int) j->ldc);
      if (j->bias || j->act != ACT_NONE) {
        for (int n = n0; n < n1; n++) {
          float *c = j->ct + (gsize) n * j->ldc;
          const float b = j->bias ? j->bias[n] : 0.0f;
          for (int m = 0; m < j->M; m++)
            c[m] = activate (j->bias ? c[m] + b : c[m], j->act);
        }
      }
    }
  }
  if (j->done)
    j->done (e, j, n0, n1);
}

#define MAX_JOBS 8
#define XT_BLOCK_BYTES (512 * 1024)  /* XT slice one work item reads: about a quarter of the L2 */

#if HAVE_AVX512_PATH

/* How a job is cut into work items for the team: K in `parts` (each at most KC; partial sums
 * of parts 1… go to the part buffer and are added to part 0's in order, which is the order of
 * the single-threaded k blocks), M in blocks whose XT slice fits XT_BLOCK_BYTES, N in chunks.
 * Items run part by part, then block by block, so the threads share one XT slice at a time. */
typedef struct {
  int parts, kpart, mblocks, mbw, chunks, chunk, first_item;
  float *part;       /* parts - 1 slices [N][ldp] */
  gsize ldp;
  gint *count;       /* items finished per chunk (when a chunk has several) */
} job_plan;

typedef struct {
  const canary_encoder *e;
  team *t;
  const gemm_job *jobs;
  int n_jobs, n_items;
  job_plan plan[MAX_JOBS];
} gemm_batch;

static void
plan_job (const gemm_job *j, gboolean split_k, job_plan *p)
{
  p->parts = split_k ? (j->K + KC - 1) / KC : 1;
  p->kpart = (int) round_up ((j->K + p->parts - 1) / p->parts, 16);
  p->parts = (j->K + p->kpart - 1) / p->kpart;
  const gsize per_col = (gsize) MIN (j->K, KC) * sizeof (float);
  p->mbw = (int) MAX (TILE_M, XT_BLOCK_BYTES / per_col / TILE_M * TILE_M);
  p->mblocks = MAX (1, (j->M + p->mbw - 1) / p->mbw);
  p->chunk = j->chunk > 0 ? j->chunk : CHUNK_N;
  p->chunks = (j->N + p->chunk - 1) / p->chunk;
  p->ldp = round_up (MAX (j->M, 1), TILE_M);
  p->part = NULL;
  p->count = NULL;
}

/* Floats of part buffer a job needs. */
static gsize
part_floats (const job_plan *p, const gemm_job *j)
{
  return p->parts > 1 ? (gsize) (p->parts - 1) * j->N * p->ldp : 0;
}

/* Rows [n0, n1) once every part is in: CT += parts 1…, then bias and activation. */
AVX512 static void
combine_parts (const gemm_job *j, const job_plan *p, int n0, int n1)
{
  for (int n = n0; n < n1; n++) {
    float *c = j->ct + (gsize) n * j->ldc;
    const __m512 b = _mm512_set1_ps (j->bias ? j->bias[n] : 0.0f);
    for (int m = 0; m < j->M; m += 16) {
      const __mmask16 mm = tail_mask (j->M - m);
      __m512 v = _mm512_maskz_loadu_ps (mm, c + m);
      for (int q = 1; q < p->parts; q++)
        v = _mm512_add_ps (v, _mm512_maskz_loadu_ps (mm, p->part + ((gsize) (q - 1) * j->N + n)
            * p->ldp + m));
      if (j->bias)
        v = _mm512_add_ps (v, b);
      if (j->act == ACT_SWISH)
        v = swish16 (v);
      else if (j->act == ACT_RELU)
        v = _mm512_max_ps (v, _mm512_setzero_ps ());
      _mm512_mask_storeu_ps (c + m, mm, v);
    }
  }
}

static void
gemm_batch_fn (void *ctx, int tid)
{
  const gemm_batch *b = ctx;
  for (int it; (it = team_next (b->t)) < b->n_items;) {
    int jx = 0;
    while (jx + 1 < b->n_jobs && it >= b->plan[jx + 1].first_item)
      jx++;
    const gemm_job *j = &b->jobs[jx];
    const job_plan *p = &b->plan[jx];
    const int local = it - p->first_item, per_part = p->mblocks * p->chunks;
    const int q = local / per_part, mb = local % per_part / p->chunks, c = local % p->chunks;
    const int n0 = c * p->chunk, n1 = MIN (n0 + p->chunk, j->N);
    const int m0 = mb * p->mbw, m1 = MIN (m0 + p->mbw, j->M);
    const int k0 = q * p->kpart, k1 = MIN (k0 + p->kpart, j->K);
    if (m1 > m0) {
      if (q == 0)
        gemm_tiles (j, n0, n1, m0, m1, k0, k1, j->ct, j->ldc, p->parts == 1);
      else
        gemm_tiles (j, n0, n1, m0, m1, k0, k1, p->part + (gsize) (q - 1) * j->N * p->ldp,
            p->ldp, FALSE);
    }
    if (p->count && g_atomic_int_add (&p->count[c], 1) != p->parts * p->mblocks - 1)
      continue;  /* another item of this chunk finishes it */
    if (p->parts > 1)
      combine_parts (j, p, n0, n1);
    if (j->done)
      j->done (b->e, j, n0, n1);
  }
}
#endif

/* Runs independent jobs together, spread over the team (one cblas_sgemm each without the
 * AVX-512 path). */
static void
gemm_run (const canary_encoder *e, canary_encoder_work *w, const gemm_job *jobs, int n_jobs)
{
  g_assert (n_jobs <= MAX_JOBS);
#if HAVE_AVX512_PATH
  if (use_avx512 (e)) {
    gemm_batch b = { e, w->team, jobs, n_jobs, 0, { { 0 } } };
    gsize need = 0, counters = 0;
    for (int i = 0; i < n_jobs; i++) {
      plan_job (&jobs[i], TRUE, &b.plan[i]);
      need += part_floats (&b.plan[i], &jobs[i]);
    }
    if (need > w->part_n) {
      /* Grown once; without it, parts are summed in place (k blocks inside one item). */
      void *mem = NULL;
      if (posix_memalign (&mem, 64, need * sizeof (float)) == 0) {
        free (w->part);
        w->part = mem;
        w->part_n = need;
      }
    }
    gsize part_off = 0;  /* each job its own slice of the part buffer */
    for (int i = 0; i < n_jobs; i++) {
      job_plan *p = &b.plan[i];
      if (p->parts > 1 && part_off + part_floats (p, &jobs[i]) > w->part_n)
        plan_job (&jobs[i], FALSE, p);
      p->part = w->part + part_off;
      part_off += part_floats (p, &jobs[i]);
      p->first_item = b.n_items;
      b.n_items += p->parts * p->mblocks * p->chunks;
      if (p->parts * p->mblocks > 1 && (p->parts > 1 || jobs[i].done))
        counters += p->chunks;
    }
    gint *count = counters ? g_new0 (gint, counters) : NULL, *next_count = count;
    for (int i = 0; i < n_jobs; i++) {
      job_plan *p = &b.plan[i];
      if (p->parts * p->mblocks > 1 && (p->parts > 1 || jobs[i].done)) {
        p->count = next_count;
        next_count += p->chunks;
      }
    }
    team_run (w->team, gemm_batch_fn, &b);
    g_free (count);
    return;
  }
#endif
  for (int i = 0; i < n_jobs; i++)
    gemm_rows (e, &jobs[i], 0, jobs[i].N);
}

/* done: dst[m][n] = CT[n][m] (scale 0) or dst[m][n] += scale · CT[n][m] for m < M, and
 * dst[m][n] += scale · bias[n] for M <= m < m_tot (rows whose input was all zero). */
#if HAVE_AVX512_PATH
AVX512 static void
to_rows_avx512 (const gemm_job *j, int n0, int n1)
{
  const float s = j->scale;
  {
    const __m512 sv = _mm512_set1_ps (s);
    for (int n = n0; n < n1; n += 16) {
      const int nb = MIN (16, n1 - n);
      const __mmask16 nm = tail_mask (nb);
      for (int m0 = 0; m0 < j->M; m0 += 16) {
        __m512 v[16];
        for (int i = 0; i < 16; i++)
          v[i] = i < nb ? _mm512_loadu_ps (j->ct + (gsize) (n + i) * j->ldc + m0)
              : _mm512_setzero_ps ();
        tr16 (v);
        for (int i = 0; i < 16 && m0 + i < j->M; i++) {
          float *d = j->dst + (gsize) (m0 + i) * j->ldd + n;
          const __m512 r = s == 0.0f ? v[i]
              : _mm512_add_ps (_mm512_maskz_loadu_ps (nm, d), _mm512_mul_ps (v[i], sv));
          _mm512_mask_storeu_ps (d, nm, r);
        }
      }
    }
  }
}
#endif

static void
done_to_rows (const canary_encoder *e, const gemm_job *j, int n0, int n1)
{
  const float s = j->scale;
#if HAVE_AVX512_PATH
  if (use_avx512 (e))
    to_rows_avx512 (j, n0, n1);
  else
#endif
  {
    for (int n = n0; n < n1; n++)
      for (int m = 0; m < j->M; m++) {
        float *d = j->dst + (gsize) m * j->ldd + n;
        const float v = j->ct[(gsize) n * j->ldc + m];
        *d = s == 0.0f ? v : *d + v * s;
      }
  }
  for (int m = MAX (j->M, 0); m < j->m_tot; m++)
    for (int n = n0; n < n1; n++)
      j->dst[(gsize) m * j->ldd + n] += j->bias[n] * s;
}

#if HAVE_AVX512_PATH
AVX512 static void
q_biases_avx512 (float *q, float *qv, int M, float u, float v)
{
  const __m512 uv = _mm512_set1_ps (u), vv = _mm512_set1_ps (v);
  for (int m = 0; m < M; m += 16) {
    const __mmask16 mm = tail_mask (M - m);
    const __m512 x = _mm512_maskz_loadu_ps (mm, q + m);
    _mm512_mask_storeu_ps (qv + m, mm, _mm512_add_ps (x, vv));
    _mm512_mask_storeu_ps (q + m, mm, _mm512_add_ps (x, uv));
  }
}
#endif

/* done for q: qvT = q + pos_bias_v (into dst), q += pos_bias_u in place. */
static void
done_q_biases (const canary_encoder *e, const gemm_job *j, int n0, int n1)
{
  for (int n = n0; n < n1; n++) {
    float *q = j->ct + (gsize) n * j->ldc, *qv = j->dst + (gsize) n * j->ldd;
    const float u = j->aux1[n], v = j->aux2[n];
#if HAVE_AVX512_PATH
    if (use_avx512 (e)) {
      q_biases_avx512 (q, qv, j->M, u, v);
      continue;
    }
#endif
    for (int m = 0; m < j->M; m++) {
      qv[m] = q[m] + v;
      q[m] = q[m] + u;
    }
  }
}

/* A job computing y = x·Wᵀ + b for a torch Linear (w [out][in]) on transposed input xt. */
static gemm_job
linear_job (const linear *l, int out, int in, const float *xt, gsize ldx, int M, float *ct,
    gsize ldc)
{
  return (gemm_job) { .N = out, .M = M, .K = in, .w = l->w, .sn = (gsize) in, .sk = 1, .xt = xt,
      .ldx = ldx, .ct = ct, .ldc = ldc, .bias = l->b, .act = ACT_NONE };
}

/* ---------------------------------------------------------------------------------------- */
/* Row-parallel passes.                                                                      */

/* LayerNorm (g != NULL) of rows [0, T) of x into h, then h (or x itself when g == NULL)
 * transposed into xt [D][tp]; columns T … round_up(T, 16) - 1 zero. Blocks of 16 rows. */
typedef struct {
  const canary_encoder *e;
  canary_encoder_work *w;
  float *x;
  int T, D;
  const float *g, *b;
  float *h, *xt;
  gsize ldx;
  const float *pre_g, *pre_b;  /* when set, first x = LN_pre(x) in place (the previous layer's norm_out) */
} ln_pack_ctx;

static void
ln_pack_fn (void *ctx, int tid)
{
  const ln_pack_ctx *c = ctx;
  const int blocks = (c->T + 15) / 16;
  for (int blk; (blk = team_next (c->w->team)) < blocks;) {
    const int r0 = blk * 16, rows = MIN (16, c->T - r0);
    const float *src = c->x + (gsize) r0 * c->D;
    if (c->pre_g)
      for (int r = 0; r < rows; r++)
        ln_row (c->e, c->x + (gsize) (r0 + r) * c->D, c->D, c->pre_g, c->pre_b,
            c->x + (gsize) (r0 + r) * c->D);
    if (c->g) {
#if HAVE_AVX512_PATH
      if (use_avx512 (c->e)) {
        ln_transpose_avx512 (src, c->D, rows, c->g, c->b, c->xt + r0, c->ldx);
        continue;
      }
#endif
      for (int r = 0; r < rows; r++)
        ln_row (c->e, c->x + (gsize) (r0 + r) * c->D, c->D, c->g, c->b,
            c->h + (gsize) (r0 + r) * c->D);
      src = c->h + (gsize) r0 * c->D;
    }
    transpose (c->e, src, c->D, rows, c->D, c->xt + r0, c->ldx, 16);
  }
}

static void
ln_pack2 (const canary_encoder *e, canary_encoder_work *w, float *x, int T, const float *pre_g,
    const float *pre_b, const float *g, const float *b, float *xt)
{
  ln_pack_ctx c = { e, w, x, T, e->d, g, b, w->h, xt, w->tp, pre_g, pre_b };
  team_run (w->team, ln_pack_fn, &c);
}

static void
ln_pack (const canary_encoder *e, canary_encoder_work *w, float *x, int T, const float *g,
    const float *b, float *xt)
{
  ln_pack2 (e, w, x, T, NULL, NULL, g, b, xt);
}

/* In-place LayerNorm of rows [0, T) of x. */
static void
ln_inplace_fn (void *ctx, int tid)
{
  const ln_pack_ctx *c = ctx;
  const int blocks = (c->T + 15) / 16;
  for (int blk; (blk = team_next (c->w->team)) < blocks;)
    for (int r = blk * 16; r < MIN (blk * 16 + 16, c->T); r++)
      ln_row (c->e, c->x + (gsize) r * c->D, c->D, c->g, c->b, c->x + (gsize) r * c->D);
}

static void
ln_inplace (const canary_encoder *e, canary_encoder_work *w, float *x, int T, const float *g,
    const float *b)
{
  ln_pack_ctx c = { e, w, x, T, e->d, g, b, NULL, NULL, 0, NULL, NULL };
  team_run (w->team, ln_inplace_fn, &c);
}

/* ---------------------------------------------------------------------------------------- */
/* Subsampling.                                                                              */

/* Transposed im2col of the masked mel image for conv.0: colT[i·3 + j][t·F1 + f] =
 * image[2t + i − 1][2f + j − 1] with image[t][f] = mel[f][t] for t < len[0], else 0
 * (MaskedConvSequential masks the input); zero padding 1 on both axes. Only the first len[1]
 * output rows are built: later rows are masked before use. Row stride plane1. */
static void
conv0_im2col (const sub_dims *d, const float *mel, float *colT)
{
  const int T0 = d->t[0], L0 = d->len[0], F0 = d->f[0], F1 = d->f[1], L1 = d->len[1];
  const gsize plane1 = (gsize) d->t[1] * F1;
  for (int i = 0; i < SUB_K; i++) {
    for (int j = 0; j < SUB_K; j++) {
      float *c = colT + (gsize) (i * SUB_K + j) * plane1;
      for (int t = 0; t < L1; t++) {
        const int ti = 2 * t + i - 1;
        for (int f = 0; f < F1; f++) {
          const int fj = 2 * f + j - 1;
          const gboolean in = ti >= 0 && ti < L0 && fj >= 0 && fj < F0;
          c[(gsize) t * F1 + f] = in ? mel[(gsize) fj * T0 + ti] : 0.0f;
        }
      }
    }
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

#if HAVE_AVX512_PATH
/* Loads r[s … s + 15] with zeros outside [0, n). */
AVX512 static inline __m512
load_window (const float *r, int s, int n)
{
  const int lo = MAX (0, -s), hi = MIN (16, n - s);
  if (hi <= lo)
    return _mm512_setzero_ps ();
  const __mmask16 m = (__mmask16) (tail_mask (hi) & ~tail_mask (lo));
  return _mm512_maskz_loadu_ps (m, r + s);
}

/* depthwise_s2 for one channel, 16 output columns at a time: the three taps of an input row
 * are r[2f − 1], r[2f], r[2f + 1], picked from two 32-wide windows by even/odd permutes. Same
 * tap order as the scalar loop, fused multiply-adds. */
AVX512 static void
depthwise_s2_channel_avx512 (const float *ip, int t_in, int f_in, const float *wc, float bias,
    float *op, int f_out, int len_out)
{
  const __m512i even = _mm512_setr_epi32 (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
      30);
  const __m512i odd = _mm512_add_epi32 (even, _mm512_set1_epi32 (1));
  for (int t = 0; t < len_out; t++) {
    float *o = op + (gsize) t * f_out;
    for (int f0 = 0; f0 < f_out; f0 += 16) {
      __m512 acc = _mm512_set1_ps (bias);
      for (int i = 0; i < SUB_K; i++) {
        const int ti = 2 * t + i - 1;
        if (ti < 0 || ti >= t_in)
          continue;
        const float *r = ip + (gsize) ti * f_in;
        const int s = 2 * f0;
        const __m512 a0 = load_window (r, s - 1, f_in), a1 = load_window (r, s + 15, f_in);
        const __m512 b0 = load_window (r, s, f_in), b1 = load_window (r, s + 16, f_in);
        const float *w3 = wc + i * SUB_K;
        acc = _mm512_fmadd_ps (_mm512_set1_ps (w3[0]), _mm512_permutex2var_ps (a0, even, a1), acc);
        acc = _mm512_fmadd_ps (_mm512_set1_ps (w3[1]), _mm512_permutex2var_ps (b0, even, b1), acc);
        acc = _mm512_fmadd_ps (_mm512_set1_ps (w3[2]), _mm512_permutex2var_ps (b0, odd, b1), acc);
      }
      _mm512_mask_storeu_ps (o + f0, tail_mask (f_out - f0), acc);
    }
  }
}
#endif

/* depthwise_s2 on the fastest path available. */
static void
depthwise_s2_any (const canary_encoder *e, const float *in, int chans, int t_in, int f_in,
    const float *w, const float *b, float *out, int t_out, int f_out, int len_out)
{
#if HAVE_AVX512_PATH
  if (use_avx512 (e)) {
    for (int c = 0; c < chans; c++) {
      float *op = out + (gsize) c * t_out * f_out;
      depthwise_s2_channel_avx512 (in + (gsize) c * t_in * f_in, t_in, f_in,
          w + (gsize) c * SUB_K * SUB_K, b[c], op, f_out, len_out);
      memset (op + (gsize) len_out * f_out, 0,
          (gsize) (t_out - len_out) * f_out * sizeof (float));
    }
    return;
  }
#endif
  depthwise_s2 (in, chans, t_in, f_in, w, b, out, t_out, f_out, len_out);
}

/* Channel planes [n0, n1) of a conv output (ct, plane = ldc, first M valid): zero the masked
 * tail. With aux1 set (stage 1 followed by a depthwise stage), also run that depthwise conv on
 * these channels into dst (user: the sub_dims, aux1/aux2: its weights, m_tot: first channel). */
static void
done_conv_planes (const canary_encoder *e, const gemm_job *j, int n0, int n1)
{
  for (int c = n0; c < n1; c++)
    memset (j->ct + (gsize) c * j->ldc + j->M, 0, (j->ldc - j->M) * sizeof (float));
  if (j->aux1) {
    const sub_dims *d = j->user;
    const int c0 = j->m_tot;
    depthwise_s2_any (e, j->ct + (gsize) n0 * j->ldc, n1 - n0, d->t[1], d->f[1],
        j->aux1 + (gsize) (c0 + n0) * SUB_K * SUB_K, j->aux2 + c0 + n0,
        j->dst + (gsize) (c0 + n0) * d->t[2] * d->f[2], d->t[2], d->f[2], d->len[2]);
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
  conv0_im2col (d, mel, w->col);
  for (int c0 = 0; c0 < e->chans; c0 += block) {
    const int nb = MIN (block, e->chans - c0);
    gemm_job j = { .N = nb, .M = (int) valid1, .K = SUB_K * SUB_K,
        .w = e->conv0_w + (gsize) c0 * SUB_K * SUB_K, .sn = SUB_K * SUB_K, .sk = 1,
        .xt = w->col, .ldx = plane1, .ct = w->sa, .ldc = plane1, .bias = e->conv0_b + c0,
        .act = ACT_RELU, .chunk = 4, .done = done_conv_planes };
    if (e->n_stages > 1) {
      j.aux1 = e->dw_w[1];
      j.aux2 = e->dw_b[1];
      j.dst = w->sb;
      j.m_tot = c0;
      j.user = d;
    }
    gemm_run (e, w, &j, 1);
  }
}

typedef struct {
  const canary_encoder *e;
  canary_encoder_work *w;
  const sub_dims *d;
  int s;
} dw_ctx;

static void
depthwise_fn (void *ctx, int tid)
{
  const dw_ctx *c = ctx;
  const sub_dims *d = c->d;
  const int s = c->s, C = c->e->chans, step = 4;
  for (int it; (it = team_next (c->w->team)) * step < C;) {
    const int c0 = it * step, n = MIN (step, C - c0);
    depthwise_s2_any (c->e, c->w->sa + (gsize) c0 * d->t[s - 1] * d->f[s - 1], n, d->t[s - 1],
        d->f[s - 1], c->e->dw_w[s - 1] + (gsize) c0 * SUB_K * SUB_K, c->e->dw_b[s - 1] + c0,
        c->w->sb + (gsize) c0 * d->t[s] * d->f[s], d->t[s], d->f[s], d->len[s]);
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
  gemm_job j = { .N = C, .M = (int) valid, .K = C, .w = pw->w, .sn = (gsize) C, .sk = 1,
      .xt = w->sb, .ldx = plane, .ct = w->sa, .ldc = plane, .bias = pw->b, .act = ACT_RELU,
      .done = done_conv_planes };
  gemm_run (e, w, &j, 1);
}

/* Flatten [C][T][F'] → features c·F' + f, transposed: hT[c·F' + f][t] = sa[c][t][f]. */
typedef struct {
  const canary_encoder *e;
  canary_encoder_work *w;
  int T, F;
} flatten_ctx;

static void
flatten_fn (void *ctx, int tid)
{
  const flatten_ctx *c = ctx;
  const int step = 16;
  for (int it; (it = team_next (c->w->team)) * step < c->e->chans;)
    for (int ch = it * step; ch < MIN (it * step + step, c->e->chans); ch++)
      transpose (c->e, c->w->sa + (gsize) ch * c->T * c->F, c->F, c->T, c->F,
          c->w->hT + (gsize) ch * c->F * c->w->tp, c->w->tp, (int) round_up (c->T, 16));
}

/* The whole ConvSubsampling: stages, then flatten and `out` into w->x. */
static void
subsample (const canary_encoder *e, canary_encoder_work *w, const sub_dims *d, const float *mel)
{
  const int S = e->n_stages, C = e->chans;
  subsample_stage1 (e, w, d, mel);
  for (int s = 2; s <= S; s++) {
    if (s > 2) {
      dw_ctx c = { e, w, d, s };
      team_run (w->team, depthwise_fn, &c);
    }
    subsample_pointwise (e, w, d, s);
  }
  const int T = d->t[S], F = d->f[S];
  flatten_ctx fc = { e, w, T, F };
  team_run (w->team, flatten_fn, &fc);
  gemm_job j = linear_job (&e->pre_out, e->d, C * F, w->hT, w->tp, T, w->ct, w->tp);
  j.done = done_to_rows;
  j.dst = w->x;
  j.ldd = e->d;
  j.scale = 0.0f;
  gemm_run (e, w, &j, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* Conformer layer.                                                                          */

/* The GEMM whose output goes back into the residual stream: x[m] += scale · (CT[m] + b) for
 * the M computed rows, x[m] += scale · b for rows M … T - 1. */
static void
linear_residual (const canary_encoder *e, canary_encoder_work *w, const linear *l, int in,
    const float *xt, int M, int T, float scale)
{
  gemm_job j = linear_job (l, e->d, in, xt, w->tp, M, w->ct, w->tp);
  j.done = done_to_rows;
  j.dst = w->x;
  j.ldd = e->d;
  j.scale = scale;
  j.m_tot = T;
  gemm_run (e, w, &j, 1);
}

/* FF(LN(x)) with x += 0.5 · FF: linear1 + Swish into bigT, linear2 back into x. pre_w/pre_b:
 * the previous layer's norm_out, applied to x first (NULL: none pending). */
static void
feed_forward (const canary_encoder *e, canary_encoder_work *w, const linear *l1,
    const linear *l2, const float *pre_w, const float *pre_b, const float *ln_w,
    const float *ln_b, int T)
{
  ln_pack2 (e, w, w->x, T, pre_w, pre_b, ln_w, ln_b, w->hT);
  gemm_job j = linear_job (l1, e->ff, e->d, w->hT, w->tp, T, w->bigT, w->tp);
  j.act = ACT_SWISH;
  gemm_run (e, w, &j, 1);
  linear_residual (e, w, l2, e->ff, w->bigT, T, T, 0.5f);
}

/* One head for the queries [i0, i0 + n) of the valid block (c: channel of the head, j: key):
 *   S[i][j] = Σ_c (q+u)[i][c] · k[j][c],   BD[i][r] = Σ_c (q+v)[i][c] · p[r][c],
 *   S[i][j] = (S[i][j] + BD[i][L-1-i+j]) / sqrt(dk)  (Transformer-XL's rel_shift, read by index:
 *   p row r is relative position L-1-r), softmax over j, then, with the block transposed to
 *   PT[j][i], ctxT[c][i] = Σ_j v[j][c] · PT[j][i]. Scratch: S [ATT_QB][tp], BD [ATT_QB][pp],
 *   PT [tp][ATT_QB]. */
static void
attention_block (const canary_encoder *e, canary_encoder_work *w, int hd, int i0, int n, int L,
    float *S, float *BD, float *PT)
{
  const int dk = e->dk, P = 2 * L - 1;
  const gsize ld = w->tp, pp = w->pp, c0 = (gsize) hd * dk;
  const float sqrt_dk = (float) sqrt ((double) dk);
  gemm_job js = { .N = n, .M = L, .K = dk, .w = w->quT + c0 * ld + i0, .sn = 1, .sk = ld,
      .xt = w->kT + c0 * ld, .ldx = ld, .ct = S, .ldc = ld };
  gemm_job jb = { .N = n, .M = P, .K = dk, .w = w->qvT + c0 * ld + i0, .sn = 1, .sk = ld,
      .xt = w->pT + c0 * pp, .ldx = pp, .ct = BD, .ldc = pp };
  gemm_rows (e, &js, 0, n);
  gemm_rows (e, &jb, 0, n);
  for (int i = 0; i < n; i++) {
    float *s = S + (gsize) i * ld;
    const float *bd = BD + (gsize) i * pp + (L - 1 - (i0 + i));
#if HAVE_AVX512_PATH
    if (use_avx512 (e))
      score_row_avx512 (s, bd, L, sqrt_dk);
    else
#endif
      score_row_scalar (s, bd, L, sqrt_dk);
  }
  transpose (e, S, ld, n, L, PT, ATT_QB, (int) round_up (n, 16));
  gemm_job jc = { .N = dk, .M = n, .K = L, .w = w->vT + c0 * ld, .sn = ld, .sk = 1, .xt = PT,
      .ldx = ATT_QB, .ct = w->ctxT + c0 * ld + i0, .ldc = ld };
  gemm_rows (e, &jc, 0, dk);
}

typedef struct {
  const canary_encoder *e;
  canary_encoder_work *w;
  int L;
} att_ctx;

static void
attention_fn (void *ctx, int tid)
{
  const att_ctx *c = ctx;
  const int blocks = (c->L + ATT_QB - 1) / ATT_QB;
  for (int it; (it = team_next (c->w->team)) < c->e->heads * blocks;) {
    const int i0 = it % blocks * ATT_QB;
    attention_block (c->e, c->w, it / blocks, i0, MIN (ATT_QB, c->L - i0), c->L,
        thread_scores (c->w, tid), thread_bd (c->w, tid), thread_pt (c->w, tid));
  }
}

/* RelPositionMultiHeadAttention on LN(x) (T rows, L valid), x += attention. Fully masked
 * (padding) queries have zero context, so linear_out gives its bias. */
static void
self_attention (const canary_encoder *e, canary_encoder_work *w, const enc_layer *ly, int T,
    int L)
{
  const int D = e->d;
  ln_pack (e, w, w->x, T, ly->ln_att_w, ly->ln_att_b, w->hT);
  if (L > 0) {
    const gsize ld = w->tp;
    gemm_job jobs[4] = {
      linear_job (&ly->q, D, D, w->hT, ld, L, w->quT, ld),
      linear_job (&ly->k, D, D, w->hT, ld, L, w->kT, ld),
      linear_job (&ly->v, D, D, w->hT, ld, L, w->vT, ld),
      /* p = linear_pos(pos_emb) for positions L-1 … -(L-1): the centre slice of the table. */
      { .N = D, .M = 2 * L - 1, .K = D, .w = ly->pos_w, .sn = (gsize) D, .sk = 1,
        .xt = w->peT + (w->max_t - L), .ldx = w->pe_w, .ct = w->pT, .ldc = w->pp },
    };
    jobs[0].done = done_q_biases;
    jobs[0].dst = w->qvT;
    jobs[0].ldd = ld;
    jobs[0].aux1 = ly->bias_u;
    jobs[0].aux2 = ly->bias_v;
    gemm_run (e, w, jobs, 4);
    att_ctx c = { e, w, L };
    team_run (w->team, attention_fn, &c);
  }
  linear_residual (e, w, &ly->o, D, w->ctxT, L, T, 1.0f);
}

/* GLU → mask → depthwise (BN folded) → Swish, channel by channel: bigT rows c and D + c → hT. */
typedef struct {
  const canary_encoder *e;
  canary_encoder_work *w;
  const enc_layer *ly;
  int T, L;
} conv_ctx;

static void
conv_fn (void *ctx, int tid)
{
  const conv_ctx *c = ctx;
  const canary_encoder *e = c->e;
  canary_encoder_work *w = c->w;
  const int D = e->d, K = e->kernel, step = 16;
  const gsize ld = w->tp;
  float *row = thread_row (w, tid);
  for (int it; (it = team_next (w->team)) * step < D;) {
    for (int ch = it * step; ch < MIN (it * step + step, D); ch++) {
      const float *a = w->bigT + (gsize) ch * ld, *g = w->bigT + (gsize) (D + ch) * ld;
      const float *wk = c->ly->dw_w + (gsize) ch * K;
      float *out = w->hT + (gsize) ch * ld;
#if HAVE_AVX512_PATH
      if (use_avx512 (e))
        conv_channel_avx512 (a, g, c->L, c->T, wk, K, c->ly->dw_b[ch], row, out);
      else
#endif
        conv_channel_scalar (a, g, c->L, c->T, wk, K, c->ly->dw_b[ch], row, out);
    }
  }
}

/* ConformerConvolution on LN(x), x += conv: pw1 → GLU → zero padding steps → depthwise (BN
 * folded) → Swish → pw2. */
static void
conv_module (const canary_encoder *e, canary_encoder_work *w, const enc_layer *ly, int T, int L)
{
  const int D = e->d;
  ln_pack (e, w, w->x, T, ly->ln_conv_w, ly->ln_conv_b, w->hT);
  gemm_job j = linear_job (&ly->pw1, 2 * D, D, w->hT, w->tp, L, w->bigT, w->tp);
  gemm_run (e, w, &j, 1);
  conv_ctx c = { e, w, ly, T, L };
  team_run (w->team, conv_fn, &c);
  linear_residual (e, w, &ly->pw2, D, w->hT, T, T, 1.0f);
}

/* One layer, except its norm_out: that is applied together with the next layer's first
 * LayerNorm (prev: the previous layer, whose norm_out is pending; NULL for the first). */
static void
conformer_layer (const canary_encoder *e, canary_encoder_work *w, const enc_layer *ly,
    const enc_layer *prev, int T, int L)
{
  feed_forward (e, w, &ly->ff1_1, &ly->ff1_2, prev ? prev->ln_out_w : NULL,
      prev ? prev->ln_out_b : NULL, ly->ln_ff1_w, ly->ln_ff1_b, T);
  self_attention (e, w, ly, T, L);
  conv_module (e, w, ly, T, L);
  feed_forward (e, w, &ly->ff2_1, &ly->ff2_2, NULL, NULL, ly->ln_ff2_w, ly->ln_ff2_b, T);
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
  if (!work_prepare (e, w, error))
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
    conformer_layer (enc, work, &enc->layers[i], i > 0 ? &enc->layers[i - 1] : NULL, T, L);
  if (enc->n_layers > 0) {
    const enc_layer *last = &enc->layers[enc->n_layers - 1];
    ln_inplace (enc, work, work->x, T, last->ln_out_w, last->ln_out_b);
  }
  const float *res = work->x;
  if (enc->proj.w) {
    ln_pack (enc, work, work->x, T, NULL, NULL, work->hT);
    gemm_job j = linear_job (&enc->proj, enc->out_dim, D, work->hT, work->tp, T, work->ct,
        work->tp);
    j.done = done_to_rows;
    j.dst = work->out;
    j.ldd = enc->out_dim;
    j.scale = 0.0f;
    gemm_run (enc, work, &j, 1);
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
