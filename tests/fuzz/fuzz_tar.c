/* gst-canary fuzz target — .nemo archives (tar, PAX, GNU, gzip) through canary_archive_open_bytes.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "formats/tar.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  canary_archive *ar = canary_archive_open_bytes (data, size, &err);
  if (!ar) {
    g_clear_error (&err);
    return 0;
  }
  /* touch every member and the lookup paths */
  for (guint i = 0; i < canary_archive_n_members (ar); i++) {
    const char *name = canary_archive_member_name (ar, i);
    const guint8 *d;
    gsize n;
    if (canary_archive_find (ar, name, &d, &n) && n > 0) {
      volatile guint8 sink = d[0] ^ d[n - 1];
      (void) sink;
    }
    if (canary_archive_resolve (ar, name, &d, &n, &err) == FALSE)
      g_clear_error (&err);
  }
  const guint8 *d;
  gsize n;
  canary_archive_find (ar, "./model_config.yaml", &d, &n);
  if (!canary_archive_resolve (ar, "nemo:0123_tokenizer.model", &d, &n, &err))
    g_clear_error (&err);
  canary_archive_free (ar);
  return 0;
}
