/* gst-canary — GPU benchmark of the CUDA backend on a released model's shape with random weights,
 * FP16 and FP32 side by side in one run (a program, not a test; see docs/benchmarks.md).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   canary-bench-gpu [--shape canary-1b] [--tokens 40] [--repeats 20] [--gpu 0]
 *
 * Per precision: the weight image is built and uploaded (load_ms: conversion + one allocation +
 * copy), one state is planned for a 10 s window at beam 1, then each repeat runs a 10 s window:
 * the mel frontend on the CPU, the encoder (with the cross-attention K/V), and beam-1 decoding of
 * `tokens` tokens (prompt step + replayed graph; EOS is an id the random model rarely picks, and
 * the tokens actually decoded are reported). Prints one JSON line per precision with p50/p95
 * window latency, encoder time, time per decoded token (the one-token step alone), RTFx, the
 * engine's device bytes (weights + arena) and the process total (cudaMemGetInfo), next to the
 * bandwidth floors: bytes of weights one token step reads (and a window reads: encoder weights
 * once plus `tokens` steps) over the device-to-device copy bandwidth measured here. */
#include <cuda_runtime_api.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "canary.h"
#include "cuda/backend.h"
#include "cuda/device.h"
#include "cpu/mel.h"
#include "random_model.h"
#include "util.h"

#define PROMPT_LEN 9
#define SYN_PAD 2
#define SYN_EOS 3

static int
cmp_double (const void *a, const void *b)
{
  const double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

/* The q-quantile (0..1) of v[0..n), nearest rank. */
static double
quantile (double *v, int n, double q)
{
  qsort (v, n, sizeof *v, cmp_double);
  int i = (int) ceil (q * n) - 1;
  return v[CLAMP (i, 0, n - 1)];
}

/* Device memory bandwidth: best of 5 device-to-device copies of 1 GiB (each byte read once and
 * written once). */
static double
copy_bandwidth_gbps (GError **error)
{
  const gsize n = (gsize) 1 << 30;
  void *a = NULL, *b = NULL;
  if (!canary_cuda_alloc (n, "bandwidth probe", &a, error) || !canary_cuda_alloc (n, "bandwidth probe", &b, error)) {
    cudaFree (a);
    return -1;
  }
  cudaEvent_t e0, e1;
  cudaEventCreate (&e0);
  cudaEventCreate (&e1);
  double best = 0;
  for (int r = 0; r < 5; r++) {
    cudaEventRecord (e0, 0);
    cudaMemcpyAsync (b, a, n, cudaMemcpyDeviceToDevice, 0);
    cudaEventRecord (e1, 0);
    if (!canary_cuda_ok (cudaEventSynchronize (e1), "bandwidth probe", error))
      break;
    float ms = 0;
    cudaEventElapsedTime (&ms, e0, e1);
    best = MAX (best, 2.0 * n / (ms * 1e6));
  }
  cudaEventDestroy (e0);
  cudaEventDestroy (e1);
  cudaFree (a);
  cudaFree (b);
  return best;
}

/* Bytes of weights one incremental decoder step reads (self q/k/v/out, cross q/out, FFN per
 * layer, the head), and the encoder's (every GEMM weight once, plus the window's cross K/V
 * projection) at element size es. */
static void
weight_bytes (const canary_config *cfg, int V, double es, double *step, double *encoder)
{
  const double H = cfg->dec_hidden, F = cfg->dec_inner, D = cfg->enc_d_model, FF = D * cfg->enc_ff_expansion;
  *step = es * (cfg->dec_layers * (6 * H * H + 2 * H * F) + (double) V * H);
  const double layer = 2 * 2 * D * FF + 4 * D * D + D * D + 2 * D * D + D * D;
  *encoder = es * (cfg->enc_layers * layer + 4096.0 * D + cfg->dec_layers * 2 * H * H);
}

typedef struct {
  double load_ms, p50, p95, enc_ms, mel_ms, token_ms, tokens_mean;
  guint64 weights, arena, process;
} run_result;

static gboolean
run_precision (const canary_config *cfg, const canary_ckpt *ck, canary_cuda_dtype dt, int gpu, int tokens,
    int repeats, const float *pcm, gsize n, run_result *res, GError **error)
{
  canary_mel *mel = canary_mel_new (cfg, ck, error);
  if (!mel)
    return FALSE;
  const gsize frames = canary_mel_n_frames (mel, n);
  float *feat = g_new (float, frames * (gsize) canary_mel_n_mels (mel));
  double t0 = canary_now_ms ();
  canary_cuda_model *cm = canary_cuda_model_new (cfg, ck, dt, gpu, error);
  canary_cuda_state *st = cm ? canary_cuda_state_new (cm, (int) frames, 1, 64, SYN_PAD, error) : NULL;
  gboolean ok = st != NULL;
  if (ok)
    res->load_ms = canary_now_ms () - t0;
  const gint32 prompt[PROMPT_LEN] = { 7, 4, 16, 62, 62, 5, 9, 11, 13 };
  double *win = g_new (double, repeats), *enc = g_new (double, repeats), *tok = g_new (double, repeats);
  double *melt = g_new (double, repeats);
  double tokens_sum = 0;
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  /* Two warm-up windows (cuBLASLt choices, the graph capture), then the timed ones. */
  for (int r = -2; ok && r < repeats; r++) {
    int n_valid, t_enc, enc_len, steps = 0, steps0 = 0;
    double score;
    const double a = canary_now_ms ();
    ok = canary_mel_compute (mel, pcm, n, feat, &n_valid, error);
    const double b = canary_now_ms ();
    ok = ok && canary_cuda_encode (st, feat, (int) frames, n_valid, &t_enc, &enc_len, error);
    const double c = canary_now_ms ();
    canary_beam_options o = { .beam_size = 1, .max_len_total = PROMPT_LEN + tokens - 1, .eos_id = SYN_EOS,
      .pad_id = SYN_PAD };
    g_array_set_size (ids, 0);
    ok = ok && canary_cuda_greedy (st, prompt, PROMPT_LEN, &o, TRUE, ids, &score, &steps, error);
    const double d = canary_now_ms ();
    /* The prompt step alone, to take it out of the per-token time. */
    canary_beam_options o0 = o;
    o0.max_len_total = PROMPT_LEN;
    g_array_set_size (ids, 0);
    ok = ok && canary_cuda_encode (st, feat, (int) frames, n_valid, &t_enc, &enc_len, error);
    const double e = canary_now_ms ();
    ok = ok && canary_cuda_greedy (st, prompt, PROMPT_LEN, &o0, TRUE, ids, &score, &steps0, error);
    const double f = canary_now_ms ();
    if (!ok || r < 0)
      continue;
    melt[r] = b - a;
    enc[r] = c - b;
    win[r] = d - a;
    tok[r] = steps > 1 ? ((d - c) - (f - e)) / (steps - 1) : 0;
    tokens_sum += steps;
  }
  if (ok) {
    guint64 free_b = 0, total = 0;
    ok = canary_cuda_state_mem_info (st, &free_b, &total, error);
    res->weights = canary_cuda_model_device_bytes (cm);
    res->arena = canary_cuda_state_device_bytes (st);
    res->process = total - free_b;
    res->p50 = quantile (win, repeats, 0.5);
    res->p95 = quantile (win, repeats, 0.95);
    res->enc_ms = quantile (enc, repeats, 0.5);
    res->mel_ms = quantile (melt, repeats, 0.5);
    res->token_ms = quantile (tok, repeats, 0.5);
    res->tokens_mean = tokens_sum / repeats;
  }
  g_array_unref (ids);
  g_free (win);
  g_free (enc);
  g_free (tok);
  g_free (melt);
  g_free (feat);
  canary_cuda_state_free (st);
  canary_cuda_model_free (cm);
  canary_mel_free (mel);
  return ok;
}

int
main (int argc, char **argv)
{
  char *shape = g_strdup ("canary-1b");
  int tokens = 40, repeats = 20, gpu = 0;
  GOptionEntry entries[] = {
    { "shape", 's', 0, G_OPTION_ARG_STRING, &shape, "Model shape (canary-1b, canary-1b-flash, canary-180m-flash, canary-1b-v2, tiny)", "NAME" },
    { "tokens", 't', 0, G_OPTION_ARG_INT, &tokens, "Decoded tokens per window (default 40)", "N" },
    { "repeats", 'r', 0, G_OPTION_ARG_INT, &repeats, "Timed windows per precision (default 20)", "N" },
    { "gpu", 'g', 0, G_OPTION_ARG_INT, &gpu, "CUDA device id (default 0)", "ID" },
    { NULL }
  };
  GError *err = NULL;
  GOptionContext *ctx = g_option_context_new ("- benchmark the Canary CUDA backend, FP16 and FP32");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &err)) {
    g_printerr ("%s\n", err->message);
    return 2;
  }
  g_option_context_free (ctx);
  if (tokens < 1 || repeats < 1) {
    g_printerr ("--tokens and --repeats must be >= 1\n");
    return 2;
  }
  if (!canary_cuda_use_device (gpu, &err)) {
    g_printerr ("%s\n", err->message);
    return 77;
  }
  struct cudaDeviceProp prop;
  cudaGetDeviceProperties (&prop, gpu);

  canary_config *cfg = NULL;
  canary_ckpt *ck = NULL;
  if (!canary_synth_build (shape, 1, &cfg, &ck, &err)) {
    g_printerr ("%s\n", err->message);
    return 1;
  }
  /* 10 s of a deterministic chirp with a little noise: the values do not matter for speed. */
  const gsize n = 160000;
  float *pcm = g_new (float, n);
  guint32 rng = 1;
  for (gsize i = 0; i < n; i++) {
    rng = rng * 1664525u + 1013904223u;
    pcm[i] = 0.3f * sinf (0.001f * i + 1e-8f * i * i) + 0.01f * ((rng >> 8) / 16777216.0f - 0.5f);
  }
  const double gbps = copy_bandwidth_gbps (&err);
  if (gbps <= 0) {
    g_printerr ("%s\n", err->message);
    return 1;
  }
  const canary_tensor *head = canary_ckpt_get (ck, "log_softmax.mlp.layer0.weight");
  const int V = (int) head->shape[0];
  for (int i = 0; i < 2; i++) {
    const canary_cuda_dtype dt = i ? CANARY_CUDA_F32 : CANARY_CUDA_F16;
    run_result r = { 0 };
    if (!run_precision (cfg, ck, dt, gpu, tokens, repeats, pcm, n, &r, &err)) {
      g_printerr ("%s: %s\n", i ? "fp32" : "fp16", err->message);
      return 1;
    }
    double step_b, enc_b;
    weight_bytes (cfg, V, i ? 4.0 : 2.0, &step_b, &enc_b);
    const double step_floor = step_b / (gbps * 1e6), window_floor = (enc_b + tokens * step_b) / (gbps * 1e6);
    printf ("{\"engine\": \"gst-canary cuda %s\", \"shape\": \"%s\", \"gpu\": \"%s\", \"tokens\": %d, "
        "\"tokens_decoded_mean\": %.1f, \"repeats\": %d, \"load_ms\": %.0f, \"window_ms_p50\": %.2f, "
        "\"window_ms_p95\": %.2f, \"mel_ms\": %.2f, \"encoder_ms\": %.2f, \"ms_per_token\": %.3f, \"rtfx\": %.1f, "
        "\"engine_mb\": %.1f, \"weights_mb\": %.1f, \"arena_mb\": %.1f, \"process_mb\": %.1f, \"copy_gbps\": %.0f, "
        "\"step_floor_ms\": %.3f, \"window_floor_ms\": %.2f, \"token_vs_floor\": %.2f, \"window_vs_floor\": %.2f}\n",
        i ? "fp32" : "fp16", shape, prop.name, tokens, r.tokens_mean, repeats, r.load_ms, r.p50, r.p95, r.mel_ms,
        r.enc_ms, r.token_ms, 10000.0 / r.p50, (r.weights + r.arena) / 1e6, r.weights / 1e6, r.arena / 1e6,
        r.process / 1e6, gbps, step_floor, window_floor, r.token_ms / step_floor, r.p50 / window_floor);
    fflush (stdout);
  }
  g_free (pcm);
  canary_ckpt_free (ck);
  canary_config_free (cfg);
  g_free (shape);
  return 0;
}
