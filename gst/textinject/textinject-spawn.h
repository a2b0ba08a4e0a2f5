/* gst-canary — textinjectsink helpers: run a typing tool without a shell, with a time limit.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "textinject.h"

G_BEGIN_DECLS

/* Runs @argv (argv[0] looked up in PATH; no shell ever parses anything) with @stdin_text (may be
 * NULL: the tool then reads end-of-file) on its standard input. Waits at most @timeout_ms, then
 * kills it; @cancellable (may be NULL) kills it early. On return *@output (may be NULL) holds what
 * the tool printed on stdout and stderr, as valid UTF-8.
 *
 * Returns TRUE when the tool exited with status 0. Errors: G_IO_ERROR_CANCELLED,
 * TEXTINJECT_ERROR_TIMED_OUT, TEXTINJECT_ERROR_TOOL_FAILED (non-zero exit or a signal; the
 * message quotes the tool's output), or a G_SPAWN_ERROR when it could not be started. */
gboolean textinject_spawn_run (const gchar * const *argv, const gchar *stdin_text,
    guint timeout_ms, GCancellable *cancellable, gchar **output, GError **error);

G_END_DECLS
