/* gst-canary — tensor helpers: dtype sizes, contiguity, conversion to float32.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "formats/tensor.h"

#include <math.h>
#include <string.h>

gsize
canary_dtype_size (canary_dtype dtype)
{
  switch (dtype) {
    case CANARY_DTYPE_F64:
    case CANARY_DTYPE_I64:
      return 8;
    case CANARY_DTYPE_F32:
    case CANARY_DTYPE_I32:
      return 4;
    case CANARY_DTYPE_F16:
    case CANARY_DTYPE_BF16:
    case CANARY_DTYPE_I16:
      return 2;
    case CANARY_DTYPE_I8:
    case CANARY_DTYPE_U8:
    case CANARY_DTYPE_BOOL:
      return 1;
  }
  return 0;
}

const char *
canary_dtype_name (canary_dtype dtype)
{
  switch (dtype) {
    case CANARY_DTYPE_F32: return "float32";
    case CANARY_DTYPE_F16: return "float16";
    case CANARY_DTYPE_BF16: return "bfloat16";
    case CANARY_DTYPE_F64: return "float64";
    case CANARY_DTYPE_I64: return "int64";
    case CANARY_DTYPE_I32: return "int32";
    case CANARY_DTYPE_I16: return "int16";
    case CANARY_DTYPE_I8: return "int8";
    case CANARY_DTYPE_U8: return "uint8";
    case CANARY_DTYPE_BOOL: return "bool";
  }
  return "unknown";
}

gboolean
canary_tensor_is_contiguous (const canary_tensor *t)
{
  /* Dimensions of extent 1 may carry any stride (torch does not normalise them), and a tensor
   * with no elements is trivially contiguous. */
  if (t->numel == 0)
    return TRUE;
  int64_t expect = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] != 1 && t->stride[d] != expect)
      return FALSE;
    expect *= t->shape[d];
  }
  return TRUE;
}

/* ---- FP16 (IEEE binary16) ---- */

guint16
canary_f32_to_f16 (float x)
{
  guint32 f;
  memcpy (&f, &x, 4);
  const guint32 sign = (f >> 16) & 0x8000u;
  guint32 a = f & 0x7fffffffu;
  if (a >= 0x7f800000u)  /* inf or NaN (NaN keeps a quiet payload bit) */
    return (guint16) (sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0));
  if (a >= 0x477ff000u)  /* rounds to >= 65520: overflow to inf */
    return (guint16) (sign | 0x7c00u);
  if (a < 0x38800000u) {  /* below 2^-14: subnormal half (or zero) */
    if (a < 0x33000000u)  /* below half the smallest subnormal: ±0 */
      return (guint16) sign;
    const guint32 mant = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - (int) (a >> 23);  /* 14..24 */
    guint32 h = mant >> shift;
    const guint32 rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u)))
      h++;
    return (guint16) (sign | h);
  }
  /* Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even. */
  guint32 h = ((a >> 13) - (112u << 10));
  const guint32 rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
    h++;  /* a carry into the exponent is the correct rounding */
  return (guint16) (sign | h);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* vcvtps2ph with round-to-nearest-even gives canary_f32_to_f16's bits for every finite or
 * infinite input (overflow, subnormals and ties included); NaNs differ (it keeps payload bits),
 * so a block holding one goes through the scalar conversion. */
__attribute__ ((target ("avx,f16c"))) static void
f32_to_f16_f16c (const float *src, guint16 *dst, gsize n)
{
  gsize i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps (src + i);
    if (_mm256_movemask_ps (_mm256_cmp_ps (x, x, _CMP_UNORD_Q))) {
      for (int j = 0; j < 8; j++)
        dst[i + j] = canary_f32_to_f16 (src[i + j]);
      continue;
    }
    _mm_storeu_si128 ((__m128i *) (dst + i), _mm256_cvtps_ph (x, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; i++)
    dst[i] = canary_f32_to_f16 (src[i]);
}
#define HAVE_F16C_CONVERT 1
#endif

void
canary_f32_to_f16_n (const float *src, guint16 *dst, gsize n)
{
#ifdef HAVE_F16C_CONVERT
  /* clang's __builtin_cpu_supports has no "f16c"; every x86-64 CPU with AVX2 has F16C */
  if (__builtin_cpu_supports ("avx2")) {
    f32_to_f16_f16c (src, dst, n);
    return;
  }
#endif
  for (gsize i = 0; i < n; i++)
    dst[i] = canary_f32_to_f16 (src[i]);
}

float
canary_f16_to_f32 (guint16 h)
{
  const guint32 sign = (guint32) (h & 0x8000u) << 16;
  const guint32 e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  guint32 f;
  if (e == 0) {
    float v = ldexpf ((float) m, -24);
    return sign ? -v : v;
  }
  if (e == 31)
    f = sign | 0x7f800000u | (m << 13);
  else
    f = sign | ((e + 112u) << 23) | (m << 13);
  float out;
  memcpy (&out, &f, 4);
  return out;
}

float
canary_round_f16 (float x)
{
  return canary_f16_to_f32 (canary_f32_to_f16 (x));
}

static float
bf16_to_f32 (guint16 h)
{
  guint32 bits = (guint32) h << 16;
  float f;
  memcpy (&f, &bits, sizeof f);
  return f;
}

/* Reads element `p` of dtype as float. Unaligned-safe (memcpy); storages are little-endian and so
 * is every host this engine targets. */
static float
load_f32 (canary_dtype dtype, const guint8 *p)
{
  switch (dtype) {
    case CANARY_DTYPE_F32: { float v; memcpy (&v, p, 4); return v; }
    case CANARY_DTYPE_F16: { guint16 v; memcpy (&v, p, 2); return canary_f16_to_f32 (GUINT16_FROM_LE (v)); }
    case CANARY_DTYPE_BF16: { guint16 v; memcpy (&v, p, 2); return bf16_to_f32 (GUINT16_FROM_LE (v)); }
    case CANARY_DTYPE_F64: { double v; memcpy (&v, p, 8); return (float) v; }
    case CANARY_DTYPE_I64: { gint64 v; memcpy (&v, p, 8); return (float) v; }
    case CANARY_DTYPE_I32: { gint32 v; memcpy (&v, p, 4); return (float) v; }
    case CANARY_DTYPE_I16: { gint16 v; memcpy (&v, p, 2); return (float) v; }
    case CANARY_DTYPE_I8: return (float) (gint8) *p;
    case CANARY_DTYPE_U8: return (float) *p;
    case CANARY_DTYPE_BOOL: return *p ? 1.0f : 0.0f;
  }
  return 0.0f;
}

float *
canary_tensor_to_f32 (const canary_tensor *t)
{
  gsize n = (gsize) t->numel;
  float *out = g_new (float, n ? n : 1);
  gsize es = canary_dtype_size (t->dtype);

  if (canary_tensor_is_contiguous (t)) {
    if (t->dtype == CANARY_DTYPE_F32) {
      memcpy (out, t->data, n * 4);
    } else {
      for (gsize i = 0; i < n; i++)
        out[i] = load_f32 (t->dtype, t->data + i * es);
    }
    return out;
  }

  /* Strided view: walk the index like an odometer, keeping the element offset incrementally. */
  int64_t idx[CANARY_MAX_DIMS] = { 0 };
  int64_t off = 0;
  for (gsize i = 0; i < n; i++) {
    out[i] = load_f32 (t->dtype, t->data + (gsize) off * es);
    for (int d = t->ndim - 1; d >= 0; d--) {
      if (++idx[d] < t->shape[d]) {
        off += t->stride[d];
        break;
      }
      off -= (idx[d] - 1) * t->stride[d];
      idx[d] = 0;
    }
  }
  return out;
}

const float *
canary_tensor_f32_view (const canary_tensor *t)
{
  if (t->dtype != CANARY_DTYPE_F32 || !canary_tensor_is_contiguous (t))
    return NULL;
  if (((guintptr) t->data) % G_ALIGNOF (float) != 0)
    return NULL;
  return (const float *) t->data;
}
