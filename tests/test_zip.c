/* gst-canary tests — formats/zip.c: torch's zip layout and the variants other writers produce
 * (alignment, zip64 records and extras, comments, deflated entries), and malformed directories,
 * headers and deflate streams, built with builders.h or damaged in the real fixture checkpoint.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "canary.h"
#include "builders.h"
#include "fixture.h"
#include "formats/ckpt.h"

#include <string.h>

static void
check_good_ckpt (canary_ckpt *ck)
{
  g_assert_cmpuint (canary_ckpt_n_tensors (ck), ==, 3);
  const canary_tensor *a = canary_ckpt_get (ck, "a"), *b = canary_ckpt_get (ck, "b"), *t = canary_ckpt_get (ck, "tied");
  g_assert_nonnull (a);
  g_assert_nonnull (b);
  g_assert_nonnull (t);
  g_assert_true (canary_ckpt_tensor (ck, 0) == a);
  g_assert_true (canary_ckpt_tensor (ck, 2) == t);
  g_assert_null (canary_ckpt_tensor (ck, 3));
  g_assert_null (canary_ckpt_get (ck, "missing"));
  g_assert_cmpint (a->ndim, ==, 2);
  g_assert_cmpint (a->numel, ==, 12);
  g_assert_true (a->data == t->data);
  g_assert_cmpstr (a->storage_key, ==, t->storage_key);
  g_assert_true (a->storage_key == t->storage_key);
  float *f = canary_tensor_to_f32 (a);
  g_assert_cmpmem (f, 48, ckpt_store0, 48);
  g_free (f);
  f = canary_tensor_to_f32 (t);
  g_assert_cmpfloat (f[1], ==, 4.0f);  /* t[0][1] = a[1][0] */
  g_free (f);
  f = canary_tensor_to_f32 (b);
  g_assert_cmpmem (f, 16, ckpt_store1, 16);
  g_free (f);
}

/* =============================================================================================
 * The real fixture, damaged
 * ============================================================================================= */

/* Damage the real checkpoint: truncations through the tail and directory, and field edits. */
static void
test_fixture_damaged (void)
{
  fixture_model fx;
  if (!fixture_model_open_or_fail ("canary2-tiny", &fx))
    return;
  gsize len = fx.ckpt_len;
  guint8 *z = g_memdup2 (fx.ckpt_data, len);
  GError *err = NULL;

  /* Truncation anywhere must fail cleanly: every byte of the last 4 KiB (the directory and end
   * records) and every 4099th byte before. */
  for (gsize cut = 0; cut < len; cut += (cut + 4096 < len) ? 4099 : 1) {
    canary_ckpt *ck = canary_ckpt_parse (z, cut, &err);
    g_assert_null (ck);
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
    g_clear_error (&err);
  }

  GArray *dir = canary_zip_read_directory (z, len, &err);
  g_assert_no_error (err);
  canary_zip_entry *pkl = NULL;
  for (guint i = 0; i < dir->len; i++)
    if (g_str_has_suffix (g_array_index (dir, canary_zip_entry, i).name, "/data.pkl"))
      pkl = &g_array_index (dir, canary_zip_entry, i);
  g_assert_nonnull (pkl);
  g_assert_cmpuint (pkl->method, ==, 0);

  /* a flipped byte inside data.pkl: caught by its CRC */
  z[pkl->offset + pkl->size / 2] ^= 0x20;
  g_assert_null (canary_ckpt_parse (z, len, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, "CRC");
  z[pkl->offset + pkl->size / 2] ^= 0x20;

  /* every EOCD signature gone */
  for (gsize p = len - 22; p + 4 <= len && p > len - 22 - 64; p--)
    if (!memcmp (z + p, "PK\x05\x06", 4)) {
      z[p + 3] = 0x07;
      g_assert_null (canary_ckpt_parse (z, len, &err));
      assert_error_mentions (err, CANARY_ERROR_FORMAT, "end of central directory");
      z[p + 3] = 0x06;
    }

  /* zip64 record: central directory offset lies */
  gsize eocd = len - 22;
  g_assert_cmpmem (z + eocd, 4, "PK\x05\x06", 4);
  gsize loc = eocd - 20;
  g_assert_cmpmem (z + loc, 4, "PK\x06\x07", 4);
  guint64 rec = 0;
  for (int i = 7; i >= 0; i--)
    rec = rec << 8 | z[loc + 8 + i];
  guint8 saved[8];
  memcpy (saved, z + rec + 48, 8);
  memset (z + rec + 48, 0x7f, 8);
  g_assert_null (canary_ckpt_parse (z, len, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, "central directory");
  memcpy (z + rec + 48, saved, 8);
  /* zip64 record: entry count lies */
  memcpy (saved, z + rec + 32, 8);
  memset (z + rec + 24, 0x55, 16);
  g_assert_null (canary_ckpt_parse (z, len, &err));
  g_assert_nonnull (err);
  g_clear_error (&err);
  memcpy (z + rec + 24, saved, 8);
  memcpy (z + rec + 32, saved, 8);
  /* zip64 locator points nowhere */
  z[loc + 8] ^= 0x40;
  g_assert_null (canary_ckpt_parse (z, len, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, "zip64");
  z[loc + 8] ^= 0x40;

  /* a local header offset that misses its header */
  guint64 cd = 0;
  for (int i = 7; i >= 0; i--)
    cd = cd << 8 | z[rec + 48 + i];
  g_assert_cmpmem (z + cd, 4, "PK\x01\x02", 4);
  z[cd + 42] += 4;
  g_assert_null (canary_ckpt_parse (z, len, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, "local header");
  z[cd + 42] -= 4;
  /* an unknown compression method on data.pkl */
  z[cd + 10] = 12;
  g_assert_null (canary_ckpt_parse (z, len, &err));
  assert_error_mentions (err, CANARY_ERROR_UNSUPPORTED, "method");
  z[cd + 10] = 0;

  /* every edit was undone: the copy parses again */
  canary_ckpt *again = canary_ckpt_parse (z, len, &err);
  g_assert_no_error (err);
  canary_ckpt_free (again);
  g_array_unref (dir);
  g_free (z);
  fixture_model_close (&fx);
}

/* =============================================================================================
 * Synthetic zips
 * ============================================================================================= */

static void
test_zip_variants (void)
{
  GError *err = NULL;
  /* torch-like (64-aligned, zip64 tail), plain zip, unaligned, zip64 extras, and a comment */
  const zip_opts variants[] = {
    { .align = 64, .zip64 = TRUE }, { .align = 0 }, { .align = 1, .comment = "a comment PK\x05\x06 inside" },
    { .align = 64, .zip64 = TRUE, .zip64_extra = TRUE }, { .align = 3 },
  };
  for (gsize v = 0; v < G_N_ELEMENTS (variants); v++) {
    GByteArray *z = good_ckpt (&variants[v]);
    canary_ckpt *ck = canary_ckpt_parse (z->data, z->len, &err);
    g_assert_no_error (err);
    check_good_ckpt (ck);
    if (variants[v].align == 64)  /* record data starts on a 64-byte offset within the zip */
      g_assert_cmpint ((canary_ckpt_get (ck, "a")->data - z->data) % 64, ==, 0);
    if (variants[v].align == 3)   /* alignment is never assumed */
      g_assert_cmpint ((canary_ckpt_get (ck, "a")->data - z->data) % 4, !=, 0);
    canary_ckpt_free (ck);
    g_byte_array_unref (z);
  }

  /* deflated records (torch never writes them, other zip tools might) */
  GByteArray *p = good_pickle ();
  zip_entry e[] = {
    { "w/data.pkl", p->data, p->len, TRUE }, { "w/data/0", (const guint8 *) ckpt_store0, 48, TRUE },
    { "w/data/1", (const guint8 *) ckpt_store1, 16, FALSE }, { "w/version", (const guint8 *) "3\n", 2, TRUE },
  };
  GByteArray *z = zip_build (e, G_N_ELEMENTS (e), &(zip_opts) { 0 });
  canary_ckpt *ck = canary_ckpt_parse (z->data, z->len, &err);
  g_assert_no_error (err);
  check_good_ckpt (ck);
  canary_ckpt_free (ck);

  GArray *dir = canary_zip_read_directory (z->data, z->len, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (dir->len, ==, 4);
  const canary_zip_entry *d0 = &g_array_index (dir, canary_zip_entry, 1);
  g_assert_cmpstr (d0->name, ==, "w/data/0");
  g_assert_cmpuint (d0->method, ==, 8);
  g_assert_cmpuint (d0->size, ==, 48);
  const guint8 *data;
  guint8 *owned;
  g_assert_true (canary_zip_entry_data (z->data, z->len, d0, FALSE, &data, &owned, &err));
  g_assert_nonnull (owned);
  g_assert_cmpmem (data, 48, ckpt_store0, 48);
  g_free (owned);
  g_array_unref (dir);
  g_byte_array_unref (z);
  g_byte_array_unref (p);
}

/* Finds the first central header in a zip we built (no zip64 tail). */
static gsize
cd_offset (GByteArray *z)
{
  const guint8 *e = z->data + z->len - 22;
  return e[16] | e[17] << 8 | e[18] << 16 | (gsize) e[19] << 24;
}
static void
test_zip_malformed (void)
{
  const zip_opts plain = { 0 };
  GByteArray *z = good_ckpt (&plain);
  gsize cd = cd_offset (z), eocd = z->len - 22;
  GError *err = NULL;

  /* no EOCD / too short / empty */
  GByteArray *t = g_byte_array_new ();
  g_byte_array_append (t, z->data, (guint) eocd);
  expect_ckpt_error (t, CANARY_ERROR_FORMAT, "end of central directory");
  g_byte_array_set_size (t, 5);
  expect_ckpt_error (t, CANARY_ERROR_FORMAT, "too short");
  g_byte_array_set_size (t, 0);
  g_assert_null (canary_ckpt_parse ((const guint8 *) "", 0, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, NULL);

  /* EOCD fields lying: CD offset, CD size, entry count, disks, zip64 markers without locator */
  struct { gsize off; guint8 val; const char *needle; } edits[] = {
    { eocd + 18, 0xff, "outside the file" }, { eocd + 13, 0xff, "outside the file" }, { eocd + 16, 0x01, NULL },
    { eocd + 10, 0xf0, "multi-disk" }, { eocd + 4, 1, "multi-disk" }, { eocd + 8, 0x00, "multi-disk" },
    { eocd + 19, 0xff, NULL },
  };
  guint8 eocd_copy[22];
  memcpy (eocd_copy, z->data + eocd, 22);
  for (gsize i = 0; i < G_N_ELEMENTS (edits); i++) {
    z->data[edits[i].off] = edits[i].val;
    if (i == G_N_ELEMENTS (edits) - 1)
      memset (z->data + eocd + 16, 0xff, 4);  /* saturated offset with no zip64 records */
    expect_ckpt_error (z, CANARY_ERROR_FORMAT, edits[i].needle);
    memcpy (z->data + eocd, eocd_copy, 22);
  }
  /* an entry count the directory cannot hold */
  z->data[eocd + 8] = z->data[eocd + 10] = 0xf0;
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "claims 240 entries");
  g_byte_array_unref (z);
  z = good_ckpt (&plain);

  /* truncated central directory: cut each header short by shrinking the CD size */
  for (guint sub = 1; sub < 60; sub += 7) {
    guint32 size = z->data[eocd + 12] | z->data[eocd + 13] << 8;
    guint32 ns = size - sub;
    z->data[eocd + 12] = ns & 0xff;
    z->data[eocd + 13] = (ns >> 8) & 0xff;
    expect_ckpt_error (z, CANARY_ERROR_FORMAT, NULL);
    z->data[eocd + 12] = size & 0xff;
    z->data[eocd + 13] = (size >> 8) & 0xff;
  }

  /* central header fields: signature, name length past the directory, encrypted flag, stored size
   * mismatch, local offset past the data, saturated size without a zip64 extra */
  struct { gsize off; guint8 val; canary_error_code code; const char *needle; } hed[] = {
    { cd + 0, 'X', CANARY_ERROR_FORMAT, "corrupt" },
    { cd + 29, 0x40, CANARY_ERROR_FORMAT, "runs past" },
    { cd + 8, 1, CANARY_ERROR_FORMAT, "encrypted" },
    { cd + 20, 0x01, CANARY_ERROR_FORMAT, "sizes differ" },
    { cd + 45, 0x10, CANARY_ERROR_FORMAT, "out of range" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (hed); i++) {
    guint8 old = z->data[hed[i].off];
    z->data[hed[i].off] = hed[i].val;
    expect_ckpt_error (z, hed[i].code, hed[i].needle);
    z->data[hed[i].off] = old;
  }
  guint8 sat[8];
  memcpy (sat, z->data + cd + 20, 8);
  memset (z->data + cd + 20, 0xff, 8);
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "zip64");
  memcpy (z->data + cd + 20, sat, 8);

  /* local header: wrong name, a compressed size past the directory */
  z->data[30] ^= 0x01;
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "different file");
  z->data[30] ^= 0x01;
  z->data[28] = 0xff;  /* local extra length 255: data would start past the CD */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, NULL);
  g_byte_array_unref (z);

  /* zip64 extra fields that lie: a huge size, a huge local offset */
  const zip_opts x64 = { .zip64 = TRUE, .zip64_extra = TRUE };
  z = good_ckpt (&x64);
  GArray *dir = canary_zip_read_directory (z->data, z->len, &err);
  g_assert_no_error (err);
  g_array_unref (dir);
  guint8 *pos = memmem (z->data, z->len, "PK\x01\x02", 4);
  gsize name_len = pos[28] | pos[29] << 8;
  guint8 *extra = pos + 46 + name_len;
  g_assert_cmpint (extra[0], ==, 1);
  guint8 keep[24];
  memcpy (keep, extra + 4, 24);
  memset (extra + 4, 0x7f, 8);   /* uncompressed size 2^63-ish */
  memset (extra + 12, 0x7f, 8);
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, NULL);
  memcpy (extra + 4, keep, 24);
  memset (extra + 20, 0x7f, 8);  /* local header offset */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "local header offset");
  memcpy (extra + 4, keep, 24);
  extra[2] = 8;                  /* extra too short for the saturated fields */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "zip64 extra field lacks");
  extra[2] = 200;                /* extra length past its header */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, NULL);
  g_byte_array_unref (z);

  /* deflate: corrupt stream, and a size no deflate stream can produce */
  GByteArray *p = good_pickle ();
  zip_entry e[] = { { "w/data.pkl", p->data, p->len, TRUE }, { "w/data/0", (const guint8 *) ckpt_store0, 48, FALSE },
                 { "w/data/1", (const guint8 *) ckpt_store1, 16, FALSE } };
  z = zip_build (e, 3, &plain);
  cd = cd_offset (z);
  gsize data0 = 30 + strlen ("w/data.pkl");
  z->data[data0 + 3] ^= 0xff;
  z->data[data0 + 4] ^= 0xff;
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "data.pkl");
  z->data[data0 + 3] ^= 0xff;
  z->data[data0 + 4] ^= 0xff;
  z->data[cd + 27] = 0x7f;  /* uncompressed size ~2 GiB from a few hundred bytes */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "impossible");
  z->data[cd + 27] = 0;
  z->data[cd + 24] += 1;    /* size off by one: inflate ends early */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "size does not match");
  g_byte_array_unref (z);
  g_byte_array_unref (p);
  g_byte_array_unref (t);
}
int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/zip/fixture/damaged", test_fixture_damaged);
  g_test_add_func ("/zip/variants", test_zip_variants);
  g_test_add_func ("/zip/malformed", test_zip_malformed);
  return g_test_run ();
}
