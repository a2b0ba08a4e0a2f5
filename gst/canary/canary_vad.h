/* gst-canary — voice activity detection: Silero VAD (v5/v6, 16 kHz) and the speech segmenter that
 * turns its per-chunk probabilities into segments. Part of the engine (C11 + GLib, no GStreamer
 * types); the element (gst/transcribe/canarysegment.c) cuts its model windows with it.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The network (vad/silero.c; docs/vad.md has its shapes and their source): every 512 samples
 * (32 ms) with the 64 samples before them as context, a 256-point STFT as a strided convolution,
 * four Conv1d+ReLU, an LSTM cell of 128 carried from chunk to chunk, a 1×1 convolution and a
 * sigmoid: one speech probability per chunk. The weights are the `silero_vad_16k.safetensors`
 * file of the `silero-vad` PyPI package (MIT), read at run time, never compiled in.
 *
 * Thread safety: a canary_vad holds its stream's recurrent state; use one per stream, from one
 * thread at a time.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define CANARY_VAD_RATE 16000
#define CANARY_VAD_CHUNK 512      /* samples per probability */
#define CANARY_VAD_CONTEXT 64     /* samples of the previous chunk each chunk sees */

typedef struct _canary_vad canary_vad;

/* Loads the weights (safetensors; CANARY_ERROR codes: NOT_FOUND, FORMAT, UNSUPPORTED when a tensor
 * is missing or has another shape). The recurrent state starts at zero. */
canary_vad *canary_vad_load (const char *path, GError **error);
/* Same, from safetensors bytes in memory (fuzzing, tests). */
canary_vad *canary_vad_load_bytes (const guint8 *data, gsize len, GError **error);
void canary_vad_free (canary_vad *vad);

/* Forgets the stream: context and LSTM state back to zero, as the Python package's reset_states(). */
void canary_vad_reset (canary_vad *vad);

/* The speech probability of the next CANARY_VAD_CHUNK samples (16 kHz, [-1, 1], finite: the
 * caller repairs its input). Advances the state. */
float canary_vad_process (canary_vad *vad, const float *chunk);

/* ---------------------------------------------------------------------------------------------
 * Segmenter: probabilities → speech segments, with hysteresis as the Python package's
 * get_speech_timestamps (speech starts at p >= threshold, ends after min_silence of
 * p < threshold − 0.15), padded on both sides, split at the quietest chunk when longer than
 * max_length. Positions are sample indices of the stream the chunks came from.
 */

typedef struct {
  float threshold;            /* default 0.5 */
  float neg_threshold;        /* below it a chunk is silence; default threshold − 0.15 (≥ 0.01) */
  guint64 min_speech;         /* samples; shorter speech is dropped (a click, a cough). 250 ms */
  guint64 min_silence;        /* samples of silence that end a segment. 500 ms */
  guint64 pad;                /* samples of padding on each side, at most min_silence / 2. 200 ms */
  guint64 max_length;         /* samples; a longer segment is split. 10 s */
} canary_vad_segmenter_options;

void canary_vad_segmenter_options_init (canary_vad_segmenter_options *opts);

typedef struct {
  guint64 start, end;         /* [start, end) in samples, padding included */
} canary_speech_segment;

typedef struct {
  canary_vad_segmenter_options opt;
  guint64 pos;                /* samples pushed so far */
  guint64 floor;              /* no segment starts before this (the end of the last one) */
  gboolean triggered;
  guint64 speech_start;       /* first speech chunk of the open segment */
  guint64 silence_start;      /* first chunk of the current silence in it; G_MAXUINT64: none */
  gboolean continued;         /* the open segment continues one split at max_length */
  float split_p;              /* the quietest chunk in the open segment's second half */
  guint64 split_at;
} canary_vad_segmenter;

void canary_vad_segmenter_init (canary_vad_segmenter *s, const canary_vad_segmenter_options *opts);

/* Feeds the probability of the next chunk [pos, pos + CANARY_VAD_CHUNK). Returns TRUE with *out
 * set when a segment is complete. */
gboolean canary_vad_segmenter_push (canary_vad_segmenter *s, float p, canary_speech_segment *out);

/* The stream ends at sample @end (≥ the chunks pushed' start, the last chunk may be partial):
 * returns TRUE with *out set when a segment was open; the segmenter then starts afresh at 0. */
gboolean canary_vad_segmenter_finish (canary_vad_segmenter *s, guint64 end, canary_speech_segment *out);

/* The first sample a future segment can include: audio before it can be dropped. */
guint64 canary_vad_segmenter_keep_from (const canary_vad_segmenter *s);

/* Whether speech is in progress (a segment is open). */
gboolean canary_vad_segmenter_in_speech (const canary_vad_segmenter *s);

G_END_DECLS
