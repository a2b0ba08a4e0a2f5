/* gst-canary — canary-dictate: the listening gate in front of the transcriber.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

typedef struct _DictateGate DictateGate;

/* One listening session: from the buffer where the gate opened to the one where it closed. */
typedef struct {
  guint64 samples;              /* audio samples that went to the transcriber */
  GstClockTime start;           /* PTS of its first buffer */
  GstClockTime end;             /* end of its last buffer */
  GstClockTime missing;         /* holes between its buffers (audio lost before the gate) */
} DictateSession;

/* Called on the streaming thread when a session ends (the gate closed). */
typedef void (*DictateSessionFunc) (const DictateSession *session, gpointer user_data);

/* Controls @valve (still in NULL or READY), which must feed canarytranscribe directly. The
 * gate starts closed. */
DictateGate *dictate_gate_new (GstElement *valve, DictateSessionFunc on_session_end,
    gpointer user_data);

/* Asks for the gate to open or close; callable from any thread (a signal handler's main loop).
 * The change takes effect at the next audio buffer, on the streaming thread, so each buffer is
 * wholly in or out. On closing, the transcriber is told to finish the audio it holds at once. */
void dictate_gate_set_open (DictateGate *gate, gboolean open);

/* Flips the requested state and returns the new one. */
gboolean dictate_gate_toggle (DictateGate *gate);

void dictate_gate_free (DictateGate *gate);

G_END_DECLS
