/* gst-canary tests — FastConformer encoder (gst/canary/cpu/encoder.c) against NeMo's own dumps.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Tolerances, stated once:
 *  - ENC_TOL = 1e-4 relative to the largest magnitude of the reference array:
 *    max|ours − NeMo| ≤ 1e-4 · max(1, max|NeMo|), for pre_encode.npy and enc.npy.
 *    Why: both sides are FP32 with the same operations; only summation order (BLAS blocking,
 *    our double LayerNorm/softmax sums, BatchNorm folded into the depthwise weights) differs,
 *    which moves results by a few FP32 ulps of the values involved (~1e-6 of the range per
 *    layer). 1e-4 of the range leaves room for that through the layers and flags any real error
 *    (a wrong mask, shift or layout is an O(0.1–1) difference).
 *  - From our own mel features (instead of NeMo's), the same ENC_TOL: the features agree to
 *    ~1e-5 of their range and the encoder does not amplify that beyond the bound.
 *  - INVARIANCE_TOL = 1e-5 relative: the same computation on the same valid data; only the
 *    GEMM row counts differ, and OpenBLAS picks other kernels/blocking for other shapes, which
 *    moves results by a few FP32 ulps per layer (observed up to ~6e-7 of the range with two
 *    layers). 1e-5 (~80 ulps of the range) keeps random seeds from flaking while any leak of the
 *    padded frames into valid outputs is orders of magnitude larger.
 */
#include <math.h>
#include <string.h>

#include "canary.h"
#include "formats/ckpt.h"
#include "formats/config.h"
#include "cpu/encoder.h"
#include "fixture.h"
#include "cpu/mel.h"
#include "formats/tar.h"
#include "npy.h"

#define ENC_TOL 1e-4
#define INVARIANCE_TOL 1e-5

/* max|a − b| / max(1, max|b|) over n elements, all of `a` finite; *err_abs gets max|a − b|. */
static double
rel_error (const float *a, const float *b, gsize n, double *err_abs)
{
  for (gsize i = 0; i < n; i++)
    g_assert_true (isfinite (a[i]));
  double rmax;
  const double e = max_abs_diff (a, b, n, &rmax);
  if (err_abs)
    *err_abs = e;
  return e / MAX (1.0, rmax);
}

static canary_encoder *
encoder_for (const fixture_model *m)
{
  GError *err = NULL;
  canary_encoder *enc = canary_encoder_new (m->cfg, m->ck, &err);
  g_assert_no_error (err);
  g_assert_nonnull (enc);
  return enc;
}

/* ---------------------------------------------------------------------------------------- */

/* One clip: NeMo's mel -> pre_encode and encoder output; our own mel of NeMo's waveform ->
 * encoder output. */
static void
check_clip (const fixture_model *m, const canary_encoder *enc, canary_encoder_work *work,
    const canary_mel *mel, const char *model, const char *clip)
{
  npy_array a_mel, a_len, a_pre, a_enc, a_elen, a_wav;
  fixture_load_npy (model, clip, "mel.npy", &a_mel);
  fixture_load_npy (model, clip, "mel_len.npy", &a_len);
  fixture_load_npy (model, clip, "pre_encode.npy", &a_pre);
  fixture_load_npy (model, clip, "enc.npy", &a_enc);
  fixture_load_npy (model, clip, "enc_len.npy", &a_elen);
  fixture_load_npy (model, clip, "waveform.npy", &a_wav);
  const int frames = (int) a_mel.shape[1], valid = (int) npy_get_i64 (&a_len, 0);
  float *fmel = npy_to_f32 (&a_mel), *fpre = npy_to_f32 (&a_pre), *fenc = npy_to_f32 (&a_enc);
  const int D = canary_encoder_d_model (enc), H = canary_encoder_out_dim (enc);
  g_assert_cmpint (a_pre.shape[1], ==, D);
  g_assert_cmpint (a_enc.shape[1], ==, H);

  GError *err = NULL;
  const float *out;
  int t_enc = -1, len = -1;
  g_assert_true (canary_encoder_pre_encode (enc, work, fmel, frames, valid, &out, &t_enc, &len,
      &err));
  g_assert_no_error (err);
  g_assert_cmpint (t_enc, ==, a_pre.shape[0]);
  g_assert_cmpint (len, ==, npy_get_i64 (&a_elen, 0));
  double e_pre, e_enc, e_own;
  const double r_pre = rel_error (out, fpre, (gsize) t_enc * D, &e_pre);

  g_assert_true (canary_encoder_forward (enc, work, fmel, frames, valid, &out, &t_enc, &len, &err));
  g_assert_no_error (err);
  g_assert_cmpint (t_enc, ==, a_enc.shape[0]);
  g_assert_cmpint (len, ==, npy_get_i64 (&a_elen, 0));
  const double r_enc = rel_error (out, fenc, (gsize) t_enc * H, &e_enc);

  /* End to end from the waveform through our own frontend. */
  float *pcm = npy_to_f32 (&a_wav);
  float *own = g_new (float, (gsize) frames * canary_mel_n_mels (mel));
  int own_valid;
  g_assert_cmpuint (canary_mel_n_frames (mel, a_wav.numel), ==, (gsize) frames);
  g_assert_true (canary_mel_compute (mel, pcm, a_wav.numel, own, &own_valid, &err));
  g_assert_true (canary_encoder_forward (enc, work, own, frames, own_valid, &out, &t_enc, &len,
      &err));
  g_assert_no_error (err);
  const double r_own = rel_error (out, fenc, (gsize) t_enc * H, &e_own);

  g_test_message ("%s/%s: T_enc %d (valid %d): pre_encode max|err| %.3g (rel %.3g), encoder "
      "%.3g (rel %.3g), from our mel %.3g (rel %.3g)", model, clip, t_enc, len, e_pre, r_pre,
      e_enc, r_enc, e_own, r_own);
  g_assert_cmpfloat (r_pre, <=, ENC_TOL);
  g_assert_cmpfloat (r_enc, <=, ENC_TOL);
  g_assert_cmpfloat (r_own, <=, ENC_TOL);

  g_free (own);
  g_free (pcm);
  g_free (fmel);
  g_free (fpre);
  g_free (fenc);
  npy_array_clear (&a_mel);
  npy_array_clear (&a_len);
  npy_array_clear (&a_pre);
  npy_array_clear (&a_enc);
  npy_array_clear (&a_elen);
  npy_array_clear (&a_wav);
}

static void
test_fixtures (void)
{
  int checked = 0;
  for (guint mi = 0; mi < G_N_ELEMENTS (fixture_clip_models); mi++) {
    fixture_model m;
    if (!fixture_model_open (fixture_clip_models[mi], &m))
      continue;
    GError *err = NULL;
    canary_encoder *enc = encoder_for (&m);
    canary_mel *mel = canary_mel_new (m.cfg, m.ck, &err);
    g_assert_no_error (err);
    /* Deliberately small: the work must grow when a longer clip arrives. */
    canary_encoder_work *work = canary_encoder_work_new (enc, 50, &err);
    g_assert_no_error (err);
    GPtrArray *clips = fixture_list_clips (fixture_clip_models[mi], "enc.npy");
    for (guint ci = 0; ci < clips->len; ci++, checked++)
      check_clip (&m, enc, work, mel, fixture_clip_models[mi], clips->pdata[ci]);
    g_test_message ("%s: encoder holds %" G_GSIZE_FORMAT " bytes of own weights, work %"
        G_GSIZE_FORMAT " bytes", fixture_clip_models[mi], canary_encoder_weight_bytes (enc),
        canary_encoder_work_bytes (work));
    g_ptr_array_unref (clips);
    canary_encoder_work_free (work);
    canary_mel_free (mel);
    canary_encoder_free (enc);
    fixture_model_close (&m);
  }
  if (checked == 0)
    fixture_fail_no_models ();
}

/* Valid outputs do not depend on anything past the valid length: extra frames (random values,
 * fresh seed) appended after n_valid leave rows < enc_len unchanged, for several lengths. */
static void
test_invariance (void)
{
  fixture_model m;
  if (!fixture_model_open_any_or_fail (1, &m))
    return;
  GError *err = NULL;
  canary_encoder *enc = encoder_for (&m);
  canary_encoder_work *w = canary_encoder_work_new (enc, 400, &err);
  g_assert_no_error (err);
  const int n_mels = m.cfg->n_mels, H = canary_encoder_out_dim (enc);
  GRand *rng = g_rand_new ();
  const int valids[] = { 1, 7, 8, 9, 64, 101, 173 };
  for (guint i = 0; i < G_N_ELEMENTS (valids); i++) {
    const int L = valids[i], F1 = L + 1, F2 = L + 1 + g_rand_int_range (rng, 1, 90);
    float *m1 = g_new (float, (gsize) n_mels * F1), *m2 = g_new (float, (gsize) n_mels * F2);
    for (int f = 0; f < n_mels; f++) {
      for (int t = 0; t < F2; t++) {
        const float v = (float) g_rand_double_range (rng, -2.0, 2.0);
        m2[(gsize) f * F2 + t] = v;
        if (t < F1)
          m1[(gsize) f * F1 + t] = t < L ? v : 0.0f;   /* NeMo's padding frame is 0 */
      }
    }
    const float *out;
    int t1, l1, t2, l2;
    g_assert_true (canary_encoder_forward (enc, w, m1, F1, L, &out, &t1, &l1, &err));
    float *r1 = g_memdup2 (out, (gsize) t1 * H * sizeof (float));
    g_assert_true (canary_encoder_forward (enc, w, m2, F2, L, &out, &t2, &l2, &err));
    g_assert_no_error (err);
    g_assert_cmpint (l1, ==, l2);
    g_assert_cmpint (t2, >=, t1);
    const double r = rel_error (out, r1, (gsize) l1 * H, NULL);
    g_test_message ("valid %d: %d vs %d frames, enc_len %d, rel diff %.3g", L, F1, F2, l1, r);
    g_assert_cmpfloat (r, <=, INVARIANCE_TOL);
    g_free (r1);
    g_free (m1);
    g_free (m2);
  }
  g_rand_free (rng);
  canary_encoder_work_free (w);
  canary_encoder_free (enc);
  fixture_model_close (&m);
}

/* A config that disagrees with the checkpoint is refused with an error naming the key. */
static void
expect_rejected (const canary_config *cfg, const canary_ckpt *ck, int code, const char *needle)
{
  GError *err = NULL;
  canary_encoder *enc = canary_encoder_new (cfg, ck, &err);
  g_assert_null (enc);
  g_assert_error (err, CANARY_ERROR, code);
  g_test_message ("rejected: %s", err->message);
  g_assert_nonnull (strstr (err->message, needle));
  g_clear_error (&err);
}

static void
test_rejects_mismatch (void)
{
  fixture_model m;
  if (!fixture_model_open_any_or_fail (0, &m))
    return;
  canary_config c = *m.cfg;
  c.enc_d_model = m.cfg->enc_d_model * 2;
  expect_rejected (&c, m.ck, CANARY_ERROR_FORMAT, "encoder.pre_encode.out.weight");
  c = *m.cfg;
  c.enc_ff_expansion = m.cfg->enc_ff_expansion + 1;
  expect_rejected (&c, m.ck, CANARY_ERROR_FORMAT, "feed_forward1.linear1.weight");
  c = *m.cfg;
  c.enc_heads = m.cfg->enc_heads / 2;
  expect_rejected (&c, m.ck, CANARY_ERROR_FORMAT, "pos_bias_u");
  c = *m.cfg;
  c.subsampling_channels = m.cfg->subsampling_channels + 8;
  expect_rejected (&c, m.ck, CANARY_ERROR_FORMAT, "encoder.pre_encode.conv.0.weight");
  c = *m.cfg;
  c.n_mels = m.cfg->n_mels / 2;
  expect_rejected (&c, m.ck, CANARY_ERROR_FORMAT, "encoder.pre_encode.out.weight");
  c = *m.cfg;
  c.enc_conv_kernel = m.cfg->enc_conv_kernel + 2;
  expect_rejected (&c, m.ck, CANARY_ERROR_FORMAT, "depthwise_conv.weight");
  c = *m.cfg;
  c.enc_layers = m.cfg->enc_layers + 1;
  expect_rejected (&c, m.ck, CANARY_ERROR_NOT_FOUND, "encoder.layers.");
  c = *m.cfg;
  c.enc_layers = m.cfg->enc_layers - 1;
  expect_rejected (&c, m.ck, CANARY_ERROR_FORMAT, "more encoder layers");
  c = *m.cfg;
  c.subsampling_factor = 16;   /* a fourth stage: conv.8/conv.9 do not exist */
  expect_rejected (&c, m.ck, CANARY_ERROR_NOT_FOUND, "encoder.pre_encode.conv.8.weight");
  c = *m.cfg;
  c.enc_conv_kernel = 8;
  expect_rejected (&c, m.ck, CANARY_ERROR_FORMAT, "conv_kernel_size");
  c = *m.cfg;
  c.subsampling = (char *) "striding";
  expect_rejected (&c, m.ck, CANARY_ERROR_UNSUPPORTED, "subsampling");
  c = *m.cfg;
  c.dec_hidden = m.cfg->enc_d_model + 32;   /* a projection would be needed but is absent */
  expect_rejected (&c, m.ck, CANARY_ERROR_NOT_FOUND, "encoder_decoder_proj");
  fixture_model_close (&m);
}

/* Bad arguments are errors; edge lengths (no valid frame, one frame) run and stay finite. */
static void
test_bad_args_and_edges (void)
{
  fixture_model m;
  if (!fixture_model_open_any_or_fail (2, &m))
    return;
  GError *err = NULL;
  canary_encoder *enc = encoder_for (&m);
  canary_encoder_work *w = canary_encoder_work_new (enc, 16, &err);
  g_assert_no_error (err);
  g_assert_null (canary_encoder_work_new (enc, 0, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);

  const int n_mels = m.cfg->n_mels, H = canary_encoder_out_dim (enc);
  float *mel = g_new (float, (gsize) n_mels * 40);
  GRand *rng = g_rand_new ();
  for (int i = 0; i < n_mels * 40; i++)
    mel[i] = (float) g_rand_double_range (rng, -1.0, 1.0);
  const float *out;
  int t, l;
  g_assert_false (canary_encoder_forward (enc, w, mel, 10, 11, &out, &t, &l, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);
  g_assert_false (canary_encoder_forward (enc, w, NULL, 10, 5, &out, &t, &l, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);
  g_assert_false (canary_encoder_forward (enc, w, mel, 0, 0, &out, &t, &l, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);

  const int cases[][2] = { { 1, 0 }, { 1, 1 }, { 2, 1 }, { 40, 0 }, { 40, 40 }, { 17, 16 } };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_assert_true (canary_encoder_forward (enc, w, mel, cases[i][0], cases[i][1], &out, &t, &l,
        &err));
    g_assert_no_error (err);
    g_assert_cmpint (t, ==, canary_encoder_n_out (enc, cases[i][0]));
    g_assert_cmpint (l, ==, (cases[i][1] + 7) / 8);
    for (gsize j = 0; j < (gsize) t * H; j++)
      g_assert_true (isfinite (out[j]));
  }
  g_rand_free (rng);
  g_free (mel);
  canary_encoder_work_free (w);
  canary_encoder_free (enc);
  fixture_model_close (&m);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/encoder/fixtures", test_fixtures);
  g_test_add_func ("/encoder/invariance", test_invariance);
  g_test_add_func ("/encoder/rejects-mismatch", test_rejects_mismatch);
  g_test_add_func ("/encoder/bad-args-and-edges", test_bad_args_and_edges);
  return g_test_run ();
}
