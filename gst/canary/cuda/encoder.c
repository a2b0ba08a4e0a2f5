/* gst-canary — the FastConformer encoder on the GPU: the features up, then the encoder's launch
 * list (cuda/launch_encoder.c), which ends with the decoder's cross-attention K/V for the window.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cuda/internal.h"

#include "canary.h"
#include "cuda/device.h"

gboolean
canary_cuda_encode (canary_cuda_state *st, const float *mel, int n_frames, int n_valid, int *t_enc, int *enc_len,
    GError **error)
{
  g_return_val_if_fail (st && mel && t_enc && enc_len, FALSE);
  const canary_cuda_dims *m = &st->model->w->dims;
  int T, L;
  st->has_memory = FALSE;
  g_array_set_size (st->launches, 0);
  if (!canary_cuda_encoder_launches (st->model->w, &st->plan, (guintptr) st->model->dev, (guintptr) st->arena, n_frames,
          n_valid, &T, &L, st->launches, error)
      || !canary_cuda_ok (cudaSetDevice (st->model->device), "selecting the GPU", error)
      || !canary_cuda_ok (cudaMemcpyAsync (cuda_region (st, CR_MEL), mel, (gsize) m->n_mels * n_frames * 4,
          cudaMemcpyHostToDevice, st->stream), "uploading the features", error)
      || !canary_cuda_exec_list (st, st->launches, error))
    return FALSE;
  st->T = T;
  st->enc_len = L;
  *st->h_params = (ck_step_params) { 0, T, L, 0 };
  if (!canary_cuda_upload_params (st, error)
      || !canary_cuda_ok (cudaStreamSynchronize (st->stream), "running the encoder", error))
    return FALSE;
  st->has_memory = TRUE;
  st->length = 0;
  st->n_beams = 0;
  *t_enc = T;
  *enc_len = L;
  return TRUE;
}

gboolean
canary_cuda_set_memory (canary_cuda_state *st, const float *enc, int t_enc, int enc_len, GError **error)
{
  g_return_val_if_fail (st && enc, FALSE);
  const canary_cuda_dims *m = &st->model->w->dims;
  const gsize n = (gsize) MAX (t_enc, 0) * m->out_dim;
  st->has_memory = FALSE;
  g_array_set_size (st->launches, 0);
  if (!canary_cuda_memory_launches (st->model->w, &st->plan, (guintptr) st->model->dev, (guintptr) st->arena, t_enc,
          st->launches, error))
    return FALSE;
  if (enc_len < 0 || enc_len > t_enc || n * 4 > st->plan.region[CR_BIG].bytes) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "CUDA decoder memory: %d of %d frames valid, %" G_GSIZE_FORMAT " values (staging holds %" G_GSIZE_FORMAT ")",
        enc_len, t_enc, n, (gsize) st->plan.region[CR_BIG].bytes / 4);
    return FALSE;
  }
  /* FP32 up into the FF buffer (free between windows), converted to the model's dtype in place. */
  float *staging = cuda_region (st, CR_BIG);
  void *dst = cuda_region (st, canary_cuda_encoder_output_region (st->model->w));
  if (!canary_cuda_ok (cudaSetDevice (st->model->device), "selecting the GPU", error)
      || !canary_cuda_ok (cudaMemcpyAsync (staging, enc, n * 4, cudaMemcpyHostToDevice, st->stream),
          "uploading the encoder output", error)
      || !canary_cuda_ok (ck_from_f32 (cuda_ck (st), staging, dst, n, st->stream), "converting the encoder output",
          error)
      || !canary_cuda_exec_list (st, st->launches, error))
    return FALSE;
  st->T = t_enc;
  st->enc_len = enc_len;
  *st->h_params = (ck_step_params) { 0, t_enc, enc_len, 0 };
  if (!canary_cuda_upload_params (st, error)
      || !canary_cuda_ok (cudaStreamSynchronize (st->stream), "computing the decoder memory", error))
    return FALSE;
  st->has_memory = TRUE;
  st->length = 0;
  st->n_beams = 0;
  return TRUE;
}

gboolean
canary_cuda_encoder_output (canary_cuda_state *st, float *out, GError **error)
{
  const canary_cuda_dims *m = &st->model->w->dims;
  if (!st->has_memory) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT, "CUDA encoder: no output yet");
    return FALSE;
  }
  const gsize n = (gsize) st->T * m->out_dim;
  const void *enc = cuda_region (st, canary_cuda_encoder_output_region (st->model->w));
  /* Converted to FP32 in the FF buffer, which the encoder no longer needs. */
  float *tmp = cuda_region (st, CR_BIG);
  if (n * 4 > st->plan.region[CR_BIG].bytes) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "CUDA encoder: output of %" G_GSIZE_FORMAT " values is larger than the staging area", n);
    return FALSE;
  }
  return canary_cuda_ok (ck_to_f32 (cuda_ck (st), enc, tmp, n, st->stream), "converting the encoder output", error)
      && canary_cuda_ok (cudaMemcpyAsync (out, tmp, n * 4, cudaMemcpyDeviceToHost, st->stream),
          "reading the encoder output", error)
      && canary_cuda_ok (cudaStreamSynchronize (st->stream), "reading the encoder output", error);
}
