/* gst-canary tests — read a RIFF/WAVE file (PCM 16-bit or IEEE float 32-bit) into float samples.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Reads `path` and returns its first channel as floats in [-1, 1) (PCM16 is divided by 32768, as
 * NeMo's loaders do). `*rate` receives the sample rate. NULL and `err` set on any problem. */
float *wav_read_mono (const char *path, gsize *n_samples, int *rate, GError **err);

G_END_DECLS
