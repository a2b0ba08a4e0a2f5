/* gst-canary tests — builders of tar, gzip/deflate, pickle, zip and checkpoint test inputs (see
 * builders.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "builders.h"

#include "canary.h"
#include "formats/ckpt.h"

#include <string.h>
#include <zlib.h>

/* ---- tar --------------------------------------------------------------------------------------- */

void
tar_put_octal (guint8 *f, gsize n, guint64 v)
{
  char *s = g_strdup_printf ("%0*" G_GINT64_MODIFIER "o", (int) n - 1, v);
  memcpy (f, s, n - 1);
  f[n - 1] = 0;
  g_free (s);
}

void
tar_fix_checksum (guint8 *h)
{
  memset (h + 148, ' ', 8);
  guint sum = 0;
  for (int i = 0; i < 512; i++)
    sum += h[i];
  char s[8];
  g_snprintf (s, sizeof s, "%06o", sum);
  memcpy (h + 148, s, 6);
  h[154] = 0;
  h[155] = ' ';
}

gsize
tar_header (GByteArray *b, const char *name, char type, guint64 size, const char *prefix)
{
  guint8 h[512] = { 0 };
  memcpy (h, name, MIN (strlen (name), 100));
  tar_put_octal (h + 100, 8, 0644);
  tar_put_octal (h + 108, 8, 0);
  tar_put_octal (h + 116, 8, 0);
  tar_put_octal (h + 124, 12, size);
  tar_put_octal (h + 136, 12, 1700000000);
  h[156] = (guint8) type;
  memcpy (h + 257, "ustar\0" "00", 8);
  if (prefix)
    memcpy (h + 345, prefix, MIN (strlen (prefix), 155));
  tar_fix_checksum (h);
  gsize off = b->len;
  g_byte_array_append (b, h, 512);
  return off;
}

void
tar_data (GByteArray *b, const void *data, gsize len)
{
  static const guint8 zeros[512] = { 0 };
  g_byte_array_append (b, data, (guint) len);
  if (len % 512)
    g_byte_array_append (b, zeros, (guint) (512 - len % 512));
}

gsize
tar_file (GByteArray *b, const char *name, const char *text)
{
  gsize off = tar_header (b, name, '0', strlen (text), NULL);
  tar_data (b, text, strlen (text));
  return off;
}

char *
pax_record (const char *key, const char *value)
{
  gsize body = strlen (key) + strlen (value) + 3;  /* ' ', '=', '\n' */
  gsize len = body + 1;
  for (;;) {  /* the length counts its own digits: converges in a step or two */
    char digits[32];
    gsize want = (gsize) g_snprintf (digits, sizeof digits, "%zu", len) + body;
    if (want == len)
      break;
    len = want;
  }
  return g_strdup_printf ("%zu %s=%s\n", len, key, value);
}

void
tar_pax (GByteArray *b, char type, const char *records)
{
  tar_header (b, "././@PaxHeader", type, strlen (records), NULL);
  tar_data (b, records, strlen (records));
}

void
tar_end (GByteArray *b)
{
  static const guint8 zeros[1024] = { 0 };
  g_byte_array_append (b, zeros, 1024);
}

/* ---- deflate ----------------------------------------------------------------------------------- */

/* `src` deflated at `level`; `window_bits` picks the wrapper (zlib's deflateInit2). */
static guint8 *
compress_with (const guint8 *src, gsize len, int level, int window_bits, gsize *out_len)
{
  z_stream zs = { 0 };
  g_assert_cmpint (deflateInit2 (&zs, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), ==, Z_OK);
  gsize cap = deflateBound (&zs, len);
  guint8 *out = g_malloc (cap);
  zs.next_in = (Bytef *) src;
  zs.avail_in = (uInt) len;
  zs.next_out = out;
  zs.avail_out = (uInt) cap;
  g_assert_cmpint (deflate (&zs, Z_FINISH), ==, Z_STREAM_END);
  *out_len = zs.total_out;
  deflateEnd (&zs);
  return out;
}

guint8 *
gzip_bytes (const guint8 *src, gsize len, gsize *out_len)
{
  return compress_with (src, len, 1, 16 + MAX_WBITS, out_len);
}

guint8 *
deflate_raw (const guint8 *src, gsize len, gsize *out_len)
{
  return compress_with (src, len, 6, -MAX_WBITS, out_len);
}

/* ---- pickle ------------------------------------------------------------------------------------ */

void
pk_op (GByteArray *b, guint8 op)
{
  g_byte_array_append (b, &op, 1);
}

void
pk_u32 (GByteArray *b, guint32 v)
{
  guint8 le[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };
  g_byte_array_append (b, le, 4);
}

void
pk_str (GByteArray *b, const char *s)
{
  pk_op (b, 'X');
  pk_u32 (b, (guint32) strlen (s));
  g_byte_array_append (b, (const guint8 *) s, (guint) strlen (s));
}

void
pk_global (GByteArray *b, const char *module, const char *name)
{
  char *s = g_strdup_printf ("c%s\n%s\n", module, name);
  g_byte_array_append (b, (const guint8 *) s, (guint) strlen (s));
  g_free (s);
}

void
pk_int (GByteArray *b, gint64 v)
{
  if (v >= 0 && v < 256) {
    pk_op (b, 'K');
    pk_op (b, (guint8) v);
  } else if (v >= G_MININT32 && v <= G_MAXINT32) {
    pk_op (b, 'J');
    pk_u32 (b, (guint32) v);
  } else {
    pk_op (b, 0x8a);
    pk_op (b, 8);
    for (int i = 0; i < 8; i++)
      pk_op (b, (guint8) ((guint64) v >> (8 * i)));
  }
}

void
pk_int_tuple (GByteArray *b, int n, const gint64 *v)
{
  pk_op (b, '(');
  for (int i = 0; i < n; i++)
    pk_int (b, v[i]);
  pk_op (b, 't');
}

void
pk_tensor (GByteArray *b, const char *storage_type, const char *key, gint64 numel, gint64 offset, int ndim,
    const gint64 *shape, const gint64 *stride)
{
  pk_global (b, "torch._utils", "_rebuild_tensor_v2");
  pk_op (b, '(');
  pk_op (b, '(');
  pk_str (b, "storage");
  pk_global (b, "torch", storage_type);
  pk_str (b, key);
  pk_str (b, "cpu");
  pk_int (b, numel);
  pk_op (b, 't');
  pk_op (b, 'Q');
  pk_int (b, offset);
  pk_int_tuple (b, ndim, shape);
  pk_int_tuple (b, ndim, stride);
  pk_op (b, 0x89);
  pk_global (b, "collections", "OrderedDict");
  pk_op (b, ')');
  pk_op (b, 'R');
  pk_op (b, 't');
  pk_op (b, 'R');
}

void
pk_begin (GByteArray *b)
{
  pk_op (b, 0x80);
  pk_op (b, 2);
  pk_global (b, "collections", "OrderedDict");
  pk_op (b, ')');
  pk_op (b, 'R');
  pk_op (b, '(');
}

void
pk_end (GByteArray *b)
{
  pk_op (b, 'u');
  pk_op (b, '.');
}

/* ---- zip --------------------------------------------------------------------------------------- */

static void
w16 (GByteArray *b, guint v)
{
  guint8 le[2] = { v & 0xff, (v >> 8) & 0xff };
  g_byte_array_append (b, le, 2);
}

static void
w32 (GByteArray *b, guint32 v)
{
  pk_u32 (b, v);
}

static void
w64 (GByteArray *b, guint64 v)
{
  w32 (b, (guint32) v);
  w32 (b, (guint32) (v >> 32));
}

GByteArray *
zip_build (const zip_entry *e, guint n, const zip_opts *o)
{
  GByteArray *b = g_byte_array_new ();
  gsize *lho = g_new (gsize, n), *clen = g_new (gsize, n);
  guint32 *crc = g_new (guint32, n);
  for (guint i = 0; i < n; i++) {
    gsize nl = strlen (e[i].name), cl = e[i].len;
    guint8 *comp = NULL;
    if (e[i].deflate)
      comp = deflate_raw (e[i].data, e[i].len, &cl);
    crc[i] = (guint32) crc32 (0, e[i].data, (uInt) e[i].len);
    clen[i] = cl;
    lho[i] = b->len;
    gsize extra = 0;
    if (o->align > 1) {
      gsize start = b->len + 30 + nl + 4;  /* with a 4-byte 'FB' extra header */
      extra = 4 + (o->align - start % o->align) % o->align;
    }
    w32 (b, 0x04034b50);
    w16 (b, 20);
    w16 (b, 0);
    w16 (b, e[i].deflate ? 8 : 0);
    w16 (b, 0);
    w16 (b, 0);
    w32 (b, crc[i]);
    w32 (b, (guint32) cl);
    w32 (b, (guint32) e[i].len);
    w16 (b, (guint) nl);
    w16 (b, (guint) extra);
    g_byte_array_append (b, (const guint8 *) e[i].name, (guint) nl);
    if (extra) {
      w16 (b, 0x4246);  /* 'F','B' */
      w16 (b, (guint) (extra - 4));
      for (gsize k = 0; k < extra - 4; k++)
        pk_op (b, 'Z');
    }
    g_byte_array_append (b, comp ? comp : e[i].data, (guint) cl);
    g_free (comp);
  }
  gsize cd = b->len;
  for (guint i = 0; i < n; i++) {
    gsize nl = strlen (e[i].name);
    gboolean x = o->zip64_extra;
    w32 (b, 0x02014b50);
    w16 (b, 45);
    w16 (b, 45);
    w16 (b, 0);
    w16 (b, e[i].deflate ? 8 : 0);
    w16 (b, 0);
    w16 (b, 0);
    w32 (b, crc[i]);
    w32 (b, x ? 0xffffffffu : (guint32) clen[i]);
    w32 (b, x ? 0xffffffffu : (guint32) e[i].len);
    w16 (b, (guint) nl);
    w16 (b, x ? 28 : 0);
    w16 (b, 0);
    w16 (b, 0);
    w16 (b, 0);
    w32 (b, 0);
    w32 (b, x ? 0xffffffffu : (guint32) lho[i]);
    g_byte_array_append (b, (const guint8 *) e[i].name, (guint) nl);
    if (x) {
      w16 (b, 0x0001);
      w16 (b, 24);
      w64 (b, e[i].len);
      w64 (b, clen[i]);
      w64 (b, lho[i]);
    }
  }
  gsize cd_size = b->len - cd;
  if (o->zip64) {
    gsize rec = b->len;
    w32 (b, 0x06064b50);
    w64 (b, 44);
    w16 (b, 45);
    w16 (b, 45);
    w32 (b, 0);
    w32 (b, 0);
    w64 (b, n);
    w64 (b, n);
    w64 (b, cd_size);
    w64 (b, cd);
    w32 (b, 0x07064b50);
    w32 (b, 0);
    w64 (b, rec);
    w32 (b, 1);
  }
  gsize clen_c = o->comment ? strlen (o->comment) : 0;
  w32 (b, 0x06054b50);
  w16 (b, 0);
  w16 (b, 0);
  w16 (b, n);
  w16 (b, n);
  w32 (b, (guint32) cd_size);
  w32 (b, (guint32) cd);
  w16 (b, (guint) clen_c);
  if (clen_c)
    g_byte_array_append (b, (const guint8 *) o->comment, (guint) clen_c);
  g_free (lho);
  g_free (clen);
  g_free (crc);
  return b;
}

/* ---- checkpoints ------------------------------------------------------------------------------- */

const zip_opts zip_torch_like = { .align = 64, .zip64 = TRUE };

GByteArray *
ckpt_build (GByteArray *pkl, const float *const *storages, const gsize *lens, guint n, const zip_opts *o)
{
  zip_entry *e = g_new0 (zip_entry, n + 2);
  char **names = g_new0 (char *, n + 1);
  e[0] = (zip_entry) { "archive/data.pkl", pkl->data, pkl->len, FALSE };
  e[1] = (zip_entry) { "archive/byteorder", (const guint8 *) "little", 6, FALSE };
  for (guint i = 0; i < n; i++) {
    names[i] = g_strdup_printf ("archive/data/%u", i);
    e[i + 2] = (zip_entry) { names[i], (const guint8 *) storages[i], lens[i] * sizeof (float), FALSE };
  }
  GByteArray *z = zip_build (e, n + 2, o ? o : &zip_torch_like);
  g_strfreev (names);
  g_free (e);
  return z;
}

const float ckpt_store0[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };
const float ckpt_store1[4] = { -1, -2, -3, -4 };

GByteArray *
good_pickle (void)
{
  GByteArray *p = g_byte_array_new ();
  pk_begin (p);
  pk_str (p, "a");
  pk_tensor (p, "FloatStorage", "0", 12, 0, 2, (gint64[]) { 3, 4 }, (gint64[]) { 4, 1 });
  pk_str (p, "b");
  pk_tensor (p, "FloatStorage", "1", 4, 0, 1, (gint64[]) { 4 }, (gint64[]) { 1 });
  pk_str (p, "tied");
  pk_tensor (p, "FloatStorage", "0", 12, 0, 2, (gint64[]) { 4, 3 }, (gint64[]) { 1, 4 });
  pk_end (p);
  return p;
}

GByteArray *
good_ckpt (const zip_opts *o)
{
  GByteArray *p = good_pickle ();
  const float *s[] = { ckpt_store0, ckpt_store1 };
  gsize l[] = { 12, 4 };
  GByteArray *z = ckpt_build (p, s, l, 2, o);
  g_byte_array_unref (p);
  return z;
}

/* ---- checks ------------------------------------------------------------------------------------ */

void
assert_error_mentions_ (GError **err, int code, const char *needle)
{
  g_assert_error (*err, CANARY_ERROR, code);
  if (needle && !strstr ((*err)->message, needle))
    g_error ("error '%s' does not mention '%s'", (*err)->message, needle);
  g_clear_error (err);
}

void
expect_ckpt_error (GByteArray *z, int code, const char *needle)
{
  GError *err = NULL;
  canary_ckpt *ck = canary_ckpt_parse (z->data, z->len, &err);
  g_assert_null (ck);
  assert_error_mentions (err, code, needle);
}
