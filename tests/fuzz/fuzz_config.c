/* gst-canary fuzz target — model_config.yaml through libyaml and the config reader.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "formats/config.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  canary_config *c = canary_config_parse ((const char *) data, size, &err);
  if (!c) {
    g_clear_error (&err);
    return 0;
  }
  /* what the engine relies on after a successful parse */
  g_assert (c->enc_d_model > 0 && c->enc_heads > 0 && c->enc_d_model % c->enc_heads == 0);
  g_assert (c->dec_hidden > 0 && c->dec_heads > 0 && c->dec_hidden % c->dec_heads == 0);
  g_assert (c->n_fft >= c->n_window_size && c->n_window_stride > 0);
  g_assert (c->window && c->normalize && c->log_zero_guard_type && c->subsampling);
  g_assert (c->tokenizer_kind != CANARY_TOKENIZER_UNIFIED || c->tokenizer_model_path);
  g_assert (c->tokenizer_kind != CANARY_TOKENIZER_AGGREGATE || c->tokenizer_langs->len > 0);
  canary_config_free (c);
  return 0;
}
