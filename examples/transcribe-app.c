/* gst-canary — a small program that embeds canarytranscribe and prints what it hears.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   transcribe-app [--model=PATH] [--language=CODE] [--translate-to=CODE] [--window=MS]
 *                  [--overlap=MS] (--mic | FILE)
 *
 * It reads the element's 'canarytranscribe' bus messages (one per segment) rather than the text
 * buffers: they carry the timing and the processing time, and the application needs no sink of
 * its own. Ctrl-C sends EOS, so the last partial window is still transcribed; a second Ctrl-C
 * quits at once.
 */
#include <glib-unix.h>
#include <gst/gst.h>
#include <stdlib.h>

typedef struct {
  GMainLoop *loop;
  GstElement *pipeline;
  gboolean eos_sent;
  int status;
} App;

static void
format_time (GstClockTime t, gchar *buf, gsize size)
{
  if (!GST_CLOCK_TIME_IS_VALID (t)) {
    g_strlcpy (buf, "--:--:--.---", size);
    return;
  }
  guint64 ms = t / GST_MSECOND;
  g_snprintf (buf, size, "%02u:%02u:%02u.%03u", (guint) (ms / 3600000), (guint) (ms / 60000 % 60),
      (guint) (ms / 1000 % 60), (guint) (ms % 1000));
}

static void
print_segment (const GstStructure *s)
{
  guint64 ts = GST_CLOCK_TIME_NONE, dur = 0, proc = 0;
  gchar start[32], end[32];

  gst_structure_get_uint64 (s, "timestamp", &ts);
  gst_structure_get_uint64 (s, "duration", &dur);
  gst_structure_get_uint64 (s, "processing-time", &proc);
  format_time (ts, start, sizeof start);
  format_time (ts + dur, end, sizeof end);
  g_print ("[%s --> %s] (%s, %.0f ms) %s\n", start, end,
      gst_structure_get_string (s, "language"), proc / 1e6, gst_structure_get_string (s, "text"));
}

static gboolean
on_message (GstBus *bus, GstMessage *msg, gpointer data)
{
  App *app = data;
  GError *err = NULL;
  gchar *debug = NULL;

  switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ELEMENT:
      if (gst_message_has_name (msg, "canarytranscribe"))
        print_segment (gst_message_get_structure (msg));
      break;
    case GST_MESSAGE_PROGRESS:{
      GstProgressType type;
      gchar *code, *text;
      gst_message_parse_progress (msg, &type, &code, &text);
      g_printerr ("%s: %s\n", code, text);
      g_free (code);
      g_free (text);
      break;
    }
    case GST_MESSAGE_WARNING:
      gst_message_parse_warning (msg, &err, &debug);
      g_printerr ("warning: %s\n  (%s)\n", err->message, debug ? debug : "");
      break;
    case GST_MESSAGE_ERROR:
      gst_message_parse_error (msg, &err, &debug);
      g_printerr ("error from %s: %s\n  (%s)\n", GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)),
          err->message, debug ? debug : "");
      app->status = EXIT_FAILURE;
      g_main_loop_quit (app->loop);
      break;
    case GST_MESSAGE_EOS:
      g_main_loop_quit (app->loop);
      break;
    default:
      break;
  }
  g_clear_error (&err);
  g_free (debug);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_sigint (gpointer data)
{
  App *app = data;

  if (app->eos_sent) {
    g_main_loop_quit (app->loop);
    return G_SOURCE_REMOVE;
  }
  g_printerr ("finishing the last window (Ctrl-C again to quit now)\n");
  app->eos_sent = TRUE;
  gst_element_send_event (app->pipeline, gst_event_new_eos ());
  return G_SOURCE_CONTINUE;
}

/* "uridecodebin ! audioconvert ! audioresample ! canarytranscribe ! fakesink", or a microphone. */
static GstElement *
build_pipeline (const gchar *file, GError **err)
{
  const gchar *launch = file ?
      "uridecodebin name=src ! audioconvert ! audioresample ! canarytranscribe name=asr ! "
      "fakesink sync=false" :
      "autoaudiosrc ! audioconvert ! audioresample ! canarytranscribe name=asr ! fakesink";
  GstElement *pipeline = gst_parse_launch (launch, err);

  /* A missing element is reported with a pipeline that lacks it: give up then. */
  if (*err) {
    g_clear_object (&pipeline);
    return NULL;
  }
  if (file) {
    gchar *uri = gst_uri_is_valid (file) ? g_strdup (file) : gst_filename_to_uri (file, err);
    if (!uri) {
      gst_object_unref (pipeline);
      return NULL;
    }
    GstElement *src = gst_bin_get_by_name (GST_BIN (pipeline), "src");
    g_object_set (src, "uri", uri, NULL);
    gst_object_unref (src);
    g_free (uri);
  }
  return pipeline;
}

int
main (int argc, char **argv)
{
  gchar *model = NULL, *language = NULL, *translate_to = NULL;
  gint window = 0, overlap = -1;
  gboolean mic = FALSE;
  GError *err = NULL;
  const GOptionEntry entries[] = {
    {"model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Canary model (.nemo)", "PATH"},
    {"language", 'l', 0, G_OPTION_ARG_STRING, &language, "Spoken language (default en)", "CODE"},
    {"translate-to", 't', 0, G_OPTION_ARG_STRING, &translate_to, "Translate into this language",
        "CODE"},
    {"window", 'w', 0, G_OPTION_ARG_INT, &window, "Window length in ms (default 10000)", "MS"},
    {"overlap", 'o', 0, G_OPTION_ARG_INT, &overlap, "Window overlap in ms (default 1000)", "MS"},
    {"mic", 0, 0, G_OPTION_ARG_NONE, &mic, "Transcribe the default microphone", NULL},
    {NULL}
  };

  GOptionContext *ctx = g_option_context_new ("(--mic | FILE) - print what canarytranscribe hears");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  if (!g_option_context_parse (ctx, &argc, &argv, &err) || (!mic && argc != 2)) {
    gchar *help = g_option_context_get_help (ctx, TRUE, NULL);
    g_printerr ("%s%s", err ? err->message : "", help);
    return EXIT_FAILURE;
  }
  g_option_context_free (ctx);

  App app = { g_main_loop_new (NULL, FALSE), NULL, FALSE, EXIT_SUCCESS };
  app.pipeline = build_pipeline (mic ? NULL : argv[1], &err);
  if (!app.pipeline) {
    g_printerr ("cannot build the pipeline: %s\n", err->message);
    return EXIT_FAILURE;
  }

  GstElement *asr = gst_bin_get_by_name (GST_BIN (app.pipeline), "asr");
  if (model)
    g_object_set (asr, "model-path", model, NULL);
  if (language)
    g_object_set (asr, "language-code", language, NULL);
  if (translate_to)
    g_object_set (asr, "task", 1 /* translate */ , "target-language", translate_to, NULL);
  if (window > 0)
    g_object_set (asr, "window-length", (guint) window, NULL);
  if (overlap >= 0)
    g_object_set (asr, "overlap", (guint) overlap, NULL);
  gst_object_unref (asr);

  GstBus *bus = gst_element_get_bus (app.pipeline);
  gst_bus_add_watch (bus, on_message, &app);
  g_unix_signal_add (SIGINT, on_sigint, &app);

  if (gst_element_set_state (app.pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    /* the element has posted why: let the bus handler print it */
    app.status = EXIT_FAILURE;
    GstMessage *m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    if (m) {
      on_message (bus, m, &app);
      gst_message_unref (m);
    }
  } else {
    g_main_loop_run (app.loop);
  }

  gst_element_set_state (app.pipeline, GST_STATE_NULL);
  gst_bus_remove_watch (bus);
  gst_object_unref (bus);
  gst_object_unref (app.pipeline);
  g_main_loop_unref (app.loop);
  g_free (model);
  g_free (language);
  g_free (translate_to);
  return app.status;
}
