/* gst-canary — the encoder's relative-position self-attention (docs/MODEL.md, Encoder: relative-position attention), fused: scores,
 * the rel_shift, the mask, the softmax and the context in one kernel, with no T×T matrix.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common.cuh"

#define ATT_WARPS 4
#define ATT_MAX_R 8   /* channels per lane: d_k <= 32 · 8 */

/* One warp per (query i, head h). Lane l holds channels c = l + 32r of (q+u), (q+v) and the
 * running context, in FP32. Each key costs one warp reduction of the summed AC and BD terms;
 * the softmax is the online (running max) form, so scores are never stored. The positional
 * term reads p at row L−1−i+j: Transformer-XL's rel_shift, done by indexing. */
template <typename T>
__global__ void
relpos_attention_kernel (const T *q, const T *k, const T *v, int ld, const T *p, const float *bias_u,
    const float *bias_v, T *ctx, int n_time, int L, int H, int dk, float inv_sqrt_dk)
{
  const int lane = threadIdx.x & 31;
  const int item = blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (item >= n_time * H)
    return;
  const int i = item / H, h = item % H, D = H * dk;
  T *out = ctx + (size_t) i * D + (size_t) h * dk;
  if (i >= L) {
    for (int c = lane; c < dk; c += 32)
      st_f (out + c, 0.0f);
    return;
  }
  float qu[ATT_MAX_R], qv[ATT_MAX_R], acc[ATT_MAX_R];
#pragma unroll
  for (int r = 0; r < ATT_MAX_R; r++) {
    const int c = lane + 32 * r;
    const float x = c < dk ? ld_f (q + (size_t) i * ld + h * dk + c) : 0.0f;
    qu[r] = c < dk ? x + bias_u[h * dk + c] : 0.0f;
    qv[r] = c < dk ? x + bias_v[h * dk + c] : 0.0f;
    acc[r] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int j = 0; j < L; j++) {
    const T *kj = k + (size_t) j * ld + h * dk;
    const T *pj = p + (size_t) (L - 1 - i + j) * D + h * dk;
    float part = 0.0f;
#pragma unroll
    for (int r = 0; r < ATT_MAX_R; r++) {
      const int c = lane + 32 * r;
      if (c < dk)
        part += qu[r] * ld_f (kj + c) + qv[r] * ld_f (pj + c);
    }
    const float s = warp_sum (part) * inv_sqrt_dk;
    const float m_new = fmaxf (m, s);
    const float corr = expf (m - m_new), e = expf (s - m_new);
    l = l * corr + e;
    const T *vj = v + (size_t) j * ld + h * dk;
#pragma unroll
    for (int r = 0; r < ATT_MAX_R; r++) {
      const int c = lane + 32 * r;
      if (c < dk)
        acc[r] = acc[r] * corr + e * ld_f (vj + c);
    }
    m = m_new;
  }
  const float inv = 1.0f / l;
#pragma unroll
  for (int r = 0; r < ATT_MAX_R; r++) {
    const int c = lane + 32 * r;
    if (c < dk)
      st_f (out + c, acc[r] * inv);
  }
}

extern "C" cudaError_t
ck_relpos_attention (ck_dtype dt, const void *q, const void *k, const void *v, int ld_qkv, const void *p,
    const float *bias_u, const float *bias_v, void *ctx, int n_time, int L, int H, int dk,
    cudaStream_t stream)
{
  if (dk < 1 || dk > 32 * ATT_MAX_R)
    return cudaErrorInvalidValue;
  const int items = n_time * H;
  if (items <= 0)
    return cudaSuccess;
  const unsigned blocks = (unsigned) ((items + ATT_WARPS - 1) / ATT_WARPS);
  const float inv = 1.0f / sqrtf ((float) dk);
  CK_DISPATCH (dt, relpos_attention_kernel<T><<<blocks, 32 * ATT_WARPS, 0, stream>>> ((const T *) q,
      (const T *) k, (const T *) v, ld_qkv, (const T *) p, bias_u, bias_v, (T *) ctx, n_time, L, H,
      dk, inv));
  return cudaGetLastError ();
}
