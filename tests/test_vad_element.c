/* gst-canary — canarytranscribe with VAD segmentation (GstHarness, gst-check): noise never reaches
 * the model, speech comes out one text buffer per utterance with times that cover it, text is
 * pushed within min-silence + model time + 100 ms of the end of speech on live input, buffers and
 * GAPs tile the timeline, and missing or bad weights are handled as the properties say.
 *
 * Where speech is, is taken from the silero-vad package's own probabilities for the fixture clips
 * (tests/fixtures/vad/<clip>.probs.npy, made by tests/reference/make_vad_fixtures.py), never from this
 * element's output. The weights come from $CANARY_VAD_MODEL (tools/fetch-vad.sh; meson sets it);
 * without them every test here but the missing-weights one skips.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "build-config.h"

#include <math.h>
#include <string.h>

#include "canary.h"
#include "elementutil.h"
#include "npy.h"

#define MIN_SILENCE_MS 500
#define SPEECH_PAD_MS 200
#define VAD_CHUNK 512
#define NEG_THRESHOLD 0.35       /* the element's default vad-threshold 0.5 − 0.15 */

static const gchar *
vad_weights (void)
{
  const gchar *p = g_getenv ("CANARY_VAD_MODEL");
  return p && *p && g_file_test (p, G_FILE_TEST_IS_REGULAR) ? p : NULL;
}

#define REQUIRE_VAD() G_STMT_START { \
    if (!vad_weights ()) { \
      g_print ("SKIP: no VAD weights (tools/fetch-vad.sh, then reconfigure)\n"); \
      return; \
    } \
  } G_STMT_END

/* The element with the bundled default model ($CANARY_DEFAULT_MODEL_DIR) on the CPU. */
static GstElement *
make_vad_element (const gchar *segmentation)
{
  GstElement *e = gst_element_factory_make ("canarytranscribe", NULL);
  fail_unless (e != NULL, "canarytranscribe not found (GST_PLUGIN_PATH?)");
  gst_util_set_object_arg (G_OBJECT (e), "device", "cpu");
  gst_util_set_object_arg (G_OBJECT (e), "segmentation", segmentation);
  g_object_set (e, "min-silence", MIN_SILENCE_MS, "speech-pad", SPEECH_PAD_MS, NULL);
  return e;
}

/* [first, end) samples of speech in a fixture clip by the package's VAD: from the first chunk
 * at or above 0.5 to the end of the last one at or above the release threshold. */
static void
reference_speech (const gchar *clip, gsize *first, gsize *end)
{
  gchar *path = g_strdup_printf (FIXTURES_DIR "/vad/%s.probs.npy", clip);
  npy_array a;
  GError *err = NULL;
  fail_unless (npy_load (path, &a, &err), "%s: %s", path, err ? err->message : "");
  gssize lo = -1, hi = -1;
  for (gsize k = 0; k < a.numel; k++) {
    double p = npy_get_f64 (&a, k);
    if (lo < 0 && p >= 0.5)
      lo = (gssize) k;
    if (lo >= 0 && p >= NEG_THRESHOLD)
      hi = (gssize) k;
  }
  fail_unless (lo >= 0, "%s has no speech by the package's VAD", clip);
  *first = (gsize) lo * VAD_CHUNK;
  *end = (gsize) (hi + 1) * VAD_CHUNK;
  npy_array_clear (&a);
  g_free (path);
}

/* ---------------------------------------------------------------------------------------------
 * Non-speech
 */

typedef enum { WHITE, PINK, BROWN, TONE, CLICKS } NoiseKind;

/* @n samples of one kind of non-speech at @dbfs RMS (clicks: peak). Seeded, so every run pushes
 * the same audio. */
static void
fill_noise (gint16 *out, gsize n, NoiseKind kind, double dbfs, double freq, GRand *rng)
{
  double gain = pow (10.0, dbfs / 20.0) * 32767.0;
  double b0 = 0, b1 = 0, b2 = 0, b3 = 0, b4 = 0, b5 = 0, b6 = 0, brown = 0;
  for (gsize i = 0; i < n; i++) {
    /* Gaussian white noise, unit variance (Box-Muller) */
    double u = g_rand_double_range (rng, 1e-12, 1.0), v = g_rand_double (rng);
    double w = sqrt (-2.0 * log (u)) * cos (2.0 * G_PI * v);
    double x;
    switch (kind) {
      case WHITE:
        x = w;
        break;
      case PINK:               /* Paul Kellet's filter, normalised to unit RMS (÷ ~3.5) */
        b0 = 0.99886 * b0 + w * 0.0555179;
        b1 = 0.99332 * b1 + w * 0.0750759;
        b2 = 0.96900 * b2 + w * 0.1538520;
        b3 = 0.86650 * b3 + w * 0.3104856;
        b4 = 0.55000 * b4 + w * 0.5329522;
        b5 = -0.7616 * b5 - w * 0.0168980;
        x = (b0 + b1 + b2 + b3 + b4 + b5 + b6 + w * 0.5362) / 3.5;
        b6 = w * 0.115926;
        break;
      case BROWN:              /* leaky integral of white noise, ~unit RMS */
        brown = 0.998 * brown + w * 0.0632;
        x = brown;
        break;
      case TONE:
        x = sqrt (2.0) * sin (2.0 * G_PI * freq * (double) i / RATE);
        break;
      default:                 /* 2 ms clicks, 4 per second */
        x = (i % (RATE / 4)) < 32 ? 1.0 : 0.0;
        break;
    }
    out[i] = (gint16) CLAMP (lround (x * gain), -32768, 32767);
  }
}

/* Ten minutes of white, pink and brown noise at several levels, tones and clicks. */
static gint16 *
make_non_speech (gsize *n_out)
{
  static const struct { NoiseKind kind; double dbfs, freq; } parts[] = {
    {WHITE, -50, 0}, {WHITE, -30, 0}, {WHITE, -15, 0},
    {PINK, -45, 0}, {PINK, -30, 0}, {PINK, -15, 0},
    {BROWN, -40, 0}, {BROWN, -20, 0},
    {TONE, -20, 440}, {TONE, -20, 1000}, {TONE, -10, 3000},
    {CLICKS, -6, 0},
  };
  const gsize each = 50 * RATE;   /* 12 × 50 s = 10 minutes */
  gsize n = each * G_N_ELEMENTS (parts);
  gint16 *s = g_new (gint16, n);
  GRand *rng = g_rand_new_with_seed (20261202);
  for (gsize i = 0; i < G_N_ELEMENTS (parts); i++)
    fill_noise (s + i * each, each, parts[i].kind, parts[i].dbfs, parts[i].freq, rng);
  g_rand_free (rng);
  *n_out = n;
  return s;
}

static guint
texts_for_noise (const gchar *segmentation, const gint16 *s, gsize n)
{
  GstBus *bus;
  GstHarness *h = start_harness (make_vad_element (segmentation), S16_CAPS, &bus);
  guint texts = 0;
  GArray *all = g_array_new (FALSE, TRUE, sizeof (Piece));

  /* in pieces, collecting as it goes, so the harness's queues stay small */
  for (gsize off = 0; off < n; off += 60 * RATE) {
    gsize m = MIN (60 * RATE, n - off);
    fail_unless_equals_int (push_audio (h, s + off, m, SAMPLES_TO_TIME (off), FALSE, FALSE),
        GST_FLOW_OK);
    GArray *got = collect_output (h);
    for (guint i = 0; i < got->len; i++) {
      Piece *p = &g_array_index (got, Piece, i);
      if (p->text)
        g_print ("%s: text at %" GST_TIME_FORMAT ": '%s'\n", segmentation, GST_TIME_ARGS (p->pts),
            p->text);
      Piece copy = { p->pts, p->duration, NULL };
      g_array_append_val (all, copy);
    }
    texts += count_text (got);
    g_array_unref (got);
  }
  push_eos (h);
  GArray *got = collect_output (h);
  texts += count_text (got);
  for (guint i = 0; i < got->len; i++) {
    Piece copy = { g_array_index (got, Piece, i).pts, g_array_index (got, Piece, i).duration, NULL };
    g_array_append_val (all, copy);
  }
  g_array_unref (got);
  g_array_sort (all, piece_cmp);
  assert_tiles (all, 0, SAMPLES_TO_TIME (n));
  g_array_unref (all);
  teardown_with_bus (h, bus);
  return texts;
}

GST_START_TEST (test_noise_never_transcribed)
{
  REQUIRE_VAD ();
  gsize n;
  gint16 *s = make_non_speech (&n);
  guint vad = texts_for_noise ("vad", s, n);
  guint fixed = texts_for_noise ("fixed", s, n);
  /* The figure for docs/accuracy.md: what fixed windows make of the same noise. */
  g_print ("non-speech, %.0f s: %u text buffers with VAD segments, %u with fixed windows\n",
      (double) n / RATE, vad, fixed);
  fail_unless_equals_int (vad, 0);
  g_free (s);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Speech
 */

/* Quiet room noise: white at -60 dBFS. */
static void
fill_room (gint16 *s, gsize n, GRand *rng)
{
  fill_noise (s, n, WHITE, -60, 0, rng);
}

typedef struct {
  gsize first, end;       /* the clip's speech, by the package's VAD, in the joined audio */
  gsize clip_start, clip_end;
} Utterance;

/* The clips one after another, each after @gap_s of room noise, and @gap_s after the last. */
static gint16 *
join_clips (const gchar *const *clips, guint n_clips, double gap_s, Utterance *utt, gsize *n_out)
{
  gsize gap = (gsize) (gap_s * RATE), total = gap;
  gint16 *pcm[8];
  gsize len[8];
  g_assert (n_clips <= 8);
  for (guint i = 0; i < n_clips; i++) {
    gchar *name = g_strdup_printf ("%s.wav", clips[i]);
    pcm[i] = load_wav (name, &len[i]);
    g_free (name);
    total += len[i] + gap;
  }
  gint16 *s = g_new (gint16, total);
  GRand *rng = g_rand_new_with_seed (7);
  gsize at = 0;
  fill_room (s, gap, rng);
  at = gap;
  for (guint i = 0; i < n_clips; i++) {
    memcpy (s + at, pcm[i], len[i] * sizeof (gint16));
    reference_speech (clips[i], &utt[i].first, &utt[i].end);
    utt[i].first += at;
    utt[i].end = MIN (utt[i].end, len[i]) + at;
    utt[i].clip_start = at;
    utt[i].clip_end = at + len[i];
    at += len[i];
    fill_room (s + at, gap, rng);
    at += gap;
    g_free (pcm[i]);
  }
  g_rand_free (rng);
  *n_out = total;
  return s;
}

GST_START_TEST (test_one_buffer_per_utterance)
{
  REQUIRE_VAD ();
  const gchar *clips[] = { "seen-voice-1", "unseen-voice-1", "seen-voice-2" };
  Utterance utt[3];
  gsize n;
  gint16 *s = join_clips (clips, 3, 1.5, utt, &n);
  GstBus *bus;
  GstHarness *h = start_harness (make_vad_element ("vad"), S16_CAPS, &bus);

  fail_unless_equals_int (push_audio (h, s, n, 0, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *out = collect_output (h);
  assert_tiles (out, 0, SAMPLES_TO_TIME (n));
  fail_unless_equals_int (count_text (out), 3);

  guint k = 0;
  for (guint i = 0; i < out->len; i++) {
    Piece *p = &g_array_index (out, Piece, i);
    if (!p->text)
      continue;
    /* covers the speech the package found, and starts and ends no further than the padding
     * (and one VAD chunk of decision granularity) from it */
    GstClockTime slack = (SPEECH_PAD_MS + 32) * GST_MSECOND;
    GstClockTime first = SAMPLES_TO_TIME (utt[k].first), end = SAMPLES_TO_TIME (utt[k].end);
    g_print ("utterance %u: speech %" GST_TIME_FORMAT " - %" GST_TIME_FORMAT ", buffer %"
        GST_TIME_FORMAT " - %" GST_TIME_FORMAT ": '%s'\n", k, GST_TIME_ARGS (first),
        GST_TIME_ARGS (end), GST_TIME_ARGS (p->pts), GST_TIME_ARGS (p->pts + p->duration), p->text);
    fail_unless (p->pts <= first + 32 * GST_MSECOND && p->pts + slack >= first,
        "utterance %u: buffer starts at %" GST_TIME_FORMAT ", speech at %" GST_TIME_FORMAT, k,
        GST_TIME_ARGS (p->pts), GST_TIME_ARGS (first));
    fail_unless (p->pts + p->duration + 32 * GST_MSECOND >= end
        && p->pts + p->duration <= end + slack,
        "utterance %u: buffer ends at %" GST_TIME_FORMAT ", speech at %" GST_TIME_FORMAT, k,
        GST_TIME_ARGS (p->pts + p->duration), GST_TIME_ARGS (end));
    k++;
  }
  g_array_unref (out);
  teardown_with_bus (h, bus);
  g_free (s);
}

GST_END_TEST;

/* A hole of seconds in the timestamps ends the run: the open segment is transcribed before it,
 * the hole is a GAP, and the VAD starts afresh after it. */
GST_START_TEST (test_hole_ends_segment)
{
  REQUIRE_VAD ();
  const gchar *clips[] = { "seen-voice-1" };
  Utterance utt[1];
  gsize n;
  gint16 *s = join_clips (clips, 1, 0.5, utt, &n);
  GstBus *bus;
  GstHarness *h = start_harness (make_vad_element ("vad"), S16_CAPS, &bus);

  /* the clip cut in the middle of its speech, the rest 3 s later */
  gsize cut = (utt[0].first + utt[0].end) / 2;
  fail_unless_equals_int (push_audio (h, s, cut, 0, FALSE, FALSE), GST_FLOW_OK);
  GstClockTime later = SAMPLES_TO_TIME (cut) + 3 * GST_SECOND;
  fail_unless_equals_int (push_audio (h, s + cut, n - cut, later, FALSE, TRUE), GST_FLOW_OK);
  push_eos (h);
  GArray *out = collect_output (h);
  assert_tiles (out, 0, later + SAMPLES_TO_TIME (n - cut));
  fail_unless_equals_int (count_text (out), 2);
  /* the first text ends at the hole, the second starts after it */
  gboolean before = FALSE, after = FALSE;
  for (guint i = 0; i < out->len; i++) {
    Piece *p = &g_array_index (out, Piece, i);
    if (p->text && p->pts + p->duration == SAMPLES_TO_TIME (cut))
      before = TRUE;
    if (p->text && p->pts >= later)
      after = TRUE;
  }
  fail_unless (before && after);
  g_array_unref (out);
  teardown_with_bus (h, bus);
  g_free (s);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Latency on live input
 */

typedef struct {
  GstHarness *h;
  const gint16 *s;
  gsize n;
  gint64 start_us;            /* monotonic time of sample 0 */
} LivePush;

/* Pushes the audio in 20 ms buffers at the rate a capture source would. */
static gpointer
live_push_thread (gpointer data)
{
  LivePush *lp = data;
  const gsize piece = RATE / 50;
  for (gsize off = 0; off < lp->n; off += piece) {
    gint64 due = lp->start_us + (gint64) off * G_USEC_PER_SEC / RATE;
    gint64 now = g_get_monotonic_time ();
    if (due > now)
      g_usleep (due - now);
    gsize m = MIN (piece, lp->n - off);
    GstBuffer *buf = make_audio_buffer (lp->s + off, m, FALSE);
    GST_BUFFER_PTS (buf) = SAMPLES_TO_TIME (off);
    GST_BUFFER_DURATION (buf) = SAMPLES_TO_TIME (off + m) - SAMPLES_TO_TIME (off);
    if (gst_harness_push (lp->h, buf) != GST_FLOW_OK)
      break;
  }
  gst_harness_push_event (lp->h, gst_event_new_eos ());
  return NULL;
}

static gint
compare_double (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

GST_START_TEST (test_live_latency)
{
  REQUIRE_VAD ();
  const gchar *clips[] = { "seen-voice-1", "unseen-voice-1", "seen-voice-2", "speech4s" };
  Utterance utt[4];
  gsize n;
  gint16 *s = join_clips (clips, 4, 1.2, utt, &n);
  GstBus *bus;
  GstHarness *h = start_harness (make_vad_element ("vad"), S16_CAPS, &bus);

  LivePush lp = { h, s, n, g_get_monotonic_time () + 50000 };
  GThread *t = g_thread_new ("live-push", live_push_thread, &lp);
  double lat[8], budget[8];
  guint got = 0;
  gint64 deadline = lp.start_us + (gint64) n * G_USEC_PER_SEC / RATE + 30 * G_USEC_PER_SEC;
  while (got < G_N_ELEMENTS (clips) && g_get_monotonic_time () < deadline) {
    GstBuffer *buf = gst_harness_try_pull (h);
    if (!buf) {
      g_usleep (2000);
      continue;
    }
    gint64 arrived = g_get_monotonic_time ();
    GstClockTime pts = GST_BUFFER_PTS (buf), end = pts + GST_BUFFER_DURATION (buf);
    gst_buffer_unref (buf);
    /* which utterance: the one whose speech the buffer covers */
    guint k = 0;
    while (k < G_N_ELEMENTS (clips) && SAMPLES_TO_TIME (utt[k].end) <= pts)
      k++;
    fail_unless (k < G_N_ELEMENTS (clips) && SAMPLES_TO_TIME (utt[k].first) < end);
    /* the model's own time for it, from the element's message */
    GstMessage *m;
    GstClockTime processing = GST_CLOCK_TIME_NONE;
    while (!GST_CLOCK_TIME_IS_VALID (processing)
        && (m = gst_bus_timed_pop_filtered (bus, GST_SECOND, GST_MESSAGE_ELEMENT))) {
      const GstStructure *st = gst_message_get_structure (m);
      if (gst_structure_has_name (st, "canarytranscribe"))
        gst_structure_get_uint64 (st, "processing-time", &processing);
      gst_message_unref (m);
    }
    fail_unless (GST_CLOCK_TIME_IS_VALID (processing));
    gint64 speech_end_us = lp.start_us + (gint64) utt[k].end * G_USEC_PER_SEC / RATE;
    lat[got] = (arrived - speech_end_us) / 1000.0;
    budget[got] = MIN_SILENCE_MS + processing / 1e6 + 100.0;
    g_print ("utterance %u: text %.0f ms after the end of speech (model %.0f ms; bound %.0f ms)\n",
        k, lat[got], processing / 1e6, budget[got]);
    got++;
  }
  g_thread_join (t);
  fail_unless_equals_int (got, G_N_ELEMENTS (clips));
  double sorted[8];
  memcpy (sorted, lat, sizeof lat);
  qsort (sorted, got, sizeof (double), (int (*) (const void *, const void *)) compare_double);
  g_print ("latency after the end of speech, %u utterances: min %.0f, median %.0f, max %.0f ms "
      "(min-silence %d ms)\n", got, sorted[0], sorted[got / 2], sorted[got - 1], MIN_SILENCE_MS);
  for (guint i = 0; i < got; i++)
    fail_unless (lat[i] <= budget[i], "text %.0f ms after the end of speech, bound %.0f ms",
        lat[i], budget[i]);
  teardown_with_bus (h, bus);
  g_free (s);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Weights missing or bad
 */

static GstMessage *
start_and_pop (GstElement *e, GstStateChangeReturn *ret, GstMessageType type)
{
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  *ret = gst_element_set_state (e, GST_STATE_PAUSED);
  if (*ret == GST_STATE_CHANGE_ASYNC)
    *ret = gst_element_get_state (e, NULL, NULL, 30 * GST_SECOND);
  GstMessage *m = gst_bus_pop_filtered (bus, type);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_bus_set_flushing (bus, TRUE);
  gst_object_unref (bus);
  return m;
}

GST_START_TEST (test_missing_weights)
{
  GstStateChangeReturn ret;
  GError *err = NULL;

  /* segmentation=vad without weights: a clear error and no PAUSED */
  GstElement *e = make_vad_element ("vad");
  g_object_set (e, "vad-model-path", "/nonexistent/silero_vad_16k.safetensors", NULL);
  GstMessage *m = start_and_pop (e, &ret, GST_MESSAGE_ERROR);
  fail_unless_equals_int (ret, GST_STATE_CHANGE_FAILURE);
  fail_unless (m != NULL);
  gst_message_parse_error (m, &err, NULL);
  fail_unless (g_error_matches (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND),
      "%s", err->message);
  fail_unless (strstr (err->message, "/nonexistent/silero_vad_16k.safetensors") != NULL);
  g_clear_error (&err);
  gst_message_unref (m);
  gst_object_unref (e);

  /* a file that is not VAD weights, even with segmentation=auto (the path was asked for) */
  e = make_vad_element ("auto");
  g_object_set (e, "vad-model-path", FIXTURES_DIR "/canary2-tiny/model.nemo", NULL);
  m = start_and_pop (e, &ret, GST_MESSAGE_ERROR);
  fail_unless_equals_int (ret, GST_STATE_CHANGE_FAILURE);
  fail_unless (m != NULL);
  gst_message_parse_error (m, &err, NULL);
  fail_unless (g_error_matches (err, GST_STREAM_ERROR, GST_STREAM_ERROR_WRONG_TYPE), "%s",
      err->message);
  g_clear_error (&err);
  gst_message_unref (m);
  gst_object_unref (e);

  /* segmentation=auto and no weights where they are looked for: a warning, fixed windows */
  gchar *saved = g_strdup (g_getenv ("CANARY_VAD_MODEL"));
  g_setenv ("CANARY_VAD_MODEL", "/nonexistent/default.safetensors", TRUE);
  GstBus *bus;
  GstHarness *h = start_harness (make_vad_element ("auto"), S16_CAPS, &bus);
  gsize n = 12 * RATE;
  gint16 *speech = make_speech (n);
  fail_unless_equals_int (push_audio (h, speech, n, 0, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *out = collect_output (h);
  /* fixed 10 s windows sharing 1 s: the text pieces end at 10 s and at 12 s */
  assert_tiles (out, 0, SAMPLES_TO_TIME (n));
  gboolean at10 = FALSE;
  for (guint i = 0; i < out->len; i++) {
    Piece *p = &g_array_index (out, Piece, i);
    at10 |= p->pts + p->duration == 10 * GST_SECOND;
  }
  fail_unless (at10, "no piece ends at 10 s: not fixed windows");
  guint warnings = 0;
  while ((m = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING))) {
    gst_message_parse_warning (m, &err, NULL);
    if (strstr (err->message, "No VAD weights"))
      warnings++;
    g_clear_error (&err);
    gst_message_unref (m);
  }
  fail_unless_equals_int (warnings, 1);
  g_array_unref (out);
  teardown_with_bus (h, bus);
  g_free (speech);
  if (saved)
    g_setenv ("CANARY_VAD_MODEL", saved, TRUE);
  else
    g_unsetenv ("CANARY_VAD_MODEL");
  g_free (saved);
}

GST_END_TEST;

static Suite *
vad_element_suite (void)
{
  Suite *s = suite_create ("canarytranscribe-vad");
  TCase *tc = tcase_create ("vad");
  tcase_set_timeout (tc, 600);
  tcase_add_test (tc, test_missing_weights);
  tcase_add_test (tc, test_one_buffer_per_utterance);
  tcase_add_test (tc, test_hole_ends_segment);
  tcase_add_test (tc, test_live_latency);
  tcase_add_test (tc, test_noise_never_transcribed);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (vad_element);
