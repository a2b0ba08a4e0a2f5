/* gst-canary — helpers shared by the kernels: element loads/stores in either activation type,
 * warp and block reductions, the launch epilogue.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "canary_kernels.h"
#include "nemo_constants.h"

/* Activations are __half (CK_F16) or float (CK_F32); kernels are templates over the type and
 * compute in float. */
__device__ __forceinline__ float ld_f (const float *p) { return *p; }
__device__ __forceinline__ float ld_f (const __half *p) { return __half2float (*p); }
__device__ __forceinline__ void st_f (float *p, float v) { *p = v; }
/* __float2half rounds to nearest; beyond ±65504 that is ±inf, which the debug finite check
 * reports (docs/cuda.md). */
__device__ __forceinline__ void st_f (__half *p, float v) { *p = __float2half (v); }

__device__ __forceinline__ float
warp_sum (float v)
{
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float
warp_max (float v)
{
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf (v, __shfl_xor_sync (0xffffffffu, v, o));
  return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
 * `scratch` holds 32 floats of shared memory. */
__device__ __forceinline__ float
block_sum (float v, float *scratch)
{
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum (v);
  __syncthreads ();  /* scratch may still be read by a previous call */
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads ();
  v = lane < n_warps ? scratch[lane] : 0.0f;
  return warp_sum (v);
}

__device__ __forceinline__ float
sigmoid_f (float x)
{
  return 1.0f / (1.0f + __expf (-x));
}

#define LN_EPS ((float) CANARY_LN_EPS)
/* Values per thread kept in registers; D up to LN_THREADS · LN_MAX_PER = 4096 channels. */
#define LN_MAX_PER 16

/* Normalises the row held in v[] (this thread's channels c = tid + i·blockDim) in place.
 * Two-pass (mean, then squared deviations) on the register copy, as torch computes it. */
__device__ __forceinline__ void
ln_row_regs (float *v, int D, const float *g, const float *b, float *scratch)
{
  float s = 0.0f;
  for (int i = 0, c = threadIdx.x; i < LN_MAX_PER && c < D; i++, c += blockDim.x)
    s += v[i];
  const float mean = block_sum (s, scratch) / D;
  float q = 0.0f;
  for (int i = 0, c = threadIdx.x; i < LN_MAX_PER && c < D; i++, c += blockDim.x) {
    const float d = v[i] - mean;
    q += d * d;
  }
  const float rstd = rsqrtf (block_sum (q, scratch) / D + LN_EPS);
  for (int i = 0, c = threadIdx.x; i < LN_MAX_PER && c < D; i++, c += blockDim.x)
    v[i] = (v[i] - mean) * rstd * g[c] + b[c];
}

/* Dispatches a templated launch on the activation type. */
#define CK_DISPATCH(dt, ...) \
  do { \
    if ((dt) == CK_F16) { \
      typedef __half T; \
      __VA_ARGS__; \
    } else { \
      typedef float T; \
      __VA_ARGS__; \
    } \
  } while (0)

static inline unsigned
ck_blocks (size_t n, unsigned threads)
{
  size_t b = (n + threads - 1) / threads;
  return (unsigned) (b > 65535u * 32u ? 65535u * 32u : (b ? b : 1));
}
