/* gst-canary fuzz target — the pickle VM on raw data.pkl bytes.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "formats/pickle.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  GPtrArray *sd = canary_pickle_load_state_dict (data, size, &err);
  if (!sd) {
    g_clear_error (&err);
    return 0;
  }
  for (guint i = 0; i < sd->len; i++) {
    const canary_pickle_tensor *t = g_ptr_array_index (sd, i);
    g_assert (t->name && t->storage_key && t->location);
    g_assert (t->ndim >= 0 && t->ndim <= CANARY_MAX_DIMS);
    g_assert (t->offset >= 0 && t->storage_numel >= 0);
  }
  g_ptr_array_unref (sd);
  return 0;
}
