/* gst-canary fuzz target — SentencePiece ModelProto (protobuf) through canary_spm_parse.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "text/tokenizer.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  canary_spm *spm = canary_spm_parse (data, size, &err);
  if (!spm) {
    g_clear_error (&err);
    return 0;
  }
  for (guint i = 0; i < spm->n_pieces; i++)
    g_assert (spm->pieces[i] != NULL);
  if (spm->n_pieces)
    canary_spm_piece_to_id (spm, spm->pieces[spm->n_pieces - 1]);
  canary_spm_piece_to_id (spm, "<|endoftext|>");
  canary_spm_free (spm);
  return 0;
}
