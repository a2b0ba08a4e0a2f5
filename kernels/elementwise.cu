/* gst-canary — element-wise kernels: Swish, type conversion, the debug finite check.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common.cuh"

#define EW_THREADS 256

template <typename T>
__global__ void
swish_kernel (T *x, size_t n)
{
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
    const float v = ld_f (x + i);
    st_f (x + i, v * sigmoid_f (v));
  }
}

template <typename T>
__global__ void
count_nonfinite_kernel (const T *x, size_t n, int *count)
{
  int bad = 0;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
    bad += !isfinite (ld_f (x + i));
  if (bad)
    atomicAdd (count, bad);
}

template <typename T>
__global__ void
from_f32_kernel (const float *src, T *dst, size_t n)
{
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
    st_f (dst + i, src[i]);
}

template <typename T>
__global__ void
to_f32_kernel (const T *src, float *dst, size_t n)
{
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
    dst[i] = ld_f (src + i);
}

extern "C" cudaError_t
ck_swish (ck_dtype dt, void *x, size_t n, cudaStream_t stream)
{
  if (!n)
    return cudaSuccess;
  CK_DISPATCH (dt, swish_kernel<T><<<ck_blocks (n, EW_THREADS), EW_THREADS, 0, stream>>> ((T *) x, n));
  return cudaGetLastError ();
}

extern "C" cudaError_t
ck_count_nonfinite (ck_dtype dt, const void *x, size_t n, int *count, cudaStream_t stream)
{
  if (!n)
    return cudaSuccess;
  CK_DISPATCH (dt, count_nonfinite_kernel<T><<<ck_blocks (n, EW_THREADS), EW_THREADS, 0, stream>>> (
      (const T *) x, n, count));
  return cudaGetLastError ();
}

extern "C" cudaError_t
ck_from_f32 (ck_dtype dt, const float *src, void *dst, size_t n, cudaStream_t stream)
{
  if (!n)
    return cudaSuccess;
  CK_DISPATCH (dt, from_f32_kernel<T><<<ck_blocks (n, EW_THREADS), EW_THREADS, 0, stream>>> (src, (T *) dst, n));
  return cudaGetLastError ();
}

extern "C" cudaError_t
ck_to_f32 (ck_dtype dt, const void *src, float *dst, size_t n, cudaStream_t stream)
{
  if (!n)
    return cudaSuccess;
  CK_DISPATCH (dt, to_f32_kernel<T><<<ck_blocks (n, EW_THREADS), EW_THREADS, 0, stream>>> ((const T *) src, dst, n));
  return cudaGetLastError ();
}
