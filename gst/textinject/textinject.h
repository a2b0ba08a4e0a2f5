/* gst-canary — textinjectsink helpers: errors shared by the typing back ends.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define TEXTINJECT_ERROR (textinject_error_quark ())
GQuark textinject_error_quark (void);

typedef enum {
  TEXTINJECT_ERROR_NO_DISPLAY,          /* DISPLAY / WAYLAND_DISPLAY unset or unreachable */
  TEXTINJECT_ERROR_NOT_BUILT,           /* method compiled out (no libXtst at build time) */
  TEXTINJECT_ERROR_UNSUPPORTED,         /* the server lacks what the method needs (XTEST) */
  TEXTINJECT_ERROR_TOOL_MISSING,        /* wtype / ydotool not on PATH */
  TEXTINJECT_ERROR_TOOL_FAILED,         /* the tool ran and reported failure */
  TEXTINJECT_ERROR_TIMED_OUT,           /* the tool ran past its time and was killed */
  TEXTINJECT_ERROR_CONNECTION_LOST,     /* the X server went away */
} TextInjectError;

G_END_DECLS
