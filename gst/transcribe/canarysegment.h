/* gst-canary — canarysegment.c's functions, for the element's other files.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "gstcanarytranscribe-private.h"

G_BEGIN_DECLS

/* canarysegment.c: with a VAD, windows are cut at pauses (streaming thread). */

/* Chooses fixed windows or VAD segments from the properties and loads the VAD (start()): FALSE,
 * after an element error, when segmentation=vad (or a vad-model-path that was set) cannot load. */
gboolean canary_segment_setup (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
void canary_segment_teardown (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
/* A new run: the VAD and the segmenter forget the last one. */
void canary_segment_start_run (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
/* Runs the VAD over the run's new samples and queues each finished speech segment for the model
 * and GAPs for the rest; with @final, also what is left at the end of the run. */
GstFlowReturn canary_segment_cut (GstCanaryTranscribe *self, gboolean final) G_GNUC_INTERNAL;

G_END_DECLS
