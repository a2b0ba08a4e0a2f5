/* gst-canary — decoder and beam-search tests.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Ground truth: tests/fixtures/<model>/<clip>/ written by tests/reference/make_fixtures.py from NeMo
 * itself. The decoder is fed NeMo's own encoder output (enc.npy, after the encoder→decoder
 * projection) so it is tested independently of the encoder:
 *   - teacher-forced log-probs (prompt + beam1_ids) vs tf_logprobs.npy;
 *   - beam-1 and beam-4 ids vs beam1_ids.npy / beam4_ids.npy (identical);
 *   - incremental K/V-cache decoding vs full recomputation on the same sequence.
 * Fixture-independent checks (beam reordering of caches, the max_sequence_length limit, cancel,
 * shape validation, bad arguments) run on the in-memory "tiny" model of tools/random_model.h.
 */
#include <math.h>
#include <string.h>

#include "canary.h"
#include "formats/ckpt.h"
#include "formats/config.h"
#include "search.h"
#include "cpu/decoder.h"
#include "fixture.h"
#include "formats/tar.h"
#include "npy.h"
#include "random_model.h"
#include "testutil.h"
#include "text/tokenizer.h"

/* Teacher-forced log-probs, FP32 here vs FP32 in NeMo: the same operations in a different summation
 * order (BLAS blocking, LayerNorm/softmax reductions). The fixtures' random heads are made decisive,
 * so logits and log-probs reach ~±230, where one float ulp is 1.5e-5; a log-prob (logit − logsumexp)
 * inherits that absolute error even when it is near 0. Observed: at most 7.3e-5 (≈5 ulps), on every
 * model and clip. A real error (mask, position, scale, LayerNorm, cache) shows at 1e-2 and above. */
#define TF_TOL 1e-4
/* Incremental (K/V cache) vs full recomputation, on logits of the same scale: identical arithmetic
 * except that one-row steps use gemv where the full pass uses gemm (another summation order).
 * Observed: at most 6.1e-5. */
#define INCR_TOL 1e-4

/* ----------------------------------------------------------------------------------------------
 * Fixture models
 * ---------------------------------------------------------------------------------------------- */

/* A fixture model with what the decoder tests need on top: tokenizer, decoder, special ids. */
typedef struct {
  fixture_model model;
  canary_tokenizer *tok;
  canary_decoder *dec;
  int eos, pad;
} decoder_fixture;

static void
decoder_fixture_free (decoder_fixture *m)
{
  if (!m)
    return;
  canary_decoder_free (m->dec);
  canary_tokenizer_free (m->tok);
  fixture_model_close (&m->model);
  g_free (m);
}

/* The model as the engine would load it: archive → checkpoint + config → tokenizer → decoder.
 * NULL (test skipped) when the fixture has not been generated. */
static decoder_fixture *
decoder_fixture_load (const char *name)
{
  decoder_fixture *m = g_new0 (decoder_fixture, 1);
  if (!fixture_model_open_or_fail (name, &m->model)) {
    g_free (m);
    return NULL;
  }
  GError *err = NULL;
  m->tok = canary_tokenizer_new (m->model.cfg, m->model.ar, &err);
  g_assert_no_error (err);
  m->dec = canary_decoder_new (m->model.cfg, m->model.ck, &err);
  g_assert_no_error (err);
  m->eos = canary_tokenizer_eos (m->tok);
  m->pad = canary_tokenizer_pad (m->tok);
  g_assert_cmpint (m->eos, >=, 0);
  g_assert_cmpint (m->pad, >=, 0);
  return m;
}

/* One clip's inputs and NeMo's outputs. */
typedef struct {
  char *name;
  float *enc;       /* [T, H] */
  int T, enc_len;
  GArray *prompt, *beam1, *beam4;  /* gint32 */
  npy_array tf;     /* [S, V] */
} clip_data;

static clip_data *
clip_load (const char *model, const char *clip, int H)
{
  clip_data *c = g_new0 (clip_data, 1);
  c->name = g_strdup (clip);
  npy_array enc;
  fixture_load_npy (model, clip, "enc.npy", &enc);
  /* [T, H] (also accepts a leading batch dimension of 1). */
  g_assert_cmpint (enc.ndim, >=, 2);
  g_assert_cmpint (enc.shape[enc.ndim - 1], ==, H);
  c->T = (int) enc.shape[enc.ndim - 2];
  g_assert_cmpuint (enc.numel, ==, (gsize) c->T * H);
  c->enc = npy_to_f32 (&enc);
  npy_array_clear (&enc);
  npy_array el;
  fixture_load_npy (model, clip, "enc_len.npy", &el);
  c->enc_len = (int) npy_get_i64 (&el, 0);
  npy_array_clear (&el);
  c->prompt = fixture_load_ids (model, clip, "prompt_ids.npy");
  c->beam1 = fixture_load_ids (model, clip, "beam1_ids.npy");
  c->beam4 = fixture_load_ids (model, clip, "beam4_ids.npy");
  fixture_load_npy (model, clip, "tf_logprobs.npy", &c->tf);
  return c;
}

static void
clip_free (clip_data *c)
{
  g_free (c->name);
  g_free (c->enc);
  g_array_unref (c->prompt);
  g_array_unref (c->beam1);
  g_array_unref (c->beam4);
  npy_array_clear (&c->tf);
  g_free (c);
}

static canary_decoder_state *
state_for_clip (const decoder_fixture *m, const clip_data *c, int max_beam)
{
  GError *err = NULL;
  canary_decoder_state *st = canary_decoder_state_new (m->dec, max_beam, 0, c->T, m->pad, &err);
  g_assert_no_error (err);
  g_assert_true (canary_decoder_set_memory (st, c->enc, c->T, c->enc_len, &err));
  g_assert_no_error (err);
  return st;
}

/* prompt + beam1 ids, cut at max_sequence_length: the teacher-forcing input. */
static GArray *
teacher_sequence (const decoder_fixture *m, const clip_data *c)
{
  GArray *seq = g_array_new (FALSE, FALSE, sizeof (gint32));
  g_array_append_vals (seq, c->prompt->data, c->prompt->len);
  g_array_append_vals (seq, c->beam1->data, c->beam1->len);
  g_array_set_size (seq, MIN (seq->len, (guint) canary_decoder_max_seq_len (m->dec)));
  return seq;
}

typedef void (*clip_test_func) (const decoder_fixture *m, const clip_data *c, const char *model);

/* Runs `fn` on every clip of the model named by `data`. */
static void
for_each_clip (const char *model, clip_test_func fn)
{
  decoder_fixture *m = decoder_fixture_load (model);
  if (!m)
    return;
  GPtrArray *clips = fixture_list_clips (model, "enc.npy");
  g_assert_cmpuint (clips->len, >, 0);
  for (guint i = 0; i < clips->len; i++) {
    clip_data *c = clip_load (model, g_ptr_array_index (clips, i), canary_decoder_hidden (m->dec));
    fn (m, c, model);
    clip_free (c);
  }
  g_ptr_array_unref (clips);
  decoder_fixture_free (m);
}

/* ----------------------------------------------------------------------------------------------
 * Against NeMo
 * ---------------------------------------------------------------------------------------------- */

static void
clip_teacher_forcing (const decoder_fixture *m, const clip_data *c, const char *model)
{
  const int V = canary_decoder_vocab (m->dec), P = (int) c->prompt->len;
  g_assert_cmpint (c->tf.ndim, ==, 2);
  g_assert_cmpint (c->tf.shape[1], ==, V);
  GArray *seq = teacher_sequence (m, c);
  const int n = (int) seq->len;
  /* Row s of tf_logprobs is position P-1+s; the fixture keeps at most n-P+1 rows (maybe fewer). */
  const int S = (int) c->tf.shape[0];
  g_assert_cmpint (S, >=, 1);
  g_assert_cmpint (P - 1 + S, <=, n);

  canary_decoder_state *st = state_for_clip (m, c, 1);
  float *logits = g_new (float, (gsize) n * V), *lp = g_new (float, V);
  GError *err = NULL;
  g_assert_true (canary_decoder_step_all (st, (const gint32 *) seq->data, n, 0, logits, &err));
  g_assert_no_error (err);

  const float *ref = c->tf.data;
  double max_err = 0.0;
  for (int s = 0; s < S; s++) {
    canary_log_softmax (logits + (gsize) (P - 1 + s) * V, V, lp);
    for (int v = 0; v < V; v++)
      max_err = MAX (max_err, fabs ((double) lp[v] - ref[(gsize) s * V + v]));
  }
  g_test_message ("%s/%s: %d teacher-forced rows, max |log-prob - NeMo| = %.3g", model, c->name, S, max_err);
  g_assert_cmpfloat (max_err, <=, TF_TOL);

  g_free (lp);
  g_free (logits);
  g_array_unref (seq);
  canary_decoder_state_free (st);
}

static void
clip_beam (const decoder_fixture *m, const clip_data *c, const char *model, int beam, const GArray *want)
{
  canary_decoder_state *st = state_for_clip (m, c, beam);
  canary_beam_options o = {
    .beam_size = beam,
    .length_penalty = m->model.cfg->length_penalty,
    .max_len_total = canary_beam_max_len_total (canary_decoder_max_seq_len (m->dec), c->T,
        m->model.cfg->max_generation_delta),
    .eos_id = m->eos,
    .pad_id = m->pad,
  };
  /* The generator's cap as NeMo computed it for this clip (manifest max_tokens = cap − P + 1). */
  char *mpath = fixture_path ("manifest.json", NULL);
  char *key = g_strdup_printf ("models.%s.clips.%s.max_tokens", model, c->name);
  GError *err = NULL;
  tu_json *manifest = tu_json_load (mpath, &err);
  g_assert_no_error (err);
  const tu_json *max_tokens = tu_json_path (manifest, key);
  if (max_tokens)
    g_assert_cmpint (tu_json_int (max_tokens), ==, o.max_len_total - (int) c->prompt->len + 1);
  tu_json_free (manifest);
  g_free (key);
  g_free (mpath);

  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  double score = 0.0;
  int steps = 0;
  g_assert_true (canary_beam_search (st, (const gint32 *) c->prompt->data, (int) c->prompt->len, &o, ids, &score,
      &steps, &err));
  g_assert_no_error (err);
  char *what = g_strdup_printf ("%s/%s beam %d", model, c->name, beam);
  g_test_message ("%s: %u ids, %d decoder steps, score %.4f", what, ids->len, steps, score);
  assert_ids_equal (ids, want, what);
  g_free (what);
  g_array_unref (ids);
  canary_decoder_state_free (st);
}

static void
clip_beam1 (const decoder_fixture *m, const clip_data *c, const char *model)
{
  clip_beam (m, c, model, 1, c->beam1);
}

static void
clip_beam4 (const decoder_fixture *m, const clip_data *c, const char *model)
{
  clip_beam (m, c, model, 4, c->beam4);
}

/* The prompt in one step, then one token per step from the cache, against one full pass. */
static void
clip_incremental (const decoder_fixture *m, const clip_data *c, const char *model)
{
  const int V = canary_decoder_vocab (m->dec), P = (int) c->prompt->len;
  GArray *seq = teacher_sequence (m, c);
  const int n = (int) seq->len;
  const gint32 *tok = (const gint32 *) seq->data;
  canary_decoder_state *st = state_for_clip (m, c, 1);
  float *full = g_new (float, (gsize) n * V), *one = g_new (float, V);
  GError *err = NULL;
  g_assert_true (canary_decoder_step_all (st, tok, n, 0, full, &err));
  g_assert_no_error (err);

  double max_err = 0.0;
  g_assert_true (canary_decoder_step (st, tok, 1, P, 0, one, &err));
  for (int v = 0; v < V; v++)
    max_err = MAX (max_err, fabs ((double) one[v] - full[(gsize) (P - 1) * V + v]));
  for (int pos = P; pos < n; pos++) {
    g_assert_true (canary_decoder_step (st, tok + pos, 1, 1, pos, one, &err));
    g_assert_no_error (err);
    for (int v = 0; v < V; v++)
      max_err = MAX (max_err, fabs ((double) one[v] - full[(gsize) pos * V + v]));
  }
  g_assert_cmpint (canary_decoder_state_length (st), ==, n);
  g_test_message ("%s/%s: %d positions, max |incremental - full| logit = %.3g", model, c->name, n, max_err);
  g_assert_cmpfloat (max_err, <=, INCR_TOL);
  g_free (one);
  g_free (full);
  g_array_unref (seq);
  canary_decoder_state_free (st);
}

static void
test_teacher_forcing (gconstpointer data)
{
  for_each_clip (data, clip_teacher_forcing);
}

static void
test_beam1 (gconstpointer data)
{
  for_each_clip (data, clip_beam1);
}

static void
test_beam4 (gconstpointer data)
{
  for_each_clip (data, clip_beam4);
}

static void
test_incremental (gconstpointer data)
{
  for_each_clip (data, clip_incremental);
}

/* ----------------------------------------------------------------------------------------------
 * Fixture-independent (synthetic tiny model)
 * ---------------------------------------------------------------------------------------------- */

#define SYN_T 24
#define SYN_PAD 2
#define SYN_EOS 3

typedef struct {
  canary_config *cfg;
  canary_ckpt *ck;
  canary_decoder *dec;
  float *enc;  /* [SYN_T, H] */
} synth_model;

static synth_model *
synth_load (void)
{
  synth_model *s = g_new0 (synth_model, 1);
  GError *err = NULL;
  g_assert_true (canary_synth_build ("tiny", 7, &s->cfg, &s->ck, &err));
  g_assert_no_error (err);
  s->dec = canary_decoder_new (s->cfg, s->ck, &err);
  g_assert_no_error (err);
  const int H = canary_decoder_hidden (s->dec);
  s->enc = g_new (float, (gsize) SYN_T * H);
  GRand *r = g_rand_new_with_seed (11);
  for (int i = 0; i < SYN_T * H; i++)
    s->enc[i] = (float) g_rand_double_range (r, -1.0, 1.0);
  g_rand_free (r);
  return s;
}

static void
synth_free (synth_model *s)
{
  canary_decoder_free (s->dec);
  canary_ckpt_free (s->ck);
  canary_config_free (s->cfg);
  g_free (s->enc);
  g_free (s);
}

static canary_decoder_state *
synth_state (const synth_model *s, int max_beam, int enc_len)
{
  GError *err = NULL;
  canary_decoder_state *st = canary_decoder_state_new (s->dec, max_beam, 0, SYN_T, SYN_PAD, &err);
  g_assert_no_error (err);
  g_assert_true (canary_decoder_set_memory (st, s->enc, SYN_T, enc_len, &err));
  g_assert_no_error (err);
  return st;
}

/* Hypotheses forked and regrouped by canary_decoder_reorder (shared parents, swaps, a hypothesis
 * dropped) must score exactly like their token histories recomputed from scratch. */
static void
test_reorder (void)
{
  synth_model *s = synth_load ();
  const int V = canary_decoder_vocab (s->dec), K = 3;
  canary_decoder_state *st = synth_state (s, K, 20), *ref = synth_state (s, 1, 20);
  const gint32 prompt[] = { 7, 4, 9, 12 };
  const int P = G_N_ELEMENTS (prompt);
  /* Token fed to each new hypothesis at each step, and each step's parents. */
  const gint32 feed[3][3] = { { 30, 31, 32 }, { 40, 41, 42 }, { 50, 51, 52 } };
  const int parents[3][3] = { { 0, 0, 0 }, { 2, 0, 2 }, { 1, 2, 0 } };
  gint32 hist[3][8], next_hist[3][8];
  float *logits = g_new (float, (gsize) K * V), *full = g_new (float, (gsize) 8 * V);
  GError *err = NULL;

  g_assert_true (canary_decoder_step (st, prompt, 1, P, 0, logits, &err));
  g_assert_no_error (err);
  memcpy (hist[0], prompt, sizeof prompt);
  int len = P;
  for (int step = 0; step < 3; step++) {
    g_assert_true (canary_decoder_reorder (st, parents[step], K, &err));
    g_assert_no_error (err);
    for (int b = 0; b < K; b++) {
      memcpy (next_hist[b], hist[parents[step][b]], sizeof (gint32) * len);
      next_hist[b][len] = feed[step][b];
    }
    memcpy (hist, next_hist, sizeof hist);
    len++;
    g_assert_true (canary_decoder_step (st, feed[step], K, 1, len - 1, logits, &err));
    g_assert_no_error (err);
    for (int b = 0; b < K; b++) {
      g_assert_true (canary_decoder_step_all (ref, hist[b], len, 0, full, &err));
      double d = max_abs_diff (logits + (gsize) b * V, full + (gsize) (len - 1) * V, V, NULL);
      g_assert_cmpfloat (d, <=, INCR_TOL);
    }
  }
  /* Shrinking to one hypothesis keeps its history. */
  const int keep[] = { 2 };
  g_assert_true (canary_decoder_reorder (st, keep, 1, &err));
  const gint32 last = 60;
  hist[2][len] = last;
  g_assert_true (canary_decoder_step (st, &last, 1, 1, len, logits, &err));
  g_assert_true (canary_decoder_step_all (ref, hist[2], len + 1, 0, full, &err));
  g_assert_cmpfloat (max_abs_diff (logits, full + (gsize) len * V, V, NULL), <=, INCR_TOL);

  g_free (logits);
  g_free (full);
  canary_decoder_state_free (ref);
  canary_decoder_state_free (st);
  synth_free (s);
}

/* Positions come from the checkpoint's table of max_sequence_length rows; NeMo has no extension,
 * so anything at or past the end is an error, not a crash or a wrap-around. */
static void
test_max_seq_len (void)
{
  synth_model *s = synth_load ();
  const int V = canary_decoder_vocab (s->dec), L = canary_decoder_max_seq_len (s->dec);
  canary_decoder_state *st = synth_state (s, 1, SYN_T);
  gint32 *tok = g_new0 (gint32, L + 1);
  for (int i = 0; i <= L; i++)
    tok[i] = 5 + i % 40;
  float *logits = g_new (float, (gsize) (L + 1) * V);
  GError *err = NULL;

  /* Exactly max_seq_len positions are fine... */
  g_assert_true (canary_decoder_step_all (st, tok, L, 0, logits, &err));
  g_assert_no_error (err);
  /* ...one more is not, whether appended or in one call. */
  g_assert_false (canary_decoder_step (st, tok, 1, 1, L, logits, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_test_message ("%s", err->message);
  g_clear_error (&err);
  g_assert_false (canary_decoder_step_all (st, tok, L + 1, 0, logits, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);

  /* The beam search refuses a cap beyond the table (its last fed position is cap - 1). */
  canary_beam_options o = { .beam_size = 1, .max_len_total = L + 1, .eos_id = SYN_EOS, .pad_id = SYN_PAD };
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  g_assert_false (canary_beam_search (st, tok, 4, &o, ids, NULL, NULL, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);
  /* At the cap the search stops by itself: P + generated <= cap + 1, never feeding position cap. */
  o.max_len_total = 12;
  int steps = 0;
  g_assert_true (canary_beam_search (st, tok, 4, &o, ids, NULL, &steps, &err));
  g_assert_no_error (err);
  g_assert_cmpint (steps, <=, 12 - 4 + 1);
  g_assert_cmpuint (ids->len, <=, 12 - 4 + 1);
  g_assert_cmpint (canary_decoder_state_length (st), <=, 12);
  /* NeMo's cap helper: min(max_seq_len, src_len + delta), delta -1 = no source cap. */
  g_assert_cmpint (canary_beam_max_len_total (L, 10, 50), ==, MIN (L, 60));
  g_assert_cmpint (canary_beam_max_len_total (L, 10, -1), ==, L);
  g_assert_cmpint (canary_beam_max_len_total (L, 1000, 50), ==, L);

  g_array_unref (ids);
  g_free (logits);
  g_free (tok);
  canary_decoder_state_free (st);
  synth_free (s);
}

static gpointer
raise_flag (gpointer data)
{
  g_usleep (20 * 1000);
  g_atomic_int_set ((volatile gint *) data, 1);
  return NULL;
}

/* A raised cancel flag stops the search before its next decoder call with CANARY_ERROR_CANCELLED,
 * and the state stays usable. */
static void
test_cancel (void)
{
  synth_model *s = synth_load ();
  const int L = canary_decoder_max_seq_len (s->dec);
  canary_decoder_state *st = synth_state (s, 4, SYN_T);
  const gint32 prompt[] = { 7, 4, 9, 12 };
  volatile gint cancel = 1;
  canary_beam_options o = { .beam_size = 4, .max_len_total = L, .eos_id = SYN_EOS, .pad_id = SYN_PAD,
                            .cancel = &cancel };
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32)), *again = g_array_new (FALSE, FALSE, sizeof (gint32));
  GError *err = NULL;
  int steps = -1;

  g_assert_false (canary_beam_search (st, prompt, 4, &o, ids, NULL, &steps, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_CANCELLED);
  g_clear_error (&err);
  g_assert_cmpint (steps, ==, 0);
  g_assert_cmpuint (ids->len, ==, 0);

  /* Raised from another thread while running (the synthetic model rarely emits EOS, so the
   * uncancelled search runs to the cap). */
  g_atomic_int_set (&cancel, 0);
  int full_steps = 0;
  g_assert_true (canary_beam_search (st, prompt, 4, &o, again, NULL, &full_steps, &err));
  g_assert_no_error (err);
  GThread *t = g_thread_new ("cancel", raise_flag, (gpointer) &cancel);
  gboolean ok = canary_beam_search (st, prompt, 4, &o, ids, NULL, &steps, &err);
  g_thread_join (t);
  if (ok) {
    /* The search finished inside 20 ms: nothing to check but the result. */
    g_assert_no_error (err);
    g_test_message ("search finished (%d steps) before the flag was raised", steps);
  } else {
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_CANCELLED);
    g_clear_error (&err);
    g_test_message ("cancelled after %d of %d steps", steps, full_steps);
    g_assert_cmpint (steps, <, full_steps);
  }

  /* After a cancel the same state decodes the same result as before. */
  g_atomic_int_set (&cancel, 0);
  g_array_set_size (ids, 0);
  g_assert_true (canary_beam_search (st, prompt, 4, &o, ids, NULL, NULL, &err));
  g_assert_no_error (err);
  assert_ids_equal (ids, again, "after cancel");

  g_array_unref (ids);
  g_array_unref (again);
  canary_decoder_state_free (st);
  synth_free (s);
}

/* Every config/checkpoint disagreement is an error that names the tensor or config key. */
static void
test_shapes (void)
{
  synth_model *s = synth_load ();
  const struct {
    int *field;
    int delta;
    const char *needle;
  } cases[] = {
    { &s->cfg->dec_inner, 4, "third_sub_layer.dense_in.weight" },
    { &s->cfg->dec_hidden, 8, "log_softmax.mlp.layer0.weight" },
    { &s->cfg->dec_max_seq_len, 1, "position_embedding.pos_enc" },
    { &s->cfg->dec_layers, 1, "layers.2." },
    { &s->cfg->dec_layers, -1, "num_layers" },
    { &s->cfg->dec_heads, -3, "num_attention_heads" },
    { &s->cfg->vocab_size, 8, "num_classes" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    const int saved = *cases[i].field;
    *cases[i].field = (saved > 0 ? saved : canary_decoder_vocab (s->dec)) + cases[i].delta;
    GError *err = NULL;
    canary_decoder *d = canary_decoder_new (s->cfg, s->ck, &err);
    g_assert_null (d);
    g_assert_nonnull (err);
    g_test_message ("%s", err->message);
    g_assert_nonnull (strstr (err->message, cases[i].needle));
    g_clear_error (&err);
    *cases[i].field = saved;
  }
  synth_free (s);
}

/* Bad arguments are errors, never crashes. */
static void
test_bad_arguments (void)
{
  synth_model *s = synth_load ();
  const int V = canary_decoder_vocab (s->dec);
  GError *err = NULL;
  canary_decoder_state *st = canary_decoder_state_new (s->dec, 2, 8, SYN_T, SYN_PAD, &err);
  g_assert_no_error (err);
  float *logits = g_new (float, (gsize) 16 * V);
  gint32 tok[16] = { 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19 };

#define EXPECT_FAIL(call)                                                                             \
  do {                                                                                                \
    g_assert_false (call);                                                                            \
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);                                \
    g_clear_error (&err);                                                                             \
  } while (0)

  EXPECT_FAIL (canary_decoder_step (st, tok, 1, 2, 0, logits, &err));  /* before set_memory */
  EXPECT_FAIL (canary_decoder_set_memory (st, s->enc, SYN_T + 1, SYN_T, &err));
  EXPECT_FAIL (canary_decoder_set_memory (st, s->enc, SYN_T, SYN_T + 1, &err));
  g_assert_true (canary_decoder_set_memory (st, s->enc, SYN_T, SYN_T, &err));
  EXPECT_FAIL (canary_decoder_step (st, tok, 1, 9, 0, logits, &err));   /* > max_tokens */
  EXPECT_FAIL (canary_decoder_step (st, tok, 3, 1, 0, logits, &err));   /* > max_beam */
  tok[1] = V;
  EXPECT_FAIL (canary_decoder_step (st, tok, 1, 2, 0, logits, &err));   /* id out of range */
  tok[1] = -1;
  EXPECT_FAIL (canary_decoder_step (st, tok, 1, 2, 0, logits, &err));
  tok[1] = 5;
  g_assert_true (canary_decoder_step (st, tok, 1, 4, 0, logits, &err));
  EXPECT_FAIL (canary_decoder_step (st, tok, 1, 1, 5, logits, &err));   /* gap in the cache */
  EXPECT_FAIL (canary_decoder_step (st, tok, 2, 1, 4, logits, &err));   /* hypothesis count changed */
  EXPECT_FAIL (canary_decoder_reorder (st, (const int[]){ 1 }, 1, &err));  /* parent out of range */
  EXPECT_FAIL (canary_decoder_reorder (st, (const int[]){ 0, 0, 0 }, 3, &err));  /* > max_beam */
  g_assert_true (canary_decoder_step (st, tok, 1, 1, 2, logits, &err));  /* rewinding is allowed */
  g_assert_cmpint (canary_decoder_state_length (st), ==, 3);

  canary_beam_options o = { .beam_size = 3, .max_len_total = 8, .eos_id = SYN_EOS, .pad_id = SYN_PAD };
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  EXPECT_FAIL (canary_beam_search (st, tok, 2, &o, ids, NULL, NULL, &err));  /* beam > state */
  o.beam_size = 1;
  o.pad_id = SYN_PAD + 1;
  EXPECT_FAIL (canary_beam_search (st, tok, 2, &o, ids, NULL, NULL, &err));  /* PAD differs */
  o.pad_id = SYN_PAD;
  o.length_penalty = -1.0;
  EXPECT_FAIL (canary_beam_search (st, tok, 2, &o, ids, NULL, NULL, &err));
  o.length_penalty = 0.0;
  EXPECT_FAIL (canary_beam_search (st, tok, 0, &o, ids, NULL, NULL, &err));  /* empty prompt */
  EXPECT_FAIL (canary_beam_search (st, tok, 9, &o, ids, NULL, NULL, &err));  /* prompt > max_tokens */
  g_assert_cmpuint (ids->len, ==, 0);
#undef EXPECT_FAIL

  g_array_unref (ids);
  g_free (logits);
  canary_decoder_state_free (st);
  synth_free (s);
}

/* Frames past enc_len are masked: changing them must not change anything. */
static void
test_encoder_mask (void)
{
  synth_model *s = synth_load ();
  const int V = canary_decoder_vocab (s->dec), H = canary_decoder_hidden (s->dec), valid = 15;
  canary_decoder_state *st = synth_state (s, 1, valid);
  const gint32 tok[] = { 7, 4, 9, 12, 40 };
  float *a = g_new (float, (gsize) 5 * V), *b = g_new (float, (gsize) 5 * V);
  GError *err = NULL;
  g_assert_true (canary_decoder_step_all (st, tok, 5, 0, a, &err));
  for (int i = valid * H; i < SYN_T * H; i++)
    s->enc[i] = 100.0f;
  g_assert_true (canary_decoder_set_memory (st, s->enc, SYN_T, valid, &err));
  g_assert_true (canary_decoder_step_all (st, tok, 5, 0, b, &err));
  g_assert_no_error (err);
  g_assert_cmpfloat (max_abs_diff (a, b, (gsize) 5 * V, NULL), ==, 0.0);
  g_free (a);
  g_free (b);
  canary_decoder_state_free (st);
  synth_free (s);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (fixture_clip_models); i++) {
    const char *m = fixture_clip_models[i];
    char *p;
    p = g_strdup_printf ("/decoder/%s/teacher-forcing", m);
    g_test_add_data_func (p, m, test_teacher_forcing);
    g_free (p);
    p = g_strdup_printf ("/decoder/%s/incremental-equals-full", m);
    g_test_add_data_func (p, m, test_incremental);
    g_free (p);
    p = g_strdup_printf ("/decoder/%s/beam1", m);
    g_test_add_data_func (p, m, test_beam1);
    g_free (p);
    p = g_strdup_printf ("/decoder/%s/beam4", m);
    g_test_add_data_func (p, m, test_beam4);
    g_free (p);
  }
  g_test_add_func ("/decoder/reorder", test_reorder);
  g_test_add_func ("/decoder/max-seq-len", test_max_seq_len);
  g_test_add_func ("/decoder/cancel", test_cancel);
  g_test_add_func ("/decoder/shapes", test_shapes);
  g_test_add_func ("/decoder/bad-arguments", test_bad_arguments);
  g_test_add_func ("/decoder/encoder-mask", test_encoder_mask);
  return g_test_run ();
}
