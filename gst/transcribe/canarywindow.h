/* gst-canary — canarywindow.c's functions, for the element's other files.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "gstcanarytranscribe-private.h"

G_BEGIN_DECLS

/* canarywindow.c: input samples cut into windows (streaming thread). */

/* Places @n samples stamped @pts on the output timeline: jitter is ignored, a short hole is
 * filled with silence, a long one ends the run (and becomes a GAP), timestamps going backwards
 * are moved after what was already queued. */
GstFlowReturn canary_window_place_samples (GstCanaryTranscribe *self, GstClockTime pts, guint n)
    G_GNUC_INTERNAL;
/* Forgets the timeline (a new segment, a flush): the next samples start it afresh. */
void canary_window_reset_timeline (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
/* Converts @n samples of @in to F32 (NaN and out-of-range samples are repaired per window). */
GstBuffer *canary_window_to_float (GstCanaryTranscribe *self, GstBuffer *in, guint n)
    G_GNUC_INTERNAL;
/* Adds F32 samples (taken) to the current run and queues every complete window. */
GstFlowReturn canary_window_append_samples (GstCanaryTranscribe *self, GstBuffer *fbuf)
    G_GNUC_INTERNAL;
/* For canarysegment.c: queues the run's samples [@from, @to) for the model, text covering what
 * no earlier job did; a GAP for [emitted_end, @to); the run's sample count so far. */
GstFlowReturn canary_window_submit (GstCanaryTranscribe *self, guint64 from, guint64 to)
    G_GNUC_INTERNAL;
GstFlowReturn canary_window_queue_gap (GstCanaryTranscribe *self, guint64 to) G_GNUC_INTERNAL;
guint64 canary_window_run_samples (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
/* Repairs @n samples in place for the VAD as for the model (non-finite → 0, clipped to ±1). */
void canary_window_repair_quietly (gfloat *s, gsize n) G_GNUC_INTERNAL;
/* Queues what is left of the current run; the next samples start a new one. */
GstFlowReturn canary_window_end_run (GstCanaryTranscribe *self) G_GNUC_INTERNAL;

G_END_DECLS
