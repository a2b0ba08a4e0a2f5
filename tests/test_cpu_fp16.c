/* gst-canary — precision=fp16 on the CPU (issue 14): every fixture model × clip with the
 * encoder's and decoder's GEMM weights in FP16 (canary_encoder_use_f16 / canary_decoder_use_f16,
 * FP32 sums), against NeMo's FP32 dumps. Run twice by meson: on the AVX2/F16C kernels where the
 * CPU has them, and with CANARY_ENCODER_SIMD=0 on the portable scalar kernels.
 *
 * The bounds, derived from FP16's unit roundoff u = 2^-11 (round to nearest: each stored weight
 * is w(1 + δ), |δ| <= u) — a first-order model, stated so a failure says which assumption broke:
 *
 *  - A GEMM y = Σ_k w_k x_k then carries |Δy| <= u Σ_k |w_k x_k|; assuming no cancellation
 *    beyond the output's own scale (Σ|w x| ≈ |y|, κ = 1), a relative error of at most u.
 *  - Relative errors of GEMMs in series add (to first order); branches that run side by side
 *    (q, k, v, linear_pos) count once. LayerNorm renormalises, so a residual stream of
 *    magnitude max(1, |y|) carries at most u · G relative, G the GEMMs on the longest path.
 *  - Encoder: G_enc = (n_stages − 1) pointwise convs + pre_encode.out + 8 per Conformer layer
 *    (FF1 2, attention in + out 2, conv pw1 + pw2 2, FF2 2) + the projection if any;
 *      bound_enc = ENC_TOL_FP32 + u · G_enc · max(1, max|NeMo|)
 *    (ENC_TOL_FP32 = 1e-4 relative, test_encoder's bound for the FP32 path).
 *  - Decoder (teacher forcing on NeMo's encoder output): G_dec = 7 per layer (self q/k/v, self
 *    out, cross q, cross out, FF in, FF out, and the cross K/V rounded to FP16 when stored: one
 *    more rounding in series after the K/V products, K and V side by side) + the head. The logits z move by at most
 *    u · G_dec · S, S the logit scale: the spread of a row's logits about their centre, half of
 *    max_v z_v − min_v z_v = half of NeMo's log-prob range in that row (the log-sum-exp shift
 *    does not change it). A log-prob z_v − logsumexp(z) moves by at most twice the largest
 *    logit change, so
 *      bound_tf = TF_TOL_FP32 + 2 · u · G_dec · S   (TF_TOL_FP32 = 1e-4, test_decoder's).
 *  - Beam-1 / beam-4 ids (our FP16 encoder, then our FP16 decoder, from NeMo's features) equal
 *    NeMo's; where they differ, NeMo's own top-2 margin at the first differing step (fixture_nemo_margin,
 *    the rule test_cuda_host applies to the CUDA emulator) must be below bound_tf: a near-tie
 *    that FP16 may flip.
 * The measured maxima are printed (g_test_message) and recorded in docs/cpu-fp16.md.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include <glib.h>
#include <math.h>
#include <string.h>

#include "backend.h"
#include "canary.h"
#include "cpu/gemm.h"
#include "cpu/decoder.h"
#include "cpu/encoder.h"
#include "fixture.h"
#include "search.h"
#include "text/tokenizer.h"

#define U16 (1.0 / 2048.0)  /* binary16's unit roundoff, 2^-11 */
#define ENC_TOL_FP32 1e-4
#define TF_TOL_FP32 1e-4

typedef struct {
  const char *model;
  fixture_model fm;
  canary_encoder *enc;
  canary_decoder *dec;
  int pad, eos;
  double worst_enc, worst_enc_bound, worst_tf, worst_tf_bound;
} fp16_model;

static int
enc_gemm_depth (const canary_config *cfg, const canary_encoder *enc)
{
  int stages = 0;
  for (int f = cfg->subsampling_factor; f > 1; f /= 2)
    stages++;
  const gboolean proj = canary_encoder_out_dim (enc) != cfg->enc_d_model;
  return (stages - 1) + 1 + 8 * cfg->enc_layers + (proj ? 1 : 0);
}

static gboolean
open_model (const char *model, fp16_model *m)
{
  memset (m, 0, sizeof *m);
  m->model = model;
  if (!fixture_model_open_or_fail (model, &m->fm))
    return FALSE;
  GError *err = NULL;
  m->enc = canary_encoder_new (m->fm.cfg, m->fm.ck, &err);
  g_assert_no_error (err);
  m->dec = canary_decoder_new (m->fm.cfg, m->fm.ck, &err);
  g_assert_no_error (err);
  g_assert_true (canary_encoder_use_f16 (m->enc, NULL, NULL, &err));
  g_assert_true (canary_decoder_use_f16 (m->dec, NULL, NULL, &err));
  g_assert_no_error (err);
  g_assert_cmpuint (canary_encoder_f16_elems (m->enc), >, 0);
  g_assert_cmpuint (canary_decoder_f16_elems (m->dec), >, 0);
  canary_tokenizer *tok = canary_tokenizer_new (m->fm.cfg, m->fm.ar, &err);
  g_assert_no_error (err);
  m->pad = canary_tokenizer_pad (tok);
  m->eos = canary_tokenizer_eos (tok);
  canary_tokenizer_free (tok);
  return TRUE;
}

static void
close_model (fp16_model *m)
{
  canary_decoder_free (m->dec);
  canary_encoder_free (m->enc);
  fixture_model_close (&m->fm);
}

/* Our FP16 encoder on NeMo's features; returns its output (g_free) and its lengths. */
static float *
encode_clip (fp16_model *m, const char *clip, int *t_enc, int *enc_len)
{
  npy_array a_mel, a_len, a_enc;
  fixture_load_npy (m->model, clip, "mel.npy", &a_mel);
  fixture_load_npy (m->model, clip, "mel_len.npy", &a_len);
  fixture_load_npy (m->model, clip, "enc.npy", &a_enc);
  float *mel = npy_to_f32 (&a_mel), *ref = npy_to_f32 (&a_enc);
  const int frames = (int) a_mel.shape[a_mel.ndim - 1], valid = (int) npy_get_i64 (&a_len, 0);
  GError *err = NULL;
  canary_encoder_work *work = canary_encoder_work_new (m->enc, frames, &err);
  g_assert_no_error (err);
  const float *out;
  g_assert_true (canary_encoder_forward (m->enc, work, mel, frames, valid, &out, t_enc, enc_len, &err));
  g_assert_no_error (err);
  const gsize n = (gsize) *t_enc * canary_encoder_out_dim (m->enc);
  g_assert_cmpuint (n, ==, a_enc.numel);
  double ref_max;
  const double diff = max_abs_diff (out, ref, n, &ref_max);
  const int G = enc_gemm_depth (m->fm.cfg, m->enc);
  const double scale = MAX (1.0, ref_max), bound = ENC_TOL_FP32 * scale + U16 * G * scale;
  g_test_message ("%s/%s fp16 encoder: max |diff| %.3g = %.3g of max(1, |NeMo|) %.3g; bound %.3g "
      "(G_enc %d)", m->model, clip, diff, diff / scale, scale, bound, G);
  g_assert_cmpfloat (diff, <=, bound);
  if (diff / scale > m->worst_enc) {
    m->worst_enc = diff / scale;
    m->worst_enc_bound = bound / scale;
  }
  float *copy = g_memdup2 (out, n * sizeof (float));
  canary_encoder_work_free (work);
  g_free (mel);
  g_free (ref);
  npy_array_clear (&a_mel);
  npy_array_clear (&a_len);
  npy_array_clear (&a_enc);
  return copy;
}

/* Teacher forcing on NeMo's encoder output and NeMo's beam-1 sequence; returns bound_tf. */
static double
teacher_forced (fp16_model *m, const char *clip, const npy_array *tf)
{
  npy_array a_enc, a_elen;
  fixture_load_npy (m->model, clip, "enc.npy", &a_enc);
  fixture_load_npy (m->model, clip, "enc_len.npy", &a_elen);
  GArray *prompt = fixture_load_ids (m->model, clip, "prompt_ids.npy");
  GArray *beam1 = fixture_load_ids (m->model, clip, "beam1_ids.npy");
  const canary_decoder *dec = m->dec;
  const int H = canary_decoder_hidden (dec), V = canary_decoder_vocab (dec), P = (int) prompt->len;
  const int T = (int) (a_enc.numel / H);
  float *enc = npy_to_f32 (&a_enc);
  GArray *seq = g_array_copy (prompt);
  g_array_append_vals (seq, beam1->data, beam1->len);
  g_array_set_size (seq, MIN (seq->len, (guint) canary_decoder_max_seq_len (dec)));
  const int n = (int) seq->len, S = (int) tf->shape[0];
  GError *err = NULL;
  canary_decoder_state *st = canary_decoder_state_new (dec, 1, 0, T, m->pad, &err);
  g_assert_no_error (err);
  g_assert_true (canary_decoder_set_memory (st, enc, T, (int) npy_get_i64 (&a_elen, 0), &err));
  float *logits = g_new (float, (gsize) n * V), *lp = g_new (float, V);
  g_assert_true (canary_decoder_step_all (st, (const gint32 *) seq->data, n, 0, logits, &err));
  g_assert_no_error (err);
  const float *ref = tf->data;
  double max_err = 0.0, spread = 0.0;
  for (int s = 0; s < S; s++) {
    double lo = INFINITY, hi = -INFINITY;
    for (int v = 0; v < V; v++) {
      lo = MIN (lo, ref[(gsize) s * V + v]);
      hi = MAX (hi, ref[(gsize) s * V + v]);
    }
    spread = MAX (spread, (hi - lo) / 2);
  }
  const int G = 7 * m->fm.cfg->dec_layers + 1;
  const double bound = TF_TOL_FP32 + 2 * U16 * G * spread;
  for (int s = 0; s < S; s++) {
    canary_log_softmax (logits + (gsize) (P - 1 + s) * V, V, lp);
    for (int v = 0; v < V; v++)
      max_err = MAX (max_err, fabs ((double) lp[v] - ref[(gsize) s * V + v]));
  }
  g_test_message ("%s/%s fp16 decoder, teacher forced: %d rows, max |log-prob diff| %.3g; bound %.3g "
      "(G_dec %d, logit scale S %.3g)", m->model, clip, S, max_err, bound, G, spread);
  g_assert_cmpfloat (max_err, <=, bound);
  if (max_err > m->worst_tf) {
    m->worst_tf = max_err;
    m->worst_tf_bound = bound;
  }
  canary_decoder_state_free (st);
  g_free (logits);
  g_free (lp);
  g_free (enc);
  g_array_unref (seq);
  g_array_unref (prompt);
  g_array_unref (beam1);
  npy_array_clear (&a_enc);
  npy_array_clear (&a_elen);
  return bound;
}

/* Beam search on our FP16 encoder's output: NeMo's ids, or a flip at a near-tie. */
static void
beam_clip (fp16_model *m, const char *clip, const float *enc, int T, int enc_len, int beam,
    const npy_array *tf, double bound)
{
  GArray *prompt = fixture_load_ids (m->model, clip, "prompt_ids.npy");
  GArray *want = fixture_load_ids (m->model, clip, beam == 1 ? "beam1_ids.npy" : "beam4_ids.npy");
  GArray *b1 = fixture_load_ids (m->model, clip, "beam1_ids.npy");
  GError *err = NULL;
  canary_decoder_state *st = canary_decoder_state_new (m->dec, beam, 0, T, m->pad, &err);
  g_assert_no_error (err);
  g_assert_true (canary_decoder_set_memory (st, enc, T, enc_len, &err));
  canary_beam_options o = {
    .beam_size = beam,
    .length_penalty = m->fm.cfg->length_penalty,
    .max_len_total = canary_beam_max_len_total (canary_decoder_max_seq_len (m->dec), T,
        m->fm.cfg->max_generation_delta),
    .eos_id = m->eos,
    .pad_id = m->pad,
  };
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  g_assert_true (canary_beam_search (st, (const gint32 *) prompt->data, (int) prompt->len, &o, ids, NULL,
      NULL, &err));
  g_assert_no_error (err);
  char *what = g_strdup_printf ("%s/%s fp16 beam %d ids vs NeMo", m->model, clip, beam);
  if (ids->len == want->len && memcmp (ids->data, want->data, ids->len * sizeof (gint32)) == 0) {
    g_test_message ("%s: equal (%u ids)", what, ids->len);
  } else {
    guint s = 0;
    while (s < MIN (ids->len, want->len) && g_array_index (ids, gint32, s) == g_array_index (want, gint32, s))
      s++;
    /* NeMo's teacher-forced margins are along its beam-1 sequence: they apply to a beam-4 flip
     * only where NeMo's beam 4 still follows beam 1. */
    gboolean on_b1 = s <= b1->len;
    for (guint i = 0; on_b1 && i < s; i++)
      on_b1 = g_array_index (want, gint32, i) == g_array_index (b1, gint32, i);
    const double margin = on_b1 ? fixture_nemo_margin (tf, (int) s) : NAN;
    g_test_message ("%s: differ at step %u, NeMo's top-2 margin there %.4g (bound %.4g)", what, s,
        margin, bound);
    if (!(margin <= bound))
      assert_ids_equal (ids, want, what);
  }
  g_free (what);
  g_array_unref (ids);
  g_array_unref (prompt);
  g_array_unref (want);
  g_array_unref (b1);
  canary_decoder_state_free (st);
}

static void
test_fixture_model (gconstpointer data)
{
  fp16_model m;
  if (!open_model (data, &m))
    return;
  GPtrArray *clips = fixture_list_clips (m.model, "enc.npy");
  g_assert_cmpuint (clips->len, >, 0);
  for (guint i = 0; i < clips->len; i++) {
    const char *clip = clips->pdata[i];
    npy_array tf;
    fixture_load_npy (m.model, clip, "tf_logprobs.npy", &tf);
    int T, L;
    float *enc = encode_clip (&m, clip, &T, &L);
    const double bound = teacher_forced (&m, clip, &tf);
    beam_clip (&m, clip, enc, T, L, 1, &tf, bound);
    beam_clip (&m, clip, enc, T, L, 4, &tf, bound);
    g_free (enc);
    npy_array_clear (&tf);
  }
  g_test_message ("%s fp16 (%s kernels): worst encoder %.3g of max(1, |NeMo|) (bound %.3g), worst "
      "teacher-forced log-prob %.3g (bound %.3g)", m.model,
      g_strcmp0 (g_getenv ("CANARY_ENCODER_SIMD"), "0") == 0 ? "portable" : "default",
      m.worst_enc, m.worst_enc_bound, m.worst_tf, m.worst_tf_bound);
  g_ptr_array_unref (clips);
  close_model (&m);
}

/* canary_model_load on the CPU at `precision` (asserting success). */
static canary_model *
load_on_cpu (const char *path, canary_precision precision)
{
  canary_model_options o;
  canary_model_options_init (&o);
  o.device = CANARY_DEVICE_CPU;
  o.precision = precision;
  GError *err = NULL;
  canary_model *m = canary_model_load (path, &o, &err);
  g_assert_no_error (err);
  return m;
}

/* Through the engine: precision=fp16 on the CPU loads, reports FP16 and about half the weight
 * bytes of the FP32 load, and transcribes. */
static void
test_engine_fp16 (void)
{
  char *path = fixture_model_nemo_or_fail (fixture_models[0]);
  if (!path)
    return;
  GError *err = NULL;
  canary_model *m32 = load_on_cpu (path, CANARY_PRECISION_FP32);
  canary_model *m16 = load_on_cpu (path, CANARY_PRECISION_FP16);
  const canary_model_info *i32 = canary_model_get_info (m32), *i16 = canary_model_get_info (m16);
  g_assert_cmpint (i32->precision, ==, CANARY_PRECISION_FP32);
  g_assert_cmpint (i16->device, ==, CANARY_DEVICE_CPU);
  g_assert_cmpint (i16->precision, ==, CANARY_PRECISION_FP16);
  g_test_message ("weight bytes: fp32 %" G_GUINT64_FORMAT ", fp16 %" G_GUINT64_FORMAT,
      (guint64) i32->weight_bytes, (guint64) i16->weight_bytes);
  g_assert_cmpuint (i16->weight_bytes, <, i32->weight_bytes * 6 / 10);
  canary_state *st = canary_state_new (m16, &err);
  g_assert_no_error (err);
  float *pcm = g_new0 (float, 16000);
  for (int i = 0; i < 16000; i++)
    pcm[i] = 0.1f * sinf (i * 0.05f);
  canary_result *r = canary_transcribe (st, pcm, 16000, NULL, &err);
  g_assert_no_error (err);
  g_assert_nonnull (r);
  canary_result_free (r);
  g_free (pcm);
  canary_state_free (st);
  canary_model_unref (m16);
  canary_model_unref (m32);
  g_free (path);
}

/* precision=auto on the CPU: FP32 for a model that fits in the cache (every fixture; the engine
 * picks it from the file's size), FP16 for one larger than any cache where the FP16 kernels have
 * SIMD (the portable build of this test, CANARY_ENCODER_SIMD=0, keeps FP32). */
static void
test_auto_precision (void)
{
  char *path = fixture_model_nemo_or_fail (fixture_models[0]);
  if (!path)
    return;
  canary_model_options o;
  canary_model_options_init (&o);
  g_assert_cmpint (o.precision, ==, CANARY_PRECISION_AUTO);  /* the default */
  canary_model *m = load_on_cpu (path, CANARY_PRECISION_AUTO);
  g_assert_cmpint (canary_model_get_info (m)->precision, ==, CANARY_PRECISION_FP32);
  canary_model_unref (m);
  g_free (path);

  g_assert_cmpint (canary_cpu_auto_precision (1 << 20), ==, CANARY_PRECISION_FP32);
  const guint64 canary_1b_bytes = 4058ull * 1000 * 1000;  /* docs/benchmarks.md: the FP32 file */
  g_assert_cmpint (canary_cpu_auto_precision (canary_1b_bytes), ==,
      canary_f16_simd_enabled () ? CANARY_PRECISION_FP16 : CANARY_PRECISION_FP32);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (int i = 0; i < FIXTURE_N_CLIP_MODELS; i++) {
    char *name = g_strdup_printf ("/cpu-fp16/nemo/%s", fixture_clip_models[i]);
    g_test_add_data_func (name, fixture_clip_models[i], test_fixture_model);
    g_free (name);
  }
  g_test_add_func ("/cpu-fp16/engine", test_engine_fp16);
  g_test_add_func ("/cpu-fp16/auto", test_auto_precision);
  return g_test_run ();
}
