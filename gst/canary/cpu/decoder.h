/* gst-canary — NeMo's Transformer decoder (pre-LN) and its tied output head, FP32 on the CPU.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The model half (canary_decoder) holds views of the checkpoint's weights and is read-only; the
 * state half (canary_decoder_state) holds everything one decoding stream writes:
 *
 *   - a self-attention K/V cache per layer, preallocated for max_seq_len positions × max_beam
 *     hypotheses (NeMo instead re-projects every cached layer input at each step);
 *   - a cross-attention K/V per layer, computed once per window from the encoder output and shared
 *     by all hypotheses;
 *   - the scratch for one step (max_beam hypotheses × 1 token, or one hypothesis × max_tokens
 *     tokens), so a step allocates nothing.
 *
 * Typical use (beam search, see search.h):
 *
 *   canary_decoder_set_memory (st, enc, T, enc_len, &err);
 *   canary_decoder_step (st, prompt, 1, P, 0, logits, &err);          // positions 0..P-1
 *   canary_decoder_reorder (st, (int[]){0, 0, 0, 0}, 4, &err);         // 1 → 4 hypotheses
 *   canary_decoder_step (st, last_tokens, 4, 1, P, logits, &err);      // position P
 *   ...
 *
 * Numerics follow NeMo (transformer_modules.py / transformer_decoders.py): q and k are each divided
 * by d_head^(1/4) after their bias; attention masks are additive −10000 (not −inf); LayerNorm eps
 * 1e-5; ReLU FFN; final LayerNorm; logits = h·Wᵀ + b with W shared with the token embedding. */
#pragma once

#include <glib.h>
#include "formats/ckpt.h"
#include "formats/config.h"

G_BEGIN_DECLS

typedef struct _canary_decoder canary_decoder;
typedef struct _canary_decoder_state canary_decoder_state;

/* Binds the decoder weights of `ck` (keys in layout.h, docs/MODEL.md §decoder) and checks every
 * shape against `cfg` (dec_layers, dec_hidden, dec_heads, dec_inner, dec_max_seq_len, vocab_size
 * when known).
 * Contiguous aligned f32 tensors are used in place, so `ck` (and the bytes under it) must outlive
 * the decoder; other dtypes/layouts are converted once. Errors name the key (CANARY_ERROR_FORMAT
 * for a missing key or a wrong shape, CANARY_ERROR_UNSUPPORTED for a config this code does not run). */
canary_decoder *canary_decoder_new (const canary_config *cfg, const canary_ckpt *ck, GError **error);
void canary_decoder_free (canary_decoder *dec);

/* precision=fp16: converts every Linear and the output head (and the token embedding, which is
 * tied to the head: stored once) into one FP16 allocation (canary_f32_to_f16, the CUDA image's
 * rounding); steps then read it with FP32 sums (AVX2/F16C or portable, canary_f16_simd_enabled)
 * on a team of the state's. LayerNorms, biases and the position table stay FP32; logits,
 * softmax and LayerNorm statistics are FP32. Call once, before creating states. */
gboolean canary_decoder_use_f16 (canary_decoder *dec, canary_release_fn release, gpointer user_data,
    GError **error);
/* Weights converted to FP16 (0 before canary_decoder_use_f16). */
gsize canary_decoder_f16_elems (const canary_decoder *dec);

int canary_decoder_vocab (const canary_decoder *dec);        /* V, rows of the output head */
int canary_decoder_hidden (const canary_decoder *dec);       /* H */
int canary_decoder_max_seq_len (const canary_decoder *dec);  /* rows of the position table */
/* Bytes of weights the decoder reads (each shared tensor counted once). */
gsize canary_decoder_weight_bytes (const canary_decoder *dec);
/* Bytes of converted copies the decoder holds beyond the checkpoint mapping. */
gsize canary_decoder_owned_bytes (const canary_decoder *dec);

/* Allocates a state for up to `max_beam` hypotheses, `max_tokens` tokens per hypothesis in one step
 * (the longest prompt or teacher-forced sequence; <= 0 means max_seq_len) and `max_frames` encoder
 * frames. `pad_id` (or -1) is the PAD token, which NeMo masks as an attention key. Allocation
 * failure → CANARY_ERROR_OUT_OF_MEMORY with the byte count. The state keeps `dec` by pointer. */
canary_decoder_state *canary_decoder_state_new (const canary_decoder *dec, int max_beam, int max_tokens,
    int max_frames, int pad_id, GError **error);
void canary_decoder_state_free (canary_decoder_state *st);

/* Sets the encoder output `enc` [T, H] (row-major, after the encoder→decoder projection) of which the
 * first `enc_len` frames are valid, and computes every layer's cross-attention K/V from it. Frames
 * >= enc_len are masked (−10000), as NeMo does for the padded part of a batch. Clears the
 * self-attention cache. */
gboolean canary_decoder_set_memory (canary_decoder_state *st, const float *enc, int T, int enc_len,
    GError **error);

/* Runs `n_tokens` new tokens for each of `n_beams` hypotheses (tokens [n_beams, n_tokens]) at
 * absolute positions start_pos .. start_pos+n_tokens-1, appending their K/V to the cache, and
 * writes the logits (before log-softmax) of each hypothesis' LAST new position to logits
 * [n_beams, V]. start_pos 0 starts a new sequence (and sets the hypothesis count); otherwise
 * n_beams must equal the current count and start_pos must not exceed the cached length (a smaller
 * start_pos rewinds). Positions >= max_seq_len and ids outside [0, V) are errors
 * (CANARY_ERROR_INVALID_ARGUMENT), as are missing memory and sizes beyond the state's limits. */
gboolean canary_decoder_step (canary_decoder_state *st, const gint32 *tokens, int n_beams, int n_tokens,
    int start_pos, float *logits, GError **error);

/* Teacher forcing for one hypothesis: like canary_decoder_step with n_beams = 1 but writes the
 * logits of EVERY new position to logits [n_tokens, V]. */
gboolean canary_decoder_step_all (canary_decoder_state *st, const gint32 *tokens, int n_tokens,
    int start_pos, float *logits, GError **error);

/* Beam reordering: hypothesis b of the new set continues old hypothesis parent[b] (0 <= parent[b] <
 * current count), for b < n_beams (<= max_beam). Caches are reassigned in place; a cache is copied
 * only when a parent has more than one child. */
/* The contract of a decoder step call, shared by the CPU decoder and the CUDA backend: the
 * state's limits, positions inside the position table, a call that continues the cache, token ids
 * inside the vocabulary. */
typedef struct {
  int max_beam, max_tokens, max_rows;  /* the state's limits */
  int max_len, V;                      /* the model's position table and vocabulary */
  int cache_len, cache_beams;          /* what the cache holds now */
  gboolean has_memory;                 /* the encoder output is set */
} canary_step_limits;

gboolean canary_decoder_check_step (const char *who, const canary_step_limits *lim, const gint32 *tokens,
    int n_beams, int n_tokens, int start_pos, GError **error);

/* Cache slots after a beam reorder (hypothesis b continues parent[b]), shared by the CPU and CUDA
 * decoders: the first child of a parent keeps its slot, further children get a slot no new
 * hypothesis needs (slot_next[b] != slot[parent[b]]: copy the parent's cache there). claimed is
 * scratch of max_beam bytes. */
void canary_plan_slots (const int *slot, const int *parent, int n_beams, int max_beam, guint8 *claimed,
    int *slot_next);

gboolean canary_decoder_reorder (canary_decoder_state *st, const int *parent, int n_beams, GError **error);

/* Cached positions (the next start_pos of an incremental step) and the current hypothesis count. */
int canary_decoder_state_length (const canary_decoder_state *st);
int canary_decoder_state_beams (const canary_decoder_state *st);
/* The decoder, PAD id and hypothesis limit the state was created with. */
const canary_decoder *canary_decoder_state_decoder (const canary_decoder_state *st);
int canary_decoder_state_pad (const canary_decoder_state *st);
int canary_decoder_state_max_beam (const canary_decoder_state *st);

G_END_DECLS
