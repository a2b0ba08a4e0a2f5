/* gst-canary tests — tensor.c: dtype table, contiguity, conversion to float32, zero-copy view.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "formats/tensor.h"
#include "npy.h"

#include <math.h>
#include <string.h>

/* Builds a tensor over `data` with the given shape and strides (NULL strides → row-major). */
static canary_tensor
make_tensor (canary_dtype dt, const void *data, int ndim, const int64_t *shape, const int64_t *stride)
{
  canary_tensor t = { .name = "t", .dtype = dt, .ndim = ndim, .numel = 1, .data = data, .storage_key = "0" };
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    t.shape[d] = shape[d];
    t.stride[d] = stride ? stride[d] : s;
    s *= shape[d];
  }
  for (int d = 0; d < ndim; d++)
    t.numel *= shape[d];
  return t;
}

static void
test_dtype_table (void)
{
  g_assert_cmpuint (canary_dtype_size (CANARY_DTYPE_F32), ==, 4);
  g_assert_cmpuint (canary_dtype_size (CANARY_DTYPE_F16), ==, 2);
  g_assert_cmpuint (canary_dtype_size (CANARY_DTYPE_BF16), ==, 2);
  g_assert_cmpuint (canary_dtype_size (CANARY_DTYPE_F64), ==, 8);
  g_assert_cmpuint (canary_dtype_size (CANARY_DTYPE_I64), ==, 8);
  g_assert_cmpuint (canary_dtype_size (CANARY_DTYPE_I32), ==, 4);
  g_assert_cmpuint (canary_dtype_size (CANARY_DTYPE_I16), ==, 2);
  g_assert_cmpuint (canary_dtype_size (CANARY_DTYPE_I8), ==, 1);
  g_assert_cmpuint (canary_dtype_size (CANARY_DTYPE_U8), ==, 1);
  g_assert_cmpuint (canary_dtype_size (CANARY_DTYPE_BOOL), ==, 1);
  g_assert_cmpstr (canary_dtype_name (CANARY_DTYPE_F32), ==, "float32");
  g_assert_cmpstr (canary_dtype_name (CANARY_DTYPE_BF16), ==, "bfloat16");
  g_assert_cmpstr (canary_dtype_name (CANARY_DTYPE_I64), ==, "int64");
  g_assert_cmpstr (canary_dtype_name ((canary_dtype) 99), ==, "unknown");
  g_assert_cmpuint (canary_dtype_size ((canary_dtype) 99), ==, 0);
}

static void
test_contiguity (void)
{
  float buf[24] = { 0 };
  canary_tensor t = make_tensor (CANARY_DTYPE_F32, buf, 3, (int64_t[]) { 2, 3, 4 }, NULL);
  g_assert_true (canary_tensor_is_contiguous (&t));
  g_assert_cmpint (t.numel, ==, 24);

  /* transposed last two dims */
  t = make_tensor (CANARY_DTYPE_F32, buf, 3, (int64_t[]) { 2, 4, 3 }, (int64_t[]) { 12, 1, 4 });
  g_assert_false (canary_tensor_is_contiguous (&t));

  /* size-1 dims may have any stride (torch keeps odd strides there, e.g. [1,128,257] fb buffers) */
  t = make_tensor (CANARY_DTYPE_F32, buf, 3, (int64_t[]) { 1, 4, 6 }, (int64_t[]) { 999, 6, 1 });
  g_assert_true (canary_tensor_is_contiguous (&t));
  t = make_tensor (CANARY_DTYPE_F32, buf, 2, (int64_t[]) { 4, 1 }, (int64_t[]) { 1, 7 });
  g_assert_true (canary_tensor_is_contiguous (&t));

  /* 0-d and empty tensors */
  t = make_tensor (CANARY_DTYPE_I64, buf, 0, NULL, NULL);
  g_assert_cmpint (t.numel, ==, 1);
  g_assert_true (canary_tensor_is_contiguous (&t));
  t = make_tensor (CANARY_DTYPE_F32, buf, 2, (int64_t[]) { 0, 5 }, (int64_t[]) { 3, 9 });
  g_assert_true (canary_tensor_is_contiguous (&t));

  /* a row slice with a gap between rows */
  t = make_tensor (CANARY_DTYPE_F32, buf, 2, (int64_t[]) { 3, 3 }, (int64_t[]) { 5, 1 });
  g_assert_false (canary_tensor_is_contiguous (&t));
}

/* torch.arange(20).reshape(4,5)[1:, 2:] → [[7,8,9],[12,13,14],[17,18,19]] */
static void
test_strided_to_f32 (void)
{
  float buf[20];
  for (int i = 0; i < 20; i++)
    buf[i] = (float) i;
  canary_tensor t = make_tensor (CANARY_DTYPE_F32, buf + 7, 2, (int64_t[]) { 3, 3 }, (int64_t[]) { 5, 1 });
  float *f = canary_tensor_to_f32 (&t);
  const float want[] = { 7, 8, 9, 12, 13, 14, 17, 18, 19 };
  for (int i = 0; i < 9; i++)
    g_assert_cmpfloat (f[i], ==, want[i]);
  g_free (f);

  /* transpose of a 3x4 → 4x3 */
  t = make_tensor (CANARY_DTYPE_F32, buf, 2, (int64_t[]) { 4, 3 }, (int64_t[]) { 1, 4 });
  f = canary_tensor_to_f32 (&t);
  for (int r = 0; r < 4; r++)
    for (int c = 0; c < 3; c++)
      g_assert_cmpfloat (f[r * 3 + c], ==, buf[c * 4 + r]);
  g_free (f);

  /* 3-d with a broadcast (stride 0) dim and a size-1 dim */
  t = make_tensor (CANARY_DTYPE_F32, buf, 3, (int64_t[]) { 2, 1, 3 }, (int64_t[]) { 0, 50, 2 });
  f = canary_tensor_to_f32 (&t);
  const float want3[] = { 0, 2, 4, 0, 2, 4 };
  for (int i = 0; i < 6; i++)
    g_assert_cmpfloat (f[i], ==, want3[i]);
  g_free (f);

  /* empty tensor: valid (non-NULL) pointer, nothing read */
  t = make_tensor (CANARY_DTYPE_F32, buf, 2, (int64_t[]) { 0, 3 }, NULL);
  f = canary_tensor_to_f32 (&t);
  g_assert_nonnull (f);
  g_free (f);
}

/* Every half-precision bit pattern against the compiler's own _Float16 conversion. */
static void
test_f16_exhaustive (void)
{
#ifdef __FLT16_MAX__
  static guint16 all[65536];
  for (guint i = 0; i < 65536; i++)
    all[i] = GUINT16_TO_LE ((guint16) i);
  canary_tensor t = make_tensor (CANARY_DTYPE_F16, all, 1, (int64_t[]) { 65536 }, NULL);
  float *f = canary_tensor_to_f32 (&t);
  for (guint i = 0; i < 65536; i++) {
    _Float16 h;
    guint16 bits = (guint16) i;
    memcpy (&h, &bits, 2);
    float want = (float) h;
    if (isnan (want))
      g_assert_true (isnan (f[i]));
    else
      g_assert_true (memcmp (&want, &f[i], 4) == 0);  /* bit-exact, signed zeros included */
  }
  g_free (f);
#else
  g_test_skip ("compiler has no _Float16 to compare against");
#endif
}

/* The bulk FP32 → FP16 conversion (vectorised where the CPU has F16C) gives exactly the scalar
 * conversion's bits: every exponent with random mantissas (NaNs, infinities, subnormals, the
 * overflow and underflow edges, ties), at every alignment and tail length. */
static void
test_f16_bulk_matches_scalar (void)
{
  const gsize n = 1 << 20;
  guint32 *bits = g_new (guint32, n + 7);
  GRand *rng = g_rand_new_with_seed (20261202);
  for (gsize i = 0; i < n + 7; i++) {
    guint32 exp = (guint32) (i % 256), mant = g_rand_int (rng) & 0x7fffffu;
    if (i % 7 == 0)
      mant &= 0x7fe000u | 0x1000u;   /* exact ties between two halves */
    bits[i] = ((guint32) (i & 256) << 23) | (exp << 23) | mant;
  }
  static const guint32 edges[] = {
    0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffffffffu,
    0x477fefffu, 0x477ff000u, 0x477fffffu, 0x38800000u, 0x387fffffu, 0x33000000u, 0x33000001u,
    0x32ffffffu, 0x00000001u, 0x3f800000u, 0x3f801000u, 0x3f803000u,
  };
  memcpy (bits, edges, sizeof edges);
  g_rand_free (rng);
  const float *src = (const float *) bits;
  guint16 *got = g_new (guint16, n + 7);
  for (gsize off = 0; off < 8; off++) {
    const gsize len = n - off * 3;
    canary_f32_to_f16_n (src + off, got, len);
    for (gsize i = 0; i < len; i++) {
      const guint16 want = canary_f32_to_f16 (src[off + i]);
      if (got[i] != want)
        g_error ("0x%08x: bulk 0x%04x, scalar 0x%04x", bits[off + i], got[i], want);
    }
  }
  g_free (got);
  g_free (bits);
}

static void
test_other_dtypes (void)
{
  /* bf16: the top half of a float32 */
  float src[4] = { 1.5f, -2.25f, 3.0e38f, 1.0e-30f };
  guint16 bf[4];
  for (int i = 0; i < 4; i++) {
    guint32 b;
    memcpy (&b, &src[i], 4);
    bf[i] = GUINT16_TO_LE ((guint16) (b >> 16));
  }
  canary_tensor t = make_tensor (CANARY_DTYPE_BF16, bf, 1, (int64_t[]) { 4 }, NULL);
  float *f = canary_tensor_to_f32 (&t);
  g_assert_cmpfloat (f[0], ==, 1.5f);
  g_assert_cmpfloat (f[1], ==, -2.25f);
  g_assert_cmpfloat_with_epsilon (f[2], 3.0e38f, 3.0e36f);
  g_assert_cmpfloat_with_epsilon (f[3], 1.0e-30f, 1.0e-32f);
  g_free (f);

  double d64[3] = { 0.1, -1e300, 2.5 };
  t = make_tensor (CANARY_DTYPE_F64, d64, 1, (int64_t[]) { 3 }, NULL);
  f = canary_tensor_to_f32 (&t);
  g_assert_cmpfloat (f[0], ==, 0.1f);
  g_assert_true (isinf (f[1]) && f[1] < 0);
  g_assert_cmpfloat (f[2], ==, 2.5f);
  g_free (f);

  gint64 i64[2] = { -7, G_GINT64_CONSTANT (1) << 40 };
  t = make_tensor (CANARY_DTYPE_I64, i64, 1, (int64_t[]) { 2 }, NULL);
  f = canary_tensor_to_f32 (&t);
  g_assert_cmpfloat (f[0], ==, -7.0f);
  g_assert_cmpfloat (f[1], ==, 1099511627776.0f);
  g_free (f);

  gint32 i32[2] = { -5, 123456 };
  gint16 i16[2] = { -300, 300 };
  gint8 i8[2] = { -128, 127 };
  guint8 u8[2] = { 0, 255 }, b8[2] = { 0, 3 };
  struct { canary_dtype dt; const void *p; float a, b; } cases[] = {
    { CANARY_DTYPE_I32, i32, -5, 123456 }, { CANARY_DTYPE_I16, i16, -300, 300 },
    { CANARY_DTYPE_I8, i8, -128, 127 }, { CANARY_DTYPE_U8, u8, 0, 255 }, { CANARY_DTYPE_BOOL, b8, 0, 1 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    t = make_tensor (cases[i].dt, cases[i].p, 1, (int64_t[]) { 2 }, NULL);
    f = canary_tensor_to_f32 (&t);
    g_assert_cmpfloat (f[0], ==, cases[i].a);
    g_assert_cmpfloat (f[1], ==, cases[i].b);
    g_free (f);
  }
}

static void
test_unaligned_and_view (void)
{
  /* Storage pointers need not be aligned: conversion must still work (memcpy loads). */
  guint8 raw[4 * 8 + 1];
  float vals[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
  memcpy (raw + 1, vals, sizeof vals);
  canary_tensor t = make_tensor (CANARY_DTYPE_F32, raw + 1, 2, (int64_t[]) { 2, 4 }, NULL);
  g_assert_null (canary_tensor_f32_view (&t));  /* misaligned: no zero-copy pointer */
  float *f = canary_tensor_to_f32 (&t);
  g_assert_cmpmem (f, 32, vals, 32);
  g_free (f);
  t = make_tensor (CANARY_DTYPE_F32, raw + 1, 2, (int64_t[]) { 4, 2 }, (int64_t[]) { 1, 4 });
  f = canary_tensor_to_f32 (&t);
  g_assert_cmpfloat (f[1], ==, 5.0f);
  g_free (f);

  /* aligned contiguous f32 → the same pointer back */
  t = make_tensor (CANARY_DTYPE_F32, vals, 1, (int64_t[]) { 8 }, NULL);
  g_assert_true (canary_tensor_f32_view (&t) == vals);
  /* non-contiguous or other dtype → NULL */
  t = make_tensor (CANARY_DTYPE_F32, vals, 2, (int64_t[]) { 2, 2 }, (int64_t[]) { 1, 2 });
  g_assert_null (canary_tensor_f32_view (&t));
  t = make_tensor (CANARY_DTYPE_F16, vals, 1, (int64_t[]) { 8 }, NULL);
  g_assert_null (canary_tensor_f32_view (&t));
}

/* --- tests/npy.c, the fixture reader other suites rely on ------------------------------------ */

/* Builds a .npy file image: magic, version, padded header, data. */
static GByteArray *
npy_image (int major, const char *dict, const void *data, gsize len)
{
  GByteArray *b = g_byte_array_new ();
  gsize pre = major == 1 ? 10 : 12;
  GString *h = g_string_new (dict);
  while ((pre + h->len + 1) % 64)
    g_string_append_c (h, ' ');
  g_string_append_c (h, '\n');
  g_byte_array_append (b, (const guint8 *) "\x93NUMPY", 6);
  guint8 ver[2] = { (guint8) major, 0 };
  g_byte_array_append (b, ver, 2);
  guint8 hl[4] = { h->len & 0xff, (h->len >> 8) & 0xff, 0, 0 };
  g_byte_array_append (b, hl, major == 1 ? 2 : 4);
  g_byte_array_append (b, (const guint8 *) h->str, (guint) h->len);
  g_byte_array_append (b, data, (guint) len);
  g_string_free (h, TRUE);
  return b;
}

static void
test_npy (void)
{
  GError *err = NULL;
  npy_array a;
  float f[6] = { 1, 2, 3, 4, 5, 6 };
  GByteArray *b = npy_image (1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f, sizeof f);
  g_assert_true (npy_load_bytes (b->data, b->len, &a, &err));
  g_assert_no_error (err);
  g_assert_cmpint (a.dtype, ==, NPY_DTYPE_F32);
  g_assert_cmpint (a.ndim, ==, 2);
  g_assert_cmpint (a.shape[0], ==, 2);
  g_assert_cmpint (a.shape[1], ==, 3);
  g_assert_cmpuint (a.numel, ==, 6);
  g_assert_cmpmem (a.data, 24, f, 24);
  g_assert_cmpfloat (npy_get_f64 (&a, 5), ==, 6.0);
  npy_array_clear (&a);
  npy_array_clear (&a);  /* twice is harmless */
  g_byte_array_unref (b);

  gint64 i8[1] = { -42 };
  b = npy_image (2, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }", i8, 8);
  g_assert_true (npy_load_bytes (b->data, b->len, &a, &err));
  g_assert_cmpint (a.ndim, ==, 0);
  g_assert_cmpuint (a.numel, ==, 1);
  g_assert_cmpint (npy_get_i64 (&a, 0), ==, -42);
  npy_array_clear (&a);
  g_byte_array_unref (b);

  guint16 h[3] = { 0x3c00, 0xc000, 0x7bff };  /* 1, -2, 65504 */
  b = npy_image (3, "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }", h, 6);
  g_assert_true (npy_load_bytes (b->data, b->len, &a, &err));
  float *conv = npy_to_f32 (&a);
  g_assert_cmpfloat (conv[0], ==, 1.0f);
  g_assert_cmpfloat (conv[1], ==, -2.0f);
  g_assert_cmpfloat (conv[2], ==, 65504.0f);
  g_free (conv);
  npy_array_clear (&a);
  g_byte_array_unref (b);

  gint32 i4[2] = { 7, -7 };
  b = npy_image (1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", i4, 8);
  g_assert_true (npy_load_bytes (b->data, b->len, &a, &err));
  g_assert_cmpint (npy_get_i64 (&a, 1), ==, -7);
  npy_array_clear (&a);
  g_byte_array_unref (b);

  /* refused: Fortran order, big-endian, unknown dtype, short data, bad magic, truncated header */
  const char *bad[] = {
    "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
    "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }",
    "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }",
    "{'fortran_order': False, 'shape': (2, 3), }",
  };
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++) {
    b = npy_image (1, bad[i], f, sizeof f);
    g_assert_false (npy_load_bytes (b->data, b->len, &a, &err));
    g_assert_nonnull (err);
    g_assert_null (a.data);
    g_clear_error (&err);
    g_byte_array_unref (b);
  }
  g_assert_false (npy_load_bytes ((const guint8 *) "\x93NUMPZ\x01\x00\x00\x00", 10, &a, &err));
  g_clear_error (&err);
  g_assert_false (npy_load_bytes ((const guint8 *) "\x93NUMPY\x01\x00\xff\x00{", 11, &a, &err));
  g_clear_error (&err);
  g_assert_false (npy_load ("/nonexistent.npy", &a, &err));
  g_assert_error (err, G_FILE_ERROR, G_FILE_ERROR_NOENT);
  g_clear_error (&err);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tensor/dtype-table", test_dtype_table);
  g_test_add_func ("/tensor/contiguity", test_contiguity);
  g_test_add_func ("/tensor/strided-to-f32", test_strided_to_f32);
  g_test_add_func ("/tensor/f16-exhaustive", test_f16_exhaustive);
  g_test_add_func ("/tensor/f16-bulk-matches-scalar", test_f16_bulk_matches_scalar);
  g_test_add_func ("/tensor/other-dtypes", test_other_dtypes);
  g_test_add_func ("/tensor/unaligned-and-view", test_unaligned_and_view);
  g_test_add_func ("/npy/load", test_npy);
  return g_test_run ();
}
