/* gst-canary tests — shared access to the NeMo fixtures (see fixture.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "fixture.h"

#include <math.h>
#include <string.h>

const char *const fixture_models[FIXTURE_N_MODELS] = { "canary1-tiny", "canary2-tiny", "canary2-unified-tiny" };
const char *const fixture_clip_models[FIXTURE_N_CLIP_MODELS] = { "canary1-tiny", "canary2-tiny",
  "canary2-unified-tiny", "canary-demo" };

const char *
fixture_dir (void)
{
  const char *env = g_getenv ("CANARY_TEST_FIXTURES");
  return env ? env : FIXTURES_DIR;
}

char *
fixture_path (const char *first_element, ...)
{
  va_list ap;
  va_start (ap, first_element);
  GPtrArray *parts = g_ptr_array_new ();
  g_ptr_array_add (parts, (gpointer) fixture_dir ());
  for (const char *e = first_element; e; e = va_arg (ap, const char *))
    g_ptr_array_add (parts, (gpointer) e);
  va_end (ap);
  g_ptr_array_add (parts, NULL);
  char *path = g_build_filenamev ((char **) parts->pdata);
  g_ptr_array_unref (parts);
  return path;
}

char *
fixture_model_nemo (const char *model)
{
  return fixture_path (model, "model.nemo", NULL);
}

void
fixture_fail_missing (const char *path, const char *script)
{
  g_test_fail_printf ("fixture %s is missing: the fixtures are committed, so restore it from git or "
      "regenerate it with %s (tests/reference/regenerate.sh runs every generator)", path, script);
}

char *
fixture_model_nemo_or_fail (const char *model)
{
  char *path = fixture_model_nemo (model);
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
    fixture_fail_missing (path, FIXTURE_MODELS_SCRIPT);
    g_free (path);
    return NULL;
  }
  return path;
}

void
fixture_fail_no_models (void)
{
  g_test_fail_printf ("no NeMo fixture model (<model>/model.nemo) under %s: the fixtures are committed, so "
      "restore them from git or regenerate them with %s", fixture_dir (), FIXTURE_MODELS_SCRIPT);
}

/* g_ptr_array_sort passes pointers to the elements. */
static int
compare_str_ptr (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* The entries e of `dir` for which dir/e/probe is a regular file, sorted. */
static GPtrArray *
list_subdirs_with (const char *dir, const char *probe)
{
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *e;
  while (d && (e = g_dir_read_name (d))) {
    char *p = g_build_filename (dir, e, probe, NULL);
    if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
      g_ptr_array_add (names, g_strdup (e));
    g_free (p);
  }
  if (d)
    g_dir_close (d);
  g_ptr_array_sort (names, compare_str_ptr);
  return names;
}

GPtrArray *
fixture_list_models (void)
{
  return list_subdirs_with (fixture_dir (), "model.nemo");
}

GPtrArray *
fixture_list_clips (const char *model, const char *probe_file)
{
  char *dir = fixture_path (model, NULL);
  GPtrArray *clips = list_subdirs_with (dir, probe_file);
  g_free (dir);
  return clips;
}

gboolean
fixture_model_open (const char *name, fixture_model *out)
{
  memset (out, 0, sizeof *out);
  char *path = fixture_model_nemo (name);
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
    g_free (path);
    return FALSE;
  }
  GError *err = NULL;
  const guint8 *yaml;
  gsize yaml_len;
  out->path = path;
  out->ar = canary_archive_open (path, &err);
  g_assert_no_error (err);
  g_assert_true (canary_archive_find (out->ar, "model_weights.ckpt", &out->ckpt_data, &out->ckpt_len));
  out->ck = canary_ckpt_parse (out->ckpt_data, out->ckpt_len, &err);
  g_assert_no_error (err);
  g_assert_true (canary_archive_find (out->ar, "model_config.yaml", &yaml, &yaml_len));
  out->cfg = canary_config_parse ((const char *) yaml, yaml_len, &err);
  g_assert_no_error (err);
  return TRUE;
}

gboolean
fixture_model_open_or_fail (const char *name, fixture_model *out)
{
  if (fixture_model_open (name, out))
    return TRUE;
  char *path = fixture_model_nemo (name);
  fixture_fail_missing (path, FIXTURE_MODELS_SCRIPT);
  g_free (path);
  return FALSE;
}

gboolean
fixture_model_open_any_or_fail (guint first, fixture_model *out)
{
  for (guint i = 0; i < FIXTURE_N_MODELS; i++)
    if (fixture_model_open (fixture_models[(first + i) % FIXTURE_N_MODELS], out))
      return TRUE;
  fixture_fail_no_models ();
  return FALSE;
}

void
fixture_model_close (fixture_model *m)
{
  canary_config_free (m->cfg);
  canary_ckpt_free (m->ck);
  canary_archive_free (m->ar);
  g_free (m->path);
  memset (m, 0, sizeof *m);
}

void
fixture_load_npy (const char *model, const char *clip, const char *file, npy_array *out)
{
  GError *err = NULL;
  char *path = fixture_path (model, clip, file, NULL);
  const gboolean ok = npy_load (path, out, &err);
  if (err)
    g_test_message ("%s: %s", path, err->message);
  g_assert_no_error (err);
  g_assert_true (ok);
  g_free (path);
}

GArray *
fixture_load_ids (const char *model, const char *clip, const char *file)
{
  npy_array a;
  fixture_load_npy (model, clip, file, &a);
  GArray *ids = g_array_sized_new (FALSE, FALSE, sizeof (gint32), (guint) a.numel);
  for (gsize i = 0; i < a.numel; i++) {
    const gint32 id = (gint32) npy_get_i64 (&a, i);
    g_array_append_val (ids, id);
  }
  npy_array_clear (&a);
  return ids;
}

double
max_abs_diff (const float *a, const float *b, gsize n, double *ref_max)
{
  double e = 0.0, r = 0.0;
  for (gsize i = 0; i < n; i++) {
    e = MAX (e, fabs ((double) a[i] - b[i]));
    r = MAX (r, fabs ((double) b[i]));
  }
  if (ref_max)
    *ref_max = r;
  return e;
}

void
assert_ids_equal (const GArray *got, const GArray *want, const char *what)
{
  gboolean same = got->len == want->len;
  for (guint i = 0; same && i < got->len; i++)
    same = g_array_index (got, gint32, i) == g_array_index (want, gint32, i);
  if (!same) {
    GString *s = g_string_new (NULL);
    g_string_append_printf (s, "%s: got [", what);
    for (guint i = 0; i < got->len; i++)
      g_string_append_printf (s, "%s%d", i ? " " : "", g_array_index (got, gint32, i));
    g_string_append (s, "], want [");
    for (guint i = 0; i < want->len; i++)
      g_string_append_printf (s, "%s%d", i ? " " : "", g_array_index (want, gint32, i));
    g_string_append (s, "]");
    g_test_message ("%s", s->str);
    g_string_free (s, TRUE);
  }
  g_assert_true (same);
}

/* NeMo's margin between its two best log-probs at teacher-forced step s (NAN past the dump). */
double
fixture_nemo_margin (const npy_array *tf, int s)
{
  const int V = (int) tf->shape[1];
  if (s >= tf->shape[0])
    return NAN;
  const float *row = (const float *) tf->data + (gsize) s * V;
  double m1 = -INFINITY, m2 = -INFINITY;
  for (int v = 0; v < V; v++) {
    if (row[v] > m1) {
      m2 = m1;
      m1 = row[v];
    } else if (row[v] > m2) {
      m2 = row[v];
    }
  }
  return m1 - m2;
}
