/* gst-canary tests — a small reader for NumPy .npy files (the fixtures NeMo's outputs are dumped to).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Supports format versions 1.0, 2.0 and 3.0, C order only, little-endian (or byte-order-free)
 * dtypes: '<f4', '<f2', '<f8', '<i8', '<i4', '<i2', '|i1', '|u1', '|b1'. Up to NPY_MAX_DIMS dims;
 * 0-d arrays have ndim 0 and one element.
 *
 *   npy_array a;
 *   GError *err = NULL;
 *   if (!npy_load (FIXTURES_DIR "/x/mel.npy", &a, &err)) ...
 *   float *f = npy_to_f32 (&a);   // any numeric dtype → new float array of a.numel
 *   ...
 *   g_free (f);
 *   npy_array_clear (&a);
 */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define NPY_MAX_DIMS 8

typedef enum {
  NPY_DTYPE_F32,   /* '<f4' */
  NPY_DTYPE_F16,   /* '<f2' */
  NPY_DTYPE_F64,   /* '<f8' */
  NPY_DTYPE_I64,   /* '<i8' */
  NPY_DTYPE_I32,   /* '<i4' */
  NPY_DTYPE_I16,   /* '<i2' */
  NPY_DTYPE_I8,    /* '|i1' */
  NPY_DTYPE_U8,    /* '|u1' */
  NPY_DTYPE_BOOL,  /* '|b1' */
} npy_dtype;

typedef struct {
  npy_dtype dtype;
  gsize elsize;                  /* bytes per element */
  int ndim;
  int64_t shape[NPY_MAX_DIMS];
  gsize numel;                   /* product of shape (1 for 0-d) */
  void *data;                    /* numel * elsize bytes, owned, malloc-aligned */
} npy_array;

/* Reads `path`. On failure returns FALSE, sets `err` (G_FILE_ERROR for I/O, G_IO_ERROR_INVALID_DATA
 * style messages in G_FILE_ERROR_INVAL for format problems) and leaves `out` cleared. */
gboolean npy_load (const char *path, npy_array *out, GError **err);

/* Same, from bytes in memory (copies what it keeps). */
gboolean npy_load_bytes (const guint8 *bytes, gsize len, npy_array *out, GError **err);

/* Frees the data and zeroes the struct; safe on a cleared or zeroed array. */
void npy_array_clear (npy_array *a);

/* New float array (g_free) holding the elements converted to float32. */
float *npy_to_f32 (const npy_array *a);

/* Element accessors by flat index (no bounds check beyond g_assert in debug builds). */
double npy_get_f64 (const npy_array *a, gsize i);
int64_t npy_get_i64 (const npy_array *a, gsize i);

const char *npy_dtype_name (npy_dtype dt);

G_END_DECLS
