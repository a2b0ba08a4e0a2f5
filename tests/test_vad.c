/* gst-canary — the VAD: the safetensors reader on good and bad headers, the Silero network against
 * the silero-vad package's own per-chunk probabilities (tests/fixtures/vad/, made by
 * tests/reference/make_vad_fixtures.py), and the segmenter's rules on probability sequences
 * whose segments follow from the rules by hand.
 *
 * The weights are not in the repository: meson points $CANARY_VAD_MODEL at the file that
 * tools/fetch-vad.sh fetched (as .ci/run does). Without it the network tests skip and say why;
 * the reader and segmenter tests always run.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "canary.h"
#include "canary_vad.h"
#include "formats/safetensors.h"
#include "npy.h"
#include "testutil.h"
#include "wav.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * safetensors
 */

/* A file: 8-byte header length, @header, then @data_len bytes counting up from 0. */
static GBytes *
make_file (const char *header, gsize data_len)
{
  gsize hl = strlen (header);
  GByteArray *b = g_byte_array_new ();
  guint8 len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (guint8) ((guint64) hl >> (8 * i));
  g_byte_array_append (b, len, 8);
  g_byte_array_append (b, (const guint8 *) header, hl);
  for (gsize i = 0; i < data_len; i++) {
    guint8 v = (guint8) i;
    g_byte_array_append (b, &v, 1);
  }
  return g_byte_array_free_to_bytes (b);
}

static canary_safetensors *
parse (GBytes *file, GError **err)
{
  gsize n;
  const guint8 *d = g_bytes_get_data (file, &n);
  return canary_safetensors_parse (d, n, "test.safetensors", err);
}

static void
test_safetensors_good (void)
{
  g_autoptr (GBytes) f = make_file (
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
      "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[22,22]}}", 22);
  GError *err = NULL;
  canary_safetensors *st = parse (f, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (canary_safetensors_n_tensors (st), ==, 3);
  g_assert_cmpstr (canary_safetensors_tensor_name (st, 0), ==, "a");

  const gint64 shape[2] = {2, 2};
  float *a = canary_safetensors_get_f32 (st, "a", 2, shape, &err);
  g_assert_no_error (err);
  /* bytes 0..15 little-endian: the first float is 0x03020100 */
  guint32 bits = 0x03020100u;
  float want;
  memcpy (&want, &bits, 4);
  g_assert_cmpfloat (a[0], ==, want);
  g_free (a);

  const gint64 wrong[2] = {4, 1};
  g_assert_null (canary_safetensors_get_f32 (st, "a", 2, wrong, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (err->message, "[2, 2]"));
  g_clear_error (&err);
  const gint64 three[1] = {3};
  g_assert_null (canary_safetensors_get_f32 (st, "b", 1, three, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (err->message, "F16"));
  g_clear_error (&err);
  g_assert_null (canary_safetensors_get_f32 (st, "zz", 1, three, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_assert_nonnull (strstr (err->message, "'zz' is missing"));
  g_clear_error (&err);
  canary_safetensors_free (st);
}

static void
test_safetensors_bad (void)
{
  static const struct { const char *header; gsize data; const char *expect; } cases[] = {
    {"[1,2]", 0, "not a JSON object"},
    {"{\"a\":", 0, "not JSON"},
    {"{\"a\":5}", 0, "not a JSON object"},
    {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "no dtype"},
    {"{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "shape[0]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}", 4, "overflows"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "4 bytes for a shape of 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4, "outside"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "outside"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap"},
    {"{\"__metadata__\":3}", 0, "__metadata__"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autoptr (GBytes) f = make_file (cases[i].header, cases[i].data);
    GError *err = NULL;
    g_assert_null (parse (f, &err));
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
    if (!strstr (err->message, cases[i].expect))
      g_error ("case %" G_GSIZE_FORMAT ": '%s' does not say '%s'", i, err->message, cases[i].expect);
    g_assert_nonnull (strstr (err->message, "test.safetensors"));
    g_clear_error (&err);
  }

  /* Lengths that do not fit, and a NUL inside the header. */
  static const guint8 short_file[] = {1, 0, 0};
  static const guint8 huge_len[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
  static const guint8 with_nul[] = {4, 0, 0, 0, 0, 0, 0, 0, '{', 0, ' ', '}'};
  const struct { const guint8 *d; gsize n; const char *expect; } raw[] = {
    {short_file, sizeof short_file, "too short"},
    {huge_len, sizeof huge_len, "does not fit"},
    {with_nul, sizeof with_nul, "NUL"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS (raw); i++) {
    GError *err = NULL;
    g_assert_null (canary_safetensors_parse (raw[i].d, raw[i].n, "raw", &err));
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
    g_assert_nonnull (strstr (err->message, raw[i].expect));
    g_clear_error (&err);
  }

  GError *err = NULL;
  g_assert_null (canary_safetensors_open ("/nonexistent/vad.safetensors", &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_NOT_FOUND);
  g_clear_error (&err);
  g_assert_null (canary_safetensors_open ("/tmp", &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_assert_nonnull (strstr (err->message, "not a regular file"));
  g_clear_error (&err);
}

/* ---------------------------------------------------------------------------------------------
 * The network against the package
 */

static const char *
weights_path (void)
{
  const char *p = g_getenv ("CANARY_VAD_MODEL");
  if (!p || !g_file_test (p, G_FILE_TEST_IS_REGULAR)) {
    g_test_skip ("no VAD weights: run tools/fetch-vad.sh and reconfigure (CANARY_VAD_MODEL unset)");
    return NULL;
  }
  return p;
}

/* Bound on |C − package| per chunk probability. Both run the same FP32 network and differ only
 * in summation order (tinygrad's kernels vs our loops). Per chunk, the longest sums are the STFT
 * rows and the LSTM gates (256 terms each), whose rounding error is ~√256·u ≈ 1e-6 relative
 * (u = 6e-8); the sigmoid's slope is at most 1/4. But the LSTM carries its cell state across
 * chunks, so the differences of earlier chunks are carried into later ones: measured over the
 * fixtures, the largest difference is 1.1e-5 (speech10s, after 313 chunks), the typical one
 * 1e-6. 1e-4 is 9× the largest measured and 1/5000 of the decision threshold's distance to 0 or 1:
 * a real error (a wrong weight, a wrong tap or padding) moves probabilities by 1e-2 and more. */
#define PROB_BOUND 1e-4

static void
test_network_fixtures (void)
{
  const char *path = weights_path ();
  if (!path)
    return;
  GError *err = NULL;
  canary_vad *vad = canary_vad_load (path, &err);
  g_assert_no_error (err);

  tu_json *manifest = tu_json_load (FIXTURES_DIR "/vad/manifest.json", &err);
  g_assert_no_error (err);
  const tu_json *clips = tu_json_get (manifest, "clips");
  g_assert_cmpuint (tu_json_length (clips), >=, 10);
  for (guint c = 0; c < tu_json_length (clips); c++) {
    const char *name = tu_json_key_at (clips, c);
    g_autofree char *wav = g_build_filename (FIXTURES_DIR,
        tu_json_string (tu_json_get (tu_json_at (clips, c), "audio")), NULL);
    g_autofree char *npy = g_strdup_printf (FIXTURES_DIR "/vad/%s.probs.npy", name);
    gsize n;
    int rate;
    float *x = wav_read_mono (wav, &n, &rate, &err);
    g_assert_no_error (err);
    g_assert_cmpint (rate, ==, CANARY_VAD_RATE);
    npy_array ref;
    g_assert_true (npy_load (npy, &ref, &err));
    g_assert_cmpuint (ref.numel, ==, (n + CANARY_VAD_CHUNK - 1) / CANARY_VAD_CHUNK);

    canary_vad_reset (vad);
    double worst = 0;
    guint flips = 0;
    float chunk[CANARY_VAD_CHUNK];
    for (gsize k = 0; k < ref.numel; k++) {
      gsize take = MIN (CANARY_VAD_CHUNK, n - k * CANARY_VAD_CHUNK);
      memset (chunk, 0, sizeof chunk);   /* the package pads the last chunk with zeros */
      memcpy (chunk, x + k * CANARY_VAD_CHUNK, take * sizeof (float));
      float p = canary_vad_process (vad, chunk);
      double want = npy_get_f64 (&ref, k);
      worst = MAX (worst, fabs (p - want));
      if ((p >= 0.5f) != (want >= 0.5))
        flips++;
    }
    g_test_message ("%s: %" G_GSIZE_FORMAT " chunks, max |C - package| %.2e, %u decisions differ",
        name, ref.numel, worst, flips);
    if (worst > PROB_BOUND)
      g_error ("%s: probability differs from the package's by %.3e (bound %.0e)", name, worst,
          PROB_BOUND);
    g_assert_cmpuint (flips, ==, 0);
    npy_array_clear (&ref);
    g_free (x);
  }
  tu_json_free (manifest);
  canary_vad_free (vad);
}

/* The reset forgets the stream: the same audio after another gives the same probabilities. */
static void
test_network_reset (void)
{
  const char *path = weights_path ();
  if (!path)
    return;
  GError *err = NULL;
  canary_vad *vad = canary_vad_load (path, &err);
  g_assert_no_error (err);
  gsize n;
  int rate;
  float *x = wav_read_mono (FIXTURES_DIR "/audio/speech4s.wav", &n, &rate, &err);
  g_assert_no_error (err);
  float first[8], again[8];
  for (int k = 0; k < 8; k++)
    first[k] = canary_vad_process (vad, x + k * CANARY_VAD_CHUNK);
  canary_vad_reset (vad);
  for (int k = 0; k < 8; k++)
    again[k] = canary_vad_process (vad, x + k * CANARY_VAD_CHUNK);
  g_assert_cmpmem (first, sizeof first, again, sizeof again);
  g_free (x);
  canary_vad_free (vad);
}

/* A weights file with a tensor missing or of another shape is refused by name. */
static void
test_network_bad_weights (void)
{
  const char *path = weights_path ();
  if (!path)
    return;
  gsize len;
  g_autofree char *bytes = tu_read_file (path, &len);
  GError *err = NULL;
  canary_vad *vad = canary_vad_load_bytes ((const guint8 *) bytes, len, &err);
  g_assert_no_error (err);
  canary_vad_free (vad);

  /* Rename one tensor in place (same length, so every offset stays valid). */
  static const char name[] = "\"conv3.bias\"";
  char *hit = memmem (bytes, MIN (len, 4096), name, sizeof name - 1);  /* the length prefix has NULs */
  g_assert_nonnull (hit);
  hit[5] = '9';
  g_assert_null (canary_vad_load_bytes ((const guint8 *) bytes, len, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_assert_nonnull (strstr (err->message, "conv3.bias"));
  g_clear_error (&err);

  /* Truncated: the last tensor no longer fits. */
  hit[5] = '3';
  g_assert_null (canary_vad_load_bytes ((const guint8 *) bytes, len - 100, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_clear_error (&err);

  /* The engine's model weights are not VAD weights. */
  g_assert_null (canary_vad_load (FIXTURES_DIR "/vad/manifest.json", &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_clear_error (&err);
}

/* ---------------------------------------------------------------------------------------------
 * Segmenter. Chunks of 512 samples; options in chunks so the expected positions are easy to
 * derive: min_silence 4 chunks, pad 1 chunk, min_speech 3 chunks, max_length 20 chunks.
 */

#define C CANARY_VAD_CHUNK

static void
seg_options (canary_vad_segmenter_options *o)
{
  canary_vad_segmenter_options_init (o);
  o->min_silence = 4 * C;
  o->pad = C;
  o->min_speech = 3 * C;
  o->max_length = 20 * C;
}

/* Pushes @probs; records each segment as [start, end) in chunks ×512 into @out. */
static guint
run_segmenter (canary_vad_segmenter *s, const float *probs, guint n, guint64 (*out)[2])
{
  guint k = 0;
  canary_speech_segment seg;
  for (guint i = 0; i < n; i++) {
    if (canary_vad_segmenter_push (s, probs[i], &seg)) {
      out[k][0] = seg.start;
      out[k][1] = seg.end;
      k++;
    }
  }
  return k;
}

static void
test_segmenter_basic (void)
{
  canary_vad_segmenter_options o;
  seg_options (&o);
  canary_vad_segmenter s;
  canary_vad_segmenter_init (&s, &o);
  /* silence 0-4, speech 5-10 (6 chunks; one chunk between thresholds at 8 keeps it), silence
   * 11-16: speech ends at chunk 11; the silence reaches 4 chunks when chunk 14 ends. */
  const float p[] = {0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.9f, 0.9f, 0.8f, 0.4f, 0.9f, 0.9f,
                     0.1f, 0.2f, 0.1f, 0.1f, 0.1f, 0.1f};
  guint64 segs[4][2];
  guint n = 0;
  canary_speech_segment seg;
  for (guint i = 0; i < G_N_ELEMENTS (p); i++) {
    if (canary_vad_segmenter_push (&s, p[i], &seg)) {
      g_assert_cmpuint (i, ==, 14);            /* decided as soon as the rule allows */
      segs[n][0] = seg.start;
      segs[n][1] = seg.end;
      n++;
    }
    if (i == 3)
      g_assert_cmpuint (canary_vad_segmenter_keep_from (&s), ==, 3 * C);
    if (i == 7)
      g_assert_true (canary_vad_segmenter_in_speech (&s));
  }
  g_assert_cmpuint (n, ==, 1);
  g_assert_cmpuint (segs[0][0], ==, 4 * C);     /* speech at 5, one chunk of padding */
  g_assert_cmpuint (segs[0][1], ==, 12 * C);    /* speech ends at 11, plus one chunk */
  g_assert_false (canary_vad_segmenter_in_speech (&s));
  g_assert_cmpuint (canary_vad_segmenter_keep_from (&s), ==, 16 * C);
  g_assert_false (canary_vad_segmenter_finish (&s, 17 * C, &seg));
}

static void
test_segmenter_short_and_pauses (void)
{
  canary_vad_segmenter_options o;
  seg_options (&o);
  canary_vad_segmenter s;
  canary_vad_segmenter_init (&s, &o);
  /* a 2-chunk blip (dropped: < min_speech), then speech 10-13 and 16-19 with a 2-chunk pause
   * (< min_silence: one segment), then silence. */
  float p[32];
  for (guint i = 0; i < G_N_ELEMENTS (p); i++)
    p[i] = (i == 2 || i == 3 || (i >= 10 && i <= 13) || (i >= 16 && i <= 19)) ? 0.95f : 0.05f;
  guint64 segs[4][2];
  guint n = run_segmenter (&s, p, G_N_ELEMENTS (p), segs);
  g_assert_cmpuint (n, ==, 1);
  g_assert_cmpuint (segs[0][0], ==, 9 * C);
  g_assert_cmpuint (segs[0][1], ==, 21 * C);
}

static void
test_segmenter_padding_floor (void)
{
  canary_vad_segmenter_options o;
  seg_options (&o);
  o.pad = 2 * C;
  canary_vad_segmenter s;
  canary_vad_segmenter_init (&s, &o);
  /* speech 1-4 (start padding clipped at 0), silence 5-8 closes it at [0, 7); speech again at 9
   * (the earliest it can: speech at 8 would have continued the first): its padding reaches back
   * to 7, where the first segment ends, so the two touch and never overlap. */
  float p[20];
  for (guint i = 0; i < G_N_ELEMENTS (p); i++)
    p[i] = ((i >= 1 && i <= 4) || (i >= 9 && i <= 13)) ? 0.9f : 0.1f;
  guint64 segs[4][2];
  guint n = run_segmenter (&s, p, G_N_ELEMENTS (p), segs);
  g_assert_cmpuint (n, ==, 2);
  g_assert_cmpuint (segs[0][0], ==, 0);
  g_assert_cmpuint (segs[0][1], ==, 7 * C);
  g_assert_cmpuint (segs[1][0], ==, 7 * C);
  g_assert_cmpuint (segs[1][1], ==, 16 * C);
}

static void
test_segmenter_max_length (void)
{
  canary_vad_segmenter_options o;
  seg_options (&o);
  canary_vad_segmenter s;
  canary_vad_segmenter_init (&s, &o);
  /* speech from chunk 2 on, for 60 chunks, with one quieter chunk (0.3) at 15 and one at 30.
   * The first segment starts at 1 (pad). Its second half begins at 1 + 10 = 11, where chunk 15
   * is the quietest: the split point, at its middle (15.5). It is cut when the next chunk would
   * take it past 20 chunks: after chunk 20 (end 21, 21 + 1 − 1 > 20). The second starts at 15.5
   * (no padding into the first); its second half at 25.5, where chunk 30 is the quietest; cut
   * after chunk 34 (35 + 1 − 15.5 > 20) at 30.5. The third starts at 30.5 and has no chunk below
   * threshold: cut where it stands, after chunk 49 (50 + 1 − 30.5 > 20), at 50. The last runs
   * from 50 to the end of speech (62) plus the pad. */
  float p[80];
  for (guint i = 0; i < G_N_ELEMENTS (p); i++)
    p[i] = (i >= 2 && i < 62) ? ((i == 15 || i == 30) ? 0.3f : 0.9f) : 0.05f;
  guint64 segs[8][2];
  guint n = run_segmenter (&s, p, G_N_ELEMENTS (p), segs);
  g_assert_cmpuint (n, >=, 4);
  g_assert_cmpuint (segs[0][0], ==, 1 * C);
  g_assert_cmpuint (segs[0][1], ==, 15 * C + C / 2);
  g_assert_cmpuint (segs[1][0], ==, 15 * C + C / 2);
  g_assert_cmpuint (segs[1][1], ==, 30 * C + C / 2);
  g_assert_cmpuint (segs[2][0], ==, 30 * C + C / 2);
  g_assert_cmpuint (segs[2][1], ==, 50 * C);
  /* the rest: [50, 63): speech to 62, then the pad */
  g_assert_cmpuint (segs[3][0], ==, 50 * C);
  g_assert_cmpuint (segs[3][1], ==, 63 * C);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (segs[i][1] - segs[i][0], <=, o.max_length);
}

static void
test_segmenter_finish (void)
{
  canary_vad_segmenter_options o;
  seg_options (&o);
  canary_vad_segmenter s;
  canary_vad_segmenter_init (&s, &o);
  canary_speech_segment seg;
  /* speech runs into the end of the stream, which ends mid-chunk */
  const float p[] = {0.1f, 0.1f, 0.9f, 0.9f, 0.9f, 0.9f};
  guint64 segs[2][2];
  g_assert_cmpuint (run_segmenter (&s, p, G_N_ELEMENTS (p), segs), ==, 0);
  g_assert_true (canary_vad_segmenter_finish (&s, 5 * C + 100, &seg));
  g_assert_cmpuint (seg.start, ==, 1 * C);
  g_assert_cmpuint (seg.end, ==, 5 * C + 100);
  /* and starts afresh */
  g_assert_cmpuint (canary_vad_segmenter_keep_from (&s), ==, 0);
  /* speech then 2 chunks of silence before the end: the end is the speech's plus the pad */
  const float q[] = {0.9f, 0.9f, 0.9f, 0.9f, 0.1f, 0.1f};
  g_assert_cmpuint (run_segmenter (&s, q, G_N_ELEMENTS (q), segs), ==, 0);
  g_assert_true (canary_vad_segmenter_finish (&s, 6 * C, &seg));
  g_assert_cmpuint (seg.start, ==, 0);
  g_assert_cmpuint (seg.end, ==, 5 * C);
  /* too short to keep */
  const float r[] = {0.9f, 0.9f};
  g_assert_cmpuint (run_segmenter (&s, r, G_N_ELEMENTS (r), segs), ==, 0);
  g_assert_false (canary_vad_segmenter_finish (&s, 2 * C, &seg));
}

/* Options out of range are brought into the range the rules need. */
static void
test_segmenter_options_clamped (void)
{
  canary_vad_segmenter_options o;
  canary_vad_segmenter_options_init (&o);
  g_assert_cmpfloat (o.threshold, ==, 0.5f);
  g_assert_cmpuint (o.min_silence, ==, 8000);
  o.neg_threshold = 0.9f;
  o.pad = 10 * CANARY_VAD_RATE;
  o.max_length = 0;
  canary_vad_segmenter s;
  canary_vad_segmenter_init (&s, &o);
  g_assert_cmpfloat (s.opt.neg_threshold, <=, s.opt.threshold);
  g_assert_cmpuint (s.opt.pad, ==, o.min_silence / 2);
  g_assert_cmpuint (s.opt.max_length, >=, 2 * s.opt.pad + 4 * C);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/vad/safetensors/good", test_safetensors_good);
  g_test_add_func ("/vad/safetensors/bad", test_safetensors_bad);
  g_test_add_func ("/vad/network/fixtures", test_network_fixtures);
  g_test_add_func ("/vad/network/reset", test_network_reset);
  g_test_add_func ("/vad/network/bad-weights", test_network_bad_weights);
  g_test_add_func ("/vad/segmenter/basic", test_segmenter_basic);
  g_test_add_func ("/vad/segmenter/short-and-pauses", test_segmenter_short_and_pauses);
  g_test_add_func ("/vad/segmenter/padding-floor", test_segmenter_padding_floor);
  g_test_add_func ("/vad/segmenter/max-length", test_segmenter_max_length);
  g_test_add_func ("/vad/segmenter/finish", test_segmenter_finish);
  g_test_add_func ("/vad/segmenter/options-clamped", test_segmenter_options_clamped);
  return g_test_run ();
}
