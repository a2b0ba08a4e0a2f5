/* gst-canary — tests of the canarytranscribe element (GstHarness, gst-check).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The fixture models have random weights, so their text is random tokens: the tests check
 * timing, flow and equality with the engine, never particular words.
 */
#include "build-config.h"

#include <dlfcn.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gst/audio/audio.h>
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/app/gstappsink.h>

#include "canary.h"
#include "elementutil.h"

/* The merge rule is a static helper of the plugin; test it directly. */
#include "transcribe/canarytextmerge.c"

#define MODEL1 FIXTURES_DIR "/canary1-tiny/model.nemo"
#define MODEL2 FIXTURES_DIR "/canary2-tiny/model.nemo"
#define MODEL2U FIXTURES_DIR "/canary2-unified-tiny/model.nemo"

/* ---------------------------------------------------------------------------------------------
 * Fixtures
 */





/* ---------------------------------------------------------------------------------------------
 * Element and harness helpers
 */

static GstElement *
make_element (const gchar *model)
{
  GstElement *e = gst_element_factory_make ("canarytranscribe", NULL);
  fail_unless (e != NULL, "canarytranscribe not found (GST_PLUGIN_PATH?)");
  if (model) {
    require_file (model);
    g_object_set (e, "model-path", model, "device", 2 /* cpu */ , NULL);
  }
  /* These tests check the fixed windows; the VAD's are in its own section. */
  gst_util_set_object_arg (G_OBJECT (e), "segmentation", "fixed");
  return e;
}











/* Checks that the output tiles the timeline exactly as @bounds (n + 1 sample positions after
 * @base) says. */
static void
assert_tiling (GArray *pieces, GstClockTime base, const guint64 *bounds, guint n)
{
  fail_unless_equals_int (pieces->len, n);
  for (guint i = 0; i < n; i++) {
    Piece *p = &g_array_index (pieces, Piece, i);
    GstClockTime start = base + SAMPLES_TO_TIME (bounds[i]);
    GstClockTime end = base + SAMPLES_TO_TIME (bounds[i + 1]);
    fail_unless_equals_uint64 (p->pts, start);
    fail_unless_equals_uint64 (p->duration, end - start);
  }
}

/* The joined text of all text pieces. */
static gchar *
joined_text (GArray *pieces)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < pieces->len; i++) {
    Piece *p = &g_array_index (pieces, Piece, i);
    if (!p->text)
      continue;
    if (s->len)
      g_string_append_c (s, ' ');
    g_string_append (s, p->text);
  }
  return g_string_free (s, FALSE);
}

/* Pops messages until one of @type arrives (or @timeout_s passes). */
static GstMessage *
wait_message (GstBus *bus, GstMessageType type, guint timeout_s)
{
  return gst_bus_timed_pop_filtered (bus, timeout_s * GST_SECOND, type);
}

/* Runs @samples through a fresh element and returns its output. */
static GArray *
transcribe_with (GstElement *e, const gint16 *samples, gsize n, GstClockTime base,
    gboolean f32)
{
  GstHarness *h = start_harness (e, f32 ? F32_CAPS : S16_CAPS, NULL);
  if (base) {
    GstSegment seg;
    gst_segment_init (&seg, GST_FORMAT_TIME);
    fail_unless (gst_harness_push_event (h, gst_event_new_segment (&seg)));
  }
  fail_unless_equals_int (push_audio (h, samples, n, base, f32, FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  gst_harness_teardown (h);
  return pieces;
}

/* The engine's own text for @samples. */
static gchar *
engine_text (const gchar *model_path, const gint16 *s, gsize n)
{
  canary_model_options mo;
  canary_decode_options dopt;
  GError *err = NULL;

  canary_model_options_init (&mo);
  mo.device = CANARY_DEVICE_CPU;
  canary_model *m = canary_model_load (model_path, &mo, &err);
  fail_unless (m != NULL, "%s", err ? err->message : "");
  canary_state *st = canary_state_new (m, &err);
  fail_unless (st != NULL);
  canary_decode_options_init (&dopt);
  dopt.source_lang = "en";
  dopt.target_lang = "en";
  gfloat *f = g_new (gfloat, n);
  for (gsize i = 0; i < n; i++)
    f[i] = s[i] / 32768.0f;
  canary_result *r = canary_transcribe (st, f, n, &dopt, &err);
  fail_unless (r != NULL, "%s", err ? err->message : "");
  gchar *text = g_strdup (r->text);
  canary_result_free (r);
  g_free (f);
  canary_state_free (st);
  canary_model_unref (m);
  return text;
}

/* ---------------------------------------------------------------------------------------------
 * Merge rule
 */

static void
check_merge (const gchar *prev, const gchar *next, const gchar *expected)
{
  gchar *got = canary_text_merge (prev, next);
  fail_unless_equals_string (got, expected);
  g_free (got);
}

GST_START_TEST (test_merge_rule)
{
  /* exact suffix/prefix overlap, case and punctuation ignored */
  check_merge ("the quick brown fox jumps", "fox jumps over the dog", "over the dog");
  check_merge ("near the river bank.", "River bank. Every morning", "Every morning");
  /* the next window starts inside a word: a fragment is skipped */
  check_merge ("waited for the tide to turn", "ide to turn before he set out", "before he set out");
  check_merge ("waited for the tide to turn", "x ide to turn before", "before");
  /* the previous window ended inside a word: its last word is ignored */
  check_merge ("waited for the tide to tu", "the tide to turn before", "turn before");
  /* a cut word of three letters or more matches its whole form like a respelt word: "tur" was
   * emitted, "turn" is not emitted again */
  check_merge ("waited for the tide to tur", "the tide to turn before", "before");
  /* everything repeated: nothing new */
  check_merge ("one two three", "two three", "");
  /* nothing in common: keep it all */
  check_merge ("alpha beta", "gamma delta", "gamma delta");
  /* one common word needs no tolerance to count... */
  check_merge ("sat on the", "the mat", "mat");
  /* ...but with a skipped word a single short match is not enough ("the" is everywhere)... */
  check_merge ("sat on the", "a the mat", "a the mat");
  /* ...while one exact word of four letters or more is, between two cut ones (demo model) */
  check_merge ("they played him on first", "one first base", "base");
  check_merge ("he said hello there", "x hello again", "again");
  /* at most one trailing word of the previous text skipped for it */
  check_merge ("he said hello there now", "hello again", "hello again");
  /* longest run wins */
  check_merge ("a b a b", "a b a b c", "c");
  /* no previous text, empty next */
  check_merge (NULL, "hello world", "hello world");
  check_merge ("", "hello", "hello");
  check_merge ("hello", "", "");
  /* UTF-8 and case folding */
  check_merge ("über die Straße", "Straße hinüber", "hinüber");
  /* the same words spelt two ways in the two windows (seen with the demo model's long-form run) */
  check_merge ("the pipe box the dift please", "a difft please the competition", "the competition");
  check_merge ("pipe box the dist please", "a difft please the competition", "the competition");
  /* a word the previous window heard cut: "star" / "starving" (4 of 8 letters apart) */
  check_merge ("heat the star", "feed the starving children", "children");
  check_merge ("only won out", "warn out horses and cattle", "horses and cattle");
  check_merge ("sat on a fallen tree", "falen tree trunk", "trunk");
  /* the previous window ended inside a word, rendered as two words; a respelt word in the run */
  check_merge ("only worn out herse is", "won out horses and cattle", "and cattle");
  /* a spelling difference needs an exact neighbour: one similar word alone removes nothing... */
  check_merge ("he saw the horse", "horses ran away", "horses ran away");
  /* ...and short words must be equal ("on" is not "one") */
  check_merge ("sat on a", "one a day", "one a day");
  /* words too different are different words */
  check_merge ("a big figure", "big fatal error", "big fatal error");
  /* up to half the longer word's letters: "hose" / "horses" (2 of 6), "dog" / "dig" (1 of 3) */
  check_merge ("the red hose", "red horses gallop", "gallop");
  check_merge ("a dog bone", "dig bone", "");
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Timestamps and windows
 */

GST_START_TEST (test_timestamps_no_overlap)
{
  const gsize n = 25 * RATE;
  gint16 *speech = make_speech (n);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "window-length", 10000, "overlap", 0, NULL);

  GArray *pieces = transcribe_with (e, speech, n, 0, FALSE);
  const guint64 bounds[] = { 0, 10 * RATE, 20 * RATE, 25 * RATE };
  assert_tiling (pieces, 0, bounds, 3);
  fail_unless (count_text (pieces) >= 1, "speech gave no text at all");

  g_array_unref (pieces);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_timestamps_overlap)
{
  /* windows [0,10) [8,18) [16,25): the text of each covers what the previous one did not */
  const gsize n = 25 * RATE;
  const GstClockTime base = 3 * GST_SECOND;
  gint16 *speech = make_speech (n);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "window-length", 10000, "overlap", 2000, NULL);

  GArray *pieces = transcribe_with (e, speech, n, base, FALSE);
  const guint64 bounds[] = { 0, 10 * RATE, 18 * RATE, 25 * RATE };
  assert_tiling (pieces, base, bounds, 3);

  g_array_unref (pieces);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_eos_flushes_partial_window)
{
  gsize n;
  gint16 *speech = load_wav ("speech4s.wav", &n);
  GstElement *e = make_element (MODEL1);

  GArray *pieces = transcribe_with (e, speech, n, 0, FALSE);
  const guint64 bounds[] = { 0, n };
  assert_tiling (pieces, 0, bounds, 1);
  fail_unless (g_array_index (pieces, Piece, 0).text != NULL);

  g_array_unref (pieces);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_short_input)
{
  /* shorter than the engine's 1 s minimum: still one piece with the exact duration */
  gsize n;
  gint16 *speech = load_wav ("short.wav", &n);
  GArray *pieces = transcribe_with (make_element (MODEL1), speech, n, 0, FALSE);
  const guint64 bounds[] = { 0, n };
  assert_tiling (pieces, 0, bounds, 1);
  g_array_unref (pieces);
  g_free (speech);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Flush, discontinuities, gaps, silence
 */

static void
push_flush (GstHarness *h)
{
  GstSegment seg;

  fail_unless (gst_harness_push_event (h, gst_event_new_flush_start ()));
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_stop (TRUE)));
  gst_segment_init (&seg, GST_FORMAT_TIME);
  fail_unless (gst_harness_push_event (h, gst_event_new_segment (&seg)));
}

GST_START_TEST (test_flush_mid_window)
{
  gsize n4;
  gint16 *speech = make_speech (12 * RATE);
  gint16 *speech4 = load_wav ("speech4s.wav", &n4);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "overlap", 0, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, NULL);

  /* half a window, then a flush: that audio must never come out */
  fail_unless_equals_int (push_audio (h, speech, 5 * RATE, 0, FALSE, FALSE), GST_FLOW_OK);
  push_flush (h);
  /* a full window is being transcribed when the next flush comes */
  fail_unless_equals_int (push_audio (h, speech, 12 * RATE, 0, FALSE, FALSE), GST_FLOW_OK);
  push_flush (h);
  g_array_unref (collect_output (h));

  fail_unless_equals_int (push_audio (h, speech4, n4, 0, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  const guint64 bounds[] = { 0, n4 };
  assert_tiling (pieces, 0, bounds, 1);

  g_array_unref (pieces);
  gst_harness_teardown (h);
  g_free (speech);
  g_free (speech4);
}

GST_END_TEST;

typedef struct {
  GstHarness *h;
  const gint16 *samples;
  gsize n;
  GstFlowReturn flow;
} PushJob;

static gpointer
push_thread (gpointer data)
{
  PushJob *job = data;
  job->flow = push_audio (job->h, job->samples, job->n, 0, FALSE, FALSE);
  return NULL;
}

GST_START_TEST (test_flush_unblocks_streaming_thread)
{
  /* a minute of audio: the streaming thread soon waits for queue space (back-pressure) */
  const gsize n = 60 * RATE;
  gint16 *speech = make_speech (n);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "window-length", 2000, "overlap", 0, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, NULL);
  PushJob job = { h, speech, n, GST_FLOW_OK };

  GThread *t = g_thread_new ("pusher", push_thread, &job);
  g_usleep (G_USEC_PER_SEC / 5);
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_start ()));
  g_thread_join (t);
  fail_unless (job.flow == GST_FLOW_FLUSHING || job.flow == GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_flush_stop (TRUE)));

  gst_harness_teardown (h);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_discont_input)
{
  /* a long hole in the timestamps ends the run: the partial window is transcribed at once,
   * and a GAP covers the hole */
  const gsize n = 3 * RATE;
  gint16 *speech = make_speech (2 * n);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "overlap", 0, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, NULL);

  fail_unless_equals_int (push_audio (h, speech, n, 0, FALSE, FALSE), GST_FLOW_OK);
  fail_unless_equals_int (push_audio (h, speech + n, n, 20 * GST_SECOND, FALSE, TRUE),
      GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  const guint64 bounds[] = { 0, n, 20 * RATE, 20 * RATE + n };
  assert_tiling (pieces, 0, bounds, 3);
  fail_unless (g_array_index (pieces, Piece, 1).text == NULL, "the hole must be a GAP");

  g_array_unref (pieces);
  gst_harness_teardown (h);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_discont_flag_contiguous)
{
  /* DISCONT on audio whose timestamps continue: nothing is missing, the window goes on */
  const gsize n = 3 * RATE;
  gint16 *speech = make_speech (2 * n);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "overlap", 0, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, NULL);

  fail_unless_equals_int (push_audio (h, speech, n, 0, FALSE, FALSE), GST_FLOW_OK);
  fail_unless_equals_int (push_audio (h, speech + n, n, 3 * GST_SECOND, FALSE, TRUE),
      GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  const guint64 bounds[] = { 0, 2 * n };
  assert_tiling (pieces, 0, bounds, 1);

  g_array_unref (pieces);
  gst_harness_teardown (h);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_gap_input)
{
  /* 3 s speech, a 4 s GAP, 5 s speech: the GAP is silence inside the regular windows */
  gint16 *speech = make_speech (8 * RATE);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "overlap", 0, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, NULL);

  fail_unless_equals_int (push_audio (h, speech, 3 * RATE, 0, FALSE, FALSE), GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_gap (3 * GST_SECOND, 4 * GST_SECOND)));
  fail_unless_equals_int (push_audio (h, speech + 3 * RATE, 5 * RATE, 7 * GST_SECOND, FALSE,
          FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  const guint64 bounds[] = { 0, 10 * RATE, 12 * RATE };
  assert_tiling (pieces, 0, bounds, 2);

  g_array_unref (pieces);
  gst_harness_teardown (h);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_gap_only_input)
{
  /* a live source that only sends GAPs still gets GAPs out, window by window */
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "overlap", 0, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, NULL);

  fail_unless (gst_harness_push_event (h, gst_event_new_gap (0, 25 * GST_SECOND)));
  /* windows finished by then go out with the GAP (the worker may not be done with them) */
  GArray *before_eos = collect_output (h);
  fail_unless (before_eos->len <= 2);
  push_eos (h);
  GArray *after_eos = collect_output (h);
  fail_unless_equals_int (before_eos->len + after_eos->len, 3);
  g_array_append_vals (before_eos, after_eos->data, after_eos->len);
  g_array_set_clear_func (after_eos, NULL);     /* GAP pieces own no text */
  g_array_sort (before_eos, piece_cmp);
  const guint64 bounds[] = { 0, 10 * RATE, 20 * RATE, 25 * RATE };
  assert_tiling (before_eos, 0, bounds, 3);
  fail_unless_equals_int (count_text (before_eos), 0);

  g_array_unref (before_eos);
  g_array_unref (after_eos);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_silence_gives_gap)
{
  gsize n;
  gint16 *silence = load_wav ("silence.wav", &n);
  GstBus *bus;
  GstHarness *h = start_harness (make_element (MODEL1), S16_CAPS, &bus);

  fail_unless_equals_int (push_audio (h, silence, n, 0, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  const guint64 bounds[] = { 0, n };
  assert_tiling (pieces, 0, bounds, 1);
  fail_unless (g_array_index (pieces, Piece, 0).text == NULL, "silence must give a GAP");

  /* and no segment message */
  GstMessage *m;
  while ((m = gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT))) {
    fail_if (gst_message_has_name (m, "canarytranscribe"));
    gst_message_unref (m);
  }

  g_array_unref (pieces);
  teardown_with_bus (h, bus);
  g_free (silence);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Text: formats, parity with the engine
 */

GST_START_TEST (test_s16_and_f32_agree)
{
  gsize n;
  gint16 *speech = load_wav ("speech10s.wav", &n);
  GstElement *e16 = make_element (MODEL2), *e32 = make_element (MODEL2);
  g_object_set (e16, "window-length", 6000, "overlap", 1000, NULL);
  g_object_set (e32, "window-length", 6000, "overlap", 1000, NULL);

  GArray *p16 = transcribe_with (e16, speech, n, 0, FALSE);
  GArray *p32 = transcribe_with (e32, speech, n, 0, TRUE);
  fail_unless_equals_int (p16->len, p32->len);
  for (guint i = 0; i < p16->len; i++) {
    Piece *a = &g_array_index (p16, Piece, i), *b = &g_array_index (p32, Piece, i);
    fail_unless_equals_uint64 (a->pts, b->pts);
    fail_unless_equals_uint64 (a->duration, b->duration);
    fail_unless_equals_string (a->text, b->text);
  }

  g_array_unref (p16);
  g_array_unref (p32);
  g_free (speech);
}

GST_END_TEST;

static void
check_engine_parity (const gchar *model, const gchar *clip)
{
  gsize n;
  gint16 *speech = load_wav (clip, &n);
  GstElement *e = make_element (model);
  g_object_set (e, "window-length", 20000, "overlap", 0, NULL);

  GArray *pieces = transcribe_with (e, speech, n, 0, FALSE);
  gchar *expected = engine_text (model, speech, n);
  gchar *got = joined_text (pieces);
  fail_unless_equals_string (got, expected);

  g_free (got);
  g_free (expected);
  g_array_unref (pieces);
  g_free (speech);
}

GST_START_TEST (test_text_equals_engine)
{
  check_engine_parity (MODEL1, "speech4s.wav");
  check_engine_parity (MODEL2, "speech13s.wav");
  check_engine_parity (MODEL2U, "lead_silence.wav");
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Latency
 */

static void
query_latency (GstHarness *h, gboolean *live, GstClockTime *min, GstClockTime *max)
{
  GstQuery *q = gst_query_new_latency ();
  fail_unless (gst_pad_peer_query (h->sinkpad, q));
  gst_query_parse_latency (q, live, min, max);
  gst_query_unref (q);
}

GST_START_TEST (test_latency_query)
{
  gboolean live;
  GstClockTime min, max;
  GstBus *bus;
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "window-length", 5000, "latency", 300, NULL);
  /* no caps, model possibly still loading: the answer must not depend on either */
  GstHarness *h = start_harness (e, NULL, &bus);

  gst_harness_set_live (h, FALSE);
  gst_harness_set_upstream_latency (h, 20 * GST_MSECOND);
  query_latency (h, &live, &min, &max);
  fail_if (live);
  fail_unless_equals_uint64 (min, 20 * GST_MSECOND);

  gst_harness_set_live (h, TRUE);
  query_latency (h, &live, &min, &max);
  fail_unless (live);
  fail_unless_equals_uint64 (min, 20 * GST_MSECOND + 5300 * GST_MSECOND);
  fail_if (GST_CLOCK_TIME_IS_VALID (max) && max < min);

  /* changing latency while playing asks the pipeline to recompute */
  gst_bus_set_flushing (bus, TRUE);
  gst_bus_set_flushing (bus, FALSE);
  g_object_set (h->element, "latency", 700, NULL);
  GstMessage *m = wait_message (bus, GST_MESSAGE_LATENCY, 5);
  fail_unless (m != NULL, "no LATENCY message after changing latency");
  gst_message_unref (m);
  query_latency (h, &live, &min, &max);
  fail_unless_equals_uint64 (min, 20 * GST_MSECOND + 5700 * GST_MSECOND);
  g_object_set (h->element, "lateness", 100, NULL);
  m = wait_message (bus, GST_MESSAGE_LATENCY, 5);
  fail_unless (m != NULL, "no LATENCY message after changing lateness");
  gst_message_unref (m);

  teardown_with_bus (h, bus);
}

GST_END_TEST;

GST_START_TEST (test_lateness_shifts_output)
{
  gsize n;
  gint16 *speech = load_wav ("speech4s.wav", &n);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "lateness", 250, NULL);
  GArray *pieces = transcribe_with (e, speech, n, 0, FALSE);
  const guint64 bounds[] = { 0, n };
  assert_tiling (pieces, 250 * GST_MSECOND, bounds, 1);
  g_array_unref (pieces);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_live_behind_warning)
{
  const gsize n = 10 * RATE;
  gint16 *speech = make_speech (n);
  GstBus *bus;
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "overlap", 0, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, &bus);

  /* the window ends at running time 10 s, but the (test) clock already says 100 s */
  gst_harness_set_live (h, TRUE);
  gst_harness_set_time (h, 100 * GST_SECOND);
  fail_unless_equals_int (push_audio (h, speech, n, 0, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);

  GstMessage *m = wait_message (bus, GST_MESSAGE_WARNING, 30);
  fail_unless (m != NULL, "no warning for a live stream 90 s behind");
  const GstStructure *details = NULL;
  gst_message_parse_warning_details (m, &details);
  fail_unless (details && gst_structure_has_name (details, "canarytranscribe/behind"));
  guint64 behind = 0;
  fail_unless (gst_structure_get_uint64 (details, "behind", &behind));
  fail_unless (behind >= 90 * GST_SECOND);
  gst_message_unref (m);
  fail_if (wait_message (bus, GST_MESSAGE_ERROR, 0) != NULL);

  teardown_with_bus (h, bus);
  g_free (speech);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Messages
 */

GST_START_TEST (test_message_fields)
{
  gsize n;
  gint16 *speech = load_wav ("speech13s.wav", &n);
  GstBus *bus;
  GstElement *e = gst_element_factory_make ("canarytranscribe", NULL);
  require_file (MODEL1);
  /* device=auto here: every machine must run it */
  g_object_set (e, "model-path", MODEL1, "window-length", 5000, "overlap", 0,
      "language-code", "en-US", NULL);
  gst_util_set_object_arg (G_OBJECT (e), "segmentation", "fixed");
  GstHarness *h = start_harness (e, S16_CAPS, &bus);

  /* a segment that makes stream and running time differ from the PTS */
  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  seg.start = 2 * GST_SECOND;
  seg.time = 100 * GST_SECOND;
  seg.base = 7 * GST_SECOND;
  fail_unless (gst_harness_push_event (h, gst_event_new_segment (&seg)));
  fail_unless_equals_int (push_audio (h, speech, n, 2 * GST_SECOND, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);

  gboolean progress_start = FALSE, progress_done = FALSE;
  guint n_msgs = 0;
  GstMessage *m;
  while ((m = gst_bus_pop (bus))) {
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_PROGRESS) {
      GstProgressType type;
      gchar *code, *text;
      gst_message_parse_progress (m, &type, &code, &text);
      fail_unless_equals_string (code, "loading");
      progress_start |= type == GST_PROGRESS_TYPE_START;
      progress_done |= type == GST_PROGRESS_TYPE_COMPLETE;
      g_free (code);
      g_free (text);
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
        && gst_message_has_name (m, "canarytranscribe")) {
      const GstStructure *s = gst_message_get_structure (m);
      guint64 ts, st, rt, dur, proc;
      gboolean final;
      fail_unless (gst_structure_get_uint64 (s, "timestamp", &ts));
      fail_unless (gst_structure_get_uint64 (s, "stream-time", &st));
      fail_unless (gst_structure_get_uint64 (s, "running-time", &rt));
      fail_unless (gst_structure_get_uint64 (s, "duration", &dur));
      fail_unless (gst_structure_get_uint64 (s, "processing-time", &proc));
      fail_unless (gst_structure_get_boolean (s, "final", &final) && final);
      fail_unless_equals_string (gst_structure_get_string (s, "language"), "en");
      fail_unless (proc > 0);
      fail_unless_equals_uint64 (st, ts - 2 * GST_SECOND + 100 * GST_SECOND);
      fail_unless_equals_uint64 (rt, ts - 2 * GST_SECOND + 7 * GST_SECOND);
      /* it describes one of the text buffers exactly */
      gboolean found = FALSE;
      for (guint i = 0; i < pieces->len; i++) {
        Piece *p = &g_array_index (pieces, Piece, i);
        if (p->text && p->pts == ts) {
          fail_unless_equals_uint64 (p->duration, dur);
          fail_unless_equals_string (p->text, gst_structure_get_string (s, "text"));
          found = TRUE;
        }
      }
      fail_unless (found, "message for a buffer that was not pushed");
      n_msgs++;
    } else if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
      fail ("unexpected error");
    }
    gst_message_unref (m);
  }
  fail_unless (progress_start && progress_done, "progress 'loading' start/complete missing");
  fail_unless_equals_int (n_msgs, count_text (pieces));
  fail_unless (n_msgs > 0);

  g_array_unref (pieces);
  teardown_with_bus (h, bus);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_post_messages_off)
{
  gsize n;
  gint16 *speech = load_wav ("speech4s.wav", &n);
  GstBus *bus;
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "post-messages", FALSE, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, &bus);
  fail_unless_equals_int (push_audio (h, speech, n, 0, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  fail_unless_equals_int (count_text (pieces), 1);
  fail_if (gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT) != NULL);
  g_array_unref (pieces);
  teardown_with_bus (h, bus);
  g_free (speech);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Subtitle encoders
 */

/* Pushes speech13s through "canarytranscribe ! @encoder" and returns the file it wrote. */
static gchar *
encode_subtitles (const gchar *encoder, GArray **pieces_out)
{
  gsize n;
  gint16 *speech = load_wav ("speech13s.wav", &n);
  require_file (MODEL1);

  /* The audio goes through the encoder, and then once more straight out of the transcriber to
   * know what the cues must say (the engine is deterministic). */
  gchar *launch = g_strdup_printf ("canarytranscribe model-path=%s device=cpu segmentation=fixed window-length=5000 "
      "overlap=0 ! %s", MODEL1, encoder);
  GstHarness *h = gst_harness_new_parse (launch);
  g_free (launch);
  gst_harness_set_src_caps_str (h, S16_CAPS);
  fail_unless_equals_int (push_audio (h, speech, n, 0, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);
  GString *out = g_string_new (NULL);
  GstBuffer *buf;
  while ((buf = gst_harness_try_pull (h))) {
    GstMapInfo map;
    gst_buffer_map (buf, &map, GST_MAP_READ);
    g_string_append_len (out, (const gchar *) map.data, map.size);
    gst_buffer_unmap (buf, &map);
    gst_buffer_unref (buf);
  }
  gst_harness_teardown (h);

  GstElement *e = make_element (MODEL1);
  g_object_set (e, "window-length", 5000, "overlap", 0, NULL);
  *pieces_out = transcribe_with (e, speech, n, 0, FALSE);
  g_free (speech);
  return g_string_free (out, FALSE);
}

/* Parses "HH:MM:SS.mmm" (sep '.') or "HH:MM:SS,mmm" (sep ','). */
static GstClockTime
parse_cue_time (const gchar *s, gchar sep)
{
  guint h, m, sec, ms;
  gint got = sep == ',' ? sscanf (s, "%u:%u:%u,%u", &h, &m, &sec, &ms) :
      sscanf (s, "%u:%u:%u.%u", &h, &m, &sec, &ms);
  fail_unless_equals_int (got, 4);
  return ((h * 60 + m) * 60 + sec) * GST_SECOND + ms * GST_MSECOND;
}

/* Checks that @lines hold one cue per text piece, with the piece's times (to the ms) and text. */
static void
check_cues (gchar **lines, guint first_line, GArray *pieces, gchar sep, gboolean numbered)
{
  guint li = first_line, cue = 0;

  for (guint i = 0; i < pieces->len; i++) {
    Piece *p = &g_array_index (pieces, Piece, i);
    if (!p->text)
      continue;
    while (lines[li] && !*lines[li])
      li++;
    if (numbered) {
      fail_unless (lines[li] != NULL);
      fail_unless_equals_int (atoi (lines[li]), (gint) cue + 1);
      li++;
    }
    fail_unless (lines[li] != NULL, "cue %u missing", cue);
    gchar **times = g_strsplit (lines[li], " --> ", 2);
    fail_unless (times[0] && times[1], "not a cue timing line: '%s'", lines[li]);
    fail_unless_equals_uint64 (parse_cue_time (times[0], sep), p->pts / GST_MSECOND * GST_MSECOND);
    fail_unless_equals_uint64 (parse_cue_time (times[1], sep),
        (p->pts + p->duration) / GST_MSECOND * GST_MSECOND);
    g_strfreev (times);
    li++;
    fail_unless (lines[li] != NULL);
    fail_unless_equals_string (lines[li], p->text);
    li++;
    cue++;
  }
  fail_unless (cue > 0);
}

GST_START_TEST (test_webvtt_output)
{
  if (!load_system_plugin ("subenc"))
    return;
  GArray *pieces;
  gchar *vtt = encode_subtitles ("webvttenc", &pieces);
  fail_unless (g_str_has_prefix (vtt, "WEBVTT\n\n"), "no WEBVTT header: %s", vtt);
  gchar **lines = g_strsplit (vtt, "\n", -1);
  check_cues (lines, 2, pieces, '.', FALSE);
  g_strfreev (lines);
  g_free (vtt);
  g_array_unref (pieces);
}

GST_END_TEST;

GST_START_TEST (test_srt_output)
{
  if (!load_system_plugin ("subenc"))
    return;
  GArray *pieces;
  gchar *srt = encode_subtitles ("srtenc", &pieces);
  gchar **lines = g_strsplit (srt, "\n", -1);
  check_cues (lines, 0, pieces, ',', TRUE);
  g_strfreev (lines);
  g_free (srt);
  g_array_unref (pieces);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Errors
 */

/* Sets @e to @state; returns the first ERROR posted within @timeout_s (NULL if none). */
static GstMessage *
error_after_state (GstElement *e, GstState state, GstStateChangeReturn *ret, guint timeout_s)
{
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  *ret = gst_element_set_state (e, state);
  GstMessage *m = wait_message (bus, GST_MESSAGE_ERROR, timeout_s);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_element_set_bus (e, NULL);
  gst_object_unref (bus);
  return m;
}

static void
check_error (GstMessage *m, GQuark domain, gint code, const gchar *mention)
{
  GError *err = NULL;
  gchar *debug = NULL;

  fail_unless (m != NULL, "no error posted");
  gst_message_parse_error (m, &err, &debug);
  fail_unless (err->domain == domain && err->code == code, "unexpected error %s/%d: %s",
      g_quark_to_string (err->domain), err->code, err->message);
  if (mention)
    fail_unless (strstr (err->message, mention) != NULL, "'%s' does not mention '%s'",
        err->message, mention);
  g_error_free (err);
  g_free (debug);
  gst_message_unref (m);
}

GST_START_TEST (test_missing_model)
{
  GstStateChangeReturn ret;
  GstElement *e = gst_element_factory_make ("canarytranscribe", NULL);
  g_object_set (e, "model-path", "/nonexistent/dir/model.nemo", NULL);
  GstMessage *m = error_after_state (e, GST_STATE_READY, &ret, 5);
  fail_unless_equals_int (ret, GST_STATE_CHANGE_FAILURE);
  check_error (m, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND, "/nonexistent/dir/model.nemo");
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_default_model_missing)
{
  gchar *a = g_build_filename (CANARY_MODEL_DIR, "canary-default.nemo", NULL);
  const gchar *env_dir = g_getenv ("CANARY_DEFAULT_MODEL_DIR");
  gchar *b = env_dir ? g_build_filename (env_dir, "canary-default.nemo", NULL) : NULL;
  if (g_file_test (a, G_FILE_TEST_EXISTS) || (b && g_file_test (b, G_FILE_TEST_EXISTS))) {
    g_printerr ("SKIP: a default model is installed\n");
  } else {
    GstStateChangeReturn ret;
    GstElement *e = gst_element_factory_make ("canarytranscribe", NULL);
    GstMessage *m = error_after_state (e, GST_STATE_READY, &ret, 5);
    fail_unless_equals_int (ret, GST_STATE_CHANGE_FAILURE);
    check_error (m, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND, "model-path");
    gst_object_unref (e);
  }
  g_free (a);
  g_free (b);
}

GST_END_TEST;

/* A model file that exists but is no Canary model: the asynchronous load reports it. */
static void
check_bad_model (const gchar *contents, gsize len)
{
  gchar *path = NULL;
  gint fd = g_file_open_tmp ("canary-bad-XXXXXX.nemo", &path, NULL);
  fail_unless (fd >= 0);
  close (fd);
  fail_unless (g_file_set_contents (path, contents, len, NULL));

  GstStateChangeReturn ret;
  GstElement *e = gst_element_factory_make ("canarytranscribe", NULL);
  g_object_set (e, "model-path", path, NULL);
  GstMessage *m = error_after_state (e, GST_STATE_READY, &ret, 60);
  fail_unless (m != NULL, "no error for a bad model");
  GError *err = NULL;
  gst_message_parse_error (m, &err, NULL);
  fail_unless ((err->domain == GST_STREAM_ERROR && err->code == GST_STREAM_ERROR_WRONG_TYPE)
      || (err->domain == GST_RESOURCE_ERROR && err->code == GST_RESOURCE_ERROR_NOT_FOUND),
      "unexpected error %s/%d: %s", g_quark_to_string (err->domain), err->code, err->message);
  fail_unless (strstr (err->message, path) != NULL, "error does not name the file");
  g_error_free (err);
  gst_message_unref (m);

  /* and the element refuses to start, rather than crash */
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  gst_element_set_state (e, GST_STATE_READY);
  for (gint i = 0; i < 600; i++) {      /* wait for the load to fail (<= 60 s) */
    GstMessage *em = gst_bus_timed_pop_filtered (bus, 100 * GST_MSECOND, GST_MESSAGE_ERROR);
    if (em) {
      gst_message_unref (em);
      break;
    }
  }
  fail_unless_equals_int (gst_element_set_state (e, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_element_set_bus (e, NULL);
  gst_object_unref (bus);
  gst_object_unref (e);
  g_unlink (path);
  g_free (path);
}

GST_START_TEST (test_corrupt_model)
{
  /* garbage */
  gchar junk[4096];
  for (guint i = 0; i < sizeof junk; i++)
    junk[i] = (gchar) (i * 7919u >> 3);
  check_bad_model (junk, sizeof junk);
  /* empty */
  check_bad_model ("", 0);
  /* a real model cut in half */
  gchar *data;
  gsize len;
  require_file (MODEL1);
  fail_unless (g_file_get_contents (MODEL1, &data, &len, NULL));
  check_bad_model (data, len / 2);
  g_free (data);
}

GST_END_TEST;

GST_START_TEST (test_invalid_settings)
{
  GstStateChangeReturn ret;
  GstMessage *m;

  /* overlap must be shorter than the window: refused when the stream starts */
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "window-length", 3000, "overlap", 3000, NULL);
  m = error_after_state (e, GST_STATE_PAUSED, &ret, 30);
  fail_unless_equals_int (ret, GST_STATE_CHANGE_FAILURE);
  check_error (m, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS, "overlap");
  gst_object_unref (e);

  /* a language the model does not have: reported once the model is known */
  e = make_element (MODEL1);
  g_object_set (e, "language-code", "xx", NULL);
  m = error_after_state (e, GST_STATE_PLAYING, &ret, 60);
  check_error (m, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS, "xx");
  gst_object_unref (e);

  /* a target language with task=transcribe is a contradiction */
  e = make_element (MODEL1);
  g_object_set (e, "target-language", "de", NULL);
  m = error_after_state (e, GST_STATE_PLAYING, &ret, 60);
  check_error (m, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS, "task");
  gst_object_unref (e);

  /* fp16 on the CPU is a setting the CPU backend runs (FP16 weights, docs/cpu-fp16.md) */
  e = make_element (MODEL1);
  g_object_set (e, "precision", 1 /* fp16 */ , NULL);
  m = error_after_state (e, GST_STATE_PAUSED, &ret, 60);
  fail_unless (m == NULL, "device=cpu precision=fp16 failed to start");
  fail_if (ret == GST_STATE_CHANGE_FAILURE);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_object_unref (e);

  /* model settings cannot change past READY */
  e = make_element (MODEL1);
  fail_unless_equals_int (gst_element_set_state (e, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
  g_object_set (e, "window-length", 4000, NULL);
  guint window;
  g_object_get (e, "window-length", &window, NULL);
  fail_unless_equals_int (window, 10000);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_cuda_unavailable)
{
  canary_model_options mo;
  GError *err = NULL;

  require_file (MODEL1);
  canary_model_options_init (&mo);
  mo.device = CANARY_DEVICE_CUDA;
  canary_model *m = canary_model_load (MODEL1, &mo, &err);
  if (m) {
    g_printerr ("SKIP: CUDA works here\n");
    canary_model_unref (m);
    return;
  }
  g_clear_error (&err);

  /* device=cuda: an error */
  GstStateChangeReturn ret;
  GstElement *e = gst_element_factory_make ("canarytranscribe", NULL);
  g_object_set (e, "model-path", MODEL1, "device", 1 /* cuda */ , NULL);
  GstMessage *msg = error_after_state (e, GST_STATE_READY, &ret, 60);
  check_error (msg, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED, MODEL1);
  gst_object_unref (e);

  /* device=auto with precision=fp16, auto pinned to the CPU ($CANARY_AUTO_DEVICE=cpu, as in every
   * element test): the CPU's FP16 path, transcribing, with no error */
  gsize n;
  gint16 *speech = load_wav ("speech4s.wav", &n);
  GstBus *bus;
  e = gst_element_factory_make ("canarytranscribe", NULL);
  g_object_set (e, "model-path", MODEL1, "precision", 1 /* fp16 */ , NULL);
  GstHarness *h = start_harness (e, S16_CAPS, &bus);
  fail_unless_equals_int (push_audio (h, speech, n, 0, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  fail_unless_equals_int (count_text (pieces), 1);
  fail_if (gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR) != NULL);
  g_array_unref (pieces);
  teardown_with_bus (h, bus);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_invalid_samples)
{
  const gsize n = 3 * RATE;
  gint16 *speech = make_speech (n);
  GstBus *bus;
  GstElement *e = make_element (MODEL1);
  GstHarness *h = start_harness (e, F32_CAPS, &bus);

  gfloat *f = g_new (gfloat, n);
  for (gsize i = 0; i < n; i++)
    f[i] = speech[i] / 32768.0f;
  f[100] = NAN;
  f[200] = INFINITY;
  f[300] = -INFINITY;
  f[400] = 1e30f;
  f[500] = -3.0f;
  GstBuffer *buf = gst_buffer_new_wrapped (f, n * sizeof (gfloat));
  GST_BUFFER_PTS (buf) = 0;
  GST_BUFFER_DURATION (buf) = 3 * GST_SECOND;
  fail_unless_equals_int (gst_harness_push (h, buf), GST_FLOW_OK);
  push_eos (h);

  GArray *pieces = collect_output (h);
  const guint64 bounds[] = { 0, n };
  assert_tiling (pieces, 0, bounds, 1);

  GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (m != NULL, "no warning for NaN/inf/huge samples");
  const GstStructure *details = NULL;
  gst_message_parse_warning_details (m, &details);
  fail_unless (details && gst_structure_has_name (details, "canarytranscribe/invalid-samples"));
  guint64 nonfinite = 0, clipped = 0;
  fail_unless (gst_structure_get_uint64 (details, "non-finite", &nonfinite));
  fail_unless (gst_structure_get_uint64 (details, "clipped", &clipped));
  fail_unless_equals_uint64 (nonfinite, 3);
  fail_unless_equals_uint64 (clipped, 2);
  gst_message_unref (m);
  fail_if (gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR) != NULL);

  g_array_unref (pieces);
  teardown_with_bus (h, bus);
  g_free (speech);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Lifecycle
 */

GST_START_TEST (test_state_cycles)
{
  canary_model_options mo;
  GError *err = NULL;

  /* keep the model in the engine's cache so that each cycle measures the element, not loads */
  canary_model_options_init (&mo);
  mo.device = CANARY_DEVICE_CPU;
  require_file (MODEL1);
  canary_model *keep = canary_model_load (MODEL1, &mo, &err);
  fail_unless (keep != NULL);

  GstElement *e = make_element (MODEL1);
  for (gint i = 0; i < 200; i++) {
    static const GstState targets[] = { GST_STATE_READY, GST_STATE_PAUSED, GST_STATE_PLAYING };
    GstState target = targets[i % 3];
    fail_if (gst_element_set_state (e, target) == GST_STATE_CHANGE_FAILURE, "cycle %d", i);
    if (i % 7 == 0)
      gst_element_set_state (e, GST_STATE_READY);
    fail_unless_equals_int (gst_element_set_state (e, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  }
  gst_object_unref (e);

  /* and state changes while audio flows, at varying moments */
  const gsize n = 4 * RATE;
  gint16 *speech = make_speech (n);
  GRand *rand = g_rand_new_with_seed (42);
  for (gint i = 0; i < 20; i++) {
    GstElement *el = make_element (MODEL1);
    g_object_set (el, "window-length", 1000, "overlap", i % 2 ? 0 : 500, NULL);
    GstHarness *h = start_harness (el, S16_CAPS, NULL);
    PushJob job = { h, speech, n, GST_FLOW_OK };
    GThread *t = g_thread_new ("pusher", push_thread, &job);
    g_usleep (g_rand_int_range (rand, 0, 150000));
    gst_element_set_state (h->element, i % 2 ? GST_STATE_NULL : GST_STATE_READY);
    g_thread_join (t);
    gst_harness_teardown (h);
  }
  g_rand_free (rand);
  g_free (speech);
  canary_model_unref (keep);
}

GST_END_TEST;

static GstPadProbeReturn
collect_text_probe (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  GString *s = data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  GstMapInfo map;

  gst_buffer_map (buf, &map, GST_MAP_READ);
  g_string_append_printf (s, "%" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT ":", GST_BUFFER_PTS (buf),
      GST_BUFFER_DURATION (buf));
  g_string_append_len (s, (const gchar *) map.data, map.size);
  g_string_append_c (s, '\n');
  gst_buffer_unmap (buf, &map);
  return GST_PAD_PROBE_OK;
}

GST_START_TEST (test_two_instances_one_model)
{
  if (!load_system_plugin ("coreelements") || !load_system_plugin ("app"))
    return;
  require_file (MODEL1);
  gsize n;
  gint16 *speech = load_wav ("speech10s.wav", &n);
  gchar *launch = g_strdup_printf ("appsrc name=src format=time caps=" S16_CAPS " ! tee name=t "
      "t. ! queue ! canarytranscribe name=a model-path=%s segmentation=fixed window-length=4000 ! "
      "fakesink name=sa t. ! queue ! canarytranscribe name=b model-path=%s segmentation=fixed "
      "window-length=4000 ! fakesink name=sb",
      MODEL1, MODEL1);
  GError *err = NULL;
  GstElement *pipe = gst_parse_launch (launch, &err);
  fail_unless (pipe != NULL, "%s", err ? err->message : "");
  g_free (launch);

  GString *texts[2] = { g_string_new (NULL), g_string_new (NULL) };
  const gchar *sinks[2] = { "sa", "sb" };
  for (guint i = 0; i < 2; i++) {
    GstElement *sink = gst_bin_get_by_name (GST_BIN (pipe), sinks[i]);
    GstPad *pad = gst_element_get_static_pad (sink, "sink");
    gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, collect_text_probe, texts[i], NULL);
    gst_object_unref (pad);
    gst_object_unref (sink);
  }

  GstElement *src = gst_bin_get_by_name (GST_BIN (pipe), "src");
  fail_if (gst_element_set_state (pipe, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);
  for (gsize off = 0; off < n; off += CHUNK) {
    gsize m = MIN (CHUNK, n - off);
    GstBuffer *buf = make_audio_buffer (speech + off, m, FALSE);
    GST_BUFFER_PTS (buf) = SAMPLES_TO_TIME (off);
    GST_BUFFER_DURATION (buf) = SAMPLES_TO_TIME (off + m) - SAMPLES_TO_TIME (off);
    GstFlowReturn flow;
    g_signal_emit_by_name (src, "push-buffer", buf, &flow);
    gst_buffer_unref (buf);
    fail_unless_equals_int (flow, GST_FLOW_OK);
  }
  GstFlowReturn flow;
  g_signal_emit_by_name (src, "end-of-stream", &flow);
  gst_object_unref (src);

  GstBus *bus = gst_element_get_bus (pipe);
  GstMessage *m = gst_bus_timed_pop_filtered (bus, 120 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless (m && GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS, "pipeline did not finish");
  gst_message_unref (m);
  gst_object_unref (bus);
  gst_element_set_state (pipe, GST_STATE_NULL);
  gst_object_unref (pipe);

  fail_unless (texts[0]->len > 0);
  fail_unless_equals_string (texts[0]->str, texts[1]->str);
  g_string_free (texts[0], TRUE);
  g_string_free (texts[1], TRUE);
  g_free (speech);
}

GST_END_TEST;

/* Writes @n samples as a 16 kHz mono PCM16 WAV file. */
static void
write_wav (const gchar *path, const gint16 *samples, gsize n)
{
  guint32 data_bytes = (guint32) (n * 2);
  guint8 hdr[44] = { 'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't', ' ',
    16, 0, 0, 0, 1, 0, 1, 0, 0x80, 0x3e, 0, 0, 0, 0x7d, 0, 0, 2, 0, 16, 0, 'd', 'a', 't', 'a' };
  GST_WRITE_UINT32_LE (hdr + 4, 36 + data_bytes);
  GST_WRITE_UINT32_LE (hdr + 40, data_bytes);
  GString *file = g_string_new_len ((const gchar *) hdr, 44);
  for (gsize i = 0; i < n; i++) {
    guint8 le[2];
    GST_WRITE_UINT16_LE (le, (guint16) samples[i]);
    g_string_append_len (file, (const gchar *) le, 2);
  }
  fail_unless (g_file_set_contents (path, file->str, file->len, NULL));
  g_string_free (file, TRUE);
}

/* The bar: a 2-minute file through filesrc ! decodebin ! audioconvert ! audioresample !
 * canarytranscribe gives, window by window, the engine's text for the same samples, with cue times
 * that increase, never overlap and stay inside the audio. Overlap 0 makes the windows the plain
 * 10 s tiles, so each buffer can be compared with canary_transcribe on its own slice. */
GST_START_TEST (test_two_minute_file)
{
  const gchar *plugins[] = { "coreelements", "playback", "typefindfunctions", "wavparse",
    "audioconvert", "audioresample", "app" };
  for (guint i = 0; i < G_N_ELEMENTS (plugins); i++)
    if (!load_system_plugin (plugins[i]))
      return;
  require_file (MODEL2);

  /* 120 s of the fixture clips back to back (speech, silence, speech after silence). */
  const gchar *clips[] = { "speech13s.wav", "speech10s.wav", "lead_silence.wav", "speech4s.wav",
    "silence.wav", "short.wav" };
  const gsize total = 120 * 16000;
  gint16 *audio = g_new (gint16, total);
  for (gsize have = 0, c = 0; have < total; c++) {
    gsize n;
    gint16 *clip = load_wav (clips[c % G_N_ELEMENTS (clips)], &n);
    gsize m = MIN (n, total - have);
    memcpy (audio + have, clip, m * sizeof (gint16));
    have += m;
    g_free (clip);
  }
  gchar *dir = g_dir_make_tmp ("canary-2min-XXXXXX", NULL);
  gchar *wav = g_build_filename (dir, "talk.wav", NULL);
  write_wav (wav, audio, total);

  gchar *launch = g_strdup_printf ("filesrc location=%s ! decodebin ! audioconvert ! audioresample ! "
      "canarytranscribe model-path=%s device=cpu segmentation=fixed overlap=0 ! appsink name=out "
      "sync=false", wav, MODEL2);
  GError *err = NULL;
  GstElement *pipe = gst_parse_launch (launch, &err);
  fail_unless (pipe != NULL, "%s", err ? err->message : "");
  GstElement *sink = gst_bin_get_by_name (GST_BIN (pipe), "out");
  fail_if (gst_element_set_state (pipe, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE);

  GstClockTime prev_end = 0;
  guint n_buffers = 0;
  GstSample *sample;
  while ((sample = gst_app_sink_try_pull_sample (GST_APP_SINK (sink), 120 * GST_SECOND))) {
    GstBuffer *buf = gst_sample_get_buffer (sample);
    GstClockTime pts = GST_BUFFER_PTS (buf), dur = GST_BUFFER_DURATION (buf);
    fail_unless (GST_CLOCK_TIME_IS_VALID (pts) && GST_CLOCK_TIME_IS_VALID (dur) && dur > 0);
    fail_unless (pts >= prev_end, "cue at %" GST_TIME_FORMAT " overlaps the previous one",
        GST_TIME_ARGS (pts));
    fail_unless (pts + dur <= 120 * GST_SECOND);
    prev_end = pts + dur;

    GstMapInfo map;
    fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
    gchar *text = g_strndup ((const gchar *) map.data, map.size);
    gst_buffer_unmap (buf, &map);
    gsize first_sample = gst_util_uint64_scale_round (pts, 16000, GST_SECOND);
    gsize count = gst_util_uint64_scale_round (pts + dur, 16000, GST_SECOND) - first_sample;
    gchar *expected = engine_text (MODEL2, audio + first_sample, count);
    fail_unless_equals_string (text, expected);
    g_free (expected);
    g_free (text);
    gst_sample_unref (sample);
    n_buffers++;
  }
  fail_unless (gst_app_sink_is_eos (GST_APP_SINK (sink)), "pipeline did not reach EOS");
  fail_unless (n_buffers >= 10, "only %u text buffers for 12 windows", n_buffers);
  g_print ("2-minute file: %u text buffers, last cue ends at %" GST_TIME_FORMAT "\n", n_buffers,
      GST_TIME_ARGS (prev_end));

  gst_element_set_state (pipe, GST_STATE_NULL);
  gst_object_unref (sink);
  gst_object_unref (pipe);
  g_unlink (wav);
  g_rmdir (dir);
  g_free (wav);
  g_free (dir);
  g_free (launch);
  g_free (audio);
}

GST_END_TEST;

GST_START_TEST (test_debug_categories)
{
  gboolean element = FALSE, engine = FALSE;

  /* the plugin registers its categories when it is loaded */
  gst_object_unref (make_element (NULL));
  GSList *cats = gst_debug_get_all_categories ();
  for (GSList *l = cats; l; l = l->next) {
    const gchar *name = gst_debug_category_get_name (l->data);
    element |= !strcmp (name, "canarytranscribe");
    engine |= !strcmp (name, "canaryengine");
  }
  g_slist_free (cats);
  fail_unless (element && engine);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Failure paths a live pipeline meets (issue 13)
 */

/* A temporary file that is no Canary model; g_free and g_unlink it. */
static gchar *
write_junk_model (void)
{
  gchar *path = NULL;
  gchar junk[4096];
  gint fd = g_file_open_tmp ("canary-junk-XXXXXX.nemo", &path, NULL);

  fail_unless (fd >= 0);
  close (fd);
  for (guint i = 0; i < sizeof junk; i++)
    junk[i] = (gchar) (i * 7919u >> 3);
  fail_unless (g_file_set_contents (path, junk, sizeof junk, NULL));
  return path;
}

static GstElement *
make_test_pipeline (const gchar *model, GstElement **transcribe)
{
  GError *err = NULL;
  GstElement *p = gst_parse_launch ("audiotestsrc num-buffers=20 wave=pink-noise ! "
      "audio/x-raw,format=S16LE,rate=16000,channels=1 ! canarytranscribe name=t device=cpu "
      "segmentation=fixed ! fakesink", &err);
  fail_unless (p != NULL, "%s", err ? err->message : "");
  *transcribe = gst_bin_get_by_name (GST_BIN (p), "t");
  g_object_set (*transcribe, "model-path", model, NULL);
  return p;
}

GST_START_TEST (test_bad_model_fails_paused)
{
  /* the load used to finish on the worker ~1 ms after READY->PAUSED returned ASYNC, so the same
   * file failed the state change in some runs and arrived as a later error in others */
  if (!load_system_plugin ("coreelements") || !load_system_plugin ("audiotestsrc"))
    return;
  gchar *path = write_junk_model ();

  for (gint i = 0; i < 30; i++) {
    GstElement *t;
    GstElement *p = make_test_pipeline (path, &t);
    GstBus *bus = gst_element_get_bus (p);
    fail_unless_equals_int (gst_element_set_state (p, GST_STATE_PAUSED),
        GST_STATE_CHANGE_FAILURE);
    /* the element's own error comes first, before anything upstream could say */
    GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    fail_unless (m != NULL, "run %d: no error posted by the time the state change failed", i);
    fail_unless (GST_MESSAGE_SRC (m) == GST_OBJECT (t), "run %d: first error from %s", i,
        GST_MESSAGE_SRC_NAME (m));
    check_error (m, GST_STREAM_ERROR, GST_STREAM_ERROR_WRONG_TYPE, path);
    gst_element_set_state (p, GST_STATE_NULL);
    gst_object_unref (bus);
    gst_object_unref (t);
    gst_object_unref (p);
  }

  /* a good model: READY->PAUSED returns once it is loaded, with its progress messages */
  GstElement *t;
  GstElement *p = make_test_pipeline (MODEL1, &t);
  GstBus *bus = gst_element_get_bus (p);
  fail_if (gst_element_set_state (p, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE);
  gboolean start = FALSE, complete = FALSE;
  GstMessage *m;
  while ((m = gst_bus_pop_filtered (bus, GST_MESSAGE_PROGRESS))) {
    GstProgressType type;
    gst_message_parse_progress (m, &type, NULL, NULL);
    start |= type == GST_PROGRESS_TYPE_START;
    complete |= type == GST_PROGRESS_TYPE_COMPLETE;
    gst_message_unref (m);
  }
  fail_unless (start && complete, "progress start/complete not posted before PAUSED");
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (t);
  gst_object_unref (p);

  g_unlink (path);
  g_free (path);
}

GST_END_TEST;

typedef struct {
  const gchar *path;
  GError *err;
  gboolean loaded;
  gint done;
} LoadJob;

static gpointer
load_thread (gpointer data)
{
  LoadJob *job = data;
  canary_model_options mo;

  canary_model_options_init (&mo);
  mo.device = CANARY_DEVICE_CPU;
  canary_model *m = canary_model_load (job->path, &mo, &job->err);
  job->loaded = m != NULL;
  if (m)
    canary_model_unref (m);
  g_atomic_int_set (&job->done, 1);
  return NULL;
}

/* The state change to READY fails at once, naming what @path is. */
static void
check_not_a_model_file (const gchar *path, const gchar *what)
{
  GstElement *e = gst_element_factory_make ("canarytranscribe", NULL);
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  g_object_set (e, "model-path", path, NULL);
  /* (checked before anything could go to NULL: a worker blocked in open() is never joined) */
  fail_unless_equals_int (gst_element_set_state (e, GST_STATE_READY), GST_STATE_CHANGE_FAILURE);
  check_error (gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR), GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_OPEN_READ, what);
  fail_unless_equals_int (gst_element_set_state (e, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
  gst_element_set_bus (e, NULL);
  gst_object_unref (bus);
  gst_object_unref (e);

  /* and the engine itself refuses it without blocking in open() */
  LoadJob job = { path, NULL, FALSE, 0 };
  GThread *t = g_thread_new ("load", load_thread, &job);
  for (gint i = 0; i < 500 && !g_atomic_int_get (&job.done); i++)
    g_usleep (10000);
  fail_unless (g_atomic_int_get (&job.done), "canary_model_load(%s) blocks", path);
  g_thread_join (t);
  fail_if (job.loaded);
  fail_unless (job.err && strstr (job.err->message, "not a regular file"), "%s: %s", path,
      job.err ? job.err->message : "");
  g_clear_error (&job.err);
}

GST_START_TEST (test_model_path_not_regular)
{
  gchar *dir = g_dir_make_tmp ("canary-fifo-XXXXXX", NULL);
  gchar *fifo = g_build_filename (dir, "model.nemo", NULL);
  fail_unless (mkfifo (fifo, 0600) == 0);

  check_not_a_model_file (fifo, "FIFO");
  check_not_a_model_file ("/dev/zero", "character device");

  g_unlink (fifo);
  g_rmdir (dir);
  g_free (fifo);
  g_free (dir);
}

GST_END_TEST;

GST_START_TEST (test_auto_device_warns_once)
{
  canary_model_options mo;
  GError *err = NULL;

  /* the test environment pins device=auto to the CPU; here auto must look for the GPU */
  g_unsetenv ("CANARY_AUTO_DEVICE");
  require_file (MODEL1);
  canary_model_options_init (&mo);
  mo.device = CANARY_DEVICE_CUDA;
  canary_model *cm = canary_model_load (MODEL1, &mo, &err);
  if (cm) {
    g_printerr ("SKIP: CUDA works here\n");
    canary_model_unref (cm);
    return;
  }
  g_clear_error (&err);

  gsize n;
  gint16 *speech = load_wav ("speech4s.wav", &n);
  GstBus *bus;
  GstElement *e = gst_element_factory_make ("canarytranscribe", NULL);
  g_object_set (e, "model-path", MODEL1, NULL);   /* device=auto, precision=auto */
  GstHarness *h = start_harness (e, S16_CAPS, &bus);
  fail_unless_equals_int (push_audio (h, speech, n, 0, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  fail_unless_equals_int (count_text (pieces), 1);

  guint warnings = 0;
  GstMessage *m;
  while ((m = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING | GST_MESSAGE_ERROR))) {
    fail_unless (GST_MESSAGE_TYPE (m) == GST_MESSAGE_WARNING, "error on a CPU fallback");
    const GstStructure *details = NULL;
    gst_message_parse_warning_details (m, &details);
    fail_unless (details && gst_structure_has_name (details, "canarytranscribe/cpu-fallback"));
    const gchar *reason = gst_structure_get_string (details, "reason");
    fail_unless (reason && *reason, "no reason given");
    warnings++;
    gst_message_unref (m);
  }
  fail_unless_equals_int (warnings, 1);

  g_array_unref (pieces);
  teardown_with_bus (h, bus);
  g_free (speech);
}

GST_END_TEST;


/* Pushes @n samples from @s as 100 ms buffers stamped from @base, leaving out every
 * @drop_every-th buffer (0: none) as a leaky queue does, the next one marked DISCONT when
 * @discont. Returns the end of the last buffer. */
static GstClockTime
push_leaky (GstHarness *h, const gint16 *s, gsize n, GstClockTime base, guint drop_every,
    gboolean discont)
{
  gboolean after_drop = FALSE;
  GstClockTime end = base;
  for (gsize off = 0, i = 0; off < n; off += CHUNK, i++) {
    gsize m = MIN (CHUNK, n - off);
    if (drop_every && i % drop_every == drop_every - 1) {
      after_drop = TRUE;
      continue;
    }
    GstBuffer *buf = make_audio_buffer (s + off, m, FALSE);
    GST_BUFFER_PTS (buf) = base + SAMPLES_TO_TIME (off);
    GST_BUFFER_DURATION (buf) = SAMPLES_TO_TIME (off + m) - SAMPLES_TO_TIME (off);
    if (after_drop && discont)
      GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);
    after_drop = FALSE;
    end = GST_BUFFER_PTS (buf) + GST_BUFFER_DURATION (buf);
    fail_unless_equals_int (gst_harness_push (h, buf), GST_FLOW_OK);
  }
  return end;
}

GST_START_TEST (test_short_holes_filled)
{
  /* a live source behind a leaky queue: 100 ms holes, with and without DISCONT. They are
   * filled with silence: 25 s give the regular 10 s windows, not a window per hole */
  const gsize n = 25 * RATE;
  gint16 *speech = make_speech (n);
  for (gint discont = 0; discont < 2; discont++) {
    GstElement *e = make_element (MODEL1);
    g_object_set (e, "overlap", 0, NULL);
    GstHarness *h = start_harness (e, S16_CAPS, NULL);
    GstClockTime end = push_leaky (h, speech, n, 0, discont ? 10 : 20, discont);
    push_eos (h);
    GArray *pieces = collect_output (h);
    const guint64 bounds[] = { 0, 10 * RATE, 20 * RATE,
      gst_util_uint64_scale_int (end, RATE, GST_SECOND) };
    assert_tiling (pieces, 0, bounds, 3);
    g_array_unref (pieces);
    gst_harness_teardown (h);
  }
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_jump_without_discont)
{
  /* 7 s, then the timestamps jump to 20 s without a DISCONT flag: the run ends at 7 s, a GAP
   * covers [7, 20), the text after the jump is stamped from 20 s */
  gint16 *speech = make_speech (10 * RATE);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "overlap", 0, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, NULL);

  fail_unless_equals_int (push_audio (h, speech, 7 * RATE, 0, FALSE, FALSE), GST_FLOW_OK);
  fail_unless_equals_int (push_audio (h, speech + 7 * RATE, 3 * RATE, 20 * GST_SECOND, FALSE,
          FALSE), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  const guint64 bounds[] = { 0, 7 * RATE, 20 * RATE, 23 * RATE };
  assert_tiling (pieces, 0, bounds, 3);
  fail_unless (g_array_index (pieces, Piece, 1).text == NULL, "the hole must be a GAP");

  g_array_unref (pieces);
  gst_harness_teardown (h);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_timestamps_backwards)
{
  /* 7 s, then timestamps from 3 s again: the text must not overlap [0, 7) */
  gint16 *speech = make_speech (14 * RATE);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "overlap", 0, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, NULL);

  fail_unless_equals_int (push_audio (h, speech, 7 * RATE, 0, FALSE, FALSE), GST_FLOW_OK);
  fail_unless_equals_int (push_audio (h, speech + 7 * RATE, 7 * RATE, 3 * GST_SECOND, FALSE,
          FALSE), GST_FLOW_OK);
  /* and a jump ahead afterwards takes the shift back: a GAP, then text from 30 s */
  fail_unless_equals_int (push_audio (h, speech, 2 * RATE, 30 * GST_SECOND, FALSE, FALSE),
      GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  assert_tiles (pieces, 0, 32 * GST_SECOND);
  const guint64 bounds[] = { 0, 7 * RATE, 14 * RATE, 30 * RATE, 32 * RATE };
  assert_tiling (pieces, 0, bounds, 4);

  g_array_unref (pieces);
  gst_harness_teardown (h);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_live_step_back)
{
  /* a live source resumed after PAUSED steps back 66 ms: the run goes on, nothing overlaps */
  gint16 *speech = make_speech (12 * RATE);
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "overlap", 1000, "window-length", 4000, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, NULL);
  gst_harness_set_live (h, TRUE);

  const gsize head = 7 * RATE + RATE / 2;
  fail_unless_equals_int (push_audio (h, speech, head, 0, FALSE, FALSE), GST_FLOW_OK);
  fail_unless_equals_int (push_audio (h, speech + head, 12 * RATE - head,
          SAMPLES_TO_TIME (head) - 66 * GST_MSECOND, FALSE, TRUE), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);
  /* 12 s of samples, windows of 4 s every 3 s: [0,4) [4,7) [7,10) [10,12) */
  const guint64 bounds[] = { 0, 4 * RATE, 7 * RATE, 10 * RATE, 12 * RATE };
  assert_tiling (pieces, 0, bounds, 4);

  g_array_unref (pieces);
  gst_harness_teardown (h);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_invalid_samples_attributed)
{
  /* one 4 s buffer, 2 s windows, NaN at 3.5 s: the warning names the window at 2 s that held
   * them, not the first window cut from the buffer */
  const gsize n = 4 * RATE;
  gint16 *speech = make_speech (n);
  GstBus *bus;
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "window-length", 2000, "overlap", 500, NULL);
  GstHarness *h = start_harness (e, F32_CAPS, &bus);

  gfloat *f = g_new (gfloat, n);
  for (gsize i = 0; i < n; i++)
    f[i] = speech[i] / 32768.0f;
  f[RATE * 7 / 2] = NAN;
  f[RATE * 7 / 2 + 1] = 5.0f;
  GstBuffer *buf = gst_buffer_new_wrapped (f, n * sizeof (gfloat));
  GST_BUFFER_PTS (buf) = 0;
  GST_BUFFER_DURATION (buf) = 4 * GST_SECOND;
  fail_unless_equals_int (gst_harness_push (h, buf), GST_FLOW_OK);
  push_eos (h);
  GArray *pieces = collect_output (h);

  guint warnings = 0;
  GstMessage *m;
  while ((m = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING))) {
    const GstStructure *details = NULL;
    guint64 ts = 0, nonfinite = 0, clipped = 0;
    gst_message_parse_warning_details (m, &details);
    fail_unless (details && gst_structure_has_name (details, "canarytranscribe/invalid-samples"));
    fail_unless (gst_structure_get_uint64 (details, "timestamp", &ts));
    fail_unless (gst_structure_get_uint64 (details, "non-finite", &nonfinite));
    fail_unless (gst_structure_get_uint64 (details, "clipped", &clipped));
    /* windows of 2 s every 1.5 s: the text of the one at [1.5, 3.5) covers [2, 3.5), the next
     * one's [3.5, 4): sample 3.5 s is in the latter */
    fail_unless_equals_uint64 (ts, 3 * GST_SECOND + GST_SECOND / 2);
    fail_unless_equals_uint64 (nonfinite, 1);
    fail_unless_equals_uint64 (clipped, 1);
    warnings++;
    gst_message_unref (m);
  }
  fail_unless_equals_int (warnings, 1);

  g_array_unref (pieces);
  teardown_with_bus (h, bus);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_lag_warning_in_ms)
{
  /* 46 ms behind used to read "0.0 s" */
  const gsize n = 10 * RATE;
  gint16 *speech = make_speech (n);
  GstBus *bus;
  GstElement *e = make_element (MODEL1);
  g_object_set (e, "overlap", 0, "latency", 0, NULL);
  GstHarness *h = start_harness (e, S16_CAPS, &bus);
  gst_harness_set_live (h, TRUE);
  gst_harness_set_time (h, 10 * GST_SECOND + 46 * GST_MSECOND);
  fail_unless_equals_int (push_audio (h, speech, n, 0, FALSE, FALSE), GST_FLOW_OK);
  push_eos (h);

  GstMessage *m = wait_message (bus, GST_MESSAGE_WARNING, 30);
  fail_unless (m != NULL);
  GError *err = NULL;
  gst_message_parse_warning (m, &err, NULL);
  fail_unless (g_str_has_suffix (err->message, "by 46 ms"), "'%s'", err->message);
  g_error_free (err);
  gst_message_unref (m);
  teardown_with_bus (h, bus);
  g_free (speech);
}

GST_END_TEST;

GST_START_TEST (test_wrong_rate_says_audioresample)
{
  /* 44.1 kHz reaching the element (a dynamic pad linked without audioresample): its own error
   * says what it needs, before upstream's generic not-negotiated */
  GstBus *bus;
  GstHarness *h = start_harness (make_element (MODEL1), NULL, &bus);
  gst_harness_play (h);
  fail_unless (gst_harness_push_event (h, gst_event_new_stream_start ("s")));
  gst_harness_push_event (h, gst_event_new_caps (gst_caps_from_string
          ("audio/x-raw,format=S16LE,rate=44100,channels=1,layout=interleaved")));
  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  gst_harness_push_event (h, gst_event_new_segment (&seg));
  fail_unless_equals_int (gst_harness_push (h, gst_buffer_new_allocate (NULL, 3200, NULL)),
      GST_FLOW_NOT_NEGOTIATED);
  GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (m != NULL, "no error from the element");
  GError *err = NULL;
  gchar *debug = NULL;
  gst_message_parse_error (m, &err, &debug);
  fail_unless (err->domain == GST_CORE_ERROR && err->code == GST_CORE_ERROR_NEGOTIATION);
  fail_unless (strstr (err->message, "audioresample") && strstr (err->message, "16 kHz"),
      "'%s'", err->message);
  fail_unless (strstr (err->message, "audioconvert") == NULL, "'%s'", err->message);
  fail_unless (debug && strstr (debug, "44100"));
  g_error_free (err);
  g_free (debug);
  gst_message_unref (m);
  teardown_with_bus (h, bus);
}

GST_END_TEST;

static Suite *
canarytranscribe_suite (void)
{
  Suite *s = suite_create ("canarytranscribe");
  TCase *tc = tcase_create ("element");

  suite_add_tcase (s, tc);
  tcase_set_timeout (tc, 600);
  tcase_add_test (tc, test_merge_rule);
  tcase_add_test (tc, test_debug_categories);
  tcase_add_test (tc, test_timestamps_no_overlap);
  tcase_add_test (tc, test_timestamps_overlap);
  tcase_add_test (tc, test_eos_flushes_partial_window);
  tcase_add_test (tc, test_short_input);
  tcase_add_test (tc, test_flush_mid_window);
  tcase_add_test (tc, test_flush_unblocks_streaming_thread);
  tcase_add_test (tc, test_discont_input);
  tcase_add_test (tc, test_discont_flag_contiguous);
  tcase_add_test (tc, test_gap_input);
  tcase_add_test (tc, test_gap_only_input);
  tcase_add_test (tc, test_silence_gives_gap);
  tcase_add_test (tc, test_s16_and_f32_agree);
  tcase_add_test (tc, test_text_equals_engine);
  tcase_add_test (tc, test_latency_query);
  tcase_add_test (tc, test_lateness_shifts_output);
  tcase_add_test (tc, test_live_behind_warning);
  tcase_add_test (tc, test_message_fields);
  tcase_add_test (tc, test_post_messages_off);
  tcase_add_test (tc, test_webvtt_output);
  tcase_add_test (tc, test_srt_output);
  tcase_add_test (tc, test_missing_model);
  tcase_add_test (tc, test_default_model_missing);
  tcase_add_test (tc, test_corrupt_model);
  tcase_add_test (tc, test_invalid_settings);
  tcase_add_test (tc, test_cuda_unavailable);
  tcase_add_test (tc, test_invalid_samples);
  tcase_add_test (tc, test_state_cycles);
  tcase_add_test (tc, test_two_instances_one_model);
  tcase_add_test (tc, test_two_minute_file);
  tcase_add_test (tc, test_bad_model_fails_paused);
  tcase_add_test (tc, test_model_path_not_regular);
  tcase_add_test (tc, test_auto_device_warns_once);
  tcase_add_test (tc, test_short_holes_filled);
  tcase_add_test (tc, test_jump_without_discont);
  tcase_add_test (tc, test_timestamps_backwards);
  tcase_add_test (tc, test_live_step_back);
  tcase_add_test (tc, test_invalid_samples_attributed);
  tcase_add_test (tc, test_lag_warning_in_ms);
  tcase_add_test (tc, test_wrong_rate_says_audioresample);
  return s;
}

GST_CHECK_MAIN (canarytranscribe);
