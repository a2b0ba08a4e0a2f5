/* gst-canary — CUDA device selection, error reporting and checked allocation (CUDA builds only).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every CUDA/cuBLAS call of the backend goes through canary_cuda_ok / canary_cublas_ok, which
 * turn a failure into a GError (CANARY_ERROR_DEVICE, or CANARY_ERROR_OUT_OF_MEMORY) naming the
 * operation. */
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <glib.h>

G_BEGIN_DECLS

/* Oldest GPU the kernels are built for (sm_75, Turing; FP16 tensor cores). */
#define CANARY_CUDA_MIN_CC_MAJOR 7
#define CANARY_CUDA_MIN_CC_MINOR 5

/* TRUE for cudaSuccess; otherwise sets `error` ("<what>: <CUDA's message> (<name>)"). */
gboolean canary_cuda_ok (cudaError_t err, const char *what, GError **error);
gboolean canary_cublas_ok (cublasStatus_t st, const char *what, GError **error);

/* Checks that device `id` exists, is new enough and has a working driver, and makes it current
 * on this thread. Clear CANARY_ERROR_DEVICE messages for: no driver, no GPU, bad id, too old. */
gboolean canary_cuda_use_device (int id, GError **error);

/* cudaMalloc with the error the API promises: CANARY_ERROR_OUT_OF_MEMORY saying how many bytes
 * were needed and how many were free (cudaMemGetInfo). */
gboolean canary_cuda_alloc (gsize bytes, const char *what, void **ptr, GError **error);

/* Free and total bytes of the current device (the process total used is total − free). */
gboolean canary_cuda_mem_info (guint64 *free_bytes, guint64 *total_bytes, GError **error);

G_END_DECLS
