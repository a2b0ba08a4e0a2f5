/* gst-canary — the conformer convolution module's middle, fused: GLU, padding mask, depthwise
 * conv (BatchNorm folded at load), Swish. One pass instead of four.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common.cuh"

#define CONV_THREADS 256

/* One thread per out[t][c]; channels fastest so the K taps of neighbouring threads are
 * coalesced rows of pw1. The GLU is recomputed per tap (K = 9): cheaper than a stored pass. */
template <typename T>
__global__ void
glu_dwconv_swish_kernel (const T *pw1, const float *w, const float *b, T *out, int T_, int L, int D,
    int K)
{
  const size_t n = (size_t) T_ * D;
  const int half = (K - 1) / 2;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
    const int c = (int) (i % D);
    const int t = (int) (i / D);
    float o = b[c];
    for (int k = 0; k < K; k++) {
      const int s = t + k - half;
      if (s < 0 || s >= L)  /* zero padding, and NeMo's masked_fill of the padding steps */
        continue;
      const T *row = pw1 + (size_t) s * 2 * D;
      o += w[(size_t) c * K + k] * ld_f (row + c) * sigmoid_f (ld_f (row + D + c));
    }
    st_f (out + i, o * sigmoid_f (o));
  }
}

extern "C" cudaError_t
ck_glu_dwconv_swish (ck_dtype dt, const void *pw1, const float *w, const float *b, void *out,
    int n_time, int L, int D, int K, cudaStream_t stream)
{
  const size_t n = (size_t) n_time * D;
  if (!n)
    return cudaSuccess;
  CK_DISPATCH (dt, glu_dwconv_swish_kernel<T><<<ck_blocks (n, CONV_THREADS), CONV_THREADS, 0, stream>>> (
      (const T *) pw1, w, b, (T *) out, n_time, L, D, K));
  return cudaGetLastError ();
}
