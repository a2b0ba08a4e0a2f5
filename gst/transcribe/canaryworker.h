/* gst-canary — canaryworker.c's functions, for the element's other files.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "gstcanarytranscribe-private.h"

G_BEGIN_DECLS

/* canaryworker.c: the worker thread and the queues it shares with the streaming thread. */

/* Called with `lock`. */
void canary_worker_clear_queues_locked (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
/* Drops everything queued and interrupts the window being transcribed. Called with `lock`. */
void canary_worker_cancel_pending_locked (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
/* GST_FLOW_FLUSHING while flushing, else GST_FLOW_ERROR once the worker failed, else OK. */
GstFlowReturn canary_worker_flow (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
/* Checks the model path and starts the worker, which loads the model. */
gboolean canary_worker_start (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
/* Waits for the model load to end; FALSE (its error posted) when it failed. */
gboolean canary_worker_wait_loaded (GstCanaryTranscribe *self) G_GNUC_INTERNAL;
/* Stops and joins the worker (waiting for a model load in progress). */
void canary_worker_stop (GstCanaryTranscribe *self) G_GNUC_INTERNAL;

G_END_DECLS
