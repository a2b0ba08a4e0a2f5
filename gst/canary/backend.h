/* gst-canary — the engine's backends as engine.c drives them: one table of operations each.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * engine.c parses the archive, config, checkpoint and tokenizer, computes the mel features on the
 * CPU and binds the CPU encoder and decoder (whose shape checks every backend relies on); the
 * backend then runs the network for a window:
 *
 *   model_new (once per loaded model, shared by every state)
 *   state_new (once per stream) → per window: encode → decode → ... → state_free
 *   model_free
 *
 * A build without the CUDA toolkit has no CUDA table (canary_backend_cuda () returns NULL), so
 * engine.c needs no #ifdef. */
#pragma once

#include <glib.h>

#include "canary.h"
#include "cpu/decoder.h"
#include "cpu/encoder.h"
#include "cpu/mel.h"
#include "formats/ckpt.h"
#include "formats/config.h"
#include "search.h"

G_BEGIN_DECLS

/* Longest window one call accepts. The encoder's self-attention is O(T²) and the released models
 * were trained on <= 40 s; 120 s still fits comfortably in memory and leaves room for callers that
 * window loosely. */
#define CANARY_MAX_WINDOW_SECONDS 120
/* Scratch for prompts: Canary prompts are 5 (canary) or 9 (canary2) special tokens. */
#define CANARY_MAX_PROMPT_TOKENS 64
#define CANARY_MAX_BEAM 64
/* The largest beam a GPU state is planned for: canary_model_options.max_beam, 0 = 4 (the beam
 * most applications use). */
#define CANARY_GPU_DEFAULT_MAX_BEAM 4
static inline int
canary_gpu_max_beam (int max_beam_option)
{
  return max_beam_option > 0 ? MIN (max_beam_option, CANARY_MAX_BEAM) : CANARY_GPU_DEFAULT_MAX_BEAM;
}

/* What a backend's model and states are built from (owned by engine.c's canary_model). */
typedef struct {
  const canary_config *config;
  const canary_ckpt *ckpt;
  const canary_mel *mel;
  const canary_encoder *encoder;  /* the CPU bindings: always built */
  const canary_decoder *decoder;
  const canary_model_options *opts;
  canary_precision precision;     /* resolved */
  int sample_rate;
  int pad_id;
} canary_backend_args;

typedef struct {
  const char *name;  /* "cpu", "cuda" */
  /* Whether device `id` can run models now (CANARY_ERROR_DEVICE with the reason if not). */
  gboolean (*probe) (int device_id, GError **error);
  gpointer (*model_new) (const canary_backend_args *args, GError **error);
  void (*model_free) (gpointer model);
  /* Bytes of weights the backend holds on its device (0 for the CPU). */
  guint64 (*model_device_bytes) (gpointer model);
  gpointer (*state_new) (gpointer model, const canary_backend_args *args, GError **error);
  void (*state_free) (gpointer state);
  /* Runs the encoder on mel[n_mels][n_frames] (n_valid valid frames) and prepares the decoder's
   * cross-attention for up to `beam` hypotheses; t_enc is the padded encoder length (NeMo's
   * generation cap uses it), enc_len the valid one. */
  gboolean (*encode) (gpointer state, const float *mel, int n_frames, int n_valid, int beam,
      int *t_enc, int *enc_len, GError **error);
  /* NeMo's beam search (beam 1 included) over the encoded window: canary_beam_search's contract. */
  gboolean (*decode) (gpointer state, const gint32 *prompt, int P, const canary_beam_options *opt,
      GArray *out_ids, double *out_score, int *out_steps, GError **error);
  /* Device memory (all zero for the CPU). */
  gboolean (*device_memory) (gpointer state, canary_device_memory *out, GError **error);
} canary_backend;

extern const canary_backend canary_backend_cpu;
/* What precision=auto means on the CPU for a model file of model_bytes: FP16 where the FP16
 * kernels have SIMD (F16C or AVX-512) and the model is larger than the last-level cache (its
 * weights stream from DRAM), else FP32. */
canary_precision canary_cpu_auto_precision (guint64 model_bytes);
/* The CUDA backend, or NULL when this build has none. */
const canary_backend *canary_backend_cuda (void);

G_END_DECLS
