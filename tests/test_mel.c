/* gst-canary tests — log-mel frontend (gst/canary/cpu/mel.c) against NeMo's own dumps.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Tolerance, stated once: FEATURE_TOL = 1e-4, applied relative to the largest magnitude of the
 * reference array: max|ours − NeMo| ≤ 1e-4 · max(1, max|NeMo|).
 * Why: NeMo computes the features in FP32 (torch's FP32 FFT, FP32 matmul and log), we compute
 * the DFT in double and the rest in FP32. FFT rounding errors are relative to a frame's total
 * energy, not to each bin, so after the log and the per-feature normalisation (values of order
 * 1–10) the expected difference is a few 1e-6 of the array's range; 1e-4 of it leaves room for
 * FP32 rounding while still catching any real mistake (a wrong window, frame offset, guard or
 * normalisation shows up at 1e-2 or more).
 * Digital silence is covered by the same bound but comes out bit-exact: a constant feature row
 * normalises to NeMo's FP32 artefact (-0.276, not 0), which mel.c reproduces with torch's
 * summation order.
 * The padding rule is exact: padded waveforms must match NeMo's bit for bit.
 */
#include <math.h>
#include <string.h>

#include "canary.h"
#include "formats/ckpt.h"
#include "formats/config.h"
#include "fixture.h"
#include "cpu/mel.h"
#include "formats/tar.h"
#include "npy.h"
#include "wav.h"

#define FEATURE_TOL 1e-4

static canary_mel *
mel_for (const fixture_model *m)
{
  GError *err = NULL;
  canary_mel *mel = canary_mel_new (m->cfg, m->ck, &err);
  g_assert_no_error (err);
  return mel;
}

/* ---------------------------------------------------------------------------------------- */

/* NeMo's features of its own (padded) waveform, every model × clip. */
static void
test_fixtures (void)
{
  int checked = 0;
  for (guint mi = 0; mi < G_N_ELEMENTS (fixture_clip_models); mi++) {
    fixture_model m;
    if (!fixture_model_open (fixture_clip_models[mi], &m))
      continue;
    canary_mel *mel = mel_for (&m);
    const int n_mels = canary_mel_n_mels (mel);
    GPtrArray *clips = fixture_list_clips (fixture_clip_models[mi], "mel.npy");
    for (guint ci = 0; ci < clips->len; ci++) {
      const char *clip = clips->pdata[ci];
      npy_array wav, ref, ref_len;
      fixture_load_npy (fixture_clip_models[mi], clip, "waveform.npy", &wav);
      fixture_load_npy (fixture_clip_models[mi], clip, "mel.npy", &ref);
      fixture_load_npy (fixture_clip_models[mi], clip, "mel_len.npy", &ref_len);
      g_assert_cmpint (wav.ndim, ==, 1);
      g_assert_cmpint (ref.ndim, ==, 2);
      float *pcm = npy_to_f32 (&wav), *want = npy_to_f32 (&ref);
      const gsize frames = canary_mel_n_frames (mel, wav.numel);
      g_assert_cmpint (ref.shape[0], ==, n_mels);
      g_assert_cmpint (ref.shape[1], ==, (gint64) frames);

      float *got = g_new (float, frames * n_mels);
      int n_valid = -1;
      GError *err = NULL;
      g_assert_true (canary_mel_compute (mel, pcm, wav.numel, got, &n_valid, &err));
      g_assert_no_error (err);
      g_assert_cmpint (n_valid, ==, npy_get_i64 (&ref_len, 0));

      double e, rmax;
      e = max_abs_diff (got, want, frames * n_mels, &rmax);
      g_test_message ("%s/%s: %" G_GSIZE_FORMAT " samples, %" G_GSIZE_FORMAT " frames (%d valid): "
          "max|err| %.3g, max|ref| %.3g, rel %.3g", fixture_clip_models[mi], clip, wav.numel, frames, n_valid,
          e, rmax, e / MAX (1.0, rmax));
      g_assert_cmpfloat (e, <=, FEATURE_TOL * MAX (1.0, rmax));
      checked++;
      g_free (got);
      g_free (pcm);
      g_free (want);
      npy_array_clear (&wav);
      npy_array_clear (&ref);
      npy_array_clear (&ref_len);
    }
    g_ptr_array_unref (clips);
    canary_mel_free (mel);
    fixture_model_close (&m);
  }
  if (checked == 0)
    fixture_fail_no_models ();
}

/* The raw clip padded by canary_pad_short_audio must be exactly NeMo's waveform. */
static void
test_padding_matches_nemo (void)
{
  int checked = 0;
  for (guint mi = 0; mi < G_N_ELEMENTS (fixture_clip_models); mi++) {
    fixture_model m;
    if (!fixture_model_open (fixture_clip_models[mi], &m))
      continue;
    GPtrArray *clips = fixture_list_clips (fixture_clip_models[mi], "mel.npy");
    for (guint ci = 0; ci < clips->len; ci++) {
      const char *clip = clips->pdata[ci];
      char *wname = g_strdup_printf ("%s.wav", clip);
      char *wpath = fixture_path ("audio", wname, NULL);
      GError *err = NULL;
      gsize n;
      int rate;
      float *raw = wav_read_mono (wpath, &n, &rate, &err);
      g_assert_no_error (err);
      g_assert_cmpint (rate, ==, m.cfg->sample_rate);
      float *padded;
      const gsize np = canary_pad_short_audio (raw, n, rate, m.cfg->pad_min_duration, &padded);
      const float *mine = padded ? padded : raw;

      npy_array ref;
      fixture_load_npy (fixture_clip_models[mi], clip, "waveform.npy", &ref);
      g_assert_cmpint (ref.dtype, ==, NPY_DTYPE_F32);
      g_test_message ("%s/%s: %" G_GSIZE_FORMAT " raw samples -> %" G_GSIZE_FORMAT " (NeMo %"
          G_GSIZE_FORMAT ")", fixture_clip_models[mi], clip, n, np, ref.numel);
      g_assert_cmpuint (np, ==, ref.numel);
      g_assert_true (memcmp (mine, ref.data, np * sizeof (float)) == 0);
      checked++;
      npy_array_clear (&ref);
      g_free (padded);
      g_free (raw);
      g_free (wpath);
      g_free (wname);
    }
    g_ptr_array_unref (clips);
    fixture_model_close (&m);
  }
  if (checked == 0)
    fixture_fail_no_models ();
}

/* The split rule itself on lengths around the edge cases (odd/even padding, 0, 1 s). */
static void
test_padding_rule (void)
{
  const gsize lens[] = { 0, 1, 2, 159, 160, 7999, 8000, 8001, 15999, 16000, 16001, 48000 };
  for (guint i = 0; i < G_N_ELEMENTS (lens); i++) {
    const gsize n = lens[i];
    float *in = g_new (float, MAX (n, 1));
    for (gsize j = 0; j < n; j++)
      in[j] = 0.25f + (float) (j % 5);   /* never zero: the copy is visible */
    float *out;
    const gsize got = canary_pad_short_audio (in, n, 16000, 1.0, &out);
    if (n >= 16000) {
      g_assert_cmpuint (got, ==, n);
      g_assert_null (out);
    } else {
      const gsize pad = 16000 - n, left = (pad + 1) / 2;
      g_assert_cmpuint (got, ==, 16000);
      g_assert_nonnull (out);
      for (gsize j = 0; j < got; j++) {
        const float want = (j >= left && j < left + n) ? in[j - left] : 0.0f;
        g_assert_cmpfloat (out[j], ==, want);
      }
    }
    g_free (out);
    g_free (in);
  }
}

/* Frames at and past the valid length are exactly 0, for lengths around frame boundaries
 * (including L = 0 and the single-frame NaN-std case) on random audio. */
static void
test_valid_mask (void)
{
  fixture_model m;
  if (!fixture_model_open_any_or_fail (0, &m))
    return;
  canary_mel *mel = mel_for (&m);
  const int n_mels = canary_mel_n_mels (mel);
  GRand *rng = g_rand_new ();   /* fresh seed per run */
  const gsize lens[] = { 0, 1, 159, 160, 161, 319, 320, 481, 16000, 16159, 23457 };
  for (guint i = 0; i < G_N_ELEMENTS (lens); i++) {
    const gsize n = lens[i];
    float *pcm = g_new (float, MAX (n, 1));
    for (gsize j = 0; j < n; j++)
      pcm[j] = (float) g_rand_double_range (rng, -0.5, 0.5);
    const gsize frames = canary_mel_n_frames (mel, n);
    g_assert_cmpuint (frames, ==, n / 160 + 1);
    float *out = g_new (float, frames * n_mels);
    int valid = -1;
    GError *err = NULL;
    g_assert_true (canary_mel_compute (mel, pcm, n, out, &valid, &err));
    g_assert_no_error (err);
    g_assert_cmpint (valid, ==, (int) (n / 160));
    for (int f = 0; f < n_mels; f++) {
      for (gsize t = 0; t < frames; t++) {
        const float v = out[(gsize) f * frames + t];
        g_assert_true (isfinite (v));
        if (t >= (gsize) valid)
          g_assert_cmpfloat (v, ==, 0.0f);
      }
    }
    g_free (out);
    g_free (pcm);
  }
  g_rand_free (rng);
  canary_mel_free (mel);
  fixture_model_close (&m);
}

/* An independent, naive implementation of the same pipeline (DFT by definition in double,
 * explicit framing) on random audio of random lengths: checks the framing/centring/padding
 * arithmetic on lengths the fixtures do not cover. Same FEATURE_TOL criterion. */
static void
naive_features (const canary_mel *mel, const fixture_model *m, const float *x, gsize n, double *out)
{
  int n_fft, n_mels, n_bins;
  const float *win = canary_mel_window (mel, &n_fft);
  const float *fb = canary_mel_filterbank (mel, &n_mels, &n_bins);
  const gsize hop = (gsize) m->cfg->n_window_stride, frames = n / hop + 1, valid = n / hop;
  const double preemph = m->cfg->preemph;
  double *pw = g_new (double, n_bins);
  for (gsize t = 0; t < frames; t++) {
    for (int b = 0; b < n_bins; b++) {
      double re = 0, im = 0;
      for (int k = 0; k < n_fft; k++) {
        const gint64 i = (gint64) (t * hop) - n_fft / 2 + k;
        if (i < 0 || i >= (gint64) n)
          continue;
        const double y = i == 0 ? x[0] : x[i] - preemph * x[i - 1];
        re += y * win[k] * cos (2 * G_PI * b * k / n_fft);
        im -= y * win[k] * sin (2 * G_PI * b * k / n_fft);
      }
      pw[b] = re * re + im * im;
    }
    for (int f = 0; f < n_mels; f++) {
      double s = 0;
      for (int b = 0; b < n_bins; b++)
        s += fb[(gsize) f * n_bins + b] * pw[b];
      out[(gsize) f * frames + t] = log (s + m->cfg->log_zero_guard_value);
    }
  }
  for (int f = 0; f < n_mels; f++) {
    double *row = out + (gsize) f * frames, mean = 0, ss = 0;
    for (gsize t = 0; t < valid; t++)
      mean += row[t] / valid;
    for (gsize t = 0; t < valid; t++)
      ss += (row[t] - mean) * (row[t] - mean);
    const double sd = (valid > 1 ? sqrt (ss / (valid - 1)) : 0.0) + 1e-5;
    for (gsize t = 0; t < frames; t++)
      row[t] = t < valid ? (row[t] - mean) / sd : 0.0;
  }
  g_free (pw);
}

static void
test_random_vs_naive (void)
{
  fixture_model m;
  if (!fixture_model_open_any_or_fail (1, &m))
    return;
  canary_mel *mel = mel_for (&m);
  const int n_mels = canary_mel_n_mels (mel);
  GRand *rng = g_rand_new ();
  for (int trial = 0; trial < 4; trial++) {
    const gsize n = (gsize) g_rand_int_range (rng, 480, 4000);
    float *pcm = g_new (float, n);
    for (gsize j = 0; j < n; j++)
      pcm[j] = (float) g_rand_double_range (rng, -0.3, 0.3);
    const gsize frames = canary_mel_n_frames (mel, n);
    float *got = g_new (float, frames * n_mels);
    double *want = g_new (double, frames * n_mels);
    GError *err = NULL;
    g_assert_true (canary_mel_compute (mel, pcm, n, got, NULL, &err));
    g_assert_no_error (err);
    naive_features (mel, &m, pcm, n, want);
    double e = 0, rmax = 0;
    for (gsize i = 0; i < frames * n_mels; i++) {
      e = MAX (e, fabs (got[i] - want[i]));
      rmax = MAX (rmax, fabs (want[i]));
    }
    g_test_message ("random n=%" G_GSIZE_FORMAT ": max|err| %.3g (max|ref| %.3g)", n, e, rmax);
    g_assert_cmpfloat (e, <=, FEATURE_TOL * MAX (1.0, rmax));
    g_free (want);
    g_free (got);
    g_free (pcm);
  }
  g_rand_free (rng);
  canary_mel_free (mel);
  fixture_model_close (&m);
}

/* The computed window/filterbank (used when a checkpoint lacks the buffers) equal NeMo's stored
 * ones: the window to 1 FP32 ulp (torch evaluates cos in FP32 too), the filterbank to 1e-6 of its
 * largest weight (librosa's float64 maths rounded to float32; we follow the same roundings). */
static void
test_computed_buffers (void)
{
  fixture_model m;
  if (!fixture_model_open_any_or_fail (0, &m))
    return;
  GError *err = NULL;
  const canary_tensor *tw = canary_ckpt_get (m.ck, "preprocessor.featurizer.window");
  const canary_tensor *tf = canary_ckpt_get (m.ck, "preprocessor.featurizer.fb");
  g_assert_nonnull (tw);
  g_assert_nonnull (tf);
  float *sw = canary_tensor_to_f32 (tw), *sf = canary_tensor_to_f32 (tf);
  float *w = canary_mel_make_window ("hann", m.cfg->n_window_size, &err);
  g_assert_no_error (err);
  g_assert_cmpint (tw->numel, ==, m.cfg->n_window_size);
  for (int i = 0; i < m.cfg->n_window_size; i++)
    g_assert_cmpfloat (fabsf (w[i] - sw[i]), <=, 1.2e-7f);
  float *fb = canary_mel_make_filterbank (m.cfg->sample_rate, m.cfg->n_fft, m.cfg->n_mels, 0.0,
      m.cfg->sample_rate / 2.0, &err);
  g_assert_no_error (err);
  double e, rmax;
  e = max_abs_diff (fb, sf, (gsize) tf->numel, &rmax);
  g_test_message ("filterbank: max|err| %.3g of max %.3g", e, rmax);
  g_assert_cmpfloat (e, <=, 1e-6 * rmax);

  /* And a frontend built without a checkpoint gives the same features. */
  canary_mel *a = canary_mel_new (m.cfg, m.ck, &err), *b = canary_mel_new (m.cfg, NULL, &err);
  g_assert_no_error (err);
  GRand *rng = g_rand_new ();
  const gsize n = 8000;
  float *pcm = g_new (float, n);
  for (gsize j = 0; j < n; j++)
    pcm[j] = (float) g_rand_double_range (rng, -0.5, 0.5);
  const gsize frames = canary_mel_n_frames (a, n);
  float *oa = g_new (float, frames * m.cfg->n_mels), *ob = g_new (float, frames * m.cfg->n_mels);
  g_assert_true (canary_mel_compute (a, pcm, n, oa, NULL, &err));
  g_assert_true (canary_mel_compute (b, pcm, n, ob, NULL, &err));
  e = max_abs_diff (ob, oa, frames * m.cfg->n_mels, &rmax);
  g_assert_cmpfloat (e, <=, FEATURE_TOL * MAX (1.0, rmax));
  g_free (oa);
  g_free (ob);
  g_free (pcm);
  g_rand_free (rng);
  canary_mel_free (a);
  canary_mel_free (b);
  g_free (w);
  g_free (fb);
  g_free (sw);
  g_free (sf);
  fixture_model_close (&m);
}

/* Bad input is an error, never a crash; the clamp guard type is honoured. */
static void
test_errors_and_clamp (void)
{
  fixture_model m;
  if (!fixture_model_open_any_or_fail (0, &m))
    return;
  GError *err = NULL;
  canary_mel *mel = mel_for (&m);
  float pcm[400], out[3 * 512];
  for (int i = 0; i < 400; i++)
    pcm[i] = sinf (i * 0.1f) * 0.1f;
  pcm[17] = NAN;
  g_assert_false (canary_mel_compute (mel, pcm, 400, out, NULL, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO);
  g_clear_error (&err);
  g_assert_false (canary_mel_compute (mel, NULL, 400, out, NULL, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);
  canary_mel_free (mel);

  /* clamp: log(max(x, guard)). For digital silence both give log(guard) before normalisation;
   * with normalisation off the value is visible. */
  canary_config cfg = *m.cfg;
  cfg.log_zero_guard_type = (char *) "clamp";
  cfg.normalize = (char *) "none";
  mel = canary_mel_new (&cfg, m.ck, &err);
  g_assert_no_error (err);
  float zeros[480] = { 0 };
  float o[128 * 4];
  g_assert_cmpint (canary_mel_n_mels (mel), <=, 128);
  g_assert_true (canary_mel_compute (mel, zeros, 480, o, NULL, &err));
  g_assert_cmpfloat (fabsf (o[0] - logf ((float) m.cfg->log_zero_guard_value)), <=, 1e-6f);
  canary_mel_free (mel);

  cfg.log_zero_guard_type = (char *) "bogus";
  g_assert_null (canary_mel_new (&cfg, m.ck, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_clear_error (&err);
  fixture_model_close (&m);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/mel/fixtures", test_fixtures);
  g_test_add_func ("/mel/padding-matches-nemo", test_padding_matches_nemo);
  g_test_add_func ("/mel/padding-rule", test_padding_rule);
  g_test_add_func ("/mel/valid-mask", test_valid_mask);
  g_test_add_func ("/mel/random-vs-naive", test_random_vs_naive);
  g_test_add_func ("/mel/computed-buffers", test_computed_buffers);
  g_test_add_func ("/mel/errors-and-clamp", test_errors_and_clamp);
  return g_test_run ();
}
