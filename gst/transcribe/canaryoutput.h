/* gst-canary — canaryoutput.c's functions, for the element's other files.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "gstcanarytranscribe-private.h"

G_BEGIN_DECLS

/* canaryoutput.c: what the element pushes and posts. */

/* Posts an ERROR message; takes @text and @debug. */
void canary_output_post_error (GstCanaryTranscribe *self, GQuark domain, gint code, gchar *text,
    gchar *debug) G_GNUC_INTERNAL;
/* Posts a WARNING with the details structure @details; takes @text, @debug and @details. */
void canary_output_post_warning (GstCanaryTranscribe *self, GQuark domain, gint code,
    gchar *text, gchar *debug, GstStructure *details) G_GNUC_INTERNAL;
/* Next finished result of the current epoch, without waiting. */
CanaryResult *canary_output_pop_result (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
/* The text buffer for @res, or NULL (after pushing a GAP event) when it holds no text. */
GstBuffer *canary_output_result_to_buffer (GstCanaryTranscribe *self, const CanaryResult *res)
    G_GNUC_INTERNAL;
/* Pushes every finished result from the streaming thread (outside the chain function). */
GstFlowReturn canary_output_push_ready_results (GstCanaryTranscribe *self) G_GNUC_INTERNAL;

G_END_DECLS
