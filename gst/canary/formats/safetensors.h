/* gst-canary — the safetensors format (Hugging Face): an 8-byte little-endian header length, a
 * JSON header naming each tensor's dtype, shape and byte range, then the tensor bytes. Used for
 * the Silero VAD weights (vad/silero.c). The header is untrusted: every length, shape and offset
 * is checked before a byte is read (fuzzed: tests/fuzz/fuzz_safetensors.c).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _canary_safetensors canary_safetensors;

/* Reads the file at @path (at most CANARY_SAFETENSORS_MAX_FILE bytes) and checks its header. */
canary_safetensors *canary_safetensors_open (const char *path, GError **error);

/* Same, over a copy of @len bytes at @data (fuzzing, tests). @what names it in errors. */
canary_safetensors *canary_safetensors_parse (const guint8 *data, gsize len, const char *what,
    GError **error);

void canary_safetensors_free (canary_safetensors *st);

/* Copies the tensor @name, which must be F32 with exactly the @ndim dimensions @shape, into a new
 * float array (g_free it). The error names the tensor and what differs. */
float *canary_safetensors_get_f32 (canary_safetensors *st, const char *name, int ndim,
    const gint64 *shape, GError **error);

guint canary_safetensors_n_tensors (const canary_safetensors *st);
const char *canary_safetensors_tensor_name (const canary_safetensors *st, guint i);

/* Large enough for any VAD model (Silero's is 1.2 MB), small enough that a wrong path is refused
 * before it is read into memory. */
#define CANARY_SAFETENSORS_MAX_FILE (256u << 20)

G_END_DECLS
