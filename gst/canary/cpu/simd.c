/* gst-canary — the element-wise primitives (see simd.h): each scalar version, then its AVX-512
 * twin, then the entry point that picks one.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cpu/simd.h"

#include "cpu/avx512.h"
#include "nemo_constants.h"

#define SUB_K 3  /* dw_striding: 3x3 kernels, stride 2, padding 1 */

gboolean
canary_simd_enabled (void)
{
#if CANARY_HAVE_AVX512
  const char *simd = g_getenv ("CANARY_ENCODER_SIMD");
  return __builtin_cpu_supports ("avx512f") && !(simd && g_strcmp0 (simd, "0") == 0);
#else
  return FALSE;
#endif
}

/* ---- LayerNorm ---------------------------------------------------------------------------- */

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
  const float m = (float) mean, rstd = (float) (1.0 / sqrt (ss / D + (float) CANARY_LN_EPS));
  for (int c = 0; c < D; c++)
    y[c] = (x[c] - m) * rstd * g[c] + b[c];
}


#if CANARY_HAVE_AVX512
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
  *rstd_out = (float) (1.0 / sqrt (ss / D + (float) CANARY_LN_EPS));
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
#endif

void
canary_ln_row (gboolean simd, const float *x, int D, const float *g, const float *b, float *y)
{
#if CANARY_HAVE_AVX512
  if (simd) {
    ln_row_avx512 (x, D, g, b, y);
    return;
  }
#endif
  ln_row_scalar (x, D, g, b, y);
}

/* ---- Transposes --------------------------------------------------------------------------- */

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

#if CANARY_HAVE_AVX512
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
#endif

void
canary_transpose (gboolean simd, const float *src, gsize lds, int rows, int cols, float *dst,
    gsize ldd, int rows_pad)
{
#if CANARY_HAVE_AVX512
  if (simd) {
    transpose_avx512 (src, lds, rows, cols, dst, ldd, rows_pad);
    return;
  }
#endif
  transpose_scalar (src, lds, rows, cols, dst, ldd, rows_pad);
}

void
canary_ln_transpose16 (gboolean simd, const float *x, int D, int rows, const float *g,
    const float *b, float *h, float *xt, gsize ldx)
{
#if CANARY_HAVE_AVX512
  if (simd) {
    ln_transpose_avx512 (x, D, rows, g, b, xt, ldx);
    return;
  }
#endif
  for (int r = 0; r < rows; r++)
    ln_row_scalar (x + (gsize) r * D, D, g, b, h + (gsize) r * D);
  transpose_scalar (h, D, rows, D, xt, ldx, 16);
}

/* ---- Attention scores --------------------------------------------------------------------- */

/* One query row of the attention: s[j] = (s[j] + bd[j]) / sqrt_dk over the L valid keys (bd:
 * the positional scores already shifted to this query), then softmax, in place. */
void
canary_softmax_row (float *s, int n)
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

static void
score_row_scalar (float *s, const float *bd, int L, float sqrt_dk)
{
  for (int j = 0; j < L; j++)
    s[j] = (s[j] + bd[j]) / sqrt_dk;
  canary_softmax_row (s, L);
}


#if CANARY_HAVE_AVX512
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
#endif

void
canary_score_row (gboolean simd, float *s, const float *bd, int L, float sqrt_dk)
{
#if CANARY_HAVE_AVX512
  if (simd) {
    score_row_avx512 (s, bd, L, sqrt_dk);
    return;
  }
#endif
  score_row_scalar (s, bd, L, sqrt_dk);
}

/* ---- Conformer convolution ---------------------------------------------------------------- */

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
    row[half + t] = a[t] * canary_sigmoidf (g[t]);
  for (int t = half + L; t < T + K - 1; t++)
    row[t] = 0.0f;
  for (int t = 0; t < T; t++) {
    float o = bias;
    for (int k = 0; k < K; k++)
      o += w[k] * row[t + k];
    out[t] = canary_swishf (o);
  }
}

#if CANARY_HAVE_AVX512
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
#endif

void
canary_glu_conv_row (gboolean simd, const float *a, const float *g, int L, int T, const float *w,
    int K, float bias, float *row, float *out)
{
#if CANARY_HAVE_AVX512
  if (simd) {
    conv_channel_avx512 (a, g, L, T, w, K, bias, row, out);
    return;
  }
#endif
  conv_channel_scalar (a, g, L, T, w, K, bias, row, out);
}

/* ---- GEMM epilogues ----------------------------------------------------------------------- */

#if CANARY_HAVE_AVX512
AVX512 static void
untranspose_avx512 (const float *ct, gsize ldc, int n0, int n1, int M, float *dst, gsize ldd,
    float s)
{
  const __m512 sv = _mm512_set1_ps (s);
  for (int n = n0; n < n1; n += 16) {
    const int nb = MIN (16, n1 - n);
    const __mmask16 nm = tail_mask (nb);
    for (int m0 = 0; m0 < M; m0 += 16) {
      __m512 v[16];
      for (int i = 0; i < 16; i++)
        v[i] = i < nb ? _mm512_loadu_ps (ct + (gsize) (n + i) * ldc + m0) : _mm512_setzero_ps ();
      tr16 (v);
      for (int i = 0; i < 16 && m0 + i < M; i++) {
        float *d = dst + (gsize) (m0 + i) * ldd + n;
        const __m512 r = s == 0.0f ? v[i]
            : _mm512_add_ps (_mm512_maskz_loadu_ps (nm, d), _mm512_mul_ps (v[i], sv));
        _mm512_mask_storeu_ps (d, nm, r);
      }
    }
  }
}
#endif

void
canary_untranspose (gboolean simd, const float *ct, gsize ldc, int n0, int n1, int M, float *dst,
    gsize ldd, float s)
{
#if CANARY_HAVE_AVX512
  if (simd) {
    untranspose_avx512 (ct, ldc, n0, n1, M, dst, ldd, s);
    return;
  }
#endif
  for (int n = n0; n < n1; n++)
    for (int m = 0; m < M; m++) {
      float *d = dst + (gsize) m * ldd + n;
      const float v = ct[(gsize) n * ldc + m];
      *d = s == 0.0f ? v : *d + v * s;
    }
}

#if CANARY_HAVE_AVX512
AVX512 static void
add_two_biases_avx512 (float *q, float *qv, int M, float u, float v)
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

void
canary_add_two_biases (gboolean simd, float *q, float *qv, int M, float u, float v)
{
#if CANARY_HAVE_AVX512
  if (simd) {
    add_two_biases_avx512 (q, qv, M, u, v);
    return;
  }
#endif
  for (int m = 0; m < M; m++) {
    qv[m] = q[m] + v;
    q[m] = q[m] + u;
  }
}

/* ---- Subsampling depthwise conv ----------------------------------------------------------- */

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

#if CANARY_HAVE_AVX512
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

void
canary_depthwise_s2 (gboolean simd, const float *in, int chans, int t_in, int f_in,
    const float *w, const float *b, float *out, int t_out, int f_out, int len_out)
{
#if CANARY_HAVE_AVX512
  if (simd) {
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
