/* gst-canary — test helper: an X client that records the text typed into it.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: xrecorder OUTPUT READY
 *        xrecorder --keymap OUTPUT
 *
 * Opens a window on $DISPLAY, gives it the keyboard focus, creates READY once the focus has
 * arrived, then appends the UTF-8 text of every key press to OUTPUT, the way an application
 * reads it: through an input context and Xutf8LookupString, after following MappingNotify
 * events (which is how remapped keycodes become visible to a client). Return gives "\n".
 * Runs until killed or until the X server goes away.
 *
 * With --keymap it writes the core keyboard map (one line per keycode) and exits, so a test
 * can check that a typing client put back every keycode it borrowed. */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <X11/Xlib.h>
#include <X11/Xutil.h>
#include <X11/keysym.h>

static Window
open_focused_window (Display *dpy)
{
  Window win = XCreateSimpleWindow (dpy, DefaultRootWindow (dpy), 0, 0, 200, 100, 0, 0, 0);
  XEvent ev;

  XSelectInput (dpy, win, KeyPressMask | StructureNotifyMask | FocusChangeMask);
  XMapRaised (dpy, win);
  do
    XNextEvent (dpy, &ev);
  while (ev.type != MapNotify);
  XSetInputFocus (dpy, win, RevertToParent, CurrentTime);
  do
    XNextEvent (dpy, &ev);
  while (ev.type != FocusIn);
  return win;
}

static XIC
open_input_context (Display *dpy, Window win)
{
  XIM im;

  /* No input method server: the built-in one converts keysyms to text. */
  XSetLocaleModifiers ("@im=none");
  im = XOpenIM (dpy, NULL, NULL, NULL);
  if (!im)
    return NULL;
  return XCreateIC (im, XNInputStyle, XIMPreeditNothing | XIMStatusNothing,
      XNClientWindow, win, XNFocusWindow, win, NULL);
}

/* Does what a running application did long before anyone types into it: look a key up. Xlib
 * loads the keyboard map, and asks the server for notice of its changes, only on the first
 * lookup; XSync sends that request. Without this, a keymap change made while the first typed
 * keys are still queued here would go unnoticed, which no real client would suffer. */
static void
warm_up (Display *dpy, Window win, XIC ic)
{
  XKeyEvent key = { .type = KeyPress, .display = dpy, .window = win,
    .root = DefaultRootWindow (dpy), .same_screen = True,
    .keycode = XKeysymToKeycode (dpy, XK_a) };
  char buf[16];
  KeySym sym;
  Status status;

  Xutf8LookupString (ic, &key, buf, sizeof (buf), &sym, &status);
  XSync (dpy, False);
}

static void
mark_ready (const char *path)
{
  FILE *f = fopen (path, "w");
  if (!f) {
    perror (path);
    exit (1);
  }
  fclose (f);
}

/* The text one key press produces, written to @out. */
static void
record_key (XIC ic, XKeyEvent *key, FILE *out)
{
  char buf[64];
  KeySym sym = NoSymbol;
  Status status = 0;
  int n = Xutf8LookupString (ic, key, buf, sizeof (buf) - 1, &sym, &status);

  if (sym == XK_Return || sym == XK_KP_Enter) {
    fputc ('\n', out);
  } else if (n > 0 && (status == XLookupChars || status == XLookupBoth)) {
    fwrite (buf, 1, (size_t) n, out);
  }
  fflush (out);
}

static int
dump_keymap (Display *dpy, const char *path)
{
  int min, max, per;
  KeySym *syms;
  FILE *out = fopen (path, "w");

  if (!out) {
    perror (path);
    return 1;
  }
  XDisplayKeycodes (dpy, &min, &max);
  syms = XGetKeyboardMapping (dpy, (KeyCode) min, max - min + 1, &per);
  for (int k = min; k <= max; k++) {
    fprintf (out, "%d:", k);
    for (int l = 0; l < per; l++)
      fprintf (out, " %lx", (unsigned long) syms[(k - min) * per + l]);
    fputc ('\n', out);
  }
  XFree (syms);
  return fclose (out) == 0 ? 0 : 1;
}

int
main (int argc, char **argv)
{
  Display *dpy;
  Window win;
  XIC ic;
  FILE *out;

  if (argc != 3) {
    fprintf (stderr, "usage: %s OUTPUT READY | --keymap OUTPUT\n", argv[0]);
    return 2;
  }
  /* Any UTF-8 locale does; C.UTF-8 is always there on glibc. */
  if (!setlocale (LC_ALL, "C.UTF-8") || !XSupportsLocale ()) {
    fprintf (stderr, "xrecorder: no UTF-8 locale support in Xlib\n");
    return 1;
  }
  dpy = XOpenDisplay (NULL);
  if (!dpy) {
    fprintf (stderr, "xrecorder: cannot open display '%s'\n", XDisplayName (NULL));
    return 1;
  }
  if (strcmp (argv[1], "--keymap") == 0)
    return dump_keymap (dpy, argv[2]);
  out = fopen (argv[1], "w");
  if (!out) {
    perror (argv[1]);
    return 1;
  }
  win = open_focused_window (dpy);
  ic = open_input_context (dpy, win);
  if (!ic) {
    fprintf (stderr, "xrecorder: cannot open an input context\n");
    return 1;
  }
  warm_up (dpy, win, ic);
  mark_ready (argv[2]);

  for (;;) {
    XEvent ev;
    XNextEvent (dpy, &ev);
    if (XFilterEvent (&ev, None))
      continue;
    if (ev.type == MappingNotify)
      XRefreshKeyboardMapping (&ev.xmapping);
    else if (ev.type == KeyPress)
      record_key (ic, &ev.xkey, out);
  }
}
