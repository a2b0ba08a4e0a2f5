/* gst-canary tests — minimal RIFF/WAVE reader for the fixture clips.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "wav.h"

#include <string.h>

static guint32
rd32 (const guint8 *p)
{
  return p[0] | (p[1] << 8) | (p[2] << 16) | ((guint32) p[3] << 24);
}

static guint16
rd16 (const guint8 *p)
{
  return p[0] | (p[1] << 8);
}

float *
wav_read_mono (const char *path, gsize *n_samples, int *rate, GError **err)
{
  gchar *buf = NULL;
  gsize len = 0;
  if (!g_file_get_contents (path, &buf, &len, err))
    return NULL;
  const guint8 *d = (const guint8 *) buf;
  float *out = NULL;
  guint16 fmt = 0, channels = 0, bits = 0;
  guint32 sr = 0;
  gboolean have_fmt = FALSE;

  if (len < 12 || memcmp (d, "RIFF", 4) != 0 || memcmp (d + 8, "WAVE", 4) != 0) {
    g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: not a RIFF/WAVE file", path);
    goto done;
  }
  for (gsize off = 12; off + 8 <= len;) {
    guint32 size = rd32 (d + off + 4);
    const guint8 *body = d + off + 8;
    if (size > len - off - 8) {
      g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: chunk past end of file", path);
      goto done;
    }
    if (memcmp (d + off, "fmt ", 4) == 0 && size >= 16) {
      fmt = rd16 (body);
      channels = rd16 (body + 2);
      sr = rd32 (body + 4);
      bits = rd16 (body + 14);
      if (fmt == 0xFFFE && size >= 26)  /* WAVE_FORMAT_EXTENSIBLE: sub-format GUID starts with the tag */
        fmt = rd16 (body + 24);
      have_fmt = TRUE;
    } else if (memcmp (d + off, "data", 4) == 0 && have_fmt) {
      if (channels == 0 || !((fmt == 1 && bits == 16) || (fmt == 3 && bits == 32))) {
        g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: only PCM16 or float32 WAV supported", path);
        goto done;
      }
      gsize frame = (gsize) channels * (bits / 8);
      gsize n = size / frame;
      out = g_new (float, n ? n : 1);
      for (gsize i = 0; i < n; i++) {
        const guint8 *s = body + i * frame;
        if (fmt == 1) {
          out[i] = (gint16) rd16 (s) / 32768.0f;
        } else {
          guint32 u = rd32 (s);
          memcpy (&out[i], &u, 4);
        }
      }
      *n_samples = n;
      *rate = (int) sr;
      goto done;
    }
    off += 8 + (gsize) size + (size & 1);
  }
  g_set_error (err, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: no fmt/data chunk", path);
done:
  g_free (buf);
  return out;
}
