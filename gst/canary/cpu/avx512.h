/* gst-canary — AVX-512 building blocks shared by the CPU model's vector code (simd.c, gemm.c).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Only for x86-64 builds with GCC or Clang (CANARY_HAVE_AVX512); every function carries the
 * avx512f target attribute, so the including file builds for the baseline ISA and calls these
 * only after canary_simd_enabled () said the CPU has AVX-512F. */
#pragma once

#include "cpu/simd.h"

#if CANARY_HAVE_AVX512
#include <immintrin.h>

#define AVX512 __attribute__ ((target ("avx512f")))

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

#endif /* CANARY_HAVE_AVX512 */
