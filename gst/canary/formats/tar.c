/* gst-canary — .nemo archives: POSIX tar (plain or gzip'd) or an extracted directory.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * NeMo writes .nemo files with Python's tarfile in PAX format: every member is preceded by an 'x'
 * extended header (mtime is a float), names start with "./" and there is a "." directory entry.
 * Plain tars are mapped read-only and members are used in place; gzip'd tars (NeMo < 1.7) are
 * inflated into memory once. Tar facts (POSIX.1-2001 ustar/pax, GNU extensions): 512-byte blocks;
 * header fields name[100]@0, size[12]@124 (octal, or base-256 when the top bit of the first byte is
 * set), chksum[8]@148, typeflag@156, magic[6]@257, prefix[155]@345; data padded to 512 bytes; the
 * archive ends with two zero blocks. */
#include "formats/tar.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <glib/gstdio.h>

#define BLOCK 512
/* A gzip'd .nemo is inflated into memory: refuse more than this (the largest Canary is ~6.4 GB). */
#define GZIP_MAX_BYTES ((guint64) 16 << 30)
#define MAX_NAME_LEN 4096

typedef struct {
  char *name;              /* normalised: no leading "./" or "/" */
  const guint8 *data;
  gsize len;
  char *file_path;         /* directory mode: mapped on first use */
  GMappedFile *map;
} member;

struct _canary_archive {
  char *path;
  GMappedFile *map;        /* the tar file */
  guint8 *inflated;        /* or the inflated gzip */
  GPtrArray *members;      /* member*, archive order */
  GHashTable *by_name;     /* name → member* (the last one wins, as when extracting) */
  GMutex lock;             /* guards lazy mapping in directory mode */
};

#define ar_fail(error, ...) canary_fail (error, CANARY_ERROR_FORMAT, "tar", __VA_ARGS__)

static void
member_free (gpointer p)
{
  member *m = p;
  g_free (m->name);
  g_free (m->file_path);
  if (m->map)
    g_mapped_file_unref (m->map);
  g_free (m);
}

/* Drops "./" and "/" prefixes (repeatedly): "./model_config.yaml" → "model_config.yaml". */
static const char *
skip_prefixes (const char *name)
{
  for (;;) {
    if (name[0] == '.' && name[1] == '/')
      name += 2;
    else if (name[0] == '/')
      name++;
    else
      return name;
  }
}

static canary_archive *
archive_new (const char *path)
{
  canary_archive *ar = g_new0 (canary_archive, 1);
  ar->path = g_strdup (path);
  ar->members = g_ptr_array_new_with_free_func (member_free);
  ar->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  g_mutex_init (&ar->lock);
  return ar;
}

static member *
add_member (canary_archive *ar, const char *name, const guint8 *data, gsize len)
{
  member *m = g_new0 (member, 1);
  m->name = g_strdup (skip_prefixes (name));
  m->data = data;
  m->len = len;
  g_ptr_array_add (ar->members, m);
  g_hash_table_insert (ar->by_name, m->name, m);
  return m;
}

/* --- tar headers ------------------------------------------------------------------------------ */

/* Numeric header field: octal digits with optional leading spaces and a space/NUL terminator, or
 * GNU base-256 (top bit of the first byte set; negative values are refused). An empty field is 0,
 * as Python's tarfile reads it. */
static gboolean
parse_number (const guint8 *f, gsize n, guint64 *out)
{
  guint64 v = 0;
  if (f[0] & 0x80) {
    if (f[0] & 0x40)
      return FALSE;  /* negative */
    v = f[0] & 0x3f;
    for (gsize i = 1; i < n; i++) {
      if (v >> 55)
        return FALSE;
      v = v << 8 | f[i];
    }
    *out = v;
    return TRUE;
  }
  gsize i = 0;
  while (i < n && f[i] == ' ')
    i++;
  for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
    if (v >> 60)
      return FALSE;
    v = v << 3 | (guint64) (f[i] - '0');
  }
  for (; i < n; i++)
    if (f[i] != ' ' && f[i] != '\0')
      return FALSE;
  *out = v;
  return TRUE;
}

static gboolean
is_zero_block (const guint8 *b)
{
  for (int i = 0; i < BLOCK; i++)
    if (b[i])
      return FALSE;
  return TRUE;
}

/* The checksum is the sum of the header bytes with the checksum field read as spaces; historic
 * tars summed signed chars, so accept either. */
static gboolean
checksum_ok (const guint8 *h)
{
  guint64 want;
  if (!parse_number (h + 148, 8, &want))
    return FALSE;
  gint64 su = 0, ss = 0;
  for (int i = 0; i < BLOCK; i++) {
    guint8 c = (i >= 148 && i < 156) ? ' ' : h[i];
    su += c;
    ss += (gint8) c;
  }
  return (gint64) want == su || (gint64) want == ss;
}

/* The header's own name: POSIX ustar joins prefix "/" name; GNU tars use the prefix area for
 * other data, so it only counts with the "ustar\0" magic. */
static char *
header_name (const guint8 *h)
{
  char *name = g_strndup ((const char *) h, 100);
  if (memcmp (h + 257, "ustar\0", 6) == 0 && h[345]) {
    char *prefix = g_strndup ((const char *) h + 345, 155);
    char *joined = g_strconcat (prefix, "/", name, NULL);
    g_free (prefix);
    g_free (name);
    name = joined;
  }
  return name;
}

/* --- PAX extended headers --------------------------------------------------------------------- */

typedef struct {
  char *path;              /* NULL when not set */
  gboolean has_size;
  guint64 size;
} pax_overrides;

static void
pax_clear (pax_overrides *p)
{
  g_free (p->path);
  memset (p, 0, sizeof *p);
}

static gboolean
parse_decimal (const char *s, gsize n, guint64 *out)
{
  guint64 v = 0;
  if (n == 0)
    return FALSE;
  for (gsize i = 0; i < n; i++) {
    if (!g_ascii_isdigit (s[i]) || v > (G_MAXUINT64 - 9) / 10)
      return FALSE;
    v = v * 10 + (guint64) (s[i] - '0');
  }
  *out = v;
  return TRUE;
}

/* Records are "<len> <key>=<value>\n" where <len> counts the whole record. Only `path` and
 * `size` matter to us; `apply` is FALSE for global ('g') headers, which are validated and ignored. */
static gboolean
parse_pax (const guint8 *d, gsize n, gsize hdr_off, gboolean apply, pax_overrides *pax, GError **error)
{
  const char *s = (const char *) d;
  gsize p = 0;
  while (p < n) {
    gsize q = p;
    while (q < n && g_ascii_isdigit (s[q]))
      q++;
    guint64 rec_len;
    if (q == n || s[q] != ' ' || !parse_decimal (s + p, q - p, &rec_len) || rec_len > n - p ||
        rec_len < q - p + 3 || s[p + rec_len - 1] != '\n')
      return ar_fail (error, "PAX header at offset %" G_GSIZE_FORMAT ": malformed record at byte %" G_GSIZE_FORMAT,
          hdr_off, p);
    const char *kv = s + q + 1, *end = s + p + rec_len - 1;
    const char *eq = memchr (kv, '=', end - kv);
    if (!eq)
      return ar_fail (error, "PAX header at offset %" G_GSIZE_FORMAT ": record without '='", hdr_off);
    gsize klen = eq - kv, vlen = end - eq - 1;
    if (apply && klen == 4 && memcmp (kv, "path", 4) == 0) {
      if (vlen == 0 || vlen > MAX_NAME_LEN || memchr (eq + 1, 0, vlen))
        return ar_fail (error, "PAX header at offset %" G_GSIZE_FORMAT ": bad path value", hdr_off);
      g_free (pax->path);
      pax->path = g_strndup (eq + 1, vlen);
    } else if (apply && klen == 4 && memcmp (kv, "size", 4) == 0) {
      if (!parse_decimal (eq + 1, vlen, &pax->size))
        return ar_fail (error, "PAX header at offset %" G_GSIZE_FORMAT ": bad size value", hdr_off);
      pax->has_size = TRUE;
    }
    p += rec_len;
  }
  return TRUE;
}

/* --- the walk --------------------------------------------------------------------------------- */

static gboolean
parse_tar (canary_archive *ar, const guint8 *d, gsize len, GError **error)
{
  pax_overrides pax = { 0 };
  char *gnu_long_name = NULL;
  gsize off = 0;
  gboolean ok = FALSE;

  for (;;) {
    if (off == len) {
      ar_fail (error, "archive ends at offset %" G_GSIZE_FORMAT " without an end-of-archive block (truncated?)", off);
      break;
    }
    if (len - off < BLOCK) {
      ar_fail (error, "truncated header at offset %" G_GSIZE_FORMAT " (%" G_GSIZE_FORMAT " bytes left)", off, len - off);
      break;
    }
    const guint8 *h = d + off;
    if (is_zero_block (h)) {
      ok = TRUE;  /* a second zero block should follow; a lone one is accepted like GNU tar does */
      break;
    }
    if (!checksum_ok (h)) {
      ar_fail (error, off == 0 ? "not a tar archive (bad header checksum at offset 0)"
                               : "bad header checksum at offset %" G_GSIZE_FORMAT " (corrupt archive)", off);
      break;
    }

    char type = (char) h[156];
    char *name = pax.path ? g_strdup (pax.path) : gnu_long_name ? g_strdup (gnu_long_name) : header_name (h);
    guint64 size;
    if (!parse_number (h + 124, 12, &size)) {
      ar_fail (error, "member '%s' at offset %" G_GSIZE_FORMAT ": bad size field", name, off);
      g_free (name);
      break;
    }
    if (pax.has_size)
      size = pax.size;
    gsize data_off = off + BLOCK;
    /* Python's tarfile: data follows regular files and unknown types; links, directories and
     * devices have none whatever the size field says. */
    gboolean has_data = !strchr ("123456", type) || type == '\0';
    if (!has_data)
      size = 0;
    if (size > len - data_off) {
      ar_fail (error, "member '%s' at offset %" G_GSIZE_FORMAT ": size %" G_GUINT64_FORMAT " runs past the end "
          "of the archive (%" G_GSIZE_FORMAT " bytes left)", name, off, size, len - data_off);
      g_free (name);
      break;
    }
    const guint8 *data = d + data_off;
    gboolean header_ok = TRUE;

    switch (type) {
      case 'x':
        pax_clear (&pax);
        header_ok = parse_pax (data, (gsize) size, off, TRUE, &pax, error);
        break;
      case 'g':
        header_ok = parse_pax (data, (gsize) size, off, FALSE, &pax, error);
        break;
      case 'L': /* GNU long name: the data is the next member's name */
        if (size > MAX_NAME_LEN) {
          header_ok = ar_fail (error, "GNU long name at offset %" G_GSIZE_FORMAT " is %" G_GUINT64_FORMAT " bytes",
              off, size);
          break;
        }
        g_free (gnu_long_name);
        gnu_long_name = g_strndup ((const char *) data, (gsize) size);
        break;
      case 'K':
        break;
      default:
        if (type == '0' || type == '\0' || type == '7') {
          if (*skip_prefixes (name))
            add_member (ar, name, data, (gsize) size);
        }
        pax_clear (&pax);
        g_clear_pointer (&gnu_long_name, g_free);
        break;
    }
    g_free (name);
    if (!header_ok)
      break;
    /* size <= len - data_off, so rounding up cannot overflow; a missing final pad is caught as
     * truncation on the next iteration. */
    gsize padded = ((gsize) size + BLOCK - 1) / BLOCK * BLOCK;
    off = padded <= len - data_off ? data_off + padded : len;
  }
  pax_clear (&pax);
  g_free (gnu_long_name);
  return ok;
}

/* --- gzip ------------------------------------------------------------------------------------- */

static gboolean
gunzip (const guint8 *src, gsize len, guint8 **out, gsize *out_len, GError **error)
{
  z_stream zs = { 0 };
  if (inflateInit2 (&zs, 16 + MAX_WBITS) != Z_OK)
    return ar_fail (error, "gzip: zlib init failed");
  /* Weights barely compress, so twice the input is a good first guess; grow by doubling. */
  gsize cap = MIN (MAX (len <= G_MAXSIZE / 2 ? len * 2 : len, (gsize) 1 << 16),
      (gsize) MIN (GZIP_MAX_BYTES, G_MAXSIZE));
  guint8 *buf = g_try_malloc (cap);
  gsize have = 0, in_off = 0;
  int rc = Z_OK;
  gboolean ok = buf != NULL;

  while (ok) {
    if (have == cap) {
      if (cap >= GZIP_MAX_BYTES) {
        ok = ar_fail (error, "gzip: inflated size exceeds %" G_GUINT64_FORMAT " bytes", GZIP_MAX_BYTES);
        break;
      }
      gsize ncap = (gsize) MIN ((guint64) cap * 2, GZIP_MAX_BYTES);
      guint8 *nb = g_try_realloc (buf, ncap);
      if (!nb) {
        ok = FALSE;
        break;
      }
      buf = nb;
      cap = ncap;
    }
    zs.next_in = (Bytef *) src + in_off;
    zs.avail_in = (uInt) MIN (len - in_off, G_MAXUINT32 / 2);
    zs.next_out = buf + have;
    zs.avail_out = (uInt) MIN (cap - have, G_MAXUINT32 / 2);
    uInt ain = zs.avail_in, aout = zs.avail_out;
    rc = inflate (&zs, Z_NO_FLUSH);
    in_off += ain - zs.avail_in;
    have += aout - zs.avail_out;
    if (rc == Z_STREAM_END) {
      /* Concatenated gzip members form one stream; trailing zero padding is tolerated. */
      while (in_off < len && src[in_off] == 0)
        in_off++;
      if (in_off == len)
        break;
      if (inflateReset (&zs) != Z_OK)
        rc = Z_DATA_ERROR;
      else
        continue;
    }
    if (rc != Z_OK && !(rc == Z_BUF_ERROR && have == cap)) {
      ok = ar_fail (error, "gzip: corrupt or truncated stream after %" G_GSIZE_FORMAT " input bytes (%s)", in_off,
          zs.msg ? zs.msg : "unexpected end");
      break;
    }
  }
  inflateEnd (&zs);
  if (!ok) {
    if (!buf || (error && !*error))
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY, "gzip: cannot allocate %" G_GSIZE_FORMAT
          " bytes to inflate the archive", cap);
    g_free (buf);
    return FALSE;
  }
  guint8 *shrunk = g_try_realloc (buf, have ? have : 1);  /* give the slack back */
  *out = shrunk ? shrunk : buf;
  *out_len = have;
  return TRUE;
}

/* --- opening ---------------------------------------------------------------------------------- */

static gboolean
parse_bytes (canary_archive *ar, const guint8 *data, gsize len, GError **error)
{
  if (len == 0)
    return ar_fail (error, "%s is empty", ar->path);
  if (len >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
    gsize n = 0;
    if (!gunzip (data, len, &ar->inflated, &n, error))
      return FALSE;
    return parse_tar (ar, ar->inflated, n, error);
  }
  return parse_tar (ar, data, len, error);
}

canary_archive *
canary_archive_open_bytes (const guint8 *data, gsize len, GError **error)
{
  canary_archive *ar = archive_new ("<memory>");
  if (!parse_bytes (ar, data, len, error)) {
    canary_archive_free (ar);
    return NULL;
  }
  return ar;
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* An extracted archive: list its top-level regular files (sorted, as NeMo's tar is); map them on
 * first use. */
static gboolean
open_directory (canary_archive *ar, GError **error)
{
  GError *err = NULL;
  GDir *dir = g_dir_open (ar->path, 0, &err);
  if (!dir) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_NOT_FOUND, "%s", err->message);
    g_error_free (err);
    return FALSE;
  }
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *n;
  while ((n = g_dir_read_name (dir))) {
    char *full = g_build_filename (ar->path, n, NULL);
    if (g_file_test (full, G_FILE_TEST_IS_REGULAR))
      g_ptr_array_add (names, g_strdup (n));
    g_free (full);
  }
  g_dir_close (dir);
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len; i++) {
    const char *name = g_ptr_array_index (names, i);
    member *m = add_member (ar, name, NULL, 0);
    m->file_path = g_build_filename (ar->path, name, NULL);
  }
  g_ptr_array_unref (names);
  return TRUE;
}

canary_archive *
canary_archive_open (const char *path, GError **error)
{
  canary_archive *ar = archive_new (path);
  gboolean ok;
  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    ok = open_directory (ar, error);
  } else {
    ar->map = canary_map_regular_file (path, error);
    if (!ar->map) {
      ok = FALSE;
    } else {
      ok = parse_bytes (ar, (const guint8 *) g_mapped_file_get_contents (ar->map),
          g_mapped_file_get_length (ar->map), error);
      if (!ok)
        g_prefix_error (error, "%s: ", path);
    }
  }
  if (!ok) {
    canary_archive_free (ar);
    return NULL;
  }
  return ar;
}

void
canary_archive_free (canary_archive *ar)
{
  if (!ar)
    return;
  g_hash_table_unref (ar->by_name);
  g_ptr_array_unref (ar->members);
  if (ar->map)
    g_mapped_file_unref (ar->map);
  g_free (ar->inflated);
  g_mutex_clear (&ar->lock);
  g_free (ar->path);
  g_free (ar);
}

/* --- lookup ----------------------------------------------------------------------------------- */

/* Maps a directory-mode member on first use. */
static gboolean
member_bytes (canary_archive *ar, member *m, const guint8 **data, gsize *len, GError **error)
{
  gboolean ok = TRUE;
  g_mutex_lock (&ar->lock);
  if (m->file_path && !m->map) {
    m->map = canary_map_regular_file (m->file_path, error);
    if (m->map) {
      m->len = g_mapped_file_get_length (m->map);
      /* an empty file maps to NULL contents; hand out a valid pointer anyway */
      m->data = m->len ? (const guint8 *) g_mapped_file_get_contents (m->map) : (const guint8 *) "";
    } else {
      ok = FALSE;
    }
  }
  if (ok) {
    *data = m->data ? m->data : (const guint8 *) "";
    *len = m->len;
  }
  g_mutex_unlock (&ar->lock);
  return ok;
}

static member *
lookup (canary_archive *ar, const char *name)
{
  return g_hash_table_lookup (ar->by_name, skip_prefixes (name));
}

gboolean
canary_archive_find (canary_archive *ar, const char *name, const guint8 **data, gsize *len)
{
  member *m = lookup (ar, name);
  if (!m)
    return FALSE;
  GError *err = NULL;
  if (!member_bytes (ar, m, data, len, &err)) {
    CANARY_WARN ("%s", err->message);
    g_error_free (err);
    return FALSE;
  }
  return TRUE;
}

gboolean
canary_archive_resolve (canary_archive *ar, const char *value, const guint8 **data, gsize *len,
    GError **error)
{
  if (!value || !*value) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT, "empty artifact path in the model config");
    return FALSE;
  }
  const char *name = g_str_has_prefix (value, "nemo:") ? value + 5 : value;
  member *m = lookup (ar, name);
  if (!m) {
    /* Old archives store training-time paths; NeMo then looks the basename up in the archive. */
    char *base = g_path_get_basename (name);
    m = lookup (ar, base);
    g_free (base);
  }
  if (!m) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_NOT_FOUND, "artifact '%s' is not in %s", value, ar->path);
    return FALSE;
  }
  return member_bytes (ar, m, data, len, error);
}

guint
canary_archive_n_members (canary_archive *ar)
{
  return ar->members->len;
}

const char *
canary_archive_member_name (canary_archive *ar, guint i)
{
  return i < ar->members->len ? ((member *) g_ptr_array_index (ar->members, i))->name : NULL;
}

static void
release_mapping (GMappedFile *map)
{
  const gsize len = map ? g_mapped_file_get_length (map) : 0;
  if (len == 0)
    return;
  /* g_mapped_file maps read-only and private, so dropped pages are re-read from the file. The
   * start is page aligned (mmap); the length need not be. */
  if (madvise ((void *) g_mapped_file_get_contents (map), len, MADV_DONTNEED) != 0)
    CANARY_DEBUG ("madvise: %s", g_strerror (errno));
}

void
canary_archive_release_pages (canary_archive *ar)
{
  g_mutex_lock (&ar->lock);
  release_mapping (ar->map);
  for (guint i = 0; i < ar->members->len; i++)
    release_mapping (((member *) g_ptr_array_index (ar->members, i))->map);
  g_mutex_unlock (&ar->lock);
}

/* Drops the whole pages of [p, p + len) that lie inside @map; TRUE when the range is in it. */
static gboolean
release_in_mapping (GMappedFile *map, const guint8 *p, gsize len)
{
  const gsize mlen = map ? g_mapped_file_get_length (map) : 0;
  const guint8 *base = map ? (const guint8 *) g_mapped_file_get_contents (map) : NULL;
  if (mlen == 0 || p < base || p + len > base + mlen)
    return FALSE;
  const guintptr page = (guintptr) sysconf (_SC_PAGESIZE);
  const guintptr lo = ((guintptr) p + page - 1) / page * page, hi = ((guintptr) p + len) / page * page;
  if (hi > lo && madvise ((void *) lo, hi - lo, MADV_DONTNEED) != 0)
    CANARY_DEBUG ("madvise: %s", g_strerror (errno));
  return TRUE;
}

void
canary_archive_release_range (canary_archive *ar, const void *p, gsize len)
{
  g_mutex_lock (&ar->lock);
  if (!release_in_mapping (ar->map, p, len)) {
    for (guint i = 0; i < ar->members->len; i++) {
      if (release_in_mapping (((member *) g_ptr_array_index (ar->members, i))->map, p, len))
        break;
    }
  }
  g_mutex_unlock (&ar->lock);
}

const char *
canary_archive_path (canary_archive *ar)
{
  return ar->path;
}
