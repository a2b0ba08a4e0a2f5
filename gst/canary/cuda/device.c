/* gst-canary — CUDA device selection, error reporting and checked allocation.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cuda/device.h"

#include "canary.h"

gboolean
canary_cuda_ok (cudaError_t err, const char *what, GError **error)
{
  if (err == cudaSuccess)
    return TRUE;
  (void) cudaGetLastError ();  /* clear a non-sticky error so the next call starts clean */
  g_set_error (error, CANARY_ERROR,
      err == cudaErrorMemoryAllocation ? CANARY_ERROR_OUT_OF_MEMORY : CANARY_ERROR_DEVICE,
      "CUDA: %s: %s (%s)", what, cudaGetErrorString (err), cudaGetErrorName (err));
  return FALSE;
}

gboolean
canary_cublas_ok (cublasStatus_t st, const char *what, GError **error)
{
  if (st == CUBLAS_STATUS_SUCCESS)
    return TRUE;
  g_set_error (error, CANARY_ERROR,
      st == CUBLAS_STATUS_ALLOC_FAILED ? CANARY_ERROR_OUT_OF_MEMORY : CANARY_ERROR_DEVICE,
      "cuBLAS: %s: status %d", what, (int) st);
  return FALSE;
}

gboolean
canary_cuda_use_device (int id, GError **error)
{
  int count = 0;
  cudaError_t err = cudaGetDeviceCount (&count);
  if (err == cudaErrorNoDevice || (err == cudaSuccess && count == 0)) {
    (void) cudaGetLastError ();
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE, "no CUDA GPU found");
    return FALSE;
  }
  if (err == cudaErrorInsufficientDriver || err == cudaErrorNoKernelImageForDevice) {
    (void) cudaGetLastError ();
    int drv = 0, rt = 0;
    cudaDriverGetVersion (&drv);
    cudaRuntimeGetVersion (&rt);
    if (drv == 0)
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE, "no NVIDIA driver found (no CUDA GPU usable)");
    else
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE,
          "the NVIDIA driver supports CUDA %d.%d, older than this build's CUDA runtime %d.%d",
          drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    return FALSE;
  }
  if (!canary_cuda_ok (err, "counting GPUs", error))
    return FALSE;
  if (id < 0 || id >= count) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE, "gpu-device-id %d: this machine has %d CUDA GPU%s (ids 0..%d)",
        id, count, count == 1 ? "" : "s", count - 1);
    return FALSE;
  }
  struct cudaDeviceProp prop;
  if (!canary_cuda_ok (cudaGetDeviceProperties (&prop, id), "reading the GPU's properties", error))
    return FALSE;
  if (prop.major < CANARY_CUDA_MIN_CC_MAJOR
      || (prop.major == CANARY_CUDA_MIN_CC_MAJOR && prop.minor < CANARY_CUDA_MIN_CC_MINOR)) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE,
        "GPU %d (%s) has compute capability %d.%d; the CUDA backend needs %d.%d or newer",
        id, prop.name, prop.major, prop.minor, CANARY_CUDA_MIN_CC_MAJOR, CANARY_CUDA_MIN_CC_MINOR);
    return FALSE;
  }
  return canary_cuda_ok (cudaSetDevice (id), "selecting the GPU", error);
}

gboolean
canary_cuda_mem_info (guint64 *free_bytes, guint64 *total_bytes, GError **error)
{
  size_t f = 0, t = 0;
  if (!canary_cuda_ok (cudaMemGetInfo (&f, &t), "querying device memory", error))
    return FALSE;
  if (free_bytes)
    *free_bytes = f;
  if (total_bytes)
    *total_bytes = t;
  return TRUE;
}

gboolean
canary_cuda_alloc (gsize bytes, const char *what, void **ptr, GError **error)
{
  *ptr = NULL;
  cudaError_t err = cudaMalloc (ptr, MAX (bytes, 1));
  if (err == cudaSuccess)
    return TRUE;
  (void) cudaGetLastError ();
  *ptr = NULL;
  size_t f = 0, t = 0;
  if (err == cudaErrorMemoryAllocation && cudaMemGetInfo (&f, &t) == cudaSuccess) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_OUT_OF_MEMORY,
        "GPU out of memory for the %s: %" G_GSIZE_FORMAT " bytes needed, %zu free of %zu", what, bytes, f, t);
    return FALSE;
  }
  char *w = g_strdup_printf ("allocating %" G_GSIZE_FORMAT " bytes for the %s", bytes, what);
  gboolean ok = canary_cuda_ok (err, w, error);
  g_free (w);
  return ok;
}
