/* gst-canary — tokenizer tests: SentencePiece .model reading, decoding and prompt encoding against
 * what sentencepiece itself does, robustness against malformed protobufs, and prompts and
 * detokenisation against what NeMo produced for the fixture models.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Ground truth:
 *   tests/fixtures/spm/expect.json     sentencepiece 0.2.3 (tests/reference/make_spm_checks.py)
 *   tests/fixtures/<model>/...         NeMo (tests/reference/make_fixtures.py)
 */
#include <string.h>

#include "canary.h"
#include "formats/config.h"
#include "fixture.h"
#include "formats/tar.h"
#include "testutil.h"
#include "text/tokenizer.h"

/* ----------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------------- */

/* A JSON int array as gint32 ids. */
static GArray *
json_ids (const tu_json *v)
{
  GArray *wide = tu_json_int_array (v);
  g_assert_nonnull (wide);
  GArray *ids = g_array_sized_new (FALSE, FALSE, sizeof (gint32), wide->len);
  for (guint i = 0; i < wide->len; i++) {
    const gint32 id = (gint32) g_array_index (wide, gint64, i);
    g_array_append_val (ids, id);
  }
  g_array_unref (wide);
  return ids;
}

static tu_json *spm_expect;  /* loaded once in main */

static canary_spm *
load_spm_fixture (const char *file)
{
  char *path = fixture_path ("spm", file, NULL);
  gsize len;
  char *data = tu_read_file (path, &len);
  GError *err = NULL;
  canary_spm *spm = canary_spm_parse ((const guint8 *) data, len, &err);
  g_assert_no_error (err);
  g_assert_nonnull (spm);
  g_free (data);
  g_free (path);
  return spm;
}

/* ----------------------------------------------------------------------------------------------
 * The JSON helper itself (shared by other tests)
 * ---------------------------------------------------------------------------------------------- */

static void
test_json (void)
{
  static const char doc[] = " {\"a\": [1, -2, 3.5e2, true, false, null], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\\u0000y\","
                            " \"o\": {\"k\": [{\"z\": 7}]}, \"a\": 0} ";
  GError *err = NULL;
  tu_json *v = tu_json_parse (doc, sizeof doc - 1, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (tu_json_length (tu_json_get (v, "a")), ==, 6);  /* first of duplicate keys */
  g_assert_cmpfloat (tu_json_number (tu_json_path (v, "a.2")), ==, 350.0);
  g_assert_true (tu_json_bool (tu_json_path (v, "a.3")));
  g_assert_true (tu_json_is (tu_json_path (v, "a.5"), TU_JSON_NULL));
  g_assert_cmpint (tu_json_int (tu_json_path (v, "o.k.0.z")), ==, 7);
  const tu_json *s = tu_json_get (v, "s");
  g_assert_cmpuint (s->len, ==, 10);
  g_assert_cmpmem (s->string, s->len, "x\xc3\xa9\xf0\x9f\x98\x80\n\0y", 10);
  g_assert_null (tu_json_int_array (tu_json_get (v, "a")));  /* 3.5e2 fine, but true is no int */
  tu_json_free (v);

  static const char *const bad[] = { "", "[1,]", "{\"a\" 1}", "[01]", "\"\\ud800\"", "\"a", "[1] x",
    "{\"a\":tru}", "\"\x01\"", "[-]", "\"\xff\"", NULL };
  for (const char *const *b = bad; *b; b++) {
    v = tu_json_parse (*b, strlen (*b), &err);
    g_assert_null (v);
    g_assert_error (err, G_MARKUP_ERROR, G_MARKUP_ERROR_PARSE);
    g_clear_error (&err);
  }
  GString *deep = g_string_new (NULL);
  for (int i = 0; i < TU_JSON_MAX_DEPTH + 2; i++)
    g_string_append_c (deep, '[');
  v = tu_json_parse (deep->str, deep->len, &err);
  g_assert_null (v);
  g_assert_error (err, G_MARKUP_ERROR, G_MARKUP_ERROR_PARSE);
  g_clear_error (&err);
  g_string_free (deep, TRUE);
}

/* ----------------------------------------------------------------------------------------------
 * SentencePiece models trained by make_spm_checks.py, against sentencepiece's own answers
 * ---------------------------------------------------------------------------------------------- */

static void
test_spm_fields (void)
{
  const tu_json *models = tu_json_get (spm_expect, "models");
  g_assert_cmpuint (tu_json_length (models), >, 0);
  for (guint m = 0; m < tu_json_length (models); m++) {
    const tu_json *e = tu_json_at (models, m);
    canary_spm *spm = load_spm_fixture (tu_json_string (tu_json_get (e, "file")));
    const tu_json *pieces = tu_json_get (e, "pieces");

    g_test_message ("%s", tu_json_string (tu_json_get (e, "file")));
    g_assert_cmpuint (spm->n_pieces, ==, tu_json_length (pieces));
    for (guint i = 0; i < spm->n_pieces; i++) {
      const tu_json *p = tu_json_at (pieces, i);
      g_assert_cmpstr (spm->pieces[i], ==, tu_json_string (tu_json_at (p, 0)));
      g_assert_cmpfloat (spm->scores[i], ==, (float) tu_json_number (tu_json_at (p, 1)));
      g_assert_cmpint (spm->types[i], ==, tu_json_int (tu_json_at (p, 2)));
    }
    g_assert_null (spm->pieces[spm->n_pieces]);

    /* piece → id: the piece's own index, except where sentencepiece answers otherwise. */
    const tu_json *lookup = tu_json_get (e, "lookup");
    for (guint i = 0; i < spm->n_pieces; i++) {
      int want = (int) i;
      for (guint k = 0; k < tu_json_length (lookup); k++) {
        const tu_json *l = tu_json_at (lookup, k);
        if (strcmp (tu_json_string (tu_json_at (l, 0)), spm->pieces[i]) == 0)
          want = (int) tu_json_int (tu_json_at (l, 1));
      }
      g_assert_cmpint (canary_spm_piece_to_id (spm, spm->pieces[i]), ==, want);
    }
    g_assert_cmpint (canary_spm_piece_to_id (spm, "no such piece \xe2\x96\x81"), ==, -1);
    g_assert_cmpint (canary_spm_piece_to_id (spm, NULL), ==, -1);

    const tu_json *ts = tu_json_get (e, "trainer_spec"), *ns = tu_json_get (e, "normalizer_spec");
    g_assert_cmpint (spm->model_type, ==, tu_json_int (tu_json_get (ts, "model_type")));
    g_assert_cmpint (spm->vocab_size, ==, tu_json_int (tu_json_get (ts, "vocab_size")));
    g_assert_cmpint (spm->byte_fallback, ==, tu_json_bool (tu_json_get (ts, "byte_fallback")));
    g_assert_cmpint (spm->bos_id, ==, tu_json_int (tu_json_get (ts, "bos_id")));
    g_assert_cmpint (spm->eos_id, ==, tu_json_int (tu_json_get (ts, "eos_id")));
    g_assert_cmpint (spm->pad_id, ==, tu_json_int (tu_json_get (ts, "pad_id")));
    g_assert_cmpstr (spm->unk_surface, ==, tu_json_string (tu_json_get (ts, "unk_surface")));
    g_assert_cmpint (spm->treat_whitespace_as_suffix, ==,
        tu_json_bool (tu_json_get (ts, "treat_whitespace_as_suffix")));
    g_assert_cmpint (spm->add_dummy_prefix, ==, tu_json_bool (tu_json_get (ns, "add_dummy_prefix")));
    g_assert_cmpint (spm->remove_extra_whitespaces, ==,
        tu_json_bool (tu_json_get (ns, "remove_extra_whitespaces")));
    g_assert_cmpint (spm->escape_whitespaces, ==, tu_json_bool (tu_json_get (ns, "escape_whitespaces")));
    g_assert_cmpint (spm->unk_id, ==, tu_json_int (tu_json_get (e, "unk_id")));
    g_assert_false (spm->has_denormalizer);
    canary_spm_free (spm);
  }
}

/* Our decode returns a C string, so a decoded U+0000 is dropped (documented in spm.c). */
static char *
without_nuls (const tu_json *s)
{
  GString *out = g_string_new (NULL);
  for (gsize i = 0; i < s->len; i++)
    if (s->string[i])
      g_string_append_c (out, s->string[i]);
  return g_string_free (out, FALSE);
}

static void
test_spm_decode (void)
{
  const tu_json *models = tu_json_get (spm_expect, "models");
  guint n_cases = 0;
  for (guint m = 0; m < tu_json_length (models); m++) {
    const tu_json *e = tu_json_at (models, m);
    canary_spm *spm = load_spm_fixture (tu_json_string (tu_json_get (e, "file")));
    const tu_json *cases = tu_json_get (e, "decode");
    for (guint c = 0; c < tu_json_length (cases); c++, n_cases++) {
      GArray *ids = json_ids (tu_json_get (tu_json_at (cases, c), "ids"));
      char *want = without_nuls (tu_json_get (tu_json_at (cases, c), "text"));
      char *got = canary_spm_decode (spm, (const gint32 *) (void *) ids->data, ids->len);
      if (strcmp (got, want) != 0)
        g_test_message ("%s case %u", tu_json_string (tu_json_get (e, "file")), c);
      g_assert_cmpstr (got, ==, want);
      g_free (got);
      g_free (want);
      g_array_unref (ids);
    }
    /* Out-of-range ids render as nothing (sentencepiece would raise). */
    const gint32 odd[] = { -1, (gint32) spm->n_pieces, G_MAXINT32, G_MININT32 };
    char *text = canary_spm_decode (spm, odd, G_N_ELEMENTS (odd));
    g_assert_cmpstr (text, ==, "");
    g_free (text);
    canary_spm_free (spm);
  }
  g_assert_cmpuint (n_cases, >, 300);
}

static void
test_spm_encode_symbols (void)
{
  const tu_json *models = tu_json_get (spm_expect, "models");
  for (guint m = 0; m < tu_json_length (models); m++) {
    const tu_json *e = tu_json_at (models, m);
    canary_spm *spm = load_spm_fixture (tu_json_string (tu_json_get (e, "file")));
    const tu_json *cases = tu_json_get (e, "encode");
    for (guint c = 0; c < tu_json_length (cases); c++) {
      const tu_json *k = tu_json_at (cases, c);
      GArray *want = json_ids (tu_json_get (k, "ids"));
      GArray *got = g_array_new (FALSE, FALSE, sizeof (gint32));
      GError *err = NULL;
      g_assert_true (canary_spm_encode_symbols (spm, tu_json_string (tu_json_get (k, "text")), got, &err));
      g_assert_no_error (err);
      assert_ids_equal (got, want, tu_json_string (tu_json_get (k, "text")));
      g_array_unref (got);
      g_array_unref (want);
    }

    /* Text that is not made of user-defined symbols is refused, and `out` is left as it was. */
    static const char *const refused[] = { "hello", "<|en|>x", "<|nosuch|>", "<|en|", " <|en|>", NULL };
    for (const char *const *r = refused; *r; r++) {
      GArray *out = g_array_new (FALSE, FALSE, sizeof (gint32));
      const gint32 keep = 42;
      g_array_append_val (out, keep);
      GError *err = NULL;
      g_assert_false (canary_spm_encode_symbols (spm, *r, out, &err));
      g_assert_error (err, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED);
      g_assert_cmpuint (out->len, ==, 1);
      g_clear_error (&err);
      g_array_unref (out);
    }
    canary_spm_free (spm);
  }
}

/* ----------------------------------------------------------------------------------------------
 * Malformed input. A tiny protobuf writer builds the cases.
 * ---------------------------------------------------------------------------------------------- */

static void
pbw_varint (GByteArray *b, guint64 v)
{
  do {
    guint8 c = (guint8) (v & 0x7f);
    v >>= 7;
    if (v)
      c |= 0x80;
    g_byte_array_append (b, &c, 1);
  } while (v);
}

static void
pbw_key (GByteArray *b, guint field, guint wire)
{
  pbw_varint (b, (guint64) field << 3 | wire);
}

static void
pbw_uint (GByteArray *b, guint field, guint64 v)
{
  pbw_key (b, field, 0);
  pbw_varint (b, v);
}

static void
pbw_bytes (GByteArray *b, guint field, const void *data, gsize n)
{
  pbw_key (b, field, 2);
  pbw_varint (b, n);
  g_byte_array_append (b, data, (guint) n);
}

static void
pbw_msg (GByteArray *b, guint field, GByteArray *msg)
{
  pbw_bytes (b, field, msg->data, msg->len);
  g_byte_array_unref (msg);
}

static void
pbw_fixed32 (GByteArray *b, guint field, guint32 v)
{
  const guint8 le[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };
  pbw_key (b, field, 5);
  g_byte_array_append (b, le, 4);
}

static GByteArray *
pbw_piece (const char *piece, int type)
{
  GByteArray *m = g_byte_array_new ();
  pbw_bytes (m, 1, piece, strlen (piece));
  pbw_fixed32 (m, 2, 0x3f800000u);  /* 1.0f */
  if (type != CANARY_PIECE_NORMAL)
    pbw_uint (m, 3, (guint64) type);
  return m;
}

/* A small valid model: <unk> ▁ a <|en|> + trainer_spec (bpe) + normalizer_spec. */
static GByteArray *
minimal_model (void)
{
  GByteArray *b = g_byte_array_new ();
  pbw_msg (b, 1, pbw_piece ("<unk>", CANARY_PIECE_UNKNOWN));
  pbw_msg (b, 1, pbw_piece ("\xe2\x96\x81", CANARY_PIECE_NORMAL));
  pbw_msg (b, 1, pbw_piece ("a", CANARY_PIECE_NORMAL));
  pbw_msg (b, 1, pbw_piece ("<|en|>", CANARY_PIECE_USER_DEFINED));
  GByteArray *ts = g_byte_array_new ();
  pbw_uint (ts, 3, 2);
  pbw_msg (b, 2, ts);
  GByteArray *ns = g_byte_array_new ();
  pbw_bytes (ns, 1, "identity", 8);
  pbw_msg (b, 3, ns);
  return b;
}

/* Parses bytes copied into an exact-size heap block, so valgrind/ASan see any over-read. */
static canary_spm *
parse_exact (const guint8 *data, gsize len, GError **err)
{
  guint8 *copy = g_memdup2 (data, len);
  canary_spm *spm = canary_spm_parse (copy ? copy : (const guint8 *) "", len, err);
  g_free (copy);
  return spm;
}

static void
test_spm_minimal (void)
{
  GByteArray *b = minimal_model ();
  GError *err = NULL;
  canary_spm *spm = parse_exact (b->data, b->len, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (spm->n_pieces, ==, 4);
  g_assert_cmpfloat (spm->scores[1], ==, 1.0f);
  g_assert_cmpint (spm->model_type, ==, 2);
  g_assert_cmpint (spm->unk_id, ==, 0);
  g_assert_cmpint (spm->pad_id, ==, -1);  /* proto default */
  g_assert_true (spm->add_dummy_prefix);
  g_assert_cmpint (canary_spm_piece_to_id (spm, "<|en|>"), ==, 3);
  const gint32 ids[] = { 1, 3, 1, 2 };
  char *text = canary_spm_decode (spm, ids, 4);
  g_assert_cmpstr (text, ==, "<|en|> a");
  g_free (text);
  canary_spm_free (spm);
  g_byte_array_unref (b);
}

/* Every field type we do not read is skipped, at every nesting level; negative int32 values
 * (10-byte varints) and repeated trainer_spec messages (merged) read as protobuf defines. */
static void
test_spm_unknown_fields_and_merge (void)
{
  GByteArray *b = g_byte_array_new ();
  GByteArray *p = pbw_piece ("<unk>", CANARY_PIECE_UNKNOWN);
  pbw_uint (p, 200, 5);
  pbw_key (p, 201, 1);
  g_byte_array_append (p, (const guint8 *) "12345678", 8);
  pbw_fixed32 (p, 202, 7);
  pbw_bytes (p, 203, "zz", 2);
  pbw_msg (b, 1, p);
  pbw_msg (b, 1, pbw_piece ("b", CANARY_PIECE_NORMAL));
  pbw_uint (b, 99, 1);
  pbw_key (b, 98, 1);
  g_byte_array_append (b, (const guint8 *) "abcdefgh", 8);
  pbw_fixed32 (b, 97, 1);
  pbw_bytes (b, 4, "self-test", 9);  /* self_test_data */
  GByteArray *ts = g_byte_array_new ();
  pbw_uint (ts, 3, 1);
  pbw_uint (ts, 4, 1234);
  pbw_uint (ts, 43, G_MAXUINT64);  /* pad_id = -1 as a sign-extended varint */
  pbw_uint (ts, 41, (guint64) (gint64) -7);
  pbw_bytes (ts, 2, "prefix", 6);
  pbw_fixed32 (ts, 10, 0);
  pbw_msg (b, 2, ts);
  ts = g_byte_array_new ();
  pbw_uint (ts, 3, 2);  /* second trainer_spec: only model_type changes */
  pbw_bytes (ts, 44, "<?>", 3);
  pbw_msg (b, 2, ts);
  GByteArray *ns = g_byte_array_new ();
  pbw_uint (ns, 3, 0);
  pbw_bytes (ns, 2, "\x01\x02\x03", 3);
  pbw_uint (ns, 300, 1);
  pbw_msg (b, 3, ns);
  ns = g_byte_array_new ();
  pbw_uint (ns, 3, 1);  /* denormalizer flags are not the normalizer's */
  pbw_msg (b, 5, ns);

  GError *err = NULL;
  canary_spm *spm = parse_exact (b->data, b->len, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (spm->n_pieces, ==, 2);
  g_assert_cmpint (spm->model_type, ==, 2);
  g_assert_cmpint (spm->vocab_size, ==, 1234);
  g_assert_cmpint (spm->pad_id, ==, -1);
  g_assert_cmpint (spm->bos_id, ==, -7);
  g_assert_cmpstr (spm->unk_surface, ==, "<?>");
  g_assert_false (spm->add_dummy_prefix);
  g_assert_false (spm->has_denormalizer);  /* flags only, no rules */
  const gint32 ids[] = { 0, 1 };
  char *text = canary_spm_decode (spm, ids, 2);
  g_assert_cmpstr (text, ==, "<?>b");
  g_free (text);
  canary_spm_free (spm);
  g_byte_array_unref (b);
}

typedef struct {
  const char *name;
  GByteArray *(*build) (void);
  const char *message_part;  /* must appear in the error message */
} bad_case;

static GByteArray *
cat (GByteArray *b, const void *data, gsize n)
{
  g_byte_array_append (b, data, (guint) n);
  return b;
}

static GByteArray *bad_varint_long (void) { return cat (minimal_model (), "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11); }
static GByteArray *bad_varint_wide (void) { return cat (minimal_model (), "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11); }
static GByteArray *bad_varint_cut (void) { return cat (minimal_model (), "\x08\xff\xff", 3); }
static GByteArray *bad_key_cut (void) { return cat (minimal_model (), "\x80", 1); }
static GByteArray *bad_wire_group (void) { return cat (minimal_model (), "\x0b", 1); }
static GByteArray *bad_wire_group_end (void) { return cat (minimal_model (), "\x0c", 1); }
static GByteArray *bad_wire_6 (void) { return cat (minimal_model (), "\x0e\x00", 2); }
static GByteArray *bad_wire_7 (void) { return cat (minimal_model (), "\x0f\x00", 2); }
static GByteArray *bad_field_zero (void) { return cat (minimal_model (), "\x00\x00", 2); }
static GByteArray *bad_field_huge (void) { return cat (minimal_model (), "\xf8\xff\xff\xff\x7f\x00", 6); }
static GByteArray *bad_len_past_end (void) { return cat (minimal_model (), "\x0a\x64\x0a\x01\x61", 5); }
static GByteArray *bad_len_huge (void) { return cat (minimal_model (), "\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10); }
static GByteArray *bad_fixed64_cut (void) { return cat (minimal_model (), "\x91\x06\x01\x02\x03", 5); }

static GByteArray *
bad_fixed32_cut_in_piece (void)
{
  GByteArray *b = minimal_model ();
  return cat (b, "\x0a\x05\x0a\x01\x62\x15\x00", 7);  /* piece "b", score with 1 byte left */
}

static GByteArray *
bad_nested_len (void)
{
  GByteArray *b = minimal_model ();
  return cat (b, "\x0a\x03\x0a\x05\x62", 5);  /* piece message whose string claims 5 of 1 bytes */
}

static GByteArray *
bad_trainer_varint (void)
{
  GByteArray *b = minimal_model ();
  return cat (b, "\x12\x02\x18\xff", 4);  /* trainer_spec.model_type varint cut by the message end */
}

static GByteArray *
wire_type_for (guint field, guint wire, gboolean in_piece)
{
  GByteArray *b = minimal_model ();
  GByteArray *m = g_byte_array_new ();
  if (in_piece)
    pbw_bytes (m, 1, "q", 1);
  pbw_key (m, field, wire);
  if (wire == 0)
    pbw_varint (m, 1);
  else if (wire == 2)
    pbw_varint (m, 0);
  else
    g_byte_array_append (m, (const guint8 *) "\0\0\0\0", 4);
  pbw_msg (b, in_piece ? 1 : 2, m);
  return b;
}

static GByteArray *bad_piece_type_wire (void) { return wire_type_for (3, 2, TRUE); }
static GByteArray *bad_piece_score_wire (void) { return wire_type_for (2, 0, TRUE); }
static GByteArray *bad_piece_piece_wire (void) { return wire_type_for (1, 5, TRUE); }
static GByteArray *bad_trainer_wire (void) { return wire_type_for (35, 2, FALSE); }
static GByteArray *bad_trainer_surface_wire (void) { return wire_type_for (44, 0, FALSE); }

static GByteArray *
bad_top_wire (void)
{
  GByteArray *b = minimal_model ();
  pbw_uint (b, 2, 1);  /* trainer_spec as a varint */
  return b;
}

static GByteArray *
bad_normalizer_wire (void)
{
  GByteArray *b = minimal_model ();
  GByteArray *ns = g_byte_array_new ();
  pbw_bytes (ns, 3, "", 0);
  pbw_msg (b, 3, ns);
  return b;
}

static GByteArray *
with_piece (GByteArray *piece)
{
  GByteArray *b = minimal_model ();
  pbw_msg (b, 1, piece);
  return b;
}

static GByteArray *bad_empty_piece (void) { return with_piece (pbw_piece ("", CANARY_PIECE_NORMAL)); }
static GByteArray *bad_utf8_piece (void) { return with_piece (pbw_piece ("\xc3(", CANARY_PIECE_NORMAL)); }
static GByteArray *bad_type_7 (void) { return with_piece (pbw_piece ("q", 7)); }
static GByteArray *bad_type_0 (void) { return with_piece (pbw_piece ("q", 0)); }
static GByteArray *bad_duplicate (void) { return with_piece (pbw_piece ("a", CANARY_PIECE_USER_DEFINED)); }
static GByteArray *bad_second_unk (void) { return with_piece (pbw_piece ("<unk2>", CANARY_PIECE_UNKNOWN)); }
static GByteArray *bad_byte_without_fallback (void) { return with_piece (pbw_piece ("<0x41>", CANARY_PIECE_BYTE)); }

static GByteArray *
bad_nul_piece (void)
{
  GByteArray *p = g_byte_array_new ();
  pbw_bytes (p, 1, "a\0b", 3);
  return with_piece (p);
}

static GByteArray *
bad_no_unk (void)
{
  GByteArray *b = g_byte_array_new ();
  pbw_msg (b, 1, pbw_piece ("a", CANARY_PIECE_NORMAL));
  return b;
}

static GByteArray *
bad_empty_input (void)
{
  return g_byte_array_new ();
}

/* byte_fallback with the byte pieces listed in `names` (NULL-terminated) after <unk>. */
static GByteArray *
byte_model (const char *const *names)
{
  GByteArray *b = g_byte_array_new ();
  pbw_msg (b, 1, pbw_piece ("<unk>", CANARY_PIECE_UNKNOWN));
  for (const char *const *n = names; *n; n++)
    pbw_msg (b, 1, pbw_piece (*n, CANARY_PIECE_BYTE));
  GByteArray *ts = g_byte_array_new ();
  pbw_uint (ts, 35, 1);
  pbw_msg (b, 2, ts);
  return b;
}

static GByteArray *
bad_missing_bytes (void)
{
  static const char *const names[] = { "<0x00>", "<0x01>", NULL };
  return byte_model (names);
}

static GByteArray *
bad_byte_name (void)
{
  static const char *const names[] = { "<0x0a>", NULL };  /* sentencepiece writes upper case */
  return byte_model (names);
}

static const bad_case bad_cases[] = {
  { "varint longer than 10 bytes", bad_varint_long, "field key: varint longer than 10 bytes" },
  { "varint wider than 64 bits", bad_varint_wide, "varint value: varint longer than 10 bytes or wider" },
  { "varint cut", bad_varint_cut, "truncated" },
  { "key cut", bad_key_cut, "truncated" },
  { "group start", bad_wire_group, "group" },
  { "group end", bad_wire_group_end, "group" },
  { "wire type 6", bad_wire_6, "invalid wire type 6" },
  { "wire type 7", bad_wire_7, "invalid wire type 7" },
  { "field 0", bad_field_zero, "out of range" },
  { "field 2^29+", bad_field_huge, "out of range" },
  { "length past end", bad_len_past_end, "runs past the end" },
  { "length 2^63", bad_len_huge, "runs past the end" },
  { "fixed64 cut", bad_fixed64_cut, "fixed64" },
  { "fixed32 cut", bad_fixed32_cut_in_piece, "ModelProto.pieces[4]" },
  { "nested length", bad_nested_len, "ModelProto.pieces[4]" },
  { "trainer varint cut", bad_trainer_varint, "ModelProto.trainer_spec" },
  { "piece.type as bytes", bad_piece_type_wire, "type (field 3)" },
  { "piece.score as varint", bad_piece_score_wire, "score (field 2)" },
  { "piece.piece as fixed32", bad_piece_piece_wire, "piece (field 1)" },
  { "byte_fallback as bytes", bad_trainer_wire, "byte_fallback (field 35)" },
  { "unk_surface as varint", bad_trainer_surface_wire, "unk_surface (field 44)" },
  { "trainer_spec as varint", bad_top_wire, "trainer_spec (field 2)" },
  { "add_dummy_prefix as bytes", bad_normalizer_wire, "add_dummy_prefix (field 3)" },
  { "empty piece", bad_empty_piece, "must not be empty" },
  { "invalid UTF-8 piece", bad_utf8_piece, "UTF-8" },
  { "NUL in piece", bad_nul_piece, "UTF-8" },
  { "type 7", bad_type_7, "not a piece type" },
  { "type 0", bad_type_0, "not a piece type" },
  { "duplicate piece", bad_duplicate, "already defined" },
  { "second <unk>", bad_second_unk, "second UNKNOWN" },
  { "no <unk>", bad_no_unk, "no UNKNOWN" },
  { "empty input", bad_empty_input, "no UNKNOWN" },
  { "byte piece without byte_fallback", bad_byte_without_fallback, "byte_fallback" },
  { "byte_fallback without 256 bytes", bad_missing_bytes, "256" },
  { "byte piece name", bad_byte_name, "<0xNN>" },
};

static void
test_spm_malformed (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (bad_cases); i++) {
    GByteArray *b = bad_cases[i].build ();
    GError *err = NULL;
    canary_spm *spm = parse_exact (b->data, b->len, &err);
    if (spm || !err || !strstr (err->message, bad_cases[i].message_part))
      g_test_message ("case \"%s\": %s", bad_cases[i].name, err ? err->message : "(parsed)");
    g_assert_null (spm);
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
    g_assert_nonnull (strstr (err->message, bad_cases[i].message_part));
    g_clear_error (&err);
    g_byte_array_unref (b);
  }
}

/* The reserved piece wins a lookup when a string is both a normal and a reserved piece (as in
 * sentencepiece), while decoding goes by each id's own type (see unigram_dupe in expect.json). */
static void
test_spm_reserved_precedence (void)
{
  GByteArray *b = minimal_model ();
  pbw_msg (b, 1, pbw_piece ("<s>", CANARY_PIECE_NORMAL));
  pbw_msg (b, 1, pbw_piece ("<s>", CANARY_PIECE_CONTROL));
  GError *err = NULL;
  canary_spm *spm = parse_exact (b->data, b->len, &err);
  g_assert_no_error (err);
  g_assert_cmpint (canary_spm_piece_to_id (spm, "<s>"), ==, 5);
  canary_spm_free (spm);
  g_byte_array_unref (b);
}

/* Every prefix of a real model: an error (CANARY_ERROR_FORMAT) or, when the cut falls on a field
 * boundary, a valid smaller model — never a crash or an over-read. */
static void
test_spm_truncated (void)
{
  static const char *const files[] = { "bpe_bf.model", "unigram_keepws.model" };
  for (guint f = 0; f < G_N_ELEMENTS (files); f++) {
    char *path = fixture_path ("spm", files[f], NULL);
    gsize len;
    char *data = tu_read_file (path, &len);
    guint n_ok = 0;
    for (gsize cut = 0; cut < len; cut++) {
      GError *err = NULL;
      canary_spm *spm = parse_exact ((const guint8 *) data, cut, &err);
      if (spm) {
        g_assert_no_error (err);
        n_ok++;
        canary_spm_free (spm);
      } else {
        g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
        g_clear_error (&err);
      }
    }
    /* Pieces come first in the file; a cut after a whole piece parses only while no byte piece
     * (which needs trainer_spec.byte_fallback, stored later) has been read. Most cuts fail. */
    g_assert_cmpuint (n_ok, <, len / 4);
    g_free (data);
    g_free (path);
  }
}

/* Random byte flips, insertions and deletions over a real model: no crash, errors well-formed. */
static void
test_spm_mutated (void)
{
  char *path = fixture_path ("spm", "bpe_nodummy.model", NULL);
  gsize len;
  char *data = tu_read_file (path, &len);
  GRand *rng = g_rand_new_with_seed (1234);
  guint n_err = 0;
  const guint n_iter = g_test_slow () ? 200000 : 5000;

  for (guint it = 0; it < n_iter; it++) {
    GByteArray *b = g_byte_array_new ();
    g_byte_array_append (b, (const guint8 *) data, (guint) len);
    const guint n_mut = (guint) g_rand_int_range (rng, 1, 5);
    for (guint k = 0; k < n_mut && b->len > 0; k++) {
      const guint pos = (guint) g_rand_int_range (rng, 0, (gint32) b->len);
      switch (g_rand_int_range (rng, 0, 3)) {
        case 0:
          b->data[pos] = (guint8) g_rand_int_range (rng, 0, 256);
          break;
        case 1:
          g_byte_array_remove_index (b, pos);
          break;
        default:
          g_byte_array_set_size (b, b->len + 1);
          memmove (b->data + pos + 1, b->data + pos, b->len - 1 - pos);
          b->data[pos] = (guint8) g_rand_int_range (rng, 0, 256);
      }
    }
    GError *err = NULL;
    canary_spm *spm = parse_exact (b->data, b->len, &err);
    if (spm) {
      /* Whatever parses must also decode and look up safely. */
      gint32 ids[16];
      for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
        ids[i] = g_rand_int_range (rng, -2, (gint32) spm->n_pieces + 2);
      g_free (canary_spm_decode (spm, ids, G_N_ELEMENTS (ids)));
      canary_spm_free (spm);
    } else {
      g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
      g_clear_error (&err);
      n_err++;
    }
    g_byte_array_unref (b);
  }
  g_assert_cmpuint (n_err, >, 0);
  g_rand_free (rng);
  g_free (data);
  g_free (path);
}

/* ----------------------------------------------------------------------------------------------
 * Tokenizers over the sentencepiece test models (no NeMo fixture needed): the directory
 * fixture_dir()/spm serves as an extracted archive, the config is written by hand.
 * ---------------------------------------------------------------------------------------------- */

static const tu_json *
spm_expect_model (const char *file)
{
  const tu_json *models = tu_json_get (spm_expect, "models");
  for (guint m = 0; m < tu_json_length (models); m++)
    if (g_strcmp0 (tu_json_string (tu_json_get (tu_json_at (models, m), "file")), file) == 0)
      return tu_json_at (models, m);
  g_assert_not_reached ();
}

static canary_tokenizer *
synthetic_tokenizer (canary_archive *ar, canary_tokenizer_kind kind, const char *const *langs,
    GError **error)
{
  canary_config cfg;
  memset (&cfg, 0, sizeof cfg);
  cfg.tokenizer_kind = kind;
  cfg.tokenizer_langs = g_ptr_array_new_with_free_func (g_free);
  canary_tokenizer_lang *l = NULL;
  for (guint i = 0; kind == CANARY_TOKENIZER_AGGREGATE && langs[i]; i += 2) {
    l = g_new0 (canary_tokenizer_lang, 1);
    l->lang = (char *) langs[i];
    l->model_path = (char *) langs[i + 1];
    g_ptr_array_add (cfg.tokenizer_langs, l);
  }
  cfg.tokenizer_model_path = kind == CANARY_TOKENIZER_UNIFIED ? (char *) langs[1] : NULL;
  canary_tokenizer *tok = canary_tokenizer_new (&cfg, ar, error);
  g_ptr_array_unref (cfg.tokenizer_langs);
  return tok;
}

static GArray *
encode_case_ids (const char *file, guint index)
{
  const tu_json *cases = tu_json_get (spm_expect_model (file), "encode");
  return json_ids (tu_json_get (tu_json_at (cases, index), "ids"));
}

/* Unified: prompts are sentencepiece's encode of the symbol string (expect.json "encode" cases 1
 * and 2), decoding is sentencepiece's decode. */
static void
test_synthetic_unified (void)
{
  static const char *const model[] = { "unified", "nemo:bpe_bf.model", NULL };
  char *dir = fixture_path ("spm", NULL);
  GError *err = NULL;
  canary_archive *ar = canary_archive_open (dir, &err);
  g_assert_no_error (err);
  canary_tokenizer *tok = synthetic_tokenizer (ar, CANARY_TOKENIZER_UNIFIED, model, &err);
  g_assert_no_error (err);

  const char *const want_langs[] = { "en", "de", "es", "fr", NULL };  /* <|e|> is no language */
  g_assert_true (g_strv_equal ((const char *const *) canary_tokenizer_languages (tok), want_langs));
  g_assert_cmpint (canary_tokenizer_vocab_size (tok), ==, 380);
  g_assert_cmpint (canary_tokenizer_eos (tok), ==, 3);
  g_assert_cmpint (canary_tokenizer_bos (tok), ==, 4);
  g_assert_cmpint (canary_tokenizer_pad (tok), ==, 2);

  GArray *got = canary_tokenizer_build_prompt (tok, CANARY_PROMPT_CANARY2, NULL, &err);
  g_assert_no_error (err);
  GArray *want = encode_case_ids ("bpe_bf.model", 1);
  assert_ids_equal (got, want, "unified canary2 default prompt");
  g_array_unref (got);
  g_array_unref (want);

  canary_prompt_options o = { "DE", "en-GB", "ast", 0, -1, -1, -1, NULL };
  got = canary_tokenizer_build_prompt (tok, CANARY_PROMPT_CANARY, &o, &err);
  g_assert_no_error (err);
  want = encode_case_ids ("bpe_bf.model", 2);
  assert_ids_equal (got, want, "unified canary prompt de→en nopnc");
  g_array_unref (got);
  g_array_unref (want);

  o.source_lang = "it";
  g_assert_null (canary_tokenizer_build_prompt (tok, CANARY_PROMPT_CANARY2, &o, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (err->message, "\"it\""));
  g_clear_error (&err);
  o.source_lang = "en";
  o.emotion = "neutral";  /* <|emo:neutral|> is not in this vocabulary */
  g_assert_null (canary_tokenizer_build_prompt (tok, CANARY_PROMPT_CANARY2, &o, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED);
  g_clear_error (&err);

  const tu_json *cases = tu_json_get (spm_expect_model ("bpe_bf.model"), "decode");
  for (guint c = 0; c < tu_json_length (cases); c++) {
    GArray *ids = json_ids (tu_json_get (tu_json_at (cases, c), "ids"));
    char *text = canary_tokenizer_decode (tok, (const gint32 *) (void *) ids->data, ids->len);
    char *expected = without_nuls (tu_json_get (tu_json_at (cases, c), "text"));
    g_assert_cmpstr (text, ==, expected);
    g_free (expected);
    g_free (text);
    g_array_unref (ids);
  }
  canary_tokenizer_free (tok);

  /* A model path that is not in the archive. */
  static const char *const missing[] = { "unified", "nemo:nosuch.model", NULL };
  g_assert_null (synthetic_tokenizer (ar, CANARY_TOKENIZER_UNIFIED, missing, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_NOT_FOUND);
  g_clear_error (&err);
  /* A file that is no SentencePiece model. */
  static const char *const junk[] = { "unified", "expect.json", NULL };
  g_assert_null (synthetic_tokenizer (ar, CANARY_TOKENIZER_UNIFIED, junk, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_assert_nonnull (strstr (err->message, "expect.json"));
  g_clear_error (&err);
  canary_archive_free (ar);
  g_free (dir);
}

/* Aggregate: ids are offset by the running piece counts (NeMo's AggregateTokenizer), special
 * tokens come from spl_tokens wherever it sits, decoding is plain piece concatenation. */
static void
test_synthetic_aggregate (void)
{
  static const char *const langs[] = { "en-US", "bpe_nodummy.model", "spl_tokens", "unigram_keepws.model",
    "de", "unigram_bf.model", NULL };
  const tu_json *pieces[] = { tu_json_get (spm_expect_model ("bpe_nodummy.model"), "pieces"),
    tu_json_get (spm_expect_model ("unigram_keepws.model"), "pieces"),
    tu_json_get (spm_expect_model ("unigram_bf.model"), "pieces") };
  const int offsets[] = { 0, 120, 230 };
  char *dir = fixture_path ("spm", NULL);
  GError *err = NULL;
  canary_archive *ar = canary_archive_open (dir, &err);
  g_assert_no_error (err);
  canary_tokenizer *tok = synthetic_tokenizer (ar, CANARY_TOKENIZER_AGGREGATE, langs, &err);
  g_assert_no_error (err);

  g_assert_cmpint (canary_tokenizer_vocab_size (tok), ==, 120 + 110 + 360);
  const char *const want_langs[] = { "en", "de", NULL };  /* sub-tokenizers with a <|xx|> token */
  g_assert_true (g_strv_equal ((const char *const *) canary_tokenizer_languages (tok), want_langs));
  for (guint s = 0; s < G_N_ELEMENTS (pieces); s++)
    for (guint i = 0; i < tu_json_length (pieces[s]); i++)
      g_assert_cmpstr (canary_tokenizer_id_to_piece (tok, offsets[s] + (int) i), ==,
          tu_json_string (tu_json_at (tu_json_at (pieces[s], i), 0)));
  /* spl_tokens (unigram_keepws): <pad> 4, <|endoftext|> 5, <|startoftranscript|> 6. */
  g_assert_cmpint (canary_tokenizer_pad (tok), ==, 120 + 4);
  g_assert_cmpint (canary_tokenizer_eos (tok), ==, 120 + 5);
  g_assert_cmpint (canary_tokenizer_bos (tok), ==, 120 + 6);
  g_assert_cmpint (canary_tokenizer_special_id (tok, "<|de|>"), ==, 120 + 18);
  g_assert_cmpint (canary_tokenizer_special_id (tok, "<unk>"), ==, -1);  /* not a special token */

  canary_prompt_options o = { "de", NULL, NULL, 1, 1, 1, 0, "<|emo:undefined|>" };
  GArray *got = canary_tokenizer_build_prompt (tok, CANARY_PROMPT_CANARY2, &o, &err);
  g_assert_no_error (err);
  static const char *const symbols[] = { "<|startofcontext|>", "<|startoftranscript|>",
    "<|emo:undefined|>", "<|de|>", "<|de|>", "<|pnc|>", "<|itn|>", "<|timestamp|>", "<|nodiarize|>" };
  g_assert_cmpuint (got->len, ==, G_N_ELEMENTS (symbols));
  for (guint i = 0; i < got->len; i++)
    g_assert_cmpstr (canary_tokenizer_id_to_piece (tok, g_array_index (got, gint32, i)), ==, symbols[i]);
  g_array_unref (got);

  /* Decoding across sub-tokenizers: piece strings, ▁ → space, nothing else touched. */
  const gint32 ids[] = { 120 + 0, 120 + 17, 0 + 77, 230 + 290, 230 + 219, 230 + 1, 120 + 24, 230 + 280, -1, 590 };
  GString *want = g_string_new (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (ids); i++) {
    const char *p = canary_tokenizer_id_to_piece (tok, ids[i]);
    if (p)
      g_string_append (want, p);
  }
  g_string_replace (want, "\xe2\x96\x81", " ", 0);
  char *text = canary_tokenizer_decode (tok, ids, G_N_ELEMENTS (ids));
  g_assert_cmpstr (text, ==, want->str);
  g_assert_cmpstr (text, ==, "<unk><|en|>  s<0xC3><s>  ");  /* bpe_nodummy 77 is a bare ▁ */
  g_free (text);
  g_string_free (want, TRUE);
  canary_tokenizer_free (tok);

  /* No spl_tokens sub-tokenizer. */
  static const char *const no_spl[] = { "en", "bpe_nodummy.model", NULL };
  g_assert_null (synthetic_tokenizer (ar, CANARY_TOKENIZER_AGGREGATE, no_spl, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_clear_error (&err);
  canary_archive_free (ar);
  g_free (dir);
}

/* ----------------------------------------------------------------------------------------------
 * NeMo fixture models: prompts and detokenisation
 * ---------------------------------------------------------------------------------------------- */

/* A fixture model and its tokenizer. */
typedef struct {
  fixture_model model;
  canary_tokenizer *tok;
} tok_fixture;

/* Opens fixture model `name` and its tokenizer, or skips the test (FALSE) when it is not there. */
static gboolean
tok_fixture_open (const char *name, tok_fixture *fx)
{
  memset (fx, 0, sizeof *fx);
  if (!fixture_model_open_or_fail (name, &fx->model))
    return FALSE;
  GError *err = NULL;
  fx->tok = canary_tokenizer_new (fx->model.cfg, fx->model.ar, &err);
  g_assert_no_error (err);
  g_assert_nonnull (fx->tok);
  return TRUE;
}

static void
tok_fixture_close (tok_fixture *fx)
{
  canary_tokenizer_free (fx->tok);
  fixture_model_close (&fx->model);
}

/* NeMo's slot value → our tri-state: map_manifest_values_to_special_tokens treats "yes", "1",
 * "True", "true", the slot name and <|name|> as yes, anything else as no. */
static int
slot_bool (const tu_json *v, const char *name)
{
  if (!v)
    return -1;
  if (tu_json_is (v, TU_JSON_BOOL))
    return tu_json_bool (v);
  const char *s = tu_json_string (v);
  g_assert_nonnull (s);
  char *token = g_strdup_printf ("<|%s|>", name);
  const gboolean yes = g_strv_contains ((const char *const[]) { "yes", "1", "True", "true", NULL }, s)
      || strcmp (s, name) == 0 || strcmp (s, token) == 0;
  g_free (token);
  return yes;
}

/* prompts.json "settings" (NeMo slot names) → canary_prompt_options. FALSE for settings our API
 * cannot express (a decoder context). */
static gboolean
options_from_settings (const tu_json *settings, canary_prompt_options *o)
{
  const char *ctx = tu_json_string (tu_json_get (settings, "decodercontext"));
  if (ctx && *ctx)
    return FALSE;
  memset (o, 0, sizeof *o);
  o->source_lang = tu_json_string (tu_json_get (settings, "source_lang"));
  o->target_lang = tu_json_string (tu_json_get (settings, "target_lang"));
  o->task = tu_json_string (tu_json_get (settings, "task"));
  if (!o->task)
    o->task = tu_json_string (tu_json_get (settings, "taskname"));
  o->pnc = slot_bool (tu_json_get (settings, "pnc"), "pnc");
  o->itn = slot_bool (tu_json_get (settings, "itn"), "itn");
  o->timestamp = slot_bool (tu_json_get (settings, "timestamp"), "timestamp");
  o->diarize = slot_bool (tu_json_get (settings, "diarize"), "diarize");
  o->emotion = tu_json_string (tu_json_get (settings, "emotion"));
  return TRUE;
}

static void
test_fixture_prompts (gconstpointer data)
{
  const char *name = data;
  tok_fixture fx;
  if (!tok_fixture_open (name, &fx))
    return;

  char *path = fixture_path (name, "prompts.json", NULL);
  GError *err = NULL;
  tu_json *prompts = tu_json_load (path, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (tu_json_length (prompts), >, 0);

  for (guint i = 0; i < tu_json_length (prompts); i++) {
    const char *variant = tu_json_key_at (prompts, i);
    const tu_json *v = tu_json_at (prompts, i);
    canary_prompt_options o;
    if (!options_from_settings (tu_json_get (v, "settings"), &o)) {
      g_test_message ("%s/%s: decoder context not supported, skipped", name, variant);
      continue;
    }
    GArray *want = json_ids (tu_json_get (v, "ids"));
    GArray *got = canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &o, &err);
    g_assert_no_error (err);
    char *what = g_strdup_printf ("%s/%s", name, variant);
    assert_ids_equal (got, want, what);
    g_free (what);

    /* NeMo's "pieces" of the prompt are what our id → piece gives. */
    const tu_json *pieces = tu_json_get (v, "pieces");
    for (guint k = 0; k < tu_json_length (pieces); k++)
      g_assert_cmpstr (canary_tokenizer_id_to_piece (fx.tok, g_array_index (want, gint32, k)), ==,
          tu_json_string (tu_json_at (pieces, k)));
    g_array_unref (got);
    g_array_unref (want);
  }
  tu_json_free (prompts);
  g_free (path);
  tok_fixture_close (&fx);
}

/* Python's str.strip(): Unicode whitespace at both ends. */
static char *
python_strip (const char *s)
{
  const char *start = s, *end = s + strlen (s);
  while (*start && g_unichar_isspace (g_utf8_get_char (start)))
    start = g_utf8_next_char (start);
  while (end > start) {
    const char *prev = g_utf8_find_prev_char (start, end);
    if (!prev || !g_unichar_isspace (g_utf8_get_char (prev)))
      break;
    end = prev;
  }
  return g_strndup (start, (gsize) (end - start));
}

/* decode(ids) must equal NeMo's ids_to_text (the manifest's *_text_before_merge) byte for byte;
 * the clip's *_text.txt is what transcribe() returned after merging chunks, i.e. stripped. */
static void
check_clip_text (const tok_fixture *fx, const char *model, const char *clip, const char *beam,
    const tu_json *clip_info)
{
  char *ids_file = g_strdup_printf ("%s_ids.npy", beam);
  char *txt_file = g_strdup_printf ("%s_text.txt", beam);
  char *txt_path = fixture_path (model, clip, txt_file, NULL);
  char *raw_key = g_strdup_printf ("%s_text_before_merge", beam);
  GArray *ids = fixture_load_ids (model, clip, ids_file);
  char *txt = tu_read_file (txt_path, NULL);
  char *got = canary_tokenizer_decode (fx->tok, (const gint32 *) (void *) ids->data, ids->len);
  const char *raw = tu_json_string (tu_json_get (clip_info, raw_key));

  g_test_message ("%s/%s/%s: %u ids → \"%s\"", model, clip, ids_file, ids->len, got);
  if (raw)
    g_assert_cmpstr (got, ==, raw);
  char *stripped = python_strip (got);
  g_assert_cmpstr (stripped, ==, txt);
  g_free (stripped);
  g_free (got);
  g_free (txt);
  g_array_unref (ids);
  g_free (raw_key);
  g_free (txt_path);
  g_free (txt_file);
  g_free (ids_file);
}

static void
test_fixture_decode (gconstpointer data)
{
  const char *name = data;
  tok_fixture fx;
  if (!tok_fixture_open (name, &fx))
    return;

  /* manifest.json (written last by make_fixtures.py) adds the raw ids_to_text and special ids. */
  char *mpath = fixture_path ("manifest.json", NULL);
  tu_json *manifest = g_file_test (mpath, G_FILE_TEST_EXISTS) ? tu_json_load (mpath, NULL) : NULL;
  const tu_json *model_info = tu_json_get (tu_json_get (manifest, "models"), name);
  if (!model_info)
    g_test_message ("%s: no manifest entry, checking the stripped texts only", name);

  GError *err = NULL;
  GPtrArray *clips = fixture_list_clips (name, "beam1_ids.npy");
  g_assert_cmpuint (clips->len, >, 0);
  GArray *default_prompt = canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, NULL, &err);
  g_assert_no_error (err);
  for (guint c = 0; c < clips->len; c++) {
    const char *clip = clips->pdata[c];
    const tu_json *clip_info = tu_json_get (tu_json_get (model_info, "clips"), clip);
    GArray *prompt = fixture_load_ids (name, clip, "prompt_ids.npy");
    char *what = g_strdup_printf ("%s/%s/prompt_ids.npy", name, clip);
    assert_ids_equal (default_prompt, prompt, what);
    check_clip_text (&fx, name, clip, "beam1", clip_info);
    check_clip_text (&fx, name, clip, "beam4", clip_info);
    g_array_unref (prompt);
    g_free (what);
  }
  g_array_unref (default_prompt);
  g_ptr_array_unref (clips);

  /* The special ids NeMo reports for the model. */
  const tu_json *conf = tu_json_get (model_info, "config");
  if (conf) {
    g_assert_cmpint (canary_tokenizer_eos (fx.tok), ==, tu_json_int (tu_json_get (conf, "eos_id")));
    g_assert_cmpint (canary_tokenizer_bos (fx.tok), ==, tu_json_int (tu_json_get (conf, "bos_id")));
    g_assert_cmpint (canary_tokenizer_pad (fx.tok), ==, tu_json_int (tu_json_get (conf, "pad_id")));
    g_assert_cmpint (canary_tokenizer_vocab_size (fx.tok), ==,
        tu_json_int (tu_json_get (conf, "tokenizer_vocab_size")));
  }
  tu_json_free (manifest);
  g_free (mpath);
  tok_fixture_close (&fx);
}

/* Language code normalisation and refusal of unknown languages, tasks and emotions. */
static void
test_fixture_languages (gconstpointer data)
{
  const char *name = data;
  tok_fixture fx;
  if (!tok_fixture_open (name, &fx))
    return;

  const char *const *langs = canary_tokenizer_languages (fx.tok);
  g_assert_true (g_strv_contains (langs, "en"));
  g_assert_true (g_strv_contains (langs, "de"));

  static const char *const lookups[][2] = { { "en", "en" }, { "en-US", "en" }, { "EN_us", "en" },
    { "<|en|>", "en" }, { "DE", "de" }, { "de-AT", "de" }, { "xx", NULL }, { "", NULL },
    { "<|pnc|>", NULL }, { "e", NULL }, { "<|en", NULL }, { "en US", NULL } };
  for (guint i = 0; i < G_N_ELEMENTS (lookups); i++)
    g_assert_cmpstr (canary_tokenizer_lookup_language (fx.tok, lookups[i][0]), ==, lookups[i][1]);
  g_assert_null (canary_tokenizer_lookup_language (fx.tok, NULL));

  GError *err = NULL;
  canary_prompt_options o = { "en", NULL, NULL, -1, -1, -1, -1, NULL };
  GArray *ref = canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &o, &err);
  g_assert_no_error (err);
  static const char *const spellings[] = { "en-US", "EN_us", "<|en|>", "En", NULL };
  for (const char *const *s = spellings; *s; s++) {
    o.source_lang = *s;
    GArray *got = canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &o, &err);
    g_assert_no_error (err);
    assert_ids_equal (got, ref, *s);
    g_array_unref (got);
  }
  g_array_unref (ref);

  static const char *const unknown[] = { "xx", "e", "", "e1", "<|pnc|>", "klingon-KL", "<|xx|>", NULL };
  for (const char *const *s = unknown; *s; s++) {
    o.source_lang = *s;
    g_assert_null (canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &o, &err));
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
    g_clear_error (&err);
    o.source_lang = "en";
    o.target_lang = *s;
    g_assert_null (canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &o, &err));
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
    g_clear_error (&err);
    o.target_lang = NULL;
  }
  /* Translation without a target translates into English (NeMo's default target); transcription
   * without one keeps the source language (this API's contract). */
  canary_prompt_options explicit_en = { "de", "en", "ast", -1, -1, -1, -1, NULL };
  canary_prompt_options implicit_en = { "de", NULL, "translate", -1, -1, -1, -1, NULL };
  canary_prompt_options explicit_de = { "de", "de", NULL, -1, -1, -1, -1, NULL };
  canary_prompt_options implicit_de = { "de-DE", NULL, NULL, -1, -1, -1, -1, NULL };
  GArray *a = canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &explicit_en, &err);
  GArray *b = canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &implicit_en, &err);
  g_assert_no_error (err);
  assert_ids_equal (b, a, "translation default target");
  g_array_unref (a);
  g_array_unref (b);
  a = canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &explicit_de, &err);
  b = canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &implicit_de, &err);
  g_assert_no_error (err);
  assert_ids_equal (b, a, "transcription default target");
  g_array_unref (a);
  g_array_unref (b);

  o.task = "summarize";
  g_assert_null (canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &o, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
  g_clear_error (&err);
  o.task = NULL;
  if (fx.model.cfg->prompt_format == CANARY_PROMPT_CANARY2) {
    o.emotion = "furious";
    g_assert_null (canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &o, &err));
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
    g_clear_error (&err);
  } else {
    o.timestamp = 1;  /* NeMo refuses timestamps with the "canary" format */
    g_assert_null (canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &o, &err));
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT);
    g_clear_error (&err);
  }

  /* Special-token lookups and out-of-range ids. */
  g_assert_cmpint (canary_tokenizer_special_id (fx.tok, "<|en|>"), >=, 0);
  g_assert_cmpint (canary_tokenizer_special_id (fx.tok, "<|nosuchtoken|>"), ==, -1);
  g_assert_null (canary_tokenizer_id_to_piece (fx.tok, -1));
  g_assert_null (canary_tokenizer_id_to_piece (fx.tok, canary_tokenizer_vocab_size (fx.tok)));
  const gint32 odd[] = { -5, canary_tokenizer_vocab_size (fx.tok), G_MAXINT32 };
  char *text = canary_tokenizer_decode (fx.tok, odd, G_N_ELEMENTS (odd));
  g_assert_cmpstr (text, ==, "");
  g_free (text);
  tok_fixture_close (&fx);
}

/* Digest of sub-tokenizer `i`'s vocabulary (unified: i = 0), as make_tokenizer_checks.py computes
 * it: sha256 over "piece\ttype\n" per id, USER_DEFINED counted as NORMAL. */
static char *
vocab_sha256 (const tok_fixture *fx, guint i)
{
  const char *path = fx->model.cfg->tokenizer_kind == CANARY_TOKENIZER_AGGREGATE
      ? ((const canary_tokenizer_lang *) fx->model.cfg->tokenizer_langs->pdata[i])->model_path
      : fx->model.cfg->tokenizer_model_path;
  const guint8 *data;
  gsize len;
  GError *err = NULL;
  g_assert_true (canary_archive_resolve (fx->model.ar, path, &data, &len, &err));
  g_assert_no_error (err);
  canary_spm *spm = canary_spm_parse (data, len, &err);
  g_assert_no_error (err);
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  for (guint k = 0; k < spm->n_pieces; k++) {
    const int type = spm->types[k] == CANARY_PIECE_USER_DEFINED ? CANARY_PIECE_NORMAL : spm->types[k];
    char *line = g_strdup_printf ("%s\t%d\n", spm->pieces[k], type);
    g_checksum_update (sum, (const guchar *) line, -1);
    g_free (line);
  }
  char *hex = g_strdup (g_checksum_get_string (sum));
  g_checksum_free (sum);
  canary_spm_free (spm);
  return hex;
}

/* NeMo's ids_to_text over the whole vocabulary and random sequences, and its prompt ids for every
 * language and slot value (spm/nemo_tokenizers.json, by make_tokenizer_checks.py). */
static void
test_fixture_nemo_checks (gconstpointer data)
{
  const char *name = data;
  tok_fixture fx;
  if (!tok_fixture_open (name, &fx))
    return;

  char *path = fixture_path ("spm", "nemo_tokenizers.json", NULL);
  GError *err = NULL;
  tu_json *doc = tu_json_load (path, &err);
  g_assert_no_error (err);
  const tu_json *m = tu_json_get (tu_json_get (doc, "models"), name);
  if (!m) {
    g_test_fail_printf ("%s has no NeMo tokenizer checks for %s: regenerate it with "
        "tests/reference/make_tokenizer_checks.py", path, name);
    goto out;
  }

  /* The expectations belong to these exact vocabularies. */
  const tu_json *files = tu_json_get (m, "tokenizers");
  const guint n_files = fx.model.cfg->tokenizer_kind == CANARY_TOKENIZER_AGGREGATE ? fx.model.cfg->tokenizer_langs->len : 1;
  g_assert_cmpuint (tu_json_length (files), ==, n_files);
  for (guint i = 0; i < n_files; i++) {
    char *sha = vocab_sha256 (&fx, i);
    const char *want = tu_json_string (tu_json_get (tu_json_at (files, i), "vocab_sha256"));
    if (g_strcmp0 (sha, want) != 0)
      g_test_message ("vocabulary %u of %s changed: rerun tests/reference/make_tokenizer_checks.py", i, name);
    g_assert_cmpstr (sha, ==, want);
    g_free (sha);
  }

  const tu_json *cases = tu_json_get (m, "decode");
  for (guint c = 0; c < tu_json_length (cases); c++) {
    GArray *ids = json_ids (tu_json_get (tu_json_at (cases, c), "ids"));
    char *got = canary_tokenizer_decode (fx.tok, (const gint32 *) (void *) ids->data, ids->len);
    char *want = without_nuls (tu_json_get (tu_json_at (cases, c), "text"));
    g_assert_cmpstr (got, ==, want);
    g_free (want);
    g_free (got);
    g_array_unref (ids);
  }

  const tu_json *prompts = tu_json_get (m, "prompts");
  g_assert_cmpuint (tu_json_length (prompts), >, 0);
  for (guint p = 0; p < tu_json_length (prompts); p++) {
    const tu_json *slots = tu_json_get (tu_json_at (prompts, p), "slots");
    canary_prompt_options o;
    g_assert_true (options_from_settings (slots, &o));
    GArray *want = json_ids (tu_json_get (tu_json_at (prompts, p), "ids"));
    GArray *got = canary_tokenizer_build_prompt (fx.tok, fx.model.cfg->prompt_format, &o, &err);
    g_assert_no_error (err);
    char *what = g_strdup_printf ("%s prompt %u (%s → %s)", name, p, o.source_lang, o.target_lang);
    assert_ids_equal (got, want, what);
    g_free (what);
    g_array_unref (got);
    g_array_unref (want);
  }
out:
  tu_json_free (doc);
  g_free (path);
  tok_fixture_close (&fx);
}

int
main (int argc, char **argv)
{
  GError *err = NULL;

  g_test_init (&argc, &argv, NULL);
  char *path = fixture_path ("spm", "expect.json", NULL);
  spm_expect = tu_json_load (path, &err);
  g_assert_no_error (err);
  g_free (path);

  g_test_add_func ("/tokenizer/json", test_json);
  g_test_add_func ("/tokenizer/spm/fields", test_spm_fields);
  g_test_add_func ("/tokenizer/spm/decode", test_spm_decode);
  g_test_add_func ("/tokenizer/spm/encode-symbols", test_spm_encode_symbols);
  g_test_add_func ("/tokenizer/spm/minimal", test_spm_minimal);
  g_test_add_func ("/tokenizer/spm/unknown-fields-and-merge", test_spm_unknown_fields_and_merge);
  g_test_add_func ("/tokenizer/spm/malformed", test_spm_malformed);
  g_test_add_func ("/tokenizer/spm/reserved-precedence", test_spm_reserved_precedence);
  g_test_add_func ("/tokenizer/spm/truncated", test_spm_truncated);
  g_test_add_func ("/tokenizer/spm/mutated", test_spm_mutated);
  g_test_add_func ("/tokenizer/synthetic/unified", test_synthetic_unified);
  g_test_add_func ("/tokenizer/synthetic/aggregate", test_synthetic_aggregate);
  for (guint i = 0; i < G_N_ELEMENTS (fixture_models); i++) {
    char *p;
    p = g_strdup_printf ("/tokenizer/nemo/%s/prompts", fixture_models[i]);
    g_test_add_data_func (p, fixture_models[i], test_fixture_prompts);
    g_free (p);
    p = g_strdup_printf ("/tokenizer/nemo/%s/decode", fixture_models[i]);
    g_test_add_data_func (p, fixture_models[i], test_fixture_decode);
    g_free (p);
    p = g_strdup_printf ("/tokenizer/nemo/%s/languages", fixture_models[i]);
    g_test_add_data_func (p, fixture_models[i], test_fixture_languages);
    g_free (p);
    p = g_strdup_printf ("/tokenizer/nemo/%s/nemo-checks", fixture_models[i]);
    g_test_add_data_func (p, fixture_models[i], test_fixture_nemo_checks);
    g_free (p);
  }
  const int rc = g_test_run ();
  tu_json_free (spm_expect);
  return rc;
}
