/* gst-canary — the dw_striding subsampling's own convolutions (docs/MODEL.md, Encoder: dw_striding subsampling): conv.0 and the
 * depthwise 3x3 stride-2 convs. The pointwise convs are GEMMs on the host side.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common.cuh"

#define SUB_THREADS 256

/* One thread per output element out[t][f][c] (c fastest: neighbouring threads share the input
 * taps, which come from the mel matrix [n_mels][ld], time contiguous). */
template <typename T>
__global__ void
conv0_relu_kernel (const float *mel, int ld, int n_mels, int len0, const float *w, const float *b,
    T *out, int C, int t1, int f1, int len1)
{
  const size_t n = (size_t) t1 * f1 * C;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
    const int c = (int) (i % C);
    const int f = (int) ((i / C) % f1);
    const int t = (int) (i / ((size_t) C * f1));
    float o = 0.0f;
    if (t < len1) {
      o = b[c];
      for (int di = 0; di < 3; di++) {
        const int ti = 2 * t + di - 1;
        if (ti < 0 || ti >= len0)
          continue;
        for (int dj = 0; dj < 3; dj++) {
          const int fj = 2 * f + dj - 1;
          if (fj >= 0 && fj < n_mels)
            o += w[c * 9 + di * 3 + dj] * mel[(size_t) fj * ld + ti];
        }
      }
      o = fmaxf (o, 0.0f);
    }
    st_f (out + i, o);
  }
}

template <typename T>
__global__ void
depthwise_s2_kernel (const T *in, int t_in, int f_in, const float *w, const float *b, T *out, int C,
    int t_out, int f_out, int len_out)
{
  const size_t n = (size_t) t_out * f_out * C;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
    const int c = (int) (i % C);
    const int f = (int) ((i / C) % f_out);
    const int t = (int) (i / ((size_t) C * f_out));
    float o = 0.0f;
    if (t < len_out) {
      o = b[c];
      for (int di = 0; di < 3; di++) {
        const int ti = 2 * t + di - 1;
        if (ti < 0 || ti >= t_in)
          continue;
        for (int dj = 0; dj < 3; dj++) {
          const int fj = 2 * f + dj - 1;
          if (fj >= 0 && fj < f_in)
            o += w[c * 9 + di * 3 + dj] * ld_f (in + ((size_t) ti * f_in + fj) * C + c);
        }
      }
    }
    st_f (out + i, o);
  }
}

/* conv.0 + ReLU + stage-2 depthwise in one pass, so conv.0's output (the largest map of the
 * encoder: t1·f1·C) never exists: each stage-2 output recomputes its 3x3 neighbourhood of conv.0
 * outputs (81 multiply-adds instead of 18, on a map 4x smaller). Stage-1 values outside
 * [0, len1) × [0, f1) are zero (padding, and NeMo's time mask before the depthwise conv). */
template <typename T>
__global__ void
conv0_dw_kernel (const float *mel, int ld, int n_mels, int len0, const float *w0, const float *b0, int f1,
    int len1, const float *w, const float *b, T *out, int C, int t2, int f2, int len2)
{
  const size_t n = (size_t) t2 * f2 * C;
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
    const int c = (int) (i % C);
    const int f = (int) ((i / C) % f2);
    const int t = (int) (i / ((size_t) C * f2));
    float o = 0.0f;
    if (t < len2) {
      o = b[c];
      for (int di = 0; di < 3; di++) {
        const int ti = 2 * t + di - 1;  /* stage-1 time */
        if (ti < 0 || ti >= len1)
          continue;
        for (int dj = 0; dj < 3; dj++) {
          const int fj = 2 * f + dj - 1;  /* stage-1 frequency */
          if (fj < 0 || fj >= f1)
            continue;
          float v = b0[c];
          for (int ei = 0; ei < 3; ei++) {
            const int tm = 2 * ti + ei - 1;
            if (tm < 0 || tm >= len0)
              continue;
            for (int ej = 0; ej < 3; ej++) {
              const int fm = 2 * fj + ej - 1;
              if (fm >= 0 && fm < n_mels)
                v += w0[c * 9 + ei * 3 + ej] * mel[(size_t) fm * ld + tm];
            }
          }
          o += w[c * 9 + di * 3 + dj] * fmaxf (v, 0.0f);
        }
      }
    }
    st_f (out + i, o);
  }
}

extern "C" cudaError_t
ck_conv0_dw_s2 (ck_dtype dt, const float *mel, int ld, int n_mels, int len0, const float *w0, const float *b0,
    int f1, int len1, const float *w, const float *b, void *out, int C, int t2, int f2, int len2,
    cudaStream_t stream)
{
  const size_t n = (size_t) t2 * f2 * C;
  if (!n)
    return cudaSuccess;
  CK_DISPATCH (dt, conv0_dw_kernel<T><<<ck_blocks (n, SUB_THREADS), SUB_THREADS, 0, stream>>> (mel, ld, n_mels,
      len0, w0, b0, f1, len1, w, b, (T *) out, C, t2, f2, len2));
  return cudaGetLastError ();
}

extern "C" cudaError_t
ck_conv0_relu (ck_dtype dt, const float *mel, int ld, int n_mels, int len0, const float *w,
    const float *b, void *out, int C, int t1, int f1, int len1, cudaStream_t stream)
{
  const size_t n = (size_t) t1 * f1 * C;
  if (!n)
    return cudaSuccess;
  CK_DISPATCH (dt, conv0_relu_kernel<T><<<ck_blocks (n, SUB_THREADS), SUB_THREADS, 0, stream>>> (mel, ld,
      n_mels, len0, w, b, (T *) out, C, t1, f1, len1));
  return cudaGetLastError ();
}

extern "C" cudaError_t
ck_depthwise_s2 (ck_dtype dt, const void *in, int t_in, int f_in, const float *w, const float *b,
    void *out, int C, int t_out, int f_out, int len_out, cudaStream_t stream)
{
  const size_t n = (size_t) t_out * f_out * C;
  if (!n)
    return cudaSuccess;
  CK_DISPATCH (dt, depthwise_s2_kernel<T><<<ck_blocks (n, SUB_THREADS), SUB_THREADS, 0, stream>>> (
      (const T *) in, t_in, f_in, w, b, (T *) out, C, t_out, f_out, len_out));
  return cudaGetLastError ();
}
