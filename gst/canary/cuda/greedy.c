/* gst-canary — beam-1 decoding on the GPU: the argmax runs on the device and feeds the next
 * step directly, and the one-token step is captured once as a CUDA graph and replayed; the host
 * only reads the 8-byte choice per token to know when to stop.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Same result as search.c's canary_beam_search with beam_size 1 (NeMo's default path): the prompt
 * step's argmax is always kept (an EOS there does not end the search, a NeMo quirk), then one
 * token per step until EOS/PAD or the generation cap; trailing EOS/PAD are stripped. */
#include "cuda/internal.h"
#include "util.h"

#include <math.h>

#include "canary.h"
#include "cuda/device.h"

static gboolean
is_end (int tok, const canary_beam_options *opt)
{
  return tok == opt->eos_id || tok == opt->pad_id;
}

/* Waits for the step and reads its choice; a NaN row (no argmax) is an error, as on the CPU. */
static gboolean
read_choice (canary_cuda_state *st, int pos, ck_choice *out, GError **error)
{
  if (!canary_cuda_ok (cudaMemcpyAsync (st->h_choice, cuda_region (st, CR_CHOICE), sizeof (ck_choice),
          cudaMemcpyDeviceToHost, st->stream), "reading the chosen token", error)
      || !canary_cuda_ok (cudaStreamSynchronize (st->stream), "running the decoder step", error))
    return FALSE;
  *out = *st->h_choice;
  if (out->token < 0 || !isfinite (out->logp)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
        "decoder produced non-finite logits at position %d%s", pos,
        st->model->w->dims.dtype == CANARY_CUDA_F16 ? " (an FP16 overflow? try precision=fp32)" : "");
    return FALSE;
  }
  return TRUE;
}

/* The one-token step: captured into a graph the first time (after one plain run, which also
 * settles cuBLASLt's algorithm choices outside the capture), replayed after. A capture or an
 * instantiation that fails is not an error of the transcription: the graph is destroyed, the
 * failure logged once, and this state runs the plain launch list from then on. */
static gboolean
one_token_step (canary_cuda_state *st, gboolean use_graph, GError **error)
{
  use_graph = use_graph && !st->graph_failed;
  if (use_graph && st->graph_exec)
    return canary_cuda_ok (cudaGraphLaunch (st->graph_exec, st->stream), "replaying the decoder step", error);
  g_array_set_size (st->launches, 0);
  if (!canary_cuda_step_launches (st->model->w, &st->plan, (guintptr) st->model->dev, (guintptr) st->arena, 1, 1,
          FALSE, TRUE, st->launches, error)
      || !canary_cuda_exec_list (st, st->launches, error))
    return FALSE;
  if (!use_graph)
    return TRUE;
  /* Capture the same list: a captured launch is recorded, not run, so this step ran once. */
  GError *why = NULL;
  cudaGraph_t graph = NULL;
  gboolean ok = canary_cuda_ok (cudaStreamBeginCapture (st->stream, cudaStreamCaptureModeThreadLocal),
      "starting the capture", &why);
  if (ok) {
    ok = canary_cuda_exec_list (st, st->launches, &why);
    cudaError_t end = cudaStreamEndCapture (st->stream, &graph);
    ok = ok && canary_cuda_ok (end, "ending the capture", &why);
  }
  if (ok)
    ok = canary_cuda_ok (cudaGraphInstantiate (&st->graph_exec, graph, 0), "instantiating the decoder graph", &why);
  if (ok) {
    st->graph = graph;
    return TRUE;
  }
  if (graph)
    cudaGraphDestroy (graph);
  st->graph_exec = NULL;
  (void) cudaGetLastError ();  /* capture errors are not sticky; clear the last one */
  st->graph_failed = TRUE;
  CANARY_WARN ("CUDA graph capture of the decoder step failed (%s); this stream runs the step's plain "
      "launch list instead", why ? why->message : "unknown error");
  g_clear_error (&why);
  return TRUE;
}

gboolean
canary_cuda_greedy (canary_cuda_state *st, const gint32 *prompt, int P, const canary_beam_options *opt,
    gboolean use_graph, GArray *out_ids, double *out_score, int *out_steps, GError **error)
{
  g_return_val_if_fail (st && prompt && opt && out_ids, FALSE);
  const canary_cuda_dims *m = &st->model->w->dims;
  if (P < 1 || P > m->max_len || opt->max_len_total < 1 || opt->max_len_total > m->max_len || opt->eos_id < 0
      || opt->eos_id >= m->V || opt->pad_id != st->pad_id) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "CUDA greedy search: prompt of %d tokens, cap %d, EOS %d, PAD %d (state PAD %d, max_sequence_length %d)",
        P, opt->max_len_total, opt->eos_id, opt->pad_id, st->pad_id, m->max_len);
    return FALSE;
  }
  const int max_gen = MAX (0, opt->max_len_total - P);
  GArray *gen = g_array_new (FALSE, FALSE, sizeof (gint32));
  double score = 0.0;
  int steps = 0;
  ck_choice c;
  /* The prompt step: plain launches, the argmax advances the device position to P. */
  gboolean ok = canary_cuda_run_call (st, prompt, 1, P, 0, FALSE, TRUE, error) && read_choice (st, P - 1, &c, error);
  if (ok) {
    g_array_append_val (gen, c.token);
    score += c.logp;
    steps = 1;
  }
  for (int pos = P; ok && pos < P + max_gen; pos++) {
    if (opt->cancel && g_atomic_int_get (opt->cancel)) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_CANCELLED, "greedy search cancelled at position %d", pos);
      ok = FALSE;
      break;
    }
    ok = one_token_step (st, use_graph, error) && read_choice (st, pos, &c, error);
    if (!ok)
      break;
    g_array_append_val (gen, c.token);
    score += c.logp;
    steps++;
    st->length = pos + 1;
    if (is_end (c.token, opt))
      break;
  }
  if (ok) {
    int end = (int) gen->len;
    while (end > 0 && is_end (g_array_index (gen, gint32, end - 1), opt))
      end--;
    g_array_append_vals (out_ids, gen->data, end);
    if (out_score)
      *out_score = score;
  }
  if (out_steps)
    *out_steps = steps;
  g_array_unref (gen);
  return ok;
}
