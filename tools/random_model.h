/* gst-canary — Canary-shaped models with random weights, built in memory (benchmarks, tests).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Speed and memory do not depend on weight values, and the real checkpoints (2–4 GB) cannot be
 * fetched everywhere, so the benchmark builds the released models' shapes (docs/MODEL.md, Released models) with
 * random weights: the same config struct and the same state-dict keys a .nemo would give, so the
 * encoder and decoder bind them through exactly the code path a real file takes. */
#pragma once

#include <glib.h>

#include "formats/ckpt.h"
#include "formats/config.h"

G_BEGIN_DECLS

/* Names accepted: "canary-1b", "canary-1b-flash", "canary-180m-flash", "canary-1b-v2", and
 * "tiny" (2+2 layers, d 64, for tests). NULL-terminated list of them: */
const char *const *canary_synth_shapes (void);

/* Builds the config and a checkpoint with every encoder/decoder/head tensor of that shape,
 * filled with seeded uniform values scaled by 1/sqrt(fan_in) (BatchNorm variances positive).
 * The embedding and the output head share one storage, as in the real files. */
gboolean canary_synth_build (const char *shape, guint64 seed, canary_config **cfg_out,
    canary_ckpt **ckpt_out, GError **error);

G_END_DECLS
