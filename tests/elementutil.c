/* gst-canary tests — helpers shared by the element test programs (test_element.c,
 * test_vad_element.c): fixture audio, harness setup and teardown, pushing audio, and collecting
 * the text buffers and GAP events an element pushed, in timeline order.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "elementutil.h"

#include <dlfcn.h>
#include <string.h>

void
require_file (const gchar *path)
{
  fail_unless (g_file_test (path, G_FILE_TEST_EXISTS),
      "fixture %s is missing (tests/reference/ makes the models and audio)", path);
}

/* 16 kHz mono 16-bit PCM from tests/fixtures/audio. */
gint16 *
load_wav (const gchar *name, gsize *n_samples)
{
  gchar *path = g_build_filename (FIXTURES_DIR, "audio", name, NULL);
  gchar *data = NULL;
  gsize len = 0, pos = 12;
  gint16 *samples = NULL;

  require_file (path);
  fail_unless (g_file_get_contents (path, &data, &len, NULL));
  fail_unless (len > 12 && !memcmp (data, "RIFF", 4) && !memcmp (data + 8, "WAVE", 4));
  while (pos + 8 <= len) {
    guint32 size = GUINT32_FROM_LE (*(guint32 *) (data + pos + 4));
    const gchar *body = data + pos + 8;
    fail_unless (pos + 8 + size <= len);
    if (!memcmp (data + pos, "fmt ", 4)) {
      fail_unless_equals_int (GUINT16_FROM_LE (*(guint16 *) (body + 0)), 1);
      fail_unless_equals_int (GUINT16_FROM_LE (*(guint16 *) (body + 2)), 1);
      fail_unless_equals_int (GUINT32_FROM_LE (*(guint32 *) (body + 4)), RATE);
      fail_unless_equals_int (GUINT16_FROM_LE (*(guint16 *) (body + 14)), 16);
    } else if (!memcmp (data + pos, "data", 4)) {
      *n_samples = size / 2;
      samples = g_new (gint16, *n_samples);
      for (gsize i = 0; i < *n_samples; i++)
        samples[i] = GINT16_FROM_LE (((const gint16 *) body)[i]);
    }
    pos += 8 + size + (size & 1);
  }
  fail_unless (samples != NULL, "%s has no data chunk", path);
  g_free (data);
  g_free (path);
  return samples;
}

/* @n samples of speech: the fixture clips one after another, as often as needed. */
gint16 *
make_speech (gsize n)
{
  const gchar *clips[] = { "speech13s.wav", "speech10s.wav", "speech4s.wav" };
  gint16 *out = g_new (gint16, n);
  gsize filled = 0;

  for (guint i = 0; filled < n; i = (i + 1) % G_N_ELEMENTS (clips)) {
    gsize len;
    gint16 *clip = load_wav (clips[i], &len);
    gsize take = MIN (len, n - filled);
    memcpy (out + filled, clip, take * sizeof (gint16));
    filled += take;
    g_free (clip);
  }
  return out;
}

/* The system's plugin directory, found from libgstreamer's own location. */
const gchar *
system_plugin_dir (void)
{
  static gchar *dir;
  Dl_info info;

  if (!dir) {
    fail_unless (dladdr ((void *) gst_init, &info) && info.dli_fname);
    gchar *libdir = g_path_get_dirname (info.dli_fname);
    dir = g_build_filename (libdir, "gstreamer-1.0", NULL);
    g_free (libdir);
  }
  return dir;
}

/* Loads a plugin of the system installation (the test environment hides them). */
gboolean
load_system_plugin (const gchar *name)
{
  const gchar *dir = system_plugin_dir ();
  gchar *file = g_strdup_printf ("%s/libgst%s.so", dir, name);
  GstPlugin *plugin = g_file_test (file, G_FILE_TEST_EXISTS) ?
      gst_plugin_load_file (file, NULL) : NULL;
  g_free (file);
  if (!plugin) {
    g_printerr ("SKIP: system plugin '%s' not found in %s\n", name, dir);
    return FALSE;
  }
  gst_object_unref (plugin);
  return TRUE;
}

/* Takes @e, gives it a bus, and starts it in a harness with @caps. */
GstHarness *
start_harness (GstElement *e, const gchar *caps, GstBus **bus)
{
  if (bus) {
    *bus = gst_bus_new ();
    gst_element_set_bus (e, *bus);
  }
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gst_object_unref (e);
  if (caps)
    gst_harness_set_src_caps_str (h, caps);
  return h;
}

/* Messages left on @bus hold the element, which holds @bus: drop them to break the cycle. */
void
teardown_with_bus (GstHarness *h, GstBus *bus)
{
  gst_harness_teardown (h);
  gst_bus_set_flushing (bus, TRUE);
  gst_object_unref (bus);
}

GstBuffer *
make_audio_buffer (const gint16 *s, gsize n, gboolean f32)
{
  GstBuffer *buf;

  if (f32) {
    gfloat *f = g_new (gfloat, n);
    for (gsize i = 0; i < n; i++)
      f[i] = s[i] / 32768.0f;
    buf = gst_buffer_new_wrapped (f, n * sizeof (gfloat));
  } else {
    buf = gst_buffer_new_memdup (s, n * sizeof (gint16));
  }
  return buf;
}

/* Pushes @n samples as 100 ms buffers starting at @base; the first may carry DISCONT. */
GstFlowReturn
push_audio (GstHarness *h, const gint16 *s, gsize n, GstClockTime base, gboolean f32,
    gboolean discont)
{
  GstFlowReturn flow = GST_FLOW_OK;

  for (gsize off = 0; off < n && flow == GST_FLOW_OK; off += CHUNK) {
    gsize m = MIN (CHUNK, n - off);
    GstBuffer *buf = make_audio_buffer (s + off, m, f32);
    GST_BUFFER_PTS (buf) = base + SAMPLES_TO_TIME (off);
    GST_BUFFER_DURATION (buf) = SAMPLES_TO_TIME (off + m) - SAMPLES_TO_TIME (off);
    if (off == 0 && discont)
      GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);
    flow = gst_harness_push (h, buf);
  }
  return flow;
}

void
push_eos (GstHarness *h)
{
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
}

gint
piece_cmp (gconstpointer a, gconstpointer b)
{
  const Piece *pa = a, *pb = b;
  return pa->pts < pb->pts ? -1 : pa->pts > pb->pts;
}

static void
piece_clear (gpointer p)
{
  g_free (((Piece *) p)->text);
}

/* Everything the element pushed so far, in timeline order. */
GArray *
collect_output (GstHarness *h)
{
  GArray *pieces = g_array_new (FALSE, TRUE, sizeof (Piece));
  GstBuffer *buf;
  GstEvent *ev;

  g_array_set_clear_func (pieces, piece_clear);
  while ((buf = gst_harness_try_pull (h))) {
    GstMapInfo map;
    Piece p = { GST_BUFFER_PTS (buf), GST_BUFFER_DURATION (buf), NULL };
    fail_unless (GST_CLOCK_TIME_IS_VALID (p.pts), "text buffer without PTS");
    fail_unless (GST_CLOCK_TIME_IS_VALID (p.duration), "text buffer without DURATION");
    fail_unless (gst_buffer_map (buf, &map, GST_MAP_READ));
    p.text = g_strndup ((const gchar *) map.data, map.size);
    fail_unless (g_utf8_validate (p.text, -1, NULL));
    fail_unless (map.size > 0, "empty text buffer: should have been a GAP");
    gst_buffer_unmap (buf, &map);
    gst_buffer_unref (buf);
    g_array_append_val (pieces, p);
  }
  while ((ev = gst_harness_try_pull_event (h))) {
    if (GST_EVENT_TYPE (ev) == GST_EVENT_GAP) {
      Piece p = { 0, 0, NULL };
      gst_event_parse_gap (ev, &p.pts, &p.duration);
      g_array_append_val (pieces, p);
    }
    gst_event_unref (ev);
  }
  g_array_sort (pieces, piece_cmp);
  return pieces;
}

guint
count_text (GArray *pieces)
{
  guint n = 0;
  for (guint i = 0; i < pieces->len; i++)
    n += g_array_index (pieces, Piece, i).text != NULL;
  return n;
}

/* Checks that @pieces tile [@start, @end) exactly: no hole, no overlap. */
void
assert_tiles (GArray *pieces, GstClockTime start, GstClockTime end)
{
  GstClockTime at = start;
  fail_unless (pieces->len > 0);
  for (guint i = 0; i < pieces->len; i++) {
    Piece *p = &g_array_index (pieces, Piece, i);
    fail_unless (p->pts == at, "piece %u starts at %" GST_TIME_FORMAT ", not at %"
        GST_TIME_FORMAT, i, GST_TIME_ARGS (p->pts), GST_TIME_ARGS (at));
    at = p->pts + p->duration;
  }
  fail_unless (at == end, "output ends at %" GST_TIME_FORMAT ", not at %" GST_TIME_FORMAT,
      GST_TIME_ARGS (at), GST_TIME_ARGS (end));
}
