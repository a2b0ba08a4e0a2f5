/* gst-canary fuzz target — torch zip checkpoints: zip directory, entries, pickle, views.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "formats/ckpt.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;

  /* the directory and every entry's bytes, as a zip reader */
  GArray *dir = canary_zip_read_directory (data, size, &err);
  if (dir) {
    for (guint i = 0; i < dir->len; i++) {
      const canary_zip_entry *e = &g_array_index (dir, canary_zip_entry, i);
      const guint8 *bytes;
      guint8 *owned;
      if (canary_zip_entry_data (data, size, e, TRUE, &bytes, &owned, &err)) {
        if (e->size) {
          volatile guint8 sink = bytes[0] ^ bytes[e->size - 1];
          (void) sink;
        }
        g_free (owned);
      } else {
        g_clear_error (&err);
      }
    }
    g_array_unref (dir);
  } else {
    g_clear_error (&err);
  }

  /* the whole checkpoint: every validated view must be readable end to end */
  canary_ckpt *ck = canary_ckpt_parse (data, size, &err);
  if (!ck) {
    g_clear_error (&err);
    return 0;
  }
  for (guint i = 0; i < canary_ckpt_n_tensors (ck); i++) {
    const canary_tensor *t = canary_ckpt_tensor (ck, i);
    if (t->numel <= (1 << 20)) {
      float *f = canary_tensor_to_f32 (t);
      g_free (f);
    }
    canary_tensor_f32_view (t);
    canary_ckpt_get (ck, t->name);
  }
  canary_ckpt_free (ck);
  return 0;
}
