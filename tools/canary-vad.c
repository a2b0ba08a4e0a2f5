/* gst-canary — canary-vad: the engine's Silero VAD and segmenter on a WAV file, outside GStreamer.
 * Prints one line per speech segment ("start end" in seconds), as the element would cut them;
 * with --probs also every chunk's probability. --repeat N runs the file N times over (the VAD's
 * state carried through, as on a long stream) and reports the CPU time per hour of audio.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   canary-vad --weights data/silero_vad_16k.safetensors [--min-silence 500] [--pad 200]
 *              [--threshold 0.5] [--max-length 10000] [--probs] [--repeat N] FILE.wav
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "canary.h"
#include "canary_vad.h"
#include "wav.h"   /* tests/wav.c: PCM16 or float WAV */

static double
cpu_seconds (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int
main (int argc, char **argv)
{
  gchar *weights = NULL;
  gint min_silence = 500, pad = 200, max_length = 10000, repeat = 1;
  gdouble threshold = 0.5;
  gboolean probs = FALSE;
  const GOptionEntry entries[] = {
    {"weights", 'w', 0, G_OPTION_ARG_FILENAME, &weights, "silero_vad_16k.safetensors", "FILE"},
    {"threshold", 't', 0, G_OPTION_ARG_DOUBLE, &threshold, "Speech threshold (0.5)", "P"},
    {"min-silence", 0, 0, G_OPTION_ARG_INT, &min_silence, "Silence that ends a segment, ms (500)", "MS"},
    {"pad", 0, 0, G_OPTION_ARG_INT, &pad, "Padding on each side, ms (200)", "MS"},
    {"max-length", 0, 0, G_OPTION_ARG_INT, &max_length, "Longest segment, ms (10000)", "MS"},
    {"probs", 0, 0, G_OPTION_ARG_NONE, &probs, "Print every chunk's probability", NULL},
    {"repeat", 'r', 0, G_OPTION_ARG_INT, &repeat, "Run the file this many times (timing)", "N"},
    {NULL},
  };
  GError *err = NULL;
  GOptionContext *ctx = g_option_context_new ("FILE.wav - speech segments by Silero VAD");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &err) || argc != 2 || !weights || repeat < 1) {
    g_printerr ("%s\n", err ? err->message : "usage: canary-vad --weights FILE FILE.wav");
    return 2;
  }
  g_option_context_free (ctx);

  canary_vad *vad = canary_vad_load (weights, &err);
  if (!vad) {
    g_printerr ("%s\n", err->message);
    return 1;
  }
  gsize n;
  int rate;
  float *x = wav_read_mono (argv[1], &n, &rate, &err);
  if (!x) {
    g_printerr ("%s\n", err->message);
    return 1;
  }
  if (rate != CANARY_VAD_RATE) {
    g_printerr ("%s: %d Hz; the VAD takes 16 kHz (resample first)\n", argv[1], rate);
    return 1;
  }

  canary_vad_segmenter_options opt;
  canary_vad_segmenter_options_init (&opt);
  opt.threshold = (float) threshold;
  opt.neg_threshold = MAX (0.01f, (float) threshold - 0.15f);
  opt.min_silence = (guint64) min_silence * 16;
  opt.pad = (guint64) pad * 16;
  opt.max_length = (guint64) max_length * 16;
  canary_vad_segmenter seg;
  canary_vad_segmenter_init (&seg, &opt);

  double t0 = cpu_seconds ();
  guint64 chunks = 0;
  float chunk[CANARY_VAD_CHUNK];
  canary_speech_segment s;
  for (gint r = 0; r < repeat; r++) {
    for (gsize off = 0; off < n; off += CANARY_VAD_CHUNK) {
      gsize take = MIN (CANARY_VAD_CHUNK, n - off);
      memset (chunk, 0, sizeof chunk);
      memcpy (chunk, x + off, take * sizeof (float));
      float p = canary_vad_process (vad, chunk);
      chunks++;
      if (probs && r == 0)
        printf ("# %.3f %.4f\n", (double) off / CANARY_VAD_RATE, p);
      if (canary_vad_segmenter_push (&seg, p, &s) && r == 0)
        printf ("%.3f %.3f\n", (double) s.start / CANARY_VAD_RATE, (double) s.end / CANARY_VAD_RATE);
    }
  }
  if (canary_vad_segmenter_finish (&seg, (guint64) n * repeat, &s) && repeat == 1)
    printf ("%.3f %.3f\n", (double) s.start / CANARY_VAD_RATE, (double) s.end / CANARY_VAD_RATE);
  double cpu = cpu_seconds () - t0, audio = (double) n * repeat / CANARY_VAD_RATE;
  if (repeat > 1)
    printf ("# %" G_GUINT64_FORMAT " chunks, %.1f s of audio, %.3f s of CPU: %.1f s of CPU per hour "
        "of audio (%.2f %% of one core)\n", chunks, audio, cpu, cpu / audio * 3600, cpu / audio * 100);
  g_free (x);
  canary_vad_free (vad);
  g_free (weights);
  return 0;
}
