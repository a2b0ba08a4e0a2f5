/* gst-canary — the GEMM tiler and its AVX-512 micro-kernel (see gemm.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cpu/gemm.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/avx512.h"
#include "formats/tensor.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CANARY_HAVE_F16C 1
#include <immintrin.h>
#define F16C __attribute__ ((target ("avx2,fma,f16c")))
#else
#define CANARY_HAVE_F16C 0
#endif

#define TILE_N 6              /* micro-tile: output rows (weight rows) */
#define TILE_M CANARY_GEMM_TILE_M
#define WP_PAD 16             /* floats: one cache line */
#define KC 1024               /* k block, at most: a 6 x 1024 weight tile stays in L1 */
/* FP16 weights: k block of the widened tiles. Two of them (double buffer) at 512 are 24 KiB, half
 * a 48 KiB L1; at 1024 they filled it (canary-1b encoder FP16/FP32, alternating runs: median 1.11
 * at 1024 over 11 runs, 1.07 at 512 over 16; docs/benchmarks.md). */
#define KC_F16 512
#define CHUNK_N 48            /* rows per work item: 8 tiles, 3 blocks of 16 to transpose */
#define MAX_JOBS CANARY_GEMM_MAX_JOBS
#define XT_BLOCK_BYTES (512 * 1024)  /* XT slice one work item reads: about a quarter of the L2 */

static gsize
round_up (gsize n, gsize m)
{
  return (n + m - 1) / m * m;
}

/* ---- FP16 weights ------------------------------------------------------------------------
 * Weights are IEEE binary16 (canary_f32_to_f16, the conversion the CUDA image uses), every
 * product and sum is FP32: a weight tile is widened to FP32 once per k block (F16C's vcvtph2ps,
 * exact) into a 6 x KC buffer on the stack (24 KiB, in L1) and reused for every 16 columns of
 * XT; the portable path widens with canary_f16_to_f32 and runs the same loops in C. */

#define F16_TN 6   /* rows (weight rows) of the FP16 micro-tile */
#define F16_TM 16  /* columns: 2 AVX2 vectors */

gboolean
canary_f16_simd_enabled (void)
{
#if CANARY_HAVE_F16C
  return __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma")
      && __builtin_cpu_supports ("f16c") && g_strcmp0 (g_getenv ("CANARY_ENCODER_SIMD"), "0") != 0
      && g_strcmp0 (g_getenv ("CANARY_F16_SIMD"), "0") != 0;
#else
  return FALSE;
#endif
}

#if CANARY_HAVE_F16C
F16C static void
f16_row_avx2 (const guint16 *src, float *dst, gsize n)
{
  gsize i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps (dst + i, _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (src + i))));
  for (; i < n; i++)
    dst[i] = canary_f16_to_f32 (src[i]);
}
#endif

void
canary_f16_row_to_f32 (gboolean simd, const guint16 *src, float *dst, gsize n)
{
#if CANARY_HAVE_F16C
  if (simd) {
    f16_row_avx2 (src, dst, n);
    return;
  }
#endif
  for (gsize i = 0; i < n; i++)
    dst[i] = canary_f16_to_f32 (src[i]);
}

/* CT[j][m] (+)= Σ_k wp[j·kc + k] · XT[k][m] for j < nr, m < mv (as kernel_6x64; rows of wp past
 * nr are copies and not stored). first: store, else add; last: then the bias and act. */
static void
f16_kernel_scalar (const float *xt, gsize ldx, const float *wp, int kc, float *ct, gsize ldc,
    int nr, int mv, gboolean first, gboolean last, const float *bias, int act)
{
  float acc[F16_TN][F16_TM];
  memset (acc, 0, sizeof acc);
  for (int k = 0; k < kc; k++) {
    const float *x = xt + (gsize) k * ldx;
    for (int j = 0; j < nr; j++) {
      const float wv = wp[(gsize) j * kc + k];
      for (int v = 0; v < F16_TM; v++)
        acc[j][v] += wv * x[v];
    }
  }
  for (int j = 0; j < nr; j++) {
    float *c = ct + (gsize) j * ldc;
    for (int v = 0; v < mv; v++) {
      float r = first ? acc[j][v] : c[v] + acc[j][v];
      if (last)
        r = canary_activate (bias ? r + bias[j] : r, act);
      c[v] = r;
    }
  }
}

#if CANARY_HAVE_F16C
F16C static void
f16_kernel_avx2 (const float *xt, gsize ldx, const float *wp, int kc, float *ct, gsize ldc,
    int nr, int mv, gboolean first, gboolean last, const float *bias, int act)
{
  __m256 acc[F16_TN][2];
  _Pragma ("GCC unroll 6")
  for (int j = 0; j < F16_TN; j++)
    acc[j][0] = acc[j][1] = _mm256_setzero_ps ();
  const float *x = xt;
  for (int k = 0; k < kc; k++, x += ldx) {
    const __m256 a0 = _mm256_loadu_ps (x), a1 = _mm256_loadu_ps (x + 8);
    _Pragma ("GCC unroll 6")
    for (int j = 0; j < F16_TN; j++) {
      const __m256 b = _mm256_broadcast_ss (wp + (gsize) j * kc + k);
      acc[j][0] = _mm256_fmadd_ps (a0, b, acc[j][0]);
      acc[j][1] = _mm256_fmadd_ps (a1, b, acc[j][1]);
    }
  }
  static const gint32 lanes[16] = { -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0 };
  __m256i mask[2];
  for (int v = 0; v < 2; v++)
    mask[v] = _mm256_loadu_si256 ((const __m256i *) (lanes + 8 - CLAMP (mv - 8 * v, 0, 8)));
  for (int j = 0; j < nr; j++) {
    float *c = ct + (gsize) j * ldc;
    const __m256 bj = _mm256_set1_ps (bias && last ? bias[j] : 0.0f);
    for (int v = 0; v < 2 && 8 * v < mv; v++) {
      __m256 r = acc[j][v];
      if (!first)
        r = _mm256_add_ps (_mm256_maskload_ps (c + 8 * v, mask[v]), r);
      if (last && bias)
        r = _mm256_add_ps (r, bj);
      if (last && act == CANARY_ACT_RELU)
        r = _mm256_max_ps (r, _mm256_setzero_ps ());
      _mm256_maskstore_ps (c + 8 * v, mask[v], r);
    }
    if (last && act != CANARY_ACT_NONE && act != CANARY_ACT_RELU)
      for (int v = 0; v < mv; v++)
        c[v] = canary_activate (c[v], act);
  }
}
#endif

/* gemm_tiles for a job with FP16 weights: rows [n0, n1), columns [m0, m1), k in [k0, k1) in
 * equal blocks of at most KC, into dst; epilogue: bias and act at the end. */
static void
f16_tiles (gboolean simd, const canary_gemm_job *j, int n0, int n1, int m0, int m1, int k0,
    int k1, float *dst, gsize ldd, gboolean epilogue)
{
  g_assert (j->sk == 1);
  float wp[F16_TN * KC] __attribute__ ((aligned (32)));
  const int kblocks = (k1 - k0 + KC - 1) / KC;
  const int kcb = (int) round_up ((k1 - k0 + kblocks - 1) / kblocks, 16);
  for (int kb = k0; kb < k1; kb += kcb) {
    const int kc = MIN (kcb, k1 - kb);
    const gboolean first = kb == k0, last = kb + kc == k1 && epilogue;
    for (int n = n0; n < n1; n += F16_TN) {
      const int nr = MIN (F16_TN, n1 - n);
      for (int r = 0; r < F16_TN; r++)
        canary_f16_row_to_f32 (simd, j->w16 + (gsize) (n + MIN (r, nr - 1)) * j->sn + kb,
            wp + (gsize) r * kc, kc);
      const float *bias = j->bias ? j->bias + n : NULL;
      for (int m = m0; m < m1; m += F16_TM) {
        const float *x = j->xt + (gsize) kb * j->ldx + m;
        float *c = dst + (gsize) n * ldd + m;
        const int mv = MIN (F16_TM, m1 - m);
#if CANARY_HAVE_F16C
        if (simd)
          f16_kernel_avx2 (x, j->ldx, wp, kc, c, ldd, nr, mv, first, last, bias, j->act);
        else
#endif
          f16_kernel_scalar (x, j->ldx, wp, kc, c, ldd, nr, mv, first, last, bias, j->act);
      }
    }
  }
}

/* The one-row products of a decoder step read their weights once, from DRAM. With the hardware
 * prefetchers alone the FP16 step ran at 0.75-0.8x the FP32 one (OpenBLAS's sgemv), far from the
 * 0.5x the bytes allow; asking for the weights F16_PREFETCH halfs (16 KiB) ahead brought it to
 * 0.56-0.58x (docs/benchmarks.md: 0.5-32 KiB tried, T0 and T1 alike; 16 KiB fastest). The
 * prefetch runs on past this call's rows [o0, o1) up to the matrix's last row: the next rows are
 * another thread's work item or this thread's next, and the L3 the cores share serves either
 * (clamped to the work item, each item began with 16 KiB the prefetcher had not asked for). */
#define F16_PREFETCH 8192
/* Σ_k x_r[k] · w[k] for R rows (R is a constant at every call: the loops unroll); pf: what to
 * prefetch alongside (pf[k] for the same k). */
#if CANARY_HAVE_F16C
F16C static inline __attribute__ ((always_inline)) void
f16_dot_avx2 (const guint16 *w, const guint16 *pf, int in, const float *x, gsize ldx, int R, float *out)
{
  __m256 acc[4][2];
  _Pragma ("GCC unroll 4")
  for (int r = 0; r < R; r++)
    acc[r][0] = acc[r][1] = _mm256_setzero_ps ();
  int k = 0;
  for (; k + 16 <= in; k += 16) {
    _mm_prefetch ((const char *) (pf + k), _MM_HINT_T1);
    const __m256 w0 = _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (w + k)));
    const __m256 w1 = _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (w + k + 8)));
    /* Unrolled so that acc stays in registers (as a loop GCC kept it on the stack: a store-to-
     * load chain per FMA, the 9-token prompt at 4 steps' time). */
    _Pragma ("GCC unroll 4")
    for (int r = 0; r < R; r++) {
      acc[r][0] = _mm256_fmadd_ps (w0, _mm256_loadu_ps (x + r * ldx + k), acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps (w1, _mm256_loadu_ps (x + r * ldx + k + 8), acc[r][1]);
    }
  }
  _Pragma ("GCC unroll 4")
  for (int r = 0; r < R; r++) {
    const __m256 s = _mm256_add_ps (acc[r][0], acc[r][1]);
    __m128 h = _mm_add_ps (_mm256_castps256_ps128 (s), _mm256_extractf128_ps (s, 1));
    h = _mm_add_ps (h, _mm_movehl_ps (h, h));
    h = _mm_add_ss (h, _mm_movehdup_ps (h));
    float t = _mm_cvtss_f32 (h);
    for (int kk = k; kk < in; kk++)
      t += x[r * ldx + kk] * canary_f16_to_f32 (w[kk]);
    out[r] = t;
  }
}

F16C static void
f16_linear_avx2 (const guint16 *w, const float *b, int out, int in, const float *x, int rows,
    float *y, int o0, int o1)
{
  float d[4];
  const guint16 *last_row = w + (gsize) (out - 1) * in;
  for (int ob = o0; ob < o1; ob += 64) {  /* 64 rows of weights stay in L2 across row groups */
    const int oe = MIN (ob + 64, o1);
    for (int r0 = 0; r0 < rows; r0 += 4) {
      const int R = MIN (4, rows - r0);
      const float *xr = x + (gsize) r0 * in;
      for (int o = ob; o < oe; o++) {
        const guint16 *wo = w + (gsize) o * in;
        const guint16 *pf = MIN (wo + F16_PREFETCH, last_row);
        switch (R) {
          case 1: f16_dot_avx2 (wo, pf, in, xr, in, 1, d); break;
          case 2: f16_dot_avx2 (wo, pf, in, xr, in, 2, d); break;
          case 3: f16_dot_avx2 (wo, pf, in, xr, in, 3, d); break;
          default: f16_dot_avx2 (wo, pf, in, xr, in, 4, d); break;
        }
        for (int r = 0; r < R; r++)
          y[(gsize) (r0 + r) * out + o] = b[o] + d[r];
      }
    }
  }
}
#endif

#if CANARY_HAVE_AVX512
/* Four weight rows at a time: Σ_k x_r[k] · w_o[k] for o < O (4, or 1 for the last rows) and
 * r < R, one 16-lane accumulator each. The AVX2 kernel's single row kept 2 FMA chains per x row
 * in flight and read ~15 GB/s (docs/benchmarks.md); four rows give 4·R independent chains and
 * four streams of weights, and a zmm widens 16 weights per instruction. */
AVX512 static inline __attribute__ ((always_inline)) void
f16_dot_avx512 (const guint16 *w, const guint16 *pf, int in, const float *x, int O, int R,
    float out[4][4])
{
  __m512 acc[4][4];
  _Pragma ("GCC unroll 4")
  for (int o = 0; o < O; o++)
    _Pragma ("GCC unroll 4")
    for (int r = 0; r < R; r++)
      acc[o][r] = _mm512_setzero_ps ();
  int k = 0;
  for (; k + 16 <= in; k += 16) {
    if ((k & 31) == 0) {  /* one prefetch per 64-byte line of each row */
      _Pragma ("GCC unroll 4")
      for (int o = 0; o < O; o++)
        _mm_prefetch ((const char *) (pf + (gsize) o * in + k), _MM_HINT_T1);
    }
    __m512 wv[4];
    _Pragma ("GCC unroll 4")
    for (int o = 0; o < O; o++)
      wv[o] = _mm512_cvtph_ps (_mm256_loadu_si256 ((const __m256i *) (w + (gsize) o * in + k)));
    _Pragma ("GCC unroll 4")
    for (int r = 0; r < R; r++) {
      const __m512 xv = _mm512_loadu_ps (x + (gsize) r * in + k);
      _Pragma ("GCC unroll 4")
      for (int o = 0; o < O; o++)
        acc[o][r] = _mm512_fmadd_ps (wv[o], xv, acc[o][r]);
    }
  }
  _Pragma ("GCC unroll 4")
  for (int o = 0; o < O; o++)
    _Pragma ("GCC unroll 4")
    for (int r = 0; r < R; r++) {
      float t = _mm512_reduce_add_ps (acc[o][r]);
      for (int kk = k; kk < in; kk++)
        t += x[(gsize) r * in + kk] * canary_f16_to_f32 (w[(gsize) o * in + kk]);
      out[o][r] = t;
    }
}

/* The same blocking as f16_linear_avx2 (64 weight rows stay in L2 across groups of 4 x rows;
 * prefetch F16_PREFETCH ahead, clamped to the matrix's last row), 4 weight rows per call. */
AVX512 static void
f16_linear_avx512 (const guint16 *w, const float *b, int out, int in, const float *x, int rows,
    float *y, int o0, int o1)
{
  float d[4][4];
  const guint16 *last_row = w + (gsize) (out - 1) * in;
  for (int ob = o0; ob < o1; ob += 64) {
    const int oe = MIN (ob + 64, o1);
    for (int r0 = 0; r0 < rows; r0 += 4) {
      const int R = MIN (4, rows - r0);
      const float *xr = x + (gsize) r0 * in;
      for (int o = ob; o < oe;) {
        const int O = oe - o >= 4 ? 4 : 1;
        const guint16 *wo = w + (gsize) o * in;
        /* The last O rows prefetched start at MIN (...): never past the matrix. */
        const guint16 *pf = MIN (wo + F16_PREFETCH, last_row - (gsize) (O - 1) * in);
#define F16_DOT_CASE(OO, RR) f16_dot_avx512 (wo, pf, in, xr, OO, RR, d)
        if (O == 4) {
          switch (R) {
            case 1: F16_DOT_CASE (4, 1); break;
            case 2: F16_DOT_CASE (4, 2); break;
            case 3: F16_DOT_CASE (4, 3); break;
            default: F16_DOT_CASE (4, 4); break;
          }
        } else {
          switch (R) {
            case 1: F16_DOT_CASE (1, 1); break;
            case 2: F16_DOT_CASE (1, 2); break;
            case 3: F16_DOT_CASE (1, 3); break;
            default: F16_DOT_CASE (1, 4); break;
          }
        }
#undef F16_DOT_CASE
        for (int oo = 0; oo < O; oo++)
          for (int r = 0; r < R; r++)
            y[(gsize) (r0 + r) * out + o + oo] = b[o + oo] + d[oo][r];
        o += O;
      }
    }
  }
}
#endif

canary_f16_linear_path
canary_f16_linear_best (void)
{
  if (!canary_f16_simd_enabled ())
    return CANARY_F16_LINEAR_PORTABLE;
#if CANARY_HAVE_AVX512
  if (canary_simd_enabled () && g_strcmp0 (g_getenv ("CANARY_F16_AVX512"), "0") != 0)
    return CANARY_F16_LINEAR_AVX512;
#endif
  return CANARY_F16_LINEAR_AVX2;
}

void
canary_f16_linear (canary_f16_linear_path path, const guint16 *w, const float *b, int out,
    int in, const float *x, int rows, float *y, int o0, int o1)
{
#if CANARY_HAVE_AVX512
  /* Up to three activation rows (a greedy step, a beam with hypotheses finished): one weight row
   * at a time, one stream, reads as fast as a plain read of the same bytes, where four rows'
   * interleaved streams read 20-25 % slower; at four rows (a beam-4 step) the four-row kernel's
   * shared activation loads put it at the read's rate and the one-row kernel 35 % behind
   * (tools/canary-gemv-bench, docs/benchmarks.md). */
  if ((path == CANARY_F16_LINEAR_AVX512 && rows > 3) || path == CANARY_F16_LINEAR_AVX512_FOUR_ROWS) {
    f16_linear_avx512 (w, b, out, in, x, rows, y, o0, o1);
    return;
  }
#endif
#if CANARY_HAVE_F16C
  if (path != CANARY_F16_LINEAR_PORTABLE) {
    f16_linear_avx2 (w, b, out, in, x, rows, y, o0, o1);
    return;
  }
#endif
  float *row = g_new (float, MAX (in, 1));
  for (int o = o0; o < o1; o++) {
    canary_f16_row_to_f32 (FALSE, w + (gsize) o * in, row, in);
    for (int r = 0; r < rows; r++) {
      const float *xr = x + (gsize) r * in;
      float t = 0.0f;
      for (int k = 0; k < in; k++)
        t += xr[k] * row[k];
      y[(gsize) r * out + o] = b[o] + t;
    }
  }
  g_free (row);
}

#if CANARY_HAVE_AVX512
/* What kernel_6x64_widen widens alongside: rows (of FP16 weights, sn apart) into dst (rows ldw
 * apart), and the rows to prefetch for the tile after (pf_rows of them, 0: none). */
typedef struct {
  const guint16 *src;
  gsize sn;
  int rows;
  float *dst;
  gsize ldw;
  const guint16 *pf;
  int pf_rows;
} widen_job;

/* The GEMM micro-kernel: a TILE_N x TILE_M block of CT (rows n, columns m) over kc steps of k:
 *   CT[j][m] (+)= Σ_k W[j·sn + k·sk] · XT[k][m].
 * Weights are broadcast from where they lie (the checkpoint's [out][in] rows, or a transposed
 * activation in the attention), the 64 columns are 4 vectors of XT: no packing, no horizontal
 * sums. Rows past nr repeat row nr-1 and are not stored; columns past mv are not stored.
 * first: store (else add to CT); last: then add the bias and apply act. wj (FP16 weights
 * only, else NULL): also widen the next tile, 16 weights per row every 16 k. (For FP32 weights,
 * software prefetch of the next tile measured neutral: the hardware prefetchers follow the rows.) */
AVX512 static inline __attribute__ ((always_inline)) void
kernel_6x64_impl (const float *xt, gsize ldx, const float *w, gsize sn, gsize sk, int kc, float *ct,
    gsize ldc, int nr, int mv, gboolean first, gboolean last, const float *bias, int act,
    const widen_job *wj)
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
    if (wj && (k & 15) == 0 && k + 16 <= kc) {
      /* The next tile's 16 weights of each row, widened between this tile's FMAs: the loads
       * overlap the arithmetic instead of stalling a separate pass. */
      for (int r = 0; r < wj->rows; r++)
        _mm512_storeu_ps (wj->dst + (gsize) r * wj->ldw + k,
            _mm512_cvtph_ps (_mm256_loadu_si256 ((const __m256i *) (wj->src + (gsize) r * wj->sn + k))));
      if ((k & 31) == 0)
        for (int r = 0; r < wj->pf_rows; r++)
          _mm_prefetch ((const char *) (wj->pf + (gsize) r * wj->sn + k), _MM_HINT_T1);
    }
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
        if (act == CANARY_ACT_SWISH)
          r = swish16 (r);
        else if (act == CANARY_ACT_RELU)
          r = _mm512_max_ps (r, _mm512_setzero_ps ());
      }
      _mm512_mask_storeu_ps (c + 16 * v, mask[v], r);
    }
  }
}

AVX512 static void
kernel_6x64 (const float *xt, gsize ldx, const float *w, gsize sn, gsize sk, int kc, float *ct,
    gsize ldc, int nr, int mv, gboolean first, gboolean last, const float *bias, int act)
{
  kernel_6x64_impl (xt, ldx, w, sn, sk, kc, ct, ldc, nr, mv, first, last, bias, act, NULL);
}

/* kernel_6x64, widening the next FP16 tile (wj) as it goes; the tail of kc past the last full
 * 16 is widened after. */
AVX512 static void
kernel_6x64_widen (const float *xt, gsize ldx, const float *w, gsize sn, int kc, float *ct,
    gsize ldc, int nr, int mv, gboolean first, gboolean last, const float *bias, int act,
    const widen_job *wj)
{
  kernel_6x64_impl (xt, ldx, w, sn, 1, kc, ct, ldc, nr, mv, first, last, bias, act, wj);
  for (int r = 0; r < wj->rows; r++)
    for (int k = kc / 16 * 16; k < kc; k++)
      wj->dst[(gsize) r * wj->ldw + k] = canary_f16_to_f32 (wj->src[(gsize) r * wj->sn + k]);
}
#endif

#if CANARY_HAVE_AVX512
/* wp[r][k] = FP32 of src[r·sn + k] for r < nr, k < kc (the first tile of a k block; the kernel
 * widens the ones after it), asking for the next tile's rows (next, next_nr of them) to be brought
 * to L2 meanwhile. */
AVX512 static void
widen_tile (const guint16 *src, gsize sn, int nr, int kc, float *wp, gsize ldw, const guint16 *next,
    int next_nr)
{
  for (int r = 0; r < nr; r++) {
    const guint16 *s = src + (gsize) r * sn, *pf = next + (gsize) r * sn;
    float *d = wp + (gsize) r * ldw;
    int k = 0;
    for (; k + 32 <= kc; k += 32) {
      if (r < next_nr)
        _mm_prefetch ((const char *) (pf + k), _MM_HINT_T1);
      _mm512_storeu_ps (d + k, _mm512_cvtph_ps (_mm256_loadu_si256 ((const __m256i *) (s + k))));
      _mm512_storeu_ps (d + k + 16, _mm512_cvtph_ps (_mm256_loadu_si256 ((const __m256i *) (s + k + 16))));
    }
    if (r < next_nr && k < kc)
      _mm_prefetch ((const char *) (pf + k), _MM_HINT_T1);
    for (; k < kc; k++)
      d[k] = canary_f16_to_f32 (s[k]);
  }
}

/* Rows [n0, n1), columns [m0, m1) of a job over k in [k0, k1) (in equal blocks of at most KC),
 * into dst (row stride ldd, same row/column indexing as CT). epilogue: add the bias and apply
 * the activation at the end (else the raw sum is stored). */
static void
gemm_tiles (const canary_gemm_job *j, int n0, int n1, int m0, int m1, int k0, int k1, float *dst,
    gsize ldd, gboolean epilogue)
{
  /* FP16 weights: each 6-row tile of a k block is widened to FP32 once (F16C; an AVX-512 CPU has
   * it) into an L1 buffer, which the same 6 x 64 kernel then reads for every 64 columns. Two
   * buffers: the kernel's first call on one tile widens the next into the other, between its
   * FMAs. Rows are WP_PAD floats longer than kc: at a 4 KiB stride the kernel's six weight reads
   * of one k fall in one L1 set (measured: the kernel ran 12 % slower on wp). */
  float wp[2][TILE_N * (KC_F16 + WP_PAD)] __attribute__ ((aligned (64)));
  const int kmax = j->w16 ? KC_F16 : KC;
  const int kblocks = (k1 - k0 + kmax - 1) / kmax;
  const int kcb = (int) round_up ((k1 - k0 + kblocks - 1) / kblocks, 16);
  for (int kb = k0; kb < k1; kb += kcb) {
    const int kc = MIN (kcb, k1 - kb);
    const gboolean first = kb == k0, last = kb + kc == k1 && epilogue;
    const gsize ldw = (gsize) kc + WP_PAD;
    int cur = 0;
    if (j->w16) {
      g_assert (j->sk == 1);
      widen_tile (j->w16 + (gsize) n0 * j->sn + kb, j->sn, MIN (TILE_N, n1 - n0), kc, wp[0], ldw,
          j->w16 + (gsize) (n0 + TILE_N) * j->sn + kb, CLAMP (n1 - n0 - TILE_N, 0, TILE_N));
    }
    for (int n = n0; n < n1; n += TILE_N) {
      const int nr = MIN (TILE_N, n1 - n);
      /* FP16: the tile is in wp[cur]; the first 64 columns also widen the next tile. */
      const float *wt = j->w16 ? wp[cur] : j->w + (gsize) n * j->sn + (gsize) kb * j->sk;
      const gsize sn = j->w16 ? ldw : j->sn, sk = j->w16 ? 1 : j->sk;
      const widen_job wj = j->w16 ? (widen_job) {
        j->w16 + (gsize) (n + TILE_N) * j->sn + kb, j->sn, CLAMP (n1 - n - TILE_N, 0, TILE_N),
        wp[1 - cur], ldw,
        j->w16 + (gsize) (n + 2 * TILE_N) * j->sn + kb, CLAMP (n1 - n - 2 * TILE_N, 0, TILE_N),
      } : (widen_job) { 0 };
      const float *bias = j->bias ? j->bias + n : NULL;
      for (int m = m0; m < m1; m += TILE_M) {
        float *c = dst + (gsize) n * ldd + m;
        const float *x = j->xt + (gsize) kb * j->ldx + m;
        if (m == m0 && wj.rows > 0)
          kernel_6x64_widen (x, j->ldx, wt, sn, kc, c, ldd, nr, MIN (TILE_M, m1 - m), first, last,
              bias, j->act, &wj);
        else
          kernel_6x64 (x, j->ldx, wt, sn, sk, kc, c, ldd, nr, MIN (TILE_M, m1 - m), first, last,
              bias, j->act);
      }
      cur = 1 - cur;
    }
  }
}
#endif

void
canary_gemm_rows (const canary_gemm *g, const canary_gemm_job *j, int n0, int n1)
{
  if (n1 <= n0)
    return;
  if (j->M > 0 && j->K > 0 && j->w16) {
    f16_tiles (g->f16_simd, j, n0, n1, 0, j->M, 0, j->K, j->ct, j->ldc, TRUE);
  } else if (j->M > 0 && j->K > 0) {
#if CANARY_HAVE_AVX512
    if (g->simd)
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
      if (j->bias || j->act != CANARY_ACT_NONE) {
        for (int n = n0; n < n1; n++) {
          float *c = j->ct + (gsize) n * j->ldc;
          const float b = j->bias ? j->bias[n] : 0.0f;
          for (int m = 0; m < j->M; m++)
            c[m] = canary_activate (j->bias ? c[m] + b : c[m], j->act);
        }
      }
    }
  }
  if (j->done)
    j->done (g, j, n0, n1);
}


#if CANARY_HAVE_AVX512

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
  const canary_gemm *g;
  canary_team *t;
  const canary_gemm_job *jobs;
  int n_jobs, n_items;
  job_plan plan[MAX_JOBS];
} gemm_batch;

static void
plan_job (const canary_gemm_job *j, gboolean split_k, job_plan *p)
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
part_floats (const job_plan *p, const canary_gemm_job *j)
{
  return p->parts > 1 ? (gsize) (p->parts - 1) * j->N * p->ldp : 0;
}

/* Rows [n0, n1) once every part is in: CT += parts 1…, then bias and activation. */
AVX512 static void
combine_parts (const canary_gemm_job *j, const job_plan *p, int n0, int n1)
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
      if (j->act == CANARY_ACT_SWISH)
        v = swish16 (v);
      else if (j->act == CANARY_ACT_RELU)
        v = _mm512_max_ps (v, _mm512_setzero_ps ());
      _mm512_mask_storeu_ps (c + m, mm, v);
    }
  }
}

static void
gemm_batch_fn (void *ctx, int tid)
{
  const gemm_batch *b = ctx;
  for (int it; (it = canary_team_next (b->t)) < b->n_items;) {
    int jx = 0;
    while (jx + 1 < b->n_jobs && it >= b->plan[jx + 1].first_item)
      jx++;
    const canary_gemm_job *j = &b->jobs[jx];
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
      j->done (b->g, j, n0, n1);
  }
}
#endif

/* Without the AVX-512 path: FP16 jobs' rows in chunks over the FP16 team (each chunk's done
 * callback on the thread that computed it, as on the AVX-512 path). */
#define F16_CHUNK 48
typedef struct {
  const canary_gemm *g;
  const canary_gemm_job *jobs;
  int n_jobs;
  int first[MAX_JOBS];
  int n_items;
} f16_batch;

static void
f16_batch_fn (void *ctx, int tid)
{
  const f16_batch *b = ctx;
  for (int it; (it = canary_team_next (b->g->f16_team)) < b->n_items;) {
    int jx = 0;
    while (jx + 1 < b->n_jobs && it >= b->first[jx + 1])
      jx++;
    const int n0 = (it - b->first[jx]) * F16_CHUNK;
    canary_gemm_rows (b->g, &b->jobs[jx], n0, MIN (n0 + F16_CHUNK, b->jobs[jx].N));
  }
}

void
canary_gemm_run (canary_gemm *g, const canary_gemm_job *jobs, int n_jobs)
{
  g_assert (n_jobs <= MAX_JOBS);
#if CANARY_HAVE_AVX512
  if (g->simd && g->team) {
    gemm_batch b = { g, g->team, jobs, n_jobs, 0, { { 0 } } };
    gsize need = 0, counters = 0;
    for (int i = 0; i < n_jobs; i++) {
      plan_job (&jobs[i], TRUE, &b.plan[i]);
      need += part_floats (&b.plan[i], &jobs[i]);
    }
    if (need > g->part_n) {
      /* Grown once; without it, parts are summed in place (k blocks inside one item). */
      void *mem = NULL;
      if (posix_memalign (&mem, 64, need * sizeof (float)) == 0) {
        free (g->part);
        g->part = mem;
        g->part_n = need;
      }
    }
    gsize part_off = 0;  /* each job its own slice of the part buffer */
    for (int i = 0; i < n_jobs; i++) {
      job_plan *p = &b.plan[i];
      if (p->parts > 1 && part_off + part_floats (p, &jobs[i]) > g->part_n)
        plan_job (&jobs[i], FALSE, p);
      p->part = g->part + part_off;
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
    canary_team_run (g->team, gemm_batch_fn, &b);
    g_free (count);
    return;
  }
#endif
  if (g->f16_team && canary_team_size (g->f16_team) > 1) {
    gboolean any = FALSE;
    double work = 0;  /* multiply-adds: waking the team only pays for large products */
    for (int i = 0; i < n_jobs; i++) {
      any |= jobs[i].w16 != NULL;
      work += (double) jobs[i].N * jobs[i].K * jobs[i].M;
    }
    if (any && work >= (double) (1 << 24)) {
      f16_batch b = { g, jobs, n_jobs, { 0 }, 0 };
      for (int i = 0; i < n_jobs; i++) {
        b.first[i] = b.n_items;
        b.n_items += (jobs[i].N + F16_CHUNK - 1) / F16_CHUNK;
      }
      canary_team_run (g->f16_team, f16_batch_fn, &b);
      return;
    }
  }
  for (int i = 0; i < n_jobs; i++)
    canary_gemm_rows (g, &jobs[i], 0, jobs[i].N);
}

void
canary_gemm_clear (canary_gemm *g)
{
  free (g->part);
  g->part = NULL;
  g->part_n = 0;
}
