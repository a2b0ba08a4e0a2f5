/* gst-canary — soak test of canarytranscribe: feeds hours of audio through the element, faster
 * than real time, with a fixture model, while the input does what live input does: short holes
 * (with and without DISCONT), long jumps, small and large steps back, PAUSED/PLAYING toggles.
 * At the end it checks that the text buffers and GAP events tile the timeline from 0 without a
 * hole or an overlap (so every input second is covered by exactly one of them), that the
 * output reaches the end of the input, and that RSS and the thread count stay flat; it prints
 * them at the start, the middle and the end.
 *
 *   soak [--minutes M | --hours H] [--seed S]      (default: 10 minutes, seed 1)
 *
 * The CI run (tests/meson.build, suite "soak") is the default 10 minutes; docs/reliability.md
 * records the long runs. Exit status 0 on success, 1 on a failed check.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "build-config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gst/gst.h>
#include <gst/check/gstharness.h>

#include "fixture.h"
#include "wav.h"

#define RATE 16000
#define CHUNK 1600              /* 100 ms buffers */
#define CAPS "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved"

typedef struct {
  GstClockTime pts, duration;
  gboolean text;
} Piece;

static gint
piece_cmp (gconstpointer a, gconstpointer b)
{
  const Piece *pa = a, *pb = b;
  return pa->pts < pb->pts ? -1 : pa->pts > pb->pts;
}

static void
drain_output (GstHarness *h, GArray *pieces)
{
  GstBuffer *buf;
  GstEvent *ev;

  while ((buf = gst_harness_try_pull (h))) {
    Piece p = { GST_BUFFER_PTS (buf), GST_BUFFER_DURATION (buf), TRUE };
    g_array_append_val (pieces, p);
    gst_buffer_unref (buf);
  }
  while ((ev = gst_harness_try_pull_event (h))) {
    if (GST_EVENT_TYPE (ev) == GST_EVENT_GAP) {
      Piece p = { 0, 0, FALSE };
      gst_event_parse_gap (ev, &p.pts, &p.duration);
      g_array_append_val (pieces, p);
    }
    gst_event_unref (ev);
  }
}

typedef struct {
  long rss_kib;
  int threads;
} Usage;

static Usage
usage_now (void)
{
  Usage u = { -1, -1 };
  gchar *status = NULL;

  if (g_file_get_contents ("/proc/self/status", &status, NULL, NULL)) {
    const gchar *p;
    if ((p = strstr (status, "VmRSS:")))
      u.rss_kib = strtol (p + 6, NULL, 10);
    if ((p = strstr (status, "Threads:")))
      u.threads = (int) strtol (p + 8, NULL, 10);
    g_free (status);
  }
  return u;
}

int
main (int argc, char **argv)
{
  gdouble minutes = 10, hours = 0;
  gint seed = 1;
  GOptionEntry entries[] = {
    {"minutes", 0, 0, G_OPTION_ARG_DOUBLE, &minutes, "Minutes of audio (default 10)", "M"},
    {"hours", 0, 0, G_OPTION_ARG_DOUBLE, &hours, "Hours of audio (overrides --minutes)", "H"},
    {"seed", 0, 0, G_OPTION_ARG_INT, &seed, "Random seed (default 1)", "S"},
    {NULL}
  };
  GOptionContext *ctx = g_option_context_new ("- canarytranscribe soak test");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  GError *err = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &err)) {
    g_printerr ("%s\n", err->message);
    return 2;
  }
  g_option_context_free (ctx);
  gst_init (NULL, NULL);
  if (hours > 0)
    minutes = hours * 60;

  gchar *model = fixture_model_nemo ("canary1-tiny");
  gchar *wav = fixture_path ("audio", "speech13s.wav", NULL);
  gsize clip_n = 0;
  int rate = 0;
  gfloat *clip = wav_read_mono (wav, &clip_n, &rate, &err);
  if (!clip || rate != RATE || clip_n < CHUNK) {
    g_printerr ("cannot read %s: %s\n", wav, err ? err->message : "not 16 kHz");
    return 1;
  }
  gint16 *pcm = g_new (gint16, clip_n);
  for (gsize i = 0; i < clip_n; i++)
    pcm[i] = (gint16) CLAMP (clip[i] * 32768.0f, -32768.0f, 32767.0f);

  GstElement *e = gst_element_factory_make ("canarytranscribe", NULL);
  if (!e) {
    g_printerr ("canarytranscribe not found (GST_PLUGIN_PATH?)\n");
    return 1;
  }
  g_object_set (e, "model-path", model, "device", 2 /* cpu */ , NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gst_object_unref (e);
  gst_harness_set_src_caps_str (h, CAPS);

  GRand *rand = g_rand_new_with_seed (seed);
  GArray *pieces = g_array_new (FALSE, FALSE, sizeof (Piece));
  const guint64 total_buffers = (guint64) (minutes * 60 * 10);
  GstClockTime t = 0, input_end = 0, back_total = 0;
  guint holes = 0, jumps = 0, steps_back = 0, resets = 0, toggles = 0;
  gsize pos = 0;
  gboolean discont = FALSE;
  Usage u_start = { 0, 0 }, u_mid = { 0, 0 };
  gint64 t0 = g_get_monotonic_time ();
  gint failed = 0;

  for (guint64 i = 0; i < total_buffers; i++) {
    if (i == total_buffers / 10)
      u_start = usage_now ();   /* after the model, threads and buffers settled */
    if (i == total_buffers / 2)
      u_mid = usage_now ();

    gdouble r = g_rand_double (rand);
    if (i > 0 && r < 0.01) {             /* a leaky queue's hole, 40-900 ms */
      t += (GstClockTime) g_rand_int_range (rand, 40, 900) * GST_MSECOND;
      discont = g_rand_boolean (rand);
      holes++;
    } else if (i > 0 && r < 0.012) {     /* the source stopped for 1-30 s */
      t += (GstClockTime) g_rand_int_range (rand, 1000, 30000) * GST_MSECOND;
      discont = g_rand_boolean (rand);
      jumps++;
    } else if (i > 0 && r < 0.014) {     /* live PAUSED->PLAYING: a step back */
      gst_element_set_state (h->element, GST_STATE_PAUSED);
      gst_element_set_state (h->element, GST_STATE_PLAYING);
      t -= MIN (t, 66 * GST_MSECOND);
      back_total += 66 * GST_MSECOND;
      toggles++;
    } else if (i > 0 && r < 0.0145) {    /* a timestamp reset: 1-5 s back */
      GstClockTime back = MIN (t, (GstClockTime) g_rand_int_range (rand, 1000, 5000) * GST_MSECOND);
      t -= back;
      back_total += back;
      resets++;
    } else if (i > 0 && r < 0.0155) {    /* a small step back without a toggle */
      t -= MIN (t, 50 * GST_MSECOND);
      back_total += 50 * GST_MSECOND;
      steps_back++;
    }

    GstBuffer *buf = gst_buffer_new_allocate (NULL, CHUNK * 2, NULL);
    GstMapInfo map;
    gst_buffer_map (buf, &map, GST_MAP_WRITE);
    for (guint k = 0; k < CHUNK; k++) {
      ((gint16 *) map.data)[k] = pcm[pos];
      pos = (pos + 1) % clip_n;
    }
    gst_buffer_unmap (buf, &map);
    GST_BUFFER_PTS (buf) = t;
    GST_BUFFER_DURATION (buf) = 100 * GST_MSECOND;
    if (discont)
      GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);
    discont = FALSE;
    t += 100 * GST_MSECOND;
    input_end = MAX (input_end, t);
    GstFlowReturn flow = gst_harness_push (h, buf);
    if (flow != GST_FLOW_OK) {
      g_printerr ("FAIL: push returned %s at %" GST_TIME_FORMAT "\n", gst_flow_get_name (flow),
          GST_TIME_ARGS (t));
      return 1;
    }
    if (i % 600 == 0)
      drain_output (h, pieces);
  }
  gst_harness_push_event (h, gst_event_new_eos ());
  drain_output (h, pieces);
  Usage u_end = usage_now ();
  gdouble wall = (g_get_monotonic_time () - t0) / 1e6;

  /* the tiling */
  g_array_sort (pieces, piece_cmp);
  GstClockTime at = 0, text_time = 0, gap_time = 0;
  guint n_text = 0;
  for (guint i = 0; i < pieces->len; i++) {
    Piece *p = &g_array_index (pieces, Piece, i);
    if (p->pts != at) {
      g_printerr ("FAIL: piece %u starts at %" GST_TIME_FORMAT ", the output so far ends at %"
          GST_TIME_FORMAT " (%s)\n", i, GST_TIME_ARGS (p->pts), GST_TIME_ARGS (at),
          p->pts < at ? "overlap" : "hole");
      failed = 1;
      break;
    }
    at += p->duration;
    if (p->text) {
      n_text++;
      text_time += p->duration;
    } else {
      gap_time += p->duration;
    }
  }
  /* the output reaches the input's end (later by at most the steps back it absorbed) */
  if (!failed && (at < input_end || at > input_end + back_total)) {
    g_printerr ("FAIL: output ends at %" GST_TIME_FORMAT ", input at %" GST_TIME_FORMAT "\n",
        GST_TIME_ARGS (at), GST_TIME_ARGS (input_end));
    failed = 1;
  }

  g_print ("soak: %.1f min of audio (timeline %" GST_TIME_FORMAT ") in %.1f s wall, seed %d\n",
      minutes, GST_TIME_ARGS (input_end), wall, seed);
  g_print ("soak: %u holes < 1 s, %u jumps >= 1 s, %u PAUSED/PLAYING toggles, %u steps back, "
      "%u resets\n", holes, jumps, toggles, steps_back, resets);
  g_print ("soak: %u pieces: %u text (%.0f s), %u GAP (%.0f s), tiling [0, %" GST_TIME_FORMAT
      ") %s\n", pieces->len, n_text, (gdouble) text_time / GST_SECOND, pieces->len - n_text,
      (gdouble) gap_time / GST_SECOND, GST_TIME_ARGS (at), failed ? "BROKEN" : "exact");
  g_print ("soak: RSS %ld / %ld / %ld KiB, threads %d / %d / %d (start / middle / end)\n",
      u_start.rss_kib, u_mid.rss_kib, u_end.rss_kib, u_start.threads, u_mid.threads,
      u_end.threads);
  /* flat: the second half may not grow more than 8 MiB, nor keep threads */
  if (u_end.rss_kib > u_mid.rss_kib + 8192 || u_end.threads > u_start.threads + 1) {
    g_printerr ("FAIL: RSS or thread count grows\n");
    failed = 1;
  }

  gst_harness_teardown (h);
  g_array_unref (pieces);
  g_rand_free (rand);
  g_free (pcm);
  g_free (clip);
  g_free (wav);
  g_free (model);
  return failed;
}
