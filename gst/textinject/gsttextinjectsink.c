/* gst-canary — textinjectsink: types text into the focused window.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/**
 * SECTION:element-textinjectsink
 * @title: textinjectsink
 *
 * Types the text it receives (`text/x-raw, format=utf8`, e.g. from `canarytranscribe`) into
 * whatever window has the keyboard focus, as if it came from the keyboard. Together with a
 * microphone this makes a dictation pipeline:
 *
 * |[
 * gst-launch-1.0 pulsesrc ! audioconvert ! audioresample ! canarytranscribe ! textinjectsink
 * ]|
 *
 * ## Methods
 *
 * | method | how | needs |
 * |---|---|---|
 * | `wtype` | runs `wtype -- TEXT` (Wayland virtual-keyboard protocol: Sway, Hyprland, other wlroots compositors) | `WAYLAND_DISPLAY`, package `wtype` |
 * | `ydotool` | runs `ydotool type --file -` with the text on stdin (kernel uinput: any session, also GNOME and KDE on Wayland) | package `ydotool`, access to `/dev/uinput` (and `ydotoold` for ydotool 1.x) |
 * | `xtest` | in-process XTEST fake key events (X11, libXtst) | `DISPLAY` (or `display`), plugin built with libxtst-dev |
 * | `stdout` | prints the text on standard output | nothing |
 *
 * `auto` (the default) picks, when the element starts: on Wayland (`WAYLAND_DISPLAY` set)
 * `wtype`, or `ydotool` when wtype is not installed or the desktop is GNOME or KDE (whose
 * compositors do not offer the virtual-keyboard protocol); on X11 (`DISPLAY` set) `xtest`, or
 * `ydotool` when the X display cannot be used. Without either display variable it fails: a
 * `systemd --user` service has to import them first. The choice is readable from
 * `active-method` once the element is PAUSED.
 *
 * The text never goes through a shell: tools are executed directly with the text as a single
 * argv element after `--` (wtype) or on their stdin (ydotool), so quotes, `$(...)`, backticks
 * and `;` are typed, never run. A tool that runs longer than `timeout` (plus 50 ms per
 * character) is killed and the element fails instead of hanging.
 *
 * Typing happens on the element's own thread, in order: the streaming thread, and with it a
 * live capture upstream, never waits for a tool (ydotool, for one, paces its keys). EOS goes on
 * once everything has been typed; a flush or a state change to READY drops text not typed yet
 * and kills a running tool.
 *
 * ## Unicode
 *
 * `wtype` and `xtest` type any character. `xtest` uses the key of the current layout when one
 * gives the character (plain or with Shift) and otherwise maps a spare keycode to the
 * character's keysym for the moment (XChangeKeyboardMapping) and types it; the keycode gets
 * its old keysyms back once applications have had time to read the key (before a later text,
 * or when the element stops), never while they may still be looking it up.
 * `ydotool` can only type ASCII on a US layout: other characters are transliterated
 * ("café — ¿qué?" becomes "cafe -- ?que?") and a warning says so once.
 *
 * ## Spacing
 *
 * Each buffer's text is trimmed of leading and trailing white space. With `append=none`, a
 * single space is typed between the text of consecutive buffers, except before punctuation
 * that closes a word (`, . ; : ! ? )` and closing quotes); with `append=space` or
 * `append=newline` that character follows every text instead. Buffers with no text type
 * nothing. FLUSH and STREAM_START reset this, so the first text after them has no leading
 * space.
 *
 * ## Errors
 *
 * Detected when the element starts (READY→PAUSED fails), with a message that says what is
 * missing and how to get it:
 *
 * - no display: `DISPLAY` / `WAYLAND_DISPLAY` not set (RESOURCE/OPEN_WRITE);
 * - a tool not on PATH: names the Debian package, `wtype` or `ydotool` (RESOURCE/NOT_FOUND);
 * - `xtest` in a build without libXtst (RESOURCE/NOT_FOUND), an X display that cannot be
 *   opened (RESOURCE/OPEN_WRITE) or has no XTEST extension (RESOURCE/SETTINGS).
 *
 * While playing, a tool that fails, times out, or a lost X connection is a RESOURCE/WRITE
 * error quoting the tool's own output; the element refuses further text after it.
 */

#include "build-config.h"

#include "gsttextinjectsink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "textinject-spawn.h"
#include "textinject-x11.h"

GST_DEBUG_CATEGORY_STATIC (text_inject_sink_debug);
#define GST_CAT_DEFAULT text_inject_sink_debug

#define DEFAULT_METHOD GST_TEXT_INJECT_METHOD_AUTO
#define DEFAULT_APPEND GST_TEXT_INJECT_APPEND_NONE
#define DEFAULT_TIMEOUT_MS 5000
#define MIN_TIMEOUT_MS 100
#define MAX_TIMEOUT_MS 600000
/* Typing tools pace their keystrokes (ydotool: 12 ms a key by default), so long texts get
 * proportionally more time before they count as hung. */
#define TIMEOUT_PER_CHAR_MS 50

enum {
  PROP_0,
  PROP_METHOD,
  PROP_ACTIVE_METHOD,
  PROP_APPEND,
  PROP_DISPLAY,
  PROP_TIMEOUT,
};

struct _GstTextInjectSink {
  GstBaseSink parent;

  /* Properties, under the object lock. */
  GstTextInjectMethod method;
  GstTextInjectMethod active;   /* what `method` resolved to, while started */
  GstTextInjectAppend append;
  gchar *display;
  guint timeout_ms;

  /* Set up in start(); then only the typist uses them. */
  TextInjectX11 *x11;
  gchar *tool;                  /* full path of wtype or ydotool */
  gboolean ascii_warned;
  /* method stdout: what fd 1 was when the sink started (device, inode), so that a standard output
   * closed and its descriptor reused by another open() is never written into. */
  dev_t stdout_dev;
  ino_t stdout_ino;

  /* Streaming thread only. */
  gboolean need_separator;      /* the last text ended inside a line of words */

  /* The typist thread and what it shares with the streaming thread, under `lock`. */
  GThread *typist;
  GMutex lock;
  GCond cond;
  GQueue pending;               /* composed texts (gchar *) not yet typed */
  gboolean busy;                /* typing one right now */
  gboolean quit;
  gboolean flushing;            /* between unlock() and unlock_stop(): drop, never wait */
  gboolean failed;              /* an error was posted: refuse further text */
  GCancellable *cancellable;    /* kills the running tool; replaced by unlock_stop() */
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS ("text/x-raw, format = (string) utf8"));

#define gst_text_inject_sink_parent_class parent_class
G_DEFINE_TYPE (GstTextInjectSink, gst_text_inject_sink, GST_TYPE_BASE_SINK);

GST_ELEMENT_REGISTER_DEFINE (textinjectsink, "textinjectsink", GST_RANK_NONE,
    GST_TYPE_TEXT_INJECT_SINK);

GType
gst_text_inject_method_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_TEXT_INJECT_METHOD_AUTO, "wtype on Wayland, XTEST on X11, ydotool as fallback", "auto"},
    {GST_TEXT_INJECT_METHOD_WTYPE, "wtype (Wayland virtual keyboard)", "wtype"},
    {GST_TEXT_INJECT_METHOD_YDOTOOL, "ydotool (uinput, ASCII only)", "ydotool"},
    {GST_TEXT_INJECT_METHOD_XTEST, "XTEST extension (X11, in process)", "xtest"},
    {GST_TEXT_INJECT_METHOD_STDOUT, "Print to standard output", "stdout"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstTextInjectMethod", values));
  return type;
}

GType
gst_text_inject_append_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_TEXT_INJECT_APPEND_NONE, "Nothing (a space goes between consecutive texts)", "none"},
    {GST_TEXT_INJECT_APPEND_SPACE, "A space after each text", "space"},
    {GST_TEXT_INJECT_APPEND_NEWLINE, "A newline (Return) after each text", "newline"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstTextInjectAppend", values));
  return type;
}

static const gchar *
method_nick (GstTextInjectMethod method)
{
  GEnumValue *v = g_enum_get_value (g_type_class_peek (GST_TYPE_TEXT_INJECT_METHOD), method);
  return v ? v->value_nick : "?";
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 */

/* Posts @error (from the helpers) as an element error of the matching GStreamer kind. */
static void
post_error (GstTextInjectSink *self, GstTextInjectMethod method, const GError *error)
{
  const gchar *how = method_nick (method);

  if (error->domain != TEXTINJECT_ERROR) {
    GST_ELEMENT_ERROR (self, RESOURCE, WRITE, ("%s", error->message), ("method %s", how));
    return;
  }
  switch ((TextInjectError) error->code) {
    case TEXTINJECT_ERROR_NO_DISPLAY:
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE, ("%s", error->message), ("method %s", how));
      break;
    case TEXTINJECT_ERROR_NOT_BUILT:
    case TEXTINJECT_ERROR_TOOL_MISSING:
      GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("%s", error->message), ("method %s", how));
      break;
    case TEXTINJECT_ERROR_UNSUPPORTED:
      GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("%s", error->message), ("method %s", how));
      break;
    default:
      GST_ELEMENT_ERROR (self, RESOURCE, WRITE, ("%s", error->message), ("method %s", how));
      break;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Choosing and preparing a method (start)
 */

static gboolean
env_set (const gchar *name)
{
  const gchar *value = g_getenv (name);
  return value && *value;
}

/* GNOME's and KDE's Wayland compositors do not offer the virtual-keyboard protocol that
 * wtype needs; wlroots-based ones (Sway, Hyprland, river, Wayfire) do. */
static gboolean
desktop_lacks_virtual_keyboard (void)
{
  const gchar *desktop = g_getenv ("XDG_CURRENT_DESKTOP");
  gchar *lower;
  gboolean lacks;

  if (!desktop)
    return FALSE;
  lower = g_ascii_strdown (desktop, -1);
  lacks = strstr (lower, "gnome") || strstr (lower, "kde");
  g_free (lower);
  return lacks;
}

static gchar *
find_tool (const gchar *name, GError **error)
{
  gchar *path = g_find_program_in_path (name);

  if (!path) {
    const gchar *extra = g_str_equal (name, "ydotool") ?
        ", and give it access to /dev/uinput (see docs/dictation.md)" : "";
    g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_TOOL_MISSING,
        "%s was not found in PATH: install it (Debian/Ubuntu: sudo apt install %s)%s",
        name, name, extra);
  }
  return path;
}

/* Checks what @method needs and sets up tool path or X connection. */
static gboolean
prepare_method (GstTextInjectSink *self, GstTextInjectMethod method, const gchar *display,
    GError **error)
{
  switch (method) {
    case GST_TEXT_INJECT_METHOD_WTYPE:
      if (!env_set ("WAYLAND_DISPLAY")) {
        g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_NO_DISPLAY,
            "method wtype needs a Wayland session, but WAYLAND_DISPLAY is not set (for a "
            "systemd --user service: systemctl --user import-environment WAYLAND_DISPLAY)");
        return FALSE;
      }
      self->tool = find_tool ("wtype", error);
      return self->tool != NULL;
    case GST_TEXT_INJECT_METHOD_YDOTOOL:
      self->tool = find_tool ("ydotool", error);
      return self->tool != NULL;
    case GST_TEXT_INJECT_METHOD_XTEST:{
      GError *x_error = NULL;
      self->x11 = textinject_x11_open (display, &x_error);
      if (g_error_matches (x_error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_NO_DISPLAY)
          && !(display && *display) && !env_set ("DISPLAY"))
        g_prefix_error (&x_error, "method xtest needs an X11 session: ");
      if (x_error)
        g_propagate_error (error, x_error);
      return self->x11 != NULL;
    }
    case GST_TEXT_INJECT_METHOD_STDOUT: {
      /* A closed fd 1 may already have been reused by a read-only open (a plugin, a model
       * file) by the time the sink starts: refuse anything that is not open for writing. */
      struct stat st;
      const int flags = fcntl (STDOUT_FILENO, F_GETFL);
      if (fstat (STDOUT_FILENO, &st) != 0 || flags < 0 || (flags & O_ACCMODE) == O_RDONLY) {
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED,
            "method stdout: standard output is closed or not open for writing");
        return FALSE;
      }
      self->stdout_dev = st.st_dev;
      self->stdout_ino = st.st_ino;
      return TRUE;
    }
    case GST_TEXT_INJECT_METHOD_AUTO:
      break;
  }
  g_return_val_if_reached (FALSE);
}

/* Falls back to ydotool after @first failed. When ydotool is missing too, the error says
 * both, since either fix works. */
static GstTextInjectMethod
fall_back_to_ydotool (GstTextInjectSink *self, GError *first, GError **error)
{
  GstTextInjectMethod method = GST_TEXT_INJECT_METHOD_YDOTOOL;

  if (prepare_method (self, method, NULL, NULL)) {
    GST_WARNING_OBJECT (self, "%s; typing with ydotool instead", first->message);
  } else {
    g_set_error (error, first->domain, first->code, "%s; and ydotool, which would do instead, "
        "is not installed (Debian/Ubuntu: sudo apt install ydotool)", first->message);
    method = GST_TEXT_INJECT_METHOD_AUTO;
  }
  g_error_free (first);
  return method;
}

/* Returns the method `auto` stands for in this session, prepared, or AUTO on error. */
static GstTextInjectMethod
choose_auto (GstTextInjectSink *self, const gchar *display, GError **error)
{
  GError *first = NULL;

  if (env_set ("WAYLAND_DISPLAY")) {
    if (desktop_lacks_virtual_keyboard ()) {
      g_set_error (&first, TEXTINJECT_ERROR, TEXTINJECT_ERROR_TOOL_MISSING,
          "the %s compositor has no virtual-keyboard protocol for wtype",
          g_getenv ("XDG_CURRENT_DESKTOP"));
      return fall_back_to_ydotool (self, first, error);
    }
    if (prepare_method (self, GST_TEXT_INJECT_METHOD_WTYPE, NULL, &first))
      return GST_TEXT_INJECT_METHOD_WTYPE;
    return fall_back_to_ydotool (self, first, error);
  }
  if ((display && *display) || env_set ("DISPLAY")) {
    if (prepare_method (self, GST_TEXT_INJECT_METHOD_XTEST, display, &first))
      return GST_TEXT_INJECT_METHOD_XTEST;
    return fall_back_to_ydotool (self, first, error);
  }
  g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_NO_DISPLAY,
      "no display to type into: neither WAYLAND_DISPLAY nor DISPLAY is set (a systemd --user "
      "service needs: systemctl --user import-environment WAYLAND_DISPLAY DISPLAY); use "
      "method=ydotool to type without a display, or method=stdout to print");
  return GST_TEXT_INJECT_METHOD_AUTO;
}

/* ---------------------------------------------------------------------------------------------
 * Composing what to type
 */

/* Characters that end a word and so take no space before them. */
static gboolean
attaches_to_previous (gunichar c)
{
  switch (g_unichar_type (c)) {
    case G_UNICODE_CLOSE_PUNCTUATION:
    case G_UNICODE_FINAL_PUNCTUATION:
      return TRUE;
    default:
      return c == ',' || c == '.' || c == ';' || c == ':' || c == '!' || c == '?'
          || c == '%' || c == 0x2026 /* … */ ;
  }
}

/* What to type for @segment, or NULL when it holds no text. *@ends_open says whether the next
 * text needs a space in front. */
static gchar *
compose_text (const gchar *segment, GstTextInjectAppend append, gboolean need_separator,
    gboolean *ends_open)
{
  gchar *body = g_strstrip (g_strdup (segment));
  GString *out;

  if (!*body) {
    g_free (body);
    return NULL;
  }
  out = g_string_new (NULL);
  if (need_separator && !attaches_to_previous (g_utf8_get_char (body)))
    g_string_append_c (out, ' ');
  g_string_append (out, body);
  if (append == GST_TEXT_INJECT_APPEND_SPACE)
    g_string_append_c (out, ' ');
  else if (append == GST_TEXT_INJECT_APPEND_NEWLINE)
    g_string_append_c (out, '\n');
  *ends_open = append == GST_TEXT_INJECT_APPEND_NONE;
  g_free (body);
  return g_string_free (out, FALSE);
}

/* ---------------------------------------------------------------------------------------------
 * Typing
 */

static guint
tool_timeout (guint base_ms, const gchar *text)
{
  guint64 ms = base_ms + (guint64) TIMEOUT_PER_CHAR_MS * g_utf8_strlen (text, -1);
  return (guint) MIN (ms, G_MAXUINT);
}

/* wtype turns "\n" into a Linefeed keysym, which many applications ignore; a line break is
 * therefore typed as its own `wtype -k Return`. */
static gboolean
type_wtype (GstTextInjectSink *self, const gchar *text, guint timeout_ms,
    GCancellable *cancellable, GError **error)
{
  gchar **lines = g_strsplit (text, "\n", -1);
  gboolean ok = TRUE;

  for (guint i = 0; lines[i] && ok; i++) {
    if (i > 0) {
      const gchar *argv[] = { self->tool, "-k", "Return", NULL };
      ok = textinject_spawn_run (argv, NULL, timeout_ms, cancellable, NULL, error);
    }
    if (ok && *lines[i]) {
      /* `--` ends wtype's options: a text starting with '-' is still typed. */
      const gchar *argv[] = { self->tool, "--", lines[i], NULL };
      ok = textinject_spawn_run (argv, NULL, tool_timeout (timeout_ms, lines[i]), cancellable,
          NULL, error);
    }
  }
  g_strfreev (lines);
  return ok;
}

static gboolean
is_ascii (const gchar *text)
{
  for (const guchar *p = (const guchar *) text; *p; p++)
    if (*p >= 0x80)
      return FALSE;
  return TRUE;
}

/* ydotool maps bytes to US-layout keys, so anything outside ASCII would stop it mid-text
 * (0.1.x) or type garbage (1.x). Transliterating keeps the words readable. */
static gboolean
type_ydotool (GstTextInjectSink *self, const gchar *text, guint timeout_ms,
    GCancellable *cancellable, GError **error)
{
  const gchar *argv[] = { self->tool, "type", "--file", "-", NULL };
  gchar *ascii = NULL, *output = NULL;
  gboolean ok;

  if (!is_ascii (text)) {
    ascii = g_str_to_ascii (text, "C");
    if (!self->ascii_warned) {
      GST_ELEMENT_WARNING (self, RESOURCE, WRITE,
          ("ydotool can only type ASCII: non-ASCII characters are transliterated "
              "(use method wtype or xtest to type them)"), ("'%s' typed as '%s'", text, ascii));
      self->ascii_warned = TRUE;
    }
  }
  ok = textinject_spawn_run (argv, ascii ? ascii : text, tool_timeout (timeout_ms, text),
      cancellable, &output, error);
  /* ydotool 0.1.x reports some failures (e.g. no uinput access) with exit status 0. */
  if (ok && output && *output)
    GST_WARNING_OBJECT (self, "ydotool said: %s", output);
  g_free (output);
  g_free (ascii);
  return ok;
}

static gboolean
type_stdout (GstTextInjectSink *self, const gchar *text, GError **error)
{
  struct stat st;
  if (fstat (STDOUT_FILENO, &st) != 0 || st.st_dev != self->stdout_dev || st.st_ino != self->stdout_ino) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED,
        "method stdout: standard output was closed since the sink started%s; not writing into "
        "whatever now holds its descriptor", fstat (STDOUT_FILENO, &st) == 0 ? " and its descriptor reused" : "");
    return FALSE;
  }
  if (fputs (text, stdout) < 0 || fflush (stdout) != 0) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot write to standard output");
    return FALSE;
  }
  return TRUE;
}

static gboolean
type_text (GstTextInjectSink *self, GstTextInjectMethod method, const gchar *text,
    guint timeout_ms, GCancellable *cancellable, GError **error)
{
  switch (method) {
    case GST_TEXT_INJECT_METHOD_WTYPE:
      return type_wtype (self, text, timeout_ms, cancellable, error);
    case GST_TEXT_INJECT_METHOD_YDOTOOL:
      return type_ydotool (self, text, timeout_ms, cancellable, error);
    case GST_TEXT_INJECT_METHOD_XTEST:
      return textinject_x11_type (self->x11, text, error);
    case GST_TEXT_INJECT_METHOD_STDOUT:
      return type_stdout (self, text, error);
    case GST_TEXT_INJECT_METHOD_AUTO:
      break;
  }
  g_return_val_if_reached (FALSE);
}

/* Types @text with the active method; errors other than a cancellation are posted, and make
 * the element refuse further text. */
static void
type_one (GstTextInjectSink *self, const gchar *text, GCancellable *cancellable)
{
  GstTextInjectMethod method;
  GError *error = NULL;
  guint timeout_ms;

  /* Queued before a flush: dropped, like a tool the flush killed. */
  if (g_cancellable_is_cancelled (cancellable))
    return;
  GST_OBJECT_LOCK (self);
  method = self->active;
  timeout_ms = self->timeout_ms;
  GST_OBJECT_UNLOCK (self);

  GST_DEBUG_OBJECT (self, "typing '%s' with %s", text, method_nick (method));
  if (type_text (self, method, text, timeout_ms, cancellable, &error))
    return;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
    GST_DEBUG_OBJECT (self, "typing stopped (flush or state change)");
  } else {
    /* Refuse text before anyone hears of the error, so nothing slips in after it. */
    g_mutex_lock (&self->lock);
    self->failed = TRUE;
    g_queue_clear_full (&self->pending, g_free);
    g_mutex_unlock (&self->lock);
    post_error (self, method, error);
  }
  g_error_free (error);
}

/* The typist: types queued texts in order, on its own thread, so that a tool taking its time
 * (ydotool paces keys at 12 ms) never holds up the streaming thread, and with it the capture
 * of audio upstream. */
static gpointer
typist_main (gpointer data)
{
  GstTextInjectSink *self = data;

  g_mutex_lock (&self->lock);
  for (;;) {
    gchar *text;
    GCancellable *cancellable;

    while (!self->quit && g_queue_is_empty (&self->pending))
      g_cond_wait (&self->cond, &self->lock);
    if (self->quit)
      break;
    text = g_queue_pop_head (&self->pending);
    cancellable = g_object_ref (self->cancellable);
    self->busy = TRUE;
    g_mutex_unlock (&self->lock);

    type_one (self, text, cancellable);
    g_object_unref (cancellable);
    g_free (text);

    g_mutex_lock (&self->lock);
    self->busy = FALSE;
    g_cond_broadcast (&self->cond);
  }
  g_mutex_unlock (&self->lock);
  return NULL;
}

/* Blocks until everything queued is typed (EOS means "all typed"), unless flushing or failed. */
static void
wait_until_typed (GstTextInjectSink *self)
{
  g_mutex_lock (&self->lock);
  while ((self->busy || !g_queue_is_empty (&self->pending)) && !self->flushing && !self->failed)
    g_cond_wait (&self->cond, &self->lock);
  g_mutex_unlock (&self->lock);
}

static void
typist_start (GstTextInjectSink *self)
{
  g_mutex_lock (&self->lock);
  self->quit = self->failed = self->flushing = self->busy = FALSE;
  if (g_cancellable_is_cancelled (self->cancellable)) {
    g_object_unref (self->cancellable);
    self->cancellable = g_cancellable_new ();
  }
  g_mutex_unlock (&self->lock);
  self->typist = g_thread_new ("textinjectsink", typist_main, self);
}

/* Stops the typist; text not typed yet is dropped and a running tool killed. */
static void
typist_stop (GstTextInjectSink *self)
{
  if (!self->typist)
    return;
  g_mutex_lock (&self->lock);
  self->quit = TRUE;
  g_cancellable_cancel (self->cancellable);
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
  g_thread_join (self->typist);
  self->typist = NULL;
  g_queue_clear_full (&self->pending, g_free);
}

static gchar *
buffer_text (GstBuffer *buffer)
{
  GstMapInfo map;
  gchar *text;

  if (!gst_buffer_map (buffer, &map, GST_MAP_READ))
    return NULL;
  /* Invalid bytes become U+FFFD rather than reaching a tool that may choke on them. */
  text = map.size ? g_utf8_make_valid ((const gchar *) map.data, map.size) : g_strdup ("");
  gst_buffer_unmap (buffer, &map);
  return text;
}

/* Queues the text for the typist and returns at once. */
static GstFlowReturn
gst_text_inject_sink_render (GstBaseSink *sink, GstBuffer *buffer)
{
  GstTextInjectSink *self = GST_TEXT_INJECT_SINK (sink);
  GstTextInjectAppend append;
  gboolean ends_open = FALSE, failed;
  gchar *text, *typed;

  g_mutex_lock (&self->lock);
  failed = self->failed;
  g_mutex_unlock (&self->lock);
  if (failed)
    return GST_FLOW_ERROR;      /* the typist has posted the error */

  text = buffer_text (buffer);
  if (!text) {
    GST_ELEMENT_ERROR (self, RESOURCE, READ, (NULL), ("cannot map the text buffer"));
    return GST_FLOW_ERROR;
  }
  GST_OBJECT_LOCK (self);
  append = self->append;
  GST_OBJECT_UNLOCK (self);

  typed = compose_text (text, append, self->need_separator, &ends_open);
  g_free (text);
  if (!typed)
    return GST_FLOW_OK;
  self->need_separator = ends_open;

  g_mutex_lock (&self->lock);
  g_queue_push_tail (&self->pending, typed);
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
  return GST_FLOW_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Start, stop, events, unlock
 */

static gboolean
gst_text_inject_sink_start (GstBaseSink *sink)
{
  GstTextInjectSink *self = GST_TEXT_INJECT_SINK (sink);
  GstTextInjectMethod method, active;
  GError *error = NULL;
  gchar *display;

  GST_OBJECT_LOCK (self);
  method = self->method;
  display = g_strdup (self->display);
  GST_OBJECT_UNLOCK (self);

  self->need_separator = FALSE;
  self->ascii_warned = FALSE;
  if (method == GST_TEXT_INJECT_METHOD_AUTO)
    active = choose_auto (self, display, &error);
  else
    active = prepare_method (self, method, display, &error) ? method : GST_TEXT_INJECT_METHOD_AUTO;
  g_free (display);

  if (error) {
    post_error (self, method, error);
    g_error_free (error);
    return FALSE;
  }
  GST_INFO_OBJECT (self, "typing with %s%s%s", method_nick (active),
      self->tool ? " at " : "", self->tool ? self->tool : "");
  GST_OBJECT_LOCK (self);
  self->active = active;
  GST_OBJECT_UNLOCK (self);
  g_object_notify (G_OBJECT (self), "active-method");
  typist_start (self);
  return TRUE;
}

static gboolean
gst_text_inject_sink_stop (GstBaseSink *sink)
{
  GstTextInjectSink *self = GST_TEXT_INJECT_SINK (sink);

  typist_stop (self);
  g_clear_pointer (&self->x11, textinject_x11_close);
  g_clear_pointer (&self->tool, g_free);
  GST_OBJECT_LOCK (self);
  self->active = GST_TEXT_INJECT_METHOD_AUTO;
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static gboolean
gst_text_inject_sink_event (GstBaseSink *sink, GstEvent *event)
{
  GstTextInjectSink *self = GST_TEXT_INJECT_SINK (sink);

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_EOS:
      /* EOS reaches the application once everything is typed. */
      wait_until_typed (self);
      break;
    case GST_EVENT_FLUSH_STOP:
      g_mutex_lock (&self->lock);
      g_queue_clear_full (&self->pending, g_free);
      g_mutex_unlock (&self->lock);
      self->need_separator = FALSE;
      break;
    case GST_EVENT_STREAM_START:
      /* A new stream begins a new run of text. */
      self->need_separator = FALSE;
      break;
    default:
      break;
  }
  return GST_BASE_SINK_CLASS (parent_class)->event (sink, event);
}

/* Kills a running tool and wakes an EOS wait, so a flush or state change never waits. */
static gboolean
gst_text_inject_sink_unlock (GstBaseSink *sink)
{
  GstTextInjectSink *self = GST_TEXT_INJECT_SINK (sink);

  g_mutex_lock (&self->lock);
  self->flushing = TRUE;
  g_cancellable_cancel (self->cancellable);
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
  return TRUE;
}

static gboolean
gst_text_inject_sink_unlock_stop (GstBaseSink *sink)
{
  GstTextInjectSink *self = GST_TEXT_INJECT_SINK (sink);

  g_mutex_lock (&self->lock);
  self->flushing = FALSE;
  g_object_unref (self->cancellable);
  self->cancellable = g_cancellable_new ();
  g_mutex_unlock (&self->lock);
  return TRUE;
}

/* ---------------------------------------------------------------------------------------------
 * GObject
 */

static void
gst_text_inject_sink_set_property (GObject *object, guint prop_id, const GValue *value,
    GParamSpec *pspec)
{
  GstTextInjectSink *self = GST_TEXT_INJECT_SINK (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_METHOD:
      self->method = g_value_get_enum (value);
      break;
    case PROP_APPEND:
      self->append = g_value_get_enum (value);
      break;
    case PROP_DISPLAY:
      g_free (self->display);
      self->display = g_value_dup_string (value);
      break;
    case PROP_TIMEOUT:
      self->timeout_ms = g_value_get_uint (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_text_inject_sink_get_property (GObject *object, guint prop_id, GValue *value,
    GParamSpec *pspec)
{
  GstTextInjectSink *self = GST_TEXT_INJECT_SINK (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_METHOD:
      g_value_set_enum (value, self->method);
      break;
    case PROP_ACTIVE_METHOD:
      g_value_set_enum (value, self->active);
      break;
    case PROP_APPEND:
      g_value_set_enum (value, self->append);
      break;
    case PROP_DISPLAY:
      g_value_set_string (value, self->display);
      break;
    case PROP_TIMEOUT:
      g_value_set_uint (value, self->timeout_ms);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_text_inject_sink_finalize (GObject *object)
{
  GstTextInjectSink *self = GST_TEXT_INJECT_SINK (object);

  g_free (self->display);
  g_free (self->tool);
  textinject_x11_close (self->x11);
  g_object_unref (self->cancellable);
  g_mutex_clear (&self->lock);
  g_cond_clear (&self->cond);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_text_inject_sink_init (GstTextInjectSink *self)
{
  self->method = DEFAULT_METHOD;
  self->active = GST_TEXT_INJECT_METHOD_AUTO;
  self->append = DEFAULT_APPEND;
  self->timeout_ms = DEFAULT_TIMEOUT_MS;
  self->cancellable = g_cancellable_new ();
  g_mutex_init (&self->lock);
  g_cond_init (&self->cond);
  g_queue_init (&self->pending);
  /* Text is typed the moment it arrives: waiting for the clock would only delay it. */
  gst_base_sink_set_sync (GST_BASE_SINK (self), FALSE);
}

static void
install_properties (GObjectClass *gobject_class)
{
  g_object_class_install_property (gobject_class, PROP_METHOD,
      g_param_spec_enum ("method", "Method",
          "How to type: wtype (Wayland), ydotool (uinput), xtest (X11), stdout, or auto to "
          "pick one for this session when the element starts",
          GST_TYPE_TEXT_INJECT_METHOD, DEFAULT_METHOD,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_ACTIVE_METHOD,
      g_param_spec_enum ("active-method", "Active method",
          "The method in use (what auto chose); auto while the element is not started",
          GST_TYPE_TEXT_INJECT_METHOD, GST_TEXT_INJECT_METHOD_AUTO,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_APPEND,
      g_param_spec_enum ("append", "Append",
          "What to type after each text: none (then a space goes between consecutive texts), "
          "a space, or a newline",
          GST_TYPE_TEXT_INJECT_APPEND, DEFAULT_APPEND,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_DISPLAY,
      g_param_spec_string ("display", "X display",
          "X display for method xtest (and for auto's choice); NULL uses $DISPLAY", NULL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_TIMEOUT,
      g_param_spec_uint ("timeout", "Timeout",
          "Milliseconds a typing tool may run for one text, plus 50 ms per character, before it "
          "is killed and the element fails", MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, DEFAULT_TIMEOUT_MS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
}

static void
gst_text_inject_sink_class_init (GstTextInjectSinkClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSinkClass *sink_class = GST_BASE_SINK_CLASS (klass);

  gobject_class->set_property = gst_text_inject_sink_set_property;
  gobject_class->get_property = gst_text_inject_sink_get_property;
  gobject_class->finalize = gst_text_inject_sink_finalize;
  install_properties (gobject_class);

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_set_static_metadata (element_class, "Text injector", "Sink/Text",
      "Types text into the focused window (wtype, ydotool or XTEST), e.g. for dictation",
      "gst-canary developers");

  sink_class->start = GST_DEBUG_FUNCPTR (gst_text_inject_sink_start);
  sink_class->stop = GST_DEBUG_FUNCPTR (gst_text_inject_sink_stop);
  sink_class->render = GST_DEBUG_FUNCPTR (gst_text_inject_sink_render);
  sink_class->event = GST_DEBUG_FUNCPTR (gst_text_inject_sink_event);
  sink_class->unlock = GST_DEBUG_FUNCPTR (gst_text_inject_sink_unlock);
  sink_class->unlock_stop = GST_DEBUG_FUNCPTR (gst_text_inject_sink_unlock_stop);

  gst_type_mark_as_plugin_api (GST_TYPE_TEXT_INJECT_METHOD, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_TEXT_INJECT_APPEND, 0);
  GST_DEBUG_CATEGORY_INIT (text_inject_sink_debug, "textinjectsink", 0,
      "Types text into the focused window");
}
