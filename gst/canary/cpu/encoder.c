/* gst-canary — FastConformer encoder (NeMo ConformerEncoder, NeMo >= 2.5 behaviour), FP32 CPU.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Reference: NeMo 2.5.3 nemo/collections/asr/modules/conformer_encoder.py (forward_internal,
 * _create_masks), parts/submodules/subsampling.py (ConvSubsampling dw_striding,
 * MaskedConvSequential), conformer_modules.py (ConformerLayer, ConformerConvolution,
 * ConformerFeedForward), multi_head_attention.py (RelPositionMultiHeadAttention,
 * RelPositionalEncoding) and docs/MODEL.md §encoder. Weight binding: encoder_weights.c; the
 * GEMM, the thread team and the element-wise primitives: gemm.c, team.c, simd.c.
 *
 * Layouts: the subsampling keeps activations channel-major [C][T][F] (NeMo's NCHW without the
 * batch), so the pointwise convs are single GEMMs over all (t, f); the conformer keeps the
 * residual stream row-major [T][D] and every GEMM input and output transposed, [feature][time]
 * with rows padded to whole GEMM tiles (see cpu/gemm.h): a GEMM's output is the next one's
 * input, and the attention works on the transposed q/k/v/p directly. Only one utterance at a time:
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
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "canary.h"
#include "cpu/encoder_internal.h"
#include "cpu/gemm.h"
#include "cpu/simd.h"
#include "cpu/team.h"
#include "nemo_constants.h"
#include "util.h"

#define MAX_FRAMES (1 << 20)  /* ~2.9 hours of 10 ms frames; attention scratch grows as (frames/8)^2 */
#define TILE_M CANARY_GEMM_TILE_M
#define MAX_THREADS CANARY_TEAM_MAX_THREADS
#define ATT_QB 128            /* attention queries per work item (and the PT row stride) */

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
  canary_team *team;  /* the threads of the forward pass (work_prepare) */
  canary_team *f16_team;  /* FP16 GEMMs without the AVX-512 path: their own threads */
  int team_want;  /* the thread count asked for (the team may have fewer) */
  /* Per thread: attention scratch for one block of queries, a conv row. */
  float *thread_mem;
  int thread_n;
  gsize thread_stride, thread_bytes;
  canary_gemm gemm;   /* the path, the team and the partial sums of GEMMs split along K */
};

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
  const float scale = (float) (-(log (CANARY_POS_BASE) / D));
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

void
canary_encoder_work_free (canary_encoder_work *work)
{
  if (!work)
    return;
  canary_team_free (work->team);
  canary_team_free (work->f16_team);
  free (work->thread_mem);
  canary_gemm_clear (&work->gemm);
  free (work->arena);
  g_free (work);
}

gsize
canary_encoder_work_bytes (const canary_encoder_work *work)
{
  return work->bytes + work->thread_bytes + work->gemm.part_n * sizeof (float);
}

/* Starts the team and the per-thread scratch for this call: as many threads as OpenBLAS is told
 * to use (the engine's n_threads), one without the AVX-512 path (BLAS threads instead). */
static gboolean
work_prepare (const canary_encoder *e, canary_encoder_work *w, GError **error)
{
  const int n = e->simd ? CLAMP (openblas_get_num_threads (), 1, MAX_THREADS) : 1;
  if (!w->team || w->team_want != n) {
    canary_team_free (w->team);
    w->team = canary_team_new (n);
    w->team_want = n;
  }
  w->gemm.simd = e->simd;
  w->gemm.team = w->team;
  /* FP16 without AVX-512: the rest of the pass stays as in FP32 (one thread, BLAS threads for
   * the attention products); the FP16 GEMMs, which BLAS cannot run, get a team of their own. */
  const int n16 = e->f16 && !e->simd ? CLAMP (openblas_get_num_threads (), 1, MAX_THREADS) : 0;
  if (n16 > 1 && !w->f16_team)
    w->f16_team = canary_team_new (n16);
  w->gemm.f16_team = w->f16_team;
  w->gemm.f16_simd = e->f16_simd;
  const int nt = canary_team_size (w->team);
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
/* GEMM callbacks.                                                                           */

/* done: dst[m][n] = CT[n][m] (scale 0) or dst[m][n] += scale · CT[n][m] for m < M, and
 * dst[m][n] += scale · bias[n] for M <= m < m_tot (rows whose input was all zero). */
static void
done_to_rows (const canary_gemm *g, const canary_gemm_job *j, int n0, int n1)
{
  const float s = j->scale;
  canary_untranspose (g->simd, j->ct, j->ldc, n0, n1, j->M, j->dst, j->ldd, s);
  for (int m = MAX (j->M, 0); m < j->m_tot; m++)
    for (int n = n0; n < n1; n++)
      j->dst[(gsize) m * j->ldd + n] += j->bias[n] * s;
}

/* done for q: qvT = q + pos_bias_v (into dst), q += pos_bias_u in place. */
static void
done_q_biases (const canary_gemm *g, const canary_gemm_job *j, int n0, int n1)
{
  for (int n = n0; n < n1; n++)
    canary_add_two_biases (g->simd, j->ct + (gsize) n * j->ldc, j->dst + (gsize) n * j->ldd, j->M,
        j->aux1[n], j->aux2[n]);
}

/* A job computing y = x·Wᵀ + b for a torch Linear (w [out][in]) on transposed input xt. */
static canary_gemm_job
linear_job (const linear *l, int out, int in, const float *xt, gsize ldx, int M, float *ct,
    gsize ldc)
{
  return (canary_gemm_job) { .N = out, .M = M, .K = in, .w = l->w, .w16 = l->w16,
      .sn = (gsize) in, .sk = 1, .xt = xt, .ldx = ldx, .ct = ct, .ldc = ldc, .bias = l->b, .act = CANARY_ACT_NONE };
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
  for (int blk; (blk = canary_team_next (c->w->team)) < blocks;) {
    const int r0 = blk * 16, rows = MIN (16, c->T - r0);
    const float *src = c->x + (gsize) r0 * c->D;
    if (c->pre_g)
      for (int r = 0; r < rows; r++)
        canary_ln_row (c->e->simd, c->x + (gsize) (r0 + r) * c->D, c->D, c->pre_g, c->pre_b,
            c->x + (gsize) (r0 + r) * c->D);
    if (c->g)
      canary_ln_transpose16 (c->e->simd, src, c->D, rows, c->g, c->b, c->h + (gsize) r0 * c->D,
          c->xt + r0, c->ldx);
    else
      canary_transpose (c->e->simd, src, c->D, rows, c->D, c->xt + r0, c->ldx, 16);
  }
}

static void
ln_pack2 (const canary_encoder *e, canary_encoder_work *w, float *x, int T, const float *pre_g,
    const float *pre_b, const float *g, const float *b, float *xt)
{
  ln_pack_ctx c = { e, w, x, T, e->d, g, b, w->h, xt, w->tp, pre_g, pre_b };
  canary_team_run (w->team, ln_pack_fn, &c);
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
  for (int blk; (blk = canary_team_next (c->w->team)) < blocks;)
    for (int r = blk * 16; r < MIN (blk * 16 + 16, c->T); r++)
      canary_ln_row (c->e->simd, c->x + (gsize) r * c->D, c->D, c->g, c->b,
          c->x + (gsize) r * c->D);
}

static void
ln_inplace (const canary_encoder *e, canary_encoder_work *w, float *x, int T, const float *g,
    const float *b)
{
  ln_pack_ctx c = { e, w, x, T, e->d, g, b, NULL, NULL, 0, NULL, NULL };
  canary_team_run (w->team, ln_inplace_fn, &c);
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


/* Channel planes [n0, n1) of a conv output (ct, plane = ldc, first M valid): zero the masked
 * tail. With aux1 set (stage 1 followed by a depthwise stage), also run that depthwise conv on
 * these channels into dst (user: the sub_dims, aux1/aux2: its weights, m_tot: first channel). */
static void
done_conv_planes (const canary_gemm *g, const canary_gemm_job *j, int n0, int n1)
{
  for (int c = n0; c < n1; c++)
    memset (j->ct + (gsize) c * j->ldc + j->M, 0, (j->ldc - j->M) * sizeof (float));
  if (j->aux1) {
    const sub_dims *d = j->user;
    const int c0 = j->m_tot;
    canary_depthwise_s2 (g->simd, j->ct + (gsize) n0 * j->ldc, n1 - n0, d->t[1], d->f[1],
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
    canary_gemm_job j = { .N = nb, .M = (int) valid1, .K = SUB_K * SUB_K,
        .w = e->conv0_w + (gsize) c0 * SUB_K * SUB_K, .sn = SUB_K * SUB_K, .sk = 1,
        .xt = w->col, .ldx = plane1, .ct = w->sa, .ldc = plane1, .bias = e->conv0_b + c0,
        .act = CANARY_ACT_RELU, .chunk = 4, .done = done_conv_planes };
    if (e->n_stages > 1) {
      j.aux1 = e->dw_w[1];
      j.aux2 = e->dw_b[1];
      j.dst = w->sb;
      j.m_tot = c0;
      j.user = d;
    }
    canary_gemm_run (&w->gemm, &j, 1);
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
  for (int it; (it = canary_team_next (c->w->team)) * step < C;) {
    const int c0 = it * step, n = MIN (step, C - c0);
    canary_depthwise_s2 (c->e->simd, c->w->sa + (gsize) c0 * d->t[s - 1] * d->f[s - 1], n,
        d->t[s - 1], d->f[s - 1], c->e->dw_w[s - 1] + (gsize) c0 * SUB_K * SUB_K,
        c->e->dw_b[s - 1] + c0, c->w->sb + (gsize) c0 * d->t[s] * d->f[s], d->t[s], d->f[s],
        d->len[s]);
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
  canary_gemm_job j = { .N = C, .M = (int) valid, .K = C, .w = pw->w, .w16 = pw->w16,
      .sn = (gsize) C, .sk = 1,
      .xt = w->sb, .ldx = plane, .ct = w->sa, .ldc = plane, .bias = pw->b, .act = CANARY_ACT_RELU,
      .done = done_conv_planes };
  canary_gemm_run (&w->gemm, &j, 1);
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
  for (int it; (it = canary_team_next (c->w->team)) * step < c->e->chans;)
    for (int ch = it * step; ch < MIN (it * step + step, c->e->chans); ch++)
      canary_transpose (c->e->simd, c->w->sa + (gsize) ch * c->T * c->F, c->F, c->T, c->F,
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
      canary_team_run (w->team, depthwise_fn, &c);
    }
    subsample_pointwise (e, w, d, s);
  }
  const int T = d->t[S], F = d->f[S];
  flatten_ctx fc = { e, w, T, F };
  canary_team_run (w->team, flatten_fn, &fc);
  canary_gemm_job j = linear_job (&e->pre_out, e->d, C * F, w->hT, w->tp, T, w->ct, w->tp);
  j.done = done_to_rows;
  j.dst = w->x;
  j.ldd = e->d;
  j.scale = 0.0f;
  canary_gemm_run (&w->gemm, &j, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* Conformer layer.                                                                          */

/* The GEMM whose output goes back into the residual stream: x[m] += scale · (CT[m] + b) for
 * the M computed rows, x[m] += scale · b for rows M … T - 1. */
static void
linear_residual (const canary_encoder *e, canary_encoder_work *w, const linear *l, int in,
    const float *xt, int M, int T, float scale)
{
  canary_gemm_job j = linear_job (l, e->d, in, xt, w->tp, M, w->ct, w->tp);
  j.done = done_to_rows;
  j.dst = w->x;
  j.ldd = e->d;
  j.scale = scale;
  j.m_tot = T;
  canary_gemm_run (&w->gemm, &j, 1);
}

/* FF(LN(x)) with x += 0.5 · FF: linear1 + Swish into bigT, linear2 back into x. pre_w/pre_b:
 * the previous layer's norm_out, applied to x first (NULL: none pending). */
static void
feed_forward (const canary_encoder *e, canary_encoder_work *w, const linear *l1,
    const linear *l2, const float *pre_w, const float *pre_b, const float *ln_w,
    const float *ln_b, int T)
{
  ln_pack2 (e, w, w->x, T, pre_w, pre_b, ln_w, ln_b, w->hT);
  canary_gemm_job j = linear_job (l1, e->ff, e->d, w->hT, w->tp, T, w->bigT, w->tp);
  j.act = CANARY_ACT_SWISH;
  canary_gemm_run (&w->gemm, &j, 1);
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
  canary_gemm_job js = { .N = n, .M = L, .K = dk, .w = w->quT + c0 * ld + i0, .sn = 1, .sk = ld,
      .xt = w->kT + c0 * ld, .ldx = ld, .ct = S, .ldc = ld };
  canary_gemm_job jb = { .N = n, .M = P, .K = dk, .w = w->qvT + c0 * ld + i0, .sn = 1, .sk = ld,
      .xt = w->pT + c0 * pp, .ldx = pp, .ct = BD, .ldc = pp };
  canary_gemm_rows (&w->gemm, &js, 0, n);
  canary_gemm_rows (&w->gemm, &jb, 0, n);
  for (int i = 0; i < n; i++) {
    float *s = S + (gsize) i * ld;
    const float *bd = BD + (gsize) i * pp + (L - 1 - (i0 + i));
    canary_score_row (e->simd, s, bd, L, sqrt_dk);
  }
  canary_transpose (e->simd, S, ld, n, L, PT, ATT_QB, (int) round_up (n, 16));
  canary_gemm_job jc = { .N = dk, .M = n, .K = L, .w = w->vT + c0 * ld, .sn = ld, .sk = 1, .xt = PT,
      .ldx = ATT_QB, .ct = w->ctxT + c0 * ld + i0, .ldc = ld };
  canary_gemm_rows (&w->gemm, &jc, 0, dk);
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
  for (int it; (it = canary_team_next (c->w->team)) < c->e->heads * blocks;) {
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
    canary_gemm_job jobs[4] = {
      linear_job (&ly->q, D, D, w->hT, ld, L, w->quT, ld),
      linear_job (&ly->k, D, D, w->hT, ld, L, w->kT, ld),
      linear_job (&ly->v, D, D, w->hT, ld, L, w->vT, ld),
      /* p = linear_pos(pos_emb) for positions L-1 … -(L-1): the centre slice of the table. */
      { .N = D, .M = 2 * L - 1, .K = D, .w = ly->pos_w, .w16 = ly->pos_w16, .sn = (gsize) D,
        .sk = 1,
        .xt = w->peT + (w->max_t - L), .ldx = w->pe_w, .ct = w->pT, .ldc = w->pp },
    };
    jobs[0].done = done_q_biases;
    jobs[0].dst = w->qvT;
    jobs[0].ldd = ld;
    jobs[0].aux1 = ly->bias_u;
    jobs[0].aux2 = ly->bias_v;
    canary_gemm_run (&w->gemm, jobs, 4);
    att_ctx c = { e, w, L };
    canary_team_run (w->team, attention_fn, &c);
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
  for (int it; (it = canary_team_next (w->team)) * step < D;) {
    for (int ch = it * step; ch < MIN (it * step + step, D); ch++) {
      const float *a = w->bigT + (gsize) ch * ld, *g = w->bigT + (gsize) (D + ch) * ld;
      const float *wk = c->ly->dw_w + (gsize) ch * K;
      float *out = w->hT + (gsize) ch * ld;
      canary_glu_conv_row (e->simd, a, g, c->L, c->T, wk, K, c->ly->dw_b[ch], row, out);
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
  canary_gemm_job j = linear_job (&ly->pw1, 2 * D, D, w->hT, w->tp, L, w->bigT, w->tp);
  canary_gemm_run (&w->gemm, &j, 1);
  conv_ctx c = { e, w, ly, T, L };
  canary_team_run (w->team, conv_fn, &c);
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
    canary_gemm_job j = linear_job (&enc->proj, enc->out_dim, D, work->hT, work->tp, T, work->ct,
        work->tp);
    j.done = done_to_rows;
    j.dst = work->out;
    j.ldd = enc->out_dim;
    j.scale = 0.0f;
    canary_gemm_run (&work->gemm, &j, 1);
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

