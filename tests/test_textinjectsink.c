/* gst-canary — tests of textinjectsink and of canary-dictate's listening gate (gst-check).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * - wtype / ydotool: stand-in scripts on PATH record the argv and stdin they get, which shows
 *   the text arrives verbatim as one argv element (or as stdin) and no shell ever runs it;
 * - xtest: a private Xvfb (started here, skipped with a message when Xvfb is not installed)
 *   and tests/xrecorder, an X client that writes down the text of every key press it gets;
 * - errors: no display, missing tools, failing and hanging tools;
 * - the gate of examples/dictation (compiled in from its source, like test_element does with
 *   canarytextmerge.c): exact sample counts reaching canarytranscribe while on and off;
 * - canary-dictate itself toggled 100 times: one model load, flat memory.
 */
#include "build-config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>

/* The gate is a static helper of the example program; test the program's own code. */
#include "../examples/dictation/dictate-gate.c"
#include "elementutil.h"

#define MODEL2 FIXTURES_DIR "/canary2-tiny/model.nemo"
#define XRECORDER BUILD_ROOT "/tests/xrecorder"
#define CANARY_DICTATE BUILD_ROOT "/examples/dictation/canary-dictate"
#define TEXT_CAPS "text/x-raw,format=utf8"
#define WAIT_STEP_US (20 * 1000)

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 */

static gboolean
wait_for_file (const gchar *path, gdouble seconds)
{
  for (gint64 end = g_get_monotonic_time () + (gint64) (seconds * G_USEC_PER_SEC);
      g_get_monotonic_time () < end; g_usleep (WAIT_STEP_US))
    if (g_file_test (path, G_FILE_TEST_EXISTS))
      return TRUE;
  return FALSE;
}

static gchar *
read_text (const gchar *path)
{
  gchar *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return g_strdup ("");
  return text;
}

/* Waits until @path holds exactly @expected (or @seconds pass) and returns what it holds. */
static gchar *
wait_for_content (const gchar *path, const gchar *expected, gdouble seconds)
{
  gint64 end = g_get_monotonic_time () + (gint64) (seconds * G_USEC_PER_SEC);
  gchar *text = read_text (path);

  while (strcmp (text, expected) != 0 && g_get_monotonic_time () < end) {
    g_usleep (WAIT_STEP_US);
    g_free (text);
    text = read_text (path);
  }
  return text;
}

static void
stop_process (GPid pid)
{
  gint status;
  kill (pid, SIGTERM);
  waitpid (pid, &status, 0);
  g_spawn_close_pid (pid);
}

static GstBuffer *
text_buffer (const gchar *text)
{
  return *text ? gst_buffer_new_memdup (text, strlen (text)) : gst_buffer_new ();
}

/* Loads stock plugins (coreelements, audiotestsrc, ...); they come with gstreamer1.0 and
 * gstreamer1.0-plugins-base/-good, which the project needs anyway. */
static void
load_system_plugins (const gchar *const *names)
{
  for (guint i = 0; names[i]; i++) {
    gchar *file = g_strdup_printf ("%s/libgst%s.so", system_plugin_dir (), names[i]);
    GError *error = NULL;
    GstPlugin *plugin = gst_plugin_load_file (file, &error);
    fail_unless (plugin != NULL, "cannot load %s: %s", file, error ? error->message : "");
    gst_object_unref (plugin);
    g_free (file);
  }
}

static GstElement *
launch (const gchar *description)
{
  GError *error = NULL;
  GstElement *pipeline = gst_parse_launch (description, &error);

  fail_unless (error == NULL, "cannot build '%s': %s", description, error ? error->message : "");
  return pipeline;
}

/* A textinjectsink with @props ("method=wtype append=space") set the gst-launch way. */
static GstElement *
make_sink (const gchar *props)
{
  GstElement *sink = gst_element_factory_make ("textinjectsink", NULL);
  gchar **pairs = g_strsplit (props, " ", -1);

  fail_unless (sink != NULL, "textinjectsink is not registered");
  for (guint i = 0; pairs[i]; i++) {
    gchar **kv = g_strsplit (pairs[i], "=", 2);
    if (kv[0] && kv[1])
      gst_util_set_object_arg (G_OBJECT (sink), kv[0], kv[1]);
    g_strfreev (kv);
  }
  g_strfreev (pairs);
  return sink;
}

/* A harness around a sink with @props, with a bus to collect its messages. */
static GstHarness *
sink_harness (const gchar *props, GstBus **bus)
{
  GstElement *sink = make_sink (props);
  GstHarness *h;

  *bus = gst_bus_new ();
  gst_element_set_bus (sink, *bus);
  h = gst_harness_new_with_element (sink, "sink", NULL);
  gst_harness_set_src_caps_str (h, TEXT_CAPS);
  gst_object_unref (sink);
  return h;
}

/* EOS returns once the sink's typist has typed everything queued. */
static void
finish_typing (GstHarness *h)
{
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
}

static void
harness_done (GstHarness *h, GstBus *bus)
{
  gst_element_set_bus (h->element, NULL);
  gst_harness_teardown (h);
  gst_object_unref (bus);
}

/* The text of the first error on @bus within @seconds, or NULL. */
static gchar *
bus_error_within (GstBus *bus, gdouble seconds)
{
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, (GstClockTime) (seconds * GST_SECOND),
      GST_MESSAGE_ERROR);
  GError *error = NULL;
  gchar *text;

  if (!msg)
    return NULL;
  gst_message_parse_error (msg, &error, NULL);
  text = g_strdup (error->message);
  g_error_free (error);
  gst_message_unref (msg);
  return text;
}

static gchar *
bus_error (GstBus *bus)
{
  return bus_error_within (bus, 0);
}

/* Starts a lone sink (READY→PAUSED) and returns the error it posted, or NULL if it started. */
static gchar *
start_error (const gchar *props)
{
  GstElement *sink = make_sink (props);
  GstBus *bus = gst_bus_new ();
  GstStateChangeReturn ret;
  gchar *error;

  gst_element_set_bus (sink, bus);
  ret = gst_element_set_state (sink, GST_STATE_PAUSED);
  error = bus_error (bus);
  fail_unless ((ret == GST_STATE_CHANGE_FAILURE) == (error != NULL),
      "state change %s but error '%s'", gst_element_state_change_return_get_name (ret), error);
  gst_element_set_state (sink, GST_STATE_NULL);
  gst_element_set_bus (sink, NULL);
  gst_object_unref (bus);
  gst_object_unref (sink);
  return error;
}

static void
assert_contains (const gchar *haystack, const gchar *needle)
{
  fail_unless (haystack && strstr (haystack, needle), "'%s' does not contain '%s'", haystack,
      needle);
}

/* ---------------------------------------------------------------------------------------------
 * Stand-in typing tools
 */

/* Records each call as NUL-terminated fields: tool=NAME, argc=N, arg=... per argument, and for
 * ydotool stdin=TEXT. "$@" is only ever expanded quoted, so the stand-in itself executes
 * nothing from its arguments either. */
static const gchar fake_tool_script[] =
    "#!/bin/sh\n"
    "# Stand-in for a typing tool: records argv (and stdin) for test_textinjectsink.\n"
    "{\n"
    "  printf 'tool=%s\\0' \"${0##*/}\"\n"
    "  printf 'argc=%d\\0' \"$#\"\n"
    "  for a in \"$@\"; do printf 'arg=%s\\0' \"$a\"; done\n"
    "  if [ \"${0##*/}\" = ydotool ]; then printf 'stdin='; cat; printf '\\0'; fi\n"
    "} >> \"$FAKE_TOOL_LOG\"\n"
    "case \"$FAKE_TOOL_MODE\" in\n"
    "  fail) echo 'Compositor does not support the virtual keyboard protocol' >&2; exit 1 ;;\n"
    "  hang) exec sleep 60 ;;\n"
    "esac\n"
    "exit 0\n";

typedef struct {
  gchar *dir;
  gchar *log;
} FakeTools;

typedef struct {
  gchar *tool;
  GPtrArray *args;
  gchar *input;
} ToolCall;

/* Puts stand-in wtype and ydotool first on PATH (for this forked test only). */
static FakeTools *
fake_tools_new (const gchar *mode)
{
  FakeTools *fake = g_new0 (FakeTools, 1);
  const gchar *names[] = { "wtype", "ydotool" };
  gchar *path;

  fake->dir = g_dir_make_tmp ("textinject-XXXXXX", NULL);
  fail_unless (fake->dir != NULL);
  fake->log = g_build_filename (fake->dir, "calls.log", NULL);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    gchar *tool = g_build_filename (fake->dir, names[i], NULL);
    fail_unless (g_file_set_contents (tool, fake_tool_script, -1, NULL));
    fail_unless (g_chmod (tool, 0755) == 0);
    g_free (tool);
  }
  path = g_strdup_printf ("%s:/usr/bin:/bin", fake->dir);
  g_setenv ("PATH", path, TRUE);
  g_setenv ("FAKE_TOOL_LOG", fake->log, TRUE);
  g_setenv ("FAKE_TOOL_MODE", mode, TRUE);
  g_free (path);
  return fake;
}

static void
fake_tools_free (FakeTools *fake)
{
  gchar *cmd = g_strdup_printf ("rm -rf '%s'", fake->dir);
  /* The directory name is ours (g_dir_make_tmp), so the shell sees no foreign text here. */
  fail_unless (system (cmd) == 0);
  g_free (cmd);
  g_free (fake->log);
  g_free (fake->dir);
  g_free (fake);
}

static void
tool_call_free (gpointer data)
{
  ToolCall *call = data;
  g_free (call->tool);
  g_ptr_array_unref (call->args);
  g_free (call->input);
  g_free (call);
}

static GPtrArray *
fake_tool_calls (FakeTools *fake)
{
  GPtrArray *calls = g_ptr_array_new_with_free_func (tool_call_free);
  gchar *data = NULL;
  gsize len = 0;
  ToolCall *call = NULL;

  if (!g_file_get_contents (fake->log, &data, &len, NULL))
    return calls;
  for (const gchar *field = data; field < data + len; field += strlen (field) + 1) {
    if (g_str_has_prefix (field, "tool=")) {
      call = g_new0 (ToolCall, 1);
      call->tool = g_strdup (field + 5);
      call->args = g_ptr_array_new_with_free_func (g_free);
      g_ptr_array_add (calls, call);
    } else if (call && g_str_has_prefix (field, "arg=")) {
      g_ptr_array_add (call->args, g_strdup (field + 4));
    } else if (call && g_str_has_prefix (field, "stdin=")) {
      call->input = g_strdup (field + 6);
    }
  }
  g_free (data);
  return calls;
}

static void
assert_call (GPtrArray *calls, guint i, const gchar *tool, const gchar *const *args)
{
  ToolCall *call;

  fail_unless (i < calls->len, "only %u tool calls", calls->len);
  call = g_ptr_array_index (calls, i);
  fail_unless_equals_string (call->tool, tool);
  fail_unless_equals_int (call->args->len, g_strv_length ((gchar **) args));
  for (guint a = 0; args[a]; a++)
    fail_unless_equals_string (g_ptr_array_index (call->args, a), args[a]);
}

/* ---------------------------------------------------------------------------------------------
 * Properties
 */

GST_START_TEST (test_properties)
{
  GstElement *sink = make_sink ("");
  gint method, active, append;
  guint timeout;
  gboolean sync;
  gchar *display;

  g_object_get (sink, "method", &method, "active-method", &active, "append", &append,
      "timeout", &timeout, "display", &display, "sync", &sync, NULL);
  fail_unless_equals_int (method, 0);   /* auto */
  fail_unless_equals_int (active, 0);
  fail_unless_equals_int (append, 0);   /* none */
  fail_unless_equals_int (timeout, 5000);
  fail_unless (display == NULL);
  fail_unless (!sync, "text must be typed when it arrives, not at its running time");

  gst_util_set_object_arg (G_OBJECT (sink), "method", "xtest");
  gst_util_set_object_arg (G_OBJECT (sink), "append", "newline");
  g_object_get (sink, "method", &method, "append", &append, NULL);
  fail_unless_equals_int (method, 3);
  fail_unless_equals_int (append, 2);
  gst_object_unref (sink);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * wtype / ydotool through stand-ins: verbatim argv, no shell
 */

GST_START_TEST (test_wtype_argv_verbatim)
{
  FakeTools *fake = fake_tools_new ("ok");
  gchar *victim = g_build_filename (fake->dir, "victim", NULL);
  gchar *pwned = g_build_filename (fake->dir, "pwned", NULL);
  gchar *pwned2 = g_build_filename (fake->dir, "pwned2", NULL);
  /* Starts with '-' (an option to a careless caller) and holds every shell metacharacter. */
  gchar *text = g_strdup_printf ("-rf it's \"quoted\" $(touch %s) `touch %s`; rm -rf %s && "
      "echo $HOME | cat > %s & \\ * ~ {a,b} <in >out #end", pwned, pwned2, victim, pwned);
  GstBus *bus;
  GstHarness *h;
  GPtrArray *calls;

  g_setenv ("WAYLAND_DISPLAY", "wayland-test", TRUE);
  fail_unless (g_mkdir (victim, 0700) == 0);
  h = sink_harness ("method=wtype", &bus);
  fail_unless_equals_int (gst_harness_push (h, text_buffer (text)), GST_FLOW_OK);
  finish_typing (h);

  calls = fake_tool_calls (fake);
  fail_unless_equals_int (calls->len, 1);
  assert_call (calls, 0, "wtype", (const gchar *[]) { "--", text, NULL });
  fail_if (g_file_test (pwned, G_FILE_TEST_EXISTS), "$(...) was executed");
  fail_if (g_file_test (pwned2, G_FILE_TEST_EXISTS), "backticks were executed");
  fail_unless (g_file_test (victim, G_FILE_TEST_IS_DIR), "rm -rf was executed");

  g_ptr_array_unref (calls);
  harness_done (h, bus);
  g_rmdir (victim);
  g_free (text);
  g_free (pwned);
  g_free (pwned2);
  g_free (victim);
  fake_tools_free (fake);
}

GST_END_TEST;

GST_START_TEST (test_ydotool_stdin_verbatim)
{
  FakeTools *fake = fake_tools_new ("ok");
  gchar *pwned = g_build_filename (fake->dir, "pwned", NULL);
  gchar *text = g_strdup_printf ("--help $(touch %s) `touch %s` ; rm -rf / 'q' \"qq\"", pwned,
      pwned);
  gchar *ascii = g_str_to_ascii ("café naïve — ¿qué?", "C");
  GstBus *bus;
  GstHarness *h;
  GPtrArray *calls;
  GstMessage *warning;

  h = sink_harness ("method=ydotool append=newline", &bus);
  fail_unless_equals_int (gst_harness_push (h, text_buffer (text)), GST_FLOW_OK);
  fail_unless_equals_int (gst_harness_push (h, text_buffer ("café naïve — ¿qué?")), GST_FLOW_OK);
  fail_unless_equals_int (gst_harness_push (h, text_buffer ("über")), GST_FLOW_OK);
  finish_typing (h);

  calls = fake_tool_calls (fake);
  fail_unless_equals_int (calls->len, 3);
  for (guint i = 0; i < calls->len; i++)
    assert_call (calls, i, "ydotool", (const gchar *[]) { "type", "--file", "-", NULL });
  /* The text travels on stdin only, exactly (plus the appended newline). */
  gchar *expected = g_strconcat (text, "\n", NULL);
  fail_unless_equals_string (((ToolCall *) g_ptr_array_index (calls, 0))->input, expected);
  g_free (expected);
  /* ydotool types ASCII only: the rest is transliterated, with one warning. */
  expected = g_strconcat (ascii, "\n", NULL);
  fail_unless_equals_string (((ToolCall *) g_ptr_array_index (calls, 1))->input, expected);
  fail_unless_equals_string (((ToolCall *) g_ptr_array_index (calls, 2))->input, "uber\n");
  fail_if (g_file_test (pwned, G_FILE_TEST_EXISTS), "the text was executed");
  warning = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (warning != NULL, "no warning about transliteration");
  gst_message_unref (warning);
  fail_unless (gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING) == NULL, "warned twice");

  g_free (expected);
  g_ptr_array_unref (calls);
  harness_done (h, bus);
  g_free (ascii);
  g_free (text);
  g_free (pwned);
  fake_tools_free (fake);
}

GST_END_TEST;

/* Pushes the same segments through a wtype stand-in with @append and returns the calls. */
static GPtrArray *
type_segments (FakeTools *fake, const gchar *append, gboolean flush_before_last)
{
  const gchar *segments[] = { "Hello world", "  how are you  ", ", fine.", "   ", "" };
  gchar *props = g_strdup_printf ("method=wtype append=%s", append);
  GstBus *bus;
  GstHarness *h = sink_harness (props, &bus);

  for (guint i = 0; i < G_N_ELEMENTS (segments); i++)
    fail_unless_equals_int (gst_harness_push (h, text_buffer (segments[i])), GST_FLOW_OK);
  if (flush_before_last) {
    GstSegment segment;
    finish_typing (h);          /* a flush drops text not typed yet */
    gst_segment_init (&segment, GST_FORMAT_TIME);
    fail_unless (gst_harness_push_event (h, gst_event_new_flush_start ()));
    fail_unless (gst_harness_push_event (h, gst_event_new_flush_stop (FALSE)));
    fail_unless (gst_harness_push_event (h, gst_event_new_segment (&segment)));
  }
  fail_unless_equals_int (gst_harness_push (h, text_buffer ("Next")), GST_FLOW_OK);
  finish_typing (h);
  harness_done (h, bus);
  g_free (props);
  return fake_tool_calls (fake);
}

GST_START_TEST (test_spacing_between_segments)
{
  FakeTools *fake = fake_tools_new ("ok");
  GPtrArray *calls;

  g_setenv ("WAYLAND_DISPLAY", "wayland-test", TRUE);

  /* none: one space between texts, none before closing punctuation, empty texts skipped. */
  calls = type_segments (fake, "none", FALSE);
  fail_unless_equals_int (calls->len, 4);
  assert_call (calls, 0, "wtype", (const gchar *[]) { "--", "Hello world", NULL });
  assert_call (calls, 1, "wtype", (const gchar *[]) { "--", " how are you", NULL });
  assert_call (calls, 2, "wtype", (const gchar *[]) { "--", ", fine.", NULL });
  assert_call (calls, 3, "wtype", (const gchar *[]) { "--", " Next", NULL });
  g_ptr_array_unref (calls);
  g_unlink (fake->log);

  /* A flush starts a new run of text: no leading space after it. */
  calls = type_segments (fake, "none", TRUE);
  fail_unless_equals_int (calls->len, 4);
  assert_call (calls, 3, "wtype", (const gchar *[]) { "--", "Next", NULL });
  g_ptr_array_unref (calls);
  g_unlink (fake->log);

  /* space: a trailing space instead, never a leading one. */
  calls = type_segments (fake, "space", FALSE);
  fail_unless_equals_int (calls->len, 4);
  assert_call (calls, 0, "wtype", (const gchar *[]) { "--", "Hello world ", NULL });
  assert_call (calls, 1, "wtype", (const gchar *[]) { "--", "how are you ", NULL });
  assert_call (calls, 3, "wtype", (const gchar *[]) { "--", "Next ", NULL });
  g_ptr_array_unref (calls);
  g_unlink (fake->log);

  /* newline: Return as its own key (wtype would type "\n" as Linefeed). */
  calls = type_segments (fake, "newline", FALSE);
  fail_unless_equals_int (calls->len, 8);
  assert_call (calls, 0, "wtype", (const gchar *[]) { "--", "Hello world", NULL });
  assert_call (calls, 1, "wtype", (const gchar *[]) { "-k", "Return", NULL });
  assert_call (calls, 2, "wtype", (const gchar *[]) { "--", "how are you", NULL });
  assert_call (calls, 7, "wtype", (const gchar *[]) { "-k", "Return", NULL });
  g_ptr_array_unref (calls);

  fake_tools_free (fake);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Errors: displays, tools, failures, hangs
 */

GST_START_TEST (test_no_display)
{
  FakeTools *fake = fake_tools_new ("ok");
  gchar *error;

  g_unsetenv ("DISPLAY");
  g_unsetenv ("WAYLAND_DISPLAY");

  error = start_error ("method=auto");
  assert_contains (error, "WAYLAND_DISPLAY");
  assert_contains (error, "DISPLAY is set");
  assert_contains (error, "import-environment");
  g_free (error);

  error = start_error ("method=xtest");
  /* A build without libXtst says that instead, which is what is missing then. */
  if (!strstr (error, "built without"))
    assert_contains (error, "DISPLAY is not set");
  g_free (error);

  error = start_error ("method=wtype");
  assert_contains (error, "WAYLAND_DISPLAY is not set");
  g_free (error);

  /* ydotool and stdout need no display. */
  fail_unless (start_error ("method=ydotool") == NULL);
  fail_unless (start_error ("method=stdout") == NULL);
  fake_tools_free (fake);
}

GST_END_TEST;

/* method=stdout never writes into a descriptor that is not the standard output it started with:
 * with fd 1 closed the sink does not start; with fd 1 closed and reused by a later open() while it
 * runs, the text is not written into that file and the sink posts an error instead. */
GST_START_TEST (test_stdout_closed)
{
  const int saved = dup (STDOUT_FILENO);
  fail_unless (saved >= 0);
  fflush (stdout);

  /* element and bus first: they open descriptors (the bus's wakeup fd) that would take fd 1 */
  GstElement *sink = make_sink ("method=stdout");
  GstBus *start_bus = gst_bus_new ();
  gst_element_set_bus (sink, start_bus);
  close (STDOUT_FILENO);
  GstStateChangeReturn ret = gst_element_set_state (sink, GST_STATE_PAUSED);
  dup2 (saved, STDOUT_FILENO);
  gchar *error = bus_error (start_bus);
  fail_unless_equals_int (ret, GST_STATE_CHANGE_FAILURE);
  assert_contains (error, "standard output is closed");
  g_free (error);
  gst_element_set_state (sink, GST_STATE_NULL);
  gst_element_set_bus (sink, NULL);
  gst_object_unref (start_bus);
  gst_object_unref (sink);

  GstBus *bus;
  GstHarness *h = sink_harness ("method=stdout", &bus);
  gst_harness_play (h);
  gchar *path = g_build_filename (g_get_tmp_dir (), "textinject-stdout-XXXXXX", NULL);
  int tmp = g_mkstemp (path);
  fail_unless (tmp >= 0);
  close (tmp);
  fflush (stdout);
  close (STDOUT_FILENO);
  int reused = open (path, O_WRONLY);
  fail_unless (reused == STDOUT_FILENO, "the file did not take fd 1 (got %d)", reused);
  gst_harness_push (h, text_buffer ("must not land in the file"));
  gst_harness_push_event (h, gst_event_new_eos ());
  error = bus_error_within (bus, 10.0);
  fflush (stdout);
  dup2 (saved, STDOUT_FILENO);
  close (saved);
  assert_contains (error, "standard output was closed");
  g_free (error);
  gchar *written = read_text (path);
  fail_unless (written == NULL || *written == '\0', "the text went into the file: '%s'", written);
  g_free (written);
  g_unlink (path);
  g_free (path);
  harness_done (h, bus);
}

GST_END_TEST;

GST_START_TEST (test_missing_tools)
{
  gchar *empty = g_dir_make_tmp ("textinject-empty-XXXXXX", NULL);
  gchar *error;

  g_setenv ("PATH", empty, TRUE);
  g_setenv ("WAYLAND_DISPLAY", "wayland-test", TRUE);
  g_unsetenv ("XDG_CURRENT_DESKTOP");

  error = start_error ("method=wtype");
  assert_contains (error, "wtype was not found");
  assert_contains (error, "apt install wtype");
  g_free (error);

  error = start_error ("method=ydotool");
  assert_contains (error, "ydotool was not found");
  assert_contains (error, "apt install ydotool");
  g_free (error);

  /* auto on Wayland names the tool to install, and its fallback. */
  error = start_error ("method=auto");
  assert_contains (error, "apt install wtype");
  assert_contains (error, "apt install ydotool");
  g_free (error);

  g_rmdir (empty);
  g_free (empty);
}

GST_END_TEST;

static gint
active_method_after_start (const gchar *props)
{
  GstElement *sink = make_sink (props);
  gint active = -1;

  fail_unless (gst_element_set_state (sink, GST_STATE_PAUSED) != GST_STATE_CHANGE_FAILURE);
  g_object_get (sink, "active-method", &active, NULL);
  gst_element_set_state (sink, GST_STATE_NULL);
  gst_object_unref (sink);
  return active;
}

GST_START_TEST (test_auto_choice)
{
  FakeTools *fake = fake_tools_new ("ok");

  g_unsetenv ("DISPLAY");
  g_setenv ("WAYLAND_DISPLAY", "wayland-test", TRUE);
  g_setenv ("XDG_CURRENT_DESKTOP", "sway", TRUE);
  fail_unless_equals_int (active_method_after_start ("method=auto"), 1);        /* wtype */
  /* GNOME's compositor has no virtual-keyboard protocol: ydotool. */
  g_setenv ("XDG_CURRENT_DESKTOP", "ubuntu:GNOME", TRUE);
  fail_unless_equals_int (active_method_after_start ("method=auto"), 2);        /* ydotool */
  /* X11 whose display cannot be opened: ydotool as the fallback. */
  g_unsetenv ("WAYLAND_DISPLAY");
  fail_unless_equals_int (active_method_after_start ("method=auto display=:4242"), 2);
  fake_tools_free (fake);
}

GST_END_TEST;

GST_START_TEST (test_tool_failure)
{
  FakeTools *fake = fake_tools_new ("fail");
  GstBus *bus;
  GstHarness *h;
  gchar *error;

  g_setenv ("WAYLAND_DISPLAY", "wayland-test", TRUE);
  h = sink_harness ("method=wtype", &bus);
  /* Typing happens on the element's own thread: the failure comes as an error message, and
   * the element refuses text from then on. */
  fail_unless_equals_int (gst_harness_push (h, text_buffer ("hello")), GST_FLOW_OK);
  error = bus_error_within (bus, 10);
  assert_contains (error, "wtype failed (exit status 1)");
  assert_contains (error, "Compositor does not support the virtual keyboard protocol");
  g_free (error);
  fail_unless_equals_int (gst_harness_push (h, text_buffer ("again")), GST_FLOW_ERROR);
  harness_done (h, bus);
  fake_tools_free (fake);
}

GST_END_TEST;

GST_START_TEST (test_tool_timeout)
{
  FakeTools *fake = fake_tools_new ("hang");
  GstBus *bus;
  GstHarness *h;
  gchar *error;
  gint64 start;

  g_setenv ("WAYLAND_DISPLAY", "wayland-test", TRUE);
  h = sink_harness ("method=wtype timeout=200", &bus);
  start = g_get_monotonic_time ();
  /* The streaming thread never waits for the tool... */
  fail_unless_equals_int (gst_harness_push (h, text_buffer ("hello")), GST_FLOW_OK);
  fail_unless (g_get_monotonic_time () - start < G_USEC_PER_SEC / 2, "render waited");
  /* ...and the tool is killed after 200 + 5 characters × 50 ms. */
  error = bus_error_within (bus, 10);
  fail_unless (g_get_monotonic_time () - start < 3 * G_USEC_PER_SEC, "timeout not kept");
  assert_contains (error, "did not finish within 450 ms");
  g_free (error);
  harness_done (h, bus);
  fake_tools_free (fake);
}

GST_END_TEST;

/* A state change while a tool hangs kills it at once (GstBaseSink::unlock), and EOS does not
 * wait for it either. */
GST_START_TEST (test_stop_while_tool_hangs)
{
  FakeTools *fake = fake_tools_new ("hang");
  GstBus *bus;
  GstHarness *h;
  gint64 start;

  g_setenv ("WAYLAND_DISPLAY", "wayland-test", TRUE);
  h = sink_harness ("method=wtype timeout=60000", &bus);
  fail_unless_equals_int (gst_harness_push (h, text_buffer ("hello")), GST_FLOW_OK);
  fail_unless (wait_for_file (fake->log, 10), "the tool never started");
  start = g_get_monotonic_time ();
  fail_unless (gst_element_set_state (h->element, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS);
  fail_unless (g_get_monotonic_time () - start < 2 * G_USEC_PER_SEC, "stopping waited");
  fail_unless (bus_error (bus) == NULL, "a stop is not an error");
  harness_done (h, bus);
  fake_tools_free (fake);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * xtest under Xvfb, typing into tests/xrecorder
 */

static GPid xvfb_pid;
static gchar *xvfb_display;

/* Reads Xvfb's display number from the -displayfd pipe. */
static gint
read_display_number (gint fd)
{
  gchar buf[16] = "";
  gsize len = 0;
  struct pollfd pfd = { .fd = fd, .events = POLLIN };

  while (len < sizeof (buf) - 1 && !strchr (buf, '\n') && poll (&pfd, 1, 15000) > 0) {
    gssize n = read (fd, buf + len, sizeof (buf) - 1 - len);
    if (n <= 0)
      break;
    len += n;
    buf[len] = '\0';
  }
  return strchr (buf, '\n') ? atoi (buf) : -1;
}

/* Unchecked fixture: one private X server for the xtest test case. */
static void
xvfb_start (void)
{
  const gchar *argv[] = { "Xvfb", "-displayfd", "3", "-nolisten", "tcp", "-noreset", "-screen",
    "0", "320x240x24", NULL
  };
  gint fds[2], target = 3, number;
  GError *error = NULL;

  fail_unless (g_unix_open_pipe (fds, FD_CLOEXEC, NULL));
  fail_unless (g_spawn_async_with_pipes_and_fds (NULL, argv, NULL, G_SPAWN_SEARCH_PATH
          | G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
          NULL, NULL, -1, -1, -1, &fds[1], &target, 1, &xvfb_pid, NULL, NULL, NULL, &error),
      "cannot start Xvfb: %s", error ? error->message : "");
  close (fds[1]);
  number = read_display_number (fds[0]);
  close (fds[0]);
  fail_unless (number >= 0, "Xvfb did not report its display");
  xvfb_display = g_strdup_printf (":%d", number);
}

static void
xvfb_stop (void)
{
  stop_process (xvfb_pid);
  g_clear_pointer (&xvfb_display, g_free);
}

typedef struct {
  GPid pid;
  gchar *dir;
  gchar *output;
} Recorder;

static gchar **
x_environment (void)
{
  gchar **env = g_get_environ ();
  return g_environ_setenv (env, "DISPLAY", xvfb_display, TRUE);
}

/* Starts xrecorder on the test display and waits until its window has the focus. */
static Recorder *
recorder_start (void)
{
  Recorder *rec = g_new0 (Recorder, 1);
  gchar *ready, **env = x_environment ();
  GError *error = NULL;

  rec->dir = g_dir_make_tmp ("xrecorder-XXXXXX", NULL);
  rec->output = g_build_filename (rec->dir, "typed.txt", NULL);
  ready = g_build_filename (rec->dir, "ready", NULL);
  const gchar *argv[] = { XRECORDER, rec->output, ready, NULL };
  fail_unless (g_spawn_async (NULL, (gchar **) argv, env, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
          &rec->pid, &error), "cannot start xrecorder: %s", error ? error->message : "");
  fail_unless (wait_for_file (ready, 10), "xrecorder did not get the focus");
  g_unlink (ready);
  g_free (ready);
  g_strfreev (env);
  return rec;
}

static void
recorder_stop (Recorder *rec)
{
  stop_process (rec->pid);
  g_unlink (rec->output);
  g_rmdir (rec->dir);
  g_free (rec->output);
  g_free (rec->dir);
  g_free (rec);
}

static gchar *
keymap_dump (void)
{
  gchar *dir = g_dir_make_tmp ("keymap-XXXXXX", NULL);
  gchar *path = g_build_filename (dir, "keymap.txt", NULL), *text, **env = x_environment ();
  const gchar *argv[] = { XRECORDER, "--keymap", path, NULL };
  gint status = -1;

  fail_unless (g_spawn_sync (NULL, (gchar **) argv, env, G_SPAWN_DEFAULT, NULL, NULL, NULL,
          NULL, &status, NULL));
  fail_unless (g_spawn_check_wait_status (status, NULL), "xrecorder --keymap failed");
  text = read_text (path);
  g_unlink (path);
  g_rmdir (dir);
  g_free (path);
  g_free (dir);
  g_strfreev (env);
  return text;
}

GST_START_TEST (test_xtest_types_unicode)
{
  /* ASCII with and without Shift; Latin-1 and other characters missing from the US map;
   * more distinct ones than one remap batch holds; CJK and a character beyond the BMP. */
  const gchar *segments[] = {
    "Hello, World! <|685|> ~`@#$%^&*()_+{}:\"? 0123456789 -=[];'\\,./",
    "café naïve — ¿qué?",
    "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ ŁŒœŠ€½ 日本語 😀",
    "tab\there",
  };
  gchar *before = keymap_dump (), *after, *typed;
  Recorder *rec = recorder_start ();
  gchar *props = g_strdup_printf ("method=xtest display=%s append=newline", xvfb_display);
  GString *expected = g_string_new (NULL);
  GstBus *bus;
  GstHarness *h = sink_harness (props, &bus);

  for (guint i = 0; i < G_N_ELEMENTS (segments); i++) {
    fail_unless_equals_int (gst_harness_push (h, text_buffer (segments[i])), GST_FLOW_OK);
    g_string_append_printf (expected, "%s\n", segments[i]);
  }
  finish_typing (h);
  typed = wait_for_content (rec->output, expected->str, 10);
  fail_unless_equals_string (typed, expected->str);
  fail_unless (bus_error (bus) == NULL);

  /* Every borrowed keycode is given back once the sink stops. */
  harness_done (h, bus);
  after = keymap_dump ();
  fail_unless (g_strcmp0 (after, before) == 0, "the keyboard map was not restored");
  recorder_stop (rec);
  g_string_free (expected, TRUE);
  g_free (typed);
  g_free (before);
  g_free (after);
  g_free (props);
}

GST_END_TEST;

GST_START_TEST (test_xtest_auto_on_x11)
{
  g_unsetenv ("WAYLAND_DISPLAY");
  g_setenv ("DISPLAY", xvfb_display, TRUE);
  fail_unless_equals_int (active_method_after_start ("method=auto"), 3);        /* xtest */
}

GST_END_TEST;

static void
collect_transcript (GstBus *bus, GstMessage *msg, gpointer data)
{
  const GstStructure *s = gst_message_get_structure (msg);
  if (s && gst_structure_has_name (s, "canarytranscribe"))
    g_ptr_array_add (data, g_strdup (gst_structure_get_string (s, "text")));
}

/* The bar: speech through a real (fixture) model into XTEST; the X client receives exactly
 * the text the element announced on the bus. */
GST_START_TEST (test_xtest_pipeline_from_model)
{
  GPtrArray *texts = g_ptr_array_new_with_free_func (g_free);
  GString *expected = g_string_new (NULL);
  Recorder *rec = recorder_start ();
  gchar *desc, *typed;
  GstElement *pipeline;
  GstBus *bus;
  GstMessage *msg;

  load_system_plugins ((const gchar *[]) { "coreelements", "wavparse", "audioconvert",
        "audioresample", NULL });
  desc = g_strdup_printf ("filesrc location=%s/audio/speech13s.wav ! wavparse ! audioconvert ! "
      "audioresample ! canarytranscribe model-path=%s ! textinjectsink method=xtest "
      "display=%s append=newline", FIXTURES_DIR, MODEL2, xvfb_display);
  pipeline = launch (desc);
  bus = gst_element_get_bus (pipeline);
  gst_bus_enable_sync_message_emission (bus);
  g_signal_connect (bus, "sync-message::element", G_CALLBACK (collect_transcript), texts);
  fail_unless (gst_element_set_state (pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_timed_pop_filtered (bus, 120 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless (msg && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS, "no EOS");
  gst_message_unref (msg);
  gst_element_set_state (pipeline, GST_STATE_NULL);

  /* append=newline: each announced text, trimmed, then Return. */
  fail_unless (texts->len >= 2, "expected the 13 s clip to give several texts");
  for (guint i = 0; i < texts->len; i++) {
    gchar *t = g_strstrip (g_strdup (g_ptr_array_index (texts, i)));
    if (*t)
      g_string_append_printf (expected, "%s\n", t);
    g_free (t);
  }
  fail_unless (expected->len > 0);
  typed = wait_for_content (rec->output, expected->str, 10);
  fail_unless_equals_string (typed, expected->str);

  g_free (typed);
  g_free (desc);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  recorder_stop (rec);
  g_string_free (expected, TRUE);
  g_ptr_array_unref (texts);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * canary-dictate's gate: audio passes only while on, and all of it
 */

#define GATE_BUFFER 1600        /* samples: 100 ms at 16 kHz */

typedef struct {
  DictateGate *gate;
  guint index;                  /* source buffers seen */
  guint64 samples_in;           /* samples that reached canarytranscribe */
  GArray *sessions;             /* DictateSession, as the gate reported them */
  GPtrArray *log;               /* order of events: "buffer <pts ms>" / "text <pts ms>" */
  GMutex lock;
} GateRun;

/* On for source buffers [5, 15) and [22, 30), off otherwise: toggled from a probe on the
 * source, i.e. exactly at known timestamps. */
static GstPadProbeReturn
toggle_at_known_buffers (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  GateRun *run = data;
  guint i = run->index++;

  if (i == 5 || i == 22)
    dictate_gate_set_open (run->gate, TRUE);
  else if (i == 15 || i == 30)
    dictate_gate_set_open (run->gate, FALSE);
  return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn
count_transcriber_input (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  GateRun *run = data;
  GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER (info);

  g_mutex_lock (&run->lock);
  run->samples_in += gst_buffer_get_size (buffer) / 2;
  g_ptr_array_add (run->log, g_strdup_printf ("buffer %" G_GUINT64_FORMAT,
          GST_BUFFER_PTS (buffer) / GST_MSECOND));
  g_mutex_unlock (&run->lock);
  return GST_PAD_PROBE_OK;
}

static void
note_session (const DictateSession *session, gpointer data)
{
  GateRun *run = data;
  g_mutex_lock (&run->lock);
  g_array_append_val (run->sessions, *session);
  g_mutex_unlock (&run->lock);
}

static void
note_text (GstBus *bus, GstMessage *msg, gpointer data)
{
  GateRun *run = data;
  const GstStructure *s = gst_message_get_structure (msg);
  guint64 ts = 0;

  if (!s || !gst_structure_has_name (s, "canarytranscribe"))
    return;
  gst_structure_get_uint64 (s, "timestamp", &ts);
  g_mutex_lock (&run->lock);
  g_ptr_array_add (run->log, g_strdup_printf ("text %" G_GUINT64_FORMAT, ts / GST_MSECOND));
  g_mutex_unlock (&run->lock);
}

static gint
log_index (GPtrArray *log, const gchar *entry)
{
  for (guint i = 0; i < log->len; i++)
    if (g_str_equal (g_ptr_array_index (log, i), entry))
      return (gint) i;
  return -1;
}

GST_START_TEST (test_gate_passes_audio_only_while_on)
{
  GateRun run = { 0, };
  GstElement *pipeline, *src, *valve, *stt;
  GstPad *pad;
  GstBus *bus;
  GstMessage *msg;
  gchar *desc;

  g_mutex_init (&run.lock);
  run.sessions = g_array_new (FALSE, FALSE, sizeof (DictateSession));
  run.log = g_ptr_array_new_with_free_func (g_free);
  desc = g_strdup_printf ("audiotestsrc name=src num-buffers=40 samplesperbuffer=%d "
      "wave=white-noise volume=0.3 ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! "
      "valve name=gate ! canarytranscribe name=stt segmentation=fixed model-path=%s ! fakesink",
      GATE_BUFFER, MODEL2);
  load_system_plugins ((const gchar *[]) { "coreelements", "audiotestsrc", NULL });
  pipeline = launch (desc);
  src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
  valve = gst_bin_get_by_name (GST_BIN (pipeline), "gate");
  stt = gst_bin_get_by_name (GST_BIN (pipeline), "stt");
  run.gate = dictate_gate_new (valve, note_session, &run);

  pad = gst_element_get_static_pad (src, "src");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, toggle_at_known_buffers, &run, NULL);
  gst_object_unref (pad);
  pad = gst_element_get_static_pad (stt, "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, count_transcriber_input, &run, NULL);
  gst_object_unref (pad);
  bus = gst_element_get_bus (pipeline);
  gst_bus_enable_sync_message_emission (bus);
  g_signal_connect (bus, "sync-message::element", G_CALLBACK (note_text), &run);

  fail_unless (gst_element_set_state (pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_timed_pop_filtered (bus, 120 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless (msg && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS, "no EOS");
  gst_message_unref (msg);
  gst_element_set_state (pipeline, GST_STATE_NULL);

  /* Exactly the 10 + 8 buffers while on reached the transcriber, nothing while off. */
  fail_unless_equals_uint64 (run.samples_in, (10 + 8) * GATE_BUFFER);
  fail_unless_equals_int (run.sessions->len, 2);
  DictateSession *s1 = &g_array_index (run.sessions, DictateSession, 0);
  DictateSession *s2 = &g_array_index (run.sessions, DictateSession, 1);
  fail_unless_equals_uint64 (s1->samples, 10 * GATE_BUFFER);
  fail_unless_equals_uint64 (s1->start, 500 * GST_MSECOND);
  fail_unless_equals_uint64 (s1->end, 1500 * GST_MSECOND);
  fail_unless_equals_uint64 (s1->missing, 0);
  fail_unless_equals_uint64 (s2->samples, 8 * GATE_BUFFER);
  fail_unless_equals_uint64 (s2->start, 2200 * GST_MSECOND);
  fail_unless_equals_uint64 (s2->end, 3000 * GST_MSECOND);
  fail_unless_equals_uint64 (s2->missing, 0);
  /* Closing the gate makes the transcriber finish the session: its text comes out before
   * any audio of the next session arrives. */
  fail_unless (log_index (run.log, "text 500") >= 0, "session 1 gave no text");
  fail_unless (log_index (run.log, "text 500") < log_index (run.log, "buffer 2200"));
  fail_unless (log_index (run.log, "text 2200") >= 0, "session 2 gave no text");

  dictate_gate_free (run.gate);
  gst_object_unref (bus);
  gst_object_unref (src);
  gst_object_unref (valve);
  gst_object_unref (stt);
  gst_object_unref (pipeline);
  g_free (desc);
  g_array_unref (run.sessions);
  g_ptr_array_unref (run.log);
  g_mutex_clear (&run.lock);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * canary-dictate, toggled 100 times: one model, flat memory
 */

static guint64
rss_kib (GPid pid)
{
  gchar *path = g_strdup_printf ("/proc/%d/status", (gint) pid), *status = NULL, *line;
  guint64 kib = 0;

  if (g_file_get_contents (path, &status, NULL, NULL) && (line = strstr (status, "\nVmRSS:")))
    kib = g_ascii_strtoull (line + strlen ("\nVmRSS:"), NULL, 10);
  g_free (status);
  g_free (path);
  return kib;
}

static guint
count_lines (const gchar *text, const gchar *prefix)
{
  gchar **lines = g_strsplit (text, "\n", -1);
  guint n = 0;

  for (guint i = 0; lines[i]; i++)
    n += g_str_has_prefix (lines[i], prefix);
  g_strfreev (lines);
  return n;
}

/* Lines of the daemon's log that answer a toggle. */
static guint
count_toggles (const gchar *log_path)
{
  gchar *log = read_text (log_path);
  guint n = count_lines (log, "listening") + count_lines (log, "stopped listening");
  g_free (log);
  return n;
}

static void
run_toggle (gchar **env)
{
  const gchar *argv[] = { CANARY_DICTATE, "toggle", NULL };
  gint status = -1;

  fail_unless (g_spawn_sync (NULL, (gchar **) argv, env, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
          NULL, NULL, &status, NULL));
  fail_unless (g_spawn_check_wait_status (status, NULL), "canary-dictate toggle failed");
}

#define TOGGLES 100
#define WARMUP_TOGGLES 20
/* Allowed RSS growth from toggle 20 to toggle 100: far below one copy of even this tiny
 * model's working memory, far above allocator noise. */
#define MAX_RSS_GROWTH_KIB 2048

GST_START_TEST (test_dictate_toggle_100_times)
{
  gchar *dir = g_dir_make_tmp ("dictate-XXXXXX", NULL);
  gchar *out = g_build_filename (dir, "stdout", NULL), *err = g_build_filename (dir, "stderr",
      NULL);
  gchar *pid_file = g_build_filename (dir, "canary-dictate.pid", NULL), *log;
  gchar *registry = g_build_filename (dir, "registry.bin", NULL);
  gchar *cmd, **env = g_environ_setenv (g_get_environ (), "XDG_RUNTIME_DIR", dir, TRUE);
  guint64 rss_warm = 0, rss_end;
  GPid pid;
  gint status;

  fail_unless (g_file_test (CANARY_DICTATE, G_FILE_TEST_IS_EXECUTABLE),
      "%s is not built", CANARY_DICTATE);
  /* The program needs the stock elements too, from a registry of its own. */
  env = g_environ_setenv (env, "GST_PLUGIN_SYSTEM_PATH_1_0", system_plugin_dir (), TRUE);
  env = g_environ_setenv (env, "GST_REGISTRY", registry, TRUE);
  /* A shell only for the redirections; every argument is ours. */
  cmd = g_strdup_printf ("exec '%s' --model='%s' --method=stdout --append=newline "
      "--source='audiotestsrc is-live=true samplesperbuffer=160 wave=white-noise volume=0.3' "
      ">'%s' 2>'%s'", CANARY_DICTATE, MODEL2, out, err);
  const gchar *argv[] = { "/bin/sh", "-c", cmd, NULL };
  fail_unless (g_spawn_async (NULL, (gchar **) argv, env, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
          &pid, NULL));
  fail_unless (wait_for_file (pid_file, 20), "canary-dictate did not start");
  for (gint64 end = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
      g_get_monotonic_time () < end; g_usleep (WAIT_STEP_US)) {
    log = read_text (err);
    gboolean loaded = strstr (log, "\nmodel: ") != NULL;
    g_free (log);
    if (loaded)
      break;
  }

  for (guint i = 1; i <= TOGGLES; i++) {
    run_toggle (env);
    /* Two SIGUSR1 that arrive before the daemon handles the first merge into one (signals do
     * not queue; no hand presses a key that fast): wait for the answer before the next. */
    for (gint64 end = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
        count_toggles (err) < i && g_get_monotonic_time () < end;)
      g_usleep (2000);
    g_usleep (40 * 1000);       /* 40 ms on, 40 ms off: a few 10 ms buffers each time */
    if (i == WARMUP_TOGGLES) {
      g_usleep (300 * 1000);
      rss_warm = rss_kib (pid);
    }
  }
  g_usleep (300 * 1000);
  rss_end = rss_kib (pid);
  kill (pid, SIGTERM);
  waitpid (pid, &status, 0);
  g_spawn_close_pid (pid);

  log = read_text (err);
  fail_unless (WIFEXITED (status) && WEXITSTATUS (status) == 0, "exit status %d; log:\n%s",
      status, log);
  fail_unless_equals_int (count_lines (log, "model: Loaded"), 1);       /* one model load */
  fail_unless_equals_int (count_lines (log, "listening"), TOGGLES / 2);
  fail_unless_equals_int (count_lines (log, "stopped listening"), TOGGLES / 2);
  /* A session is counted when audio passed the gate while on. The upper bound is the point (no
   * session without a toggle on); the lower one only catches a gate stuck shut, since a loaded
   * machine (CI, parallel suites) can fail to deliver a 10 ms buffer within a 40 ms window many
   * times. Exact sample accounting while on/off is test_gate_passes_audio_only_while_on. */
  fail_unless (count_lines (log, "session: ") <= TOGGLES / 2
      && count_lines (log, "session: ") >= TOGGLES / 4, "%u sessions",
      count_lines (log, "session: "));
  fail_unless_equals_int (count_lines (log, "warning: "), 0);
  fail_unless_equals_int (count_lines (log, "error"), 0);
  fail_if (g_file_test (pid_file, G_FILE_TEST_EXISTS), "pid file left behind");
  fail_unless (rss_warm > 0 && rss_end > 0);
  g_print ("canary-dictate RSS after %d toggles: %" G_GUINT64_FORMAT " KiB, after %d: %"
      G_GUINT64_FORMAT " KiB\n", WARMUP_TOGGLES, rss_warm, TOGGLES, rss_end);
  fail_unless (rss_end <= rss_warm + MAX_RSS_GROWTH_KIB,
      "RSS grew from %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT " KiB", rss_warm, rss_end);

  g_unlink (out);
  g_unlink (err);
  g_unlink (registry);
  g_rmdir (dir);
  g_free (registry);
  g_free (log);
  g_free (cmd);
  g_strfreev (env);
  g_free (pid_file);
  g_free (out);
  g_free (err);
  g_free (dir);
}

GST_END_TEST;

/* ---------------------------------------------------------------------------------------------
 * Suite
 */

static Suite *
textinjectsink_suite (void)
{
  Suite *s = suite_create ("textinjectsink");
  TCase *tc = tcase_create ("tools");
  TCase *gate = tcase_create ("dictation");
  gchar *xvfb = g_find_program_in_path ("Xvfb");

  suite_add_tcase (s, tc);
  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_properties);
  tcase_add_test (tc, test_stdout_closed);
  tcase_add_test (tc, test_wtype_argv_verbatim);
  tcase_add_test (tc, test_ydotool_stdin_verbatim);
  tcase_add_test (tc, test_spacing_between_segments);
  tcase_add_test (tc, test_no_display);
  tcase_add_test (tc, test_missing_tools);
  tcase_add_test (tc, test_auto_choice);
  tcase_add_test (tc, test_tool_failure);
  tcase_add_test (tc, test_tool_timeout);
  tcase_add_test (tc, test_stop_while_tool_hangs);

  suite_add_tcase (s, gate);
  tcase_set_timeout (gate, 300);
  tcase_add_test (gate, test_gate_passes_audio_only_while_on);
  tcase_add_test (gate, test_dictate_toggle_100_times);

  if (!xvfb) {
    g_print ("SKIP xtest tests: Xvfb is not installed (Debian/Ubuntu: sudo apt install xvfb)\n");
  } else if (!g_file_test (XRECORDER, G_FILE_TEST_IS_EXECUTABLE)) {
    g_print ("SKIP xtest tests: %s was not built (needs libx11-dev and libxtst-dev)\n",
        XRECORDER);
  } else {
    TCase *x11 = tcase_create ("xtest");
    suite_add_tcase (s, x11);
    tcase_set_timeout (x11, 300);
    tcase_add_unchecked_fixture (x11, xvfb_start, xvfb_stop);
    tcase_add_test (x11, test_xtest_types_unicode);
    tcase_add_test (x11, test_xtest_auto_on_x11);
    tcase_add_test (x11, test_xtest_pipeline_from_model);
  }
  g_free (xvfb);
  return s;
}

GST_CHECK_MAIN (textinjectsink);
