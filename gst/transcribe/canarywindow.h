/* gst-canary — canarywindow.c's functions, for the element's other files.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "gstcanarytranscribe-private.h"

G_BEGIN_DECLS

/* canarywindow.c: input samples cut into windows (streaming thread). */

/* Places @n samples stamped @pts on the run's timeline; a discontinuity ends the run. */
GstFlowReturn canary_window_place_samples (GstCanaryTranscribe *self, GstClockTime pts,
    gboolean discont_flag, guint n) G_GNUC_INTERNAL;
/* Converts @n samples of @in to F32 in [-1, 1], counting the samples it had to repair. */
GstBuffer *canary_window_to_float (GstCanaryTranscribe *self, GstBuffer *in, guint n)
    G_GNUC_INTERNAL;
/* Adds F32 samples (taken) to the current run and queues every complete window. */
GstFlowReturn canary_window_append_samples (GstCanaryTranscribe *self, GstBuffer *fbuf)
    G_GNUC_INTERNAL;
/* Queues what is left of the current run; the next samples start a new one. */
GstFlowReturn canary_window_end_run (GstCanaryTranscribe *self) G_GNUC_INTERNAL;

G_END_DECLS
