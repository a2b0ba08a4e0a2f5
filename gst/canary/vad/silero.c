/* gst-canary — Silero VAD's 16 kHz network on the CPU (see canary_vad.h; shapes and sources in
 * docs/vad.md). Plain loops: one chunk is ~0.7 M multiply-adds every 32 ms of audio (about 22 M/s,
 * well under 1 % of one core), so neither BLAS nor SIMD would be worth its dependency here, and
 * the element can run it on the streaming thread.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "canary_vad.h"

#include "formats/safetensors.h"
#include "util.h"

#include <math.h>
#include <string.h>

#define N_FFT 256
#define HOP 128
#define N_BINS (N_FFT / 2 + 1)               /* 129 */
#define REFLECT_PAD 64
#define IN_LEN (CANARY_VAD_CONTEXT + CANARY_VAD_CHUNK)   /* 576 */
#define PADDED_LEN (IN_LEN + REFLECT_PAD)                /* 640 */
#define N_FRAMES ((PADDED_LEN - N_FFT) / HOP + 1)        /* 4 */
#define HIDDEN 128

/* A Conv1d with kernel 3 and padding 1. */
typedef struct {
  int c_in, c_out, stride;
  float *w;   /* [c_out][c_in][3] */
  float *b;   /* [c_out] */
} Conv;

struct _canary_vad {
  float *stft;                /* [2 * N_BINS][N_FFT]: real rows, then imaginary rows */
  Conv conv[4];
  float *w_ih, *w_hh;         /* [4 * HIDDEN][HIDDEN], gates i, f, g, o (PyTorch's LSTMCell) */
  float *b_gates;             /* b_ih + b_hh */
  float *w_out;               /* [HIDDEN] */
  float b_out;

  /* Stream state */
  float context[CANARY_VAD_CONTEXT];
  float h[HIDDEN], c[HIDDEN];
};

void
canary_vad_free (canary_vad *vad)
{
  if (!vad)
    return;
  g_free (vad->stft);
  for (int i = 0; i < 4; i++) {
    g_free (vad->conv[i].w);
    g_free (vad->conv[i].b);
  }
  g_free (vad->w_ih);
  g_free (vad->w_hh);
  g_free (vad->b_gates);
  g_free (vad->w_out);
  g_free (vad);
}

void
canary_vad_reset (canary_vad *vad)
{
  memset (vad->context, 0, sizeof vad->context);
  memset (vad->h, 0, sizeof vad->h);
  memset (vad->c, 0, sizeof vad->c);
}

static gboolean
load_conv (canary_safetensors *st, Conv *cv, const char *name, int c_in, int c_out, int stride,
    GError **error)
{
  char key[64];
  const gint64 ws[3] = {c_out, c_in, 3}, bs[1] = {c_out};
  cv->c_in = c_in;
  cv->c_out = c_out;
  cv->stride = stride;
  g_snprintf (key, sizeof key, "%s.weight", name);
  if (!(cv->w = canary_safetensors_get_f32 (st, key, 3, ws, error)))
    return FALSE;
  g_snprintf (key, sizeof key, "%s.bias", name);
  return (cv->b = canary_safetensors_get_f32 (st, key, 1, bs, error)) != NULL;
}

/* Non-finite weights would make every probability NaN: refuse them at load. */
static gboolean
all_finite (const float *x, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    if (!isfinite (x[i]))
      return FALSE;
  }
  return TRUE;
}

static gboolean
check_finite (const canary_vad *vad, GError **error)
{
  gboolean ok = all_finite (vad->stft, 2 * N_BINS * N_FFT)
      && all_finite (vad->w_ih, 4 * HIDDEN * HIDDEN) && all_finite (vad->w_hh, 4 * HIDDEN * HIDDEN)
      && all_finite (vad->b_gates, 4 * HIDDEN) && all_finite (vad->w_out, HIDDEN)
      && isfinite (vad->b_out);
  for (int i = 0; ok && i < 4; i++) {
    const Conv *cv = &vad->conv[i];
    ok = all_finite (cv->w, (gsize) cv->c_out * cv->c_in * 3) && all_finite (cv->b, cv->c_out);
  }
  return ok || canary_fail (error, CANARY_ERROR_FORMAT, "VAD weights", "hold NaN or infinite values");
}

static canary_vad *
vad_from (canary_safetensors *st, GError **error)
{
  canary_vad *vad = g_new0 (canary_vad, 1);
  const gint64 stft_shape[3] = {2 * N_BINS, 1, N_FFT};
  const gint64 gates_shape[2] = {4 * HIDDEN, HIDDEN}, gate_bias[1] = {4 * HIDDEN};
  const gint64 out_shape[3] = {1, HIDDEN, 1}, one[1] = {1};
  float *b_ih = NULL, *b_hh = NULL, *b_out = NULL;
  gboolean ok =
      (vad->stft = canary_safetensors_get_f32 (st, "stft_conv.weight", 3, stft_shape, error))
      && load_conv (st, &vad->conv[0], "conv1", N_BINS, 128, 1, error)
      && load_conv (st, &vad->conv[1], "conv2", 128, 64, 2, error)
      && load_conv (st, &vad->conv[2], "conv3", 64, 64, 2, error)
      && load_conv (st, &vad->conv[3], "conv4", 64, HIDDEN, 1, error)
      && (vad->w_ih = canary_safetensors_get_f32 (st, "lstm_cell.weight_ih", 2, gates_shape, error))
      && (vad->w_hh = canary_safetensors_get_f32 (st, "lstm_cell.weight_hh", 2, gates_shape, error))
      && (b_ih = canary_safetensors_get_f32 (st, "lstm_cell.bias_ih", 1, gate_bias, error))
      && (b_hh = canary_safetensors_get_f32 (st, "lstm_cell.bias_hh", 1, gate_bias, error))
      && (vad->w_out = canary_safetensors_get_f32 (st, "final_conv.weight", 3, out_shape, error))
      && (b_out = canary_safetensors_get_f32 (st, "final_conv.bias", 1, one, error));
  if (ok) {
    vad->b_gates = g_new (float, 4 * HIDDEN);
    for (int i = 0; i < 4 * HIDDEN; i++)
      vad->b_gates[i] = b_ih[i] + b_hh[i];
    vad->b_out = b_out[0];
  }
  g_free (b_ih);
  g_free (b_hh);
  g_free (b_out);
  if (!ok || !check_finite (vad, error)) {
    canary_vad_free (vad);
    return NULL;
  }
  canary_vad_reset (vad);
  return vad;
}

canary_vad *
canary_vad_load (const char *path, GError **error)
{
  canary_safetensors *st = canary_safetensors_open (path, error);
  if (!st)
    return NULL;
  canary_vad *vad = vad_from (st, error);
  canary_safetensors_free (st);
  return vad;
}

canary_vad *
canary_vad_load_bytes (const guint8 *data, gsize len, GError **error)
{
  canary_safetensors *st = canary_safetensors_parse (data, len, "<memory>", error);
  if (!st)
    return NULL;
  canary_vad *vad = vad_from (st, error);
  canary_safetensors_free (st);
  return vad;
}

static float
dot (const float *a, const float *b, int n)
{
  float s = 0.0f;
  for (int i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}

/* out[o][l] = relu(b[o] + Σ_c Σ_k w[o][c][k] · in[c][l·stride + k − 1]), zero outside [0, len). */
static int
conv_relu (const Conv *cv, const float *in, int len, float *out)
{
  int out_len = (len + 2 - 3) / cv->stride + 1;
  for (int o = 0; o < cv->c_out; o++) {
    const float *w = cv->w + (gsize) o * cv->c_in * 3;
    for (int l = 0; l < out_len; l++) {
      float s = cv->b[o];
      for (int c = 0; c < cv->c_in; c++) {
        const float *x = in + (gsize) c * len;
        for (int k = 0; k < 3; k++) {
          int t = l * cv->stride + k - 1;
          if (t >= 0 && t < len)
            s += w[c * 3 + k] * x[t];
        }
      }
      out[o * out_len + l] = s > 0.0f ? s : 0.0f;
    }
  }
  return out_len;
}

static float
sigmoid (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

float
canary_vad_process (canary_vad *vad, const float *chunk)
{
  /* The chunk after its context, reflected by 64 samples on the right (torch's "reflect": the
   * edge sample is not repeated). */
  float x[PADDED_LEN];
  memcpy (x, vad->context, sizeof vad->context);
  memcpy (x + CANARY_VAD_CONTEXT, chunk, CANARY_VAD_CHUNK * sizeof (float));
  for (int j = 0; j < REFLECT_PAD; j++)
    x[IN_LEN + j] = x[IN_LEN - 2 - j];
  memcpy (vad->context, chunk + CANARY_VAD_CHUNK - CANARY_VAD_CONTEXT, sizeof vad->context);

  /* STFT magnitude [N_BINS][N_FRAMES] */
  float mag[N_BINS * N_FRAMES];
  for (int f = 0; f < N_FRAMES; f++) {
    const float *frame = x + f * HOP;
    for (int k = 0; k < N_BINS; k++) {
      float re = dot (vad->stft + (gsize) k * N_FFT, frame, N_FFT);
      float im = dot (vad->stft + (gsize) (k + N_BINS) * N_FFT, frame, N_FFT);
      mag[k * N_FRAMES + f] = sqrtf (re * re + im * im);
    }
  }

  float a[128 * N_FRAMES], b[128 * N_FRAMES];
  int len = conv_relu (&vad->conv[0], mag, N_FRAMES, a);   /* 128 × 4 */
  len = conv_relu (&vad->conv[1], a, len, b);              /* 64 × 2 */
  len = conv_relu (&vad->conv[2], b, len, a);              /* 64 × 1 */
  len = conv_relu (&vad->conv[3], a, len, b);              /* 128 × 1 */
  g_assert (len == 1);

  /* LSTM cell: gates = W_ih·x + W_hh·h + b, in the order i, f, g, o. */
  float gates[4 * HIDDEN];
  for (int r = 0; r < 4 * HIDDEN; r++)
    gates[r] = vad->b_gates[r] + dot (vad->w_ih + (gsize) r * HIDDEN, b, HIDDEN)
        + dot (vad->w_hh + (gsize) r * HIDDEN, vad->h, HIDDEN);
  float out = vad->b_out;
  for (int j = 0; j < HIDDEN; j++) {
    float i = sigmoid (gates[j]), f = sigmoid (gates[HIDDEN + j]);
    float g = tanhf (gates[2 * HIDDEN + j]), o = sigmoid (gates[3 * HIDDEN + j]);
    vad->c[j] = f * vad->c[j] + i * g;
    vad->h[j] = o * tanhf (vad->c[j]);
    out += vad->w_out[j] * (vad->h[j] > 0.0f ? vad->h[j] : 0.0f);
  }
  return sigmoid (out);
}
