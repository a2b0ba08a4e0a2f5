/* gst-canary tests — runs the CUDA launch lists (cuda/launch.h: encoder and decoder) on the CPU.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The launch records hold plain addresses; built with wbase = the host weight image and abase =
 * a host buffer laid out by the arena plan, they can be executed here, op by op, with the kernels'
 * arithmetic (FP32 compute, FP16 rounding on every store in FP16 mode, FP32 logits). This checks
 * the lists themselves — shapes, strides, addresses, layouts, the order of operations, the argmax
 * feeding the next replay — and the FP16 activation numerics, against NeMo, without a GPU. It does not check
 * the CUDA kernels (the cuda suite does). */
#pragma once

#include <glib.h>

#include "cuda/launch.h"

G_BEGIN_DECLS

/* Executes records[0..n) with the image `w` (for its shapes) and the arena plan `plan` based at
 * `arena` (for the step parameters); pad_id: the PAD token the self-attention masks. */
void cuda_emu_run (const canary_cuda_weights *w, const canary_cuda_plan *plan, guint8 *arena,
    const canary_cuda_launch *records, guint n, int pad_id);

/* Element access in the activation type of `w` (FP16 or FP32). */
float cuda_emu_load (const canary_cuda_weights *w, const void *p, gsize i);
void cuda_emu_store (const canary_cuda_weights *w, void *p, gsize i, float v);

G_END_DECLS
