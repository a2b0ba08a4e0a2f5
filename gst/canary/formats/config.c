/* gst-canary — model_config.yaml of an EncDecMultiTaskModel → canary_config.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * libyaml's event API builds a small tree (with our own depth and size limits, so hostile input
 * cannot recurse or allocate without bound; aliases are shared, never expanded). Values are read
 * liberally — "128", "128.0" and "1.28e2" are all the integer 128; "2**-24" is a number — and then
 * range-checked strictly. Absent keys take NeMo's defaults (the constructor defaults of
 * AudioToMelSpectrogramPreprocessor, ConformerEncoder, TransformerDecoderNM, MultiTaskDecoding). */
#include "formats/config.h"
#include "util.h"

#include <math.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_NODES (1u << 20)

/* --- YAML tree -------------------------------------------------------------------------------- */

typedef enum { YN_SCALAR, YN_MAP, YN_SEQ } ynode_kind;

typedef struct ynode ynode;
struct ynode {
  ynode_kind kind;
  char *value;             /* scalar text */
  gboolean plain;          /* unquoted scalar: only then do "null", "~" and "" mean null */
  GPtrArray *items;        /* map: key, value, key, value...; seq: elements */
  gsize line;              /* 1-based, for messages */
};

typedef struct {
  GPtrArray *all;          /* every node, for freeing */
  GHashTable *anchors;     /* name → ynode* */
  ynode *root;
} ytree;

static void
ynode_free (gpointer p)
{
  ynode *n = p;
  g_free (n->value);
  if (n->items)
    g_ptr_array_unref (n->items);
  g_free (n);
}

static void
ytree_clear (ytree *t)
{
  if (t->all)
    g_ptr_array_unref (t->all);
  if (t->anchors)
    g_hash_table_unref (t->anchors);
  memset (t, 0, sizeof *t);
}

#define cfg_fail(error, code, ...) canary_fail (error, code, "model_config.yaml", __VA_ARGS__)

static ynode *
ynode_new (ytree *t, ynode_kind kind, const yaml_event_t *ev)
{
  ynode *n = g_new0 (ynode, 1);
  n->kind = kind;
  n->line = ev->start_mark.line + 1;
  if (kind != YN_SCALAR)
    n->items = g_ptr_array_new ();
  g_ptr_array_add (t->all, n);
  return n;
}

static void
register_anchor (ytree *t, const yaml_char_t *anchor, ynode *n)
{
  if (anchor)
    g_hash_table_replace (t->anchors, g_strdup ((const char *) anchor), n);
}

/* Attaches a finished node to the open container, or makes it the root. */
static void
attach (ytree *t, GPtrArray *open, ynode *n)
{
  if (open->len)
    g_ptr_array_add (((ynode *) g_ptr_array_index (open, open->len - 1))->items, n);
  else if (!t->root)
    t->root = n;
}

/* Handles one event; *done is set at the end of the first document. */
static gboolean
handle_event (ytree *t, GPtrArray *open, const yaml_event_t *ev, gboolean *done, GError **error)
{
  ynode *n;
  if (t->all->len >= MAX_NODES)
    return cfg_fail (error, CANARY_ERROR_FORMAT, "more than %u nodes", MAX_NODES);
  switch (ev->type) {
    case YAML_SCALAR_EVENT:
      n = ynode_new (t, YN_SCALAR, ev);
      n->value = g_strndup ((const char *) ev->data.scalar.value, ev->data.scalar.length);
      n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
      register_anchor (t, ev->data.scalar.anchor, n);
      attach (t, open, n);
      return TRUE;
    case YAML_ALIAS_EVENT:
      n = g_hash_table_lookup (t->anchors, ev->data.alias.anchor);
      if (!n)
        return cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: unknown alias '*%s'",
            (gsize) ev->start_mark.line + 1, (const char *) ev->data.alias.anchor);
      attach (t, open, n);
      return TRUE;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
      if (open->len >= MAX_DEPTH)
        return cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: nesting deeper than %d levels",
            (gsize) ev->start_mark.line + 1, MAX_DEPTH);
      n = ynode_new (t, ev->type == YAML_MAPPING_START_EVENT ? YN_MAP : YN_SEQ, ev);
      register_anchor (t, ev->type == YAML_MAPPING_START_EVENT ? ev->data.mapping_start.anchor
                                                                : ev->data.sequence_start.anchor, n);
      g_ptr_array_add (open, n);
      return TRUE;
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
      n = g_ptr_array_steal_index (open, open->len - 1);
      attach (t, open, n);
      return TRUE;
    case YAML_DOCUMENT_END_EVENT:
    case YAML_STREAM_END_EVENT:
      *done = TRUE;
      return TRUE;
    default:
      return TRUE;
  }
}

static gboolean
ytree_parse (ytree *t, const char *text, gsize len, GError **error)
{
  yaml_parser_t parser;
  if (!yaml_parser_initialize (&parser))
    return cfg_fail (error, CANARY_ERROR_OUT_OF_MEMORY, "cannot initialise the YAML parser");
  yaml_parser_set_input_string (&parser, (const unsigned char *) text, len);
  t->all = g_ptr_array_new_with_free_func (ynode_free);
  t->anchors = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GPtrArray *open = g_ptr_array_new ();
  gboolean ok = TRUE, done = FALSE;

  while (ok && !done) {
    yaml_event_t ev;
    if (!yaml_parser_parse (&parser, &ev)) {
      ok = cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: %s", (gsize) parser.problem_mark.line + 1,
          parser.problem ? parser.problem : "YAML syntax error");
      break;
    }
    ok = handle_event (t, open, &ev, &done, error);
    yaml_event_delete (&ev);
  }
  g_ptr_array_unref (open);
  yaml_parser_delete (&parser);
  if (ok && !t->root)
    ok = cfg_fail (error, CANARY_ERROR_FORMAT, "the document is empty");
  return ok;
}

/* --- lookups ---------------------------------------------------------------------------------- */

static gboolean
is_null (const ynode *n)
{
  return !n || (n->kind == YN_SCALAR && n->plain &&
      (!*n->value || !strcmp (n->value, "null") || !strcmp (n->value, "Null") ||
       !strcmp (n->value, "NULL") || !strcmp (n->value, "~")));
}

static ynode *
map_get (const ynode *map, const char *key)
{
  if (!map || map->kind != YN_MAP)
    return NULL;
  for (guint i = 0; i + 1 < map->items->len; i += 2) {
    const ynode *k = g_ptr_array_index (map->items, i);
    if (k->kind == YN_SCALAR && strcmp (k->value, key) == 0)
      return g_ptr_array_index (map->items, i + 1);
  }
  return NULL;
}

/* Follows a dotted path ("preprocessor.features") from `base`. */
static ynode *
get_path (const ynode *base, const char *path)
{
  char **parts = g_strsplit (path, ".", -1);
  ynode *n = (ynode *) base;
  for (int i = 0; n && parts[i]; i++)
    n = map_get (n, parts[i]);
  g_strfreev (parts);
  return n;
}

/* A section (mapping) in which keys are looked up, with its display name for messages. */
typedef struct {
  const ynode *node;
  const char *name;        /* "encoder", "transf_decoder.config_dict", ... */
} section;

static char *
key_name (const section *s, const char *key)
{
  return s->name && *s->name ? g_strdup_printf ("%s.%s", s->name, key) : g_strdup (key);
}

/* --- scalar conversion ------------------------------------------------------------------------ */

/* Parses a number: decimal/float syntax, or "a**b" (OmegaConf keeps 2**-24 as text), or NeMo's
 * "tiny"/"eps" guard names (float32 tiny and epsilon). Everything must be consumed. */
static gboolean
parse_number (const char *s, double *out)
{
  if (!strcmp (s, "tiny")) {
    *out = 1.1754943508222875e-38;
    return TRUE;
  }
  if (!strcmp (s, "eps")) {
    *out = 1.1920928955078125e-07;
    return TRUE;
  }
  const char *pow_op = strstr (s, "**");
  if (pow_op) {
    char *base_s = g_strndup (s, pow_op - s);
    double b, e;
    gboolean ok = parse_number (base_s, &b) && !strstr (pow_op + 2, "**") && parse_number (pow_op + 2, &e);
    g_free (base_s);
    if (!ok)
      return FALSE;
    *out = pow (b, e);
    return isfinite (*out);
  }
  char *end;
  while (g_ascii_isspace (*s))
    s++;
  if (!*s)
    return FALSE;
  *out = g_ascii_strtod (s, &end);
  while (g_ascii_isspace (*end))
    end++;
  return *end == '\0' && isfinite (*out);
}

typedef enum { OPTIONAL, REQUIRED } presence;

/* Looks `key` up; FALSE with an error if it is required and absent/null or not a scalar. Sets
 * *node NULL (and returns TRUE) when absent and optional. */
static gboolean
get_scalar (const section *s, const char *key, presence p, const ynode **node, GError **error)
{
  const ynode *n = map_get (s->node, key);
  *node = NULL;
  if (is_null (n)) {
    if (p == OPTIONAL)
      return TRUE;
    char *k = key_name (s, key);
    cfg_fail (error, CANARY_ERROR_FORMAT, "required key '%s' is missing", k);
    g_free (k);
    return FALSE;
  }
  if (n->kind != YN_SCALAR) {
    char *k = key_name (s, key);
    cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: '%s' must be a scalar, not a %s", n->line, k,
        n->kind == YN_MAP ? "mapping" : "list");
    g_free (k);
    return FALSE;
  }
  *node = n;
  return TRUE;
}

static gboolean
get_int (const section *s, const char *key, presence p, int def, int min, int max, int *out,
    GError **error)
{
  const ynode *n;
  if (!get_scalar (s, key, p, &n, error))
    return FALSE;
  *out = def;
  if (!n)
    return TRUE;
  double v;
  char *k = key_name (s, key);
  gboolean ok = TRUE;
  if (!parse_number (n->value, &v) || v != floor (v))
    ok = cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: '%s' must be an integer, got '%s'", n->line, k, n->value);
  else if (v < min || v > max)
    ok = cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: '%s' = %s is out of range [%d, %d]", n->line, k,
        n->value, min, max);
  else
    *out = (int) v;
  g_free (k);
  return ok;
}

static gboolean
get_double (const section *s, const char *key, double def, double min, double max, double *out,
    GError **error)
{
  const ynode *n;
  if (!get_scalar (s, key, OPTIONAL, &n, error))
    return FALSE;
  *out = def;
  if (!n)
    return TRUE;
  double v;
  char *k = key_name (s, key);
  gboolean ok = TRUE;
  if (!parse_number (n->value, &v))
    ok = cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: '%s' must be a number, got '%s'", n->line, k, n->value);
  else if (v < min || v > max)
    ok = cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: '%s' = %s is out of range [%g, %g]", n->line, k,
        n->value, min, max);
  else
    *out = v;
  g_free (k);
  return ok;
}

static gboolean
get_bool (const section *s, const char *key, gboolean def, gboolean *out, GError **error)
{
  static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "1" };
  static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "0" };
  const ynode *n;
  if (!get_scalar (s, key, OPTIONAL, &n, error))
    return FALSE;
  *out = def;
  if (!n)
    return TRUE;
  for (gsize i = 0; i < G_N_ELEMENTS (yes); i++) {
    if (!strcmp (n->value, yes[i])) {
      *out = TRUE;
      return TRUE;
    }
    if (!strcmp (n->value, no[i])) {
      *out = FALSE;
      return TRUE;
    }
  }
  char *k = key_name (s, key);
  cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: '%s' must be a boolean, got '%s'", n->line, k, n->value);
  g_free (k);
  return FALSE;
}

/* New string (g_free) or a copy of `def` (may be NULL) when absent. */
static gboolean
get_string (const section *s, const char *key, presence p, const char *def, char **out, GError **error)
{
  const ynode *n;
  if (!get_scalar (s, key, p, &n, error))
    return FALSE;
  g_free (*out);
  *out = g_strdup (n ? n->value : def);
  return TRUE;
}

/* Requires a string key to be one of `allowed` (NULL-terminated) → UNSUPPORTED otherwise. */
static gboolean
check_one_of (const section *s, const char *key, const char *value, const char *const *allowed,
    GError **error)
{
  for (int i = 0; allowed[i]; i++)
    if (value && !strcmp (value, allowed[i]))
      return TRUE;
  char *k = key_name (s, key), *list = g_strjoinv ("', '", (char **) allowed);
  cfg_fail (error, CANARY_ERROR_UNSUPPORTED, "'%s' = '%s' is not supported (expected '%s')", k,
      value ? value : "null", list);
  g_free (k);
  g_free (list);
  return FALSE;
}

/* `_target_` class paths are compared by their last component. */
static gboolean
check_target (const section *s, const char *what, const char *const *classes, GError **error)
{
  const ynode *n = map_get (s->node, "_target_");
  if (is_null (n) || n->kind != YN_SCALAR)
    return TRUE;
  const char *dot = strrchr (n->value, '.');
  const char *cls = dot ? dot + 1 : n->value;
  for (int i = 0; classes[i]; i++)
    if (!strcmp (cls, classes[i]))
      return TRUE;
  return cfg_fail (error, CANARY_ERROR_UNSUPPORTED, "%s._target_ is '%s'; only %s is supported", what,
      n->value, classes[0]);
}

static gboolean
get_section (const ynode *root, const char *path, presence p, section *out, GError **error)
{
  const ynode *n = get_path (root, path);
  out->node = n;
  out->name = path;
  if (n && n->kind == YN_MAP)
    return TRUE;
  if (!is_null (n))
    return cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: '%s' must be a mapping", n->line, path);
  out->node = NULL;
  if (p == OPTIONAL)
    return TRUE;
  return cfg_fail (error, CANARY_ERROR_UNSUPPORTED,
      "not a Canary (EncDecMultiTaskModel) config: required key '%s' is missing", path);
}

/* --- sections --------------------------------------------------------------------------------- */

static gboolean
parse_preprocessor (const ynode *root, canary_config *c, GError **error)
{
  static const char *const classes[] = { "AudioToMelSpectrogramPreprocessor", NULL };
  static const char *const guard_types[] = { "add", "clamp", NULL };
  section top = { root, "" }, s;
  if (!get_section (root, "preprocessor", REQUIRED, &s, error) || !check_target (&s, "preprocessor", classes, error))
    return FALSE;

  int top_rate, frame_splicing, n_fft_default, feat_in;
  double window_size, window_stride;
  if (!get_int (&top, "sample_rate", OPTIONAL, 16000, 1000, 384000, &top_rate, error) ||
      !get_int (&s, "sample_rate", OPTIONAL, top_rate, 1000, 384000, &c->sample_rate, error) ||
      !get_double (&s, "window_size", 0.02, 1e-4, 1.0, &window_size, error) ||
      !get_double (&s, "window_stride", 0.01, 1e-4, 1.0, &window_stride, error))
    return FALSE;
  /* NeMo: n_window_size = int(window_size * sample_rate) unless given in samples. */
  if (!get_int (&s, "n_window_size", OPTIONAL, (int) (window_size * c->sample_rate), 1, 1 << 16, &c->n_window_size, error) ||
      !get_int (&s, "n_window_stride", OPTIONAL, (int) (window_stride * c->sample_rate), 1, 1 << 16, &c->n_window_stride, error))
    return FALSE;
  if (c->n_window_size < 1 || c->n_window_stride < 1)
    return cfg_fail (error, CANARY_ERROR_FORMAT, "preprocessor window_size/window_stride give an empty window");
  n_fft_default = 1;
  while (n_fft_default < c->n_window_size)
    n_fft_default *= 2;  /* 2 ** ceil(log2(n_window_size)) */
  if (!get_int (&s, "n_fft", OPTIONAL, n_fft_default, 1, 1 << 16, &c->n_fft, error) ||
      !get_int (&s, "features", OPTIONAL, 64, 1, 1024, &c->n_mels, error) ||
      !get_string (&s, "window", OPTIONAL, "hann", &c->window, error) ||
      !get_string (&s, "normalize", OPTIONAL, "per_feature", &c->normalize, error) ||
      !get_double (&s, "preemph", 0.97, 0.0, 1.0, &c->preemph, error) ||
      !get_double (&s, "log_zero_guard_value", 5.9604644775390625e-08, 0.0, 1.0, &c->log_zero_guard_value, error) ||
      !get_string (&s, "log_zero_guard_type", OPTIONAL, "add", &c->log_zero_guard_type, error) ||
      !get_double (&s, "mag_power", 2.0, 1e-3, 16.0, &c->mag_power, error) ||
      !get_bool (&s, "log", TRUE, &c->log, error) ||
      !get_bool (&s, "exact_pad", FALSE, &c->exact_pad, error) ||
      !get_int (&s, "frame_splicing", OPTIONAL, 1, 1, 1, &frame_splicing, error) ||
      !get_double (&top, "pad_min_duration", 1.0, 0.0, 3600.0, &c->pad_min_duration, error))
    return FALSE;
  /* An explicit null switches these stages off in NeMo (unlike other keys, where null means
   * "use the default"). */
  if (map_get (s.node, "normalize") && is_null (map_get (s.node, "normalize"))) {
    g_free (c->normalize);
    c->normalize = g_strdup ("none");
  }
  if (map_get (s.node, "preemph") && is_null (map_get (s.node, "preemph")))
    c->preemph = 0.0;
  if (c->n_fft < c->n_window_size)
    return cfg_fail (error, CANARY_ERROR_FORMAT, "preprocessor.n_fft (%d) is smaller than the window (%d samples)",
        c->n_fft, c->n_window_size);
  if (!check_one_of (&s, "log_zero_guard_type", c->log_zero_guard_type, guard_types, error))
    return FALSE;
  /* The encoder's feat_in must match what the preprocessor produces. */
  section enc = { get_path (root, "encoder"), "encoder" };
  if (!get_int (&enc, "feat_in", OPTIONAL, c->n_mels, 1, 1024, &feat_in, error))
    return FALSE;
  if (feat_in != c->n_mels)
    return cfg_fail (error, CANARY_ERROR_FORMAT, "encoder.feat_in (%d) differs from preprocessor.features (%d)",
        feat_in, c->n_mels);
  return TRUE;
}

/* att_context_size must be absent, null or [-1, -1] (full attention). */
static gboolean
check_att_context (const section *s, GError **error)
{
  const ynode *n = map_get (s->node, "att_context_size");
  if (is_null (n))
    return TRUE;
  gboolean full = n->kind == YN_SEQ && n->items->len == 2;
  for (guint i = 0; full && i < 2; i++) {
    const ynode *v = g_ptr_array_index (n->items, i);
    double d;
    full = v->kind == YN_SCALAR && parse_number (v->value, &d) && d == -1;
  }
  if (!full)
    return cfg_fail (error, CANARY_ERROR_UNSUPPORTED, "line %zu: encoder.att_context_size: only full attention "
        "([-1, -1]) is supported", n->line);
  return TRUE;
}

static gboolean
parse_encoder (const ynode *root, canary_config *c, GError **error)
{
  static const char *const classes[] = { "ConformerEncoder", NULL };
  static const char *const subsampling[] = { "dw_striding", NULL };
  static const char *const attention[] = { "rel_pos", NULL };
  static const char *const norms[] = { "batch_norm", NULL };
  section s;
  gboolean causal;
  if (!get_section (root, "encoder", REQUIRED, &s, error) || !check_target (&s, "encoder", classes, error))
    return FALSE;
  if (!get_int (&s, "n_layers", REQUIRED, 0, 1, 1024, &c->enc_layers, error) ||
      !get_int (&s, "d_model", REQUIRED, 0, 1, 1 << 16, &c->enc_d_model, error) ||
      !get_int (&s, "n_heads", OPTIONAL, 4, 1, 1024, &c->enc_heads, error) ||
      !get_int (&s, "ff_expansion_factor", OPTIONAL, 4, 1, 64, &c->enc_ff_expansion, error) ||
      !get_int (&s, "conv_kernel_size", OPTIONAL, 31, 1, 1023, &c->enc_conv_kernel, error) ||
      !get_string (&s, "subsampling", OPTIONAL, "striding", &c->subsampling, error) ||
      !get_int (&s, "subsampling_factor", OPTIONAL, 4, 1, 256, &c->subsampling_factor, error) ||
      !get_int (&s, "subsampling_conv_channels", OPTIONAL, -1, -1, 1 << 16, &c->subsampling_channels, error) ||
      !get_string (&s, "self_attention_model", OPTIONAL, "rel_pos", &c->self_attention_model, error) ||
      !get_bool (&s, "untie_biases", TRUE, &c->untie_biases, error) ||
      !get_bool (&s, "xscaling", TRUE, &c->xscaling, error) ||
      !get_string (&s, "conv_norm_type", OPTIONAL, "batch_norm", &c->conv_norm_type, error) ||
      !get_int (&s, "feat_out", OPTIONAL, -1, -1, 1 << 16, &c->feat_out, error) ||
      !get_bool (&s, "causal_downsampling", FALSE, &causal, error))
    return FALSE;
  if (c->subsampling_channels == -1)
    c->subsampling_channels = c->enc_d_model;  /* NeMo: -1 means d_model */
  if (c->subsampling_channels < 1 || c->feat_out == 0)
    return cfg_fail (error, CANARY_ERROR_FORMAT, "encoder.subsampling_conv_channels / feat_out out of range");
  if (c->enc_d_model % c->enc_heads)
    return cfg_fail (error, CANARY_ERROR_FORMAT, "encoder.n_heads (%d) does not divide encoder.d_model (%d)",
        c->enc_heads, c->enc_d_model);
  if (c->enc_conv_kernel % 2 == 0)
    return cfg_fail (error, CANARY_ERROR_FORMAT, "encoder.conv_kernel_size (%d) must be odd", c->enc_conv_kernel);
  if (c->subsampling_factor < 2 || (c->subsampling_factor & (c->subsampling_factor - 1)))
    return cfg_fail (error, CANARY_ERROR_UNSUPPORTED, "encoder.subsampling_factor %d is not a power of two >= 2",
        c->subsampling_factor);
  if (!check_one_of (&s, "subsampling", c->subsampling, subsampling, error) ||
      !check_one_of (&s, "self_attention_model", c->self_attention_model, attention, error) ||
      !check_one_of (&s, "conv_norm_type", c->conv_norm_type, norms, error) || !check_att_context (&s, error))
    return FALSE;
  if (causal)
    return cfg_fail (error, CANARY_ERROR_UNSUPPORTED, "encoder.causal_downsampling: true is not supported");
  if (!is_null (map_get (s.node, "reduction")))
    return cfg_fail (error, CANARY_ERROR_UNSUPPORTED, "encoder.reduction is not supported");
  return TRUE;
}

static gboolean
parse_decoder (const ynode *root, canary_config *c, GError **error)
{
  static const char *const acts[] = { "relu", NULL };
  section td, s, head;
  if (!get_section (root, "transf_decoder", REQUIRED, &td, error) ||
      !get_section (root, "transf_decoder.config_dict", OPTIONAL, &s, error))
    return FALSE;
  if (!s.node)
    s = td;  /* legacy layout: the decoder keys directly under transf_decoder */

  int vocab_fallback;
  if (!get_int (&s, "num_layers", REQUIRED, 0, 1, 1024, &c->dec_layers, error) ||
      !get_int (&s, "hidden_size", REQUIRED, 0, 1, 1 << 16, &c->dec_hidden, error) ||
      !get_int (&s, "inner_size", REQUIRED, 0, 1, 1 << 20, &c->dec_inner, error) ||
      !get_int (&s, "num_attention_heads", OPTIONAL, 1, 1, 1024, &c->dec_heads, error) ||
      !get_int (&s, "max_sequence_length", OPTIONAL, 512, 1, 1 << 20, &c->dec_max_seq_len, error) ||
      !get_string (&s, "hidden_act", OPTIONAL, "relu", &c->dec_hidden_act, error) ||
      !get_bool (&s, "pre_ln", FALSE, &c->dec_pre_ln, error) ||
      !get_int (&s, "vocab_size", OPTIONAL, -1, 1, 1 << 24, &vocab_fallback, error))
    return FALSE;
  if (c->dec_hidden % c->dec_heads)
    return cfg_fail (error, CANARY_ERROR_FORMAT, "%s.num_attention_heads (%d) does not divide hidden_size (%d)",
        s.name, c->dec_heads, c->dec_hidden);
  if (!check_one_of (&s, "hidden_act", c->dec_hidden_act, acts, error))
    return FALSE;
  if (!c->dec_pre_ln)
    return cfg_fail (error, CANARY_ERROR_UNSUPPORTED, "%s.pre_ln is false (or absent): post-LN decoders are not "
        "supported", s.name);

  if (!get_section (root, "head", OPTIONAL, &head, error) ||
      !get_int (&head, "num_classes", OPTIONAL, vocab_fallback, 1, 1 << 24, &c->vocab_size, error))
    return FALSE;
  return TRUE;
}

static gboolean
parse_decoding (const ynode *root, canary_config *c, GError **error)
{
  section s;
  if (!get_section (root, "decoding.beam", OPTIONAL, &s, error))
    return FALSE;
  /* NeMo reads beam.length_penalty (the configs' len_pen is never read): default 0. An absent
   * max_generation_delta is -1 in NeMo (AEDBeamInferConfig): no cap beyond max_sequence_length. */
  return get_int (&s, "beam_size", OPTIONAL, 1, 1, 1024, &c->beam_size, error) &&
      get_double (&s, "length_penalty", 0.0, -100.0, 100.0, &c->length_penalty, error) &&
      get_int (&s, "max_generation_delta", OPTIONAL, -1, -1, 1 << 20, &c->max_generation_delta, error);
}

static void
tokenizer_lang_free (gpointer p)
{
  canary_tokenizer_lang *l = p;
  g_free (l->lang);
  g_free (l->model_path);
  g_free (l);
}

static gboolean
parse_tokenizer (const ynode *root, canary_config *c, GError **error)
{
  static const char *const types[] = { "agg", "bpe", NULL };
  section s, langs;
  char *type = NULL;
  if (!get_section (root, "tokenizer", REQUIRED, &s, error) ||
      !get_section (root, "tokenizer.langs", OPTIONAL, &langs, error) ||
      !get_string (&s, "type", OPTIONAL, langs.node ? "agg" : "bpe", &type, error))
    goto fail;
  if (!check_one_of (&s, "type", type, types, error))
    goto fail;

  if (!strcmp (type, "bpe")) {
    c->tokenizer_kind = CANARY_TOKENIZER_UNIFIED;
    if (!get_string (&s, "model_path", REQUIRED, NULL, &c->tokenizer_model_path, error))
      goto fail;
  } else {
    c->tokenizer_kind = CANARY_TOKENIZER_AGGREGATE;
    if (!langs.node) {
      cfg_fail (error, CANARY_ERROR_FORMAT, "tokenizer.type is 'agg' but required key 'tokenizer.langs' is missing");
      goto fail;
    }
    for (guint i = 0; i + 1 < langs.node->items->len; i += 2) {
      const ynode *k = g_ptr_array_index (langs.node->items, i);
      const ynode *v = g_ptr_array_index (langs.node->items, i + 1);
      if (k->kind != YN_SCALAR || v->kind != YN_MAP) {
        cfg_fail (error, CANARY_ERROR_FORMAT, "line %zu: tokenizer.langs entries must be 'lang: {model_path: ...}'", k->line);
        goto fail;
      }
      char *name = g_strdup_printf ("tokenizer.langs.%s", k->value);
      section ls = { v, name };
      canary_tokenizer_lang *l = g_new0 (canary_tokenizer_lang, 1);
      l->lang = g_strdup (k->value);
      g_ptr_array_add (c->tokenizer_langs, l);
      gboolean ok = get_string (&ls, "model_path", REQUIRED, NULL, &l->model_path, error);
      g_free (name);
      if (!ok)
        goto fail;
    }
    if (c->tokenizer_langs->len == 0) {
      cfg_fail (error, CANARY_ERROR_FORMAT, "tokenizer.langs is empty");
      goto fail;
    }
  }
  g_free (type);
  return TRUE;
fail:
  g_free (type);
  return FALSE;
}

static gboolean
parse_top (const ynode *root, canary_config *c, GError **error)
{
  static const char *const formats[] = { "canary", "canary2", NULL };
  section top = { root, "" };
  char *fmt = NULL;
  if (!get_string (&top, "target", OPTIONAL, NULL, &c->target, error) ||
      !get_string (&top, "nemo_version", OPTIONAL, NULL, &c->nemo_version, error))
    return FALSE;
  if (c->target && !g_str_has_suffix (c->target, "EncDecMultiTaskModel"))
    return cfg_fail (error, CANARY_ERROR_UNSUPPORTED, "target is '%s', not an EncDecMultiTaskModel (Canary)", c->target);
  /* Configs from before prompt formats were named (canary-1b, NeMo 1.23) used the canary one. */
  if (!get_string (&top, "prompt_format", OPTIONAL, "canary", &fmt, error))
    return FALSE;
  gboolean ok = check_one_of (&top, "prompt_format", fmt, formats, error);
  if (ok)
    c->prompt_format = !strcmp (fmt, "canary2") ? CANARY_PROMPT_CANARY2 : CANARY_PROMPT_CANARY;
  g_free (fmt);
  return ok;
}

canary_config *
canary_config_parse (const char *yaml, gsize len, GError **error)
{
  ytree t = { 0 };
  if (!ytree_parse (&t, yaml, len, error)) {
    ytree_clear (&t);
    return NULL;
  }
  const ynode *root = t.root;
  /* NeMo strips a `model:` wrapper (training configs); accept it too. */
  const ynode *wrapped = map_get (root, "model");
  if (wrapped && wrapped->kind == YN_MAP && !map_get (root, "encoder"))
    root = wrapped;

  canary_config *c = g_new0 (canary_config, 1);
  c->tokenizer_langs = g_ptr_array_new_with_free_func (tokenizer_lang_free);
  gboolean ok;
  if (root->kind != YN_MAP)
    ok = cfg_fail (error, CANARY_ERROR_FORMAT, "the top level is not a mapping");
  else
    ok = parse_top (root, c, error) && parse_preprocessor (root, c, error) && parse_encoder (root, c, error) &&
        parse_decoder (root, c, error) && parse_decoding (root, c, error) && parse_tokenizer (root, c, error);
  ytree_clear (&t);
  if (!ok) {
    canary_config_free (c);
    return NULL;
  }
  return c;
}

void
canary_config_free (canary_config *c)
{
  if (!c)
    return;
  g_free (c->window);
  g_free (c->normalize);
  g_free (c->log_zero_guard_type);
  g_free (c->subsampling);
  g_free (c->self_attention_model);
  g_free (c->conv_norm_type);
  g_free (c->dec_hidden_act);
  if (c->tokenizer_langs)
    g_ptr_array_unref (c->tokenizer_langs);
  g_free (c->tokenizer_model_path);
  g_free (c->target);
  g_free (c->nemo_version);
  g_free (c);
}
