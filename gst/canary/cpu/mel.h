/* gst-canary — log-mel frontend: NeMo's FilterbankFeatures (NeMo >= 2.5 behaviour), FP32.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * For N input samples the frontend produces F = N/hop + 1 frames of n_mels features, of which
 * L = N/hop are valid (NeMo's get_seq_len with the centred n_fft/2 padding); frames >= L are 0.
 * Steps (docs/MODEL.md, Frontend: pipeline): pre-emphasis (masked past N) → centred, zero-padded STFT with the
 * window zero-padded to n_fft → power → mel filterbank → log(x + guard) (or log(max(x, guard)))
 * → per-feature normalisation over the valid frames → zero the frames >= L.
 *
 * A canary_mel is immutable after canary_mel_new: one instance may be used from many threads.
 */
#pragma once

#include <glib.h>

#include "formats/ckpt.h"
#include "formats/config.h"

G_BEGIN_DECLS

typedef struct _canary_mel canary_mel;

/* Builds the frontend from the config. The window and filterbank come from the checkpoint
 * buffers `preprocessor.featurizer.window` / `preprocessor.featurizer.fb` when `ck` has them
 * (`ck` may be NULL), otherwise they are computed (torch's symmetric window, librosa's Slaney
 * mel filterbank). Unsupported settings (exact_pad, unknown window without a stored one) give
 * CANARY_ERROR_UNSUPPORTED; bad stored shapes CANARY_ERROR_FORMAT naming the key. */
canary_mel *canary_mel_new (const canary_config *cfg, const canary_ckpt *ck, GError **error);
void canary_mel_free (canary_mel *mel);

int canary_mel_n_mels (const canary_mel *mel);

/* Frames produced for n samples (N/hop + 1), and how many of them are valid (N/hop). */
gsize canary_mel_n_frames (const canary_mel *mel, gsize n_samples);
gsize canary_mel_n_valid (const canary_mel *mel, gsize n_samples);

/* Computes the features of pcm[0..n) (float samples in [-1, 1] at the model's rate) into
 * out[n_mels * F], row-major [n_mels][F] like NeMo's [B, n_mels, T] (F from canary_mel_n_frames,
 * the caller sizes `out`). `n_valid` (may be NULL) receives L. Non-finite samples or an input
 * too long to index give CANARY_ERROR_INVALID_AUDIO. Thread-safe. */
gboolean canary_mel_compute (const canary_mel *mel, const float *pcm, gsize n, float *out,
    int *n_valid, GError **error);

/* The window (n_fft samples, zero-padded and centred) and the filterbank [n_mels][n_fft/2+1]
 * in use, for tests and the GPU backend. */
const float *canary_mel_window (const canary_mel *mel, int *n_fft);
const float *canary_mel_filterbank (const canary_mel *mel, int *n_mels, int *n_bins);

/* Computes the window / filterbank the way NeMo builds them when they are not stored: torch's
 * symmetric window of `win_length` (FP32, like torch.hann_window(periodic=False)) and librosa's
 * filters.mel(norm="slaney", htk=False) rounded to float32. Exposed so tests can check them
 * against the stored buffers. Return NULL (error set) for unsupported names / sizes. */
float *canary_mel_make_window (const char *name, int win_length, GError **error);
float *canary_mel_make_filterbank (int sample_rate, int n_fft, int n_mels, double fmin, double fmax,
    GError **error);

/* NeMo's transcribe-time padding of short clips (Lhotse CutSet.pad(duration=min_dur,
 * direction="both")): a clip shorter than round(min_dur * sample_rate) samples is zero-padded to
 * exactly that length, with ceil(P/2) zeros on the left and floor(P/2) on the right (P = the
 * number of padding samples; Lhotse rounds each half-duration half-up, and checked against
 * NeMo's dumps). Returns the padded length and sets *out to a new buffer (g_free) when padding
 * happened; otherwise returns n and sets *out to NULL (use `in` as it is). */
gsize canary_pad_short_audio (const float *in, gsize n, int sample_rate, double min_dur, float **out);

G_END_DECLS
