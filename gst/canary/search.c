/* gst-canary — NeMo's BeamSearchSequenceGenerator over the FP32 decoder.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Reproduces nemo/collections/asr/modules/transformer/transformer_generators.py
 * (BeamSearchSequenceGenerator._forward) and the prompt/EOS stripping of
 * multitask_beam_decoding.py (format_hypotheses), for batch 1. Scores, length penalties and the
 * finished-hypothesis trick are computed in FP32 in the same order as the torch code so that
 * rankings (and ties) come out the same. */
#include "search.h"

#include <math.h>
#include <string.h>

#include "canary.h"
#include "nemo_constants.h"
#include "util.h"

/* transformer_utils.NEG_INF (CANARY_MASK_VALUE): multiplies the pad mask of the
 * continuations 1..k-1 of a finished hypothesis, so their weight on the log-prob becomes
 * 1 − (−10000) = 10001. */
#define BEAM_NEG_INF CANARY_MASK_VALUE

int
canary_beam_max_len_total (int max_seq_len, int src_len, int max_generation_delta)
{
  if (max_generation_delta < 0)
    return max_seq_len;
  gint64 cap = (gint64) src_len + max_generation_delta;
  return (int) MIN ((gint64) max_seq_len, cap);
}

void
canary_log_softmax (const float *logits, int V, float *out)
{
  float m = logits[0];
  for (int i = 1; i < V; i++)
    m = MAX (m, logits[i]);
  double sum = 0.0;
  for (int i = 0; i < V; i++)
    sum += exp ((double) (logits[i] - m));
  /* torch: x − max − log(Σ exp(x − max)), the subtraction done in float. */
  float lse = (float) log (sum);
  for (int i = 0; i < V; i++)
    out[i] = (logits[i] - m) - lse;
}

/* The k largest of v[0..n) in descending order (idx, val). Ties keep the lower index first, which
 * is what torch.topk returns for the rare exact ties we can meet. */
static void
top_k (const float *v, int n, int k, int *idx, float *val)
{
  int m = 0;
  for (int i = 0; i < n; i++) {
    float x = v[i];
    if (m == k && !(x > val[k - 1]))
      continue;
    int p = m < k ? m++ : k - 1;
    while (p > 0 && x > val[p - 1]) {
      val[p] = val[p - 1];
      idx[p] = idx[p - 1];
      p--;
    }
    val[p] = x;
    idx[p] = i;
  }
}

/* GNMT length penalty ((5 + len) / 6)^alpha in FP32, with the exponents torch's pow(Tensor,
 * Scalar) special-cases (0 → exactly 1, which is NeMo's effective default). */
static float
len_penalty (float len, double alpha)
{
  float base = (5.0f + len) / 6.0f;
  if (alpha == 0.0)
    return 1.0f;
  if (alpha == 1.0)
    return base;
  if (alpha == 0.5)
    return sqrtf (base);
  if (alpha == 2.0)
    return base * base;
  return powf (base, (float) alpha);
}

static gboolean
is_end (gint32 tok, const canary_beam_options *opt)
{
  return tok == opt->eos_id || tok == opt->pad_id;
}

/* Everything one search writes, allocated once per search (never per step). */
typedef struct {
  int k, V, cap;          /* beam, vocabulary, longest prefix (prompt + generated) */
  float *logits, *logp;   /* [k, V], [V] */
  float *cand, *cand_lp;  /* candidate totals [k*k], per-parent length penalties [k] */
  gint32 *cand_tok;       /* [k*k] */
  float *cs;              /* top-k log-probs of one hypothesis [k] */
  int *ci;                /* their ids [k] */
  float *scores, *lens;   /* per hypothesis: score, NeMo's prefixes_len (float, as torch) */
  int *n_real;            /* per hypothesis: tokens that are neither EOS nor PAD */
  guint8 *finished;       /* NeMo's pad_profile */
  gint32 *prefix, *prefix_next, *last; /* [k, cap], [k, cap], [k] */
  int *parent, *sel, *n_real_next;
  float *sel_val;
} beam_work;

static void
beam_work_free (beam_work *w)
{
  g_free (w->logits);
  g_free (w->logp);
  g_free (w->cand);
  g_free (w->cand_lp);
  g_free (w->cand_tok);
  g_free (w->cs);
  g_free (w->ci);
  g_free (w->scores);
  g_free (w->lens);
  g_free (w->n_real);
  g_free (w->finished);
  g_free (w->prefix);
  g_free (w->prefix_next);
  g_free (w->last);
  g_free (w->parent);
  g_free (w->sel);
  g_free (w->n_real_next);
  g_free (w->sel_val);
}

static gboolean
beam_work_init (beam_work *w, int k, int V, int cap, GError **error)
{
  memset (w, 0, sizeof *w);
  w->k = k;
  w->V = V;
  w->cap = cap;
  w->logits = g_try_new (float, (gsize) k * V);
  w->logp = g_try_new (float, V);
  w->prefix = g_try_new (gint32, (gsize) k * cap);
  w->prefix_next = g_try_new (gint32, (gsize) k * cap);
  if (!w->logits || !w->logp || !w->prefix || !w->prefix_next) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY, "beam search: cannot allocate %" G_GSIZE_FORMAT
        " bytes", ((gsize) k * V + V) * sizeof (float) + 2 * (gsize) k * cap * sizeof (gint32));
    beam_work_free (w);
    return FALSE;
  }
  w->cand = g_new (float, (gsize) k * k);
  w->cand_lp = g_new (float, k);
  w->cand_tok = g_new (gint32, (gsize) k * k);
  w->cs = g_new (float, k);
  w->ci = g_new (int, k);
  w->scores = g_new (float, k);
  w->lens = g_new (float, k);
  w->n_real = g_new (int, k);
  w->finished = g_new0 (guint8, k);
  w->last = g_new (gint32, k);
  w->parent = g_new0 (int, k);
  w->sel = g_new (int, k);
  w->n_real_next = g_new (int, k);
  w->sel_val = g_new (float, k);
  return TRUE;
}

/* Log-softmax of a logits row, refusing NaN/inf (broken weights) rather than ranking garbage. */
static gboolean
row_log_probs (const float *logits, int V, float *out, int pos, GError **error)
{
  for (int i = 0; i < V; i++) {
    if (!isfinite (logits[i])) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
          "decoder produced a non-finite logit (id %d) at position %d", i, pos);
      return FALSE;
    }
  }
  canary_log_softmax (logits, V, out);
  return TRUE;
}

static gboolean
check_options (const canary_step_ops *ops, int P, const canary_beam_options *opt, GError **error)
{
  const int V = ops->vocab;
  const int max_beam = MIN (V, ops->max_beam);
  if (opt->beam_size < 1 || opt->beam_size > max_beam) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "beam size %d outside 1..%d (vocabulary and decoder state limits)", opt->beam_size, max_beam);
    return FALSE;
  }
  if (!(opt->length_penalty >= 0.0 && opt->length_penalty <= 100.0)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT, "length penalty %g outside 0..100",
        opt->length_penalty);
    return FALSE;
  }
  if (opt->eos_id < 0 || opt->eos_id >= V || opt->pad_id < 0 || opt->pad_id >= V) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT, "EOS id %d or PAD id %d outside 0..%d",
        opt->eos_id, opt->pad_id, V - 1);
    return FALSE;
  }
  if (ops->pad_id != opt->pad_id) {
    /* The decoder masks PAD inputs as attention keys; both must agree on which id that is. */
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "PAD id %d differs from the decoder state's %d", opt->pad_id, ops->pad_id);
    return FALSE;
  }
  if (P < 1 || P > ops->max_seq_len) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "prompt of %d tokens outside 1..max_sequence_length %d", P, ops->max_seq_len);
    return FALSE;
  }
  if (opt->max_len_total < 1 || opt->max_len_total > ops->max_seq_len) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT, "max_len_total %d outside 1..%d",
        opt->max_len_total, ops->max_seq_len);
    return FALSE;
  }
  return TRUE;
}

/* Step 0 (NeMo: the first _one_step_forward): the prompt in one call, top-k of the log-probs at its
 * last position, then every hypothesis starts from the prompt's cache. */
static gboolean
beam_start (const canary_step_ops *ops, gpointer st, beam_work *w, const gint32 *prompt, int P,
    const canary_beam_options *opt, GError **error)
{
  if (!ops->step (st, prompt, 1, P, 0, w->logits, error)
      || !row_log_probs (w->logits, w->V, w->logp, P - 1, error))
    return FALSE;
  top_k (w->logp, w->V, w->k, w->ci, w->cs);
  int prompt_real = 0;
  for (int t = 0; t < P; t++)
    prompt_real += !is_end (prompt[t], opt);
  for (int b = 0; b < w->k; b++) {
    gint32 *pre = w->prefix + (gsize) b * w->cap;
    memcpy (pre, prompt, sizeof (gint32) * P);
    pre[P] = w->ci[b];
    w->scores[b] = w->cs[b];
    /* prefixes_len starts at prefixes.size(1) + 1 whatever the tokens are; pad_profile starts at
     * 0, so a first token that is EOS does NOT finish its hypothesis (NeMo quirk, kept). */
    w->lens[b] = (float) (P + 2);
    w->n_real[b] = prompt_real + !is_end (w->ci[b], opt);
    w->finished[b] = 0;
    w->parent[b] = 0;
  }
  return ops->reorder (st, w->parent, w->k, error);
}

/* Scores the k continuations of every hypothesis into w->cand (divided by the parent's length
 * penalty) exactly as NeMo does: continuations of a finished hypothesis become PAD, the first keeps
 * the score unchanged and the others get score + 10001·logprob. */
static gboolean
beam_candidates (beam_work *w, int pos, const canary_beam_options *opt, GError **error)
{
  const int k = w->k;
  for (int b = 0; b < k; b++) {
    if (!row_log_probs (w->logits + (gsize) b * w->V, w->V, w->logp, pos, error))
      return FALSE;
    top_k (w->logp, w->V, k, w->ci, w->cs);
    const int mask = w->finished[b];
    w->cand_lp[b] = len_penalty (w->lens[b], opt->length_penalty);
    for (int c = 0; c < k; c++) {
      /* pad_mask[:, 0] = pad_profile; pad_mask[:, 1:] = pad_profile · NEG_INF; weight 1 − pad_mask. */
      float pad_mask = c == 0 ? (float) mask : (float) mask * BEAM_NEG_INF;
      float weight = 1.0f - pad_mask;
      w->cand_tok[b * k + c] = mask ? opt->pad_id : w->ci[c];
      w->cand[b * k + c] = (w->scores[b] + w->cs[c] * weight) / w->cand_lp[b];
    }
  }
  return TRUE;
}

/* Top-k of the k² candidates, new prefixes, cache reorder, and NeMo's bookkeeping. Returns TRUE in
 * *all_done when every hypothesis ends in EOS/PAD. */
static gboolean
beam_select (const canary_step_ops *ops, gpointer st, beam_work *w, int plen, const canary_beam_options *opt,
    gboolean *all_done, GError **error)
{
  const int k = w->k;
  top_k (w->cand, k * k, k, w->sel, w->sel_val);
  *all_done = TRUE;
  for (int j = 0; j < k; j++) {
    const int from = w->sel[j] / k;
    const gint32 tok = w->cand_tok[w->sel[j]];
    w->parent[j] = from;
    memcpy (w->prefix_next + (gsize) j * w->cap, w->prefix + (gsize) from * w->cap, sizeof (gint32) * plen);
    w->prefix_next[(gsize) j * w->cap + plen] = tok;
    w->n_real_next[j] = w->n_real[from] + !is_end (tok, opt);
  }
  for (int j = 0; j < k; j++) {
    /* scores.view(-1, 1) * len_penalties: the penalty of the hypothesis that was in slot j, not of
     * the chosen candidate's parent (a NeMo quirk, invisible with the default alpha = 0). */
    w->scores[j] = w->sel_val[j] * w->cand_lp[j];
    w->n_real[j] = w->n_real_next[j];
    w->lens[j] = (float) (1 + w->n_real[j]);
    w->finished[j] = is_end (w->prefix_next[(gsize) j * w->cap + plen], opt);
    *all_done = *all_done && w->finished[j];
  }
  gint32 *tmp = w->prefix;
  w->prefix = w->prefix_next;
  w->prefix_next = tmp;
  return ops->reorder (st, w->parent, k, error);
}

/* Best hypothesis by score / length penalty (first maximum, as torch.argmax), its ids after the
 * prompt with trailing EOS/PAD removed. */
static void
beam_finish (const beam_work *w, int P, int plen, const canary_beam_options *opt, GArray *out_ids, double *out_score)
{
  int best = 0;
  float best_val = 0.0f;
  for (int b = 0; b < w->k; b++) {
    float v = w->scores[b] / len_penalty (w->lens[b], opt->length_penalty);
    if (b == 0 || v > best_val) {
      best = b;
      best_val = v;
    }
  }
  const gint32 *pre = w->prefix + (gsize) best * w->cap;
  int end = plen;
  while (end > P && is_end (pre[end - 1], opt))
    end--;
  if (end > P)
    g_array_append_vals (out_ids, pre + P, end - P);
  if (out_score)
    *out_score = w->scores[best];
}

/* Checked before every decoder call: a cancel costs at most one step. */
static gboolean
cancelled (const canary_beam_options *opt, int pos, GError **error)
{
  if (!opt->cancel || !g_atomic_int_get (opt->cancel))
    return FALSE;
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_CANCELLED, "beam search cancelled at position %d", pos);
  return TRUE;
}

gboolean
canary_beam_search_ops (const canary_step_ops *ops, gpointer st, const gint32 *prompt, int P,
    const canary_beam_options *opt, GArray *out_ids, double *out_score, int *out_steps, GError **error)
{
  g_return_val_if_fail (ops && st && prompt && opt && out_ids, FALSE);
  g_return_val_if_fail (g_array_get_element_size (out_ids) == sizeof (gint32), FALSE);
  if (!check_options (ops, P, opt, error))
    return FALSE;

  /* NeMo: max_generation_length = max_len_total − P; loop positions P .. max_len_total − 1. */
  const int max_gen = MAX (0, opt->max_len_total - P);
  beam_work w;
  if (!beam_work_init (&w, opt->beam_size, ops->vocab, P + 1 + max_gen, error))
    return FALSE;

  int steps = 0, plen = P + 1;
  gboolean ok = !cancelled (opt, 0, error) && beam_start (ops, st, &w, prompt, P, opt, error);
  steps += ok;
  for (int pos = P; ok && pos < P + max_gen; pos++) {
    if (cancelled (opt, pos, error)) {
      ok = FALSE;
      break;
    }
    for (int b = 0; b < w.k; b++)
      w.last[b] = w.prefix[(gsize) b * w.cap + plen - 1];
    gboolean all_done = FALSE;
    ok = ops->step (st, w.last, w.k, 1, pos, w.logits, error)
        && beam_candidates (&w, pos, opt, error)
        && beam_select (ops, st, &w, plen, opt, &all_done, error);
    steps += ok;
    plen += ok;
    if (ok && all_done)
      break;
  }
  if (ok)
    beam_finish (&w, P, plen, opt, out_ids, out_score);
  if (out_steps)
    *out_steps = steps;
  beam_work_free (&w);
  return ok;
}

static gboolean
cpu_step (gpointer st, const gint32 *tokens, int n_beams, int n_tokens, int start_pos, float *logits,
    GError **error)
{
  return canary_decoder_step (st, tokens, n_beams, n_tokens, start_pos, logits, error);
}

static gboolean
cpu_reorder (gpointer st, const int *parent, int n_beams, GError **error)
{
  return canary_decoder_reorder (st, parent, n_beams, error);
}

gboolean
canary_beam_search (canary_decoder_state *st, const gint32 *prompt, int P, const canary_beam_options *opt,
    GArray *out_ids, double *out_score, int *out_steps, GError **error)
{
  g_return_val_if_fail (st != NULL, FALSE);
  const canary_decoder *dec = canary_decoder_state_decoder (st);
  const canary_step_ops ops = {
    .step = cpu_step,
    .reorder = cpu_reorder,
    .vocab = canary_decoder_vocab (dec),
    .max_beam = canary_decoder_state_max_beam (st),
    .max_seq_len = canary_decoder_max_seq_len (dec),
    .pad_id = canary_decoder_state_pad (st),
  };
  return canary_beam_search_ops (&ops, st, prompt, P, opt, out_ids, out_score, out_steps, error);
}
