/* gst-canary — safetensors reader (see safetensors.h). The JSON header is parsed with json-glib;
 * what it says is then checked against the file: known dtypes, shapes whose byte size fits and
 * equals the range, ranges inside the data and not overlapping one another.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "safetensors.h"

#include "util.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* A header this large is not a weights file; the spec's own reference reader caps it at 100 MB. */
#define MAX_HEADER (100u << 20)
#define MAX_DIMS 8

typedef struct {
  char *name;
  char dtype[8];
  int ndim;
  gint64 shape[MAX_DIMS];
  gsize begin, end;             /* byte range in the data section */
} Tensor;

struct _canary_safetensors {
  guint8 *bytes;                /* the whole file */
  gsize len;
  gsize data_offset, data_len;  /* the data section after the header */
  GArray *tensors;              /* of Tensor, in header order */
  char *what;
};

static void
tensor_clear (gpointer p)
{
  g_free (((Tensor *) p)->name);
}

void
canary_safetensors_free (canary_safetensors *st)
{
  if (!st)
    return;
  g_array_unref (st->tensors);
  g_free (st->bytes);
  g_free (st->what);
  g_free (st);
}

/* Bytes per element of the dtypes the format defines; 0 for an unknown name. */
static gsize
dtype_size (const char *dtype)
{
  static const struct { const char *name; gsize size; } table[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
    {"I8", 1}, {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1},
    {"F8_E4M3", 1}, {"F8_E5M2", 1},
  };
  for (gsize i = 0; i < G_N_ELEMENTS (table); i++) {
    if (strcmp (dtype, table[i].name) == 0)
      return table[i].size;
  }
  return 0;
}

/* An integer JSON value >= 0 (json-glib keeps integers and reals apart: 1.0 is refused). */
static gboolean
get_count (JsonNode *node, gint64 *out)
{
  if (!node || !JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (node);
  return *out >= 0;
}

static gboolean
parse_tensor (canary_safetensors *st, const char *name, JsonNode *node, Tensor *t,
    GError **error)
{
  const char *what = st->what;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return canary_fail (error, CANARY_ERROR_FORMAT, what, "tensor '%s' is not a JSON object", name);
  JsonObject *o = json_node_get_object (node);

  JsonNode *dt = json_object_get_member (o, "dtype");
  if (!dt || !JSON_NODE_HOLDS_VALUE (dt) || json_node_get_value_type (dt) != G_TYPE_STRING)
    return canary_fail (error, CANARY_ERROR_FORMAT, what, "tensor '%s' has no dtype string", name);
  const char *dtype = json_node_get_string (dt);
  gsize esize = dtype_size (dtype);
  if (esize == 0)
    return canary_fail (error, CANARY_ERROR_FORMAT, what, "tensor '%s' has unknown dtype '%.16s'",
        name, dtype);
  g_strlcpy (t->dtype, dtype, sizeof t->dtype);

  JsonNode *sh = json_object_get_member (o, "shape");
  if (!sh || !JSON_NODE_HOLDS_ARRAY (sh))
    return canary_fail (error, CANARY_ERROR_FORMAT, what, "tensor '%s' has no shape array", name);
  JsonArray *dims = json_node_get_array (sh);
  guint nd = json_array_get_length (dims);
  if (nd > MAX_DIMS)
    return canary_fail (error, CANARY_ERROR_FORMAT, what, "tensor '%s' has %u dimensions (at most %d)",
        name, nd, MAX_DIMS);
  gsize bytes = esize;
  for (guint d = 0; d < nd; d++) {
    gint64 v;
    if (!get_count (json_array_get_element (dims, d), &v))
      return canary_fail (error, CANARY_ERROR_FORMAT, what,
          "tensor '%s': shape[%u] is not a non-negative integer", name, d);
    if ((guint64) v > G_MAXSIZE || !canary_mul_size (bytes, (gsize) v, &bytes))
      return canary_fail (error, CANARY_ERROR_FORMAT, what, "tensor '%s': shape overflows", name);
    t->shape[d] = v;
  }
  t->ndim = (int) nd;

  JsonNode *off = json_object_get_member (o, "data_offsets");
  gint64 b, e;
  if (!off || !JSON_NODE_HOLDS_ARRAY (off) || json_array_get_length (json_node_get_array (off)) != 2
      || !get_count (json_array_get_element (json_node_get_array (off), 0), &b)
      || !get_count (json_array_get_element (json_node_get_array (off), 1), &e))
    return canary_fail (error, CANARY_ERROR_FORMAT, what,
        "tensor '%s' has no data_offsets [begin, end]", name);
  if (b > e || (guint64) e > st->data_len)
    return canary_fail (error, CANARY_ERROR_FORMAT, what,
        "tensor '%s': bytes [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ") are outside the %"
        G_GSIZE_FORMAT " bytes of data", name, b, e, st->data_len);
  if ((guint64) (e - b) != bytes)
    return canary_fail (error, CANARY_ERROR_FORMAT, what,
        "tensor '%s': %" G_GINT64_FORMAT " bytes for a shape of %" G_GSIZE_FORMAT, name, e - b,
        bytes);
  t->begin = (gsize) b;
  t->end = (gsize) e;
  t->name = g_strdup (name);
  return TRUE;
}

static gint
compare_begin (gconstpointer a, gconstpointer b)
{
  const Tensor *x = *(const Tensor *const *) a, *y = *(const Tensor *const *) b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* No two tensors share a byte (empty tensors share none). */
static gboolean
check_overlaps (canary_safetensors *st, GError **error)
{
  guint n = st->tensors->len;
  g_autofree Tensor **sorted = g_new (Tensor *, n ? n : 1);
  for (guint i = 0; i < n; i++)
    sorted[i] = &g_array_index (st->tensors, Tensor, i);
  qsort (sorted, n, sizeof *sorted, (int (*) (const void *, const void *)) compare_begin);
  gsize end = 0;
  const char *prev = NULL;
  for (guint i = 0; i < n; i++) {
    if (sorted[i]->begin == sorted[i]->end)
      continue;
    if (prev && sorted[i]->begin < end)
      return canary_fail (error, CANARY_ERROR_FORMAT, st->what, "tensors '%s' and '%s' overlap",
          prev, sorted[i]->name);
    end = sorted[i]->end;
    prev = sorted[i]->name;
  }
  return TRUE;
}

static gboolean
parse_header (canary_safetensors *st, GError **error)
{
  const guint8 *b = st->bytes;
  gsize len = st->len;

  if (len < 8)
    return canary_fail (error, CANARY_ERROR_FORMAT, st->what, "%" G_GSIZE_FORMAT
        " bytes: too short for a safetensors file", len);
  guint64 n = 0;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | b[i];
  if (n < 2 || n > MAX_HEADER || n > len - 8)
    return canary_fail (error, CANARY_ERROR_FORMAT, st->what, "header length %" G_GUINT64_FORMAT
        " does not fit the file's %" G_GSIZE_FORMAT " bytes (not a safetensors file?)", n, len);
  if (memchr (b + 8, '\0', n))
    return canary_fail (error, CANARY_ERROR_FORMAT, st->what, "header holds a NUL byte");
  st->data_offset = 8 + (gsize) n;
  st->data_len = len - st->data_offset;

  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  GError *jerr = NULL;
  if (!json_parser_load_from_data (parser, (const gchar *) b + 8, (gssize) n, &jerr)) {
    canary_fail (error, CANARY_ERROR_FORMAT, st->what, "header is not JSON: %s", jerr->message);
    g_error_free (jerr);
    return FALSE;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    return canary_fail (error, CANARY_ERROR_FORMAT, st->what, "header is not a JSON object");

  JsonObject *obj = json_node_get_object (root);
  g_autoptr (GList) members = json_object_get_members (obj);  /* in file order */
  for (GList *l = members; l; l = l->next) {
    const char *name = l->data;
    JsonNode *node = json_object_get_member (obj, name);
    if (strcmp (name, "__metadata__") == 0) {
      if (!JSON_NODE_HOLDS_OBJECT (node))
        return canary_fail (error, CANARY_ERROR_FORMAT, st->what, "__metadata__ is not an object");
      continue;
    }
    Tensor t = {0};
    if (!parse_tensor (st, name, node, &t, error))
      return FALSE;
    g_array_append_val (st->tensors, t);
  }
  return check_overlaps (st, error);
}

canary_safetensors *
canary_safetensors_parse (const guint8 *data, gsize len, const char *what, GError **error)
{
  canary_safetensors *st = g_new0 (canary_safetensors, 1);
  st->bytes = g_memdup2 (data, len ? len : 1);
  st->len = len;
  st->tensors = g_array_new (FALSE, TRUE, sizeof (Tensor));
  g_array_set_clear_func (st->tensors, tensor_clear);
  st->what = g_strdup (what ? what : "<memory>");
  if (!parse_header (st, error)) {
    canary_safetensors_free (st);
    return NULL;
  }
  return st;
}

canary_safetensors *
canary_safetensors_open (const char *path, GError **error)
{
  GMappedFile *map = canary_map_regular_file (path, error);
  if (!map)
    return NULL;
  const gsize len = g_mapped_file_get_length (map);
  canary_safetensors *st = NULL;
  if (len > CANARY_SAFETENSORS_MAX_FILE)
    canary_fail (error, CANARY_ERROR_FORMAT, path, "%" G_GSIZE_FORMAT " bytes: too large for a VAD "
        "model (at most %u MiB)", len, CANARY_SAFETENSORS_MAX_FILE >> 20);
  else
    st = canary_safetensors_parse ((const guint8 *) g_mapped_file_get_contents (map), len, path, error);
  g_mapped_file_unref (map);
  return st;
}

float *
canary_safetensors_get_f32 (canary_safetensors *st, const char *name, int ndim,
    const gint64 *shape, GError **error)
{
  for (guint i = 0; i < st->tensors->len; i++) {
    const Tensor *t = &g_array_index (st->tensors, Tensor, i);
    if (strcmp (t->name, name) != 0)
      continue;
    if (strcmp (t->dtype, "F32") != 0) {
      canary_fail (error, CANARY_ERROR_UNSUPPORTED, st->what, "tensor '%s' is %s, not F32", name,
          t->dtype);
      return NULL;
    }
    if (t->ndim != ndim || memcmp (t->shape, shape, ndim * sizeof *shape) != 0) {
      g_autofree char *want = canary_shape_string (ndim, shape);
      g_autofree char *got = canary_shape_string (t->ndim, t->shape);
      canary_fail (error, CANARY_ERROR_UNSUPPORTED, st->what, "tensor '%s' has shape %s, expected %s",
          name, got, want);
      return NULL;
    }
    gsize n = (t->end - t->begin) / sizeof (float);
    float *out = g_new (float, n ? n : 1);
    const guint8 *src = st->bytes + st->data_offset + t->begin;
    for (gsize k = 0; k < n; k++) {
      guint32 bits;
      memcpy (&bits, src + 4 * k, 4);
      bits = GUINT32_FROM_LE (bits);
      memcpy (out + k, &bits, 4);
    }
    return out;
  }
  canary_fail (error, CANARY_ERROR_FORMAT, st->what, "tensor '%s' is missing", name);
  return NULL;
}

guint
canary_safetensors_n_tensors (const canary_safetensors *st)
{
  return st->tensors->len;
}

const char *
canary_safetensors_tensor_name (const canary_safetensors *st, guint i)
{
  return i < st->tensors->len ? g_array_index (st->tensors, Tensor, i).name : NULL;
}
