/* gst-canary — tensors as read from a torch checkpoint (views into the mapped file).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define CANARY_MAX_DIMS 8

typedef enum {
  CANARY_DTYPE_F32,
  CANARY_DTYPE_F16,
  CANARY_DTYPE_BF16,
  CANARY_DTYPE_F64,
  CANARY_DTYPE_I64,
  CANARY_DTYPE_I32,
  CANARY_DTYPE_I16,
  CANARY_DTYPE_I8,
  CANARY_DTYPE_U8,
  CANARY_DTYPE_BOOL,
} canary_dtype;

/* Bytes per element of a dtype. */
gsize canary_dtype_size (canary_dtype dtype);
const char *canary_dtype_name (canary_dtype dtype);

/* One state-dict entry. `data` points at element [0,...,0] of the view, inside the checkpoint's
 * storage (which lives in the mapped .nemo, or in a buffer the checkpoint owns). Strides are in
 * elements, as torch stores them. The pointer need not be aligned for the dtype. Every view has been
 * validated at parse time to lie inside its storage. */
typedef struct {
  const char *name;            /* state-dict key, owned by the checkpoint */
  canary_dtype dtype;
  int ndim;                    /* 0 for scalars */
  int64_t shape[CANARY_MAX_DIMS];
  int64_t stride[CANARY_MAX_DIMS];
  int64_t numel;               /* product of shape (1 for a 0-d tensor) */
  const guint8 *data;
  const char *storage_key;     /* shared storages (tied weights) have the same key */
} canary_tensor;

/* TRUE when the view is C-contiguous (strides match a row-major layout of its shape). */
gboolean canary_tensor_is_contiguous (const canary_tensor *t);

/* Copies the tensor into a new contiguous float32 array of t->numel elements, converting from
 * f32/f16/bf16/f64/integer dtypes. Never fails for a validated tensor. Free with g_free. */
float *canary_tensor_to_f32 (const canary_tensor *t);

/* Returns the tensor's data as float32 in place when it is contiguous f32 and 4-byte aligned (the
 * zero-copy path), otherwise NULL. */
const float *canary_tensor_f32_view (const canary_tensor *t);

/* Called by the FP16 converters (canary_encoder_use_f16, canary_decoder_use_f16) with each FP32
 * source they have finished reading, so that a file-backed source can leave memory at once
 * (canary_archive_release_range) rather than after the whole model: the load's peak is then the
 * FP16 copy plus about one tensor, not both copies. */
typedef void (*canary_release_fn) (const void *src, gsize bytes, gpointer user_data);

/* IEEE binary16 conversions: from FP16 exact for every input (subnormals included); to FP16
 * rounded to nearest even, overflow → ±inf and NaN kept quiet, as CUDA's __float2half. */
guint16 canary_f32_to_f16 (float x);
/* canary_f32_to_f16 of each of n values, bit for bit the same, vectorised with F16C where the CPU
 * has it (a 1 G-weight model converts in well under a second instead of seconds). */
void canary_f32_to_f16_n (const float *src, guint16 *dst, gsize n);
float canary_f16_to_f32 (guint16 h);
/* x rounded to the nearest FP16 value, as FP32. */
float canary_round_f16 (float x);

G_END_DECLS
