/* gst-canary — torch.save zip checkpoints: zip directory + protocol-2 pickle → tensor table.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "formats/tensor.h"

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

/* Checkpoints built in memory (synthetic models for benchmarks and tests). ------------------- */

canary_ckpt *canary_ckpt_new_empty (void);
/* Adds a contiguous tensor; the checkpoint takes `data` (g_malloc'd, `bytes` long) in all cases. */
const canary_tensor *canary_ckpt_add_tensor (canary_ckpt *ck, const char *name, canary_dtype dtype,
    int ndim, const int64_t *shape, gpointer data, gsize bytes, GError **error);
/* Adds `name` as a second key for the storage of `target` (tied weights). */
gboolean canary_ckpt_add_alias (canary_ckpt *ck, const char *name, const char *target, GError **error);

/* Lower-level pieces, exposed for unit tests and fuzz targets. ------------------------------- */

typedef struct {
  char *name;
  gsize offset;        /* of the entry's data, within the zip buffer */
  gsize size;          /* uncompressed size */
  gsize comp_size;
  guint16 method;      /* 0 stored, 8 deflate */
  guint32 crc32;       /* from the central directory */
} canary_zip_entry;

/* Reads the central directory (zip64 aware). Returns an array of canary_zip_entry (free with
 * g_array_unref; the names are freed with it). */
GArray *canary_zip_read_directory (const guint8 *data, gsize len, GError **error);

/* The uncompressed bytes of an entry. Stored entries are returned in place (*owned = NULL);
 * deflated ones are inflated into a new buffer returned in *owned (g_free it), and their CRC-32 is
 * checked. With `check_crc` a stored entry's CRC-32 is verified too (for small records such as
 * data.pkl; storages are left unread so that mapping stays lazy). */
gboolean canary_zip_entry_data (const guint8 *zip, gsize zip_len, const canary_zip_entry *entry,
    gboolean check_crc, const guint8 **data, guint8 **owned, GError **error);

G_END_DECLS
