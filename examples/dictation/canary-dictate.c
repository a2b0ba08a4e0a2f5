/* gst-canary — canary-dictate: press a key, speak, the words appear in the focused window.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   canary-dictate [--model=PATH] [--source=DESCRIPTION] [--method=METHOD] [--append=WHAT]
 *                  [--device=DEVICE] [--precision=PRECISION] [--language=CODE]
 *                  [--segmentation=auto|vad|fixed] [--listen]
 *   canary-dictate toggle
 *
 * The daemon runs
 *
 *   SOURCE ! audioconvert ! audioresample ! valve ! canarytranscribe ! textinjectsink
 *
 * for as long as it lives (a systemd --user service; see canary-dictate.service and
 * docs/dictation.md). The model is loaded once, at start. Listening starts off: the valve
 * discards the captured audio. SIGUSR1, which `canary-dictate toggle` sends to the instance
 * named in $XDG_RUNTIME_DIR/canary-dictate.pid, opens or closes it. While listening, with the
 * VAD weights installed, each stretch of speech is typed as soon as the speaker pauses
 * (canarytranscribe's VAD segmentation, min-silence 500 ms); on closing, the words still in the
 * transcriber are transcribed and typed at once.
 *
 * Everything it has to say goes to stderr, one line per event, for journald: the model and
 * device in use with the memory taken, each transcript with its timing, each listening session
 * with the amount of audio it fed the transcriber. SIGINT/SIGTERM stop it; an error (no
 * microphone, no model, no typing tool) ends it with status 1, for systemd to restart it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>
#include <gst/gst.h>

#include "dictate-gate.h"

#define PID_FILE_NAME "canary-dictate.pid"
#define DEFAULT_SOURCE "pulsesrc"

typedef struct {
  gchar *model;
  gchar *source;
  gchar *method;
  gchar *append;
  gchar *device;
  gchar *precision;
  gchar *language;
  gchar *segmentation;
  gboolean listen;
} Options;

typedef struct {
  Options opt;
  GMainLoop *loop;
  GstElement *pipeline;
  GstElement *stt;
  GstElement *inject;
  DictateGate *gate;
  gint64 stop_time;             /* monotonic µs of the last "stop listening", 0 if listening */
  gint pid_fd;
  gchar *pid_path;
  gint status;
} App;

/* One line on stderr, written at once so lines from two threads never interleave. */
static void G_GNUC_PRINTF (1, 2)
say (const gchar *format, ...)
{
  va_list args;
  gchar *line;

  va_start (args, format);
  line = g_strdup_vprintf (format, args);
  va_end (args);
  fprintf (stderr, "%s\n", line);
  fflush (stderr);
  g_free (line);
}

/* "RSS 123.4 MiB", or "RSS unknown" where /proc is unavailable. */
static gchar *
memory_usage (void)
{
  gchar *status = NULL, *line;
  guint64 kib = 0;

  if (g_file_get_contents ("/proc/self/status", &status, NULL, NULL)
      && (line = strstr (status, "\nVmRSS:")))
    kib = g_ascii_strtoull (line + strlen ("\nVmRSS:"), NULL, 10);
  g_free (status);
  return kib ? g_strdup_printf ("RSS %.1f MiB", kib / 1024.0) : g_strdup ("RSS unknown");
}

/* ---------------------------------------------------------------------------------------------
 * The pid file: an flock()ed file, so a stale one (after a crash) is recognised as such
 */

static gchar *
pid_file_path (void)
{
  return g_build_filename (g_get_user_runtime_dir (), PID_FILE_NAME, NULL);
}

/* Returns the locked file's descriptor, or -1 if another instance holds it or it cannot be
 * written. The lock lives as long as the process. */
static gint
claim_pid_file (const gchar *path)
{
  gint fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  gchar pid[32];

  if (fd < 0) {
    say ("error: cannot create %s: %s", path, g_strerror (errno));
    return -1;
  }
  if (flock (fd, LOCK_EX | LOCK_NB) != 0) {
    gssize n = read (fd, pid, sizeof (pid) - 1);
    pid[MAX (n, 0)] = '\0';
    say ("error: canary-dictate is already running (pid %s)", g_strstrip (pid));
    close (fd);
    return -1;
  }
  g_snprintf (pid, sizeof (pid), "%d\n", (gint) getpid ());
  if (ftruncate (fd, 0) != 0 || write (fd, pid, strlen (pid)) != (gssize) strlen (pid)) {
    say ("error: cannot write %s: %s", path, g_strerror (errno));
    close (fd);
    return -1;
  }
  return fd;
}

/* `canary-dictate toggle`: SIGUSR1 to the running instance. */
static gint
send_toggle (void)
{
  gchar *path = pid_file_path ();
  gchar buf[32] = "";
  gint fd = open (path, O_RDONLY | O_CLOEXEC), status = 1;
  gssize n;
  gint64 pid;

  if (fd < 0) {
    say ("canary-dictate is not running (no %s)", path);
  } else if (flock (fd, LOCK_SH | LOCK_NB) == 0) {
    /* We got the lock, so nobody holds it: the file is left over from a crash. */
    say ("canary-dictate is not running (stale %s)", path);
  } else if ((n = read (fd, buf, sizeof (buf) - 1)) <= 0
      || (pid = g_ascii_strtoll (buf, NULL, 10)) <= 1) {
    say ("error: %s holds no process id", path);
  } else if (kill ((pid_t) pid, SIGUSR1) != 0) {
    say ("error: cannot signal process %" G_GINT64_FORMAT ": %s", pid, g_strerror (errno));
  } else {
    status = 0;
  }
  if (fd >= 0)
    close (fd);
  g_free (path);
  return status;
}

/* ---------------------------------------------------------------------------------------------
 * Reports
 */

static void
report_transcript (App *app, const GstStructure *s)
{
  guint64 ts = 0, duration = 0, processing = 0;
  const gchar *text = gst_structure_get_string (s, "text");
  gchar *after_stop = NULL;

  gst_structure_get_uint64 (s, "timestamp", &ts);
  gst_structure_get_uint64 (s, "duration", &duration);
  gst_structure_get_uint64 (s, "processing-time", &processing);
  if (app->stop_time)
    after_stop = g_strdup_printf (", %.0f ms after stop",
        (g_get_monotonic_time () - app->stop_time) / 1000.0);
  say ("transcript: audio %.2f-%.2f s (%.2f s), model %.0f ms%s: \"%s\"", ts / 1e9,
      (ts + duration) / 1e9, duration / 1e9, processing / 1e6, after_stop ? after_stop : "",
      text ? text : "");
  g_free (after_stop);
}

static void
report_progress (App *app, GstMessage *msg)
{
  GstProgressType type;
  gchar *code = NULL, *text = NULL, *memory;

  gst_message_parse_progress (msg, &type, &code, &text);
  if (g_strcmp0 (code, "loading") == 0 && type != GST_PROGRESS_TYPE_START) {
    memory = memory_usage ();
    /* The element's text names the model file, the device and precision it runs on. */
    say ("model: %s; %s%s", text, memory, strstr (text ? text : "", "cuda") ?
        " (GPU memory: see nvidia-smi)" : "");
    g_free (memory);
  }
  g_free (code);
  g_free (text);
}

/* Called on the streaming thread when the gate has closed. */
static void
report_session (const DictateSession *session, gpointer user_data)
{
  gchar *memory = memory_usage ();

  say ("session: %.2f s of audio (%" G_GUINT64_FORMAT " samples) went to the transcriber; %s",
      session->samples / 16000.0, session->samples, memory);
  if (session->missing > 0)
    say ("warning: %.0f ms of audio were lost before reaching the transcriber while listening "
        "(the capture source dropped them)", session->missing / 1e6);
  g_free (memory);
}

static gboolean
on_message (GstBus *bus, GstMessage *msg, gpointer data)
{
  App *app = data;
  GError *error = NULL;
  gchar *debug = NULL;

  switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ELEMENT:
      if (gst_message_has_name (msg, "canarytranscribe"))
        report_transcript (app, gst_message_get_structure (msg));
      break;
    case GST_MESSAGE_PROGRESS:
      report_progress (app, msg);
      break;
    case GST_MESSAGE_WARNING:
      gst_message_parse_warning (msg, &error, &debug);
      say ("warning from %s: %s", GST_OBJECT_NAME (msg->src), error->message);
      break;
    case GST_MESSAGE_ERROR:
      gst_message_parse_error (msg, &error, &debug);
      say ("error from %s: %s", GST_OBJECT_NAME (msg->src), error->message);
      if (debug)
        say ("  (%s)", debug);
      app->status = 1;
      g_main_loop_quit (app->loop);
      break;
    case GST_MESSAGE_EOS:
      say ("the audio source ended");
      g_main_loop_quit (app->loop);
      break;
    default:
      break;
  }
  g_clear_error (&error);
  g_free (debug);
  return G_SOURCE_CONTINUE;
}

/* ---------------------------------------------------------------------------------------------
 * Signals
 */

static gboolean
on_toggle (gpointer data)
{
  App *app = data;
  gboolean listening = dictate_gate_toggle (app->gate);

  app->stop_time = listening ? 0 : g_get_monotonic_time ();
  say (listening ? "listening" : "stopped listening");
  return G_SOURCE_CONTINUE;
}

static gboolean
on_quit (gpointer data)
{
  App *app = data;

  say ("quitting");
  g_main_loop_quit (app->loop);
  return G_SOURCE_CONTINUE;
}

/* ---------------------------------------------------------------------------------------------
 * The pipeline
 */

/* Sets an enum property from its nick, failing with the valid choices listed. */
static gboolean
set_enum (GstElement *element, const gchar *property, const gchar *nick)
{
  GParamSpec *pspec = g_object_class_find_property (G_OBJECT_GET_CLASS (element), property);
  GEnumClass *klass;
  GEnumValue *value;
  GString *valid;

  if (!nick)
    return TRUE;
  klass = G_PARAM_SPEC_ENUM (pspec)->enum_class;
  value = g_enum_get_value_by_nick (klass, nick);
  if (value) {
    g_object_set (element, property, value->value, NULL);
    return TRUE;
  }
  valid = g_string_new (NULL);
  for (guint i = 0; i < klass->n_values; i++)
    g_string_append_printf (valid, "%s%s", i ? ", " : "", klass->values[i].value_nick);
  say ("error: --%s=%s is not one of: %s", property, nick, valid->str);
  g_string_free (valid, TRUE);
  return FALSE;
}

static gboolean
build_pipeline (App *app)
{
  GError *error = NULL;
  gchar *description;

  /* No queue is needed anywhere: canarytranscribe runs the model on its own thread and
   * textinjectsink types on its own, so the capture thread never waits for either. */
  description = g_strdup_printf ("%s ! audioconvert ! audioresample ! valve name=gate ! "
      "canarytranscribe name=stt ! textinjectsink name=inject", app->opt.source);
  app->pipeline = gst_parse_launch (description, &error);
  g_free (description);
  if (error) {
    say ("error: cannot build the pipeline for --source '%s': %s", app->opt.source,
        error->message);
    g_error_free (error);
    return FALSE;
  }
  app->stt = gst_bin_get_by_name (GST_BIN (app->pipeline), "stt");
  app->inject = gst_bin_get_by_name (GST_BIN (app->pipeline), "inject");

  if (app->opt.model)
    g_object_set (app->stt, "model-path", app->opt.model, NULL);
  if (app->opt.language)
    g_object_set (app->stt, "language-code", app->opt.language, NULL);
  if (!set_enum (app->stt, "device", app->opt.device)
      || !set_enum (app->stt, "precision", app->opt.precision)
      || !set_enum (app->stt, "segmentation", app->opt.segmentation)
      || !set_enum (app->inject, "method", app->opt.method)
      || !set_enum (app->inject, "append", app->opt.append))
    return FALSE;

  GstElement *valve = gst_bin_get_by_name (GST_BIN (app->pipeline), "gate");
  app->gate = dictate_gate_new (valve, report_session, app);
  gst_object_unref (valve);
  return TRUE;
}

static gchar *
enum_nick (GstElement *element, const gchar *property)
{
  GParamSpec *pspec = g_object_class_find_property (G_OBJECT_GET_CLASS (element), property);
  GEnumValue *v;
  gint value = 0;

  g_object_get (element, property, &value, NULL);
  v = g_enum_get_value (G_PARAM_SPEC_ENUM (pspec)->enum_class, value);
  return g_strdup (v ? v->value_nick : "?");
}

static void
report_setup (App *app)
{
  gchar *model = NULL, *device = enum_nick (app->stt, "device");
  gchar *method = enum_nick (app->inject, "active-method");
  gchar *segmentation = enum_nick (app->stt, "active-segmentation");

  g_object_get (app->stt, "model-path", &model, NULL);
  say ("canary-dictate (pid %d): model %s (device %s requested), typing with %s, source '%s', "
      "text %s", (gint) getpid (), model ? model : "(bundled default)", device, method,
      app->opt.source, g_str_equal (segmentation, "vad") ? "at each pause (VAD)" :
      "when listening stops or every 10 s (fixed windows)");
  g_free (segmentation);
  if (!app->opt.listen)
    say ("not listening until toggled (canary-dictate toggle, or SIGUSR1)");
  g_free (model);
  g_free (device);
  g_free (method);
}

static gint
run (App *app)
{
  GstBus *bus;

  if (!build_pipeline (app))
    return 1;
  bus = gst_element_get_bus (app->pipeline);
  gst_bus_add_watch (bus, on_message, app);
  gst_object_unref (bus);
  g_unix_signal_add (SIGUSR1, on_toggle, app);
  g_unix_signal_add (SIGINT, on_quit, app);
  g_unix_signal_add (SIGTERM, on_quit, app);

  app->loop = g_main_loop_new (NULL, FALSE);
  if (gst_element_set_state (app->pipeline, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE) {
    report_setup (app);
    if (app->opt.listen)
      on_toggle (app);
  }
  /* On failure the error is on the bus: the loop reports it and quits. */
  g_main_loop_run (app->loop);
  gst_element_set_state (app->pipeline, GST_STATE_NULL);
  return app->status;
}

static void
app_clear (App *app)
{
  dictate_gate_free (app->gate);
  g_clear_pointer (&app->loop, g_main_loop_unref);
  gst_clear_object (&app->stt);
  gst_clear_object (&app->inject);
  gst_clear_object (&app->pipeline);
  if (app->pid_fd >= 0) {
    g_unlink (app->pid_path);
    close (app->pid_fd);
  }
  g_free (app->pid_path);
  g_free (app->opt.model);
  g_free (app->opt.source);
  g_free (app->opt.method);
  g_free (app->opt.append);
  g_free (app->opt.device);
  g_free (app->opt.precision);
  g_free (app->opt.language);
  g_free (app->opt.segmentation);
}

static gboolean
parse_options (App *app, gint *argc, gchar ***argv)
{
  const GOptionEntry entries[] = {
    {"model", 'm', 0, G_OPTION_ARG_FILENAME, &app->opt.model,
        "Canary .nemo model (default: the bundled model)", "PATH"},
    {"source", 's', 0, G_OPTION_ARG_STRING, &app->opt.source,
          "Audio source as a gst-launch description (default: pulsesrc), e.g. "
          "'filesrc location=x.wav ! decodebin'", "DESCRIPTION"},
    {"method", 0, 0, G_OPTION_ARG_STRING, &app->opt.method,
        "How to type: auto, wtype, ydotool, xtest, stdout (default: auto)", "METHOD"},
    {"append", 0, 0, G_OPTION_ARG_STRING, &app->opt.append,
        "After each text: none, space, newline (default: none)", "WHAT"},
    {"device", 0, 0, G_OPTION_ARG_STRING, &app->opt.device,
        "Where the model runs: auto, cuda, cpu (default: auto)", "DEVICE"},
    {"precision", 0, 0, G_OPTION_ARG_STRING, &app->opt.precision,
        "Model arithmetic: auto, fp16 (half the memory), fp32 (default: auto)", "PRECISION"},
    {"language", 'l', 0, G_OPTION_ARG_STRING, &app->opt.language,
        "Language spoken, e.g. en, de, fr (default: en)", "CODE"},
    {"segmentation", 0, 0, G_OPTION_ARG_STRING, &app->opt.segmentation,
        "Where text is cut: auto (at each pause when the VAD weights are installed), vad, "
        "fixed (10 s windows; text at the toggle) (default: auto)", "HOW"},
    {"listen", 0, 0, G_OPTION_ARG_NONE, &app->opt.listen,
        "Start listening at once instead of waiting for a toggle", NULL},
    {NULL},
  };
  GOptionContext *context = g_option_context_new ("[toggle] - dictation into the focused window");
  GError *error = NULL;
  gboolean ok;

  g_option_context_set_summary (context, "Without a command: run the dictation daemon.\n"
      "toggle: start or stop listening in the running daemon (bind it to a key).");
  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_add_group (context, gst_init_get_option_group ());
  ok = g_option_context_parse (context, argc, argv, &error);
  if (!ok) {
    say ("%s (see --help)", error->message);
    g_error_free (error);
  }
  g_option_context_free (context);
  return ok;
}

/* Installed under a prefix whose plugin directory GStreamer does not scan (docs/install.md), the
 * program still finds the plugin it was installed with. Only when the registry lacks the element:
 * GST_PLUGIN_PATH, a build tree's plugin or the system's install come first. */
static void
find_installed_plugin (void)
{
  GstRegistry *registry = gst_registry_get ();
  GstPluginFeature *feature = gst_registry_lookup_feature (registry, "canarytranscribe");

  if (feature) {
    gst_object_unref (feature);
    return;
  }
  if (g_file_test (CANARY_PLUGIN_DIR, G_FILE_TEST_IS_DIR))
    gst_registry_scan_path (registry, CANARY_PLUGIN_DIR);
}

int
main (int argc, char **argv)
{
  App app = { 0, };
  gint status;

  /* Before option parsing, which initialises GStreamer: a key press should not wait for the
   * plugin registry. */
  if (argc == 2 && g_str_equal (argv[1], "toggle"))
    return send_toggle ();
  app.pid_fd = -1;
  if (!parse_options (&app, &argc, &argv))
    return 2;
  if (argc > 1) {
    say ("unknown command '%s' (see --help)", argv[1]);
    return 2;
  }
  if (!app.opt.source)
    app.opt.source = g_strdup (DEFAULT_SOURCE);
  find_installed_plugin ();

  app.pid_path = pid_file_path ();
  app.pid_fd = claim_pid_file (app.pid_path);
  status = app.pid_fd >= 0 ? run (&app) : 1;
  app_clear (&app);
  gst_deinit ();
  return status;
}
