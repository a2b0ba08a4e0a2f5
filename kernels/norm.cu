/* gst-canary — LayerNorm kernels (FP32 statistics whatever the activation type).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common.cuh"

#define LN_THREADS 256

template <typename T>
__global__ void
layer_norm_kernel (const T *x, const float *g, const float *b, T *y, int D)
{
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  float v[LN_MAX_PER];
  for (int i = 0, c = threadIdx.x; i < LN_MAX_PER && c < D; i++, c += blockDim.x)
    v[i] = ld_f (x + row * D + c);
  ln_row_regs (v, D, g, b, scratch);
  for (int i = 0, c = threadIdx.x; i < LN_MAX_PER && c < D; i++, c += blockDim.x)
    st_f (y + row * D + c, v[i]);
}

template <typename T>
__global__ void
layer_norm2_kernel (T *x, const float *g1, const float *b1, const float *g2, const float *b2, T *y,
    int D)
{
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  float v[LN_MAX_PER];
  for (int i = 0, c = threadIdx.x; i < LN_MAX_PER && c < D; i++, c += blockDim.x)
    v[i] = ld_f (x + row * D + c);
  ln_row_regs (v, D, g1, b1, scratch);
  /* The stored x is what the next layer adds its residuals to: round it once, and normalise
   * that rounded value, as a separate LayerNorm pass would. */
  for (int i = 0, c = threadIdx.x; i < LN_MAX_PER && c < D; i++, c += blockDim.x) {
    st_f (x + row * D + c, v[i]);
    v[i] = ld_f (x + row * D + c);
  }
  ln_row_regs (v, D, g2, b2, scratch);
  for (int i = 0, c = threadIdx.x; i < LN_MAX_PER && c < D; i++, c += blockDim.x)
    st_f (y + row * D + c, v[i]);
}

static cudaError_t
check_width (int D)
{
  return D > 0 && D <= LN_THREADS * LN_MAX_PER ? cudaSuccess : cudaErrorInvalidValue;
}

extern "C" cudaError_t
ck_layer_norm (ck_dtype dt, const void *x, const float *g, const float *b, void *y, int rows, int D,
    cudaStream_t stream)
{
  if (check_width (D) != cudaSuccess)
    return cudaErrorInvalidValue;
  if (rows <= 0)
    return cudaSuccess;
  CK_DISPATCH (dt, layer_norm_kernel<T><<<rows, LN_THREADS, 0, stream>>> ((const T *) x, g, b,
      (T *) y, D));
  return cudaGetLastError ();
}

extern "C" cudaError_t
ck_layer_norm2 (ck_dtype dt, void *x, const float *g1, const float *b1, const float *g2,
    const float *b2, void *y, int rows, int D, cudaStream_t stream)
{
  if (check_width (D) != cudaSuccess)
    return cudaErrorInvalidValue;
  if (rows <= 0)
    return cudaSuccess;
  CK_DISPATCH (dt, layer_norm2_kernel<T><<<rows, LN_THREADS, 0, stream>>> ((T *) x, g1, b1, g2, b2,
      (T *) y, D));
  return cudaGetLastError ();
}
