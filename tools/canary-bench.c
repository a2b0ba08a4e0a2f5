/* gst-canary — CPU benchmark of the engine on a released model's shape with random weights.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   canary-bench [--shape canary-1b-flash] [--tokens 40] [--repeats 3] [--threads N] [--load FILE.nemo]
 *                [--precision fp32|fp16] [--load-only]
 *
 * --load-only loads FILE.nemo at --precision and prints the process's memory after the load and
 * after transcribing one 10 s window (VmRSS, what it holds; VmHWM, its peak so far), then exits:
 * the FP16 vs FP32 memory of a real file, whose FP32 mapping the FP16 load pages out as it goes.
 *
 * --precision fp16 runs the CPU's FP16 weights (canary_encoder_use_f16 / canary_decoder_use_f16);
 * --precision both builds both engines from one checkpoint and alternates their windows (order
 * flipped every repeat), one JSON line each: the ratios come from the same minutes of the
 * machine. (--load times the FP32 load then.) Its peak RSS still holds the random FP32 weights (they
 * are heap memory here, not a file mapping the engine can page out): use --load for that.
 *
 * Per repeat: the mel frontend + encoder on a 10 s window, then the decoder on a 9-token prompt and
 * a fixed number of generated tokens (argmax fed back; EOS ignored so every run decodes the same
 * count). ms_per_token is the whole decoder time (cross K/V: memory_ms, prompt: prompt_ms, steps) over the token count,
 * as bench_nemo.py reports it; step_ms is one incremental step alone, and step_floor_ms what reading
 * that step's weights once costs at the measured read bandwidth (read_gbps). Prints one JSON line, comparable with tests/reference/bench_nemo.py (NeMo's own modules at
 * the same shape, same window, same token count). --load also times loading a real .nemo file. */
#include <cblas.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "canary.h"
#include "search.h"
#include "cpu/decoder.h"
#include "cpu/encoder.h"
#include "cpu/mel.h"
#include "random_model.h"
#include "util.h"

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static double
median (double *v, int n)
{
  qsort (v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int
argmax (const float *v, int n)
{
  int best = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[best])
      best = i;
  return best;
}

/* A "VmRSS:"-style line of /proc/self/status, in MB (-1 where unreadable). */
static double
proc_status_mb (const char *key)
{
  g_autofree char *status = NULL;
  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return -1;
  const char *line = strstr (status, key);
  return line ? g_ascii_strtod (line + strlen (key), NULL) / 1024.0 : -1;
}

static double
peak_rss_mb (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

/* Read bandwidth of all cores: each thread scans its share of a 1 GiB buffer with memchr for a
 * byte that is not there (libc's vectorised read loop). Best of 3 passes. The buffer is larger
 * than any last-level cache, so this is DRAM bandwidth; weights that fit in the cache (a small
 * decoder on a CPU with a large L3) can be read faster than this. */
typedef struct {
  const guint8 *p;
  gsize n;
} read_job;

static gpointer
read_share (gpointer data)
{
  read_job *j = data;
  return (gpointer) memchr (j->p, 1, j->n);
}

static double
read_bandwidth_gbps (int threads)
{
  const gsize n = (gsize) 1 << 30;
  guint8 *buf = g_malloc (n);
  memset (buf, 0, n);  /* touch every page */
  threads = CLAMP (threads, 1, 64);
  read_job jobs[64];
  GThread *th[64];
  double best = 0;
  for (int r = 0; r < 3; r++) {
    double t0 = canary_now_ms ();
    for (int t = 0; t < threads; t++) {
      jobs[t] = (read_job) { buf + t * (n / threads), n / threads };
      th[t] = g_thread_new ("read", read_share, &jobs[t]);
    }
    for (int t = 0; t < threads; t++)
      g_thread_join (th[t]);
    best = MAX (best, n / ((canary_now_ms () - t0) * 1e6));
  }
  g_free (buf);
  return best;
}

/* Bytes of weights one incremental decoder step reads: per layer the self-attention q/k/v/out,
 * the cross-attention q/out (its k/v are computed once per window) and the FFN, plus the head. */
static double
step_weight_bytes (const canary_config *cfg, int V, double bytes_per_weight)
{
  double H = cfg->dec_hidden, F = cfg->dec_inner;
  double per_layer = 6 * H * H + 2 * H * F;
  return bytes_per_weight * (cfg->dec_layers * per_layer + (double) V * H);
}

/* One precision's encoder + decoder and its timings. */
typedef struct {
  const char *name;
  gboolean fp16;
  canary_encoder *enc;
  canary_decoder *dec;
  canary_encoder_work *work;
  canary_decoder_state *ds;
  float *logits;
  int V;
  double *t_mel, *t_enc, *t_dec, *t_step, *t_mem, *t_prompt;
} bench_engine;

static gboolean
engine_init (bench_engine *b, const canary_config *cfg, const canary_ckpt *ck, int frames, int repeats,
    GError **error)
{
  b->enc = canary_encoder_new (cfg, ck, error);
  b->dec = b->enc ? canary_decoder_new (cfg, ck, error) : NULL;
  if (!b->dec)
    return FALSE;
  if (b->fp16 && (!canary_encoder_use_f16 (b->enc, NULL, NULL, error)
          || !canary_decoder_use_f16 (b->dec, NULL, NULL, error)))
    return FALSE;
  b->work = canary_encoder_work_new (b->enc, frames, error);
  b->ds = b->work ? canary_decoder_state_new (b->dec, 1, 9, canary_encoder_n_out (b->enc, frames), 2, error)
                  : NULL;
  if (!b->ds)
    return FALSE;
  b->V = canary_decoder_vocab (b->dec);
  b->logits = g_new (float, b->V);
  b->t_mel = g_new (double, repeats);
  b->t_enc = g_new (double, repeats);
  b->t_dec = g_new (double, repeats);
  b->t_step = g_new (double, repeats);
  b->t_mem = g_new (double, repeats);
  b->t_prompt = g_new (double, repeats);
  return TRUE;
}

static void
engine_clear (bench_engine *b)
{
  g_free (b->t_mel); g_free (b->t_enc); g_free (b->t_dec); g_free (b->t_step);
  g_free (b->t_mem); g_free (b->t_prompt);
  g_free (b->logits);
  canary_decoder_state_free (b->ds);
  canary_encoder_work_free (b->work);
  canary_decoder_free (b->dec);
  canary_encoder_free (b->enc);
}

/* Mel + encoder on the window, then a 9-token prompt and tokens - 1 steps (argmax fed back). */
static gboolean
engine_window (bench_engine *b, canary_mel *mel, const float *pcm, gsize n, float *feat, int frames,
    int tokens, int r, GError **error)
{
  static const gint32 prompt[9] = { 7, 4, 16, 62, 62, 5, 9, 11, 13 };
  const int P = 9;
  int n_valid, te, enc_len;
  const float *enc_out;
  double a = canary_now_ms ();
  if (!canary_mel_compute (mel, pcm, n, feat, &n_valid, error))
    return FALSE;
  double bm = canary_now_ms ();
  if (!canary_encoder_forward (b->enc, b->work, feat, frames, n_valid, &enc_out, &te, &enc_len, error))
    return FALSE;
  double c = canary_now_ms ();
  if (!canary_decoder_set_memory (b->ds, enc_out, te, enc_len, error))
    return FALSE;
  double cm = canary_now_ms ();
  if (!canary_decoder_step (b->ds, prompt, 1, P, 0, b->logits, error))
    return FALSE;
  double d = canary_now_ms ();
  for (int i = 1; i < tokens; i++) {
    gint32 tok = argmax (b->logits, b->V);
    if (!canary_decoder_step (b->ds, &tok, 1, 1, P + i - 1, b->logits, error))
      return FALSE;
  }
  double e = canary_now_ms ();
  b->t_mel[r] = bm - a;
  b->t_enc[r] = c - bm;
  b->t_dec[r] = e - c;
  b->t_step[r] = tokens > 1 ? (e - d) / (tokens - 1) : 0;
  b->t_mem[r] = cm - c;
  b->t_prompt[r] = d - cm;
  return TRUE;
}

int
main (int argc, char **argv)
{
  char *shape = g_strdup ("canary-1b-flash"), *load_path = NULL, *precision = NULL;
  int tokens = 40, repeats = 3, threads = 0;
  gboolean load_only = FALSE;
  GOptionEntry entries[] = {
    { "shape", 's', 0, G_OPTION_ARG_STRING, &shape, "Model shape (canary-1b, canary-1b-flash, canary-180m-flash, canary-1b-v2, tiny)", "NAME" },
    { "tokens", 't', 0, G_OPTION_ARG_INT, &tokens, "Decoded tokens per window (default 40)", "N" },
    { "repeats", 'r', 0, G_OPTION_ARG_INT, &repeats, "Timed windows (default 3)", "N" },
    { "threads", 'j', 0, G_OPTION_ARG_INT, &threads, "BLAS threads (default: all cores)", "N" },
    { "load", 'l', 0, G_OPTION_ARG_FILENAME, &load_path, "Also time loading this .nemo file", "FILE" },
    { "precision", 'p', 0, G_OPTION_ARG_STRING, &precision, "fp32 (default), fp16, or both (alternating windows, one line each)", "P" },
    { "load-only", 0, 0, G_OPTION_ARG_NONE, &load_only, "Only load --load's file; print its memory", NULL },
    { NULL }
  };
  GError *err = NULL;
  GOptionContext *ctx = g_option_context_new ("- benchmark the Canary CPU engine");
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
  if (threads > 0)
    openblas_set_num_threads (threads);
  const gboolean fp16 = g_strcmp0 (precision, "fp16") == 0, both = g_strcmp0 (precision, "both") == 0;
  if (precision && !fp16 && !both && g_strcmp0 (precision, "fp32") != 0) {
    g_printerr ("--precision must be fp32, fp16 or both\n");
    return 2;
  }

  if (both && load_only) {
    g_printerr ("--load-only measures one precision: fp32 or fp16\n");
    return 2;
  }
  double load_ms = -1;
  if (load_path) {
    /* This benchmark is the CPU's: load there even where a GPU would be picked by device=auto. */
    canary_model_options mo;
    canary_model_options_init (&mo);
    mo.device = CANARY_DEVICE_CPU;
    mo.precision = fp16 ? CANARY_PRECISION_FP16 : CANARY_PRECISION_FP32;
    double t0 = canary_now_ms ();
    canary_model *m = canary_model_load (load_path, &mo, &err);
    if (!m) {
      g_printerr ("%s\n", err->message);
      return 1;
    }
    load_ms = canary_now_ms () - t0;
    if (load_only) {
      /* After the load, then after one 10 s window (which reads every weight: an FP32 model's
       * mapping is only paged in by use). */
      const canary_model_info *info = canary_model_get_info (m);
      double rss_load = proc_status_mb ("VmRSS:"), hwm_load = proc_status_mb ("VmHWM:");
      canary_state *st = canary_state_new (m, &err);
      float *pcm = g_new (float, 160000);
      GRand *rng = g_rand_new_with_seed (1);
      for (int i = 0; i < 160000; i++)
        pcm[i] = (float) g_rand_double_range (rng, -0.1, 0.1);
      g_rand_free (rng);
      canary_decode_options dopt;
      canary_decode_options_init (&dopt);
      dopt.max_generation_delta = 0;   /* random weights never say EOS: stop at T_enc tokens */
      canary_result *r = st ? canary_transcribe (st, pcm, 160000, &dopt, &err) : NULL;
      if (!r) {
        g_printerr ("%s\n", err->message);
        return 1;
      }
      printf ("{\"file\": \"%s\", \"precision\": \"%s\", \"load_ms\": %.1f, \"weight_mb\": %.1f, "
          "\"copied_weight_mb\": %.1f, \"rss_after_load_mb\": %.1f, \"peak_rss_load_mb\": %.1f, "
          "\"window_ms\": %.1f, \"rss_after_window_mb\": %.1f, \"peak_rss_mb\": %.1f}\n", load_path,
          fp16 ? "fp16" : "fp32", load_ms, info->weight_bytes / 1e6, info->copied_weight_bytes / 1e6,
          rss_load, hwm_load, r->total_ms, proc_status_mb ("VmRSS:"), proc_status_mb ("VmHWM:"));
      canary_result_free (r);
      g_free (pcm);
      canary_state_free (st);
      canary_model_unref (m);
      return 0;
    }
    canary_model_unref (m);
  } else if (load_only) {
    g_printerr ("--load-only needs --load FILE\n");
    return 2;
  }

  double t0 = canary_now_ms ();
  canary_config *cfg = NULL;
  canary_ckpt *ck = NULL;
  if (!canary_synth_build (shape, 1, &cfg, &ck, &err)) {
    g_printerr ("%s\n", err->message);
    return 1;
  }
  canary_mel *mel = canary_mel_new (cfg, ck, &err);
  if (!mel) {
    g_printerr ("%s\n", err->message);
    return 1;
  }
  /* One engine per precision, both from the same checkpoint (the FP16 one converts a copy of
   * the weights and keeps the FP32 ones: nothing is released here). */
  bench_engine eng[2] = { { "fp32", FALSE }, { "fp16", TRUE } };
  const int first = both || !fp16 ? 0 : 1, last = both || fp16 ? 1 : 0;
  const gsize n = 160000;
  gsize frames = canary_mel_n_frames (mel, n);
  for (int e = first; e <= last; e++)
    if (!engine_init (&eng[e], cfg, ck, (int) frames, repeats, &err)) {
      g_printerr ("%s\n", err->message);
      return 1;
    }
  double build_ms = canary_now_ms () - t0;

  /* 10 s of a deterministic chirp with a little noise: the values do not matter for speed. */
  float *pcm = g_new (float, n);
  guint32 rng = 1;
  for (gsize i = 0; i < n; i++) {
    rng = rng * 1664525u + 1013904223u;
    pcm[i] = 0.3f * sinf (0.001f * i + 1e-8f * i * i) + 0.01f * ((rng >> 8) / 16777216.0f - 0.5f);
  }
  float *feat = g_new (float, frames * (gsize) canary_mel_n_mels (mel));

  /* --precision both: FP32 and FP16 windows alternate, the order flipped every repeat, so
   * that drifts of the machine (other tenants, clocks) fall on both alike. */
  for (int r = 0; r < repeats; r++) {
    for (int i = 0; i <= last - first; i++) {
      const int e = (r % 2 == 0) ? first + i : last - i;
      if (!engine_window (&eng[e], mel, pcm, n, feat, (int) frames, tokens, r, &err))
        goto fail;
    }
  }

  guint64 weight_bytes = 0;
  for (guint i = 0; i < canary_ckpt_n_tensors (ck); i++)
    weight_bytes += canary_ckpt_tensor (ck, i)->numel * 4;
  double rss_mb = peak_rss_mb ();  /* before the bandwidth probe's 1 GiB buffer */
  double gbps = read_bandwidth_gbps (threads > 0 ? threads : openblas_get_num_threads ());
  for (int e = first; e <= last; e++) {
    bench_engine *b = &eng[e];
    double window_ms[64];
    int nw = MIN (repeats, 64);
    for (int r = 0; r < nw; r++)
      window_ms[r] = b->t_mel[r] + b->t_enc[r] + b->t_dec[r];
    double w50 = median (window_ms, nw);
    double step_floor_ms = step_weight_bytes (cfg, b->V, b->fp16 ? 2.0 : 4.0) / (gbps * 1e6);
    printf ("{\"engine\": \"gst-canary cpu %s\", \"shape\": \"%s\", \"threads\": %d, \"tokens\": %d, "
        "\"repeats\": %d, \"build_ms\": %.0f, \"weight_mb\": %.1f, \"mel_ms\": %.1f, \"encoder_ms\": %.1f, "
        "\"decoder_ms\": %.1f, \"memory_ms\": %.1f, \"prompt_ms\": %.1f, \"ms_per_token\": %.2f, \"step_ms\": %.2f, "
        "\"window_ms_p50\": %.1f, \"rtfx\": %.2f, \"peak_rss_mb\": %.1f, \"load_ms\": %.1f, \"read_gbps\": %.1f, "
        "\"step_floor_ms\": %.2f}\n",
        b->name, shape, threads > 0 ? threads : openblas_get_num_threads (), tokens, repeats, build_ms,
        weight_bytes / 1048576.0, median (b->t_mel, repeats), median (b->t_enc, repeats),
        median (b->t_dec, repeats), median (b->t_mem, repeats), median (b->t_prompt, repeats),
        median (b->t_dec, repeats) / tokens, median (b->t_step, repeats), w50,
        10000.0 / w50, rss_mb, load_ms, gbps, step_floor_ms);
  }

  g_free (feat);
  g_free (pcm);
  for (int e = first; e <= last; e++)
    engine_clear (&eng[e]);
  canary_mel_free (mel);
  canary_ckpt_free (ck);
  canary_config_free (cfg);
  g_free (shape);
  g_free (load_path);
  g_free (precision);
  return 0;

fail:
  g_printerr ("%s\n", err->message);
  return 1;
}
