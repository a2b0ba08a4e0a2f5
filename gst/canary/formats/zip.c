/* gst-canary — the zip container of torch.save checkpoints (central directory, zip64, entries).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Layout facts used here (APPNOTE.TXT 6.3): the end-of-central-directory record (EOCD, 22 bytes +
 * comment) is at the end of the file; when any of its fields is saturated, or always for torch
 * (miniz with MZ_ZIP_FLAG_WRITE_ZIP64), a zip64 EOCD locator (20 bytes) sits right before it and
 * points at the zip64 EOCD record. Central directory headers give each entry's sizes and the offset
 * of its local header; the data starts after the local header's name and extra fields, whose
 * lengths may differ from the central copy (torch pads the local extra field to align data). */
#include "formats/ckpt.h"
#include "util.h"

#include <string.h>
#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u

#define LOCAL_HDR_LEN 30
#define CENTRAL_HDR_LEN 46
#define EOCD_LEN 22
#define LOCATOR64_LEN 20
#define EOCD64_LEN 56

/* Deflate cannot expand data by more than ~1032:1; a larger claimed ratio is a lie. */
#define MAX_DEFLATE_RATIO 1032u

static guint16
rd16 (const guint8 *p)
{
  return (guint16) (p[0] | p[1] << 8);
}

static guint32
rd32 (const guint8 *p)
{
  return (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 | (guint32) p[3] << 24;
}

static guint64
rd64 (const guint8 *p)
{
  return (guint64) rd32 (p) | (guint64) rd32 (p + 4) << 32;
}

#define zip_fail(error, ...) canary_fail (error, CANARY_ERROR_FORMAT, "zip", __VA_ARGS__)

/* Where the central directory is and how many entries it holds. */
typedef struct {
  guint64 n_entries;
  guint64 cd_offset;
  guint64 cd_size;
  gsize eocd_pos;          /* start of the EOCD (or of the zip64 record): the CD must end before */
} zip_tail;

/* Scans backwards for the EOCD signature; the comment is at most 65535 bytes. A record whose
 * comment ends exactly at the end of the file is preferred (a comment may itself contain the
 * signature); failing that, the last one whose comment fits is taken. */
static gboolean
find_eocd (const guint8 *d, gsize len, gsize *pos, GError **error)
{
  if (len < EOCD_LEN)
    return zip_fail (error, "file of %" G_GSIZE_FORMAT " bytes is too short to be a zip", len);
  gsize lowest = len - EOCD_LEN > 65535 ? len - EOCD_LEN - 65535 : 0;
  gboolean found = FALSE;
  for (gsize p = len - EOCD_LEN + 1; p-- > lowest;) {
    if (rd32 (d + p) != SIG_EOCD)
      continue;
    gsize comment = rd16 (d + p + 20);
    if (comment == len - p - EOCD_LEN) {
      *pos = p;
      return TRUE;
    }
    if (!found && comment <= len - p - EOCD_LEN) {
      *pos = p;
      found = TRUE;
    }
  }
  if (!found)
    return zip_fail (error, "end of central directory record not found (not a zip, or truncated)");
  return TRUE;
}

/* Reads the zip64 EOCD locator and record that precede the EOCD, when present. */
static gboolean
read_zip64_tail (const guint8 *d, gsize len, gsize eocd, zip_tail *t, gboolean *found,
    GError **error)
{
  *found = FALSE;
  if (eocd < LOCATOR64_LEN || rd32 (d + eocd - LOCATOR64_LEN) != SIG_LOCATOR64)
    return TRUE;
  const guint8 *loc = d + eocd - LOCATOR64_LEN;
  guint64 rec = rd64 (loc + 8);
  if (rd32 (loc + 4) != 0 || rd32 (loc + 16) > 1)
    return zip_fail (error, "zip64 locator: multi-disk archives are not supported");
  if (rec > eocd - LOCATOR64_LEN || eocd - LOCATOR64_LEN - rec < EOCD64_LEN)
    return zip_fail (error, "zip64 locator: record offset %" G_GUINT64_FORMAT " out of range", rec);
  const guint8 *r = d + rec;
  if (rd32 (r) != SIG_EOCD64)
    return zip_fail (error, "zip64 end of central directory record: bad signature at %" G_GUINT64_FORMAT, rec);
  if (rd32 (r + 16) != 0 || rd32 (r + 20) != 0 || rd64 (r + 24) != rd64 (r + 32))
    return zip_fail (error, "zip64 end of central directory record: multi-disk archives are not supported");
  t->n_entries = rd64 (r + 32);
  t->cd_size = rd64 (r + 40);
  t->cd_offset = rd64 (r + 48);
  t->eocd_pos = (gsize) rec;
  *found = TRUE;
  (void) len;
  return TRUE;
}

static gboolean
read_tail (const guint8 *d, gsize len, zip_tail *t, GError **error)
{
  gsize eocd = 0;
  if (!find_eocd (d, len, &eocd, error))
    return FALSE;
  const guint8 *e = d + eocd;
  guint16 disk = rd16 (e + 4), cd_disk = rd16 (e + 6);
  guint16 n_disk = rd16 (e + 8), n_total = rd16 (e + 10);
  guint32 cd_size = rd32 (e + 12), cd_off = rd32 (e + 16);

  gboolean zip64;
  if (!read_zip64_tail (d, len, eocd, t, &zip64, error))
    return FALSE;
  if (!zip64) {
    if (n_total == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu)
      return zip_fail (error, "end of central directory has zip64 markers but no zip64 locator");
    if (disk != 0 || cd_disk != 0 || n_disk != n_total)
      return zip_fail (error, "multi-disk archives are not supported");
    t->n_entries = n_total;
    t->cd_size = cd_size;
    t->cd_offset = cd_off;
    t->eocd_pos = eocd;
  }
  /* The central directory must lie wholly before the end records. */
  if (t->cd_offset > t->eocd_pos || t->cd_size > t->eocd_pos - t->cd_offset)
    return zip_fail (error, "central directory (offset %" G_GUINT64_FORMAT ", size %" G_GUINT64_FORMAT
        ") lies outside the file", t->cd_offset, t->cd_size);
  /* Each header is at least 46 bytes: this bounds the allocation below by the file size. */
  if (t->n_entries > t->cd_size / CENTRAL_HDR_LEN)
    return zip_fail (error, "central directory claims %" G_GUINT64_FORMAT " entries in %" G_GUINT64_FORMAT
        " bytes", t->n_entries, t->cd_size);
  return TRUE;
}

/* Applies the zip64 extended-information extra field (id 0x0001): it holds, in this order, only
 * the fields that are saturated in the fixed header. */
static gboolean
apply_zip64_extra (const guint8 *extra, gsize extra_len, const char *name, guint64 *size,
    guint64 *comp, guint64 *lho, GError **error)
{
  gsize p = 0;
  while (extra_len - p >= 4) {
    guint16 id = rd16 (extra + p), n = rd16 (extra + p + 2);
    if (n > extra_len - p - 4)
      return zip_fail (error, "entry '%s': extra field runs past its header", name);
    if (id == 0x0001) {
      const guint8 *f = extra + p + 4;
      gsize left = n;
      guint64 *fields[3] = { size, comp, lho };
      guint64 sat[3] = { 0xffffffffu, 0xffffffffu, 0xffffffffu };
      static const char *const names[3] = { "uncompressed size", "compressed size", "local header offset" };
      for (int i = 0; i < 3; i++) {
        if (*fields[i] != sat[i])
          continue;
        if (left < 8)
          return zip_fail (error, "entry '%s': zip64 extra field lacks the %s", name, names[i]);
        *fields[i] = rd64 (f);
        f += 8;
        left -= 8;
      }
      return TRUE;
    }
    p += 4 + (gsize) n;
  }
  if (*size == 0xffffffffu || *comp == 0xffffffffu || *lho == 0xffffffffu)
    return zip_fail (error, "entry '%s': saturated size/offset but no zip64 extra field", name);
  return TRUE;
}

/* Validates the local header of `e` and computes where its data starts. */
static gboolean
locate_data (const guint8 *d, gsize limit, guint64 lho, canary_zip_entry *e, GError **error)
{
  if (lho > limit || limit - lho < LOCAL_HDR_LEN)
    return zip_fail (error, "entry '%s': local header offset %" G_GUINT64_FORMAT " out of range", e->name, lho);
  const guint8 *h = d + lho;
  if (rd32 (h) != SIG_LOCAL)
    return zip_fail (error, "entry '%s': no local header signature at offset %" G_GUINT64_FORMAT, e->name, lho);
  gsize name_len = rd16 (h + 26), extra_len = rd16 (h + 28);
  guint64 start = lho + LOCAL_HDR_LEN + name_len + extra_len;  /* no overflow: all < 2^64 / 2 */
  if (start > limit)
    return zip_fail (error, "entry '%s': local header runs past the central directory", e->name);
  if (name_len != strlen (e->name) || memcmp (h + LOCAL_HDR_LEN, e->name, name_len) != 0)
    return zip_fail (error, "entry '%s': local header names a different file", e->name);
  if (e->comp_size > limit - start)
    return zip_fail (error, "entry '%s': data (offset %" G_GUINT64_FORMAT ", %" G_GSIZE_FORMAT
        " bytes) runs past the end of the entries", e->name, start, e->comp_size);
  e->offset = (gsize) start;
  return TRUE;
}

/* Parses one central directory header at d[*p], advancing *p. */
static gboolean
read_central_header (const guint8 *d, gsize *p, gsize cd_end, gsize data_limit,
    canary_zip_entry *e, GError **error)
{
  const guint8 *h = d + *p;
  if (cd_end - *p < CENTRAL_HDR_LEN || rd32 (h) != SIG_CENTRAL)
    return zip_fail (error, "central directory header at offset %" G_GSIZE_FORMAT " is truncated or corrupt", *p);
  guint16 flags = rd16 (h + 8);
  gsize name_len = rd16 (h + 28), extra_len = rd16 (h + 30), comment_len = rd16 (h + 32);
  gsize rec_len = CENTRAL_HDR_LEN + name_len + extra_len + comment_len;
  if (rec_len > cd_end - *p)
    return zip_fail (error, "central directory header at offset %" G_GSIZE_FORMAT " runs past the directory", *p);
  if (memchr (h + CENTRAL_HDR_LEN, 0, name_len))
    return zip_fail (error, "entry name at offset %" G_GSIZE_FORMAT " contains a NUL byte", *p);

  e->name = g_strndup ((const char *) h + CENTRAL_HDR_LEN, name_len);
  e->method = rd16 (h + 10);
  e->crc32 = rd32 (h + 16);
  guint64 comp = rd32 (h + 20), size = rd32 (h + 24), lho = rd32 (h + 42);
  if (flags & 0x0001)
    return zip_fail (error, "entry '%s' is encrypted", e->name);
  if (!apply_zip64_extra (h + CENTRAL_HDR_LEN + name_len, extra_len, e->name, &size, &comp, &lho, error))
    return FALSE;
  if (size > G_MAXSIZE || comp > G_MAXSIZE)
    return zip_fail (error, "entry '%s': size does not fit in memory", e->name);
  e->size = (gsize) size;
  e->comp_size = (gsize) comp;
  if (e->method == 0 && e->size != e->comp_size)
    return zip_fail (error, "entry '%s': stored but sizes differ (%" G_GSIZE_FORMAT " vs %" G_GSIZE_FORMAT ")",
        e->name, e->size, e->comp_size);
  if (!locate_data (d, data_limit, lho, e, error))
    return FALSE;
  *p += rec_len;
  return TRUE;
}

static void
clear_entry (gpointer p)
{
  canary_zip_entry *e = p;
  g_free (e->name);
}

GArray *
canary_zip_read_directory (const guint8 *data, gsize len, GError **error)
{
  zip_tail t = { 0 };
  if (!read_tail (data, len, &t, error))
    return NULL;

  GArray *entries = g_array_sized_new (FALSE, TRUE, sizeof (canary_zip_entry), (guint) t.n_entries);
  g_array_set_clear_func (entries, clear_entry);
  gsize p = (gsize) t.cd_offset, cd_end = (gsize) (t.cd_offset + t.cd_size);
  for (guint64 i = 0; i < t.n_entries; i++) {
    canary_zip_entry e = { 0 };
    /* Entry data must precede the central directory. */
    if (!read_central_header (data, &p, cd_end, (gsize) t.cd_offset, &e, error)) {
      g_free (e.name);
      g_array_unref (entries);
      return NULL;
    }
    g_array_append_val (entries, e);
  }
  return entries;
}

static gboolean
inflate_entry (const guint8 *src, const canary_zip_entry *e, guint8 **out, GError **error)
{
  guint64 max_out = (guint64) e->comp_size * MAX_DEFLATE_RATIO + 64;
  if (e->size > max_out)
    return zip_fail (error, "entry '%s': uncompressed size %" G_GSIZE_FORMAT " is impossible for %"
        G_GSIZE_FORMAT " compressed bytes", e->name, e->size, e->comp_size);
  guint8 *buf = g_try_malloc (e->size ? e->size : 1);
  if (!buf) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "zip: entry '%s': cannot allocate %" G_GSIZE_FORMAT " bytes to inflate it", e->name, e->size);
    return FALSE;
  }

  z_stream zs = { 0 };
  if (inflateInit2 (&zs, -MAX_WBITS) != Z_OK) {
    g_free (buf);
    return zip_fail (error, "entry '%s': zlib init failed", e->name);
  }
  /* zlib counts in uInt; feed and drain in chunks so >4 GiB entries work too. */
  gsize in_left = e->comp_size, out_left = e->size;
  const guint8 *in = src;
  guint8 *o = buf;
  int rc = Z_OK;
  while (rc == Z_OK) {
    if (zs.avail_in == 0 && in_left) {
      zs.next_in = (Bytef *) in;
      zs.avail_in = (uInt) MIN (in_left, G_MAXUINT32 / 2);
      in += zs.avail_in;
      in_left -= zs.avail_in;
    }
    if (zs.avail_out == 0 && out_left) {
      zs.next_out = o;
      zs.avail_out = (uInt) MIN (out_left, G_MAXUINT32 / 2);
      o += zs.avail_out;
      out_left -= zs.avail_out;
    }
    uInt before_in = zs.avail_in, before_out = zs.avail_out;
    rc = inflate (&zs, Z_NO_FLUSH);
    if (rc == Z_BUF_ERROR || (rc == Z_OK && before_in == zs.avail_in && before_out == zs.avail_out))
      break;  /* no progress possible: input exhausted or output full */
  }
  gboolean ok = rc == Z_STREAM_END && zs.avail_out == 0 && out_left == 0;
  inflateEnd (&zs);
  if (!ok) {
    g_free (buf);
    return zip_fail (error, "entry '%s': deflate data is corrupt or its size does not match the directory", e->name);
  }
  *out = buf;
  return TRUE;
}

static gboolean
check_crc (const canary_zip_entry *e, const guint8 *bytes, GError **error)
{
  uLong crc = crc32 (0L, Z_NULL, 0);
  gsize left = e->size;
  const guint8 *p = bytes;
  while (left) {
    uInt n = (uInt) MIN (left, G_MAXUINT32 / 2);
    crc = crc32 (crc, p, n);
    p += n;
    left -= n;
  }
  if ((guint32) crc != e->crc32)
    return zip_fail (error, "entry '%s': CRC-32 mismatch (directory %08x, data %08x)", e->name,
        e->crc32, (guint32) crc);
  return TRUE;
}

gboolean
canary_zip_entry_data (const guint8 *zip, gsize zip_len, const canary_zip_entry *e,
    gboolean want_crc, const guint8 **data, guint8 **owned, GError **error)
{
  *data = NULL;
  *owned = NULL;
  if (e->offset > zip_len || e->comp_size > zip_len - e->offset)
    return zip_fail (error, "entry '%s': data lies outside the file", e->name);
  const guint8 *src = zip + e->offset;

  if (e->method == 0) {
    if (want_crc && !check_crc (e, src, error))
      return FALSE;
    *data = src;
    return TRUE;
  }
  if (e->method != 8) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
        "zip: entry '%s': compression method %u is not supported (only stored and deflate)", e->name, e->method);
    return FALSE;
  }
  guint8 *buf = NULL;
  if (!inflate_entry (src, e, &buf, error))
    return FALSE;
  if (!check_crc (e, buf, error)) {
    g_free (buf);
    return FALSE;
  }
  *data = buf;
  *owned = buf;
  return TRUE;
}
