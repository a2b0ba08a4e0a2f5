/* gst-canary — engine-wide error domain, error helper and log routing.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

G_DEFINE_QUARK (canary-error-quark, canary_error)

static GMutex log_lock;
static canary_log_func log_func;
static gpointer log_user_data;

void
canary_set_log_func (canary_log_func func, gpointer user_data)
{
  g_mutex_lock (&log_lock);
  log_func = func;
  log_user_data = user_data;
  g_mutex_unlock (&log_lock);
}

void
canary_log (canary_log_level level, const char *fmt, ...)
{
  canary_log_func func;
  gpointer user_data;

  g_mutex_lock (&log_lock);
  func = log_func;
  user_data = log_user_data;
  g_mutex_unlock (&log_lock);
  if (!func)
    return;

  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  func (level, msg, user_data);
  g_free (msg);
}

gboolean
canary_fail (GError **error, canary_error_code code, const char *what, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  if (what)
    g_set_error (error, CANARY_ERROR, code, "%s: %s", what, msg);
  else
    g_set_error_literal (error, CANARY_ERROR, code, msg);
  g_free (msg);
  return FALSE;
}

double
canary_now_ms (void)
{
  return g_get_monotonic_time () / 1000.0;
}

char *
canary_shape_string (int ndim, const gint64 *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

GMappedFile *
canary_map_regular_file (const char *path, GError **error)
{
  int fd = g_open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
  if (fd < 0) {
    int errsv = errno;
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_NOT_FOUND, "cannot open %s: %s", path, g_strerror (errsv));
    return NULL;
  }
  struct stat st;
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT, "%s is not a regular file", path);
    close (fd);
    return NULL;
  }
  GError *err = NULL;
  GMappedFile *map = g_mapped_file_new_from_fd (fd, FALSE, &err);
  close (fd);
  if (!map) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_NOT_FOUND, "%s", err->message);
    g_error_free (err);
  }
  return map;
}
