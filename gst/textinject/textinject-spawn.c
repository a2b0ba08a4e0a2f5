/* gst-canary — textinjectsink helpers: run a typing tool without a shell, with a time limit.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The text to type is untrusted (it is whatever the model heard), so it only ever travels as one
 * argv element or on the tool's stdin: GSubprocess execs the tool directly, no shell is involved
 * and nothing in the text is ever interpreted. */
#include "textinject-spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib-unix.h>

G_DEFINE_QUARK (textinject-error-quark, textinject_error)

/* Enough of a tool's complaint to say what went wrong, without flooding the bus. */
#define MAX_QUOTED_OUTPUT 400

typedef struct {
  gboolean done;
  gboolean timed_out;
  GBytes *output;
  GError *error;
  GCancellable *stop;           /* cancelled by the deadline or by the caller's cancellable */
} Run;

static void
communicate_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Run *run = user_data;

  g_subprocess_communicate_finish (G_SUBPROCESS (source), result, &run->output, NULL,
      &run->error);
  run->done = TRUE;
}

static gboolean
deadline_reached (gpointer user_data)
{
  Run *run = user_data;

  run->timed_out = TRUE;
  g_cancellable_cancel (run->stop);
  return G_SOURCE_REMOVE;
}

/* Runs on whichever thread cancels the caller's cancellable (GstBaseSink::unlock). */
static void
forward_cancel (GCancellable *cancellable, gpointer user_data)
{
  g_cancellable_cancel (G_CANCELLABLE (user_data));
}

static gchar *
output_text (GBytes *bytes)
{
  gsize len = 0;
  const gchar *data = bytes ? g_bytes_get_data (bytes, &len) : NULL;
  gchar *text = g_utf8_make_valid (data ? data : "", len);

  g_strstrip (text);
  if (strlen (text) > MAX_QUOTED_OUTPUT) {
    /* Cut on a character boundary, so the message stays valid UTF-8. */
    gchar *end = g_utf8_find_prev_char (text, text + MAX_QUOTED_OUTPUT + 1);
    *end = '\0';
  }
  return text;
}

/* The read end of a pipe that already holds all of @text and then ends. Filling it before the
 * tool starts means we never write to a pipe whose reader may have exited, which would raise
 * SIGPIPE in the whole process. Returns -1 (with @error set) if @text does not fit. */
static gint
stdin_pipe_with (const gchar *text, GError **error)
{
  gint fds[2];
  gsize len = strlen (text);
  gssize written = 0;

  if (!g_unix_open_pipe (fds, FD_CLOEXEC, error))
    return -1;
  if (len > 65536)
    (void) fcntl (fds[1], F_SETPIPE_SZ, (gint) MIN (len, G_MAXINT));
  if (len > 0 && g_unix_set_fd_nonblocking (fds[1], TRUE, NULL))
    written = write (fds[1], text, len);
  close (fds[1]);
  if (len > 0 && (written < 0 || (gsize) written != len)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
        "cannot pass %" G_GSIZE_FORMAT " bytes of text to the tool: %s", len,
        written < 0 ? g_strerror (errno) : "pipe too small");
    close (fds[0]);
    return -1;
  }
  return fds[0];
}

/* Waits for the tool on a private main context, so this works on any thread (streaming
 * threads have no main loop) and never dispatches the application's sources. */
static void
wait_for_tool (GSubprocess *proc, guint timeout_ms, Run *run)
{
  GMainContext *context = g_main_context_new ();
  GSource *deadline = g_timeout_source_new (timeout_ms);

  g_main_context_push_thread_default (context);
  g_source_set_callback (deadline, deadline_reached, run, NULL);
  g_source_attach (deadline, context);
  g_subprocess_communicate_async (proc, NULL, run->stop, communicate_done, run);
  while (!run->done)
    g_main_context_iteration (context, TRUE);
  g_source_destroy (deadline);
  g_source_unref (deadline);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
}

static gboolean
check_exit (GSubprocess *proc, const gchar *tool, const gchar *output, GError **error)
{
  if (g_subprocess_get_if_exited (proc)) {
    gint status = g_subprocess_get_exit_status (proc);
    if (status == 0)
      return TRUE;
    g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_TOOL_FAILED,
        "%s failed (exit status %d)%s%s", tool, status, *output ? ": " : "", output);
  } else {
    g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_TOOL_FAILED,
        "%s was killed by signal %d%s%s", tool, g_subprocess_get_term_sig (proc),
        *output ? ": " : "", output);
  }
  return FALSE;
}

gboolean
textinject_spawn_run (const gchar * const *argv, const gchar *stdin_text, guint timeout_ms,
    GCancellable *cancellable, gchar **output, GError **error)
{
  Run run = { 0, };
  gulong handler = 0;
  gboolean ok = FALSE;
  gchar *text;
  GSubprocess *proc;
  GSubprocessLauncher *launcher;
  gint stdin_fd;

  g_return_val_if_fail (argv != NULL && argv[0] != NULL, FALSE);

  /* stdin is always our pipe (empty when there is no text): a tool must never read the
   * daemon's own stdin. */
  stdin_fd = stdin_pipe_with (stdin_text ? stdin_text : "", error);
  if (stdin_fd < 0)
    return FALSE;
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE
      | G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_subprocess_launcher_take_stdin_fd (launcher, stdin_fd);
  proc = g_subprocess_launcher_spawnv (launcher, argv, error);
  g_object_unref (launcher);
  if (!proc)
    return FALSE;

  run.stop = g_cancellable_new ();
  if (cancellable)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (forward_cancel),
        g_object_ref (run.stop), g_object_unref);
  wait_for_tool (proc, timeout_ms, &run);
  if (cancellable)
    g_cancellable_disconnect (cancellable, handler);

  text = output_text (run.output);
  if (run.error) {
    /* Stopped before it finished: make sure it is gone before anyone retries. */
    g_subprocess_force_exit (proc);
    g_subprocess_wait (proc, NULL, NULL);
    if (run.timed_out)
      g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_TIMED_OUT,
          "%s did not finish within %u ms and was stopped", argv[0], timeout_ms);
    else
      g_propagate_error (error, g_steal_pointer (&run.error));
  } else {
    ok = check_exit (proc, argv[0], text, error);
  }

  if (output)
    *output = g_steal_pointer (&text);
  g_free (text);
  g_clear_error (&run.error);
  if (run.output)
    g_bytes_unref (run.output);
  g_object_unref (run.stop);
  g_object_unref (proc);
  return ok;
}
