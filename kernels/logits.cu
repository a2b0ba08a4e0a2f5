/* gst-canary — the decoder's output on the device: argmax and its log-probability in FP32, and
 * the step bookkeeping that lets a captured decoder step replay itself.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common.cuh"

#define ARG_THREADS 1024

/* One block. Ties go to the lower id (torch.argmax / topk order). logp = −log Σ exp(l − max). */
__global__ void
argmax_advance_kernel (const float *logits, int V, ck_choice *out, int *next_token, ck_step_params *sp,
    int advance)
{
  __shared__ float s_val[ARG_THREADS / 32];
  __shared__ int s_idx[ARG_THREADS / 32];
  __shared__ float scratch[32];
  float best = -INFINITY;
  int idx = V;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float x = logits[i];
    if (x > best) {  /* strided ascending scan: the first maximum of this thread */
      best = x;
      idx = i;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync (0xffffffffu, best, o);
    const int oi = __shfl_xor_sync (0xffffffffu, idx, o);
    if (ob > best || (ob == best && oi < idx)) {
      best = ob;
      idx = oi;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    s_val[warp] = best;
    s_idx[warp] = idx;
  }
  __syncthreads ();
  if (warp == 0) {
    const int n_warps = blockDim.x >> 5;
    best = lane < n_warps ? s_val[lane] : -INFINITY;
    idx = lane < n_warps ? s_idx[lane] : V;
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync (0xffffffffu, best, o);
      const int oi = __shfl_xor_sync (0xffffffffu, idx, o);
      if (ob > best || (ob == best && oi < idx)) {
        best = ob;
        idx = oi;
      }
    }
    if (lane == 0) {
      s_val[0] = best;
      s_idx[0] = idx;
    }
  }
  __syncthreads ();
  const float mx = s_val[0];
  float sum = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    sum += expf (logits[i] - mx);
  sum = block_sum (sum, scratch);
  if (threadIdx.x == 0) {
    /* A NaN row has no maximum: report id −1 and let the host refuse it. */
    const int tok = s_idx[0] < V ? s_idx[0] : -1;
    out->token = tok;
    out->logp = -logf (sum);
    next_token[0] = tok < 0 ? 0 : tok;
    sp->pos += advance;
  }
}

extern "C" cudaError_t
ck_argmax_advance (const float *logits, int V, ck_choice *out, int *next_token, ck_step_params *sp,
    int advance, cudaStream_t stream)
{
  if (V <= 0)
    return cudaErrorInvalidValue;
  argmax_advance_kernel<<<1, ARG_THREADS, 0, stream>>> (logits, V, out, next_token, sp, advance);
  return cudaGetLastError ();
}
