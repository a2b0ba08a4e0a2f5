/* gst-canary — the engine's CUDA backend (FP16 or FP32 on one GPU), as engine.c uses it.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * canary_cuda_model: the weight image (cuda/weights.h) uploaded once into ONE device allocation;
 *   read-only, shared by every state (and, through the engine's model cache, every element).
 * canary_cuda_state: one arena (cuda/plan.h) sized at creation for the worst case, a stream, a
 *   cuBLASLt handle, pinned staging, and the captured decoder step. One thread at a time.
 *
 * Per window: canary_cuda_encode (features → encoder output → every layer's cross-attention
 * K/V, once), then either canary_cuda_greedy (beam 1: device argmax, the step replayed as a
 * CUDA graph, one 8-byte read per token) or the shared beam search (search.h) through
 * canary_cuda_step_ops. Every CUDA error comes back as a GError. */
#pragma once

#include <glib.h>

#include "formats/ckpt.h"
#include "formats/config.h"
#include "cuda/plan.h"
#include "search.h"

G_BEGIN_DECLS

typedef struct _canary_cuda_model canary_cuda_model;
typedef struct _canary_cuda_state canary_cuda_state;

/* Selects GPU `device_id` (CANARY_ERROR_DEVICE: no driver, no GPU, bad id, too old), converts
 * and uploads the weights (CANARY_ERROR_OUT_OF_MEMORY with the bytes needed and free). */
canary_cuda_model *canary_cuda_model_new (const canary_config *cfg, const canary_ckpt *ck,
    canary_cuda_dtype dtype, int device_id, GError **error);
void canary_cuda_model_free (canary_cuda_model *m);
/* Device bytes of the weight allocation. */
guint64 canary_cuda_model_device_bytes (const canary_cuda_model *m);
const canary_cuda_dims *canary_cuda_model_dims (const canary_cuda_model *m);

/* A state for windows of up to max_frames mel frames, beams up to max_beam and decoder calls of
 * up to max_step_tokens tokens; pad_id is the PAD token NeMo masks as a key. */
canary_cuda_state *canary_cuda_state_new (canary_cuda_model *m, int max_frames, int max_beam,
    int max_step_tokens, int pad_id, GError **error);
void canary_cuda_state_free (canary_cuda_state *st);
/* Device bytes of the arena, and the limits it was planned for. */
guint64 canary_cuda_state_device_bytes (const canary_cuda_state *st);
const canary_cuda_plan *canary_cuda_state_plan (const canary_cuda_state *st);

/* Runs the encoder on mel[n_mels][n_frames] (n_valid valid frames), leaves its output on the
 * device and computes the decoder's cross-attention K/V; clears the self-attention cache. */
gboolean canary_cuda_encode (canary_cuda_state *st, const float *mel, int n_frames, int n_valid,
    int *t_enc, int *enc_len, GError **error);
/* Sets the window's memory from an encoder output [t_enc][out_dim] given as FP32 on the host (as
 * NeMo's, in tests): converted to the model's dtype, then the decoder's cross-attention K/V;
 * clears the self-attention cache, as canary_cuda_encode does. */
gboolean canary_cuda_set_memory (canary_cuda_state *st, const float *enc, int t_enc, int enc_len,
    GError **error);
/* The last encoder output [t_enc][out_dim] as FP32 on the host (tests). */
gboolean canary_cuda_encoder_output (canary_cuda_state *st, float *out, GError **error);

/* The decoder calls with the contracts of canary_decoder_step / _step_all / _reorder. */
gboolean canary_cuda_step (gpointer state, const gint32 *tokens, int n_beams, int n_tokens,
    int start_pos, float *logits, GError **error);
gboolean canary_cuda_step_all (canary_cuda_state *st, const gint32 *tokens, int n_tokens,
    int start_pos, float *logits, GError **error);
gboolean canary_cuda_reorder (gpointer state, const int *parent, int n_beams, GError **error);
void canary_cuda_step_ops (canary_cuda_state *st, canary_step_ops *ops);

/* NeMo's beam-1 search (what canary_beam_search does with beam_size 1) with the argmax on the
 * device. use_graph: replay the captured step (captured on the state's first incremental step);
 * FALSE launches the same list one kernel at a time (the tests compare the two). */
gboolean canary_cuda_greedy (canary_cuda_state *st, const gint32 *prompt, int P,
    const canary_beam_options *opt, gboolean use_graph, GArray *out_ids, double *out_score,
    int *out_steps, GError **error);

/* Free and total bytes of the state's GPU (process total in use = total − free). */
gboolean canary_cuda_state_mem_info (canary_cuda_state *st, guint64 *free_bytes, guint64 *total_bytes,
    GError **error);

G_END_DECLS
