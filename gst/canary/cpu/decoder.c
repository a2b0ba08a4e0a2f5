/* gst-canary — NeMo's Transformer decoder (pre-LN) and its tied output head, FP32 on the CPU.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Reference: docs/MODEL.md §decoder and NeMo's transformer_modules.py (TransformerEmbedding,
 * MultiHeadAttention), transformer_decoders.py (TransformerDecoderBlock.forward_preln,
 * TransformerDecoder.forward) and transformer_utils.py (form_attention_mask, NEG_INF). */
#include "cpu/decoder.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "canary.h"
#include "cpu/gemm.h"
#include "cpu/simd.h"
#include "cpu/team.h"
#include "formats/tensor.h"
#include "layout.h"
#include "nemo_constants.h"
#include "util.h"

/* Alignment of each buffer carved out of the state's arena (cache lines, AVX-512 loads). */
#define DEC_ALIGN 64

typedef struct {
  const float *w;  /* [out, in], row-major as torch stores nn.Linear weights */
  const float *b;  /* [out] */
  int out, in;
  const guint16 *w16;  /* the same weights in FP16 (canary_decoder_use_f16), else NULL */
} dec_linear;

typedef struct {
  const float *g, *b;  /* [H] */
} dec_layer_norm;

typedef struct {
  dec_layer_norm ln1, ln2, ln3;
  dec_linear self_q, self_k, self_v, self_o;      /* first_sub_layer */
  dec_linear cross_q, cross_k, cross_v, cross_o;  /* second_sub_layer */
  dec_linear ff_in, ff_out;                       /* third_sub_layer */
} dec_block;

struct _canary_decoder {
  int n_layers, H, n_heads, d_head, inner, max_len, V;
  float qk_scale;          /* sqrt(sqrt(d_head)); NeMo divides both q and k by it */
  const float *tok_emb;    /* [V, H] (normally the same storage as head.w) */
  const float *pos_enc;    /* [max_len, H], already divided by sqrt(H) in the checkpoint */
  dec_layer_norm emb_ln, final_ln;
  dec_linear head;         /* [V, H] + [V] */
  dec_block *blocks;
  GPtrArray *owned;        /* converted copies of tensors that could not be used in place */
  gsize weight_bytes;
  gsize owned_bytes;       /* the part of weight_bytes held in `owned` */
  /* precision=fp16 (canary_decoder_use_f16): every Linear and the head in one FP16 allocation,
   * the embedding read from the head's FP16 rows when tied (else its own rows there). */
  guint16 *f16;
  gsize f16_elems;
  const guint16 *tok_emb16;
  gboolean f16_simd;
  canary_f16_linear_path f16_linear;  /* the row-product kernel (canary_f16_linear_best) */
};

#define F16_TEAM_MIN_WEIGHTS (1u << 19)  /* smaller products run on the calling thread */
/* Below this many score-times-H multiply-adds an attention call's heads run on the calling
 * thread: waking the team costs more (the tiny models, the first steps of a short prompt). */
#define ATTN_TEAM_MIN_WORK (1u << 16)

struct _canary_decoder_state {
  const canary_decoder *dec;
  int max_beam, max_tokens, max_rows, max_frames, pad_id;

  /* Self-attention cache, [layer][slot][max_len][H]; keys already divided by qk_scale. A slot is
   * a physical cache; slot[b] maps hypothesis b to its slot so that reordering moves indices, not
   * data (see canary_decoder_reorder). */
  float *self_k, *self_v;
  int *slot, *slot_next;
  guint8 *claimed;
  int n_beams, length;

  /* Cross-attention K/V of the current window, [layer][max_frames][H], shared by all hypotheses.
   * FP16 weights: stored FP16 in cross_k16/cross_v16 (as the CUDA arena stores them), since every
   * step reads all of them (canary-1b, 10 s: 24.6 MB in FP32); cross_k/cross_v are then one
   * layer's FP32 products on their way there, and kv_widen holds, per team thread, one head's K
   * and V widened back to FP32 (2 × max_frames × d_head floats, kv_widen_stride apart). */
  float *cross_k, *cross_v;
  guint16 *cross_k16, *cross_v16;
  float *kv_widen;
  gsize kv_widen_stride;
  int T, enc_len;
  gboolean has_memory;

  /* Step scratch, max_rows rows each (scores: max_rows × max(max_len, max_frames) per team
   * thread, scores_stride floats apart). */
  float *x, *y, *q, *k, *v, *ctx, *ff, *scores;
  gsize scores_stride;
  /* Products of at least this many weights, attention calls of at least this much work, run on
   * the team (F16_TEAM_MIN_WEIGHTS, ATTN_TEAM_MIN_WORK; 0 with CANARY_DECODER_TEAM_ALWAYS=1, so
   * that the tests' tiny models take the team's paths too). */
  gsize team_min_weights, team_min_work;
  float *emb_row;          /* FP16 weights: one embedding row widened to FP32 */
  canary_team *team;       /* FP16 weights: the threads of their products (BLAS has its own) */
  /* FP16 weights: the window's cross K/V projections (max_frames rows) are GEMMs, run on the
   * encoder's tiled kernel over transposed activations: mem_xt = the encoder output transposed
   * ([H][ld_mem], zero past the frames), mem_ct = the K and V products ([2][H][ld_mem]). */
  canary_gemm gemm;
  float *mem_xt, *mem_ct;
  gsize ld_mem;
  gpointer arena;
  gsize arena_bytes;
};

/* ---------------------------------------------------------------------------------------------
 * Loading */

/* Returns `t` as f32, in place when canary_tensor_f32_view allows it, else as a copy the decoder
 * owns. `converted` maps a tensor's data pointer to what was returned for it, so the tied
 * embedding/head matrix is converted and counted in weight_bytes once. */
static const float *
tensor_as_f32 (canary_decoder *dec, GHashTable *converted, const canary_tensor *t)
{
  const float *p = g_hash_table_lookup (converted, t->data);
  if (p)
    return p;
  p = canary_tensor_f32_view (t);
  if (!p) {
    float *copy = canary_tensor_to_f32 (t);
    g_ptr_array_add (dec->owned, copy);
    dec->owned_bytes += (gsize) t->numel * sizeof (float);
    p = copy;
  }
  g_hash_table_insert (converted, (gpointer) t->data, (gpointer) p);
  dec->weight_bytes += (gsize) t->numel * sizeof (float);
  return p;
}

/* Looks `key` up and checks that it is a floating-point tensor of shape [d0] (d1 < 0) or [d0, d1];
 * d0 < 0 accepts any first dimension (reported through *rows). */
static const float *
bind (canary_decoder *dec, const canary_ckpt *ck, GHashTable *converted, const char *key, int64_t d0,
    int64_t d1, int64_t *rows, GError **error)
{
  const canary_tensor *t = canary_ckpt_get (ck, key);
  if (!t) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT, "decoder weight '%s' is missing from the checkpoint",
        key);
    return NULL;
  }
  if (t->dtype != CANARY_DTYPE_F32 && t->dtype != CANARY_DTYPE_F16 && t->dtype != CANARY_DTYPE_BF16
      && t->dtype != CANARY_DTYPE_F64) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT, "decoder weight '%s' has dtype %s, expected a float type",
        key, canary_dtype_name (t->dtype));
    return NULL;
  }
  int ndim = d1 < 0 ? 1 : 2;
  int64_t want[2] = { d0 < 0 ? (t->ndim > 0 ? t->shape[0] : 0) : d0, d1 };
  if (t->ndim != ndim || t->shape[0] != want[0] || (ndim == 2 && t->shape[1] != want[1]) || want[0] <= 0) {
    char *got = canary_shape_string (t->ndim, t->shape), *exp = canary_shape_string (ndim, want);
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT, "decoder weight '%s' has shape %s, expected %s%s", key,
        got, exp, d0 < 0 ? " (any first dimension)" : "");
    g_free (got);
    g_free (exp);
    return NULL;
  }
  if (rows)
    *rows = t->shape[0];
  return tensor_as_f32 (dec, converted, t);
}

static gboolean
bind_linear (canary_decoder *dec, const canary_ckpt *ck, GHashTable *converted, const char *prefix, int out,
    int in, dec_linear *l, GError **error)
{
  char *wk = g_strconcat (prefix, ".weight", NULL), *bk = g_strconcat (prefix, ".bias", NULL);
  l->w = bind (dec, ck, converted, wk, out, in, NULL, error);
  l->b = l->w ? bind (dec, ck, converted, bk, out, -1, NULL, error) : NULL;
  l->out = out;
  l->in = in;
  g_free (wk);
  g_free (bk);
  return l->b != NULL;
}

static gboolean
bind_layer_norm (canary_decoder *dec, const canary_ckpt *ck, GHashTable *converted, const char *prefix,
    dec_layer_norm *ln, GError **error)
{
  char *wk = g_strconcat (prefix, ".weight", NULL), *bk = g_strconcat (prefix, ".bias", NULL);
  ln->g = bind (dec, ck, converted, wk, dec->H, -1, NULL, error);
  ln->b = ln->g ? bind (dec, ck, converted, bk, dec->H, -1, NULL, error) : NULL;
  g_free (wk);
  g_free (bk);
  return ln->b != NULL;
}

static gboolean
bind_block (canary_decoder *dec, const canary_ckpt *ck, GHashTable *converted, int j, dec_block *blk,
    GError **error)
{
  const int H = dec->H, F = dec->inner;
  const struct {
    canary_dec_part part;
    dec_linear *l;
    int out, in;
  } lins[] = {
    { CANARY_DEC_SELF_Q, &blk->self_q, H, H }, { CANARY_DEC_SELF_K, &blk->self_k, H, H },
    { CANARY_DEC_SELF_V, &blk->self_v, H, H }, { CANARY_DEC_SELF_OUT, &blk->self_o, H, H },
    { CANARY_DEC_CROSS_Q, &blk->cross_q, H, H }, { CANARY_DEC_CROSS_K, &blk->cross_k, H, H },
    { CANARY_DEC_CROSS_V, &blk->cross_v, H, H }, { CANARY_DEC_CROSS_OUT, &blk->cross_o, H, H },
    { CANARY_DEC_FF_IN, &blk->ff_in, F, H }, { CANARY_DEC_FF_OUT, &blk->ff_out, H, F },
  };
  dec_layer_norm *norms[3] = { &blk->ln1, &blk->ln2, &blk->ln3 };
  const canary_dec_part norm_parts[3] = { CANARY_DEC_LN1, CANARY_DEC_LN2, CANARY_DEC_LN3 };
  gboolean ok = TRUE;
  for (int i = 0; ok && i < 3; i++) {
    char *p = canary_dec_key (j, norm_parts[i], NULL);
    ok = bind_layer_norm (dec, ck, converted, p, norms[i], error);
    g_free (p);
  }
  for (gsize i = 0; ok && i < G_N_ELEMENTS (lins); i++) {
    char *p = canary_dec_key (j, lins[i].part, NULL);
    ok = bind_linear (dec, ck, converted, p, lins[i].out, lins[i].in, lins[i].l, error);
    g_free (p);
  }
  return ok;
}

/* The sizes the code relies on, named by their model_config.yaml keys. */
static gboolean
check_config (const canary_config *cfg, GError **error)
{
  const struct {
    const char *key;
    int value;
  } dims[] = {
    { "transf_decoder.config_dict.num_layers", cfg->dec_layers },
    { "transf_decoder.config_dict.hidden_size", cfg->dec_hidden },
    { "transf_decoder.config_dict.num_attention_heads", cfg->dec_heads },
    { "transf_decoder.config_dict.inner_size", cfg->dec_inner },
    { "transf_decoder.config_dict.max_sequence_length", cfg->dec_max_seq_len },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (dims); i++) {
    /* 1 << 20 bounds every product below well inside int/gsize range. */
    if (dims[i].value <= 0 || dims[i].value > (1 << 20)) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT, "config %s = %d is out of range", dims[i].key,
          dims[i].value);
      return FALSE;
    }
  }
  if (cfg->dec_hidden % cfg->dec_heads != 0) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
        "config transf_decoder.config_dict.hidden_size = %d is not a multiple of num_attention_heads = %d",
        cfg->dec_hidden, cfg->dec_heads);
    return FALSE;
  }
  if (!cfg->dec_pre_ln) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
        "config transf_decoder.config_dict.pre_ln = false (post-LN decoder) is not supported");
    return FALSE;
  }
  if (cfg->dec_hidden_act && g_ascii_strcasecmp (cfg->dec_hidden_act, "relu") != 0) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
        "config transf_decoder.config_dict.hidden_act = '%s' is not supported (only relu)", cfg->dec_hidden_act);
    return FALSE;
  }
  return TRUE;
}

/* The token embedding is tied to the head (NeMo assigns the same Parameter), so the checkpoint
 * normally holds one storage under both keys; use the embedding key only when it really is a
 * different matrix. */
static gboolean
bind_embedding (canary_decoder *dec, const canary_ckpt *ck, GHashTable *converted, GError **error)
{
  const char *emb_key = CANARY_KEY_TOKEN_EMB;
  int64_t V = 0;
  dec->head.w = bind (dec, ck, converted, CANARY_KEY_HEAD ".weight", -1, dec->H, &V, error);
  if (!dec->head.w)
    return FALSE;
  if (V > G_MAXINT / 2) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT, CANARY_KEY_HEAD ".weight has %" G_GINT64_FORMAT
        " rows, too many", V);
    return FALSE;
  }
  dec->V = (int) V;
  dec->head.b = bind (dec, ck, converted, CANARY_KEY_HEAD ".bias", V, -1, NULL, error);
  dec->head.out = dec->V;
  dec->head.in = dec->H;
  if (!dec->head.b)
    return FALSE;
  dec->tok_emb = canary_ckpt_get (ck, emb_key) ? bind (dec, ck, converted, emb_key, V, dec->H, NULL, error)
                                               : dec->head.w;
  if (!dec->tok_emb)
    return FALSE;
  dec->pos_enc = bind (dec, ck, converted, CANARY_KEY_POS_ENC, dec->max_len,
      dec->H, NULL, error);
  return dec->pos_enc && bind_layer_norm (dec, ck, converted, CANARY_KEY_EMB_LN,
      &dec->emb_ln, error);
}

canary_decoder *
canary_decoder_new (const canary_config *cfg, const canary_ckpt *ck, GError **error)
{
  g_return_val_if_fail (cfg && ck, NULL);
  if (!check_config (cfg, error))
    return NULL;

  canary_decoder *dec = g_new0 (canary_decoder, 1);
  dec->n_layers = cfg->dec_layers;
  dec->H = cfg->dec_hidden;
  dec->n_heads = cfg->dec_heads;
  dec->d_head = cfg->dec_hidden / cfg->dec_heads;
  dec->inner = cfg->dec_inner;
  dec->max_len = cfg->dec_max_seq_len;
  /* math.sqrt(math.sqrt(d)) in NeMo, applied to fp32 tensors as a float scalar. */
  dec->qk_scale = (float) sqrt (sqrt ((double) dec->d_head));
  dec->owned = g_ptr_array_new_with_free_func (g_free);
  dec->blocks = g_new0 (dec_block, dec->n_layers);

  GHashTable *converted = g_hash_table_new (g_direct_hash, g_direct_equal);
  gboolean ok = bind_embedding (dec, ck, converted, error);
  for (int j = 0; ok && j < dec->n_layers; j++)
    ok = bind_block (dec, ck, converted, j, &dec->blocks[j], error);
  ok = ok && bind_layer_norm (dec, ck, converted, CANARY_KEY_FINAL_LN, &dec->final_ln, error);
  g_hash_table_unref (converted);

  if (ok && cfg->vocab_size > 0 && cfg->vocab_size != dec->V) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
        CANARY_KEY_HEAD ".weight has %d rows but config head.num_classes = %d", dec->V, cfg->vocab_size);
    ok = FALSE;
  }
  if (ok) {
    /* A checkpoint with more layers than the config says would silently run a truncated model. */
    char *extra = canary_dec_key (dec->n_layers, CANARY_DEC_LN1, "weight");
    if (canary_ckpt_get (ck, extra)) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
          "checkpoint has '%s' but config transf_decoder.config_dict.num_layers = %d", extra, dec->n_layers);
      ok = FALSE;
    }
    g_free (extra);
  }
  if (!ok) {
    canary_decoder_free (dec);
    return NULL;
  }
  return dec;
}

gboolean
canary_decoder_use_f16 (canary_decoder *dec, canary_release_fn release, gpointer user_data,
    GError **error)
{
  g_return_val_if_fail (dec && !dec->f16, FALSE);
  const int per_block = 10;
  const int n = dec->n_layers * per_block + 1;
  dec_linear **lins = g_new (dec_linear *, n);
  int k = 0;
  lins[k++] = &dec->head;
  for (int j = 0; j < dec->n_layers; j++) {
    dec_block *b = &dec->blocks[j];
    dec_linear *l[] = { &b->self_q, &b->self_k, &b->self_v, &b->self_o, &b->cross_q, &b->cross_k,
      &b->cross_v, &b->cross_o, &b->ff_in, &b->ff_out };
    for (int i = 0; i < per_block; i++)
      lins[k++] = l[i];
  }
  const gboolean tied = dec->tok_emb == dec->head.w;
  gsize total = tied ? 0 : (gsize) dec->V * dec->H;
  for (int i = 0; i < n; i++)
    total += (gsize) lins[i]->out * lins[i]->in;
  guint16 *buf = g_try_new (guint16, MAX (total, 1));
  if (!buf) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "decoder: cannot allocate %" G_GSIZE_FORMAT " bytes of FP16 weights", total * 2);
    g_free (lins);
    return FALSE;
  }
  gsize at = 0;
  for (int i = 0; i < n; i++) {
    const gsize e = (gsize) lins[i]->out * lins[i]->in;
    canary_f32_to_f16_n (lins[i]->w, buf + at, e);
    lins[i]->w16 = buf + at;
    if (release)
      release (lins[i]->w, e * sizeof (float), user_data);
    at += e;
  }
  if (tied) {
    dec->tok_emb16 = dec->head.w16;
  } else {
    const gsize e = (gsize) dec->V * dec->H;
    canary_f32_to_f16_n (dec->tok_emb, buf + at, e);
    dec->tok_emb16 = buf + at;
    at += e;
  }
  g_free (lins);
  dec->f16 = buf;
  dec->f16_elems = total;
  dec->f16_simd = canary_f16_simd_enabled ();
  dec->f16_linear = canary_f16_linear_best ();
  dec->owned_bytes += total * sizeof (guint16);
  dec->weight_bytes = dec->weight_bytes - total * sizeof (float) + total * sizeof (guint16);
  return TRUE;
}

gsize
canary_decoder_f16_elems (const canary_decoder *dec)
{
  return dec->f16_elems;
}

void
canary_decoder_free (canary_decoder *dec)
{
  if (!dec)
    return;
  g_ptr_array_unref (dec->owned);
  g_free (dec->f16);
  g_free (dec->blocks);
  g_free (dec);
}

int
canary_decoder_vocab (const canary_decoder *dec)
{
  return dec->V;
}

int
canary_decoder_hidden (const canary_decoder *dec)
{
  return dec->H;
}

int
canary_decoder_max_seq_len (const canary_decoder *dec)
{
  return dec->max_len;
}

gsize
canary_decoder_weight_bytes (const canary_decoder *dec)
{
  return dec->weight_bytes;
}

gsize
canary_decoder_owned_bytes (const canary_decoder *dec)
{
  return dec->owned_bytes;
}

/* ---------------------------------------------------------------------------------------------
 * State */

/* One buffer of the state's arena: where to store its pointer and how many floats it holds. */
typedef struct {
  float **ptr;
  gsize n;
} arena_part;

/* Carves every buffer out of one allocation so a state costs one malloc and frees in one call. */
static gboolean
arena_alloc (canary_decoder_state *st, arena_part *parts, gsize n_parts, GError **error)
{
  gsize total = 0;
  for (gsize i = 0; i < n_parts; i++) {
    gsize bytes;
    if (!canary_mul_size (parts[i].n, sizeof (float), &bytes) || !canary_add_size (bytes, DEC_ALIGN - 1, &bytes)
        || !canary_add_size (total, bytes - bytes % DEC_ALIGN, &total))
      goto too_big;
  }
  if (!canary_add_size (total, DEC_ALIGN, &total))
    goto too_big;
  st->arena = g_try_malloc (total);
  if (!st->arena) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "decoder state: cannot allocate %" G_GSIZE_FORMAT " bytes", total);
    return FALSE;
  }
  st->arena_bytes = total;
  guintptr p = ((guintptr) st->arena + DEC_ALIGN - 1) & ~(guintptr) (DEC_ALIGN - 1);
  for (gsize i = 0; i < n_parts; i++) {
    *parts[i].ptr = (float *) p;
    gsize bytes = parts[i].n * sizeof (float);
    p += (bytes + DEC_ALIGN - 1) & ~(gsize) (DEC_ALIGN - 1);
  }
  return TRUE;

too_big:
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY, "decoder state: size overflows");
  return FALSE;
}

canary_decoder_state *
canary_decoder_state_new (const canary_decoder *dec, int max_beam, int max_tokens, int max_frames, int pad_id,
    GError **error)
{
  g_return_val_if_fail (dec, NULL);
  if (max_tokens <= 0 || max_tokens > dec->max_len)
    max_tokens = dec->max_len;
  if (max_beam < 1 || max_beam > 1024 || max_frames < 1 || max_frames > (1 << 24)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "decoder state: max_beam %d (1..1024) or max_frames %d (1..%d) out of range", max_beam, max_frames,
        1 << 24);
    return NULL;
  }

  canary_decoder_state *st = g_new0 (canary_decoder_state, 1);
  st->dec = dec;
  st->max_beam = max_beam;
  st->max_tokens = max_tokens;
  st->max_rows = MAX (max_beam, max_tokens);
  st->max_frames = max_frames;
  st->pad_id = pad_id;

  /* Every factor is <= 2^24 (check_config, the limits above), but products of three may not fit
   * a 32-bit gsize: checked. */
  const gsize H = dec->H, L = dec->n_layers, rows = st->max_rows;
  /* FP16: the products and the attention heads run on a team (one score buffer per thread). */
  const int n_threads = dec->f16 ? CLAMP (openblas_get_num_threads (), 1, CANARY_TEAM_MAX_THREADS) : 1;
  gsize cache = 0, cross = 0, act = 0, ff = 0, scores = 0, cross16 = 0, widen = 0;
  gboolean ok = canary_mul_size (L * H, (gsize) max_beam * dec->max_len, &cache)
      && canary_mul_size (dec->f16 ? H : L * H, (gsize) max_frames, &cross) && canary_mul_size (rows, H, &act)
      && canary_mul_size (rows, (gsize) dec->inner, &ff)
      && canary_mul_size (rows, (gsize) MAX (dec->max_len, max_frames), &scores)
      && canary_mul_size (scores, (gsize) n_threads, &scores);
  st->scores_stride = scores / n_threads;
  /* FP16: the FP16 cross K/V (counted in floats for the arena: two halves a float) and the
   * per-thread widening scratch. */
  if (dec->f16) {
    ok = ok && canary_mul_size (L * H, (gsize) max_frames, &cross16)
        && canary_mul_size (2 * (gsize) max_frames * dec->d_head, (gsize) n_threads, &widen);
    cross16 = cross16 / 2 + 1;
    st->kv_widen_stride = widen / n_threads;
  }
  float *cross_k16 = NULL, *cross_v16 = NULL;
  /* FP16: the cross K/V GEMMs' operands (max_frames <= 2^24, H <= 2^24: the products are checked). */
  st->ld_mem = dec->f16 ? (gsize) (max_frames + CANARY_GEMM_TILE_M - 1) / CANARY_GEMM_TILE_M * CANARY_GEMM_TILE_M : 0;
  gsize mem_xt = 0, mem_ct = 0;
  ok = ok && canary_mul_size (H, st->ld_mem, &mem_xt) && canary_mul_size (2 * H, st->ld_mem, &mem_ct);
  if (dec->f16)
    mem_xt += CANARY_GEMM_TILE_M;  /* the kernel's read slack past the last row */
  arena_part parts[] = {
    { &st->self_k, cache }, { &st->self_v, cache },
    { &st->cross_k, cross }, { &st->cross_v, cross },
    { &st->x, act }, { &st->y, act }, { &st->q, act }, { &st->k, act }, { &st->v, act }, { &st->ctx, act },
    { &st->ff, ff }, { &st->scores, scores }, { &st->mem_xt, mem_xt }, { &st->mem_ct, mem_ct },
    { &cross_k16, cross16 }, { &st->kv_widen, widen }, { &cross_v16, cross16 },
  };
  if (!ok) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY, "decoder state: size overflows");
    g_free (st);
    return NULL;
  }
  if (!arena_alloc (st, parts, G_N_ELEMENTS (parts), error)) {
    g_free (st);
    return NULL;
  }
  if (dec->f16) {
    st->cross_k16 = (guint16 *) cross_k16;
    st->cross_v16 = (guint16 *) cross_v16;
  }
  st->slot = g_new0 (int, max_beam);
  st->slot_next = g_new0 (int, max_beam);
  st->claimed = g_new0 (guint8, max_beam);
  if (dec->f16) {
    st->emb_row = g_new (float, dec->H);
    st->team = n_threads > 1 ? canary_team_new (n_threads) : NULL;
    const gboolean always = g_strcmp0 (g_getenv ("CANARY_DECODER_TEAM_ALWAYS"), "1") == 0;
    st->team_min_weights = always ? 0 : F16_TEAM_MIN_WEIGHTS;
    st->team_min_work = always ? 0 : ATTN_TEAM_MIN_WORK;
    /* Columns past a window's frames are read by whole tiles, never used: finite from the start. */
    memset (st->mem_xt, 0, mem_xt * sizeof (float));
    st->gemm.simd = canary_simd_enabled ();
    st->gemm.team = st->gemm.simd ? st->team : NULL;
    st->gemm.f16_simd = dec->f16_simd;
    st->gemm.f16_team = st->team;
  }
  return st;
}

void
canary_decoder_state_free (canary_decoder_state *st)
{
  if (!st)
    return;
  g_free (st->arena);
  g_free (st->slot);
  g_free (st->slot_next);
  g_free (st->claimed);
  g_free (st->emb_row);
  canary_gemm_clear (&st->gemm);
  canary_team_free (st->team);
  g_free (st);
}

int
canary_decoder_state_length (const canary_decoder_state *st)
{
  return st->length;
}

int
canary_decoder_state_beams (const canary_decoder_state *st)
{
  return st->n_beams;
}

const canary_decoder *
canary_decoder_state_decoder (const canary_decoder_state *st)
{
  return st->dec;
}

int
canary_decoder_state_pad (const canary_decoder_state *st)
{
  return st->pad_id;
}

int
canary_decoder_state_max_beam (const canary_decoder_state *st)
{
  return st->max_beam;
}

/* ---------------------------------------------------------------------------------------------
 * Kernels */

/* out[r] = in[r]·Wᵀ + b for `rows` rows (nn.Linear). gemv for one row: OpenBLAS's sgemm with M = 1
 * is slower than its gemv. FP16 weights: up to F16_MAX_FUSED products of the same input (self-
 * attention's q, k, v) share one team run, their output rows one list of work items: a team run
 * ends when its slowest thread does, so each run costs an item's worth of imbalance. */
#define F16_MAX_FUSED 3
typedef struct {
  const canary_decoder_state *st;
  const dec_linear *l[F16_MAX_FUSED];
  float *out[F16_MAX_FUSED];
  int items[F16_MAX_FUSED];  /* work items up to and including product i */
  int n;
  const float *in;
  int rows;
} f16_linear_ctx;

/* Output rows per work item. 256 (512 KiB of a canary-1b row product) against 64: step FP16/FP32
 * 0.57 vs 0.59-0.63 side by side (docs/benchmarks.md); fewer items, fewer claims and item
 * starts, while the 4-64 items of a product (12 for q/k/v) still even out a thread that lost its core for a while. */
#define F16_OUT_CHUNK 256

static void
f16_linear_fn (void *ctx, int tid)
{
  const f16_linear_ctx *c = ctx;
  for (int it; (it = canary_team_next (c->st->team)) < c->items[c->n - 1];) {
    int i = 0;
    while (it >= c->items[i])
      i++;
    const dec_linear *l = c->l[i];
    const int o0 = (it - (i ? c->items[i - 1] : 0)) * F16_OUT_CHUNK;
    canary_f16_linear (c->st->dec->f16_linear, l->w16, l->b, l->out, l->in, c->in, c->rows, c->out[i],
        o0, MIN (o0 + F16_OUT_CHUNK, l->out));
  }
}

/* out[i] = in·l[i]ᵀ + b for n products of the same input (same l[i]->in). */
static void
linear_fwd_n (const canary_decoder_state *st, const dec_linear *const *l, float *const *out, int n,
    const float *in, int rows)
{
  if (l[0]->w16) {  /* FP16 weights, FP32 sums: our kernel, over the state's team */
    g_assert (n >= 1 && n <= F16_MAX_FUSED);
    f16_linear_ctx c = { .st = st, .n = n, .in = in, .rows = rows };
    gsize weights = 0;
    for (int i = 0; i < n; i++) {
      c.l[i] = l[i];
      c.out[i] = out[i];
      c.items[i] = (i ? c.items[i - 1] : 0) + (l[i]->out + F16_OUT_CHUNK - 1) / F16_OUT_CHUNK;
      weights += (gsize) l[i]->out * l[i]->in;
    }
    /* Waking the team costs more than a small product (the tiny models' layers) saves. */
    if (st->team && weights >= st->team_min_weights) {
      canary_team_run (st->team, f16_linear_fn, &c);
    } else {
      for (int i = 0; i < n; i++)
        canary_f16_linear (st->dec->f16_linear, l[i]->w16, l[i]->b, l[i]->out, l[i]->in, in, rows, out[i], 0,
            l[i]->out);
    }
    return;
  }
  for (int i = 0; i < n; i++) {
    for (int r = 0; r < rows; r++)
      memcpy (out[i] + (gsize) r * l[i]->out, l[i]->b, sizeof (float) * l[i]->out);
    if (rows == 1)
      cblas_sgemv (CblasRowMajor, CblasNoTrans, l[i]->out, l[i]->in, 1.0f, l[i]->w, l[i]->in, in, 1, 1.0f, out[i],
          1);
    else
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, rows, l[i]->out, l[i]->in, 1.0f, in, l[i]->in, l[i]->w,
          l[i]->in, 1.0f, out[i], l[i]->out);
  }
}

static void
linear_fwd (const canary_decoder_state *st, const dec_linear *l, const float *in, int rows, float *out)
{
  linear_fwd_n (st, &l, &out, 1, in, rows);
}

/* nn.LayerNorm over the last dimension (biased variance, eps 1e-5). Statistics in double so the
 * result is the correctly rounded one torch's float accumulation approximates. */
static void
layer_norm_rows (const dec_layer_norm *ln, const float *in, int rows, int H, float *out)
{
  for (int r = 0; r < rows; r++) {
    const float *x = in + (gsize) r * H;
    float *o = out + (gsize) r * H;
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < H; i++)
      sum += x[i];
    double mean = sum / H;
    for (int i = 0; i < H; i++) {
      double d = x[i] - mean;
      sq += d * d;
    }
    double rstd = 1.0 / sqrt (sq / H + CANARY_LN_EPS);
    for (int i = 0; i < H; i++)
      o[i] = (float) ((x[i] - mean) * rstd) * ln->g[i] + ln->b[i];
  }
}

static void
scale_inplace (float *p, gsize n, float div)
{
  for (gsize i = 0; i < n; i++)
    p[i] /= div;
}

/* scores[n_q, Lk] = Q·Kᵀ for one head; Q rows are ld_q apart, K rows H apart (a head is a column
 * block of the [*, H] projections, so no transposition copy is needed). */
static void
head_scores (const float *q, int ld_q, const float *k, int H, int n_q, int Lk, int d_head, float *scores)
{
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n_q, Lk, d_head, 1.0f, q, ld_q, k, H, 0.0f, scores, Lk);
}

/* ctx[n_q, d_head] (rows H apart) = P·V for one head. */
static void
head_context (const float *probs, const float *v, int ld_v, int n_q, int Lk, int d_head, float *ctx, int H)
{
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n_q, d_head, Lk, 1.0f, probs, Lk, v, ld_v, 0.0f, ctx, H);
}

/* NeMo's self-attention mask (form_attention_mask(mask_padded_tokens(input_ids), diagonal=0)) is
 * built from the tokens fed in this call only: the causal triangle plus PAD keys among the new
 * tokens. For a one-token step the [B,1,1,1] mask is broadcast over every cached key, so a PAD
 * input masks all keys (a uniform shift that only rounds the scores). Cached keys are otherwise
 * never masked (NeMo does not re-mask them). */
static gboolean
self_key_masked (const gint32 *tok, int n_tokens, int start_pos, int qi, int key, int pad_id)
{
  if (key > start_pos + qi)
    return TRUE;
  if (n_tokens == 1)
    return tok[0] == pad_id;
  return key >= start_pos && tok[key - start_pos] == pad_id;
}

static float *
cache_at (const canary_decoder_state *st, float *cache, int layer, int slot)
{
  const canary_decoder *dec = st->dec;
  return cache + (((gsize) layer * st->max_beam + slot) * dec->max_len) * dec->H;
}

/* One attention call's heads as work items: self-attention's (hypothesis, head) pairs or
 * cross-attention's heads, each independent of the others (its own columns of ctx). */
typedef struct {
  canary_decoder_state *st;
  int layer;
  const gint32 *tokens;
  int n_beams, n_tokens, start_pos, rows;
  gboolean cross;
  int n_items;
} attn_ctx;

/* Self-attention of hypothesis b, head h, over its cache (this step's keys already appended). */
static void
self_head (const attn_ctx *c, int b, int h, float *scores)
{
  canary_decoder_state *st = c->st;
  const canary_decoder *dec = st->dec;
  const int H = dec->H, dh = dec->d_head, n_tokens = c->n_tokens, Lk = c->start_pos + n_tokens;
  const float *kc = cache_at (st, st->self_k, c->layer, st->slot[b]);
  const float *vc = cache_at (st, st->self_v, c->layer, st->slot[b]);
  const gsize off = (gsize) b * n_tokens * H;
  const gint32 *tok = c->tokens + (gsize) b * n_tokens;
  head_scores (st->q + off + h * dh, H, kc + h * dh, H, n_tokens, Lk, dh, scores);
  for (int qi = 0; qi < n_tokens; qi++) {
    float *s = scores + (gsize) qi * Lk;
    for (int j = 0; j < Lk; j++)
      if (self_key_masked (tok, n_tokens, c->start_pos, qi, j, st->pad_id))
        s[j] += CANARY_MASK_VALUE;
    canary_softmax_row (s, Lk);
  }
  head_context (scores, vc + h * dh, H, n_tokens, Lk, dh, st->ctx + off + h * dh, H);
}

/* Cross-attention of every row, head h, over the window's K/V (FP16: this head's columns widened
 * into `widen` first, T × d_head each, which then stays in L1/L2 for both products). */
static void
cross_head (const attn_ctx *c, int h, float *scores, float *widen)
{
  canary_decoder_state *st = c->st;
  const canary_decoder *dec = st->dec;
  const int H = dec->H, dh = dec->d_head, T = st->T;
  const float *kc, *vc;
  int ld = H;
  if (st->cross_k16) {
    const gsize layer = (gsize) c->layer * st->max_frames * H + (gsize) h * dh;
    float *kw = widen, *vw = widen + (gsize) st->max_frames * dh;
    for (int t = 0; t < T; t++) {
      canary_f16_row_to_f32 (dec->f16_simd, st->cross_k16 + layer + (gsize) t * H, kw + (gsize) t * dh, dh);
      canary_f16_row_to_f32 (dec->f16_simd, st->cross_v16 + layer + (gsize) t * H, vw + (gsize) t * dh, dh);
    }
    kc = kw;
    vc = vw;
    ld = dh;
  } else {
    kc = st->cross_k + (gsize) c->layer * st->max_frames * H + h * dh;
    vc = st->cross_v + (gsize) c->layer * st->max_frames * H + h * dh;
  }
  head_scores (st->q + h * dh, H, kc, ld, c->rows, T, dh, scores);
  for (int r = 0; r < c->rows; r++) {
    float *s = scores + (gsize) r * T;
    for (int t = st->enc_len; t < T; t++)
      s[t] += CANARY_MASK_VALUE;
    canary_softmax_row (s, T);
  }
  head_context (scores, vc, ld, c->rows, T, dh, st->ctx + h * dh, H);
}

/* Work item `it` of an attention call: self-attention's (hypothesis, head) pair, or a head. */
static void
head_item (const attn_ctx *c, int it, int tid)
{
  canary_decoder_state *st = c->st;
  const int n_heads = st->dec->n_heads;
  float *scores = st->scores + (gsize) tid * st->scores_stride;
  if (c->cross)
    cross_head (c, it, scores, st->kv_widen ? st->kv_widen + (gsize) tid * st->kv_widen_stride : NULL);
  else
    self_head (c, it / n_heads, it % n_heads, scores);
}

static void
heads_fn (void *ctx, int tid)
{
  const attn_ctx *c = ctx;
  for (int it; (it = canary_team_next (c->st->team)) < c->n_items;)
    head_item (c, it, tid);
}

/* The heads of one attention call: on the FP16 team when there is one and the call is big enough
 * (in a canary-1b profile the attention's GEMMs were 4 % of the samples, run on one thread while
 * the other spun), else in order on the calling thread. Each head's BLAS calls are the same
 * either way. */
static void
run_heads (canary_decoder_state *st, const attn_ctx *c, gsize work)
{
  if (st->team && work >= st->team_min_work) {
    canary_team_run (st->team, heads_fn, (void *) c);
    return;
  }
  for (int it = 0; it < c->n_items; it++)
    head_item (c, it, 0);
}

/* x += SelfAttn(LN1(x)) for all hypotheses, appending this step's keys/values to the cache. */
static void
self_attention (canary_decoder_state *st, int layer, const gint32 *tokens, int n_beams, int n_tokens, int start_pos)
{
  const canary_decoder *dec = st->dec;
  const dec_block *blk = &dec->blocks[layer];
  const int H = dec->H, rows = n_beams * n_tokens, Lk = start_pos + n_tokens;

  layer_norm_rows (&blk->ln1, st->x, rows, H, st->y);
  const dec_linear *const qkv[] = { &blk->self_q, &blk->self_k, &blk->self_v };
  float *const qkv_out[] = { st->q, st->k, st->v };
  linear_fwd_n (st, qkv, qkv_out, 3, st->y, rows);
  scale_inplace (st->q, (gsize) rows * H, dec->qk_scale);
  scale_inplace (st->k, (gsize) rows * H, dec->qk_scale);

  for (int b = 0; b < n_beams; b++) {
    float *kc = cache_at (st, st->self_k, layer, st->slot[b]);
    float *vc = cache_at (st, st->self_v, layer, st->slot[b]);
    const gsize off = (gsize) b * n_tokens * H;
    memcpy (kc + (gsize) start_pos * H, st->k + off, sizeof (float) * n_tokens * H);
    memcpy (vc + (gsize) start_pos * H, st->v + off, sizeof (float) * n_tokens * H);
  }
  const attn_ctx c = { st, layer, tokens, n_beams, n_tokens, start_pos, rows, FALSE, n_beams * dec->n_heads };
  run_heads (st, &c, (gsize) rows * Lk * H);
  linear_fwd (st, &blk->self_o, st->ctx, rows, st->y);
  for (gsize i = 0; i < (gsize) rows * H; i++)
    st->x[i] += st->y[i];
}

/* x += CrossAttn(LN2(x), encoder states). All hypotheses attend to the same K/V, so each head is
 * one GEMM over every row. */
static void
cross_attention (canary_decoder_state *st, int layer, int rows)
{
  const canary_decoder *dec = st->dec;
  const dec_block *blk = &dec->blocks[layer];
  const int H = dec->H, T = st->T;

  layer_norm_rows (&blk->ln2, st->x, rows, H, st->y);
  linear_fwd (st, &blk->cross_q, st->y, rows, st->q);
  scale_inplace (st->q, (gsize) rows * H, dec->qk_scale);
  const attn_ctx c = { st, layer, NULL, 0, 0, 0, rows, TRUE, dec->n_heads };
  run_heads (st, &c, (gsize) rows * T * H);
  linear_fwd (st, &blk->cross_o, st->ctx, rows, st->y);
  for (gsize i = 0; i < (gsize) rows * H; i++)
    st->x[i] += st->y[i];
}

/* x += dense_out(ReLU(dense_in(LN3(x)))). */
static void
feed_forward (canary_decoder_state *st, int layer, int rows)
{
  const canary_decoder *dec = st->dec;
  const dec_block *blk = &dec->blocks[layer];
  const int H = dec->H;

  layer_norm_rows (&blk->ln3, st->x, rows, H, st->y);
  linear_fwd (st, &blk->ff_in, st->y, rows, st->ff);
  for (gsize i = 0; i < (gsize) rows * dec->inner; i++)
    st->ff[i] = MAX (st->ff[i], 0.0f);
  linear_fwd (st, &blk->ff_out, st->ff, rows, st->y);
  for (gsize i = 0; i < (gsize) rows * H; i++)
    st->x[i] += st->y[i];
}

/* x[r] = LayerNorm(token_emb[id] + pos_enc[pos]) — no sqrt(H) scaling (TransformerEmbedding). */
static void
embed (canary_decoder_state *st, const gint32 *tokens, int rows, int n_tokens, int start_pos)
{
  const canary_decoder *dec = st->dec;
  const int H = dec->H;
  for (int r = 0; r < rows; r++) {
    const float *te = dec->tok_emb + (gsize) tokens[r] * H;
    if (dec->tok_emb16) {
      canary_f16_row_to_f32 (dec->f16_simd, dec->tok_emb16 + (gsize) tokens[r] * H, st->emb_row, H);
      te = st->emb_row;
    }
    const float *pe = dec->pos_enc + (gsize) (start_pos + r % n_tokens) * H;
    float *x = st->y + (gsize) r * H;
    for (int i = 0; i < H; i++)
      x[i] = te[i] + pe[i];
  }
  layer_norm_rows (&dec->emb_ln, st->y, rows, H, st->x);
}

/* ---------------------------------------------------------------------------------------------
 * Public steps */

/* done: rows [n0, n1) of a cross K/V product back to the cache's [frame][H] layout. */
static void
done_to_cache (const canary_gemm *g, const canary_gemm_job *j, int n0, int n1)
{
  canary_untranspose (g->simd, j->ct, j->ldc, n0, n1, j->M, j->dst, j->ldd, 0.0f);
}

/* One layer's cross K and V (FP16 weights) from st->mem_xt: two GEMM jobs of T columns. At
 * T ~ 126 the one-row kernel would re-read each weight row for every 4 frames. */
static void
cross_kv_gemm (canary_decoder_state *st, const dec_block *blk, int T, float *kc, float *vc)
{
  const int H = st->dec->H;
  const dec_linear *lin[2] = { &blk->cross_k, &blk->cross_v };
  float *dst[2] = { kc, vc };
  canary_gemm_job jobs[2];
  for (int i = 0; i < 2; i++)
    jobs[i] = (canary_gemm_job) {
      .N = lin[i]->out, .M = T, .K = lin[i]->in, .w = lin[i]->w, .sn = (gsize) lin[i]->in, .sk = 1,
      .w16 = lin[i]->w16, .xt = st->mem_xt, .ldx = st->ld_mem,
      .ct = st->mem_ct + (gsize) i * H * st->ld_mem, .ldc = st->ld_mem, .bias = lin[i]->b,
      .act = CANARY_ACT_NONE, .done = done_to_cache, .dst = dst[i], .ldd = (gsize) H,
    };
  canary_gemm_run (&st->gemm, jobs, 2);
}

gboolean
canary_decoder_set_memory (canary_decoder_state *st, const float *enc, int T, int enc_len, GError **error)
{
  g_return_val_if_fail (st && enc, FALSE);
  const canary_decoder *dec = st->dec;
  if (T < 1 || T > st->max_frames || enc_len < 0 || enc_len > T) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "decoder memory: %d frames (%d valid) outside the state's 1..%d", T, enc_len, st->max_frames);
    return FALSE;
  }
  if (dec->f16)
    canary_transpose (st->gemm.simd, enc, dec->H, T, dec->H, st->mem_xt, st->ld_mem, (T + 15) / 16 * 16);
  for (int j = 0; j < dec->n_layers; j++) {
    const dec_block *blk = &dec->blocks[j];
    const gsize layer = (gsize) j * st->max_frames * dec->H, n = (gsize) T * dec->H;
    if (dec->f16) {
      /* One layer's FP32 products, scaled, then rounded into the FP16 cache. */
      cross_kv_gemm (st, blk, T, st->cross_k, st->cross_v);
      scale_inplace (st->cross_k, n, dec->qk_scale);
      canary_f32_to_f16_n (st->cross_k, st->cross_k16 + layer, n);
      canary_f32_to_f16_n (st->cross_v, st->cross_v16 + layer, n);
    } else {
      float *kc = st->cross_k + layer, *vc = st->cross_v + layer;
      linear_fwd (st, &blk->cross_k, enc, T, kc);
      linear_fwd (st, &blk->cross_v, enc, T, vc);
      scale_inplace (kc, n, dec->qk_scale);
    }
  }
  st->T = T;
  st->enc_len = enc_len;
  st->has_memory = TRUE;
  st->length = 0;
  st->n_beams = 0;
  return TRUE;
}

gboolean
canary_decoder_check_step (const char *who, const canary_step_limits *lim, const gint32 *tokens, int n_beams,
    int n_tokens, int start_pos, GError **error)
{
  if (!lim->has_memory) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT, "%s before the encoder output was set", who);
    return FALSE;
  }
  if (n_beams < 1 || n_beams > lim->max_beam || n_tokens < 1 || n_tokens > lim->max_tokens
      || (gint64) n_beams * n_tokens > lim->max_rows) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "%s: %d hypotheses × %d tokens exceeds the state's limits (%d hypotheses, %d tokens, %d rows)",
        who, n_beams, n_tokens, lim->max_beam, lim->max_tokens, lim->max_rows);
    return FALSE;
  }
  if (start_pos < 0 || start_pos > lim->max_len - n_tokens) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "%s: positions %d..%d exceed max_sequence_length %d", who, start_pos, start_pos + n_tokens - 1,
        lim->max_len);
    return FALSE;
  }
  if (start_pos > 0 && (start_pos > lim->cache_len || n_beams != lim->cache_beams)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "%s: start_pos %d with %d hypotheses does not continue the cache (%d positions, %d hypotheses)",
        who, start_pos, n_beams, lim->cache_len, lim->cache_beams);
    return FALSE;
  }
  for (int i = 0; i < n_beams * n_tokens; i++) {
    if (tokens[i] < 0 || tokens[i] >= lim->V) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT, "%s: token id %d outside 0..%d", who,
          tokens[i], lim->V - 1);
      return FALSE;
    }
  }
  return TRUE;
}

static gboolean
check_step (const canary_decoder_state *st, const gint32 *tokens, int n_beams, int n_tokens, int start_pos,
    GError **error)
{
  const canary_step_limits lim = {
    .max_beam = st->max_beam, .max_tokens = st->max_tokens, .max_rows = st->max_rows,
    .max_len = st->dec->max_len, .V = st->dec->V,
    .cache_len = st->length, .cache_beams = st->n_beams, .has_memory = st->has_memory,
  };
  return canary_decoder_check_step ("decoder step", &lim, tokens, n_beams, n_tokens, start_pos, error);
}

/* Everything up to the final LayerNorm: st->x holds the last block's output for every row. */
static gboolean
run_blocks (canary_decoder_state *st, const gint32 *tokens, int n_beams, int n_tokens, int start_pos, GError **error)
{
  g_return_val_if_fail (st && tokens, FALSE);
  if (!check_step (st, tokens, n_beams, n_tokens, start_pos, error))
    return FALSE;
  if (start_pos == 0) {
    /* A new sequence: hypotheses own slots 0..n_beams-1. */
    for (int b = 0; b < n_beams; b++)
      st->slot[b] = b;
    st->n_beams = n_beams;
  }
  const int rows = n_beams * n_tokens;
  embed (st, tokens, rows, n_tokens, start_pos);
  for (int j = 0; j < st->dec->n_layers; j++) {
    self_attention (st, j, tokens, n_beams, n_tokens, start_pos);
    cross_attention (st, j, rows);
    feed_forward (st, j, rows);
  }
  st->length = start_pos + n_tokens;
  return TRUE;
}

gboolean
canary_decoder_step (canary_decoder_state *st, const gint32 *tokens, int n_beams, int n_tokens, int start_pos,
    float *logits, GError **error)
{
  g_return_val_if_fail (logits, FALSE);
  if (!run_blocks (st, tokens, n_beams, n_tokens, start_pos, error))
    return FALSE;
  const canary_decoder *dec = st->dec;
  /* Only the last position of each hypothesis is scored (NeMo: decoder_mems_list[-1][:, -1:]). */
  for (int b = 0; b < n_beams; b++)
    layer_norm_rows (&dec->final_ln, st->x + ((gsize) b * n_tokens + n_tokens - 1) * dec->H, 1, dec->H,
        st->y + (gsize) b * dec->H);
  linear_fwd (st, &dec->head, st->y, n_beams, logits);
  return TRUE;
}

gboolean
canary_decoder_step_all (canary_decoder_state *st, const gint32 *tokens, int n_tokens, int start_pos,
    float *logits, GError **error)
{
  g_return_val_if_fail (logits, FALSE);
  if (!run_blocks (st, tokens, 1, n_tokens, start_pos, error))
    return FALSE;
  const canary_decoder *dec = st->dec;
  layer_norm_rows (&dec->final_ln, st->x, n_tokens, dec->H, st->y);
  linear_fwd (st, &dec->head, st->y, n_tokens, logits);
  return TRUE;
}

/* Copies positions [0, length) of every layer's K and V from slot `from` to slot `to`. */
static void
copy_slot (canary_decoder_state *st, int from, int to)
{
  const gsize n = (gsize) st->length * st->dec->H;
  for (int j = 0; j < st->dec->n_layers; j++) {
    memcpy (cache_at (st, st->self_k, j, to), cache_at (st, st->self_k, j, from), n * sizeof (float));
    memcpy (cache_at (st, st->self_v, j, to), cache_at (st, st->self_v, j, from), n * sizeof (float));
  }
}

void
canary_plan_slots (const int *slot, const int *parent, int n_beams, int max_beam, guint8 *claimed, int *slot_next)
{
  memset (claimed, 0, max_beam);
  for (int b = 0; b < n_beams; b++) {
    const int s = slot[parent[b]];
    slot_next[b] = claimed[s] ? -1 : s;
    claimed[s] = 1;
  }
  int free_slot = 0;
  for (int b = 0; b < n_beams; b++) {
    if (slot_next[b] >= 0)
      continue;
    while (claimed[free_slot])
      free_slot++;
    claimed[free_slot] = 1;
    slot_next[b] = free_slot;
  }
}

/* Hypothesis b continues old hypothesis parent[b]. The first child of a parent takes over its slot
 * (no copy); further children get a slot no new hypothesis needs and a copy of the parent's cache.
 * Such slots always exist: the number of extra children equals max_beam minus the slots in use. */
gboolean
canary_decoder_reorder (canary_decoder_state *st, const int *parent, int n_beams, GError **error)
{
  g_return_val_if_fail (st && parent, FALSE);
  if (n_beams < 1 || n_beams > st->max_beam || st->n_beams < 1) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "decoder reorder: %d hypotheses (state has %d, at most %d)", n_beams, st->n_beams, st->max_beam);
    return FALSE;
  }
  for (int b = 0; b < n_beams; b++) {
    if (parent[b] < 0 || parent[b] >= st->n_beams) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
          "decoder reorder: parent %d of hypothesis %d outside 0..%d", parent[b], b, st->n_beams - 1);
      return FALSE;
    }
  }
  canary_plan_slots (st->slot, parent, n_beams, st->max_beam, st->claimed, st->slot_next);
  for (int b = 0; b < n_beams; b++)
    if (st->slot_next[b] != st->slot[parent[b]])
      copy_slot (st, st->slot[parent[b]], st->slot_next[b]);
  memcpy (st->slot, st->slot_next, sizeof (int) * n_beams);
  st->n_beams = n_beams;
  return TRUE;
}
