/* gst-canary — the CPU model's element-wise primitives, each in a portable and an AVX-512 form.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every primitive takes `simd` first: TRUE runs the AVX-512 twin, FALSE the scalar one. Pass
 * TRUE only where canary_simd_enabled () said so (the vector code is built for every x86-64
 * target but only runs on CPUs with AVX-512F); elsewhere `simd` is ignored. Both twins give the
 * same values within FP32 rounding: the vector ones keep the scalar operation order where it
 * matters (LayerNorm statistics in double, two passes) and differ only in summation order and in
 * exp (Cephes' scheme, within 1 ulp of libm's expf).
 */
#pragma once

#include <math.h>
#include <string.h>

#include <glib.h>

G_BEGIN_DECLS

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CANARY_HAVE_AVX512 1
#else
#define CANARY_HAVE_AVX512 0
#endif

/* The activation fused into a GEMM's epilogue (gemm.h) or applied by a primitive. */
enum { CANARY_ACT_NONE, CANARY_ACT_SWISH, CANARY_ACT_RELU };

/* TRUE when the CPU has AVX-512F and CANARY_ENCODER_SIMD=0 is not set in the environment (that
 * forces the portable path: scalar primitives, one cblas_sgemm per GEMM, no thread team). */
gboolean canary_simd_enabled (void);

static inline float
canary_sigmoidf (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

/* Swish / SiLU: x · sigmoid(x). */
static inline float
canary_swishf (float x)
{
  return x / (1.0f + expf (-x));
}

/* ReLU without a data-dependent branch (which mispredicts on about half of the inputs): clear
 * the value when its sign bit is set. */
static inline float
canary_relu (float v)
{
  guint32 u;
  memcpy (&u, &v, sizeof u);
  u &= ~(guint32) ((gint32) u >> 31);
  memcpy (&v, &u, sizeof v);
  return v;
}

static inline float
canary_activate (float v, int act)
{
  return act == CANARY_ACT_SWISH ? canary_swishf (v) : act == CANARY_ACT_RELU ? canary_relu (v)
      : v;
}

/* LayerNorm of one row of D (y may be x), eps CANARY_LN_EPS: mean and variance in double. */
void canary_ln_row (gboolean simd, const float *x, int D, const float *g, const float *b, float *y);

/* LayerNorm of rows [0, rows) (rows <= 16, row stride D) of x into xt[c][r] (row stride ldx),
 * columns rows … 15 zero. h: scratch of rows · D floats (used by the scalar twin). */
void canary_ln_transpose16 (gboolean simd, const float *x, int D, int rows, const float *g,
    const float *b, float *h, float *xt, gsize ldx);

/* dst[c][r] = src[r][c] for r < rows, c < cols; dst[c][r] = 0 for rows <= r < rows_pad. */
void canary_transpose (gboolean simd, const float *src, gsize lds, int rows, int cols,
    float *dst, gsize ldd, int rows_pad);

/* Softmax of s[0 … n) in place (n >= 1): max-shifted expf, the sum in double. Scalar only (the
 * vector attention row fuses it, see canary_score_row); the decoder's attention uses it too. */
void canary_softmax_row (float *s, int n);

/* One query row of relative-position attention: s[j] = (s[j] + bd[j]) / sqrt_dk over the L
 * valid keys (bd: the positional scores already shifted to this query), then softmax, in place. */
void canary_score_row (gboolean simd, float *s, const float *bd, int L, float sqrt_dk);

/* One channel of the conformer convolution after pw1: GLU of rows a and g over the L valid steps
 * (zero past them, as NeMo masks the padding), the depthwise conv along time (taps w[K], zero
 * padding), + bias, Swish, into out[0 … T). `row`: scratch of T + K + 15 floats. */
void canary_glu_conv_row (gboolean simd, const float *a, const float *g, int L, int T,
    const float *w, int K, float bias, float *row, float *out);

/* Rows [n0, n1) of a transposed block back into rows: dst[m][n] = ct[n][m] (scale 0) or
 * dst[m][n] += scale · ct[n][m], for m < M. */
void canary_untranspose (gboolean simd, const float *ct, gsize ldc, int n0, int n1, int M,
    float *dst, gsize ldd, float scale);

/* qv[m] = q[m] + v, then q[m] += u, for m < M. */
void canary_add_two_biases (gboolean simd, float *q, float *qv, int M, float u, float v);

/* Depthwise 3x3 conv, stride 2, padding 1, per channel of in[chans][t_in][f_in]:
 * out[c][t][f] for t < len_out, zero for len_out <= t < t_out. Input rows past the valid length
 * must already be zero. */
void canary_depthwise_s2 (gboolean simd, const float *in, int chans, int t_in, int f_in,
    const float *w, const float *b, float *out, int t_out, int f_out, int len_out);

G_END_DECLS
