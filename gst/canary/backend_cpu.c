/* gst-canary — the CPU backend's table (backend.h): the FP32 encoder and decoder of cpu/.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "backend.h"

#include <string.h>
#include <unistd.h>

#include "cpu/gemm.h"

typedef struct {
  const canary_encoder *encoder;
  const canary_decoder *decoder;
  int pad_id;
} cpu_model;

typedef struct {
  const cpu_model *model;
  canary_encoder_work *enc_work;
  canary_decoder_state *dec_state;
  int dec_max_beam, dec_max_frames;
} cpu_state;

static gpointer
cpu_model_new (const canary_backend_args *a, GError **error)
{
  cpu_model *m = g_new0 (cpu_model, 1);
  m->encoder = a->encoder;
  m->decoder = a->decoder;
  m->pad_id = a->pad_id;
  return m;
}

static void
cpu_model_free (gpointer model)
{
  g_free (model);
}

static guint64
cpu_model_device_bytes (gpointer model)
{
  return 0;
}

static void
cpu_state_free (gpointer state)
{
  cpu_state *st = state;
  if (!st)
    return;
  if (st->dec_state)
    canary_decoder_state_free (st->dec_state);
  if (st->enc_work)
    canary_encoder_work_free (st->enc_work);
  g_free (st);
}

static gpointer
cpu_state_new (gpointer model, const canary_backend_args *a, GError **error)
{
  cpu_state *st = g_new0 (cpu_state, 1);
  st->model = model;
  /* Sized for a 10 s window up front; the encoder grows it for longer input. */
  int frames = (int) canary_mel_n_frames (a->mel, 10 * (gsize) a->sample_rate);
  st->enc_work = canary_encoder_work_new (st->model->encoder, frames, error);
  if (!st->enc_work) {
    cpu_state_free (st);
    return NULL;
  }
  return st;
}

/* (Re)creates the decoder state when the beam or the encoder length outgrows it. Growth is rare:
 * the element sends windows of one length, so this allocates once per stream. */
static gboolean
ensure_decoder_state (cpu_state *st, int beam, int t_enc, GError **error)
{
  if (st->dec_state && beam <= st->dec_max_beam && t_enc <= st->dec_max_frames)
    return TRUE;
  int max_beam = MAX (beam, st->dec_max_beam);
  int max_frames = MAX (t_enc, st->dec_max_frames);
  canary_decoder_state *ds = canary_decoder_state_new (st->model->decoder, max_beam,
      CANARY_MAX_PROMPT_TOKENS, max_frames, st->model->pad_id, error);
  if (!ds)
    return FALSE;
  if (st->dec_state)
    canary_decoder_state_free (st->dec_state);
  st->dec_state = ds;
  st->dec_max_beam = max_beam;
  st->dec_max_frames = max_frames;
  return TRUE;
}

static gboolean
cpu_encode (gpointer state, const float *mel, int n_frames, int n_valid, int beam, int *t_enc,
    int *enc_len, GError **error)
{
  cpu_state *st = state;
  const float *enc;
  if (!canary_encoder_forward (st->model->encoder, st->enc_work, mel, n_frames, n_valid, &enc, t_enc,
          enc_len, error))
    return FALSE;
  /* Cross-attention K/V once per window. */
  return ensure_decoder_state (st, beam, *t_enc, error) &&
      canary_decoder_set_memory (st->dec_state, enc, *t_enc, *enc_len, error);
}

static gboolean
cpu_decode (gpointer state, const gint32 *prompt, int P, const canary_beam_options *opt, GArray *out_ids,
    double *out_score, int *out_steps, GError **error)
{
  cpu_state *st = state;
  return canary_beam_search (st->dec_state, prompt, P, opt, out_ids, out_score, out_steps, error);
}

static gboolean
cpu_device_memory (gpointer state, canary_device_memory *out, GError **error)
{
  memset (out, 0, sizeof *out);
  return TRUE;
}

/* Bytes of the last-level cache (sysconf's L3, else L2), 32 MiB where neither is known. */
static guint64
last_level_cache_bytes (void)
{
  long b = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
  b = sysconf (_SC_LEVEL3_CACHE_SIZE);
#endif
#ifdef _SC_LEVEL2_CACHE_SIZE
  if (b <= 0)
    b = sysconf (_SC_LEVEL2_CACHE_SIZE);
#endif
  return b > 0 ? (guint64) b : (guint64) 32 << 20;
}

canary_precision
canary_cpu_auto_precision (guint64 model_bytes)
{
  /* FP16 is faster where the weights stream from DRAM every window (docs/benchmarks.md, CPU FP16:
   * window 0.64x at canary-180m-flash, 0.93x at canary-1b-flash, 0.65-0.69x at canary-1b) and
   * holds half the memory; a model that fits in the cache gains nothing and pays the conversion.
   * Without F16C the widening is scalar: FP32. */
  if (!canary_f16_simd_enabled () || model_bytes <= last_level_cache_bytes ())
    return CANARY_PRECISION_FP32;
  return CANARY_PRECISION_FP16;
}

const canary_backend canary_backend_cpu = {
  .name = "cpu",
  .probe = NULL,
  .model_new = cpu_model_new,
  .model_free = cpu_model_free,
  .model_device_bytes = cpu_model_device_bytes,
  .state_new = cpu_state_new,
  .state_free = cpu_state_free,
  .encode = cpu_encode,
  .decode = cpu_decode,
  .device_memory = cpu_device_memory,
};
