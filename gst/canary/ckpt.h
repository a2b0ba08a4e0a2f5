/* gst-canary — torch.save zip checkpoints: zip directory + protocol-2 pickle → tensor table.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "tensor.h"

G_BEGIN_DECLS

typedef struct _canary_ckpt canary_ckpt;

/* Parses a torch zip checkpoint held in `data` (usually a member mapped from the .nemo). Stored
 * (uncompressed) storages are used in place: `data` must outlive the checkpoint. Deflated entries,
 * if any, are inflated into buffers the checkpoint owns. Every storage size, view offset/shape/
 * stride and dtype is validated; failures name the entry and the field (CANARY_ERROR_FORMAT). */
canary_ckpt *canary_ckpt_parse (const guint8 *data, gsize len, GError **error);
void canary_ckpt_free (canary_ckpt *ck);

/* Looks a state-dict entry up by its full key; NULL when absent. */
const canary_tensor *canary_ckpt_get (const canary_ckpt *ck, const char *name);

/* All entries, in state-dict order. */
guint canary_ckpt_n_tensors (const canary_ckpt *ck);
const canary_tensor *canary_ckpt_tensor (const canary_ckpt *ck, guint i);

/* Lower-level pieces, exposed for unit tests and fuzz targets. ------------------------------- */

typedef struct {
  char *name;
  gsize offset;        /* of the entry's data, within the zip buffer */
  gsize size;          /* uncompressed size */
  gsize comp_size;
  guint16 method;      /* 0 stored, 8 deflate */
} canary_zip_entry;

/* Reads the central directory (zip64 aware). Returns an array of canary_zip_entry (free with
 * g_array_unref; the names are freed with it). */
GArray *canary_zip_read_directory (const guint8 *data, gsize len, GError **error);

G_END_DECLS
