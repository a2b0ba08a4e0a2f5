/* gst-canary fuzz target — a safetensors file through the reader and, when it parses, the Silero
 * VAD loader and one chunk of its network (shapes, offsets and values all from the input).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "canary.h"
#include "canary_vad.h"
#include "formats/safetensors.h"

#include <math.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  canary_safetensors *st = canary_safetensors_parse (data, size, "fuzz", &err);
  if (!st) {
    g_assert (err && err->domain == CANARY_ERROR);
    g_clear_error (&err);
    return 0;
  }
  for (guint i = 0; i < canary_safetensors_n_tensors (st); i++)
    g_assert (canary_safetensors_tensor_name (st, i) != NULL);
  canary_safetensors_free (st);

  canary_vad *vad = canary_vad_load_bytes (data, size, &err);
  if (!vad) {
    g_assert (err && err->domain == CANARY_ERROR);
    g_clear_error (&err);
    return 0;
  }
  float chunk[CANARY_VAD_CHUNK] = {0};
  chunk[7] = 0.5f;
  float p = canary_vad_process (vad, chunk);
  /* finite weights can still overflow to inf inside; the sigmoid keeps the result in [0, 1] or
   * NaN (inf − inf), never outside */
  g_assert (isnan (p) || (p >= 0.0f && p <= 1.0f));
  canary_vad_free (vad);
  return 0;
}
