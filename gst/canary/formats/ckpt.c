/* gst-canary — torch.save zip checkpoints → a validated table of tensor views (zero-copy).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A checkpoint is a zip whose entries all live under one folder, the "archive name" (torch takes
 * it from the first entry): <arch>/data.pkl describes the state dict, <arch>/data/<key> holds one
 * raw little-endian storage per key, <arch>/byteorder says "little" (absent in old files). */
#include "formats/ckpt.h"
#include "formats/pickle.h"
#include "util.h"

#include <string.h>

typedef struct {
  char *key;
  canary_dtype dtype;
  gint64 numel;
  const guint8 *data;
  gsize bytes;             /* the entry's size: numel * elsize must fit */
  const char *first_user;  /* tensor that introduced it, for messages */
} storage_info;

struct _canary_ckpt {
  GArray *entries;         /* canary_zip_entry */
  GHashTable *entry_by_name;
  GPtrArray *owned;        /* inflated entry buffers */
  GHashTable *storages;    /* key → storage_info* */
  canary_tensor *tensors;
  guint n_tensors;
  GHashTable *by_name;     /* name → canary_tensor* */
  char *arch;
};

#define ck_fail(error, ...) canary_fail (error, CANARY_ERROR_FORMAT, "checkpoint", __VA_ARGS__)

static void
storage_info_free (gpointer p)
{
  storage_info *s = p;
  g_free (s->key);
  g_free (s);
}

void
canary_ckpt_free (canary_ckpt *ck)
{
  if (!ck)
    return;
  if (ck->tensors)
    for (guint i = 0; i < ck->n_tensors; i++)
      g_free ((char *) ck->tensors[i].name);
  g_free (ck->tensors);
  if (ck->by_name)
    g_hash_table_unref (ck->by_name);
  if (ck->storages)
    g_hash_table_unref (ck->storages);
  if (ck->owned)
    g_ptr_array_unref (ck->owned);
  if (ck->entry_by_name)
    g_hash_table_unref (ck->entry_by_name);
  if (ck->entries)
    g_array_unref (ck->entries);
  g_free (ck->arch);
  g_free (ck);
}

/* Indexes the entries by name and derives the archive folder from the first one. */
static gboolean
index_entries (canary_ckpt *ck, GError **error)
{
  if (ck->entries->len == 0)
    return ck_fail (error, "the zip has no entries");
  const char *first = g_array_index (ck->entries, canary_zip_entry, 0).name;
  const char *slash = strchr (first, '/');
  if (!slash || slash == first)
    return ck_fail (error, "first entry '%s' is not inside an archive folder", first);
  ck->arch = g_strndup (first, slash - first);

  ck->entry_by_name = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < ck->entries->len; i++) {
    canary_zip_entry *e = &g_array_index (ck->entries, canary_zip_entry, i);
    if (!g_hash_table_insert (ck->entry_by_name, e->name, e))
      return ck_fail (error, "entry '%s' appears twice", e->name);
  }
  return TRUE;
}

/* Returns the bytes of entry "<arch>/<rel>", or NULL with *present FALSE when absent. */
static const guint8 *
entry_bytes (canary_ckpt *ck, const guint8 *zip, gsize zip_len, const char *rel, gboolean crc,
    gsize *size, gboolean *present, GError **error)
{
  char *name = g_strdup_printf ("%s/%s", ck->arch, rel);
  canary_zip_entry *e = g_hash_table_lookup (ck->entry_by_name, name);
  g_free (name);
  *present = e != NULL;
  if (!e)
    return NULL;
  const guint8 *data;
  guint8 *owned;
  if (!canary_zip_entry_data (zip, zip_len, e, crc, &data, &owned, error))
    return NULL;
  if (owned)
    g_ptr_array_add (ck->owned, owned);
  *size = e->size;
  return data;
}

static gboolean
check_byteorder (canary_ckpt *ck, const guint8 *zip, gsize zip_len, GError **error)
{
  gsize n;
  gboolean present;
  const guint8 *b = entry_bytes (ck, zip, zip_len, "byteorder", TRUE, &n, &present, error);
  if (!present)
    return TRUE;  /* written since torch 1.x; older files are little-endian */
  if (!b)
    return FALSE;
  while (n > 0 && g_ascii_isspace (b[n - 1]))
    n--;
  if (n == 6 && memcmp (b, "little", 6) == 0)
    return TRUE;
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
      "checkpoint: %s/byteorder is '%.*s'; only little-endian checkpoints are supported", ck->arch,
      (int) MIN (n, 16), (const char *) b);
  return FALSE;
}

/* Finds or loads the storage a tensor refers to and checks it agrees with earlier users. */
static storage_info *
get_storage (canary_ckpt *ck, const guint8 *zip, gsize zip_len, const canary_pickle_tensor *pt,
    GError **error)
{
  storage_info *s = g_hash_table_lookup (ck->storages, pt->storage_key);
  if (s) {
    if (s->dtype != pt->dtype || s->numel != pt->storage_numel) {
      ck_fail (error, "tensor '%s': storage '%s' is %s[%" G_GINT64_FORMAT "] but tensor '%s' saw it as %s[%"
          G_GINT64_FORMAT "]", pt->name, pt->storage_key, canary_dtype_name (pt->dtype), pt->storage_numel,
          s->first_user, canary_dtype_name (s->dtype), s->numel);
      return NULL;
    }
    return s;
  }

  char *rel = g_strdup_printf ("data/%s", pt->storage_key);
  gsize size = 0;
  gboolean present;
  const guint8 *bytes = entry_bytes (ck, zip, zip_len, rel, FALSE, &size, &present, error);
  g_free (rel);
  if (!present) {
    ck_fail (error, "tensor '%s': storage entry '%s/data/%s' is missing", pt->name, ck->arch, pt->storage_key);
    return NULL;
  }
  if (!bytes)
    return NULL;

  gsize need;
  if (!canary_mul_size ((gsize) pt->storage_numel, canary_dtype_size (pt->dtype), &need) || need > size) {
    ck_fail (error, "tensor '%s': storage '%s' claims %" G_GINT64_FORMAT " %s elements but entry '%s/data/%s' holds %"
        G_GSIZE_FORMAT " bytes", pt->name, pt->storage_key, pt->storage_numel, canary_dtype_name (pt->dtype),
        ck->arch, pt->storage_key, size);
    return NULL;
  }
  s = g_new0 (storage_info, 1);
  s->key = g_strdup (pt->storage_key);
  s->dtype = pt->dtype;
  s->numel = pt->storage_numel;
  s->data = bytes;
  s->bytes = size;
  s->first_user = pt->name;
  g_hash_table_insert (ck->storages, s->key, s);
  return s;
}

static char *
dims_str (const int64_t *v, int n)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < n; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", v[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* Checks that every element of the view (offset, shape, stride) lies inside the storage, with
 * overflow-checked arithmetic, and fills numel. */
static gboolean
check_view (const canary_pickle_tensor *pt, const storage_info *s, int64_t *numel, GError **error)
{
  int64_t n = 1, last = pt->offset;  /* index of the view's last element */
  gboolean overflow = FALSE;
  for (int d = 0; d < pt->ndim; d++) {
    if (pt->shape[d] < 0 || pt->stride[d] < 0)
      overflow = TRUE;  /* pickle.c rejects these; keep this function self-contained */
    else if (__builtin_mul_overflow (n, pt->shape[d], &n))
      overflow = TRUE;
  }
  if (!overflow && n > 0) {
    for (int d = 0; d < pt->ndim; d++) {
      int64_t span;
      if (__builtin_mul_overflow (pt->shape[d] - 1, pt->stride[d], &span) || __builtin_add_overflow (last, span, &last))
        overflow = TRUE;
    }
  }
  gboolean inside = !overflow && pt->offset >= 0 && (n == 0 ? pt->offset <= s->numel : last < s->numel);
  if (!inside) {
    char *sh = dims_str (pt->shape, pt->ndim), *st = dims_str (pt->stride, pt->ndim);
    ck_fail (error, "tensor '%s': view (offset %" G_GINT64_FORMAT ", shape %s, stride %s) does not fit storage '%s' of %"
        G_GINT64_FORMAT " elements", pt->name, pt->offset, sh, st, s->key, s->numel);
    g_free (sh);
    g_free (st);
    return FALSE;
  }
  *numel = n;
  return TRUE;
}

static gboolean
build_tensors (canary_ckpt *ck, const guint8 *zip, gsize zip_len, GPtrArray *pts, GError **error)
{
  ck->storages = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, storage_info_free);
  ck->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  ck->tensors = g_new0 (canary_tensor, pts->len ? pts->len : 1);

  for (guint i = 0; i < pts->len; i++) {
    const canary_pickle_tensor *pt = g_ptr_array_index (pts, i);
    storage_info *s = get_storage (ck, zip, zip_len, pt, error);
    int64_t numel;
    if (!s || !check_view (pt, s, &numel, error))
      return FALSE;

    canary_tensor *t = &ck->tensors[ck->n_tensors++];
    t->name = g_strdup (pt->name);
    t->dtype = pt->dtype;
    t->ndim = pt->ndim;
    memcpy (t->shape, pt->shape, sizeof t->shape);
    memcpy (t->stride, pt->stride, sizeof t->stride);
    t->numel = numel;
    /* offset <= numel of a storage whose byte size fits in memory: no overflow */
    t->data = s->data + (gsize) pt->offset * canary_dtype_size (pt->dtype);
    t->storage_key = s->key;
    s->first_user = t->name;  /* pt->name dies with the pickle result */
    g_hash_table_insert (ck->by_name, (gpointer) t->name, t);
  }
  return TRUE;
}

canary_ckpt *
canary_ckpt_parse (const guint8 *data, gsize len, GError **error)
{
  canary_ckpt *ck = g_new0 (canary_ckpt, 1);
  ck->owned = g_ptr_array_new_with_free_func (g_free);
  GPtrArray *pts = NULL;
  gboolean ok = FALSE;

  ck->entries = canary_zip_read_directory (data, len, error);
  if (!ck->entries || !index_entries (ck, error) || !check_byteorder (ck, data, len, error))
    goto out;

  gsize pkl_len = 0;
  gboolean present;
  const guint8 *pkl = entry_bytes (ck, data, len, "data.pkl", TRUE, &pkl_len, &present, error);
  if (!present) {
    ck_fail (error, "entry '%s/data.pkl' is missing (not a torch checkpoint?)", ck->arch);
    goto out;
  }
  if (!pkl)
    goto out;
  pts = canary_pickle_load_state_dict (pkl, pkl_len, error);
  if (!pts) {
    g_prefix_error (error, "checkpoint: %s/data.pkl: ", ck->arch);
    goto out;
  }
  ok = build_tensors (ck, data, len, pts, error);

out:
  if (pts)
    g_ptr_array_unref (pts);
  if (!ok) {
    canary_ckpt_free (ck);
    return NULL;
  }
  return ck;
}

const canary_tensor *
canary_ckpt_get (const canary_ckpt *ck, const char *name)
{
  return g_hash_table_lookup (ck->by_name, name);
}

guint
canary_ckpt_n_tensors (const canary_ckpt *ck)
{
  return ck->n_tensors;
}

const canary_tensor *
canary_ckpt_tensor (const canary_ckpt *ck, guint i)
{
  return i < ck->n_tensors ? &ck->tensors[i] : NULL;
}

/* ----------------------------------------------------------------------------------------------
 * Checkpoints built in memory (tools/random_model.c: released shapes with random weights for benchmarks)
 * ---------------------------------------------------------------------------------------------- */

canary_ckpt *
canary_ckpt_new_empty (void)
{
  canary_ckpt *ck = g_new0 (canary_ckpt, 1);
  ck->owned = g_ptr_array_new_with_free_func (g_free);
  ck->storages = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, storage_info_free);
  ck->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  return ck;
}

/* Appends a slot, re-pointing the name index when the array moves. */
static canary_tensor *
append_tensor (canary_ckpt *ck, const char *name)
{
  guint cap = 1;
  while (cap < ck->n_tensors)
    cap *= 2;
  if (ck->n_tensors == 0 || ck->n_tensors == cap) {
    ck->tensors = g_renew (canary_tensor, ck->tensors, ck->n_tensors ? 2 * cap : 1);
    g_hash_table_remove_all (ck->by_name);
    for (guint i = 0; i < ck->n_tensors; i++)
      g_hash_table_insert (ck->by_name, (gpointer) ck->tensors[i].name, &ck->tensors[i]);
  }
  canary_tensor *t = &ck->tensors[ck->n_tensors++];
  memset (t, 0, sizeof *t);
  t->name = g_strdup (name);
  g_hash_table_insert (ck->by_name, (gpointer) t->name, t);
  return t;
}

const canary_tensor *
canary_ckpt_add_tensor (canary_ckpt *ck, const char *name, canary_dtype dtype, int ndim,
    const int64_t *shape, gpointer data, gsize bytes, GError **error)
{
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++)
    numel *= shape[i];
  if (ndim < 0 || ndim > CANARY_MAX_DIMS || (gsize) numel * canary_dtype_size (dtype) != bytes ||
      g_hash_table_contains (ck->by_name, name)) {
    g_free (data);
    ck_fail (error, "in-memory tensor '%s': bad shape, size or duplicate name", name);
    return NULL;
  }
  g_ptr_array_add (ck->owned, data);
  canary_tensor *t = append_tensor (ck, name);
  t->dtype = dtype;
  t->ndim = ndim;
  int64_t stride = 1;
  for (int i = ndim - 1; i >= 0; stride *= shape[i], i--) {
    t->shape[i] = shape[i];
    t->stride[i] = stride;
  }
  t->numel = numel;
  t->data = data;
  t->storage_key = t->name;
  return t;
}

gboolean
canary_ckpt_add_alias (canary_ckpt *ck, const char *name, const char *target, GError **error)
{
  const canary_tensor *src = canary_ckpt_get (ck, target);
  if (!src || g_hash_table_contains (ck->by_name, name))
    return ck_fail (error, "in-memory alias '%s' → '%s': no such target or duplicate name", name, target);
  canary_tensor copy = *src;
  canary_tensor *t = append_tensor (ck, name);
  const char *own_name = t->name;
  *t = copy;
  t->name = own_name;
  return TRUE;
}
