/* gst-canary — decoding over the decoder: NeMo's BeamSearchSequenceGenerator, beam 1 included.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include "cpu/decoder.h"

G_BEGIN_DECLS

typedef struct {
  int beam_size;          /* k >= 1; 1 is NeMo's default path (greedy argmax, correct positions) */
  double length_penalty;  /* GNMT alpha, >= 0; NeMo's effective default is 0 (docs/MODEL.md, Decoding: strategy and defaults) */
  int max_len_total;      /* cap on prompt + generated positions, see canary_beam_max_len_total */
  int eos_id;             /* <|endoftext|> */
  int pad_id;             /* <pad> */
  volatile gint *cancel;  /* optional: non-zero stops the search between steps (CANARY_ERROR_CANCELLED) */
} canary_beam_options;

/* NeMo's generation cap (GreedySequenceGenerator._prepare_for_search): min(max_seq_len, src_len +
 * delta) when delta >= 0, else max_seq_len. src_len is the PADDED encoder length of the batch. */
int canary_beam_max_len_total (int max_seq_len, int src_len, int max_generation_delta);

/* Runs NeMo's beam search (transformer_generators.py BeamSearchSequenceGenerator._forward) for one
 * utterance on a state whose memory is set: step 0 runs the prompt, then one token per hypothesis
 * at positions P, P+1, ... up to max_len_total-1 or until every hypothesis ends in EOS/PAD. Appends
 * the best hypothesis' generated ids to `out_ids` (gint32) with the prompt and trailing EOS/PAD
 * stripped, as NeMo's format_hypotheses does. `out_score` (optional): the hypothesis' score (sum
 * of log-probs, as NeMo's beam scores); `out_steps` (optional): decoder calls made. The state must
 * have been created with max_beam >= beam_size and max_tokens >= P. */
gboolean canary_beam_search (canary_decoder_state *st, const gint32 *prompt, int P, const canary_beam_options *opt,
    GArray *out_ids, double *out_score, int *out_steps, GError **error);

/* The decoder a search drives: the CPU decoder state, or the CUDA backend's. `step` and `reorder`
 * have the contracts of canary_decoder_step and canary_decoder_reorder (logits in FP32 on the
 * host); the ints are that decoder's vocabulary, hypothesis limit, positions and PAD id. */
typedef struct {
  gboolean (*step) (gpointer state, const gint32 *tokens, int n_beams, int n_tokens, int start_pos,
      float *logits, GError **error);
  gboolean (*reorder) (gpointer state, const int *parent, int n_beams, GError **error);
  int vocab, max_beam, max_seq_len, pad_id;
} canary_step_ops;

/* canary_beam_search over any decoder (the search itself is the same code for every backend). */
gboolean canary_beam_search_ops (const canary_step_ops *ops, gpointer state, const gint32 *prompt, int P,
    const canary_beam_options *opt, GArray *out_ids, double *out_score, int *out_steps, GError **error);

/* log_softmax of one row of V logits, FP32 output; max-shifted, sum of exponentials in double. */
void canary_log_softmax (const float *logits, int V, float *out);

G_END_DECLS
