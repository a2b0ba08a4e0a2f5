/* gst-canary tests — shared helpers (see testutil.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "testutil.h"

#include <math.h>
#include <string.h>

char *
tu_read_file (const char *path, gsize *len)
{
  char *data = NULL;
  gsize n = 0;
  GError *err = NULL;

  if (!g_file_get_contents (path, &data, &n, &err))
    g_error ("cannot read %s: %s", path, err->message);
  if (len)
    *len = n;
  return data;
}

/* ----------------------------------------------------------------------------------------------
 * JSON: a recursive-descent parser over a bounded buffer.
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
  const char *s;
  gsize len;
  gsize pos;
  GError **error;
} json_parser;

static tu_json *parse_value (json_parser *p, guint depth);

static gboolean G_GNUC_PRINTF (2, 3)
json_fail (json_parser *p, const char *fmt, ...)
{
  if (p->error && !*p->error) {
    va_list ap;
    va_start (ap, fmt);
    char *msg = g_strdup_vprintf (fmt, ap);
    va_end (ap);
    g_set_error (p->error, G_MARKUP_ERROR, G_MARKUP_ERROR_PARSE, "JSON at byte %" G_GSIZE_FORMAT
        ": %s", p->pos, msg);
    g_free (msg);
  }
  return FALSE;
}

static void
skip_ws (json_parser *p)
{
  while (p->pos < p->len
      && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\r' || p->s[p->pos] == '\n'))
    p->pos++;
}

/* UTF-8 validity where NUL bytes (from \u0000 escapes) are allowed. */
static gboolean
utf8_valid_with_nuls (const char *s, gsize len)
{
  gsize off = 0;
  while (off < len) {
    const char *end;
    if (g_utf8_validate_len (s + off, len - off, &end))
      return TRUE;
    if (*end != '\0')
      return FALSE;
    off = (gsize) (end - s) + 1;
  }
  return TRUE;
}

static int
peek (json_parser *p)
{
  return p->pos < p->len ? (unsigned char) p->s[p->pos] : -1;
}

static gboolean
expect_literal (json_parser *p, const char *lit)
{
  const gsize n = strlen (lit);
  if (p->len - p->pos < n || memcmp (p->s + p->pos, lit, n) != 0)
    return json_fail (p, "expected '%s'", lit);
  p->pos += n;
  return TRUE;
}

static tu_json *
new_value (tu_json_type type)
{
  tu_json *v = g_new0 (tu_json, 1);
  v->type = type;
  return v;
}

static int
hex4 (json_parser *p)
{
  int v = 0;
  if (p->len - p->pos < 4)
    return -1;
  for (int i = 0; i < 4; i++) {
    const int d = g_ascii_xdigit_value (p->s[p->pos + i]);
    if (d < 0)
      return -1;
    v = v * 16 + d;
  }
  p->pos += 4;
  return v;
}

/* After "\u": one code point, joining a surrogate pair. */
static gboolean
parse_unicode_escape (json_parser *p, GString *out)
{
  int cp = hex4 (p);
  if (cp < 0)
    return json_fail (p, "bad \\u escape");
  if (cp >= 0xd800 && cp <= 0xdbff) {
    int lo;
    if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
      return json_fail (p, "unpaired high surrogate");
    p->pos += 2;
    lo = hex4 (p);
    if (lo < 0xdc00 || lo > 0xdfff)
      return json_fail (p, "bad low surrogate");
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
  } else if (cp >= 0xdc00 && cp <= 0xdfff) {
    return json_fail (p, "unpaired low surrogate");
  }
  g_string_append_unichar (out, (gunichar) cp);
  return TRUE;
}

static gboolean
parse_escape (json_parser *p, GString *out)
{
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const int c = peek (p);
  const char *k = c > 0 ? strchr (from, c) : NULL;

  p->pos++;
  if (c == 'u')
    return parse_unicode_escape (p, out);
  if (!k)
    return json_fail (p, "bad escape");
  g_string_append_c (out, to[k - from]);
  return TRUE;
}

/* At the opening quote. Returns the raw string (with length) or NULL. */
static char *
parse_string_raw (json_parser *p, gsize *len)
{
  GString *out = g_string_new (NULL);

  p->pos++;  /* opening quote */
  for (;;) {
    const int c = peek (p);
    if (c < 0) {
      json_fail (p, "unterminated string");
      break;
    }
    if (c == '"') {
      p->pos++;
      if (!utf8_valid_with_nuls (out->str, out->len)) {
        json_fail (p, "string is not valid UTF-8");
        break;
      }
      *len = out->len;
      return g_string_free (out, FALSE);
    }
    if (c < 0x20) {
      json_fail (p, "control character in string");
      break;
    }
    if (c == '\\') {
      p->pos++;
      if (!parse_escape (p, out))
        break;
      continue;
    }
    g_string_append_c (out, (char) c);
    p->pos++;
  }
  g_string_free (out, TRUE);
  return NULL;
}

static tu_json *
parse_number (json_parser *p)
{
  /* JSON's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? — checked, then converted
   * with the locale-independent g_ascii_strtod over a bounded copy. */
  const gsize start = p->pos;
  gsize digits;

  if (peek (p) == '-')
    p->pos++;
  for (digits = 0; g_ascii_isdigit (peek (p)); digits++)
    p->pos++;
  if (digits == 0 || (digits > 1 && p->s[p->pos - digits] == '0'))
    return json_fail (p, "bad number"), NULL;
  if (peek (p) == '.') {
    p->pos++;
    for (digits = 0; g_ascii_isdigit (peek (p)); digits++)
      p->pos++;
    if (digits == 0)
      return json_fail (p, "bad fraction"), NULL;
  }
  if (peek (p) == 'e' || peek (p) == 'E') {
    p->pos++;
    if (peek (p) == '+' || peek (p) == '-')
      p->pos++;
    for (digits = 0; g_ascii_isdigit (peek (p)); digits++)
      p->pos++;
    if (digits == 0)
      return json_fail (p, "bad exponent"), NULL;
  }
  char *copy = g_strndup (p->s + start, p->pos - start);
  tu_json *v = new_value (TU_JSON_NUMBER);
  v->number = g_ascii_strtod (copy, NULL);
  g_free (copy);
  return v;
}

/* Elements separated by commas up to `close`; for objects each element is "key": value. */
static tu_json *
parse_container (json_parser *p, guint depth, gboolean object)
{
  const char close = object ? '}' : ']';
  tu_json *v = new_value (object ? TU_JSON_OBJECT : TU_JSON_ARRAY);
  v->items = g_ptr_array_new_with_free_func ((GDestroyNotify) tu_json_free);
  if (object)
    v->keys = g_ptr_array_new_with_free_func (g_free);

  p->pos++;  /* opening bracket */
  skip_ws (p);
  if (peek (p) == close) {
    p->pos++;
    return v;
  }
  for (;;) {
    skip_ws (p);
    if (object) {
      gsize klen;
      char *key = peek (p) == '"' ? parse_string_raw (p, &klen) : NULL;
      if (!key) {
        json_fail (p, "expected a member name");
        break;
      }
      g_ptr_array_add (v->keys, key);
      skip_ws (p);
      if (peek (p) != ':') {
        json_fail (p, "expected ':'");
        break;
      }
      p->pos++;
    }
    tu_json *item = parse_value (p, depth + 1);
    if (!item)
      break;
    g_ptr_array_add (v->items, item);
    skip_ws (p);
    if (peek (p) == ',') {
      p->pos++;
      continue;
    }
    if (peek (p) == close) {
      p->pos++;
      return v;
    }
    json_fail (p, "expected ',' or '%c'", close);
    break;
  }
  tu_json_free (v);
  return NULL;
}

static tu_json *
parse_value (json_parser *p, guint depth)
{
  tu_json *v;

  if (depth > TU_JSON_MAX_DEPTH)
    return json_fail (p, "nested too deeply"), NULL;
  skip_ws (p);
  switch (peek (p)) {
    case '{':
      return parse_container (p, depth, TRUE);
    case '[':
      return parse_container (p, depth, FALSE);
    case '"': {
      gsize len;
      char *s = parse_string_raw (p, &len);
      if (!s)
        return NULL;
      v = new_value (TU_JSON_STRING);
      v->string = s;
      v->len = len;
      return v;
    }
    case 't':
    case 'f':
      v = new_value (TU_JSON_BOOL);
      v->boolean = peek (p) == 't';
      if (!expect_literal (p, v->boolean ? "true" : "false")) {
        tu_json_free (v);
        return NULL;
      }
      return v;
    case 'n':
      return expect_literal (p, "null") ? new_value (TU_JSON_NULL) : NULL;
    default:
      if (peek (p) == '-' || g_ascii_isdigit (peek (p)))
        return parse_number (p);
      return json_fail (p, "unexpected character"), NULL;
  }
}

tu_json *
tu_json_parse (const char *text, gsize len, GError **error)
{
  json_parser p = { text, len, 0, error };
  tu_json *v = parse_value (&p, 0);
  if (!v)
    return NULL;
  skip_ws (&p);
  if (p.pos != p.len) {
    json_fail (&p, "trailing data");
    tu_json_free (v);
    return NULL;
  }
  return v;
}

tu_json *
tu_json_load (const char *path, GError **error)
{
  char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents (path, &text, &len, error))
    return NULL;
  tu_json *v = tu_json_parse (text, len, error);
  if (!v)
    g_prefix_error (error, "%s: ", path);
  g_free (text);
  return v;
}

void
tu_json_free (tu_json *v)
{
  if (!v)
    return;
  g_free (v->string);
  if (v->items)
    g_ptr_array_unref (v->items);
  if (v->keys)
    g_ptr_array_unref (v->keys);
  g_free (v);
}

gboolean
tu_json_is (const tu_json *v, tu_json_type type)
{
  return v && v->type == type;
}

const tu_json *
tu_json_get (const tu_json *obj, const char *key)
{
  if (!tu_json_is (obj, TU_JSON_OBJECT) || !key)
    return NULL;
  for (guint i = 0; i < obj->keys->len; i++)
    if (strcmp (obj->keys->pdata[i], key) == 0)
      return obj->items->pdata[i];
  return NULL;
}

const tu_json *
tu_json_path (const tu_json *v, const char *path)
{
  char **parts = g_strsplit (path, ".", -1);
  for (char **c = parts; v && *c; c++) {
    char *end;
    const guint64 idx = g_ascii_strtoull (*c, &end, 10);
    if (tu_json_is (v, TU_JSON_ARRAY) && **c && !*end)
      v = idx < G_MAXUINT ? tu_json_at (v, (guint) idx) : NULL;
    else
      v = tu_json_get (v, *c);
  }
  g_strfreev (parts);
  return v;
}

guint
tu_json_length (const tu_json *v)
{
  return v && v->items ? v->items->len : 0;
}

const tu_json *
tu_json_at (const tu_json *v, guint i)
{
  return v && v->items && i < v->items->len ? v->items->pdata[i] : NULL;
}

const char *
tu_json_key_at (const tu_json *obj, guint i)
{
  return tu_json_is (obj, TU_JSON_OBJECT) && i < obj->keys->len ? obj->keys->pdata[i] : NULL;
}

const char *
tu_json_string (const tu_json *v)
{
  return tu_json_is (v, TU_JSON_STRING) ? v->string : NULL;
}

double
tu_json_number (const tu_json *v)
{
  return tu_json_is (v, TU_JSON_NUMBER) ? v->number : 0.0;
}

gint64
tu_json_int (const tu_json *v)
{
  return tu_json_is (v, TU_JSON_NUMBER) ? (gint64) v->number : 0;
}

gboolean
tu_json_bool (const tu_json *v)
{
  return tu_json_is (v, TU_JSON_BOOL) && v->boolean;
}

GArray *
tu_json_int_array (const tu_json *v)
{
  if (!tu_json_is (v, TU_JSON_ARRAY))
    return NULL;
  GArray *out = g_array_sized_new (FALSE, FALSE, sizeof (gint64), v->items->len);
  for (guint i = 0; i < v->items->len; i++) {
    const tu_json *e = v->items->pdata[i];
    /* Exact integers only: 2^53 bounds what a double holds exactly. */
    if (!tu_json_is (e, TU_JSON_NUMBER) || e->number != floor (e->number) || fabs (e->number) > 9007199254740992.0) {
      g_array_unref (out);
      return NULL;
    }
    const gint64 x = (gint64) e->number;
    g_array_append_val (out, x);
  }
  return out;
}
