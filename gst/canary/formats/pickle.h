/* gst-canary — engine-internal: the subset of Python's pickle that torch state dicts use.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "formats/tensor.h"

G_BEGIN_DECLS

/* One tensor as described by data.pkl, before it is tied to its storage bytes. */
typedef struct {
  char *name;               /* state-dict key */
  char *storage_key;        /* persistent id key: "<arch>/data/<key>" */
  char *location;           /* "cpu", "cuda:0", ... (informational) */
  canary_dtype dtype;       /* from the torch.<X>Storage global */
  int64_t storage_numel;    /* elements in the storage, as the persistent id says */
  int64_t offset;           /* storage_offset, in elements */
  int ndim;
  int64_t shape[CANARY_MAX_DIMS];
  int64_t stride[CANARY_MAX_DIMS];
} canary_pickle_tensor;

void canary_pickle_tensor_free (canary_pickle_tensor *t);

/* Runs the pickle in `data` and returns the state dict it builds as an array of
 * canary_pickle_tensor* in dict order (free with g_ptr_array_unref). The top-level object must be
 * a dict (collections.OrderedDict or plain); entries whose value is not a tensor are skipped with a
 * warning. Unknown opcodes and globals, malformed arguments and resource limits give
 * CANARY_ERROR_FORMAT naming the opcode and its byte offset. Only fixed-shape checks are done here
 * (ints in range, ndim <= CANARY_MAX_DIMS); storage bounds are ckpt.c's job. */
GPtrArray *canary_pickle_load_state_dict (const guint8 *data, gsize len, GError **error);

G_END_DECLS
