/* gst-canary — the CUDA backend on a GPU (suite `cuda`). Exits 77 (meson: SKIP) with a message
 * when no usable GPU is present.
 *
 * Tolerances (stated once, with the reason):
 *  - FP32 on CUDA: as tight as the CPU path against NeMo (ENC_TOL, TF_TOL = 1e-4 relative to
 *    max(1, max|NeMo|) / absolute on log-probs, as test_encoder.c and test_decoder.c); the
 *    teacher-forced log-probs are computed, as on the CPU, from NeMo's encoder output
 *    (canary_cuda_set_memory), so that TF_TOL bounds the decoder alone.
 *  - FP16: encoder output within FP16_ENC_TOL = 2e-2 · max(1, max|NeMo|): FP16 weights alone give
 *    < 1e-3 on the fixtures (test_cuda_host.c); FP16 activations add one rounding (2^-11) per
 *    stored tensor per layer. Teacher-forced log-probs within FP16_TF_TOL = 0.15 absolute (0.1 for
 *    the weights alone, test_cuda_host.c, plus the activations; the CPU emulation of the FP16
 *    pipeline measures up to 0.137).
 *  - Beam-1 ids: identical to NeMo's in FP32. In FP16 identical, or — where a near-tie flips a
 *    token — the first differing step's NeMo margin (top-1 minus top-2 log-prob) is printed and
 *    must be below FP16_TF_TOL, and the teacher-forced argmax must agree with NeMo's on >= 99 % of
 *    the steps of all the model's clips (one flip in a 38-step clip is already 97 %).
 *  - The graph replay gives exactly the plain launch path's ids and score.
 *  - Kernels one by one against CPU loops on fresh random inputs (g_test_rand: a new seed each
 *    run, values never all zero): FP32 within 1e-5 relative, FP16 within 4e-3 relative (a few
 *    FP16 roundings of inputs and output).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "canary.h"
#include "canary_kernels.h"
#include "cuda/backend.h"
#include "cuda/device.h"
#include "cuda/gemm.h"
#include "cuda/weights.h"
#include "search.h"
#include "fixture.h"
#include "text/tokenizer.h"

#define ENC_TOL 1e-4
#define TF_TOL 1e-4
#define FP16_ENC_TOL 2e-2
#define FP16_TF_TOL 0.15
#define ARGMAX_AGREE 0.99
#define K32_TOL 1e-5
#define K16_TOL 4e-3

/* ---- Device buffers for the kernel tests ----------------------------------------------------- */

static void *
dev_upload (const float *src, gsize n, ck_dtype dt)
{
  void *d = NULL;
  g_assert_cmpint (cudaMalloc (&d, n * 4), ==, cudaSuccess);
  if (dt == CK_F16) {
    guint16 *h = g_new (guint16, n);
    for (gsize i = 0; i < n; i++)
      h[i] = canary_f32_to_f16 (src[i]);
    g_assert_cmpint (cudaMemcpy (d, h, n * 2, cudaMemcpyHostToDevice), ==, cudaSuccess);
    g_free (h);
  } else {
    g_assert_cmpint (cudaMemcpy (d, src, n * 4, cudaMemcpyHostToDevice), ==, cudaSuccess);
  }
  return d;
}

static float *
dev_download (const void *d, gsize n, ck_dtype dt)
{
  float *out = g_new (float, n);
  g_assert_cmpint (cudaDeviceSynchronize (), ==, cudaSuccess);
  if (dt == CK_F16) {
    guint16 *h = g_new (guint16, n);
    g_assert_cmpint (cudaMemcpy (h, d, n * 2, cudaMemcpyDeviceToHost), ==, cudaSuccess);
    for (gsize i = 0; i < n; i++)
      out[i] = canary_f16_to_f32 (h[i]);
    g_free (h);
  } else {
    g_assert_cmpint (cudaMemcpy (out, d, n * 4, cudaMemcpyDeviceToHost), ==, cudaSuccess);
  }
  return out;
}

/* Random values in [-a, a], rounded to FP16 when the kernel reads FP16 (so the CPU reference
 * sees exactly the kernel's inputs). */
static float *
rand_vec (gsize n, double a, ck_dtype dt)
{
  float *v = g_new (float, n);
  for (gsize i = 0; i < n; i++) {
    v[i] = (float) g_test_rand_double_range (-a, a);
    if (dt == CK_F16)
      v[i] = canary_round_f16 (v[i]);
  }
  return v;
}

static void
assert_close (const float *got, const double *want, gsize n, ck_dtype dt, const char *what)
{
  double mx = 1.0, err = 0.0;
  for (gsize i = 0; i < n; i++)
    mx = MAX (mx, fabs (want[i]));
  for (gsize i = 0; i < n; i++)
    err = MAX (err, fabs (got[i] - want[i]));
  g_test_message ("%s (%s): max |diff| %.3g of max %.3g", what, dt == CK_F16 ? "fp16" : "fp32", err, mx);
  g_assert_cmpfloat (err / mx, <=, dt == CK_F16 ? K16_TOL : K32_TOL);
}

/* ---- Kernels one by one ---------------------------------------------------------------------- */

static void
kernel_layer_norm (ck_dtype dt)
{
  const int rows = 37, D = 1000;
  float *x = rand_vec ((gsize) rows * D, 3.0, dt), *g = rand_vec (D, 1.0, CK_F32), *b = rand_vec (D, 1.0, CK_F32);
  void *dx = dev_upload (x, (gsize) rows * D, dt), *dg = dev_upload (g, D, CK_F32), *db = dev_upload (b, D, CK_F32);
  g_assert_cmpint (ck_layer_norm (dt, dx, dg, db, dx, rows, D, 0), ==, cudaSuccess);
  float *y = dev_download (dx, (gsize) rows * D, dt);
  double *want = g_new (double, (gsize) rows * D);
  for (int r = 0; r < rows; r++) {
    double s = 0, q = 0;
    for (int i = 0; i < D; i++)
      s += x[r * D + i];
    const double mean = s / D;
    for (int i = 0; i < D; i++)
      q += (x[r * D + i] - mean) * (x[r * D + i] - mean);
    const double rstd = 1.0 / sqrt (q / D + 1e-5);
    for (int i = 0; i < D; i++)
      want[r * D + i] = (x[r * D + i] - mean) * rstd * g[i] + b[i];
  }
  assert_close (y, want, (gsize) rows * D, dt, "layer norm");
  cudaFree (dx);
  cudaFree (dg);
  cudaFree (db);
  g_free (x);
  g_free (g);
  g_free (b);
  g_free (y);
  g_free (want);
}

static double
sig (double v)
{
  return 1.0 / (1.0 + exp (-v));
}

static void
kernel_glu_conv (ck_dtype dt)
{
  const int T = 53, L = 41, D = 96, K = 9, half = 4;
  float *pw1 = rand_vec ((gsize) T * 2 * D, 2.0, dt), *w = rand_vec ((gsize) D * K, 0.5, CK_F32);
  float *b = rand_vec (D, 0.5, CK_F32);
  void *dp = dev_upload (pw1, (gsize) T * 2 * D, dt), *dw = dev_upload (w, (gsize) D * K, CK_F32);
  void *dbias = dev_upload (b, D, CK_F32), *dout = NULL;
  cudaMalloc (&dout, (gsize) T * D * 4);
  g_assert_cmpint (ck_glu_dwconv_swish (dt, dp, dw, dbias, dout, T, L, D, K, 0), ==, cudaSuccess);
  float *y = dev_download (dout, (gsize) T * D, dt);
  double *want = g_new (double, (gsize) T * D);
  for (int t = 0; t < T; t++) {
    for (int c = 0; c < D; c++) {
      double o = b[c];
      for (int k = 0; k < K; k++) {
        const int s = t + k - half;
        if (s >= 0 && s < L)
          o += w[c * K + k] * pw1[(gsize) s * 2 * D + c] * sig (pw1[(gsize) s * 2 * D + D + c]);
      }
      want[(gsize) t * D + c] = o * sig (o);
    }
  }
  assert_close (y, want, (gsize) T * D, dt, "GLU + depthwise conv + Swish");
  cudaFree (dp);
  cudaFree (dw);
  cudaFree (dbias);
  cudaFree (dout);
  g_free (pw1);
  g_free (w);
  g_free (b);
  g_free (y);
  g_free (want);
}

static void
kernel_relpos (ck_dtype dt)
{
  const int T = 29, L = 23, H = 4, dk = 40, D = H * dk, P = 2 * L - 1;
  float *qkv = rand_vec ((gsize) T * 3 * D, 1.0, dt), *p = rand_vec ((gsize) P * D, 1.0, dt);
  float *u = rand_vec (D, 0.5, CK_F32), *v = rand_vec (D, 0.5, CK_F32);
  void *dq = dev_upload (qkv, (gsize) T * 3 * D, dt), *dp = dev_upload (p, (gsize) P * D, dt);
  void *du = dev_upload (u, D, CK_F32), *dv = dev_upload (v, D, CK_F32), *dc = NULL;
  cudaMalloc (&dc, (gsize) T * D * 4);
  const gsize es = dt == CK_F16 ? 2 : 4;
  g_assert_cmpint (ck_relpos_attention (dt, dq, (guint8 *) dq + D * es, (guint8 *) dq + 2 * D * es, 3 * D, dp, du, dv,
      dc, T, L, H, dk, 0), ==, cudaSuccess);
  float *y = dev_download (dc, (gsize) T * D, dt);
  double *want = g_new0 (double, (gsize) T * D), *s = g_new (double, L);
  for (int h = 0; h < H; h++) {
    for (int i = 0; i < L; i++) {
      double mx = -INFINITY, sum = 0;
      for (int j = 0; j < L; j++) {
        double ac = 0, bd = 0;
        for (int c = 0; c < dk; c++) {
          const double q = qkv[(gsize) i * 3 * D + h * dk + c];
          ac += (q + u[h * dk + c]) * qkv[(gsize) j * 3 * D + D + h * dk + c];
          bd += (q + v[h * dk + c]) * p[(gsize) (L - 1 - i + j) * D + h * dk + c];
        }
        s[j] = (ac + bd) / sqrt ((double) dk);
        mx = MAX (mx, s[j]);
      }
      for (int j = 0; j < L; j++)
        sum += (s[j] = exp (s[j] - mx));
      for (int c = 0; c < dk; c++) {
        double o = 0;
        for (int j = 0; j < L; j++)
          o += s[j] / sum * qkv[(gsize) j * 3 * D + 2 * D + h * dk + c];
        want[(gsize) i * D + h * dk + c] = o;
      }
    }
  }
  assert_close (y, want, (gsize) T * D, dt, "relative-position attention");
  cudaFree (dq);
  cudaFree (dp);
  cudaFree (du);
  cudaFree (dv);
  cudaFree (dc);
  g_free (qkv);
  g_free (p);
  g_free (u);
  g_free (v);
  g_free (y);
  g_free (want);
  g_free (s);
}

static void
kernel_argmax (void)
{
  const int V = 5248;
  float *l = rand_vec (V, 8.0, CK_F32);
  const int best = g_test_rand_int_range (0, V);
  l[best] = 9.0f;
  void *dl = dev_upload (l, V, CK_F32), *dc = NULL, *dt = NULL, *dp = NULL;
  cudaMalloc (&dc, sizeof (ck_choice));
  cudaMalloc (&dt, sizeof (int));
  cudaMalloc (&dp, sizeof (ck_step_params));
  ck_step_params sp = { 7, 0, 0, 0 };
  cudaMemcpy (dp, &sp, sizeof sp, cudaMemcpyHostToDevice);
  g_assert_cmpint (ck_argmax_advance (dl, V, dc, dt, dp, 3, 0), ==, cudaSuccess);
  ck_choice c;
  int tok;
  g_assert_cmpint (cudaMemcpy (&c, dc, sizeof c, cudaMemcpyDeviceToHost), ==, cudaSuccess);
  cudaMemcpy (&tok, dt, sizeof tok, cudaMemcpyDeviceToHost);
  cudaMemcpy (&sp, dp, sizeof sp, cudaMemcpyDeviceToHost);
  double sum = 0;
  for (int i = 0; i < V; i++)
    sum += exp ((double) l[i] - 9.0);
  g_assert_cmpint (c.token, ==, best);
  g_assert_cmpint (tok, ==, best);
  g_assert_cmpint (sp.pos, ==, 10);
  g_assert_cmpfloat (fabs (c.logp + log (sum)), <=, 1e-5);
  cudaFree (dl);
  cudaFree (dc);
  cudaFree (dt);
  cudaFree (dp);
  g_free (l);
}

static void
kernel_gemm (ck_dtype dt)
{
  const int M = 19, N = 72, K = 48;
  float *x = rand_vec ((gsize) M * K, 1.0, dt), *w = rand_vec ((gsize) N * K, 1.0, dt), *b = rand_vec (N, 1.0, dt);
  float *y0 = rand_vec ((gsize) M * N, 1.0, dt);
  void *dx = dev_upload (x, (gsize) M * K, dt), *dw = dev_upload (w, (gsize) N * K, dt), *db = dev_upload (b, N, dt);
  void *dy = dev_upload (y0, (gsize) M * N, dt), *ws = NULL;
  cudaMalloc (&ws, CANARY_CUDA_LT_WORKSPACE);
  GError *err = NULL;
  canary_cuda_gemm *g = canary_cuda_gemm_new (ws, CANARY_CUDA_LT_WORKSPACE, &err);
  g_assert_no_error (err);
  const canary_cuda_dtype cdt = dt == CK_F16 ? CANARY_CUDA_F16 : CANARY_CUDA_F32;
  /* y += relu? no: y = y0 + x·wᵀ + b (the residual form), then relu(x·wᵀ + b) into y. */
  cl_gemm op = { (guintptr) dx, (guintptr) dw, (guintptr) db, (guintptr) dy, M, N, K, K, N, CL_EPI_BIAS, 1.0f, FALSE };
  g_assert_true (canary_cuda_gemm_run (g, cdt, &op, 0, &err));
  g_assert_no_error (err);
  float *y = dev_download (dy, (gsize) M * N, dt);
  double *want = g_new (double, (gsize) M * N);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double a = b[n];
      for (int k = 0; k < K; k++)
        a += (double) x[m * K + k] * w[n * K + k];
      want[m * N + n] = y0[m * N + n] + a;
    }
  assert_close (y, want, (gsize) M * N, dt, "GEMM + bias + residual");
  op.epilogue = CL_EPI_RELU_BIAS;
  op.beta = 0.0f;
  g_assert_true (canary_cuda_gemm_run (g, cdt, &op, 0, &err));
  g_free (y);
  y = dev_download (dy, (gsize) M * N, dt);
  for (int i = 0; i < M * N; i++)
    want[i] = MAX (0.0, want[i] - y0[i]);
  assert_close (y, want, (gsize) M * N, dt, "GEMM + bias + ReLU");
  canary_cuda_gemm_free (g);
  cudaFree (dx);
  cudaFree (dw);
  cudaFree (db);
  cudaFree (dy);
  cudaFree (ws);
  g_free (x);
  g_free (w);
  g_free (b);
  g_free (y0);
  g_free (y);
  g_free (want);
}


static void
kernel_subsampling (ck_dtype dt)
{
  const int M = 20, T0 = 23, L0 = 19, C = 8;
  const int t1 = 12, f1 = 10, L1 = 10, t2 = 6, f2 = 5, L2 = 5, t3 = 3, f3 = 3, L3 = 3;
  float *mel = rand_vec ((gsize) M * T0, 2.0, CK_F32), *w0 = rand_vec (C * 9, 1.0, CK_F32), *b0 = rand_vec (C, 1.0, CK_F32);
  float *w = rand_vec (C * 9, 1.0, CK_F32), *b = rand_vec (C, 1.0, CK_F32);
  void *dm = dev_upload (mel, (gsize) M * T0, CK_F32), *dw0 = dev_upload (w0, C * 9, CK_F32), *db0 = dev_upload (b0, C, CK_F32);
  void *dw = dev_upload (w, C * 9, CK_F32), *db = dev_upload (b, C, CK_F32), *d2 = NULL, *d3 = NULL;
  cudaMalloc (&d2, (gsize) t2 * f2 * C * 4);
  cudaMalloc (&d3, (gsize) t3 * f3 * C * 4);
  g_assert_cmpint (ck_conv0_dw_s2 (dt, dm, T0, M, L0, dw0, db0, f1, L1, dw, db, d2, C, t2, f2, L2, 0), ==, cudaSuccess);
  float *y2 = dev_download (d2, (gsize) t2 * f2 * C, dt);
  /* conv.0 + ReLU with its masks, stored; then the depthwise conv. */
  double *s1 = g_new0 (double, (gsize) t1 * f1 * C), *want = g_new0 (double, (gsize) t2 * f2 * C);
  for (int t = 0; t < L1; t++)
    for (int f = 0; f < f1; f++)
      for (int c = 0; c < C; c++) {
        double o = b0[c];
        for (int i = 0; i < 3; i++)
          for (int j = 0; j < 3; j++) {
            const int ti = 2 * t + i - 1, fj = 2 * f + j - 1;
            if (ti >= 0 && ti < L0 && fj >= 0 && fj < M)
              o += w0[c * 9 + i * 3 + j] * mel[(gsize) fj * T0 + ti];
          }
        s1[((gsize) t * f1 + f) * C + c] = MAX (o, 0.0);
      }
  for (int t = 0; t < L2; t++)
    for (int f = 0; f < f2; f++)
      for (int c = 0; c < C; c++) {
        double o = b[c];
        for (int i = 0; i < 3; i++)
          for (int j = 0; j < 3; j++) {
            const int ti = 2 * t + i - 1, fj = 2 * f + j - 1;
            if (ti >= 0 && ti < t1 && fj >= 0 && fj < f1)
              o += w[c * 9 + i * 3 + j] * s1[((gsize) ti * f1 + fj) * C + c];
          }
        want[((gsize) t * f2 + f) * C + c] = o;
      }
  assert_close (y2, want, (gsize) t2 * f2 * C, dt, "conv.0 + ReLU + depthwise conv");
  /* The next stage's depthwise conv on that map. */
  g_assert_cmpint (ck_depthwise_s2 (dt, d2, t2, f2, dw, db, d3, C, t3, f3, L3, 0), ==, cudaSuccess);
  float *y3 = dev_download (d3, (gsize) t3 * f3 * C, dt);
  double *want3 = g_new0 (double, (gsize) t3 * f3 * C);
  for (int t = 0; t < L3; t++)
    for (int f = 0; f < f3; f++)
      for (int c = 0; c < C; c++) {
        double o = b[c];
        for (int i = 0; i < 3; i++)
          for (int j = 0; j < 3; j++) {
            const int ti = 2 * t + i - 1, fj = 2 * f + j - 1;
            if (ti >= 0 && ti < t2 && fj >= 0 && fj < f2)
              o += w[c * 9 + i * 3 + j] * y2[((gsize) ti * f2 + fj) * C + c];
          }
        want3[((gsize) t * f3 + f) * C + c] = o;
      }
  assert_close (y3, want3, (gsize) t3 * f3 * C, dt, "depthwise conv, stride 2");
  void *bufs[] = { dm, dw0, db0, dw, db, d2, d3 };
  for (gsize i = 0; i < G_N_ELEMENTS (bufs); i++)
    cudaFree (bufs[i]);
  float *fs[] = { mel, w0, b0, w, b, y2, y3 };
  for (gsize i = 0; i < G_N_ELEMENTS (fs); i++)
    g_free (fs[i]);
  g_free (s1);
  g_free (want);
  g_free (want3);
}

/* softmax(q·k/sqrt(dk) + mask) · v over n keys, in double. */
static void
ref_attend (const float *q, const float *const *k, const float *const *v, const gboolean *masked, int n, int dk,
    double *out)
{
  double *s = g_new (double, n), mx = -INFINITY, sum = 0;
  for (int j = 0; j < n; j++) {
    double d = 0;
    for (int c = 0; c < dk; c++)
      d += (double) q[c] * k[j][c];
    s[j] = d / sqrt ((double) dk) + (masked[j] ? -10000.0 : 0.0);
    mx = MAX (mx, s[j]);
  }
  for (int j = 0; j < n; j++)
    sum += (s[j] = exp (s[j] - mx));
  for (int c = 0; c < dk; c++) {
    double o = 0;
    for (int j = 0; j < n; j++)
      o += s[j] / sum * v[j][c];
    out[c] = o;
  }
  g_free (s);
}

static void
kernel_decoder_attention (ck_dtype dt)
{
  const int heads = 4, dk = 40, H = heads * dk, B = 2, n_tok = 3, start = 5, max_len = 16, pad = 7, slots = 2;
  const int rows = B * n_tok, n_keys = start + n_tok;
  const int slot[2] = { 1, 0 };
  int tok[6];
  for (int i = 0; i < rows; i++)
    tok[i] = g_test_rand_int_range (5, 9);  /* PAD (7) among them now and then */
  float *qkv = rand_vec ((gsize) rows * 3 * H, 1.0, dt);
  float *kc = rand_vec ((gsize) slots * max_len * H, 1.0, dt), *vc = rand_vec ((gsize) slots * max_len * H, 1.0, dt);
  void *dq = dev_upload (qkv, (gsize) rows * 3 * H, dt), *dk_ = dev_upload (kc, (gsize) slots * max_len * H, dt);
  void *dv = dev_upload (vc, (gsize) slots * max_len * H, dt), *dctx = NULL, *dtok = NULL, *dslot = NULL, *dsp = NULL;
  cudaMalloc (&dctx, (gsize) rows * H * 4);
  cudaMalloc (&dtok, sizeof tok);
  cudaMalloc (&dslot, sizeof slot);
  cudaMalloc (&dsp, sizeof (ck_step_params));
  ck_step_params sp = { start, 11, 8, 0 };
  cudaMemcpy (dtok, tok, sizeof tok, cudaMemcpyHostToDevice);
  cudaMemcpy (dslot, slot, sizeof slot, cudaMemcpyHostToDevice);
  cudaMemcpy (dsp, &sp, sizeof sp, cudaMemcpyHostToDevice);
  g_assert_cmpint (ck_dec_self_attention (dt, dq, dtok, B, n_tok, dsp, dslot, dk_, dv, max_len, pad, dctx, H, heads, 0),
      ==, cudaSuccess);
  float *y = dev_download (dctx, (gsize) rows * H, dt);
  float *kc2 = dev_download (dk_, (gsize) slots * max_len * H, dt);
  double *want = g_new (double, (gsize) rows * H);
  const float *k[8], *v[8];
  gboolean masked[8];
  for (int r = 0; r < rows; r++) {
    const int b = r / n_tok, qi = r % n_tok;
    for (int h = 0; h < heads; h++) {
      for (int j = 0; j < n_keys; j++) {
        const gsize off = j < start ? ((gsize) slot[b] * max_len + j) * H : (gsize) (b * n_tok + j - start) * 3 * H + H;
        k[j] = (j < start ? kc : qkv) + off + h * dk;
        v[j] = (j < start ? vc + off : qkv + off + H) + h * dk;
        masked[j] = j > start + qi || (j >= start && tok[b * n_tok + j - start] == pad);
      }
      ref_attend (qkv + (gsize) r * 3 * H + h * dk, k, v, masked, n_keys, dk, want + (gsize) r * H + h * dk);
    }
  }
  assert_close (y, want, (gsize) rows * H, dt, "decoder self-attention");
  /* The step's keys were appended to each hypothesis' slot. */
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < H; c++)
      g_assert_cmpfloat (kc2[((gsize) slot[r / n_tok] * max_len + start + r % n_tok) * H + c], ==,
          qkv[(gsize) r * 3 * H + H + c]);

  /* Cross-attention of the same rows over layer 1 of a two-layer K|V buffer, frames >= 8 masked. */
  const int T = 11, Ld = 2, ld = Ld * 2 * H;
  float *kv = rand_vec ((gsize) T * ld, 1.0, dt);
  void *dkv = dev_upload (kv, (gsize) T * ld, dt);
  const gsize es = dt == CK_F16 ? 2 : 4;
  g_assert_cmpint (ck_dec_cross_attention (dt, dq, rows, (guint8 *) dkv + 2 * H * es, ld, dsp, dctx, H, heads, 0), ==,
      cudaSuccess);
  g_free (y);
  y = dev_download (dctx, (gsize) rows * H, dt);
  const float *ck[11], *cv[11];
  gboolean cm[11];
  for (int r = 0; r < rows; r++)
    for (int h = 0; h < heads; h++) {
      for (int t = 0; t < T; t++) {
        ck[t] = kv + (gsize) t * ld + 2 * H + h * dk;
        cv[t] = ck[t] + H;
        cm[t] = t >= sp.enc_len;
      }
      /* q here is columns [0, H) of a row H wide: the rows of qkv are 3H wide, so read it the
       * way the kernel does (row stride H). */
      ref_attend (qkv + (gsize) r * H + h * dk, ck, cv, cm, T, dk, want + (gsize) r * H + h * dk);
    }
  assert_close (y, want, (gsize) rows * H, dt, "decoder cross-attention");
  void *bufs[] = { dq, dk_, dv, dctx, dtok, dslot, dsp, dkv };
  for (gsize i = 0; i < G_N_ELEMENTS (bufs); i++)
    cudaFree (bufs[i]);
  g_free (qkv);
  g_free (kc);
  g_free (vc);
  g_free (kc2);
  g_free (kv);
  g_free (y);
  g_free (want);
}

static void
test_kernels (void)
{
  for (int i = 0; i < 2; i++) {
    const ck_dtype dt = i ? CK_F16 : CK_F32;
    kernel_layer_norm (dt);
    kernel_glu_conv (dt);
    kernel_relpos (dt);
    kernel_gemm (dt);
    kernel_subsampling (dt);
    kernel_decoder_attention (dt);
  }
  kernel_argmax ();
}

/* ---- Fixtures against NeMo ------------------------------------------------------------------- */

typedef struct {
  fixture_model fm;
  canary_tokenizer *tok;
  canary_cuda_model *cm;
  canary_cuda_state *st;
  canary_cuda_dtype dt;
} gpu_model;

static void
gpu_model_open (const char *name, canary_cuda_dtype dt, gpu_model *g)
{
  GError *err = NULL;
  memset (g, 0, sizeof *g);
  g_assert_true (fixture_model_open (name, &g->fm));
  g->tok = canary_tokenizer_new (g->fm.cfg, g->fm.ar, &err);
  g_assert_no_error (err);
  g->dt = dt;
  g->cm = canary_cuda_model_new (g->fm.cfg, g->fm.ck, dt, 0, &err);
  g_assert_no_error (err);
  /* 20 s of mel frames: the longest fixture clip is 13 s. */
  g->st = canary_cuda_state_new (g->cm, 2001, 4, 64, canary_tokenizer_pad (g->tok), &err);
  g_assert_no_error (err);
}

static void
gpu_model_close (gpu_model *g)
{
  canary_cuda_state_free (g->st);
  canary_cuda_model_free (g->cm);
  canary_tokenizer_free (g->tok);
  fixture_model_close (&g->fm);
}

static void
encoder_clip (gpu_model *g, const char *model, const char *clip, int *t_enc)
{
  npy_array a_mel, a_len, a_enc;
  fixture_load_npy (model, clip, "mel.npy", &a_mel);
  fixture_load_npy (model, clip, "mel_len.npy", &a_len);
  fixture_load_npy (model, clip, "enc.npy", &a_enc);
  float *mel = npy_to_f32 (&a_mel), *ref = npy_to_f32 (&a_enc);
  GError *err = NULL;
  int len;
  g_assert_true (canary_cuda_encode (g->st, mel, (int) a_mel.shape[a_mel.ndim - 1], (int) npy_get_i64 (&a_len, 0),
      t_enc, &len, &err));
  g_assert_no_error (err);
  float *out = g_new (float, a_enc.numel);
  g_assert_true (canary_cuda_encoder_output (g->st, out, &err));
  g_assert_no_error (err);
  double ref_max;
  const double rel = max_abs_diff (out, ref, a_enc.numel, &ref_max) / MAX (1.0, ref_max);
  g_test_message ("%s/%s %s: encoder %.3g of max(1, |NeMo|)", model, clip, g->dt == CANARY_CUDA_F16 ? "fp16" : "fp32",
      rel);
  g_assert_cmpfloat (rel, <=, g->dt == CANARY_CUDA_F16 ? FP16_ENC_TOL : ENC_TOL);
  g_free (out);
  g_free (mel);
  g_free (ref);
  npy_array_clear (&a_mel);
  npy_array_clear (&a_len);
  npy_array_clear (&a_enc);
}

/* Teacher forcing in chunks of at most 64 tokens (the state's call size): log-probs within the
 * tolerance; the steps whose argmax equals NeMo's are added to *agree, the steps to *steps. */
static void
teacher_clip (gpu_model *g, const char *model, const char *clip, int *agree_total, int *steps_total)
{
  npy_array tf, a_enc, a_elen;
  fixture_load_npy (model, clip, "tf_logprobs.npy", &tf);
  /* NeMo's own encoder output as the decoder's memory, so the check is the decoder's alone
   * (what test_decoder.c does on the CPU): fed from the GPU encoder instead, the encoder's error
   * (up to ENC_TOL) passes through the cross-attention into the log-probs, which the CPU
   * emulation of this pipeline measured at 1.07e-4 on canary2-tiny/speech4s, over TF_TOL. The
   * end-to-end path is checked by the beam ids of test_fixture. */
  fixture_load_npy (model, clip, "enc.npy", &a_enc);
  fixture_load_npy (model, clip, "enc_len.npy", &a_elen);
  float *enc = npy_to_f32 (&a_enc);
  GError *err = NULL;
  g_assert_true (canary_cuda_set_memory (g->st, enc,
      (int) (a_enc.numel / canary_cuda_model_dims (g->cm)->H), (int) npy_get_i64 (&a_elen, 0), &err));
  g_assert_no_error (err);
  g_free (enc);
  npy_array_clear (&a_enc);
  npy_array_clear (&a_elen);
  GArray *seq = fixture_load_ids (model, clip, "prompt_ids.npy");
  GArray *b1 = fixture_load_ids (model, clip, "beam1_ids.npy");
  const int P = (int) seq->len, V = canary_cuda_model_dims (g->cm)->V;
  g_array_append_vals (seq, b1->data, b1->len);
  g_array_set_size (seq, MIN (seq->len, (guint) canary_cuda_model_dims (g->cm)->max_len));
  const int n = (int) seq->len, S = (int) tf.shape[0];
  float *logits = g_new (float, (gsize) n * V), *lp = g_new (float, V);
  for (int at = 0; at < n; at += 64) {
    const int len = MIN (64, n - at);
    g_assert_true (canary_cuda_step_all (g->st, (const gint32 *) seq->data + at, len, at, logits + (gsize) at * V, &err));
    g_assert_no_error (err);
  }
  const float *ref = tf.data;
  double max_err = 0;
  int agree = 0;
  for (int s = 0; s < S; s++) {
    canary_log_softmax (logits + (gsize) (P - 1 + s) * V, V, lp);
    int a = 0, b = 0;
    for (int v = 0; v < V; v++) {
      max_err = MAX (max_err, fabs ((double) lp[v] - ref[(gsize) s * V + v]));
      a = lp[v] > lp[a] ? v : a;
      b = ref[(gsize) s * V + v] > ref[(gsize) s * V + b] ? v : b;
    }
    agree += a == b;
  }
  g_test_message ("%s/%s %s: teacher-forced log-probs max |diff| %.3g, argmax agrees on %d of %d", model, clip,
      g->dt == CANARY_CUDA_F16 ? "fp16" : "fp32", max_err, agree, S);
  g_assert_cmpfloat (max_err, <=, g->dt == CANARY_CUDA_F16 ? FP16_TF_TOL : TF_TOL);
  *agree_total += agree;
  *steps_total += S;
  g_free (logits);
  g_free (lp);
  g_array_unref (seq);
  g_array_unref (b1);
  npy_array_clear (&tf);
}

static canary_beam_options
beam_options (gpu_model *g, int beam, int t_enc)
{
  canary_beam_options o = {
    .beam_size = beam,
    .length_penalty = g->fm.cfg->length_penalty,
    .max_len_total = canary_beam_max_len_total (canary_cuda_model_dims (g->cm)->max_len, t_enc,
        g->fm.cfg->max_generation_delta),
    .eos_id = canary_tokenizer_eos (g->tok),
    .pad_id = canary_tokenizer_pad (g->tok),
  };
  return o;
}

/* NeMo's margin (top-1 minus top-2 log-prob) at teacher-forced step s, for a flipped token. */
static double
nemo_margin (const char *model, const char *clip, int s)
{
  npy_array tf;
  fixture_load_npy (model, clip, "tf_logprobs.npy", &tf);
  const int V = (int) tf.shape[1];
  double m1 = -INFINITY, m2 = -INFINITY;
  if (s < tf.shape[0]) {
    const float *row = (const float *) tf.data + (gsize) s * V;
    for (int v = 0; v < V; v++) {
      if (row[v] > m1) {
        m2 = m1;
        m1 = row[v];
      } else if (row[v] > m2) {
        m2 = row[v];
      }
    }
  }
  npy_array_clear (&tf);
  return m1 - m2;
}

static void
decode_clip (gpu_model *g, const char *model, const char *clip, int t_enc)
{
  GArray *prompt = fixture_load_ids (model, clip, "prompt_ids.npy");
  GArray *want1 = fixture_load_ids (model, clip, "beam1_ids.npy");
  GArray *want4 = fixture_load_ids (model, clip, "beam4_ids.npy");
  const canary_beam_options o1 = beam_options (g, 1, t_enc), o4 = beam_options (g, 4, t_enc);
  GError *err = NULL;
  GArray *graph = g_array_new (FALSE, FALSE, sizeof (gint32)), *plain = g_array_new (FALSE, FALSE, sizeof (gint32));
  double s_graph = 0, s_plain = 0;
  int steps;
  g_assert_true (canary_cuda_greedy (g->st, (const gint32 *) prompt->data, (int) prompt->len, &o1, TRUE, graph,
      &s_graph, &steps, &err));
  g_assert_no_error (err);
  g_assert_true (canary_cuda_greedy (g->st, (const gint32 *) prompt->data, (int) prompt->len, &o1, FALSE, plain,
      &s_plain, &steps, &err));
  g_assert_no_error (err);
  /* The captured step replays exactly what the launches do one by one. */
  assert_ids_equal (graph, plain, "graph replay vs plain launches");
  g_assert_cmpfloat (s_graph, ==, s_plain);

  gboolean same = graph->len == want1->len && memcmp (graph->data, want1->data, graph->len * 4) == 0;
  if (g->dt == CANARY_CUDA_F32 || same) {
    assert_ids_equal (graph, want1, "beam-1 ids vs NeMo");
  } else {
    guint s = 0;
    while (s < MIN (graph->len, want1->len) && g_array_index (graph, gint32, s) == g_array_index (want1, gint32, s))
      s++;
    /* Accepted only at a near-tie: NeMo's own margin there below the FP16 log-prob bound (the
     * teacher-forced agreement over the model's clips is checked after them). */
    const double margin = nemo_margin (model, clip, (int) s);
    g_test_message ("%s/%s fp16: beam-1 ids differ from NeMo's at step %u, where NeMo's margin between its two best "
        "log-probs is %.4g", model, clip, s, margin);
    g_assert_true (margin <= FP16_TF_TOL);
  }
  if (g->dt == CANARY_CUDA_F32) {
    canary_step_ops ops;
    canary_cuda_step_ops (g->st, &ops);
    GArray *b4 = g_array_new (FALSE, FALSE, sizeof (gint32));
    double sc;
    g_assert_true (canary_beam_search_ops (&ops, g->st, (const gint32 *) prompt->data, (int) prompt->len, &o4, b4, &sc,
        &steps, &err));
    g_assert_no_error (err);
    assert_ids_equal (b4, want4, "beam-4 ids vs NeMo");
    g_array_unref (b4);
  }
  g_array_unref (graph);
  g_array_unref (plain);
  g_array_unref (prompt);
  g_array_unref (want1);
  g_array_unref (want4);
}

static void
test_fixture (gconstpointer data)
{
  const char *model = data;
  char *nemo = fixture_model_nemo_or_fail (model);
  if (!nemo)
    return;
  g_free (nemo);
  for (int i = 0; i < 2; i++) {
    gpu_model g;
    gpu_model_open (model, i ? CANARY_CUDA_F16 : CANARY_CUDA_F32, &g);
    GPtrArray *clips = fixture_list_clips (model, "enc.npy");
    int agree = 0, steps = 0;
    for (guint c = 0; c < clips->len; c++) {
      int t_enc;
      encoder_clip (&g, model, clips->pdata[c], &t_enc);
      teacher_clip (&g, model, clips->pdata[c], &agree, &steps);
      /* Teacher forcing used the cache: run the encoder again for a clean window. */
      encoder_clip (&g, model, clips->pdata[c], &t_enc);
      decode_clip (&g, model, clips->pdata[c], t_enc);
    }
    g_test_message ("%s %s: teacher-forced argmax agrees with NeMo on %d of %d steps", model,
        i ? "fp16" : "fp32", agree, steps);
    g_assert_cmpfloat ((double) agree, >=, ARGMAX_AGREE * steps);
    g_ptr_array_unref (clips);
    gpu_model_close (&g);
  }
}

/* ---- The engine API on the GPU: memory report, sharing, errors ------------------------------- */

static void
test_engine_memory (void)
{
  char *path = fixture_model_nemo_or_fail (fixture_models[0]);
  if (!path)
    return;
  canary_model_options o;
  canary_model_options_init (&o);
  o.device = CANARY_DEVICE_CUDA;
  GError *err = NULL;
  canary_model *m = canary_model_load (path, &o, &err), *m2 = canary_model_load (path, &o, &err);
  g_assert_no_error (err);
  g_assert_true (m == m2);  /* two element instances: one copy of the weights */
  const canary_model_info *info = canary_model_get_info (m);
  g_assert_cmpint (info->device, ==, CANARY_DEVICE_CUDA);
  g_assert_cmpint (info->precision, ==, CANARY_PRECISION_FP16);
  canary_state *st = canary_state_new (m, &err);
  g_assert_no_error (err);
  canary_device_memory dm;
  g_assert_true (canary_state_device_memory (st, &dm, &err));
  g_assert_cmpuint (dm.weight_bytes, ==, info->device_weight_bytes);
  g_assert_cmpuint (dm.engine_bytes, ==, dm.weight_bytes + dm.arena_bytes);
  g_assert_cmpuint (dm.process_used, >=, dm.engine_bytes);
  g_test_message ("engine %" G_GUINT64_FORMAT " bytes (weights %" G_GUINT64_FORMAT ", arena %" G_GUINT64_FORMAT
      "), process %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT, dm.engine_bytes, dm.weight_bytes, dm.arena_bytes,
      dm.process_used, dm.device_total);
  /* A window longer than the arena's: a clear error, not a crash. */
  const gsize n = 60 * 16000;
  float *pcm = g_new0 (float, n);
  for (gsize i = 0; i < n; i++)
    pcm[i] = 0.1f * sinf (i * 0.01f);
  g_assert_null (canary_transcribe (st, pcm, n, NULL, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO);
  g_clear_error (&err);
  canary_result *r = canary_transcribe (st, pcm, 5 * 16000, NULL, &err);
  g_assert_no_error (err);
  canary_result_free (r);
  /* An allocation the GPU cannot satisfy: OUT_OF_MEMORY with the bytes needed and free. */
  void *p = NULL;
  g_assert_false (canary_cuda_alloc (dm.device_total * 2, "test buffer", &p, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY);
  g_assert_nonnull (strstr (err->message, "needed"));
  g_assert_nonnull (strstr (err->message, "free"));
  g_clear_error (&err);
  /* A device id that does not exist. */
  o.gpu_device_id = 255;
  g_assert_null (canary_model_load (path, &o, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_DEVICE);
  g_clear_error (&err);
  g_free (pcm);
  canary_state_free (st);
  canary_model_unref (m);
  canary_model_unref (m2);
  g_free (path);
}

int
main (int argc, char **argv)
{
  /* No GPU at all: a SKIP (exit 77) that says why. A GPU the kernel driver shows (/dev/nvidia0,
   * /proc/driver/nvidia/gpus) that the backend cannot use (driver too old, no kernel image for
   * its architecture, context creation failed) is a FAILURE: that is what this suite is for. */
  GError *err = NULL;
  if (!canary_cuda_use_device (0, &err)) {
    GDir *gpus = g_dir_open ("/proc/driver/nvidia/gpus", 0, NULL);
    const gboolean visible = g_file_test ("/dev/nvidia0", G_FILE_TEST_EXISTS) || (gpus && g_dir_read_name (gpus));
    if (gpus)
      g_dir_close (gpus);
    if (visible) {
      printf ("FAIL: a GPU is visible but the CUDA backend cannot use it: %s\n", err->message);
      g_error_free (err);
      return 1;
    }
    printf ("SKIP: no CUDA GPU on this machine: %s\n", err->message);
    g_error_free (err);
    return 77;
  }
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/cuda/kernels", test_kernels);
  g_test_add_func ("/cuda/engine-memory", test_engine_memory);
  for (int i = 0; i < FIXTURE_N_MODELS; i++) {
    char *p = g_strdup_printf ("/cuda/fixture/%s", fixture_models[i]);
    g_test_add_data_func (p, fixture_models[i], test_fixture);
    g_free (p);
  }
  return g_test_run ();
}
