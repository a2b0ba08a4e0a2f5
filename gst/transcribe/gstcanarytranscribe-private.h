/* gst-canary — canarytranscribe internals shared by the element's source files: the instance
 * struct, the jobs and results that pass between the streaming thread and the worker, and the
 * job and result destructors. Each file's functions are declared in its own header
 * (canarywindow.h, canaryworker.h, canaryoutput.h), and the dependencies between them run one
 * way: the element uses all three; the window and the worker post through the output side;
 * the output side uses none of the others. Not installed; the public API is
 * gstcanarytranscribe.h.
 *
 *   gstcanarytranscribe.c   the element: properties, caps, queries, events, state changes
 *   canarywindow.c          input: samples cut into windows and queued for the worker
 *   canarysegment.c         input with VAD: windows cut at pauses, non-speech as GAPs
 *   canaryworker.c          the inference thread: model loading, decode settings, the engine
 *   canaryoutput.c          results to text buffers and GAP events; bus messages
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "gstcanarytranscribe.h"

#include <gst/audio/audio.h>
#include <gst/base/gstadapter.h>

#include "canary.h"
#include "canary_vad.h"

G_BEGIN_DECLS

G_GNUC_INTERNAL GST_DEBUG_CATEGORY_EXTERN (canary_transcribe_debug);
#define GST_CAT_DEFAULT canary_transcribe_debug

#define RATE 16000
#define DEFAULT_MODEL_NAME "canary-default.nemo"
#define DEFAULT_VAD_NAME "silero_vad_16k.safetensors"

/* Timestamps that differ by less than this from the sample count are treated as jitter. */
#define ALIGN_THRESHOLD (40 * GST_MSECOND)
/* A hole in the input timestamps shorter than this is filled with silence and the window goes
 * on; a longer one ends the run and comes out as a GAP event. One second: the holes that
 * capture glitches, leaky queues and network jitter buffers make are tens to hundreds of
 * milliseconds, and the model hears a filled one as the pause it is (speakers pause that long
 * inside a sentence), whereas cutting the window there hands it sub-second snippets. Past a
 * second the source has most likely stopped (paused, muted, reconnected), and text should not
 * run across that. It is also the shortest window-length, so a filled hole never makes up a
 * whole window, and it bounds the silence inserted per hole. */
#define MAX_FILLED_HOLE GST_SECOND

typedef enum {
  GST_CANARY_TRANSCRIBE_DEVICE_AUTO,
  GST_CANARY_TRANSCRIBE_DEVICE_CUDA,
  GST_CANARY_TRANSCRIBE_DEVICE_CPU,
} GstCanaryTranscribeDevice;

typedef enum {
  GST_CANARY_TRANSCRIBE_PRECISION_AUTO,
  GST_CANARY_TRANSCRIBE_PRECISION_FP16,
  GST_CANARY_TRANSCRIBE_PRECISION_FP32,
} GstCanaryTranscribePrecision;

typedef enum {
  GST_CANARY_TRANSCRIBE_TASK_TRANSCRIBE,
  GST_CANARY_TRANSCRIBE_TASK_TRANSLATE,
} GstCanaryTranscribeTask;

typedef enum {
  GST_CANARY_TRANSCRIBE_SEGMENTATION_AUTO,
  GST_CANARY_TRANSCRIBE_SEGMENTATION_FIXED,
  GST_CANARY_TRANSCRIBE_SEGMENTATION_VAD,
} GstCanaryTranscribeSegmentation;

typedef enum {
  LOAD_NONE,
  LOAD_PENDING,
  LOAD_DONE,
  LOAD_FAILED,
} LoadState;

/* One window on its way to the worker. */
typedef struct {
  guint epoch;
  gfloat *samples;
  gsize n_samples;
  GstClockTime pts, duration;   /* the stretch of timeline this window's new text covers */
  GstClockTime end_running_time;        /* of the window's end, to measure live lag */
  gboolean new_run;             /* first window after a discontinuity: nothing to merge with */
  gboolean merge;               /* overlap > 0: drop the text repeated from the previous window */
  gboolean silent;              /* digital silence: not worth running the model */
} CanaryJob;

/* What the worker hands back for one window. An empty text becomes a GAP event. */
typedef struct {
  guint epoch;
  gchar *text;
  gchar *language;
  GstClockTime pts, duration;
  GstClockTime processing_time;
} CanaryResult;

struct _GstCanaryTranscribe {
  GstBaseTransform parent;

  /* Properties, under the object lock. */
  gchar *model_path;
  GstCanaryTranscribeDevice device;
  GstCanaryTranscribePrecision precision;
  gint gpu_device_id;
  guint window_ms;
  guint overlap_ms;
  gchar *language_code;
  gchar *target_language;
  GstCanaryTranscribeTask task;
  gboolean pnc;
  guint beam_size;
  guint latency_ms;
  guint lateness_ms;
  gboolean post_messages;
  GstCanaryTranscribeSegmentation segmentation;
  GstCanaryTranscribeSegmentation active_segmentation;   /* fixed or vad, set at start */
  gchar *vad_model_path;
  gfloat vad_threshold;
  guint min_silence_ms, speech_pad_ms, min_speech_ms;
  gboolean model_settings_changed;      /* since the worker started loading */

  /* Streaming thread only. */
  GstAudioInfo info;
  GstAdapter *adapter;          /* F32 samples of the current run, from window_start on */
  gboolean run_active;          /* a run = samples since the last discontinuity */
  GstClockTime run_base;        /* output time of the run's first sample */
  GstClockTime out_end;         /* end of the timeline the queued text and GAPs cover (NONE:
                                 * nothing yet in this segment); nothing goes out before it */
  GstClockTimeDiff ts_offset;   /* added to input timestamps after they went backwards */
  guint64 window_start;         /* run sample index of the adapter's first sample */
  guint64 emitted_end;          /* run sample index where the last window's text ends */
  gboolean next_new_run;
  guint window_samples, hop_samples;
  gboolean merge;
  gboolean live_known;
  gboolean backlog_warned;
  /* VAD segmentation (canarysegment.c); vad is NULL with fixed windows. */
  canary_vad *vad;
  canary_vad_segmenter segmenter;
  guint64 vad_pos;              /* run sample index up to which the VAD has run */
  guint64 vad_speech_samples;   /* of the run's samples, how many went to the model (stats) */
  gboolean vad_warned;          /* the one-time "no VAD weights" warning was posted */

  /* Upstream liveness, written by LATENCY queries from any thread. */
  gint live;

  /* Shared with the worker, under `lock`. */
  GMutex lock;
  GCond cond;
  GThread *worker;
  gboolean worker_stop;
  gboolean flushing;
  guint epoch;                  /* bumped by flushes: older jobs and results are stale */
  GQueue jobs;
  GQueue results;
  gboolean busy;
  LoadState load_state;
  canary_state *engine_state;   /* owned by the worker; here so that a flush can cancel it */
  GstFlowReturn worker_flow;    /* GST_FLOW_ERROR once the worker posted an error */

  /* Worker thread only. */
  gchar *prev_text;             /* full text of the previous window, for merging */
  GstClockTime last_warned_lag;
};

/* The job and result destructors, here with their types so that every file that queues or
 * pops them can free them without depending on another file's functions. */
static inline void
canary_job_free (CanaryJob *job)
{
  g_free (job->samples);
  g_free (job);
}

static inline void
canary_job_result_free (CanaryResult *res)
{
  g_free (res->text);
  g_free (res->language);
  g_free (res);
}

G_END_DECLS
