/* gst-canary — the CUDA backend's GEMMs: cuBLASLt with FP32 accumulation and the bias / ReLU
 * epilogues fused (CUDA builds only).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <cuda_runtime_api.h>
#include <glib.h>

#include "cuda/launch.h"

G_BEGIN_DECLS

typedef struct _canary_cuda_gemm canary_cuda_gemm;

/* A cuBLASLt handle with its workspace (`ws`, `ws_bytes` of device memory inside the arena) and
 * a cache of the heuristic's choice per GEMM shape, so a window asks the heuristic once per
 * shape. One per state (not thread-safe). */
canary_cuda_gemm *canary_cuda_gemm_new (void *ws, gsize ws_bytes, GError **error);
void canary_cuda_gemm_free (canary_cuda_gemm *g);

/* y[m][n] = act(x[m][k]·w[n][k]ᵀ + bias) + beta·y, on `stream`. Inputs in `dt`, y in `dt` or FP32
 * (op->y_f32, with an FP32 bias); compute in FP32 (CUBLAS_COMPUTE_32F, no TF32). */
gboolean canary_cuda_gemm_run (canary_cuda_gemm *g, canary_cuda_dtype dt, const cl_gemm *op,
    cudaStream_t stream, GError **error);

G_END_DECLS
