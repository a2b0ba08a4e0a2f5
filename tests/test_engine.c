/* gst-canary — end-to-end engine tests: the public API against NeMo's transcribe() outputs.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * For every fixture model x clip, canary_transcribe() on the raw WAV must give exactly the token
 * ids and text NeMo's transcribe() returned, with beam 1 (NeMo's default path) and beam 4.
 * Identity, not closeness: ids are discrete, and the fixtures record a comfortable top-1/top-2
 * logit margin, so FP32 rounding differences cannot flip a token.
 * Also: the model cache, loading an extracted directory, and errors for bad input. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "canary.h"
#include "fixture.h"
#include "npy.h"
#include "testutil.h"
#include "wav.h"

static float *
read_clip (const char *clip, gsize *n)
{
  GError *err = NULL;
  int rate = 0;
  char *name = g_strdup_printf ("%s.wav", clip);
  char *path = fixture_path ("audio", name, NULL);
  float *pcm = wav_read_mono (path, n, &rate, &err);
  g_assert_no_error (err);
  g_assert_cmpint (rate, ==, 16000);
  g_free (path);
  g_free (name);
  return pcm;
}

/* Compares a result with NeMo's `<prefix>_ids.npy` / `<prefix>_text.txt`. */
static void
assert_matches_nemo (const canary_result *r, const char *model, const char *clip, const char *prefix)
{
  npy_array ids;
  char *ids_name = g_strdup_printf ("%s_ids.npy", prefix);
  char *text_name = g_strdup_printf ("%s_text.txt", prefix);
  char *text_path = fixture_path (model, clip, text_name, NULL);
  fixture_load_npy (model, clip, ids_name, &ids);
  char *text = tu_read_file (text_path, NULL);

  gsize first_diff = 0;
  while (first_diff < ids.numel && first_diff < r->n_tokens &&
         npy_get_i64 (&ids, first_diff) == r->tokens[first_diff])
    first_diff++;
  if (first_diff != ids.numel || r->n_tokens != ids.numel)
    g_test_message ("%s/%s %s: first differing token at %zu (NeMo %zu tokens, ours %zu)", model, clip,
        prefix, first_diff, ids.numel, r->n_tokens);
  g_assert_cmpuint (r->n_tokens, ==, ids.numel);
  g_assert_cmpuint (first_diff, ==, ids.numel);
  g_assert_cmpstr (r->text, ==, text);

  g_free (text);
  g_free (text_path);
  g_free (text_name);
  g_free (ids_name);
  npy_array_clear (&ids);
}

static void
test_fixtures_match_nemo (void)
{
  g_autoptr (GPtrArray) models = fixture_list_models ();
  if (models->len == 0) {
    fixture_fail_no_models ();
    return;
  }
  for (guint i = 0; i < models->len; i++) {
    const char *model = models->pdata[i];
    GError *err = NULL;
    char *path = fixture_model_nemo (model);
    canary_model *m = canary_model_load (path, NULL, &err);
    g_assert_no_error (err);
    canary_state *st = canary_state_new (m, &err);
    g_assert_no_error (err);

    g_autoptr (GPtrArray) clips = fixture_list_clips (model, "beam1_ids.npy");
    g_assert_cmpuint (clips->len, >, 0);
    for (guint c = 0; c < clips->len; c++) {
      const char *clip = clips->pdata[c];
      gsize n;
      float *pcm = read_clip (clip, &n);
      canary_decode_options o;
      canary_decode_options_init (&o);
      for (int beam = 1; beam <= 4; beam += 3) {
        o.beam_size = beam;
        canary_result *r = canary_transcribe (st, pcm, n, &o, &err);
        g_assert_no_error (err);
        g_test_message ("%s/%s beam %d: %zu tokens, mel %.1f ms, encoder %.1f ms, decoder %.1f ms",
            model, clip, beam, r->n_tokens, r->mel_ms, r->encoder_ms, r->decoder_ms);
        assert_matches_nemo (r, model, clip, beam == 1 ? "beam1" : "beam4");
        canary_result_free (r);
      }
      /* The default options decode with the model's own beam size, as NeMo's transcribe() does
       * with the config it was saved with (1 for the tiny models, 4 for the demo model). */
      const int own = canary_model_get_info (m)->beam_size;
      if (own == 1 || own == 4) {
        canary_result *r = canary_transcribe (st, pcm, n, NULL, &err);
        g_assert_no_error (err);
        assert_matches_nemo (r, model, clip, own == 1 ? "beam1" : "beam4");
        canary_result_free (r);
      }
      g_free (pcm);
    }
    canary_state_free (st);
    canary_model_unref (m);
    g_free (path);
  }
}

static canary_model *
load_first_model (char **name_out)
{
  g_autoptr (GPtrArray) models = fixture_list_models ();
  if (models->len == 0)
    return NULL;
  GError *err = NULL;
  char *path = fixture_model_nemo (models->pdata[0]);
  canary_model *m = canary_model_load (path, NULL, &err);
  g_assert_no_error (err);
  g_free (path);
  if (name_out)
    *name_out = g_strdup (models->pdata[0]);
  return m;
}

static void
test_cache_shares_models (void)
{
  char *name = NULL;
  canary_model *a = load_first_model (&name);
  if (!a) {
    fixture_fail_no_models ();
    return;
  }
  GError *err = NULL;
  /* A different spelling of the same file hits the same cache entry. */
  char *dir_name = g_path_get_basename (fixture_dir ());
  char *other = g_strdup_printf ("%s/../%s/%s/./model.nemo", fixture_dir (), dir_name, name);
  canary_model *b = canary_model_load (other, NULL, &err);
  g_assert_no_error (err);
  g_assert_true (a == b);
  canary_model_unref (b);
  canary_model_unref (a);
  /* After the last unref the entry is gone: a new load builds a new model and works. */
  canary_model *c = canary_model_load (other, NULL, &err);
  g_assert_no_error (err);
  g_assert_nonnull (canary_model_get_info (c));
  canary_model_unref (c);
  g_free (other);
  g_free (dir_name);
  g_free (name);
}

static void
test_extracted_directory (void)
{
  char *name = NULL;
  canary_model *m = load_first_model (&name);
  if (!m) {
    fixture_fail_no_models ();
    return;
  }
  GError *err = NULL;
  char *tmp = g_dir_make_tmp ("canary-XXXXXX", &err);
  g_assert_no_error (err);
  char *nemo = fixture_model_nemo (name);
  const char *argv[] = { "tar", "-xf", nemo, "-C", tmp, NULL };
  int status = 0;
  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
          &status, &err));
  g_assert_no_error (err);
  g_assert_true (g_spawn_check_wait_status (status, NULL));

  canary_model *d = canary_model_load (tmp, NULL, &err);
  g_assert_no_error (err);
  g_assert_true (d != m);

  gsize n;
  float *pcm = read_clip ("speech4s", &n);
  canary_state *s1 = canary_state_new (m, &err), *s2 = canary_state_new (d, &err);
  g_assert_no_error (err);
  canary_result *r1 = canary_transcribe (s1, pcm, n, NULL, &err);
  g_assert_no_error (err);
  canary_result *r2 = canary_transcribe (s2, pcm, n, NULL, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (r1->text, ==, r2->text);
  canary_result_free (r1);
  canary_result_free (r2);
  canary_state_free (s1);
  canary_state_free (s2);
  canary_model_unref (d);
  canary_model_unref (m);

  const char *rm[] = { "rm", "-rf", tmp, NULL };
  g_spawn_sync (NULL, (char **) rm, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL, NULL);
  g_free (pcm);
  g_free (nemo);
  g_free (tmp);
  g_free (name);
}

static void
test_bad_model_files (void)
{
  GError *err = NULL;
  char *missing = fixture_path ("no-such-model.nemo", NULL);
  g_assert_null (canary_model_load (missing, NULL, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, "no-such-model.nemo"));
  g_clear_error (&err);

  /* A foreign file (a WAV) is not a model: a format error, never a crash. */
  char *wav = fixture_path ("audio", "speech4s.wav", NULL);
  g_assert_null (canary_model_load (wav, NULL, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_test_message ("foreign file: %s", err->message);
  g_clear_error (&err);

  g_assert_null (canary_model_load ("", NULL, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);

  /* device=cuda without a usable GPU (or without the CUDA backend) is refused with a clear device
   * error before the file is opened; with a GPU, the missing file is the error. */
  canary_model_options o;
  canary_model_options_init (&o);
  o.device = CANARY_DEVICE_CUDA;
  char *any = fixture_path ("x.nemo", NULL);
  g_assert_null (canary_model_load (any, &o, &err));
  g_assert_true (g_error_matches (err, CANARY_ERROR, CANARY_ERROR_DEVICE)
      || g_error_matches (err, CANARY_ERROR, CANARY_ERROR_NOT_FOUND));
  g_clear_error (&err);
  g_free (any);
  g_free (wav);
  g_free (missing);
}

static void
test_truncated_model (void)
{
  char *name = NULL;
  canary_model *m = load_first_model (&name);
  if (!m) {
    fixture_fail_no_models ();
    return;
  }
  canary_model_unref (m);
  GError *err = NULL;
  char *path = fixture_model_nemo (name);
  gsize len;
  char *bytes = tu_read_file (path, &len);
  /* A file of our own: meson runs test_engine and test_engine-portable in parallel. */
  char *tmp = NULL;
  int fd = g_file_open_tmp ("canary-truncated-XXXXXX.nemo", &tmp, &err);
  g_assert_no_error (err);
  close (fd);
  /* Cut inside the first header and at points inside the members (the checkpoint is the bulk of
   * the file). Cutting only the zero blocks at the very end leaves a readable archive, as tar
   * itself treats it, so that is not tried here. */
  gsize cuts[] = { 100, len / 3, len / 2, 3 * len / 4 };
  for (guint i = 0; i < G_N_ELEMENTS (cuts); i++) {
    g_assert_true (g_file_set_contents (tmp, bytes, cuts[i], &err));
    canary_model *t = canary_model_load (tmp, NULL, &err);
    g_assert_null (t);
    g_assert_nonnull (err);
    g_assert_true (err->domain == CANARY_ERROR);
    g_test_message ("cut at %zu: %s", cuts[i], err->message);
    g_clear_error (&err);
  }
  g_unlink (tmp);
  g_free (tmp);
  g_free (bytes);
  g_free (path);
  g_free (name);
}

static void
test_bad_audio_and_options (void)
{
  canary_model *m = load_first_model (NULL);
  if (!m) {
    fixture_fail_no_models ();
    return;
  }
  GError *err = NULL;
  canary_state *st = canary_state_new (m, &err);
  g_assert_no_error (err);
  float pcm[16000];
  for (int i = 0; i < 16000; i++)
    pcm[i] = 0.1f * sinf (i * 0.05f);

  pcm[1234] = NAN;
  g_assert_null (canary_transcribe (st, pcm, 16000, NULL, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO);
  g_assert_nonnull (strstr (err->message, "1234"));
  g_clear_error (&err);
  pcm[1234] = INFINITY;
  g_assert_null (canary_transcribe (st, pcm, 16000, NULL, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO);
  g_clear_error (&err);
  pcm[1234] = 0.0f;

  canary_decode_options o;
  canary_decode_options_init (&o);
  o.source_lang = "xx";
  g_assert_null (canary_transcribe (st, pcm, 16000, &o, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);
  canary_decode_options_init (&o);
  o.beam_size = -1;
  g_assert_null (canary_transcribe (st, pcm, 16000, &o, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);

  /* Empty and tiny inputs are padded to 1 s as NeMo does: a result, not an error. */
  canary_result *r = canary_transcribe (st, pcm, 0, NULL, &err);
  g_assert_no_error (err);
  g_assert_nonnull (r->text);
  canary_result_free (r);
  r = canary_transcribe (st, pcm, 1, NULL, &err);
  g_assert_no_error (err);
  canary_result_free (r);

  /* Huge amplitudes are finite: they must not crash or produce NaN-driven garbage ids. */
  for (int i = 0; i < 16000; i++)
    pcm[i] = (i & 1) ? 3e38f : -3e38f;
  g_assert_null (canary_transcribe (st, pcm, 16000, NULL, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_AUDIO);
  g_clear_error (&err);
  /* Loud but representable audio (clipping at +-8) still transcribes. */
  for (int i = 0; i < 16000; i++)
    pcm[i] = (i & 1) ? 8.0f : -8.0f;
  r = canary_transcribe (st, pcm, 16000, NULL, &err);
  g_assert_no_error (err);
  for (gsize i = 0; i < r->n_tokens; i++)
    g_assert_cmpint (r->tokens[i], <, canary_model_get_info (m)->vocab_size);
  canary_result_free (r);

  canary_state_free (st);
  canary_model_unref (m);
}

/* NeMo's beam search with a GNMT length penalty: manifest.json's probe ran canary1-tiny on
 * lead_silence with beam 4 and decoding.beam.length_penalty = 1.0 (the key NeMo reads; len_pen is
 * ignored, which the probe also records). */
static void
test_length_penalty_matches_nemo (void)
{
  char *nemo = fixture_path ("canary1-tiny", "model.nemo", NULL);
  char *manifest = fixture_path ("manifest.json", NULL);
  if (!g_file_test (nemo, G_FILE_TEST_IS_REGULAR) || !g_file_test (manifest, G_FILE_TEST_IS_REGULAR)) {
    fixture_fail_missing (g_file_test (nemo, G_FILE_TEST_IS_REGULAR) ? manifest : nemo, FIXTURE_MODELS_SCRIPT);
    g_free (nemo);
    g_free (manifest);
    return;
  }
  GError *err = NULL;
  tu_json *m = tu_json_load (manifest, &err);
  g_assert_no_error (err);
  const tu_json *probe = tu_json_get (tu_json_path (m, "probes.length_penalty"), "length_penalty=1.0");
  g_assert_nonnull (probe);
  g_assert_cmpfloat (tu_json_number (tu_json_get (probe, "generator_len_pen")), ==, 1.0);
  const tu_json *want = tu_json_get (probe, "lead_silence_beam4_ids");
  g_assert_nonnull (want);

  canary_model *model = canary_model_load (nemo, NULL, &err);
  g_assert_no_error (err);
  canary_state *st = canary_state_new (model, &err);
  g_assert_no_error (err);
  gsize n;
  float *pcm = read_clip ("lead_silence", &n);
  canary_decode_options o;
  canary_decode_options_init (&o);
  o.beam_size = 4;
  o.length_penalty = 1.0;
  canary_result *r = canary_transcribe (st, pcm, n, &o, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (r->n_tokens, ==, tu_json_length (want));
  for (guint i = 0; i < tu_json_length (want); i++)
    g_assert_cmpint (r->tokens[i], ==, tu_json_int (tu_json_at (want, i)));

  /* And it matters: without the penalty the same search ends differently (the probe's default). */
  o.length_penalty = 0.0;
  canary_result *r0 = canary_transcribe (st, pcm, n, &o, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (r0->n_tokens, !=, r->n_tokens);

  canary_result_free (r0);
  canary_result_free (r);
  g_free (pcm);
  canary_state_free (st);
  canary_model_unref (model);
  tu_json_free (m);
  g_free (nemo);
  g_free (manifest);
}

static void
test_language_lookup (void)
{
  canary_model *m = load_first_model (NULL);
  if (!m) {
    fixture_fail_no_models ();
    return;
  }
  const canary_model_info *info = canary_model_get_info (m);
  g_assert_nonnull (info->languages);
  g_assert_nonnull (info->languages[0]);
  g_assert_cmpstr (canary_model_lookup_language (m, "en"), ==, "en");
  g_assert_cmpstr (canary_model_lookup_language (m, "en-US"), ==, "en");
  g_assert_cmpstr (canary_model_lookup_language (m, "EN_gb"), ==, "en");
  g_assert_null (canary_model_lookup_language (m, "tlh"));
  g_assert_cmpint (info->vocab_size % 8, ==, 0);
  /* FP32 tensors are used in place from the mapped .nemo: the only copies are the depthwise convs
   * with BatchNorm folded in, a small fraction of the weights. */
  g_test_message ("weights %" G_GUINT64_FORMAT " bytes, copied %" G_GUINT64_FORMAT, info->weight_bytes,
      info->copied_weight_bytes);
  g_assert_cmpuint (info->weight_bytes, >, 0);
  g_assert_cmpuint (info->copied_weight_bytes * 20, <, info->weight_bytes);
  canary_model_unref (m);
}

static void
count_log (canary_log_level level, const char *message, gpointer user_data)
{
  g_atomic_int_inc ((gint *) user_data);
}

static void
test_log_callback (void)
{
  gint lines = 0;
  canary_set_log_func (count_log, &lines);
  canary_model *m = load_first_model (NULL);
  canary_set_log_func (NULL, NULL);
  if (!m) {
    fixture_fail_no_models ();
    return;
  }
  g_assert_cmpint (lines, >, 0);
  canary_model_unref (m);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/engine/fixtures-match-nemo", test_fixtures_match_nemo);
  g_test_add_func ("/engine/cache-shares-models", test_cache_shares_models);
  g_test_add_func ("/engine/extracted-directory", test_extracted_directory);
  g_test_add_func ("/engine/bad-model-files", test_bad_model_files);
  g_test_add_func ("/engine/truncated-model", test_truncated_model);
  g_test_add_func ("/engine/bad-audio-and-options", test_bad_audio_and_options);
  g_test_add_func ("/engine/length-penalty-matches-nemo", test_length_penalty_matches_nemo);
  g_test_add_func ("/engine/language-lookup", test_language_lookup);
  g_test_add_func ("/engine/log-callback", test_log_callback);
  return g_test_run ();
}
