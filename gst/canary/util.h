/* gst-canary — engine-internal helpers: logging, timing, checked arithmetic.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include "canary.h"

G_BEGIN_DECLS

/* Formats a line and passes it to the callback set with canary_set_log_func (if any). */
void canary_log (canary_log_level level, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
#define CANARY_WARN(...) canary_log (CANARY_LOG_WARNING, __VA_ARGS__)
#define CANARY_INFO(...) canary_log (CANARY_LOG_INFO, __VA_ARGS__)
#define CANARY_DEBUG(...) canary_log (CANARY_LOG_DEBUG, __VA_ARGS__)

/* Sets *error (if error is set) to CANARY_ERROR / code with the message "<what>: <fmt …>" and
 * returns FALSE: every parser names what it was reading before the detail (what may be NULL for
 * no prefix), so one helper serves them all. */
gboolean canary_fail (GError **error, canary_error_code code, const char *what, const char *fmt,
    ...) G_GNUC_PRINTF (4, 5);

/* "[2, 3, 4]": a tensor shape for error messages (g_free it). */
char *canary_shape_string (int ndim, const gint64 *shape);

/* Maps @path read-only when it is a regular file. Opened without blocking and checked with fstat
 * before anything is read: a FIFO would block open() until a writer comes, and a device such as
 * /dev/zero has no end to map. CANARY_ERROR_NOT_FOUND / _FORMAT. */
GMappedFile *canary_map_regular_file (const char *path, GError **error);

/* Monotonic time in milliseconds. */
double canary_now_ms (void);

/* a*b and a+b without wrapping; FALSE on overflow. */
static inline gboolean
canary_mul_size (gsize a, gsize b, gsize *out)
{
  return !__builtin_mul_overflow (a, b, out);
}

static inline gboolean
canary_add_size (gsize a, gsize b, gsize *out)
{
  return !__builtin_add_overflow (a, b, out);
}

G_END_DECLS
