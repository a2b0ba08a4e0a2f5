/* gst-canary — textinjectsink helpers: typing into the focused X11 window with XTEST.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * XTEST sends fake key presses by keycode, so each character has to be found on a key first.
 * Characters on level 1 or 2 of some key (plain or with Shift) are typed with that key.
 * Anything else (é on a US layout, —, ¿) is typed the standard way: a spare keycode (one with
 * no keysyms) is mapped to the character's keysym for the moment (XChangeKeyboardMapping),
 * pressed, and later given back its old keysyms.
 *
 * "Later" matters. Clients see the change through a MappingNotify that the server sends before
 * the key event, but most fetch the new keysyms only when they handle it, which a busy client
 * does well after we sent the key. Restore the keycode (or map it to another character) before
 * that and the client types the wrong keysym, or nothing: the classic xdotool bug. So a
 * borrowed keycode keeps its character for GRACE_US after its last press: it is restored at
 * the start of a later text or when the connection closes, and reused within one text only
 * once that time has passed (which costs a wait only when a text needs more distinct unusual
 * characters than there are spare keycodes). Characters typed again soon after are found on
 * their borrowed keycode, with no remapping at all.
 *
 * Keysyms: Latin-1 characters have keysyms equal to their code point; every other character
 * has the Unicode keysym 0x01000000 | code point, which Xlib and toolkits turn back into it. */
#include "build-config.h"

#include "textinject-x11.h"

#if HAVE_XTEST

#include <string.h>

#include <X11/Xlib.h>
#include <X11/keysym.h>
#include <X11/extensions/XTest.h>

/* How long a client may take to look up a key we pressed on a borrowed keycode: it does so
 * only when it gets to the event, which a busy application may do late. Waiting costs nothing
 * in the usual case (texts come seconds apart), so be generous. */
#define GRACE_US (500 * 1000)

/* A keycode mapped to one of our keysyms. */
typedef struct {
  KeyCode code;
  KeySym *original;             /* its keysyms before (per_keycode of them), to restore */
  gint per_keycode;
  gint64 last_press;            /* g_get_monotonic_time () */
} Borrowed;

struct _TextInjectX11 {
  Display *dpy;
  gchar *name;
  gint min_keycode;
  gint max_keycode;
  KeyCode shift;                /* a Shift key, 0 when the map has none */
  gboolean lost;                /* the connection died; Xlib calls must stop */
  GArray *borrowed;             /* Borrowed */
};

/* The core keyboard map, as XGetKeyboardMapping returns it, kept up to date as we remap. */
typedef struct {
  KeySym *syms;
  gint per;                     /* keysyms per keycode */
  gint min;
  gint count;
} Keymap;

typedef struct {
  KeyCode code;
  gboolean shift;
} Stroke;

/* X error traps are process-wide (XSetErrorHandler), so one at a time. */
static GMutex trap_lock;
static gint trapped_error;
static XErrorHandler saved_handler;

gboolean
textinject_x11_available (void)
{
  return TRUE;
}

static gint
trap_handler (Display *dpy, XErrorEvent *event)
{
  trapped_error = event->error_code;
  return 0;
}

/* Protocol errors (a refused keymap change) would otherwise end the process through Xlib's
 * default handler. */
static void
trap_push (void)
{
  g_mutex_lock (&trap_lock);
  trapped_error = 0;
  saved_handler = XSetErrorHandler (trap_handler);
}

static gint
trap_pop (TextInjectX11 *x11)
{
  gint error;

  if (!x11->lost)
    XSync (x11->dpy, False);
  XSetErrorHandler (saved_handler);
  error = trapped_error;
  g_mutex_unlock (&trap_lock);
  return error;
}

/* Called by Xlib instead of exit() when the server goes away: the element reports an error
 * and the application keeps running. */
static void
connection_lost (Display *dpy, void *user_data)
{
  TextInjectX11 *x11 = user_data;
  x11->lost = TRUE;
}

TextInjectX11 *
textinject_x11_open (const gchar *display_name, GError **error)
{
  const gchar *name = display_name && *display_name ? display_name : g_getenv ("DISPLAY");
  gint event_base, error_base, major, minor;
  TextInjectX11 *x11;

  if (!name || !*name) {
    g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_NO_DISPLAY,
        "no X display: DISPLAY is not set");
    return NULL;
  }
  x11 = g_new0 (TextInjectX11, 1);
  x11->name = g_strdup (name);
  x11->borrowed = g_array_new (FALSE, FALSE, sizeof (Borrowed));
  x11->dpy = XOpenDisplay (name);
  if (!x11->dpy) {
    g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_NO_DISPLAY,
        "cannot open X display '%s' (is the X server running, and XAUTHORITY set?)", name);
    textinject_x11_close (x11);
    return NULL;
  }
  XSetIOErrorExitHandler (x11->dpy, connection_lost, x11);
  if (!XTestQueryExtension (x11->dpy, &event_base, &error_base, &major, &minor)) {
    g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_UNSUPPORTED,
        "the X server on '%s' has no XTEST extension", name);
    textinject_x11_close (x11);
    return NULL;
  }
  XDisplayKeycodes (x11->dpy, &x11->min_keycode, &x11->max_keycode);
  x11->shift = XKeysymToKeycode (x11->dpy, XK_Shift_L);
  if (!x11->shift)
    x11->shift = XKeysymToKeycode (x11->dpy, XK_Shift_R);
  return x11;
}

const gchar *
textinject_x11_display_name (TextInjectX11 *x11)
{
  return x11->name;
}

/* ---------------------------------------------------------------------------------------------
 * Borrowed keycodes
 */

/* Waits until clients have had GRACE_US to look up the last press of @slot. */
static void
wait_for_grace (TextInjectX11 *x11, const Borrowed *slot)
{
  gint64 wait = slot->last_press + GRACE_US - g_get_monotonic_time ();

  if (wait > 0 && !x11->lost) {
    XSync (x11->dpy, False);
    g_usleep (wait);
  }
}

static void
restore (TextInjectX11 *x11, Borrowed *slot)
{
  if (!x11->lost)
    XChangeKeyboardMapping (x11->dpy, slot->code, slot->per_keycode, slot->original, 1);
  g_free (slot->original);
}

/* Gives back every borrowed keycode whose grace has passed (all of them with @wait). */
static void
restore_borrowed (TextInjectX11 *x11, gboolean wait)
{
  gint64 now = g_get_monotonic_time ();

  for (guint i = x11->borrowed->len; i-- > 0;) {
    Borrowed *slot = &g_array_index (x11->borrowed, Borrowed, i);
    if (wait)
      wait_for_grace (x11, slot);
    else if (now - slot->last_press < GRACE_US)
      continue;
    restore (x11, slot);
    g_array_remove_index_fast (x11->borrowed, i);
  }
}

void
textinject_x11_close (TextInjectX11 *x11)
{
  if (!x11)
    return;
  if (x11->dpy) {
    trap_push ();
    restore_borrowed (x11, TRUE);
    trap_pop (x11);
    XCloseDisplay (x11->dpy);
  }
  g_array_unref (x11->borrowed);
  g_free (x11->name);
  g_free (x11);
}

/* ---------------------------------------------------------------------------------------------
 * Text → keysyms → strokes
 */

static KeySym
keysym_for (gunichar c)
{
  if (c == '\n')
    return XK_Return;
  if (c == '\t')
    return XK_Tab;
  if (c < 0x20 || (c >= 0x7f && c < 0xa0))
    return NoSymbol;            /* other control characters have nothing to type */
  if (c < 0x100)
    return c;
  return 0x01000000 | c;
}

/* The keysyms to type for @text; "\r\n" and a lone "\r" both end a line once. */
static GArray *
keysyms_of (const gchar *text)
{
  GArray *syms = g_array_new (FALSE, FALSE, sizeof (KeySym));

  for (const gchar *p = text; *p; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);
    KeySym sym;
    if (c == '\r')
      c = p[1] == '\n' ? 0 : '\n';
    sym = c ? keysym_for (c) : NoSymbol;
    if (sym != NoSymbol)
      g_array_append_val (syms, sym);
  }
  return syms;
}

static KeySym *
keymap_row (const Keymap *map, KeyCode code)
{
  return &map->syms[(code - map->min) * map->per];
}

/* A key that gives @sym without modifiers, or else with Shift. Only the first group's two
 * levels count: other levels need modifiers (AltGr) whose keys vary between layouts. */
static gboolean
find_stroke (const Keymap *map, KeySym sym, gboolean have_shift, Stroke *stroke)
{
  gint levels = MIN (map->per, have_shift ? 2 : 1);

  for (gint level = 0; level < levels; level++) {
    for (gint i = 0; i < map->count; i++) {
      if (map->syms[i * map->per + level] == sym) {
        stroke->code = map->min + i;
        stroke->shift = level == 1;
        return TRUE;
      }
    }
  }
  return FALSE;
}

/* A keycode without keysyms, from the top (high keycodes are the ones no keyboard has), or 0. */
static KeyCode
find_empty_keycode (const Keymap *map)
{
  for (gint i = map->count - 1; i >= 0; i--) {
    gboolean empty = TRUE;
    for (gint l = 0; l < map->per && empty; l++)
      empty = map->syms[i * map->per + l] == NoSymbol;
    if (empty)
      return map->min + i;
  }
  return 0;
}

static Borrowed *
least_recently_pressed (TextInjectX11 *x11)
{
  Borrowed *oldest = NULL;

  for (guint i = 0; i < x11->borrowed->len; i++) {
    Borrowed *slot = &g_array_index (x11->borrowed, Borrowed, i);
    if (!oldest || slot->last_press < oldest->last_press)
      oldest = slot;
  }
  return oldest;
}

/* A keycode for @sym: an empty one, else the borrowed one pressed longest ago (after its
 * grace), else, on a map without empty keycodes, the last keycode (restored later too). */
static Borrowed *
take_keycode (TextInjectX11 *x11, const Keymap *map)
{
  Borrowed fresh = { 0, };

  fresh.code = find_empty_keycode (map);
  if (!fresh.code && x11->borrowed->len > 0) {
    Borrowed *slot = least_recently_pressed (x11);
    wait_for_grace (x11, slot);
    return slot;
  }
  if (!fresh.code)
    fresh.code = map->min + map->count - 1;
  fresh.per_keycode = map->per;
  fresh.original = g_memdup2 (keymap_row (map, fresh.code), map->per * sizeof (KeySym));
  g_array_append_val (x11->borrowed, fresh);
  return &g_array_index (x11->borrowed, Borrowed, x11->borrowed->len - 1);
}

/* Maps a keycode to @sym (on both levels, so a Shift the user holds changes nothing). */
static KeyCode
borrow_keycode (TextInjectX11 *x11, Keymap *map, KeySym sym)
{
  Borrowed *slot = take_keycode (x11, map);
  KeySym *row = keymap_row (map, slot->code);
  KeySym pair[2] = { sym, sym };

  XChangeKeyboardMapping (x11->dpy, slot->code, 2, pair, 1);
  for (gint l = 0; l < map->per; l++)
    row[l] = l < 2 ? sym : NoSymbol;
  return slot->code;
}

static void
note_press (TextInjectX11 *x11, KeyCode code)
{
  for (guint i = 0; i < x11->borrowed->len; i++) {
    Borrowed *slot = &g_array_index (x11->borrowed, Borrowed, i);
    if (slot->code == code)
      slot->last_press = g_get_monotonic_time ();
  }
}

static void
press (TextInjectX11 *x11, Stroke stroke)
{
  if (stroke.shift)
    XTestFakeKeyEvent (x11->dpy, x11->shift, True, CurrentTime);
  XTestFakeKeyEvent (x11->dpy, stroke.code, True, CurrentTime);
  XTestFakeKeyEvent (x11->dpy, stroke.code, False, CurrentTime);
  if (stroke.shift)
    XTestFakeKeyEvent (x11->dpy, x11->shift, False, CurrentTime);
  note_press (x11, stroke.code);
}

static void
type_keysyms (TextInjectX11 *x11, const GArray *syms)
{
  Keymap map;

  /* Read the map each time: the user may have switched layouts since the last text. */
  map.min = x11->min_keycode;
  map.count = x11->max_keycode - x11->min_keycode + 1;
  map.syms = XGetKeyboardMapping (x11->dpy, map.min, map.count, &map.per);
  if (!map.syms)
    return;
  for (guint i = 0; i < syms->len && !x11->lost; i++) {
    KeySym sym = g_array_index (syms, KeySym, i);
    Stroke stroke = { 0, FALSE };
    if (!find_stroke (&map, sym, x11->shift != 0, &stroke))
      stroke.code = borrow_keycode (x11, &map, sym);
    press (x11, stroke);
  }
  XFree (map.syms);
}

gboolean
textinject_x11_type (TextInjectX11 *x11, const gchar *text, GError **error)
{
  GArray *syms = keysyms_of (text);
  gint x_error = 0;

  if (!x11->lost && syms->len > 0) {
    trap_push ();
    restore_borrowed (x11, FALSE);
    type_keysyms (x11, syms);
    x_error = trap_pop (x11);
  }
  g_array_unref (syms);

  if (x11->lost) {
    g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_CONNECTION_LOST,
        "lost the connection to the X server on '%s'", x11->name);
    return FALSE;
  }
  if (x_error) {
    char what[128];
    XGetErrorText (x11->dpy, x_error, what, sizeof (what));
    g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_TOOL_FAILED,
        "the X server on '%s' refused a key event or keymap change: %s", x11->name, what);
    return FALSE;
  }
  return TRUE;
}

#else /* !HAVE_XTEST */

struct _TextInjectX11 {
  gint unused;
};

gboolean
textinject_x11_available (void)
{
  return FALSE;
}

TextInjectX11 *
textinject_x11_open (const gchar *display_name, GError **error)
{
  g_set_error (error, TEXTINJECT_ERROR, TEXTINJECT_ERROR_NOT_BUILT,
      "method xtest is not available: this plugin was built without libXtst/libX11 (install "
      "libxtst-dev and libx11-dev, then rebuild gst-canary)");
  return NULL;
}

gboolean
textinject_x11_type (TextInjectX11 *x11, const gchar *text, GError **error)
{
  g_return_val_if_reached (FALSE);
}

const gchar *
textinject_x11_display_name (TextInjectX11 *x11)
{
  return NULL;
}

void
textinject_x11_close (TextInjectX11 *x11)
{
}

#endif /* HAVE_XTEST */
