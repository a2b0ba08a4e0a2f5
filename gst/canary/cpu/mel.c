/* gst-canary — log-mel frontend: NeMo's FilterbankFeatures (NeMo >= 2.5 behaviour), FP32.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Reference: NeMo 2.5.3 nemo/collections/asr/parts/preprocessing/features.py (FilterbankFeatures
 * .forward, normalize_batch) and docs/MODEL.md (Frontend). NeMo runs the whole featurizer in float32; we
 * follow its FP32 arithmetic step by step, except for the FFT (see stft_power). */
#include "cpu/mel.h"

#include <cblas.h>
#include <fftw3.h>
#include <math.h>
#include <string.h>

#include "canary.h"
#include "nemo_constants.h"
#include "util.h"


typedef enum {
  MEL_NORM_NONE,
  MEL_NORM_PER_FEATURE,
} mel_norm;

struct _canary_mel {
  int sample_rate;
  int n_fft;
  int hop;
  int win_length;
  int n_mels;
  int n_bins;            /* n_fft / 2 + 1 (one-sided spectrum) */
  gboolean preemph_on;
  float preemph;
  double mag_power;
  gboolean log;
  gboolean guard_clamp;  /* log_zero_guard_type "clamp" (else "add") */
  float guard;
  mel_norm norm;
  float *window;         /* [n_fft], the win_length window zero-padded and centred */
  double *window_d;      /* same, widened once for the double-precision FFT input */
  float *fb;             /* [n_mels][n_bins] */
  fftw_plan plan;        /* r2c, n_fft points, out of place; executed with new arrays */
};

/* FFTW's planner (plan creation and destruction) is not thread-safe; execution is. */
static GMutex fftw_planner_lock;

/* ---------------------------------------------------------------------------------------- */
/* Window and filterbank construction (used when the checkpoint does not carry them).         */

float *
canary_mel_make_window (const char *name, int win_length, GError **error)
{
  if (win_length <= 0 || win_length > (1 << 20)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
        "preprocessor: window length %d out of range", win_length);
    return NULL;
  }
  float *w = g_new (float, win_length);
  if (name == NULL || g_strcmp0 (name, "hann") == 0) {
    /* torch.hann_window(L, periodic=False) = hamming_window(alpha=0.5, beta=0.5), evaluated
     * in float32 as arange(L) * (2π/(L-1)) → cos → * -0.5 → + 0.5. */
    if (win_length == 1) {
      w[0] = 1.0f;
      return w;
    }
    const float step = (float) (G_PI * 2.0 / (double) (win_length - 1));
    for (int i = 0; i < win_length; i++) {
      float v = (float) i * step;
      v = cosf (v);
      v = v * -0.5f;
      w[i] = v + 0.5f;
    }
    return w;
  }
  if (g_strcmp0 (name, "none") == 0 || g_strcmp0 (name, "ones") == 0) {
    /* torch.stft(window=None) uses a rectangular window of win_length. */
    for (int i = 0; i < win_length; i++)
      w[i] = 1.0f;
    return w;
  }
  g_free (w);
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
      "preprocessor.window: '%s' is not supported without a stored "
      "preprocessor.featurizer.window buffer", name);
  return NULL;
}

/* librosa's Slaney mel scale (htk=False): linear below 1 kHz, logarithmic above. */
static double
hz_to_mel_slaney (double hz)
{
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0;
  const double min_log_mel = min_log_hz / f_sp, logstep = log (6.4) / 27.0;
  if (hz >= min_log_hz)
    return min_log_mel + log (hz / min_log_hz) / logstep;
  return hz / f_sp;
}

static double
mel_to_hz_slaney (double mel)
{
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0;
  const double min_log_mel = min_log_hz / f_sp, logstep = log (6.4) / 27.0;
  if (mel >= min_log_mel)
    return min_log_hz * exp (logstep * (mel - min_log_mel));
  return f_sp * mel;
}

float *
canary_mel_make_filterbank (int sample_rate, int n_fft, int n_mels, double fmin, double fmax,
    GError **error)
{
  if (sample_rate <= 0 || n_fft < 2 || n_fft > (1 << 20) || n_mels <= 0 || n_mels > 4096
      || !(fmin >= 0.0) || !(fmax > fmin)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
        "preprocessor: cannot build a mel filterbank for sr=%d n_fft=%d n_mels=%d fmin=%g fmax=%g",
        sample_rate, n_fft, n_mels, fmin, fmax);
    return NULL;
  }
  const int n_bins = n_fft / 2 + 1, n_pts = n_mels + 2;
  /* np.fft.rfftfreq(n_fft, 1/sr): k * (1 / (n_fft * (1/sr))). */
  const double bin_hz = 1.0 / ((double) n_fft * (1.0 / sample_rate));
  /* np.linspace(mel(fmin), mel(fmax), n_mels + 2), last point pinned to the stop value. */
  const double m_lo = hz_to_mel_slaney (fmin), m_hi = hz_to_mel_slaney (fmax);
  const double m_step = (m_hi - m_lo) / (n_pts - 1);
  double *hz = g_new (double, n_pts);
  for (int i = 0; i < n_pts; i++)
    hz[i] = mel_to_hz_slaney (i == n_pts - 1 ? m_hi : i * m_step + m_lo);

  float *fb = g_new0 (float, (gsize) n_mels * n_bins);
  for (int m = 0; m < n_mels; m++) {
    const double d_lo = hz[m + 1] - hz[m], d_hi = hz[m + 2] - hz[m + 1];
    const double enorm = 2.0 / (hz[m + 2] - hz[m]);
    for (int k = 0; k < n_bins; k++) {
      const double f = k * bin_hz;
      const double lower = -(hz[m] - f) / d_lo, upper = (hz[m + 2] - f) / d_hi;
      /* librosa stores the triangle into a float32 array, then scales it in place by the
       * (float64) Slaney norm: two roundings to float32. */
      const float tri = (float) MAX (0.0, MIN (lower, upper));
      fb[(gsize) m * n_bins + k] = (float) ((double) tri * enorm);
    }
  }
  g_free (hz);
  return fb;
}

/* ---------------------------------------------------------------------------------------- */
/* Construction.                                                                             */

/* Takes the stored window buffer when present (any name), else computes it. Pads it to n_fft,
 * centred like torch.stft does ((n_fft - win_length) / 2 zeros on the left). */
static gboolean
mel_setup_window (canary_mel *mel, const canary_config *cfg, const canary_ckpt *ck, GError **error)
{
  static const char key[] = "preprocessor.featurizer.window";
  const canary_tensor *t = ck ? canary_ckpt_get (ck, key) : NULL;
  float *w;
  if (t) {
    if (t->ndim != 1 || t->shape[0] != mel->win_length) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
          "%s: expected shape [%d] (window_size * sample_rate), got %d dims, first %" G_GINT64_FORMAT,
          key, mel->win_length, t->ndim, t->ndim > 0 ? t->shape[0] : (gint64) - 1);
      return FALSE;
    }
    w = canary_tensor_to_f32 (t);
  } else {
    w = canary_mel_make_window (cfg->window, mel->win_length, error);
    if (!w)
      return FALSE;
  }
  const int left = (mel->n_fft - mel->win_length) / 2;
  mel->window = g_new0 (float, mel->n_fft);
  mel->window_d = g_new0 (double, mel->n_fft);
  for (int i = 0; i < mel->win_length; i++) {
    mel->window[left + i] = w[i];
    mel->window_d[left + i] = w[i];
  }
  g_free (w);
  return TRUE;
}

/* Takes the stored filterbank ([1, n_mels, n_bins] in NeMo, [n_mels, n_bins] accepted) when
 * present, else builds librosa's (fmin 0, fmax sample_rate / 2: NeMo's defaults). */
static gboolean
mel_setup_filterbank (canary_mel *mel, const canary_ckpt *ck, GError **error)
{
  static const char key[] = "preprocessor.featurizer.fb";
  const canary_tensor *t = ck ? canary_ckpt_get (ck, key) : NULL;
  if (!t) {
    mel->fb = canary_mel_make_filterbank (mel->sample_rate, mel->n_fft, mel->n_mels, 0.0,
        mel->sample_rate / 2.0, error);
    return mel->fb != NULL;
  }
  const gboolean ok3 = t->ndim == 3 && t->shape[0] == 1 && t->shape[1] == mel->n_mels
      && t->shape[2] == mel->n_bins;
  const gboolean ok2 = t->ndim == 2 && t->shape[0] == mel->n_mels && t->shape[1] == mel->n_bins;
  if (!ok3 && !ok2) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
        "%s: expected shape [1, %d, %d] (features, n_fft/2+1), got a %d-dim tensor of %"
        G_GINT64_FORMAT " elements", key, mel->n_mels, mel->n_bins, t->ndim, t->numel);
    return FALSE;
  }
  mel->fb = canary_tensor_to_f32 (t);
  return TRUE;
}

/* Reads and checks the scalar settings. Only what NeMo does for Canary-style configs is
 * supported; anything else is refused rather than silently computed differently. */
static gboolean
mel_setup_params (canary_mel *mel, const canary_config *cfg, GError **error)
{
  mel->sample_rate = cfg->sample_rate;
  mel->win_length = cfg->n_window_size;
  mel->hop = cfg->n_window_stride;
  mel->n_mels = cfg->n_mels;
  mel->n_fft = cfg->n_fft;
  if (mel->n_fft <= 0 && mel->win_length > 0) {
    /* NeMo: n_fft or 2 ** ceil(log2(win_length)). */
    mel->n_fft = 1;
    while (mel->n_fft < mel->win_length && mel->n_fft < (1 << 20))
      mel->n_fft *= 2;
  }
  if (mel->sample_rate <= 0 || mel->win_length <= 0 || mel->hop <= 0 || mel->n_mels <= 0
      || mel->n_mels > 4096 || mel->n_fft < 2 || mel->n_fft > (1 << 16)
      || mel->n_fft % 2 != 0 || mel->win_length > mel->n_fft) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
        "preprocessor: invalid sizes (sample_rate %d, window %d, stride %d, n_fft %d, features %d)",
        mel->sample_rate, mel->win_length, mel->hop, mel->n_fft, mel->n_mels);
    return FALSE;
  }
  if (cfg->exact_pad) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
        "preprocessor.exact_pad: true is not supported (Canary uses the centred STFT)");
    return FALSE;
  }
  mel->n_bins = mel->n_fft / 2 + 1;
  mel->preemph_on = cfg->preemph != 0.0;
  mel->preemph = (float) cfg->preemph;    /* torch multiplies by the scalar in float32 */
  mel->mag_power = cfg->mag_power;
  mel->log = cfg->log;
  mel->guard = (float) cfg->log_zero_guard_value;
  if (cfg->log_zero_guard_type == NULL || g_strcmp0 (cfg->log_zero_guard_type, "add") == 0)
    mel->guard_clamp = FALSE;
  else if (g_strcmp0 (cfg->log_zero_guard_type, "clamp") == 0)
    mel->guard_clamp = TRUE;
  else {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
        "preprocessor.log_zero_guard_type: '%s' (expected 'add' or 'clamp')",
        cfg->log_zero_guard_type);
    return FALSE;
  }
  /* normalize: NeMo's normalize_batch returns x unchanged for unknown strings ("NA"). */
  if (cfg->normalize == NULL || g_strcmp0 (cfg->normalize, "per_feature") == 0)
    mel->norm = MEL_NORM_PER_FEATURE;
  else if (g_strcmp0 (cfg->normalize, "all_features") == 0) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
        "preprocessor.normalize: 'all_features' is not supported");
    return FALSE;
  } else
    mel->norm = MEL_NORM_NONE;
  return TRUE;
}

canary_mel *
canary_mel_new (const canary_config *cfg, const canary_ckpt *ck, GError **error)
{
  g_return_val_if_fail (cfg != NULL, NULL);
  canary_mel *mel = g_new0 (canary_mel, 1);
  if (!mel_setup_params (mel, cfg, error) || !mel_setup_window (mel, cfg, ck, error)
      || !mel_setup_filterbank (mel, ck, error)) {
    canary_mel_free (mel);
    return NULL;
  }
  /* Double-precision FFT: torch's CPU stft runs pocketfft in float32; computing the DFT in
   * double keeps us nearer the exact value than NeMo itself is, so the difference we measure is
   * NeMo's own FP32 rounding, far below the tests' tolerance. FFTW_ESTIMATE: no timing runs,
   * deterministic plans. */
  double *in = fftw_alloc_real (mel->n_fft);
  fftw_complex *out = fftw_alloc_complex (mel->n_bins);
  g_mutex_lock (&fftw_planner_lock);
  mel->plan = fftw_plan_dft_r2c_1d (mel->n_fft, in, out, FFTW_ESTIMATE);
  g_mutex_unlock (&fftw_planner_lock);
  fftw_free (in);
  fftw_free (out);
  if (!mel->plan) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "preprocessor: FFTW could not plan a %d-point FFT", mel->n_fft);
    canary_mel_free (mel);
    return NULL;
  }
  return mel;
}

void
canary_mel_free (canary_mel *mel)
{
  if (!mel)
    return;
  if (mel->plan) {
    g_mutex_lock (&fftw_planner_lock);
    fftw_destroy_plan (mel->plan);
    g_mutex_unlock (&fftw_planner_lock);
  }
  g_free (mel->window);
  g_free (mel->window_d);
  g_free (mel->fb);
  g_free (mel);
}

int
canary_mel_n_mels (const canary_mel *mel)
{
  return mel->n_mels;
}

gsize
canary_mel_n_frames (const canary_mel *mel, gsize n_samples)
{
  /* torch.stft(center=True) pads n_fft/2 on both sides: 1 + (N + 2*(n_fft/2) - n_fft) / hop,
   * which is N / hop + 1 for the even n_fft we accept. */
  return n_samples / (gsize) mel->hop + 1;
}

gsize
canary_mel_n_valid (const canary_mel *mel, gsize n_samples)
{
  /* get_seq_len: floor((N + n_fft/2*2 - n_fft) / hop) = N / hop for an even n_fft. */
  return n_samples / (gsize) mel->hop;
}

const float *
canary_mel_window (const canary_mel *mel, int *n_fft)
{
  if (n_fft)
    *n_fft = mel->n_fft;
  return mel->window;
}

const float *
canary_mel_filterbank (const canary_mel *mel, int *n_mels, int *n_bins)
{
  if (n_mels)
    *n_mels = mel->n_mels;
  if (n_bins)
    *n_bins = mel->n_bins;
  return mel->fb;
}

/* ---------------------------------------------------------------------------------------- */
/* The pipeline.                                                                             */

/* y[0] = x[0], y[i] = x[i] - a * x[i-1], in float32 like torch (the scalar product is rounded
 * before the subtraction). NeMo masks samples >= N afterwards; we simply never read past N. */
static void
preemphasis (const canary_mel *mel, const float *x, gsize n, float *y)
{
  if (n == 0)
    return;
  if (!mel->preemph_on) {
    memcpy (y, x, n * sizeof (float));
    return;
  }
  y[0] = x[0];
  for (gsize i = 1; i < n; i++) {
    const float scaled = mel->preemph * x[i - 1];
    y[i] = x[i] - scaled;
  }
}

/* |STFT|^mag_power of frame t for all n_bins: frame t covers samples [t*hop - n_fft/2,
 * t*hop + n_fft/2) of the zero-extended signal (torch's centred constant padding). */
static void
frame_power (const canary_mel *mel, const float *y, gsize n, gsize t, double *in,
    fftw_complex *spec, float *power)
{
  const gint64 start = (gint64) (t * (gsize) mel->hop) - mel->n_fft / 2;
  for (int k = 0; k < mel->n_fft; k++) {
    const gint64 idx = start + k;
    in[k] = (idx >= 0 && (guint64) idx < n) ? (double) y[idx] * mel->window_d[k] : 0.0;
  }
  fftw_execute_dft_r2c (mel->plan, in, spec);
  /* Read (re, im) pairs as doubles: fftw_complex is double[2] or, when <complex.h> came first
   * (OpenBLAS's cblas.h includes it), double _Complex; both have this layout. */
  const double *s = (const double *) spec;
  for (int b = 0; b < mel->n_bins; b++) {
    const double re = s[2 * b], im = s[2 * b + 1];
    const double p = re * re + im * im;
    /* mag_power 2 is the Canary setting: |X|^2 directly instead of sqrt then square. */
    power[b] = (float) (mel->mag_power == 2.0 ? p : pow (sqrt (p), mel->mag_power));
  }
}

static gboolean
stft_power (const canary_mel *mel, const float *y, gsize n, gsize n_frames, float *power,
    GError **error)
{
  double *in = fftw_alloc_real (mel->n_fft);
  fftw_complex *spec = fftw_alloc_complex (mel->n_bins);
  if (!in || !spec) {
    fftw_free (in);
    fftw_free (spec);
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "preprocessor: cannot allocate FFT buffers (%d points)", mel->n_fft);
    return FALSE;
  }
  for (gsize t = 0; t < n_frames; t++)
    frame_power (mel, y, n, t, in, spec, power + t * mel->n_bins);
  fftw_free (in);
  fftw_free (spec);
  return TRUE;
}

/* out[m][t] = log(max/+ guard) in float32, as torch.log on the fp32 matmul result. */
static void
apply_log (const canary_mel *mel, float *out, gsize count)
{
  if (!mel->log)
    return;
  for (gsize i = 0; i < count; i++) {
    const float v = out[i];
    out[i] = logf (mel->guard_clamp ? MAX (v, mel->guard) : v + mel->guard);
  }
}

/* ---------------------------------------------------------------------------------------- */
/* torch's FP32 sum, reproduced.                                                            */

/* Why: a feature row that is constant over the valid frames (digital silence: every value is
 * log(guard)) has a mean that, summed in FP32, is one ulp off the value, and normalize_batch
 * divides that 4e-6 by a std of ~1e-5: NeMo outputs -0.276 there, not 0, and the encoder and
 * decoder see it. Reproducing that needs torch's exact summation order: at::native cascade_sum
 * (ATen/native/cpu/SumKernel.cpp) for a contiguous row of n floats in float accumulators:
 *  - n >= 8: lanes of 8-float vectors (Vectorized<float> of the AVX2 kernel; the AVX512 build
 *    of torch 2.x takes the same path, checked against torch itself), summed per lane by
 *    row_sum, then the n % 8 tail elements in order, then the 8 lanes in order;
 *  - n < 8: row_sum over single floats.
 * row_sum splits the items into 4 interleaved accumulators (ILP) fed by a 4-level cascade whose
 * level i is flushed into level i+1 every 2^(i·p) blocks (p = max(4, ceil(log2(n))/4)).
 * Other platforms' torch (other vector widths) round differently; this is NeMo on x86-64. */

#define TSUM_LANES 8
#define TSUM_ILP 4
#define TSUM_LEVELS 4

/* c10 utils::CeilLog2: 1 for x <= 2, else ceil(log2(x)). */
static int
ceil_log2 (gsize x)
{
  int bits = 0;
  if (x <= 2)
    return 1;
  for (gsize v = x - 1; v; v >>= 1)
    bits++;
  return bits;
}

/* Item i of a row seen as `lanes`-wide items: x[i * lanes + l]. acc[l] += item, lane-wise. */
static inline void
tsum_add (float *acc, const float *x, gsize item, int lanes)
{
  for (int l = 0; l < lanes; l++)
    acc[l] += x[item * lanes + l];
}

/* multi_row_sum with 4 "rows" (the ILP accumulators): item (i, k) is item 4i + k. */
static void
tsum_multi_row (const float *x, gsize size, int lanes, float out[TSUM_ILP][TSUM_LANES])
{
  float acc[TSUM_LEVELS][TSUM_ILP][TSUM_LANES] = { { { 0 } } };
  const int power = MAX (4, ceil_log2 (size) / TSUM_LEVELS);
  const gsize step = (gsize) 1 << power, mask = step - 1;
  gsize i = 0;
  while (i + step <= size) {
    for (gsize j = 0; j < step; j++, i++)
      for (int k = 0; k < TSUM_ILP; k++)
        tsum_add (acc[0][k], x, i * TSUM_ILP + k, lanes);
    for (int lv = 1; lv < TSUM_LEVELS; lv++) {
      for (int k = 0; k < TSUM_ILP; k++)
        for (int l = 0; l < lanes; l++) {
          acc[lv][k][l] += acc[lv - 1][k][l];
          acc[lv - 1][k][l] = 0.0f;
        }
      if ((i & (mask << (lv * power))) != 0)
        break;
    }
  }
  for (; i < size; i++)
    for (int k = 0; k < TSUM_ILP; k++)
      tsum_add (acc[0][k], x, i * TSUM_ILP + k, lanes);
  for (int lv = 1; lv < TSUM_LEVELS; lv++)
    for (int k = 0; k < TSUM_ILP; k++)
      for (int l = 0; l < lanes; l++)
        acc[0][k][l] += acc[lv][k][l];
  memcpy (out, acc[0], sizeof acc[0]);
}

/* row_sum over `size` items of `lanes` floats; the lane sums go to out[0..lanes). */
static void
tsum_row (const float *x, gsize size, int lanes, float *out)
{
  float part[TSUM_ILP][TSUM_LANES];
  const gsize size_ilp = size / TSUM_ILP;
  tsum_multi_row (x, size_ilp, lanes, part);
  for (gsize i = size_ilp * TSUM_ILP; i < size; i++)
    tsum_add (part[0], x, i, lanes);
  for (int k = 1; k < TSUM_ILP; k++)
    for (int l = 0; l < lanes; l++)
      part[0][l] += part[k][l];
  memcpy (out, part[0], (gsize) lanes * sizeof (float));
}

/* torch.sum of a contiguous float32 row of n elements, bit for bit (see above). */
static float
torch_sum_f32 (const float *x, gsize n)
{
  float lanes[TSUM_LANES];
  if (n < TSUM_LANES) {
    tsum_row (x, n, 1, lanes);
    return lanes[0];
  }
  const gsize n_vec = n / TSUM_LANES;
  tsum_row (x, n_vec, TSUM_LANES, lanes);
  float total = 0.0f;
  for (gsize i = n_vec * TSUM_LANES; i < n; i++)
    total += x[i];
  for (int l = 0; l < TSUM_LANES; l++)
    total += lanes[l];
  return total;
}

/* normalize_batch("per_feature") as NeMo 2.5 writes it, in FP32 with torch's sums over the whole
 * frame axis of the masked rows (frames >= L contribute 0):
 *   mean = sum(where(valid, x, 0)) / L
 *   std  = sqrt(sum(where(valid, x - mean, 0)^2) / (L - 1)), NaN (L == 1) → 0, then += 1e-5
 *   y    = (x - mean) / std   for every frame (frames >= L are zeroed afterwards). */
static gboolean
normalize_per_feature (const canary_mel *mel, float *out, gsize n_frames, gsize n_valid,
    GError **error)
{
  float *tmp = g_try_new (float, n_frames);
  if (!tmp) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "mel: cannot allocate %" G_GSIZE_FORMAT " bytes", n_frames * sizeof (float));
    return FALSE;
  }
  for (int m = 0; m < mel->n_mels; m++) {
    float *row = out + (gsize) m * n_frames;
    memcpy (tmp, row, n_valid * sizeof (float));
    memset (tmp + n_valid, 0, (n_frames - n_valid) * sizeof (float));
    const float mean = torch_sum_f32 (tmp, n_frames) / (float) n_valid;
    for (gsize t = 0; t < n_valid; t++) {
      const float d = row[t] - mean;
      tmp[t] = d * d;
    }
    const float var = torch_sum_f32 (tmp, n_frames) / (float) (n_valid - 1.0);
    float std = sqrtf (var);
    if (isnan (std))
      std = 0.0f;
    std += CANARY_MEL_STD_EPS;
    for (gsize t = 0; t < n_frames; t++)
      row[t] = (row[t] - mean) / std;
  }
  g_free (tmp);
  return TRUE;
}

static gboolean
check_input (const canary_mel *mel, const float *pcm, gsize n, const float *out, GError **error)
{
  if ((n > 0 && !pcm) || !out) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "mel: NULL %s buffer", out ? "input" : "output");
    return FALSE;
  }
  /* Frame counts are handed around as int; the output must be indexable. */
  gsize bytes;
  const gsize frames = canary_mel_n_frames (mel, n);
  if (n > G_MAXSIZE / 4 || frames > (gsize) G_MAXINT
      || !canary_mul_size (frames, (gsize) MAX (mel->n_mels, mel->n_bins) * sizeof (float), &bytes)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO,
        "mel: input of %" G_GSIZE_FORMAT " samples is too long", n);
    return FALSE;
  }
  for (gsize i = 0; i < n; i++) {
    if (!isfinite (pcm[i])) {
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO,
          "mel: sample %" G_GSIZE_FORMAT " is not finite", i);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
canary_mel_compute (const canary_mel *mel, const float *pcm, gsize n, float *out, int *n_valid,
    GError **error)
{
  g_return_val_if_fail (mel != NULL, FALSE);
  if (!check_input (mel, pcm, n, out, error))
    return FALSE;
  const gsize frames = canary_mel_n_frames (mel, n), valid = canary_mel_n_valid (mel, n);
  const gsize count = frames * (gsize) mel->n_mels;

  float *y = g_try_new (float, MAX (n, 1));
  float *power = g_try_new (float, frames * (gsize) mel->n_bins);
  if (!y || !power) {
    g_free (y);
    g_free (power);
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "mel: cannot allocate %" G_GSIZE_FORMAT " bytes of scratch",
        (n + frames * (gsize) mel->n_bins) * sizeof (float));
    return FALSE;
  }
  preemphasis (mel, pcm, n, y);
  gboolean ok = stft_power (mel, y, n, frames, power, error);
  g_free (y);
  if (!ok) {
    g_free (power);
    return FALSE;
  }
  /* out[n_mels x F] = fb[n_mels x n_bins] · power[F x n_bins]^T */
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, mel->n_mels, (int) frames, mel->n_bins,
      1.0f, mel->fb, mel->n_bins, power, mel->n_bins, 0.0f, out, (int) frames);
  g_free (power);

  apply_log (mel, out, count);
  if (mel->norm == MEL_NORM_PER_FEATURE && valid > 0
      && !normalize_per_feature (mel, out, frames, valid, error))
    return FALSE;
  /* Frames >= L are padding: pad_value 0. With L == 0 NeMo's mean is NaN, but every frame is
   * then masked, so the output is all zeros too. */
  for (int m = 0; m < mel->n_mels; m++)
    memset (out + (gsize) m * frames + valid, 0, (frames - valid) * sizeof (float));
  if (n_valid)
    *n_valid = (int) valid;
  return TRUE;
}

/* ---------------------------------------------------------------------------------------- */

gsize
canary_pad_short_audio (const float *in, gsize n, int sample_rate, double min_dur, float **out)
{
  *out = NULL;
  if (sample_rate <= 0 || !(min_dur > 0.0) || min_dur * sample_rate > (double) G_MAXINT)
    return n;
  /* Lhotse compute_num_samples: round(duration * sr, 8 digits), then round half up. */
  const double exact = round (min_dur * sample_rate * 1e8) / 1e8;
  const gsize target = (gsize) floor (exact + 0.5);
  if (n >= target)
    return n;
  /* Lhotse pads with two PaddingCuts of half the padding duration each, every one rounded half
   * up to samples, and the mixed cut is cut to `target`: the left side gets ceil(P/2). */
  const gsize pad = target - n, left = (pad + 1) / 2;
  float *buf = g_new0 (float, target);
  if (n > 0)
    memcpy (buf + left, in, n * sizeof (float));
  *out = buf;
  return target;
}
