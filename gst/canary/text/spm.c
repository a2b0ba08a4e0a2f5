/* gst-canary — SentencePiece `.model` reader (a protobuf ModelProto, proto2), sentencepiece's
 * decoder, and the narrow encoder a Canary prompt needs.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The file is untrusted input: every read is bounds-checked, and anything malformed becomes a
 * CANARY_ERROR_FORMAT naming the field and the byte offset. Only the fields listed in
 * sentencepiece_model.proto that decoding and prompt building consult are kept; everything else is
 * skipped by wire type. After parsing, the model is checked the way sentencepiece checks it at load
 * (ModelInterface::InitializePieces), so a model sentencepiece refuses is refused here too.
 */
#include "text/tokenizer.h"

#include <stdarg.h>
#include <string.h>

#include "util.h"

/* U+2581 LOWER ONE EIGHTH BLOCK: sentencepiece's visible whitespace. */
#define SPM_SPACE "\xe2\x96\x81"
#define SPM_SPACE_LEN 3
/* U+FFFD, what sentencepiece emits for a byte that does not start a valid UTF-8 character. */
#define SPM_REPLACEMENT "\xef\xbf\xbd"

/* ----------------------------------------------------------------------------------------------
 * Protobuf wire format: a bounded cursor over one message's bytes.
 * ---------------------------------------------------------------------------------------------- */

enum {
  WIRE_VARINT = 0,
  WIRE_FIXED64 = 1,
  WIRE_LEN = 2,
  WIRE_GROUP_START = 3,
  WIRE_GROUP_END = 4,
  WIRE_FIXED32 = 5,
};

typedef struct {
  const guint8 *data;  /* the message's bytes */
  gsize len;
  gsize pos;           /* cursor within data */
  gsize base;          /* offset of data[0] in the whole file, for error messages */
  const char *what;    /* message path for error messages, e.g. "ModelProto.pieces[3]" */
} pb_reader;

/* One field as read from the wire. */
typedef struct {
  guint32 number;
  guint wire;
  gsize offset;        /* file offset of the field's key */
  guint64 varint;      /* WIRE_VARINT */
  guint32 fixed32;     /* WIRE_FIXED32 */
  const guint8 *bytes; /* WIRE_LEN: payload */
  gsize n_bytes;
  gsize bytes_offset;  /* file offset of the payload */
} pb_field;

static gboolean G_GNUC_PRINTF (4, 5)
pb_fail (const pb_reader *r, gsize offset, GError **error, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
      "SentencePiece model: %s at offset %" G_GSIZE_FORMAT ": %s", r->what, offset, msg);
  g_free (msg);
  return FALSE;
}

/* Base-128 varint. A varint holds at most 64 bits, i.e. 10 bytes whose last carries a single bit
 * and no continuation; anything longer or wider is rejected rather than silently truncated. */
static gboolean
pb_read_varint (pb_reader *r, guint64 *out, const char *what_field, GError **error)
{
  const gsize start = r->pos;
  guint64 v = 0;

  for (guint i = 0;; i++) {
    if (r->pos >= r->len)
      return pb_fail (r, r->base + start, error, "%s: varint truncated by the end of the message",
          what_field);
    const guint8 b = r->data[r->pos++];
    if (i == 9 && b > 1)
      return pb_fail (r, r->base + start, error, "%s: varint longer than 10 bytes or wider than "
          "64 bits", what_field);
    v |= (guint64) (b & 0x7f) << (7 * i);
    if (!(b & 0x80))
      break;
  }
  *out = v;
  return TRUE;
}

static gboolean
pb_take (pb_reader *r, gsize n, const guint8 **bytes, const char *what_field, GError **error)
{
  if (n > r->len - r->pos)
    return pb_fail (r, r->base + r->pos, error,
        "%s: %" G_GSIZE_FORMAT " bytes needed, %" G_GSIZE_FORMAT " left in the message",
        what_field, n, r->len - r->pos);
  *bytes = r->data + r->pos;
  r->pos += n;
  return TRUE;
}

/* Reads the next field. Returns 1 with *f filled, 0 at the end of the message, -1 on error. */
static int
pb_next (pb_reader *r, pb_field *f, GError **error)
{
  guint64 key;
  const guint8 *p = NULL;

  if (r->pos >= r->len)
    return 0;

  memset (f, 0, sizeof *f);
  f->offset = r->base + r->pos;
  if (!pb_read_varint (r, &key, "field key", error))
    return -1;
  if (key >> 3 == 0 || key >> 3 > 0x1fffffff) {
    pb_fail (r, f->offset, error, "field number %" G_GUINT64_FORMAT " out of range", key >> 3);
    return -1;
  }
  f->number = (guint32) (key >> 3);
  f->wire = (guint) (key & 7);

  switch (f->wire) {
    case WIRE_VARINT:
      return pb_read_varint (r, &f->varint, "varint value", error) ? 1 : -1;
    case WIRE_FIXED64:
      return pb_take (r, 8, &p, "fixed64 value", error) ? 1 : -1;
    case WIRE_FIXED32:
      if (!pb_take (r, 4, &p, "fixed32 value", error))
        return -1;
      f->fixed32 = (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 | (guint32) p[3] << 24;
      return 1;
    case WIRE_LEN: {
      guint64 n;
      if (!pb_read_varint (r, &n, "length", error))
        return -1;
      /* Compare in 64 bits before narrowing: a length near 2^64 must not wrap gsize. */
      if (n > (guint64) (r->len - r->pos)) {
        pb_fail (r, f->offset, error, "field %u: length %" G_GUINT64_FORMAT " runs past the end of "
            "the message (%" G_GSIZE_FORMAT " bytes left)", f->number, n, r->len - r->pos);
        return -1;
      }
      f->bytes_offset = r->base + r->pos;
      f->n_bytes = (gsize) n;
      pb_take (r, f->n_bytes, &f->bytes, "payload", NULL);
      return 1;
    }
    case WIRE_GROUP_START:
    case WIRE_GROUP_END:
      /* Deprecated proto2 groups; sentencepiece never writes them. */
      pb_fail (r, f->offset, error, "field %u: group wire type %u not supported", f->number, f->wire);
      return -1;
    default:
      pb_fail (r, f->offset, error, "field %u: invalid wire type %u", f->number, f->wire);
      return -1;
  }
}

/* A known field with an unexpected wire type is an error, not an unknown field to skip: it means
 * the file is not the message we think it is. */
static gboolean
pb_expect (const pb_reader *r, const pb_field *f, guint wire, const char *name, GError **error)
{
  static const char *const names[] = { "varint", "fixed64", "length-delimited", "group start",
    "group end", "fixed32", "6", "7" };
  if (f->wire == wire)
    return TRUE;
  return pb_fail (r, f->offset, error, "%s (field %u): wire type %s, expected %s", name, f->number,
      names[f->wire & 7], names[wire & 7]);
}

/* A reader over an embedded message's payload. */
static pb_reader
pb_sub (const pb_field *f, const char *what)
{
  pb_reader r = { f->bytes, f->n_bytes, 0, f->bytes_offset, what };
  return r;
}

/* proto2 int32 fields are sign-extended to 64 bits on the wire; keep the low 32 bits. */
static int
pb_int32 (guint64 v)
{
  return (int) (gint32) (guint32) v;
}

/* ----------------------------------------------------------------------------------------------
 * ModelProto → canary_spm
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
  GPtrArray *pieces;   /* char* */
  GArray *scores;      /* float */
  GArray *types;       /* guint8 */
} piece_lists;

static int
upper_hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* "<0xNN>" (upper-case hex, exactly as sentencepiece's ByteToPiece writes it) → NN, else -1. */
static int
byte_piece_value (const char *piece)
{
  if (strlen (piece) != 6 || strncmp (piece, "<0x", 3) != 0 || piece[5] != '>')
    return -1;
  const int hi = upper_hex_value (piece[3]), lo = upper_hex_value (piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static gboolean
parse_piece (const pb_field *outer, guint index, piece_lists *pl, GError **error)
{
  char what[64];
  g_snprintf (what, sizeof what, "ModelProto.pieces[%u]", index);
  pb_reader r = pb_sub (outer, what);
  const guint8 *str = NULL;
  gsize str_len = 0, str_offset = outer->bytes_offset;
  float score = 0.0f;
  guint64 type = CANARY_PIECE_NORMAL;
  pb_field f;
  int rc;

  while ((rc = pb_next (&r, &f, error)) > 0) {
    switch (f.number) {
      case 1:  /* piece (last occurrence wins, as in proto2) */
        if (!pb_expect (&r, &f, WIRE_LEN, "piece", error))
          return FALSE;
        str = f.bytes;
        str_len = f.n_bytes;
        str_offset = f.bytes_offset;
        break;
      case 2:  /* score */
        if (!pb_expect (&r, &f, WIRE_FIXED32, "score", error))
          return FALSE;
        memcpy (&score, &f.fixed32, sizeof score);
        break;
      case 3:  /* type */
        if (!pb_expect (&r, &f, WIRE_VARINT, "type", error))
          return FALSE;
        type = f.varint;
        break;
      default:
        break;
    }
  }
  if (rc < 0)
    return FALSE;

  /* sentencepiece refuses empty pieces; we also need pieces to be C strings of valid UTF-8. */
  if (str_len == 0)
    return pb_fail (&r, str_offset, error, "piece must not be empty");
  if (!g_utf8_validate_len ((const char *) str, str_len, NULL))
    return pb_fail (&r, str_offset, error, "piece is not valid UTF-8 (or contains NUL)");
  /* An unknown enum value would read back as NORMAL in proto2; refusing it is clearer. */
  if (type < CANARY_PIECE_NORMAL || type > CANARY_PIECE_BYTE)
    return pb_fail (&r, str_offset, error, "type %" G_GUINT64_FORMAT " is not a piece type", type);

  guint8 t = (guint8) type;
  g_ptr_array_add (pl->pieces, g_strndup ((const char *) str, str_len));
  g_array_append_val (pl->scores, score);
  g_array_append_val (pl->types, t);
  return TRUE;
}

/* trainer_spec may occur several times; proto2 merges them, which for scalar fields means the
 * last value wins, exactly what parsing each occurrence into the same struct does. */
static gboolean
parse_trainer_spec (const pb_field *outer, canary_spm *spm, GError **error)
{
  pb_reader r = pb_sub (outer, "ModelProto.trainer_spec");
  pb_field f;
  int rc;

  while ((rc = pb_next (&r, &f, error)) > 0) {
    const char *name = NULL;
    int *int_field = NULL;
    gboolean *bool_field = NULL;
    switch (f.number) {
      case 3: name = "model_type"; int_field = &spm->model_type; break;
      case 4: name = "vocab_size"; int_field = &spm->vocab_size; break;
      case 24: name = "treat_whitespace_as_suffix"; bool_field = &spm->treat_whitespace_as_suffix; break;
      case 35: name = "byte_fallback"; bool_field = &spm->byte_fallback; break;
      case 40: name = "unk_id"; break;  /* the UNKNOWN piece is authoritative (validate_and_index) */
      case 41: name = "bos_id"; int_field = &spm->bos_id; break;
      case 42: name = "eos_id"; int_field = &spm->eos_id; break;
      case 43: name = "pad_id"; int_field = &spm->pad_id; break;
      case 44:
        if (!pb_expect (&r, &f, WIRE_LEN, "unk_surface", error))
          return FALSE;
        if (!g_utf8_validate_len ((const char *) f.bytes, f.n_bytes, NULL))
          return pb_fail (&r, f.bytes_offset, error, "unk_surface is not valid UTF-8");
        g_free (spm->unk_surface);
        spm->unk_surface = g_strndup ((const char *) f.bytes, f.n_bytes);
        continue;
      default:
        continue;
    }
    if (!pb_expect (&r, &f, WIRE_VARINT, name, error))
      return FALSE;
    if (int_field)
      *int_field = pb_int32 (f.varint);
    if (bool_field)
      *bool_field = f.varint != 0;
  }
  return rc == 0;
}

/* normalizer_spec (field 3) and denormalizer_spec (field 5) share the NormalizerSpec message. */
static gboolean
parse_normalizer_spec (const pb_field *outer, canary_spm *spm, gboolean denormalizer, GError **error)
{
  pb_reader r = pb_sub (outer,
      denormalizer ? "ModelProto.denormalizer_spec" : "ModelProto.normalizer_spec");
  pb_field f;
  int rc;

  while ((rc = pb_next (&r, &f, error)) > 0) {
    gboolean *bool_field = NULL;
    const char *name = NULL;
    switch (f.number) {
      case 2:  /* precompiled_charsmap: encode-side rules, except for a denormalizer */
        if (!pb_expect (&r, &f, WIRE_LEN, "precompiled_charsmap", error))
          return FALSE;
        if (denormalizer && f.n_bytes > 0)
          spm->has_denormalizer = TRUE;
        continue;
      case 3: name = "add_dummy_prefix"; bool_field = &spm->add_dummy_prefix; break;
      case 4: name = "remove_extra_whitespaces"; bool_field = &spm->remove_extra_whitespaces; break;
      case 5: name = "escape_whitespaces"; bool_field = &spm->escape_whitespaces; break;
      default:
        continue;
    }
    if (!pb_expect (&r, &f, WIRE_VARINT, name, error))
      return FALSE;
    /* The denormalizer's flags do not affect decoding; only remember the normalizer's. */
    if (!denormalizer)
      *bool_field = f.varint != 0;
  }
  return rc == 0;
}

#define spm_fail(error, ...) canary_fail (error, CANARY_ERROR_FORMAT, "SentencePiece model", __VA_ARGS__)

static gboolean
is_reserved_type (guint8 t)
{
  /* sentencepiece keeps NORMAL, USER_DEFINED and UNUSED pieces in one map and the others
   * (UNKNOWN, CONTROL, BYTE) in a "reserved" map that PieceToId consults first. */
  return t == CANARY_PIECE_UNKNOWN || t == CANARY_PIECE_CONTROL || t == CANARY_PIECE_BYTE;
}

/* The checks sentencepiece applies when it loads a model, plus the piece → id table. */
static gboolean
validate_and_index (canary_spm *spm, GError **error)
{
  gboolean byte_seen[256] = { FALSE };
  guint n_bytes = 0;

  spm->unk_id = -1;
  spm->piece_to_id = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < spm->n_pieces; i++) {
    const char *piece = spm->pieces[i];
    const guint8 type = spm->types[i];
    gpointer prev;

    if (g_hash_table_lookup_extended (spm->piece_to_id, piece, NULL, &prev)) {
      /* The same string may appear once in each of sentencepiece's two maps; the reserved one
       * wins lookups. A duplicate within one map is an error there too. */
      const guint j = GPOINTER_TO_UINT (prev) - 1;
      if (is_reserved_type (spm->types[j]) == is_reserved_type (type))
        return spm_fail (error, "pieces[%u] \"%s\" is already defined as pieces[%u]", i, piece, j);
      if (is_reserved_type (type))
        g_hash_table_insert (spm->piece_to_id, spm->pieces[i], GUINT_TO_POINTER (i + 1));
    } else {
      g_hash_table_insert (spm->piece_to_id, spm->pieces[i], GUINT_TO_POINTER (i + 1));
    }

    if (type == CANARY_PIECE_UNKNOWN) {
      if (spm->unk_id >= 0)
        return spm_fail (error, "pieces[%u] is a second UNKNOWN piece (first: pieces[%d])", i,
            spm->unk_id);
      spm->unk_id = (int) i;
    } else if (type == CANARY_PIECE_BYTE) {
      const int b = byte_piece_value (piece);
      if (!spm->byte_fallback)
        return spm_fail (error, "byte piece pieces[%u] \"%s\" although trainer_spec.byte_fallback "
            "is false", i, piece);
      if (b < 0)
        return spm_fail (error, "byte piece pieces[%u] \"%s\" is not of the form <0xNN>", i, piece);
      if (!byte_seen[b])
        n_bytes++;
      byte_seen[b] = TRUE;
    }
  }
  if (spm->unk_id < 0)
    return spm_fail (error, "no UNKNOWN piece (%u pieces)", spm->n_pieces);
  if (spm->byte_fallback && n_bytes != 256)
    return spm_fail (error, "trainer_spec.byte_fallback is set but only %u of the 256 byte pieces "
        "exist", n_bytes);
  return TRUE;
}

static canary_spm *
spm_new_with_defaults (void)
{
  canary_spm *spm = g_new0 (canary_spm, 1);
  /* proto2 defaults from sentencepiece_model.proto */
  spm->model_type = 1;
  spm->vocab_size = 8000;
  spm->bos_id = 1;
  spm->eos_id = 2;
  spm->pad_id = -1;
  spm->unk_surface = g_strdup (" \xe2\x81\x87 ");
  spm->add_dummy_prefix = TRUE;
  spm->remove_extra_whitespaces = TRUE;
  spm->escape_whitespaces = TRUE;
  return spm;
}

canary_spm *
canary_spm_parse (const guint8 *data, gsize len, GError **error)
{
  g_return_val_if_fail (data != NULL || len == 0, NULL);

  pb_reader r = { data, len, 0, 0, "ModelProto" };
  piece_lists pl = {
    g_ptr_array_new (),
    g_array_new (FALSE, FALSE, sizeof (float)),
    g_array_new (FALSE, FALSE, sizeof (guint8)),
  };
  canary_spm *spm = spm_new_with_defaults ();
  pb_field f;
  int rc = 0;
  gboolean ok = TRUE;

  while (ok && (rc = pb_next (&r, &f, error)) > 0) {
    switch (f.number) {
      case 1:
        if (pl.pieces->len >= G_MAXINT)  /* ids are ints */
          ok = pb_fail (&r, f.offset, error, "too many pieces");
        else
          ok = pb_expect (&r, &f, WIRE_LEN, "pieces", error)
              && parse_piece (&f, pl.pieces->len, &pl, error);
        break;
      case 2:
        ok = pb_expect (&r, &f, WIRE_LEN, "trainer_spec", error)
            && parse_trainer_spec (&f, spm, error);
        break;
      case 3:
      case 5:
        ok = pb_expect (&r, &f, WIRE_LEN, f.number == 3 ? "normalizer_spec" : "denormalizer_spec",
                error)
            && parse_normalizer_spec (&f, spm, f.number == 5, error);
        break;
      default:  /* self_test_data, extensions, future fields */
        break;
    }
  }
  if (ok && rc < 0)
    ok = FALSE;

  /* Hand the lists over to the struct (so canary_spm_free cleans up on every path). */
  spm->n_pieces = pl.pieces->len;
  g_ptr_array_add (pl.pieces, NULL);
  spm->pieces = (char **) g_ptr_array_free (pl.pieces, FALSE);
  spm->scores = (float *) (void *) g_array_free (pl.scores, FALSE);
  spm->types = (guint8 *) g_array_free (pl.types, FALSE);

  if (ok)
    ok = validate_and_index (spm, error);
  if (!ok) {
    canary_spm_free (spm);
    return NULL;
  }
  return spm;
}

void
canary_spm_free (canary_spm *spm)
{
  if (!spm)
    return;
  if (spm->piece_to_id)
    g_hash_table_unref (spm->piece_to_id);
  if (spm->pieces)
    g_strfreev (spm->pieces);
  g_free (spm->scores);
  g_free (spm->types);
  g_free (spm->unk_surface);
  g_free (spm);
}

int
canary_spm_piece_to_id (const canary_spm *spm, const char *piece)
{
  g_return_val_if_fail (spm != NULL, -1);
  if (!piece)
    return -1;
  /* sentencepiece answers unk_id for a string that is no piece; -1 lets callers tell. */
  return (int) GPOINTER_TO_UINT (g_hash_table_lookup (spm->piece_to_id, piece)) - 1;
}

/* ----------------------------------------------------------------------------------------------
 * Decoding, mirroring SentencePieceProcessor::Decode (sentencepiece 0.2.x).
 * ---------------------------------------------------------------------------------------------- */

/* sentencepiece's string_util::DecodeUTF8 validity rule: a well-formed 1-4 byte sequence that
 * encodes a scalar value (no surrogates, nothing above U+10FFFF, no overlong forms). Returns the
 * sequence length, or 0 when the first byte does not start one. */
static gsize
utf8_char_len (const guint8 *s, gsize n)
{
#define TRAIL(x) (((x) & 0xc0) == 0x80)
  guint32 cp;
  if (s[0] < 0x80)
    return 1;
  if (n >= 2 && (s[0] & 0xe0) == 0xc0) {
    cp = (guint32) (s[0] & 0x1f) << 6 | (s[1] & 0x3f);
    return TRAIL (s[1]) && cp >= 0x80 ? 2 : 0;
  }
  if (n >= 3 && (s[0] & 0xf0) == 0xe0) {
    cp = (guint32) (s[0] & 0x0f) << 12 | (guint32) (s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    return TRAIL (s[1]) && TRAIL (s[2]) && cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff) ? 3 : 0;
  }
  if (n >= 4 && (s[0] & 0xf8) == 0xf0) {
    cp = (guint32) (s[0] & 0x07) << 18 | (guint32) (s[1] & 0x3f) << 12
        | (guint32) (s[2] & 0x3f) << 6 | (s[3] & 0x3f);
    return TRAIL (s[1]) && TRAIL (s[2]) && TRAIL (s[3]) && cp >= 0x10000 && cp <= 0x10ffff ? 4 : 0;
  }
  return 0;
#undef TRAIL
}

/* Appends a run of byte-piece values: whole valid UTF-8 characters as they are, every other byte
 * as U+FFFD. U+0000 is dropped because the result is a C string (documented deviation); it still
 * counts as text for the dummy-prefix rule, so *nul_dropped records it. */
static void
flush_bytes (GString *out, GByteArray *bytes, gboolean *nul_dropped)
{
  gsize off = 0;
  while (off < bytes->len) {
    const gsize n = utf8_char_len (bytes->data + off, bytes->len - off);
    if (n == 0) {
      g_string_append (out, SPM_REPLACEMENT);
      off++;
    } else {
      if (n == 1 && bytes->data[off] == 0)
        *nul_dropped = TRUE;
      else
        g_string_append_len (out, (const char *) bytes->data + off, (gssize) n);
      off += n;
    }
  }
  g_byte_array_set_size (bytes, 0);
}

/* Appends `s` with every ▁ replaced by a space. */
static void
append_unescaped (GString *out, const char *s)
{
  const char *p;
  while ((p = strstr (s, SPM_SPACE)) != NULL) {
    g_string_append_len (out, s, p - s);
    g_string_append_c (out, ' ');
    s = p + SPM_SPACE_LEN;
  }
  g_string_append (out, s);
}

/* One non-byte piece (DecodeSentencePiece in sentencepiece). Returns whether it consumed a leading
 * ▁ as the dummy-prefix space, which ends the "beginning of sentence" state. */
static gboolean
decode_piece (const canary_spm *spm, int id, gboolean is_bos_ws, GString *out)
{
  const char *piece = spm->pieces[id];
  gboolean consumed_ws = FALSE;

  if (spm->types[id] == CANARY_PIECE_CONTROL)
    return FALSE;  /* <s>, </s>: invisible */
  if (spm->types[id] == CANARY_PIECE_UNKNOWN) {
    g_string_append (out, spm->unk_surface);
    return FALSE;
  }
  /* At the start of the text, a leading ▁ is the dummy prefix and is dropped. With
   * remove_extra_whitespaces sentencepiece keeps dropping leading ▁ pieces until some text
   * appears (it reports "not consumed" so the state persists). */
  if (is_bos_ws && (spm->add_dummy_prefix || spm->remove_extra_whitespaces)
      && g_str_has_prefix (piece, SPM_SPACE)) {
    piece += SPM_SPACE_LEN;
    consumed_ws = !spm->remove_extra_whitespaces;
  }
  append_unescaped (out, piece);
  return consumed_ws;
}

char *
canary_spm_decode (const canary_spm *spm, const gint32 *ids, gsize n)
{
  g_return_val_if_fail (spm != NULL, NULL);
  g_return_val_if_fail (ids != NULL || n == 0, NULL);

  GString *out = g_string_new (NULL);
  GByteArray *bytes = g_byte_array_new ();
  gboolean is_bos_ws = TRUE;   /* still at the beginning, where a dummy-prefix ▁ may be dropped */
  gboolean bos_ws_seen = FALSE;
  gboolean nul_dropped = FALSE;

  for (gsize i = 0; i < n; i++) {
    if (ids[i] < 0 || (guint) ids[i] >= spm->n_pieces)
      continue;  /* sentencepiece raises "Invalid id"; rendering nothing is this API's contract */
    /* Each id decodes by its own type, even when its string also names a reserved piece
     * (sentencepiece 0.2.3 decodes ids directly; decode_pieces would map through PieceToId). */
    const int id = ids[i];
    if (spm->types[id] == CANARY_PIECE_BYTE) {
      const guint8 b = (guint8) byte_piece_value (spm->pieces[id]);  /* valid: checked at parse */
      g_byte_array_append (bytes, &b, 1);
      continue;
    }
    flush_bytes (out, bytes, &nul_dropped);
    if (bos_ws_seen || out->len > 0 || nul_dropped)
      is_bos_ws = FALSE;
    bos_ws_seen = decode_piece (spm, id, is_bos_ws, out);
  }
  flush_bytes (out, bytes, &nul_dropped);
  g_byte_array_unref (bytes);
  return g_string_free (out, FALSE);
}

/* ----------------------------------------------------------------------------------------------
 * Encoding of symbol-only text (a Canary prompt).
 *
 * sentencepiece's normalizer matches USER_DEFINED pieces first (longest match) and leaves them
 * untouched; both the BPE and the unigram model then treat each such match as one atomic symbol.
 * The dummy prefix is one whitespace symbol in front (behind, with treat_whitespace_as_suffix) that
 * no vocabulary piece merges with a user-defined symbol, so for text made only of user-defined
 * symbols the segmentation is fully determined and needs no merge table or lattice. Limits: a model
 * with a piece spanning "▁<|sym|>" would segment differently; we do not check for that.
 * ---------------------------------------------------------------------------------------------- */

static void
append_id (GArray *out, int id)
{
  gint32 v = id;
  g_array_append_val (out, v);
}

/* The whitespace symbol: its piece if the model has one the encoder can emit, else byte fallback
 * pieces or <unk>, as for any character outside the vocabulary. */
static void
append_whitespace (const canary_spm *spm, GArray *out)
{
  const char *ws = spm->escape_whitespaces ? SPM_SPACE : " ";
  const int id = canary_spm_piece_to_id (spm, ws);

  if (id >= 0 && !is_reserved_type (spm->types[id])) {
    append_id (out, id);
    return;
  }
  if (spm->byte_fallback) {
    for (const char *p = ws; *p; p++) {
      char name[8];
      g_snprintf (name, sizeof name, "<0x%02X>", (guint8) *p);
      append_id (out, canary_spm_piece_to_id (spm, name));  /* all 256 exist: validated */
    }
    return;
  }
  append_id (out, spm->unk_id);
}

/* Longest USER_DEFINED piece that prefixes `s`, or -1. Prompts are short and symbols few, so a
 * scan over the pieces is fine. */
static int
longest_user_symbol (const canary_spm *spm, const char *s, gsize *len)
{
  int best = -1;
  gsize best_len = 0;
  for (guint i = 0; i < spm->n_pieces; i++) {
    if (spm->types[i] != CANARY_PIECE_USER_DEFINED)
      continue;
    const gsize n = strlen (spm->pieces[i]);
    if (n > best_len && strncmp (s, spm->pieces[i], n) == 0) {
      best = (int) i;
      best_len = n;
    }
  }
  *len = best_len;
  return best;
}

gboolean
canary_spm_encode_symbols (const canary_spm *spm, const char *text, GArray *out, GError **error)
{
  g_return_val_if_fail (spm != NULL && text != NULL && out != NULL, FALSE);
  g_return_val_if_fail (g_array_get_element_size (out) == sizeof (gint32), FALSE);

  if (!*text)
    return TRUE;  /* sentencepiece adds no dummy prefix to empty text */

  const guint start_len = out->len;
  if (spm->add_dummy_prefix && !spm->treat_whitespace_as_suffix)
    append_whitespace (spm, out);
  for (const char *p = text; *p;) {
    gsize n;
    const int id = longest_user_symbol (spm, p, &n);
    if (id < 0) {
      g_array_set_size (out, start_len);
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
          "cannot encode \"%s\" at byte %" G_GSIZE_FORMAT ": not a user-defined symbol of the "
          "SentencePiece model (only symbol-only text is supported)", text, (gsize) (p - text));
      return FALSE;
    }
    append_id (out, id);
    p += n;
  }
  if (spm->add_dummy_prefix && spm->treat_whitespace_as_suffix)
    append_whitespace (spm, out);
  return TRUE;
}
