/* gst-canary tests — config.c: the fixtures' model_config.yaml against NeMo's own summary
 * (tests/fixtures/manifest.json), NeMo defaults for absent keys, liberal value syntax, legacy
 * layouts, and configs that must be rejected with an error naming the key.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "canary.h"
#include "formats/config.h"
#include "fixture.h"
#include "formats/tar.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

/* A Canary-2 style config shaped like the fixtures', trimmed to what the parser reads plus some
 * keys it must ignore. */
static const char base_yaml[] =
    "sample_rate: 16000\n"
    "prompt_format: canary2\n"
    "model_defaults:\n"
    "  asr_enc_hidden: 64\n"
    "tokenizer:\n"
    "  dir: null\n"
    "  type: agg\n"
    "  langs:\n"
    "    spl_tokens:\n"
    "      dir: /tmp/x/spl_tokens\n"
    "      type: bpe\n"
    "      model_path: nemo:aaaa_tokenizer.model\n"
    "    en:\n"
    "      type: bpe\n"
    "      model_path: nemo:bbbb_tokenizer.model\n"
    "    de:\n"
    "      model_path: nemo:cccc_tokenizer.model\n"
    "  custom_tokenizer:\n"
    "    _target_: nemo.collections.common.tokenizers.canary_tokenizer.CanaryTokenizer\n"
    "preprocessor:\n"
    "  _target_: nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor\n"
    "  sample_rate: 16000\n"
    "  normalize: per_feature\n"
    "  window_size: 0.025\n"
    "  window_stride: 0.01\n"
    "  window: hann\n"
    "  features: 128\n"
    "  n_fft: 512\n"
    "  log: true\n"
    "  frame_splicing: 1\n"
    "  dither: 1.0e-05\n"
    "  pad_to: 0\n"
    "encoder:\n"
    "  _target_: nemo.collections.asr.modules.ConformerEncoder\n"
    "  feat_in: 128\n"
    "  feat_out: -1\n"
    "  n_layers: 2\n"
    "  d_model: 64\n"
    "  subsampling: dw_striding\n"
    "  subsampling_factor: 8\n"
    "  subsampling_conv_channels: 32\n"
    "  causal_downsampling: false\n"
    "  reduction: null\n"
    "  ff_expansion_factor: 4\n"
    "  self_attention_model: rel_pos\n"
    "  n_heads: 8\n"
    "  att_context_size:\n"
    "  - -1\n"
    "  - -1\n"
    "  xscaling: false\n"
    "  untie_biases: true\n"
    "  conv_kernel_size: 9\n"
    "  conv_norm_type: batch_norm\n"
    "transf_decoder:\n"
    "  _target_: nemo.collections.asr.modules.transformer.get_nemo_transformer\n"
    "  config_dict:\n"
    "    max_sequence_length: 1024\n"
    "    hidden_size: 128\n"
    "    inner_size: 512\n"
    "    num_layers: 2\n"
    "    num_attention_heads: 8\n"
    "    hidden_act: relu\n"
    "    pre_ln: true\n"
    "    vocab_size: null\n"
    "head:\n"
    "  num_classes: 1552\n"
    "decoding:\n"
    "  strategy: beam\n"
    "  beam:\n"
    "    beam_size: 1\n"
    "    len_pen: 0.5\n"
    "    max_generation_delta: 50\n"
    "target: nemo.collections.asr.models.aed_multitask_models.EncDecMultiTaskModel\n"
    "nemo_version: 2.5.3\n";

static canary_config *
parse_text (const char *text, GError **err)
{
  return canary_config_parse (text, strlen (text), err);
}

/* base_yaml with the first occurrence of `old` replaced by `new` (which must exist). */
static char *
edit (const char *old, const char *new)
{
  const char *at = strstr (base_yaml, old);
  if (!at)
    g_error ("edit: '%s' is not in the base config", old);
  return g_strdup_printf ("%.*s%s%s", (int) (at - base_yaml), base_yaml, new, at + strlen (old));
}

/* =============================================================================================
 * Fixtures
 * ============================================================================================= */

/* Compares an int field when the manifest has it. */
static void
check_int (const tu_json *cfg, const char *path, int got, guint *n_checked)
{
  const tu_json *n = tu_json_path (cfg, path);
  if (!n || tu_json_is (n, TU_JSON_ARRAY) || tu_json_is (n, TU_JSON_OBJECT))
    return;
  if (!tu_json_is (n, TU_JSON_NUMBER))
    g_error ("%s: manifest value is not a number", path);
  int want = (int) tu_json_number (n);
  if (want != got)
    g_error ("%s: config.c read %d, NeMo says %d", path, got, want);
  (*n_checked)++;
}

/* Compares a string field (or a boolean, as its JSON spelling) when the manifest has it. */
static void
check_str (const tu_json *cfg, const char *path, const char *got, guint *n_checked)
{
  const tu_json *n = tu_json_path (cfg, path);
  if (!n || tu_json_is (n, TU_JSON_ARRAY) || tu_json_is (n, TU_JSON_OBJECT))
    return;
  const char *want = tu_json_is (n, TU_JSON_BOOL) ? (tu_json_bool (n) ? "true" : "false") : tu_json_string (n);
  g_assert_nonnull (want);
  g_assert_cmpstr (got, ==, want);
  (*n_checked)++;
}

/* What every fixture shares: built by tests/reference/make_fixtures.py from NeMo's templates,
 * which leave these keys out (so NeMo's defaults apply). */
static void
check_fixture_defaults (const canary_config *c)
{
  g_assert_cmpint (c->sample_rate, ==, 16000);
  g_assert_cmpint (c->n_window_size, ==, 400);
  g_assert_cmpint (c->n_window_stride, ==, 160);
  g_assert_cmpint (c->n_fft, ==, 512);
  g_assert_cmpint (c->n_mels, ==, 128);
  g_assert_cmpstr (c->window, ==, "hann");
  g_assert_cmpstr (c->normalize, ==, "per_feature");
  g_assert_cmpfloat (c->preemph, ==, 0.97);
  g_assert_cmpfloat (c->log_zero_guard_value, ==, ldexp (1.0, -24));
  g_assert_cmpstr (c->log_zero_guard_type, ==, "add");
  g_assert_cmpfloat (c->mag_power, ==, 2.0);
  g_assert_true (c->log);
  g_assert_false (c->exact_pad);
  g_assert_cmpfloat (c->pad_min_duration, ==, 1.0);
  g_assert_cmpstr (c->subsampling, ==, "dw_striding");
  g_assert_cmpstr (c->self_attention_model, ==, "rel_pos");
  g_assert_cmpstr (c->conv_norm_type, ==, "batch_norm");
  g_assert_cmpint (c->feat_out, ==, -1);
  g_assert_cmpstr (c->dec_hidden_act, ==, "relu");
  g_assert_true (c->dec_pre_ln);
  g_assert_cmpfloat (c->length_penalty, ==, 0.0);  /* len_pen is not what NeMo reads */
  g_assert_true (g_str_has_suffix (c->target, "EncDecMultiTaskModel"));
  g_assert_nonnull (c->nemo_version);
}

static void
test_fixtures (void)
{
  char *mpath = fixture_path ("manifest.json", NULL);
  tu_json *manifest = g_file_test (mpath, G_FILE_TEST_EXISTS) ? tu_json_load (mpath, NULL) : NULL;
  guint n_models = 0, n_checked = 0;
  for (gsize m = 0; m < G_N_ELEMENTS (fixture_models); m++) {
    const char *name = fixture_models[m];
    fixture_model fm;
    if (!fixture_model_open (name, &fm))
      continue;
    const canary_config *c = fm.cfg;
    check_fixture_defaults (c);
    n_models++;

    /* prompt format and tokenizer kind follow the model's name */
    gboolean unified = strstr (name, "unified") != NULL;
    g_assert_cmpint (c->prompt_format, ==, g_str_has_prefix (name, "canary2") ? CANARY_PROMPT_CANARY2 : CANARY_PROMPT_CANARY);
    g_assert_cmpint (c->tokenizer_kind, ==, unified ? CANARY_TOKENIZER_UNIFIED : CANARY_TOKENIZER_AGGREGATE);
    if (!unified) {
      const canary_tokenizer_lang *l0 = g_ptr_array_index (c->tokenizer_langs, 0);
      g_assert_cmpstr (l0->lang, ==, "spl_tokens");
      for (guint i = 0; i < c->tokenizer_langs->len; i++)
        g_assert_true (g_str_has_prefix (((canary_tokenizer_lang *) g_ptr_array_index (c->tokenizer_langs, i))->model_path,
            "nemo:"));
    } else {
      g_assert_cmpuint (c->tokenizer_langs->len, ==, 0);
      g_assert_nonnull (c->tokenizer_model_path);
    }

    const tu_json *mc = tu_json_get (tu_json_get (tu_json_get (manifest, "models"), name), "config");
    if (mc) {
      check_str (mc, "prompt_format", c->prompt_format == CANARY_PROMPT_CANARY2 ? "canary2" : "canary", &n_checked);
      check_int (mc, "encoder.n_layers", c->enc_layers, &n_checked);
      check_int (mc, "encoder.d_model", c->enc_d_model, &n_checked);
      check_int (mc, "encoder.n_heads", c->enc_heads, &n_checked);
      check_int (mc, "encoder.subsampling_factor", c->subsampling_factor, &n_checked);
      check_int (mc, "encoder.subsampling_conv_channels", c->subsampling_channels, &n_checked);
      check_int (mc, "encoder.ff_expansion_factor", c->enc_ff_expansion, &n_checked);
      check_int (mc, "encoder.conv_kernel_size", c->enc_conv_kernel, &n_checked);
      check_str (mc, "encoder.subsampling", c->subsampling, &n_checked);
      check_str (mc, "encoder.self_attention_model", c->self_attention_model, &n_checked);
      check_str (mc, "encoder.conv_norm_type", c->conv_norm_type, &n_checked);
      check_str (mc, "encoder.xscaling", c->xscaling ? "true" : "false", &n_checked);
      check_str (mc, "encoder.untie_biases", c->untie_biases ? "true" : "false", &n_checked);
      check_int (mc, "decoder.hidden_size", c->dec_hidden, &n_checked);
      check_int (mc, "decoder.inner_size", c->dec_inner, &n_checked);
      check_int (mc, "decoder.num_layers", c->dec_layers, &n_checked);
      check_int (mc, "decoder.num_attention_heads", c->dec_heads, &n_checked);
      check_int (mc, "decoder.max_sequence_length", c->dec_max_seq_len, &n_checked);
      check_str (mc, "decoder.hidden_act", c->dec_hidden_act, &n_checked);
      check_int (mc, "preprocessor.features", c->n_mels, &n_checked);
      check_int (mc, "preprocessor.n_fft", c->n_fft, &n_checked);
      check_str (mc, "preprocessor.window", c->window, &n_checked);
      check_str (mc, "preprocessor.normalize", c->normalize, &n_checked);
      check_int (mc, "decoding.beam.beam_size", c->beam_size, &n_checked);
      check_int (mc, "decoding.beam.max_generation_delta", c->max_generation_delta, &n_checked);
      check_str (mc, "tokenizer_type", unified ? "bpe" : "agg", &n_checked);
      check_int (mc, "head_num_classes", c->vocab_size, &n_checked);
      const tu_json *langs = tu_json_get (mc, "tokenizer_langs");
      if (tu_json_is (langs, TU_JSON_ARRAY)) {
        int n = (int) tu_json_length (langs);
        g_assert_cmpint (n, ==, (int) c->tokenizer_langs->len);
        for (int i = 0; i < n; i++) {
          g_assert_cmpstr (tu_json_string (tu_json_at (langs, (guint) i)), ==,
              ((canary_tokenizer_lang *) g_ptr_array_index (c->tokenizer_langs, i))->lang);
          n_checked++;
        }
      }
    }
    fixture_model_close (&fm);
  }
  tu_json_free (manifest);
  g_free (mpath);
  if (n_models == 0)
    fixture_fail_no_models ();
  else
    g_test_message ("%u models, %u fields compared with manifest.json", n_models, n_checked);
}

/* =============================================================================================
 * Synthetic configs
 * ============================================================================================= */

static void
test_base (void)
{
  GError *err = NULL;
  canary_config *c = parse_text (base_yaml, &err);
  g_assert_no_error (err);
  check_fixture_defaults (c);
  g_assert_cmpint (c->enc_layers, ==, 2);
  g_assert_cmpint (c->enc_d_model, ==, 64);
  g_assert_cmpint (c->enc_heads, ==, 8);
  g_assert_cmpint (c->enc_ff_expansion, ==, 4);
  g_assert_cmpint (c->enc_conv_kernel, ==, 9);
  g_assert_cmpint (c->subsampling_factor, ==, 8);
  g_assert_cmpint (c->subsampling_channels, ==, 32);
  g_assert_false (c->xscaling);
  g_assert_true (c->untie_biases);
  g_assert_cmpint (c->dec_layers, ==, 2);
  g_assert_cmpint (c->dec_hidden, ==, 128);
  g_assert_cmpint (c->dec_heads, ==, 8);
  g_assert_cmpint (c->dec_inner, ==, 512);
  g_assert_cmpint (c->dec_max_seq_len, ==, 1024);
  g_assert_cmpint (c->vocab_size, ==, 1552);
  g_assert_cmpint (c->beam_size, ==, 1);
  g_assert_cmpint (c->max_generation_delta, ==, 50);
  g_assert_cmpint (c->prompt_format, ==, CANARY_PROMPT_CANARY2);
  g_assert_cmpint (c->tokenizer_kind, ==, CANARY_TOKENIZER_AGGREGATE);
  g_assert_cmpuint (c->tokenizer_langs->len, ==, 3);
  const char *want_langs[] = { "spl_tokens", "en", "de" };
  const char *want_paths[] = { "nemo:aaaa_tokenizer.model", "nemo:bbbb_tokenizer.model", "nemo:cccc_tokenizer.model" };
  for (guint i = 0; i < 3; i++) {
    const canary_tokenizer_lang *l = g_ptr_array_index (c->tokenizer_langs, i);
    g_assert_cmpstr (l->lang, ==, want_langs[i]);
    g_assert_cmpstr (l->model_path, ==, want_paths[i]);
  }
  g_assert_null (c->tokenizer_model_path);
  g_assert_cmpstr (c->nemo_version, ==, "2.5.3");
  canary_config_free (c);
}

/* A config with only the keys NeMo requires: everything else takes NeMo's constructor defaults. */
static void
test_defaults (void)
{
  const char *minimal =
      "preprocessor:\n  features: 80\n"
      "encoder:\n  n_layers: 1\n  d_model: 32\n  subsampling: dw_striding\n  xscaling: false\n"
      "transf_decoder:\n  config_dict:\n    num_layers: 1\n    hidden_size: 32\n    inner_size: 64\n    pre_ln: true\n"
      "tokenizer:\n  type: bpe\n  model_path: tok.model\n";
  GError *err = NULL;
  canary_config *c = parse_text (minimal, &err);
  g_assert_no_error (err);
  g_assert_cmpint (c->sample_rate, ==, 16000);
  g_assert_cmpint (c->n_window_size, ==, 320);   /* window_size 0.02 s */
  g_assert_cmpint (c->n_window_stride, ==, 160);
  g_assert_cmpint (c->n_fft, ==, 512);           /* next power of two of 320 */
  g_assert_cmpint (c->n_mels, ==, 80);
  g_assert_cmpstr (c->window, ==, "hann");
  g_assert_cmpstr (c->normalize, ==, "per_feature");
  g_assert_cmpfloat (c->preemph, ==, 0.97);
  g_assert_cmpfloat (c->log_zero_guard_value, ==, ldexp (1.0, -24));
  g_assert_cmpstr (c->log_zero_guard_type, ==, "add");
  g_assert_cmpfloat (c->mag_power, ==, 2.0);
  g_assert_true (c->log);
  g_assert_false (c->exact_pad);
  g_assert_cmpfloat (c->pad_min_duration, ==, 1.0);
  g_assert_cmpint (c->enc_heads, ==, 4);
  g_assert_cmpint (c->enc_ff_expansion, ==, 4);
  g_assert_cmpint (c->enc_conv_kernel, ==, 31);
  g_assert_cmpint (c->subsampling_factor, ==, 4);
  g_assert_cmpint (c->subsampling_channels, ==, 32);  /* -1 → d_model */
  g_assert_true (c->untie_biases);
  g_assert_cmpint (c->feat_out, ==, -1);
  g_assert_cmpint (c->dec_heads, ==, 1);
  g_assert_cmpint (c->dec_max_seq_len, ==, 512);
  g_assert_cmpstr (c->dec_hidden_act, ==, "relu");
  g_assert_cmpint (c->vocab_size, ==, -1);
  g_assert_cmpint (c->beam_size, ==, 1);
  g_assert_cmpfloat (c->length_penalty, ==, 0.0);
  g_assert_cmpint (c->max_generation_delta, ==, -1);  /* NeMo AEDBeamInferConfig default: no cap */
  g_assert_cmpint (c->prompt_format, ==, CANARY_PROMPT_CANARY);  /* canary-1b configs predate the key */
  g_assert_cmpint (c->tokenizer_kind, ==, CANARY_TOKENIZER_UNIFIED);
  g_assert_cmpstr (c->tokenizer_model_path, ==, "tok.model");
  g_assert_null (c->target);
  g_assert_null (c->nemo_version);
  canary_config_free (c);
}

/* Values in the many spellings YAML and OmegaConf produce. */
static void
test_liberal_values (void)
{
  struct { const char *old, *new; } edits[] = {
    { "  d_model: 64\n", "  d_model: 64.0\n" },
    { "  d_model: 64\n", "  d_model: 6.4e1\n" },
    { "  d_model: 64\n", "  d_model: '64'\n" },
    { "  n_fft: 512\n", "  n_fft: null\n" },
    { "  log: true\n", "  log: True\n" },
    { "  log: true\n", "  log: yes\n" },
    { "    pre_ln: true\n", "    pre_ln: 1\n" },
    { "  num_classes: 1552\n", "  num_classes: 1552.0\n" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (edits); i++) {
    char *y = edit (edits[i].old, edits[i].new);
    GError *err = NULL;
    canary_config *c = parse_text (y, &err);
    g_assert_no_error (err);
    g_assert_cmpint (c->enc_d_model, ==, 64);
    g_assert_cmpint (c->n_fft, ==, 512);
    g_assert_true (c->log);
    g_assert_true (c->dec_pre_ln);
    g_assert_cmpint (c->vocab_size, ==, 1552);
    canary_config_free (c);
    g_free (y);
  }

  /* log_zero_guard_value as OmegaConf text, as a float, and NeMo's named guards */
  struct { const char *text; double want; } guards[] = {
    { "2**-24", 5.960464477539063e-08 }, { "'2**-24'", 5.960464477539063e-08 },
    { "5.960464477539063e-08", 5.960464477539063e-08 }, { "1e-5", 1e-5 }, { "2 ** -10", 1.0 / 1024 },
    { "tiny", 1.1754943508222875e-38 }, { "eps", 1.1920928955078125e-07 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (guards); i++) {
    char *line = g_strdup_printf ("  log: true\n  log_zero_guard_value: %s\n  preemph: 0.5\n  mag_power: 1\n"
        "  exact_pad: true\n  log_zero_guard_type: clamp\n", guards[i].text);
    char *y = edit ("  log: true\n", line);
    GError *err = NULL;
    canary_config *c = parse_text (y, &err);
    g_assert_no_error (err);
    g_assert_cmpfloat_with_epsilon (c->log_zero_guard_value, guards[i].want, guards[i].want * 1e-12);
    g_assert_cmpfloat (c->preemph, ==, 0.5);
    g_assert_cmpfloat (c->mag_power, ==, 1.0);
    g_assert_true (c->exact_pad);
    g_assert_cmpstr (c->log_zero_guard_type, ==, "clamp");
    canary_config_free (c);
    g_free (y);
    g_free (line);
  }

  /* explicit nulls that switch stages off, unlike absent keys */
  char *y = edit ("  normalize: per_feature\n", "  normalize: null\n  preemph: null\n");
  GError *err = NULL;
  canary_config *c = parse_text (y, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (c->normalize, ==, "none");
  g_assert_cmpfloat (c->preemph, ==, 0.0);
  canary_config_free (c);
  g_free (y);

  /* anchors and aliases, including an alias "bomb" that must not be expanded */
  GString *bomb = g_string_new ("lol0: &l0 [a, a, a, a, a, a, a, a, a, a]\n");
  for (int i = 1; i < 12; i++)
    g_string_append_printf (bomb, "lol%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i,
        i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
  g_string_append (bomb, base_yaml);
  c = parse_text (bomb->str, &err);
  g_assert_no_error (err);
  canary_config_free (c);
  g_string_free (bomb, TRUE);
  y = edit ("  window: hann\n", "  window: &w hann\n  features: 128\n");
  char *y2 = g_strconcat (y, "extra: *w\n", NULL);
  c = parse_text (y2, &err);
  g_assert_no_error (err);
  canary_config_free (c);
  g_free (y2);
  g_free (y);
}

/* Older layouts: decoder keys directly under transf_decoder, a `model:` wrapper, no prompt_format,
 * tokenizer type implied by `langs`, vocabulary from config_dict.vocab_size. */
static void
test_legacy_layouts (void)
{
  GError *err = NULL;
  char *y = edit ("  config_dict:\n", "  config_dict: null\n  legacy:\n");
  char *flat = g_strdup (y);
  /* un-indent the decoder keys by moving them up one level */
  GString *s = g_string_new (NULL);
  gchar **lines = g_strsplit (flat, "\n", -1);
  gboolean in_legacy = FALSE;
  for (int i = 0; lines[i]; i++) {
    if (!strcmp (lines[i], "  legacy:")) {
      in_legacy = TRUE;
      continue;
    }
    if (in_legacy && g_str_has_prefix (lines[i], "    ")) {
      g_string_append_printf (s, "%s\n", lines[i] + 2);
      continue;
    }
    in_legacy = FALSE;
    g_string_append_printf (s, "%s\n", lines[i]);
  }
  g_strfreev (lines);
  canary_config *c = parse_text (s->str, &err);
  g_assert_no_error (err);
  g_assert_cmpint (c->dec_hidden, ==, 128);
  g_assert_cmpint (c->dec_layers, ==, 2);
  canary_config_free (c);
  g_string_free (s, TRUE);
  g_free (flat);
  g_free (y);

  /* model: wrapper (training configs) */
  gchar **blines = g_strsplit (base_yaml, "\n", -1);
  GString *w = g_string_new ("name: something\nmodel:\n");
  for (int i = 0; blines[i] && *blines[i]; i++)
    g_string_append_printf (w, "  %s\n", blines[i]);
  g_strfreev (blines);
  c = parse_text (w->str, &err);
  g_assert_no_error (err);
  g_assert_cmpint (c->enc_d_model, ==, 64);
  canary_config_free (c);
  g_string_free (w, TRUE);

  /* no prompt_format, no tokenizer.type, no head: canary, aggregate, vocab from config_dict */
  y = edit ("prompt_format: canary2\n", "");
  char *y2 = g_strdup (y);
  char *p = strstr (y2, "  type: agg\n");
  memmove (p, p + 12, strlen (p + 12) + 1);
  p = strstr (y2, "head:\n  num_classes: 1552\n");
  memmove (p, p + 26, strlen (p + 26) + 1);
  p = strstr (y2, "    vocab_size: null\n");
  memcpy (p, "    vocab_size: 4128\n", 21);
  c = parse_text (y2, &err);
  g_assert_no_error (err);
  g_assert_cmpint (c->prompt_format, ==, CANARY_PROMPT_CANARY);
  g_assert_cmpint (c->tokenizer_kind, ==, CANARY_TOKENIZER_AGGREGATE);
  g_assert_cmpint (c->vocab_size, ==, 4128);
  canary_config_free (c);
  g_free (y2);
  g_free (y);

  /* unified tokenizer (canary-1b-v2 style) */
  y = edit ("  type: agg\n", "  type: bpe\n  model_path: nemo:dddd_tokenizer.model\n");
  c = parse_text (y, &err);
  g_assert_no_error (err);
  g_assert_cmpint (c->tokenizer_kind, ==, CANARY_TOKENIZER_UNIFIED);
  g_assert_cmpstr (c->tokenizer_model_path, ==, "nemo:dddd_tokenizer.model");
  g_assert_cmpuint (c->tokenizer_langs->len, ==, 0);
  canary_config_free (c);
  g_free (y);
}

typedef struct {
  const char *old, *new;       /* edit of base_yaml; old NULL → `new` is the whole document */
  canary_error_code code;
  const char *needle;          /* must appear in the message (the key, usually) */
} reject_case;

static void
test_rejects (void)
{
  static const reject_case cases[] = {
    { NULL, "- a\n- b\n", CANARY_ERROR_FORMAT, "top level" },
    { NULL, "", CANARY_ERROR_FORMAT, "empty" },
    { NULL, "just a string\n", CANARY_ERROR_FORMAT, "top level" },
    { NULL, "a: [1, 2\n", CANARY_ERROR_FORMAT, "line" },
    { NULL, "a: *nowhere\n", CANARY_ERROR_FORMAT, "alias" },
    { NULL, "\x01\x02\xff\xfe binary", CANARY_ERROR_FORMAT, NULL },
    /* an ASR model of another family: CTC has no transf_decoder */
    { "transf_decoder:\n", "decoder:\n", CANARY_ERROR_UNSUPPORTED, "transf_decoder" },
    { "target: nemo.collections.asr.models.aed_multitask_models.EncDecMultiTaskModel\n",
      "target: nemo.collections.asr.models.EncDecCTCModelBPE\n", CANARY_ERROR_UNSUPPORTED, "EncDecCTCModelBPE" },
    { "preprocessor:\n", "preprocessorx:\n", CANARY_ERROR_UNSUPPORTED, "'preprocessor'" },
    { "encoder:\n  _target_", "encoderx:\n  _target_", CANARY_ERROR_UNSUPPORTED, "'encoder'" },
    { "tokenizer:\n", "tokenizerx:\n", CANARY_ERROR_UNSUPPORTED, "'tokenizer'" },
    { "  _target_: nemo.collections.asr.modules.ConformerEncoder\n",
      "  _target_: nemo.collections.asr.modules.SqueezeformerEncoder\n", CANARY_ERROR_UNSUPPORTED, "encoder._target_" },
    { "  _target_: nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor\n",
      "  _target_: nemo.collections.asr.modules.AudioToMFCCPreprocessor\n", CANARY_ERROR_UNSUPPORTED, "preprocessor._target_" },
    /* tokenizer section problems */
    { "      type: bpe\n      model_path: nemo:bbbb_tokenizer.model\n", "      type: bpe\n",
      CANARY_ERROR_FORMAT, "tokenizer.langs.en.model_path" },
    { "  type: agg\n", "  type: wpe\n", CANARY_ERROR_UNSUPPORTED, "tokenizer.type" },
    { "  type: agg\n", "  type: bpe\n", CANARY_ERROR_FORMAT, "tokenizer.model_path" },
    { "  langs:\n", "  langs: {}\n  old_langs:\n", CANARY_ERROR_FORMAT, "tokenizer.langs" },
    { "    de:\n      model_path: nemo:cccc_tokenizer.model\n", "    de: 5\n", CANARY_ERROR_FORMAT, "tokenizer.langs" },
    /* wrong types and ranges */
    { "  d_model: 64\n", "  d_model: abc\n", CANARY_ERROR_FORMAT, "encoder.d_model" },
    { "  d_model: 64\n", "  d_model: [1, 2]\n", CANARY_ERROR_FORMAT, "encoder.d_model" },
    { "  d_model: 64\n", "  d_model: {a: 1}\n", CANARY_ERROR_FORMAT, "mapping" },
    { "  d_model: 64\n", "  d_model: 0\n", CANARY_ERROR_FORMAT, "out of range" },
    { "  d_model: 64\n", "  d_model: -64\n", CANARY_ERROR_FORMAT, "encoder.d_model" },
    { "  d_model: 64\n", "  d_model: 64.5\n", CANARY_ERROR_FORMAT, "integer" },
    { "  d_model: 64\n", "  d_model: 1e400\n", CANARY_ERROR_FORMAT, "encoder.d_model" },
    { "  d_model: 64\n", "  d_model: 99999999999\n", CANARY_ERROR_FORMAT, "out of range" },
    { "  d_model: 64\n", "  d_model: true\n", CANARY_ERROR_FORMAT, "encoder.d_model" },
    { "  d_model: 64\n", "  d_model: null\n", CANARY_ERROR_FORMAT, "encoder.d_model" },
    { "  n_layers: 2\n", "", CANARY_ERROR_FORMAT, "encoder.n_layers" },
    { "  n_heads: 8\n", "  n_heads: 7\n", CANARY_ERROR_FORMAT, "does not divide" },
    { "    num_attention_heads: 8\n", "    num_attention_heads: 3\n", CANARY_ERROR_FORMAT, "does not divide" },
    { "    hidden_size: 128\n", "", CANARY_ERROR_FORMAT, "transf_decoder.config_dict.hidden_size" },
    { "    inner_size: 512\n", "    inner_size: -1\n", CANARY_ERROR_FORMAT, "inner_size" },
    { "  conv_kernel_size: 9\n", "  conv_kernel_size: 8\n", CANARY_ERROR_FORMAT, "odd" },
    { "  features: 128\n", "  features: 80\n", CANARY_ERROR_FORMAT, "feat_in" },
    { "  n_fft: 512\n", "  n_fft: 256\n", CANARY_ERROR_FORMAT, "n_fft" },
    { "  window_size: 0.025\n", "  window_size: -1\n", CANARY_ERROR_FORMAT, "window_size" },
    { "  log: true\n", "  log: maybe\n", CANARY_ERROR_FORMAT, "boolean" },
    { "  log: true\n", "  log_zero_guard_value: 2**\n", CANARY_ERROR_FORMAT, "log_zero_guard_value" },
    { "  log: true\n", "  log_zero_guard_value: abc\n", CANARY_ERROR_FORMAT, "log_zero_guard_value" },
    { "  log: true\n", "  log_zero_guard_value: 2**2**3\n", CANARY_ERROR_FORMAT, "log_zero_guard_value" },
    { "  log: true\n", "  log_zero_guard_value: 10**400\n", CANARY_ERROR_FORMAT, "log_zero_guard_value" },
    { "  log: true\n", "  log_zero_guard_type: max\n", CANARY_ERROR_UNSUPPORTED, "log_zero_guard_type" },
    { "  frame_splicing: 1\n", "  frame_splicing: 3\n", CANARY_ERROR_FORMAT, "frame_splicing" },
    { "    beam_size: 1\n", "    beam_size: 0\n", CANARY_ERROR_FORMAT, "decoding.beam.beam_size" },
    { "    max_generation_delta: 50\n", "    max_generation_delta: -2\n", CANARY_ERROR_FORMAT, "max_generation_delta" },
    { "  num_classes: 1552\n", "  num_classes: 0\n", CANARY_ERROR_FORMAT, "head.num_classes" },
    { "encoder:\n  _target_", "encoder: [1, 2]\nunused:\n  _target_", CANARY_ERROR_FORMAT, "'encoder' must be a mapping" },
    /* architectures this engine does not run */
    { "  subsampling: dw_striding\n", "  subsampling: striding\n", CANARY_ERROR_UNSUPPORTED, "encoder.subsampling" },
    { "  subsampling_factor: 8\n", "  subsampling_factor: 6\n", CANARY_ERROR_UNSUPPORTED, "subsampling_factor" },
    { "  self_attention_model: rel_pos\n", "  self_attention_model: abs_pos\n", CANARY_ERROR_UNSUPPORTED,
      "encoder.self_attention_model" },
    { "  conv_norm_type: batch_norm\n", "  conv_norm_type: layer_norm\n", CANARY_ERROR_UNSUPPORTED, "conv_norm_type" },
    { "  - -1\n  - -1\n", "  - 70\n  - 0\n", CANARY_ERROR_UNSUPPORTED, "att_context_size" },
    { "  causal_downsampling: false\n", "  causal_downsampling: true\n", CANARY_ERROR_UNSUPPORTED, "causal" },
    { "  reduction: null\n", "  reduction: pooling\n", CANARY_ERROR_UNSUPPORTED, "reduction" },
    { "    hidden_act: relu\n", "    hidden_act: gelu\n", CANARY_ERROR_UNSUPPORTED, "hidden_act" },
    { "    pre_ln: true\n", "    pre_ln: false\n", CANARY_ERROR_UNSUPPORTED, "pre_ln" },
    { "prompt_format: canary2\n", "prompt_format: whisper\n", CANARY_ERROR_UNSUPPORTED, "prompt_format" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    char *y = cases[i].old ? edit (cases[i].old, cases[i].new) : g_strdup (cases[i].new);
    GError *err = NULL;
    canary_config *c = parse_text (y, &err);
    if (c)
      g_error ("case %zu ('%s' → '%s') was accepted", i, cases[i].old ? cases[i].old : "", cases[i].new);
    g_assert_nonnull (err);
    if (err->domain != CANARY_ERROR || err->code != (int) cases[i].code ||
        (cases[i].needle && !strstr (err->message, cases[i].needle)))
      g_error ("case %zu: got '%s' (code %d), want code %d mentioning '%s'", i, err->message, err->code,
          cases[i].code, cases[i].needle ? cases[i].needle : "");
    g_assert_true (g_str_has_prefix (err->message, "model_config.yaml: "));
    g_test_message ("%s", err->message);
    g_error_free (err);
    g_free (y);
  }
}

/* Hostile structure: deep nesting, many nodes, long scalars. Errors or success, quickly. */
static void
test_hostile (void)
{
  GError *err = NULL;
  GString *s = g_string_new ("a: ");
  for (int i = 0; i < 100000; i++)
    g_string_append_c (s, '[');
  canary_config *c = parse_text (s->str, &err);
  g_assert_null (c);
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_clear_error (&err);

  g_string_assign (s, "");
  for (int i = 0; i < 50; i++)
    g_string_append_printf (s, "%*sk:\n", i * 2, "");
  c = parse_text (s->str, &err);
  g_assert_null (c);
  g_assert_nonnull (err);
  g_clear_error (&err);

  g_string_assign (s, base_yaml);
  g_string_append (s, "junk: [");
  for (int i = 0; i < 300000; i++)
    g_string_append (s, "1,");
  g_string_append (s, "1]\n");
  c = parse_text (s->str, &err);
  g_assert_nonnull (c);  /* many nodes below the limit: fine */
  canary_config_free (c);
  g_string_assign (s, base_yaml);
  g_string_append (s, "junk: [");
  for (int i = 0; i < 1100000; i++)
    g_string_append (s, "1,");
  g_string_append (s, "1]\n");
  c = parse_text (s->str, &err);
  g_assert_null (c);
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_clear_error (&err);
  g_string_free (s, TRUE);

  /* embedded NUL and truncation at every byte of the base config: no crash, no leak */
  for (gsize cut = 0; cut < sizeof base_yaml - 1; cut += 7) {
    c = canary_config_parse (base_yaml, cut, &err);
    if (c)
      canary_config_free (c);
    g_clear_error (&err);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/fixtures", test_fixtures);
  g_test_add_func ("/config/base", test_base);
  g_test_add_func ("/config/defaults", test_defaults);
  g_test_add_func ("/config/liberal-values", test_liberal_values);
  g_test_add_func ("/config/legacy-layouts", test_legacy_layouts);
  g_test_add_func ("/config/rejects", test_rejects);
  g_test_add_func ("/config/hostile", test_hostile);
  return g_test_run ();
}
