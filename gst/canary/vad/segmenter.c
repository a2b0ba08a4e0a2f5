/* gst-canary — speech segments from VAD probabilities (see canary_vad.h). The rules are those of
 * the silero-vad package's get_speech_timestamps / VADIterator, made causal: a segment opens at
 * the first chunk with p >= threshold, and closes once min_silence of chunks with
 * p < neg_threshold has followed (chunks in between the two thresholds change nothing, so a
 * wavering probability does not chop a word). Each segment gets `pad` of audio on both sides,
 * never reaching into the previous segment. A segment about to exceed max_length is split at
 * the quietest chunk of its second half (the likeliest pause between words), or where it
 * stands when none is below threshold.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "canary_vad.h"

#define NONE G_MAXUINT64

void
canary_vad_segmenter_options_init (canary_vad_segmenter_options *o)
{
  o->threshold = 0.5f;
  o->neg_threshold = 0.35f;
  o->min_speech = CANARY_VAD_RATE / 4;
  o->min_silence = CANARY_VAD_RATE / 2;
  o->pad = CANARY_VAD_RATE / 5;
  o->max_length = 10 * CANARY_VAD_RATE;
}

static void
start_afresh (canary_vad_segmenter *s)
{
  s->pos = 0;
  s->floor = 0;
  s->triggered = FALSE;
  s->continued = FALSE;
  s->silence_start = NONE;
}

void
canary_vad_segmenter_init (canary_vad_segmenter *s, const canary_vad_segmenter_options *opts)
{
  s->opt = *opts;
  /* The rules need: hysteresis below the threshold, padding that fits inside the silence that
   * ends a segment (so the closing pad is audio already seen), and room for a chunk plus both
   * pads in a segment. */
  s->opt.threshold = CLAMP (s->opt.threshold, 0.02f, 0.99f);
  s->opt.neg_threshold = CLAMP (s->opt.neg_threshold, 0.01f, s->opt.threshold);
  s->opt.min_silence = MAX (s->opt.min_silence, CANARY_VAD_CHUNK);
  s->opt.pad = MIN (s->opt.pad, s->opt.min_silence / 2);
  s->opt.max_length = MAX (s->opt.max_length, 2 * s->opt.pad + 4 * CANARY_VAD_CHUNK);
  start_afresh (s);
}

/* Where the open segment's audio starts: its speech less the padding, not before the floor. */
static guint64
padded_start (const canary_vad_segmenter *s)
{
  guint64 start = s->speech_start > s->opt.pad ? s->speech_start - s->opt.pad : 0;
  return MAX (start, s->floor);
}

static gboolean
emit (canary_vad_segmenter *s, guint64 end, canary_speech_segment *out)
{
  out->start = padded_start (s);
  out->end = end;
  s->floor = end;
  return end > out->start;
}

gboolean
canary_vad_segmenter_push (canary_vad_segmenter *s, float p, canary_speech_segment *out)
{
  guint64 chunk = s->pos, end = s->pos + CANARY_VAD_CHUNK;
  s->pos = end;

  if (!s->triggered) {
    if (p >= s->opt.threshold) {
      s->triggered = TRUE;
      s->continued = FALSE;
      s->speech_start = chunk;
      s->silence_start = NONE;
      s->split_p = 2.0f;
    }
    return FALSE;
  }

  if (p >= s->opt.threshold)
    s->silence_start = NONE;
  else if (p < s->opt.neg_threshold && s->silence_start == NONE)
    s->silence_start = chunk;

  if (s->silence_start != NONE && end - s->silence_start >= s->opt.min_silence) {
    guint64 speech_end = s->silence_start;
    s->triggered = FALSE;
    if (!s->continued && speech_end - s->speech_start < s->opt.min_speech)
      return FALSE;   /* a click or a breath: dropped */
    return emit (s, speech_end + s->opt.pad, out);
  }

  /* The quietest chunk of the open segment's second half: where to split it if it must be. */
  guint64 start = padded_start (s);
  if (chunk >= start + s->opt.max_length / 2 && p < s->split_p) {
    s->split_p = p;
    s->split_at = chunk + CANARY_VAD_CHUNK / 2;
  }
  if (end + CANARY_VAD_CHUNK - start > s->opt.max_length) {
    guint64 cut = s->split_p < s->opt.threshold ? s->split_at : end;
    gboolean ok = emit (s, cut, out);
    s->speech_start = cut;
    s->continued = TRUE;
    s->split_p = 2.0f;
    if (s->silence_start != NONE)
      s->silence_start = MAX (s->silence_start, cut);
    return ok;
  }
  return FALSE;
}

gboolean
canary_vad_segmenter_finish (canary_vad_segmenter *s, guint64 end, canary_speech_segment *out)
{
  gboolean ok = FALSE;
  if (s->triggered) {
    guint64 speech_end = s->silence_start != NONE ? s->silence_start : end;
    if (s->continued || speech_end - s->speech_start >= s->opt.min_speech)
      ok = emit (s, MIN (speech_end + s->opt.pad, end), out);
  }
  start_afresh (s);
  return ok;
}

guint64
canary_vad_segmenter_keep_from (const canary_vad_segmenter *s)
{
  if (s->triggered)
    return padded_start (s);
  guint64 from = s->pos > s->opt.pad ? s->pos - s->opt.pad : 0;
  return MAX (from, s->floor);
}

gboolean
canary_vad_segmenter_in_speech (const canary_vad_segmenter *s)
{
  return s->triggered;
}
