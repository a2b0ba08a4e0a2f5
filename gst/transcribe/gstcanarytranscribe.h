/* gst-canary — canarytranscribe: speech to text with NVIDIA Canary models.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gst/gst.h>
#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

#define GST_TYPE_CANARY_TRANSCRIBE (gst_canary_transcribe_get_type ())
G_DECLARE_FINAL_TYPE (GstCanaryTranscribe, gst_canary_transcribe, GST, CANARY_TRANSCRIBE, GstBaseTransform)

#define GST_TYPE_CANARY_TRANSCRIBE_DEVICE (gst_canary_transcribe_device_get_type ())
GType gst_canary_transcribe_device_get_type (void);

#define GST_TYPE_CANARY_TRANSCRIBE_PRECISION (gst_canary_transcribe_precision_get_type ())
GType gst_canary_transcribe_precision_get_type (void);

#define GST_TYPE_CANARY_TRANSCRIBE_TASK (gst_canary_transcribe_task_get_type ())
GType gst_canary_transcribe_task_get_type (void);

#define GST_TYPE_CANARY_TRANSCRIBE_SEGMENTATION (gst_canary_transcribe_segmentation_get_type ())
GType gst_canary_transcribe_segmentation_get_type (void);

GST_ELEMENT_REGISTER_DECLARE (canarytranscribe);

/* Routes the engine's log lines into the `canaryengine` debug category (process-wide). */
void gst_canary_transcribe_init_engine_logging (void);

G_END_DECLS
