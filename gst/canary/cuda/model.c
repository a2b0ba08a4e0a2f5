/* gst-canary — the CUDA model: device selection and the one-allocation weight upload.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cuda/internal.h"

#include "canary.h"
#include "cuda/device.h"
#include "util.h"

canary_cuda_model *
canary_cuda_model_new (const canary_config *cfg, const canary_ckpt *ck, canary_cuda_dtype dtype, int device_id,
    GError **error)
{
  if (!canary_cuda_use_device (device_id, error))
    return NULL;
  canary_cuda_weights *w = canary_cuda_weights_build (cfg, ck, dtype, error);
  if (!w)
    return NULL;
  canary_cuda_model *m = g_new0 (canary_cuda_model, 1);
  m->device = device_id;
  m->w = w;
  void *dev = NULL;
  if (!canary_cuda_alloc (w->bytes, "model weights", &dev, error)) {
    canary_cuda_model_free (m);
    return NULL;
  }
  m->dev = dev;
  /* One copy from the host image, then a device-wide synchronisation: from pageable memory
   * cudaMemcpy may return once the bytes are staged, before the DMA has landed, and the legacy
   * stream it runs on is not ordered with the states' non-blocking streams, which read the
   * weights next. The image is freed right after. */
  if (!canary_cuda_ok (cudaMemcpy (m->dev, w->blob, w->bytes, cudaMemcpyHostToDevice), "uploading the weights",
          error)
      || !canary_cuda_ok (cudaDeviceSynchronize (), "finishing the weight upload", error)) {
    canary_cuda_model_free (m);
    return NULL;
  }
  canary_cuda_weights_drop_blob (w);
  CANARY_INFO ("CUDA: %s weights on GPU %d: %" G_GSIZE_FORMAT " bytes in one allocation",
      dtype == CANARY_CUDA_F16 ? "fp16" : "fp32", device_id, w->bytes);
  return m;
}

void
canary_cuda_model_free (canary_cuda_model *m)
{
  if (!m)
    return;
  if (m->dev) {
    cudaSetDevice (m->device);
    cudaFree (m->dev);
  }
  canary_cuda_weights_free (m->w);
  g_free (m);
}

guint64
canary_cuda_model_device_bytes (const canary_cuda_model *m)
{
  return m->w->bytes;
}

const canary_cuda_dims *
canary_cuda_model_dims (const canary_cuda_model *m)
{
  return &m->w->dims;
}
