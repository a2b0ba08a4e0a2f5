/* gst-canary tests — .npy reader (see npy.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Format (numpy/lib/format.py): "\x93NUMPY", major, minor, header length (u16 LE for 1.x, u32 LE
 * for 2.x/3.x), then a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and a newline, then the raw data. */
#include "npy.h"

#include <math.h>
#include <string.h>

static gboolean
fail (GError **err, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
fail (GError **err, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error_literal (err, G_FILE_ERROR, G_FILE_ERROR_INVAL, msg);
  g_free (msg);
  return FALSE;
}

static const struct {
  const char *descr;
  npy_dtype dtype;
  gsize elsize;
} dtypes[] = {
  { "<f4", NPY_DTYPE_F32, 4 }, { "<f2", NPY_DTYPE_F16, 2 }, { "<f8", NPY_DTYPE_F64, 8 },
  { "<i8", NPY_DTYPE_I64, 8 }, { "<i4", NPY_DTYPE_I32, 4 }, { "<i2", NPY_DTYPE_I16, 2 },
  { "|i1", NPY_DTYPE_I8, 1 },  { "|u1", NPY_DTYPE_U8, 1 },  { "|b1", NPY_DTYPE_BOOL, 1 },
};

const char *
npy_dtype_name (npy_dtype dt)
{
  for (gsize i = 0; i < G_N_ELEMENTS (dtypes); i++)
    if (dtypes[i].dtype == dt)
      return dtypes[i].descr;
  return "?";
}

/* Finds the value that follows 'key': in the header dict; NULL when absent. */
static const char *
find_key (const char *hdr, const char *key)
{
  char *pat = g_strdup_printf ("'%s'", key);
  const char *p = strstr (hdr, pat);
  if (p) {
    p += strlen (pat);
    while (*p == ' ')
      p++;
    p = (*p == ':') ? p + 1 : NULL;
    while (p && *p == ' ')
      p++;
  }
  g_free (pat);
  return p;
}

static gboolean
parse_header (const char *hdr, npy_array *out, GError **err)
{
  const char *d = find_key (hdr, "descr");
  if (!d || (*d != '\'' && *d != '"'))
    return fail (err, "npy: header has no 'descr' string");
  gboolean found = FALSE;
  for (gsize i = 0; i < G_N_ELEMENTS (dtypes); i++) {
    gsize n = strlen (dtypes[i].descr);
    /* '<' and '|' are interchangeable for 1-byte types; '=' would mean native (little here). */
    if (strncmp (d + 1 + 1, dtypes[i].descr + 1, n - 1) == 0 && d[1 + n] == d[0] &&
        (d[1] == dtypes[i].descr[0] || d[1] == '=' || (dtypes[i].elsize == 1 && d[1] != '>'))) {
      out->dtype = dtypes[i].dtype;
      out->elsize = dtypes[i].elsize;
      found = TRUE;
      break;
    }
  }
  if (!found)
    return fail (err, "npy: unsupported descr %.8s", d);

  const char *f = find_key (hdr, "fortran_order");
  if (!f || strncmp (f, "False", 5) != 0)
    return fail (err, "npy: only C-order arrays are supported (fortran_order must be False)");

  const char *s = find_key (hdr, "shape");
  if (!s || *s != '(')
    return fail (err, "npy: header has no 'shape' tuple");
  s++;
  out->ndim = 0;
  out->numel = 1;
  for (;;) {
    while (*s == ' ' || *s == ',')
      s++;
    if (*s == ')')
      break;
    if (!g_ascii_isdigit (*s))
      return fail (err, "npy: bad character in shape");
    if (out->ndim == NPY_MAX_DIMS)
      return fail (err, "npy: more than %d dims", NPY_MAX_DIMS);
    char *end;
    guint64 v = g_ascii_strtoull (s, &end, 10);
    if (end == s || v > G_MAXINT64)
      return fail (err, "npy: bad shape value");
    s = end;
    out->shape[out->ndim++] = (int64_t) v;
    if (__builtin_mul_overflow (out->numel, (gsize) v, &out->numel))
      return fail (err, "npy: shape overflows");
  }
  return TRUE;
}

gboolean
npy_load_bytes (const guint8 *b, gsize len, npy_array *out, GError **err)
{
  memset (out, 0, sizeof *out);
  if (len < 10 || memcmp (b, "\x93NUMPY", 6) != 0)
    return fail (err, "npy: bad magic");
  guint major = b[6];
  gsize hlen, hoff;
  if (major == 1) {
    hlen = b[8] | (gsize) b[9] << 8;
    hoff = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12)
      return fail (err, "npy: truncated header");
    hlen = b[8] | (gsize) b[9] << 8 | (gsize) b[10] << 16 | (gsize) b[11] << 24;
    hoff = 12;
  } else {
    return fail (err, "npy: unsupported version %u", major);
  }
  if (hlen > len - hoff)
    return fail (err, "npy: header runs past the end of the file");

  char *hdr = g_strndup ((const char *) b + hoff, hlen);
  gboolean ok = parse_header (hdr, out, err);
  g_free (hdr);
  if (!ok) {
    memset (out, 0, sizeof *out);
    return FALSE;
  }

  gsize nbytes, doff = hoff + hlen;
  if (!g_size_checked_mul (&nbytes, out->numel, out->elsize) || nbytes > len - doff) {
    memset (out, 0, sizeof *out);
    return fail (err, "npy: data is shorter than the shape implies");
  }
  out->data = g_malloc (nbytes ? nbytes : 1);
  memcpy (out->data, b + doff, nbytes);
  return TRUE;
}

gboolean
npy_load (const char *path, npy_array *out, GError **err)
{
  gchar *contents;
  gsize len;
  memset (out, 0, sizeof *out);
  if (!g_file_get_contents (path, &contents, &len, err))
    return FALSE;
  gboolean ok = npy_load_bytes ((const guint8 *) contents, len, out, err);
  if (!ok && err && *err)
    g_prefix_error (err, "%s: ", path);
  g_free (contents);
  return ok;
}

void
npy_array_clear (npy_array *a)
{
  if (!a)
    return;
  g_free (a->data);
  memset (a, 0, sizeof *a);
}

static float
half_to_float (guint16 h)
{
  guint32 sign = (guint32) (h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    /* zero or subnormal: man * 2^-24 is exact in float */
    float v = ldexpf ((float) man, -24);
    return (h >> 15) ? -v : v;
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  memcpy (&f, &bits, 4);
  return f;
}

double
npy_get_f64 (const npy_array *a, gsize i)
{
  const guint8 *p = (const guint8 *) a->data + i * a->elsize;
  switch (a->dtype) {
    case NPY_DTYPE_F32: { float v; memcpy (&v, p, 4); return v; }
    case NPY_DTYPE_F16: { guint16 v; memcpy (&v, p, 2); return half_to_float (GUINT16_FROM_LE (v)); }
    case NPY_DTYPE_F64: { double v; memcpy (&v, p, 8); return v; }
    default: return (double) npy_get_i64 (a, i);
  }
}

int64_t
npy_get_i64 (const npy_array *a, gsize i)
{
  const guint8 *p = (const guint8 *) a->data + i * a->elsize;
  switch (a->dtype) {
    case NPY_DTYPE_I64: { int64_t v; memcpy (&v, p, 8); return v; }
    case NPY_DTYPE_I32: { int32_t v; memcpy (&v, p, 4); return v; }
    case NPY_DTYPE_I16: { int16_t v; memcpy (&v, p, 2); return v; }
    case NPY_DTYPE_I8: return (int8_t) *p;
    case NPY_DTYPE_U8: case NPY_DTYPE_BOOL: return *p;
    default: return (int64_t) npy_get_f64 (a, i);
  }
}

float *
npy_to_f32 (const npy_array *a)
{
  float *f = g_new (float, a->numel ? a->numel : 1);
  if (a->dtype == NPY_DTYPE_F32)
    memcpy (f, a->data, a->numel * 4);
  else
    for (gsize i = 0; i < a->numel; i++)
      f[i] = (float) npy_get_f64 (a, i);
  return f;
}
