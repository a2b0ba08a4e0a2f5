/* gst-canary tests — helpers shared by the element test programs (elementutil.c).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/audio/audio.h>
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>

G_BEGIN_DECLS

#define RATE 16000
#define S16_CAPS "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved"
#define F32_CAPS "audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved"
#define SAMPLES_TO_TIME(n) gst_util_uint64_scale_int ((n), GST_SECOND, RATE)
#define CHUNK 1600              /* 100 ms input buffers, like a capture source */

/* One piece of output: a text buffer, or a GAP event (text NULL). */
typedef struct {
  GstClockTime pts, duration;
  gchar *text;
} Piece;

/* Fails the test, naming the fixture, when @path is missing. */
void require_file (const gchar *path);

/* 16 kHz mono 16-bit PCM from tests/fixtures/audio. */
gint16 *load_wav (const gchar *name, gsize *n_samples);

/* @n samples of speech: the fixture clips one after another, as often as needed. */
gint16 *make_speech (gsize n);

/* The system's plugin directory: the test environment hides it (GST_PLUGIN_SYSTEM_PATH_1_0
 * is empty), so stock elements are loaded from there by hand. */
const gchar *system_plugin_dir (void);

/* Loads a plugin of the system installation (the test environment hides them). */
gboolean load_system_plugin (const gchar *name);

/* Takes @e, gives it a bus, and starts it in a harness with @caps. */
GstHarness *start_harness (GstElement *e, const gchar *caps, GstBus **bus);

/* Messages left on @bus hold the element, which holds @bus: drop them to break the cycle. */
void teardown_with_bus (GstHarness *h, GstBus *bus);

/* A buffer of @n samples, as S16LE or (with @f32) F32LE. */
GstBuffer *make_audio_buffer (const gint16 *s, gsize n, gboolean f32);

/* Pushes @n samples as 100 ms buffers starting at @base; the first may carry DISCONT. */
GstFlowReturn push_audio (GstHarness *h, const gint16 *s, gsize n, GstClockTime base, gboolean f32,
    gboolean discont);

/* Pushes EOS, which must be accepted. */
void push_eos (GstHarness *h);

/* Orders pieces by PTS (g_array_sort). */
gint piece_cmp (gconstpointer a, gconstpointer b);

/* Everything the element pushed so far, in timeline order. */
GArray *collect_output (GstHarness *h);

/* How many of @pieces are text buffers. */
guint count_text (GArray *pieces);

/* Checks that @pieces tile [@start, @end) exactly: no hole, no overlap. */
void assert_tiles (GArray *pieces, GstClockTime start, GstClockTime end);

G_END_DECLS
