/* gst-canary tests — formats/tar.c: .nemo tar (plain, gzip, directory), member lookup, artifact paths,
 * and malformed archives (truncation everywhere, bad fields, hostile PAX headers, gzip garbage),
 * built with builders.h.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "canary.h"
#include "builders.h"
#include "formats/config.h"
#include "fixture.h"
#include "formats/tar.h"
#include "testutil.h"

#include <glib/gstdio.h>
#include <string.h>

static canary_archive *
open_ba (GByteArray *b, GError **err)
{
  return canary_archive_open_bytes (b->data, b->len, err);
}

static void
assert_member (canary_archive *ar, const char *name, const char *text)
{
  const guint8 *d;
  gsize n;
  g_assert_true (canary_archive_find (ar, name, &d, &n));
  g_assert_cmpmem (d, n, text, strlen (text));
}

static void
assert_format_error (GByteArray *b, const char *needle)
{
  GError *err = NULL;
  canary_archive *ar = open_ba (b, &err);
  g_assert_null (ar);
  assert_error_mentions (err, CANARY_ERROR_FORMAT, needle);
}

/* --- fixtures ----------------------------------------------------------------------------------- */

static void
check_fixture_archive (canary_archive *ar, gboolean mapped_in_place)
{
  const guint8 *d, *d2;
  gsize n, n2;
  g_assert_cmpuint (canary_archive_n_members (ar), >=, 3);
  for (guint i = 0; i < canary_archive_n_members (ar); i++) {
    const char *name = canary_archive_member_name (ar, i);
    g_assert_false (g_str_has_prefix (name, "./"));
    g_assert_cmpstr (name, !=, "");
    g_assert_cmpstr (name, !=, ".");
  }
  g_assert_true (canary_archive_find (ar, "model_config.yaml", &d, &n));
  g_assert_true (canary_archive_find (ar, "./model_config.yaml", &d2, &n2));
  g_assert_true (d == d2 && n == n2);
  g_assert_true (canary_archive_find (ar, "model_weights.ckpt", &d, &n));
  g_assert_cmpuint (n, >, 1024);
  g_assert_cmpmem (d, 4, "PK\x03\x04", 4);
  if (mapped_in_place)
    g_assert_cmpuint ((guintptr) d % 512, ==, 0);  /* tar data block inside a page-aligned map */
  g_assert_false (canary_archive_find (ar, "no_such_member", &d, &n));
  g_assert_false (canary_archive_find (ar, "timestamps_asr_model_weights.ckpt", &d, &n));

  /* Every artifact the config names resolves. */
  GError *err = NULL;
  g_assert_true (canary_archive_find (ar, "model_config.yaml", &d, &n));
  canary_config *cfg = canary_config_parse ((const char *) d, n, &err);
  g_assert_no_error (err);
  if (cfg->tokenizer_kind == CANARY_TOKENIZER_UNIFIED) {
    g_assert_true (g_str_has_prefix (cfg->tokenizer_model_path, "nemo:"));
    g_assert_true (canary_archive_resolve (ar, cfg->tokenizer_model_path, &d, &n, &err));
    g_assert_no_error (err);
    g_assert_cmpuint (n, >, 100);
  } else {
    for (guint i = 0; i < cfg->tokenizer_langs->len; i++) {
      const canary_tokenizer_lang *l = g_ptr_array_index (cfg->tokenizer_langs, i);
      g_assert_true (canary_archive_resolve (ar, l->model_path, &d, &n, &err));
      g_assert_no_error (err);
      g_assert_cmpuint (n, >, 100);
    }
  }
  canary_config_free (cfg);
}

static void
test_fixture_open (void)
{
  for (gsize m = 0; m < G_N_ELEMENTS (fixture_models); m++) {
    char *path = fixture_model_nemo_or_fail (fixture_models[m]);
    if (!path)
      continue;
    GError *err = NULL;
    canary_archive *ar = canary_archive_open (path, &err);
    g_assert_no_error (err);
    g_assert_cmpstr (canary_archive_path (ar), ==, path);
    check_fixture_archive (ar, TRUE);

    /* open_bytes over the same bytes gives the same members and contents */
    gsize len;
    char *bytes = tu_read_file (path, &len);
    canary_archive *ar2 = canary_archive_open_bytes ((guint8 *) bytes, len, &err);
    g_assert_no_error (err);
    g_assert_cmpstr (canary_archive_path (ar2), ==, "<memory>");
    g_assert_cmpuint (canary_archive_n_members (ar2), ==, canary_archive_n_members (ar));
    for (guint i = 0; i < canary_archive_n_members (ar); i++) {
      const char *name = canary_archive_member_name (ar, i);
      const guint8 *a, *b;
      gsize na, nb;
      g_assert_cmpstr (name, ==, canary_archive_member_name (ar2, i));
      g_assert_true (canary_archive_find (ar, name, &a, &na));
      g_assert_true (canary_archive_find (ar2, name, &b, &nb));
      g_assert_cmpmem (a, na, b, nb);
      /* in place: the member lies inside the caller's buffer */
      g_assert_true (b >= (guint8 *) bytes && b + nb <= (guint8 *) bytes + len);
    }
    canary_archive_free (ar2);
    canary_archive_free (ar);
    g_free (bytes);
    g_free (path);
  }
}

static void
test_fixture_gzip (void)
{
  char *path = fixture_model_nemo_or_fail ("canary2-tiny");
  if (!path)
    return;
  gsize len, zlen;
  char *bytes = tu_read_file (path, &len);
  guint8 *gz = gzip_bytes ((guint8 *) bytes, len, &zlen);
  GError *err = NULL;
  canary_archive *ar = canary_archive_open_bytes (gz, zlen, &err);
  g_assert_no_error (err);
  check_fixture_archive (ar, FALSE);
  canary_archive_free (ar);

  /* the same through a file */
  char *tmp = g_build_filename (g_get_tmp_dir (), "canary-test-gz.nemo", NULL);
  g_assert_true (g_file_set_contents (tmp, (gchar *) gz, zlen, NULL));
  ar = canary_archive_open (tmp, &err);
  g_assert_no_error (err);
  canary_archive_free (ar);

  /* truncated and corrupted gzip streams fail cleanly */
  gsize cuts[] = { 1, 2, 10, 18, zlen / 3, zlen - 9, zlen - 1 };
  for (gsize i = 0; i < G_N_ELEMENTS (cuts); i++) {
    ar = canary_archive_open_bytes (gz, cuts[i], &err);
    g_assert_null (ar);
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
    g_clear_error (&err);
  }
  gz[zlen / 2] ^= 0x55;
  gz[zlen / 2 + 1] ^= 0xaa;
  ar = canary_archive_open_bytes (gz, zlen, &err);
  g_assert_null (ar);
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_clear_error (&err);

  g_unlink (tmp);
  g_free (tmp);
  g_free (gz);
  g_free (bytes);
  g_free (path);
}

/* Removes `dir` and what it holds (one level of subdirectories, as created below). */
static void
remove_tree (const char *dir)
{
  GDir *gd = g_dir_open (dir, 0, NULL);
  const char *e;
  while ((e = g_dir_read_name (gd))) {
    char *p = g_build_filename (dir, e, NULL);
    g_assert_cmpint (g_file_test (p, G_FILE_TEST_IS_DIR) ? g_rmdir (p) : g_unlink (p), ==, 0);
    g_free (p);
  }
  g_dir_close (gd);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

/* Extract the fixture into a directory and open that. */
static void
test_fixture_directory (void)
{
  char *path = fixture_model_nemo_or_fail ("canary1-tiny");
  if (!path)
    return;
  GError *err = NULL;
  canary_archive *ar = canary_archive_open (path, &err);
  g_assert_no_error (err);
  char *dir = g_dir_make_tmp ("canary-test-XXXXXX", &err);
  g_assert_no_error (err);
  for (guint i = 0; i < canary_archive_n_members (ar); i++) {
    const char *name = canary_archive_member_name (ar, i);
    const guint8 *d;
    gsize n;
    g_assert_true (canary_archive_find (ar, name, &d, &n));
    char *p = g_build_filename (dir, name, NULL);
    g_assert_true (g_file_set_contents (p, (const gchar *) d, n, NULL));
    g_free (p);
  }
  char *sub = g_build_filename (dir, "a_subdir", NULL);  /* directories are not members */
  g_mkdir (sub, 0700);
  char *empty = g_build_filename (dir, "empty.txt", NULL);
  g_assert_true (g_file_set_contents (empty, "", 0, NULL));

  canary_archive *dar = canary_archive_open (dir, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (canary_archive_n_members (dar), ==, canary_archive_n_members (ar) + 1);
  check_fixture_archive (dar, FALSE);
  for (guint i = 0; i < canary_archive_n_members (ar); i++) {
    const char *name = canary_archive_member_name (ar, i);
    const guint8 *a, *b;
    gsize na, nb;
    g_assert_true (canary_archive_find (ar, name, &a, &na));
    g_assert_true (canary_archive_find (dar, name, &b, &nb));
    g_assert_cmpmem (a, na, b, nb);
  }
  const guint8 *d;
  gsize n = 99;
  g_assert_true (canary_archive_find (dar, "empty.txt", &d, &n));
  g_assert_nonnull (d);
  g_assert_cmpuint (n, ==, 0);
  g_assert_false (canary_archive_find (dar, "a_subdir", &d, &n));
  canary_archive_free (dar);
  canary_archive_free (ar);

  remove_tree (dir);
  g_free (empty);
  g_free (sub);
  g_free (dir);
  g_free (path);
}

/* Cut the archive at every block boundary and inside every header: each cut before the
 * end-of-archive block must fail with a format error; cuts after it succeed. */
static void
test_fixture_truncated (void)
{
  char *path = fixture_model_nemo_or_fail ("canary2-unified-tiny");
  if (!path)
    return;
  gsize len;
  char *bytes = tu_read_file (path, &len);
  const guint8 *b = (const guint8 *) bytes;
  gsize last = len;
  while (last > 0 && b[last - 1] == 0)
    last--;
  gsize end_marker = (last + 511) / 512 * 512;
  guint n_fail = 0, n_ok = 0;
  for (gsize cut = 0; cut <= len; cut += 512) {
    gsize cuts[] = { cut, cut + 1, cut + 100, cut + 124, cut + 156, cut + 345, cut + 511 };
    for (gsize k = 0; k < G_N_ELEMENTS (cuts); k++) {
      if (cuts[k] > len || (k > 0 && cut >= end_marker + 512))
        continue;
      GError *err = NULL;
      canary_archive *ar = canary_archive_open_bytes (b, cuts[k], &err);
      if (cuts[k] >= end_marker + 512) {
        g_assert_no_error (err);
        g_assert_nonnull (ar);
        n_ok++;
      } else {
        g_assert_null (ar);
        g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
        n_fail++;
      }
      g_clear_error (&err);
      canary_archive_free (ar);
    }
  }
  g_test_message ("%u truncations rejected, %u accepted (end marker at %" G_GSIZE_FORMAT ")", n_fail, n_ok, end_marker);
  g_assert_cmpuint (n_fail, >, 100);
  g_assert_cmpuint (n_ok, >=, 1);
  g_free (bytes);
  g_free (path);
}

/* --- synthetic archives ------------------------------------------------------------------------- */

static void
test_synthetic_formats (void)
{
  GByteArray *b = g_byte_array_new ();
  GError *err = NULL;

  tar_header (b, "./", '5', 0, NULL);                       /* the "." directory entry */
  tar_file (b, "./model_config.yaml", "yaml!");
  tar_header (b, "file.txt", '0', 3, "some/dir");           /* ustar prefix field */
  tar_data (b, "abc", 3);
  char *rec = pax_record ("path", "./a/very/long/pax/path/that/does/not/fit/in/the/ustar/name/field/"
      "which/is/only/one/hundred/bytes/long/artifact.model");
  char *rec2 = pax_record ("mtime", "1795689122.3471818");
  char *both = g_strconcat (rec2, rec, NULL);
  tar_pax (b, 'x', both);
  tar_file (b, "./short-name-ignored", "pax!");
  tar_header (b, "././@LongLink", 'L', 140, NULL);          /* GNU long name */
  char longname[141];
  memset (longname, 'n', 139);
  longname[139] = 0;
  tar_data (b, longname, 140);
  tar_file (b, "truncated-gnu-name", "gnu!");
  tar_pax (b, 'g', rec2);                                   /* global header: ignored */
  tar_header (b, "link", '2', 4096, NULL);                  /* symlink with a bogus size: no data follows */
  tar_header (b, "subdir/", '5', 0, NULL);
  tar_file (b, "dup.txt", "first");
  tar_file (b, "dup.txt", "second");                        /* last one wins, as on extraction */
  tar_header (b, "contig", '7', 2, NULL);                   /* contiguous file = regular */
  tar_data (b, "cc", 2);
  tar_header (b, "pax-sized", '0', 0, NULL);
  g_byte_array_set_size (b, b->len - 512);                  /* re-do it with a PAX size override */
  char *srec = pax_record ("size", "5");
  tar_pax (b, 'x', srec);
  tar_header (b, "pax-sized", '0', 0, NULL);
  tar_data (b, "sized", 5);
  tar_end (b);

  canary_archive *ar = open_ba (b, &err);
  g_assert_no_error (err);
  assert_member (ar, "model_config.yaml", "yaml!");
  assert_member (ar, "some/dir/file.txt", "abc");
  assert_member (ar, "a/very/long/pax/path/that/does/not/fit/in/the/ustar/name/field/which/is/only/one/hundred/"
      "bytes/long/artifact.model", "pax!");
  assert_member (ar, longname, "gnu!");
  assert_member (ar, "dup.txt", "second");
  assert_member (ar, "contig", "cc");
  assert_member (ar, "pax-sized", "sized");
  const guint8 *d;
  gsize n;
  g_assert_false (canary_archive_find (ar, "short-name-ignored", &d, &n));
  g_assert_false (canary_archive_find (ar, "truncated-gnu-name", &d, &n));
  g_assert_false (canary_archive_find (ar, "link", &d, &n));
  g_assert_false (canary_archive_find (ar, "subdir", &d, &n));
  g_assert_false (canary_archive_find (ar, ".", &d, &n));
  /* resolve: nemo: prefix, training-time path → basename, bare name */
  g_assert_true (canary_archive_resolve (ar, "nemo:model_config.yaml", &d, &n, &err));
  g_assert_true (canary_archive_resolve (ar, "/home/someone/exp/model_config.yaml", &d, &n, &err));
  g_assert_true (canary_archive_resolve (ar, "model_config.yaml", &d, &n, &err));
  g_assert_no_error (err);
  g_assert_false (canary_archive_resolve (ar, "nemo:0123456789abcdef0123456789abcdef_tokenizer.model", &d, &n, &err));
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (err->message, "nemo:0123456789abcdef0123456789abcdef_tokenizer.model"));
  g_clear_error (&err);
  g_assert_false (canary_archive_resolve (ar, "", &d, &n, &err));
  g_assert_nonnull (err);
  g_clear_error (&err);
  canary_archive_free (ar);

  /* A lone zero block at the end is accepted (GNU tar does too). */
  g_byte_array_set_size (b, b->len - 512);
  ar = open_ba (b, &err);
  g_assert_no_error (err);
  canary_archive_free (ar);

  g_free (rec);
  g_free (rec2);
  g_free (both);
  g_free (srec);
  g_byte_array_unref (b);
}

static void
test_synthetic_base256 (void)
{
  GByteArray *b = g_byte_array_new ();
  gsize off = tar_header (b, "big.bin", '0', 0, NULL);
  guint8 *size = b->data + off + 124;
  memset (size, 0, 12);
  size[0] = 0x80;        /* base-256: value in the remaining bytes, big-endian */
  size[11] = 7;
  tar_fix_checksum (b->data + off);
  tar_data (b, "seven!!", 7);
  tar_end (b);
  GError *err = NULL;
  canary_archive *ar = open_ba (b, &err);
  g_assert_no_error (err);
  assert_member (ar, "big.bin", "seven!!");
  canary_archive_free (ar);

  /* a huge base-256 size (2^60) runs past the end */
  size = b->data + off + 124;
  size[4] = 0x10;
  tar_fix_checksum (b->data + off);
  assert_format_error (b, "runs past the end");
  /* negative base-256 */
  size[0] = 0xff;
  tar_fix_checksum (b->data + off);
  assert_format_error (b, "bad size field");
  /* overflowing base-256 (more than 63 bits) */
  memset (size, 0xff, 12);
  size[0] = 0x80 | 0x3f;
  tar_fix_checksum (b->data + off);
  assert_format_error (b, "bad size field");
  g_byte_array_unref (b);
}

static void
test_malformed (void)
{
  GByteArray *b = g_byte_array_new ();
  GError *err = NULL;

  /* bad octal digit in the size */
  gsize off = tar_file (b, "a.txt", "hello");
  tar_end (b);
  b->data[off + 124 + 5] = '9';
  tar_fix_checksum (b->data + off);
  assert_format_error (b, "a.txt");
  assert_format_error (b, "size");

  /* size pointing past the end of the file */
  g_byte_array_set_size (b, 0);
  off = tar_file (b, "b.txt", "hello");
  tar_end (b);
  tar_put_octal (b->data + off + 124, 12, 100000);
  tar_fix_checksum (b->data + off);
  assert_format_error (b, "b.txt");

  /* bad checksum (first header: "not a tar"; later header: corrupt) */
  g_byte_array_set_size (b, 0);
  tar_file (b, "c.txt", "hello");
  off = tar_file (b, "d.txt", "world");
  tar_end (b);
  b->data[off + 10] ^= 1;
  assert_format_error (b, "checksum");
  b->data[10] ^= 1;
  assert_format_error (b, "not a tar");

  /* PAX sizes: too many digits to fit 64 bits, and a large but parseable one */
  const char *bad_sizes[] = { "99999999999999999999999", "1000000000000", "-5", "0x10", "" };
  for (gsize i = 0; i < G_N_ELEMENTS (bad_sizes); i++) {
    g_byte_array_set_size (b, 0);
    char *r = pax_record ("size", bad_sizes[i]);
    tar_pax (b, 'x', r);
    tar_file (b, "e.txt", "hello");
    tar_end (b);
    assert_format_error (b, NULL);
    g_free (r);
  }

  /* malformed PAX records: length past the data, zero length, no '=', no newline */
  const char *bad_recs[] = { "99 path=x\n", "0 path=x\n", "11 pathxxx\n", "10 path=x!", "abc", " 9 path=x\n",
                             "8 path=\n" /* empty path */ };
  for (gsize i = 0; i < G_N_ELEMENTS (bad_recs); i++) {
    g_byte_array_set_size (b, 0);
    tar_pax (b, 'x', bad_recs[i]);
    tar_file (b, "f.txt", "hello");
    tar_end (b);
    assert_format_error (b, "PAX");
  }
  /* a PAX path holding a NUL byte */
  g_byte_array_set_size (b, 0);
  tar_header (b, "././@PaxHeader", 'x', 11, NULL);
  tar_data (b, "11 path=a\0\n", 11);
  tar_file (b, "g.txt", "hello");
  tar_end (b);
  assert_format_error (b, "PAX");

  /* GNU long name longer than we accept */
  g_byte_array_set_size (b, 0);
  tar_header (b, "././@LongLink", 'L', 100000, NULL);
  guint8 *big = g_malloc0 (100000);
  tar_data (b, big, 100000);
  g_free (big);
  tar_file (b, "h.txt", "hello");
  tar_end (b);
  assert_format_error (b, "long name");

  /* no end-of-archive block at all */
  g_byte_array_set_size (b, 0);
  tar_file (b, "i.txt", "hello");
  assert_format_error (b, "end-of-archive");

  /* not a tar: empty, text, a zip, random bytes, gzip garbage */
  static const char *const junk[] = { "", "hello world", "PK\x03\x04garbage", "\x1f\x8b\x08\x00garbage-garbage",
                                      "\x1f\x8b" };
  for (gsize i = 0; i < G_N_ELEMENTS (junk); i++) {
    canary_archive *ar = canary_archive_open_bytes ((const guint8 *) junk[i], strlen (junk[i]), &err);
    g_assert_null (ar);
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
    g_clear_error (&err);
  }
  GRand *rnd = g_rand_new_with_seed (42);
  guint8 noise[4096];
  for (int round = 0; round < 50; round++) {
    for (gsize i = 0; i < sizeof noise; i++)
      noise[i] = (guint8) g_rand_int (rnd);
    if (round % 2)
      noise[0] = 0x1f, noise[1] = 0x8b, noise[2] = 8, noise[3] = 0;  /* gzip header + junk deflate */
    canary_archive *ar = canary_archive_open_bytes (noise, sizeof noise, &err);
    g_assert_null (ar);
    g_assert_nonnull (err);
    g_clear_error (&err);
  }
  g_rand_free (rnd);

  /* a gzip stream that inflates to something that is not a tar */
  gsize zlen;
  guint8 *gz = gzip_bytes ((const guint8 *) "plain text, not a tar", 21, &zlen);
  canary_archive *ar = canary_archive_open_bytes (gz, zlen, &err);
  g_assert_null (ar);
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  g_clear_error (&err);
  g_free (gz);

  /* files that do not exist */
  ar = canary_archive_open ("/nonexistent/dir/model.nemo", &err);
  g_assert_null (ar);
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_NOT_FOUND);
  g_clear_error (&err);

  g_byte_array_unref (b);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/archive/fixture/open", test_fixture_open);
  g_test_add_func ("/archive/fixture/gzip", test_fixture_gzip);
  g_test_add_func ("/archive/fixture/directory", test_fixture_directory);
  g_test_add_func ("/archive/fixture/truncated", test_fixture_truncated);
  g_test_add_func ("/archive/synthetic/formats", test_synthetic_formats);
  g_test_add_func ("/archive/synthetic/base256", test_synthetic_base256);
  g_test_add_func ("/archive/malformed", test_malformed);
  return g_test_run ();
}
