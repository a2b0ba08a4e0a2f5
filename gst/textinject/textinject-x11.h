/* gst-canary — textinjectsink helpers: typing into the focused X11 window with XTEST.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

#include "textinject.h"

G_BEGIN_DECLS

typedef struct _TextInjectX11 TextInjectX11;

/* Whether this build has the XTEST back end (libX11 and libXtst were found at build time). */
gboolean textinject_x11_available (void);

/* Connects to @display_name, or to $DISPLAY when it is NULL or empty. Errors:
 * TEXTINJECT_ERROR_NOT_BUILT, _NO_DISPLAY (unset or cannot connect), _UNSUPPORTED (no XTEST). */
TextInjectX11 *textinject_x11_open (const gchar *display_name, GError **error);

/* Types UTF-8 @text into the window that has the keyboard focus. Characters the keyboard map
 * lacks are typed through a spare keycode that is remapped for the moment and then restored.
 * Newline and tab become Return and Tab; other control characters are skipped. */
gboolean textinject_x11_type (TextInjectX11 *x11, const gchar *text, GError **error);

/* The display name in use (for messages). */
const gchar *textinject_x11_display_name (TextInjectX11 *x11);

void textinject_x11_close (TextInjectX11 *x11);

G_END_DECLS
