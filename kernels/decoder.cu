/* gst-canary — the Transformer decoder's own kernels (docs/MODEL.md, Decoder): embedding + LayerNorm,
 * K/V cache append, self- and cross-attention. Positions and the window's frame counts come from
 * a ck_step_params in device memory, so a captured step replays without host updates.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common.cuh"

#define DEC_THREADS 256
#define DEC_WARPS 8         /* warps sharing one query's keys */
#define DEC_MAX_R 8          /* channels per lane: d_head <= 256 */
#define DEC_NEG_INF CANARY_MASK_VALUE  /* NeMo's additive mask value */

template <typename T>
__global__ void
embed_kernel (const int *tokens, int n_tokens, const ck_step_params *sp, const T *tok_emb,
    const T *pos_enc, const float *g, const float *b, T *x, int H)
{
  __shared__ float scratch[32];
  const int row = blockIdx.x;
  const T *te = tok_emb + (size_t) tokens[row] * H;
  const T *pe = pos_enc + (size_t) (sp->pos + row % n_tokens) * H;
  float v[LN_MAX_PER];
  for (int i = 0, c = threadIdx.x; i < LN_MAX_PER && c < H; i++, c += blockDim.x)
    v[i] = ld_f (te + c) + ld_f (pe + c);
  ln_row_regs (v, H, g, b, scratch);
  for (int i = 0, c = threadIdx.x; i < LN_MAX_PER && c < H; i++, c += blockDim.x)
    st_f (x + (size_t) row * H + c, v[i]);
}

/* Attention of one query over n_keys keys by a whole block (flash-decoding): warp w takes keys
 * w, w + DEC_WARPS, ..., keeping its own running max, sum and context (lane l holds channels
 * l + 32r), and the warps' partial results are merged in shared memory at the end. A decoder
 * step has only a few queries, so one warp per query would leave the GPU idle and serialise the
 * keys; this spreads them over DEC_WARPS warps. `keys(j, &k, &v)` gives key j's rows; `masked(j)`
 * NeMo's additive −10000. */
template <typename T, typename Keys, typename Mask>
__device__ __forceinline__ void
attend_block (const T *q, int n_keys, int dk, float scale, Keys keys, Mask masked, T *out)
{
  __shared__ float s_m[DEC_WARPS], s_l[DEC_WARPS];
  __shared__ float s_acc[DEC_WARPS][32 * DEC_MAX_R];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float qr[DEC_MAX_R], acc[DEC_MAX_R];
#pragma unroll
  for (int r = 0; r < DEC_MAX_R; r++) {
    const int c = lane + 32 * r;
    qr[r] = c < dk ? ld_f (q + c) : 0.0f;
    acc[r] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int j = warp; j < n_keys; j += DEC_WARPS) {
    const T *kj, *vj;
    keys (j, &kj, &vj);
    float part = 0.0f;
#pragma unroll
    for (int r = 0; r < DEC_MAX_R; r++) {
      const int c = lane + 32 * r;
      if (c < dk)
        part += qr[r] * ld_f (kj + c);
    }
    const float s = warp_sum (part) * scale + (masked (j) ? DEC_NEG_INF : 0.0f);
    const float m_new = fmaxf (m, s);
    const float corr = expf (m - m_new), e = expf (s - m_new);
    l = l * corr + e;
#pragma unroll
    for (int r = 0; r < DEC_MAX_R; r++) {
      const int c = lane + 32 * r;
      if (c < dk)
        acc[r] = acc[r] * corr + e * ld_f (vj + c);
    }
    m = m_new;
  }
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int r = 0; r < DEC_MAX_R; r++)
    s_acc[warp][lane + 32 * r] = acc[r];
  __syncthreads ();
  float mx = -INFINITY;
  for (int w = 0; w < DEC_WARPS; w++)
    mx = fmaxf (mx, s_m[w]);
  float sum = 0.0f;
  for (int w = 0; w < DEC_WARPS; w++)
    sum += s_m[w] == -INFINITY ? 0.0f : s_l[w] * expf (s_m[w] - mx);
  for (int c = threadIdx.x; c < dk; c += blockDim.x) {
    float o = 0.0f;
    for (int w = 0; w < DEC_WARPS; w++)
      o += s_m[w] == -INFINITY ? 0.0f : s_acc[w][c] * expf (s_m[w] - mx);
    st_f (out + c, o / sum);
  }
}

/* NeMo's decoder self-attention mask (decoder.c self_key_masked): future keys, and for a
 * multi-token step the PAD tokens among the new keys; a one-token step with a PAD input masks
 * every key (a uniform shift). */
struct self_mask {
  const int *tok;
  int n_tokens, start, qi, pad;
  __device__ bool operator() (int key) const
  {
    if (key > start + qi)
      return true;
    if (n_tokens == 1)
      return tok[0] == pad;
    return key >= start && tok[key - start] == pad;
  }
};

/* Keys before the step come from the cache; the step's own keys straight from its q|k|v rows
 * (so no block reads a cache row another block of the same launch is writing). */
template <typename T>
struct self_keys {
  const T *k_cache, *v_cache, *qkv_beam;
  int start, H3, H;
  __device__ void operator() (int j, const T **k, const T **v) const
  {
    if (j < start) {
      *k = k_cache + (size_t) j * H;
      *v = v_cache + (size_t) j * H;
    } else {
      const T *row = qkv_beam + (size_t) (j - start) * H3;
      *k = row + H;
      *v = row + 2 * H;
    }
  }
};

/* One block per (row, head): attention over the cache and the step's keys, then the append of
 * this row's K/V for this head to the cache (every (row, head) slice written exactly once). */
template <typename T>
__global__ void
self_attention_kernel (const T *qkv, const int *tokens, int n_tokens, const ck_step_params *sp, const int *slot,
    T *k_cache, T *v_cache, int max_len, int pad, T *ctx, int H, int heads, float scale)
{
  const int row = blockIdx.x / heads, h = blockIdx.x % heads, dk = H / heads;
  const int b = row / n_tokens, qi = row % n_tokens, start = sp->pos;
  const size_t base = (size_t) slot[b] * max_len * H + (size_t) h * dk;
  const T *qkv_beam = qkv + (size_t) b * n_tokens * 3 * H + h * dk;
  self_mask mask = { tokens + (size_t) b * n_tokens, n_tokens, start, qi, pad };
  self_keys<T> keys = { k_cache + base, v_cache + base, qkv_beam, start, 3 * H, H };
  attend_block (qkv + (size_t) row * 3 * H + h * dk, start + n_tokens, dk, scale, keys, mask,
      ctx + (size_t) row * H + h * dk);
  const T *src = qkv + (size_t) row * 3 * H + h * dk;
  const size_t dst = base + (size_t) (start + qi) * H;
  for (int c = threadIdx.x; c < dk; c += blockDim.x) {
    k_cache[dst + c] = src[H + c];
    v_cache[dst + c] = src[2 * H + c];
  }
}

struct cross_mask {
  int enc_len;
  __device__ bool operator() (int t) const { return t >= enc_len; }
};

template <typename T>
struct cross_keys {
  const T *kv;
  int ld, H;
  __device__ void operator() (int j, const T **k, const T **v) const
  {
    *k = kv + (size_t) j * ld;
    *v = *k + H;
  }
};

template <typename T>
__global__ void
cross_attention_kernel (const T *q, const T *kv, int ld_kv, const ck_step_params *sp, T *ctx, int H, int heads,
    float scale)
{
  const int row = blockIdx.x / heads, h = blockIdx.x % heads, dk = H / heads;
  cross_mask mask = { sp->enc_len };
  cross_keys<T> keys = { kv + h * dk, ld_kv, H };
  attend_block (q + (size_t) row * H + h * dk, sp->T, dk, scale, keys, mask, ctx + (size_t) row * H + h * dk);
}

static cudaError_t
check_heads (int H, int heads)
{
  return heads > 0 && H % heads == 0 && H / heads <= 32 * DEC_MAX_R && H <= DEC_THREADS * LN_MAX_PER
      ? cudaSuccess : cudaErrorInvalidValue;
}

extern "C" cudaError_t
ck_dec_embed (ck_dtype dt, const int *tokens, int rows, int n_tokens, const ck_step_params *sp,
    const void *tok_emb, const void *pos_enc, const float *g, const float *b, void *x, int H,
    cudaStream_t stream)
{
  if (rows <= 0 || n_tokens <= 0 || H <= 0 || H > DEC_THREADS * LN_MAX_PER)
    return cudaErrorInvalidValue;
  CK_DISPATCH (dt, embed_kernel<T><<<rows, DEC_THREADS, 0, stream>>> (tokens, n_tokens, sp,
      (const T *) tok_emb, (const T *) pos_enc, g, b, (T *) x, H));
  return cudaGetLastError ();
}

extern "C" cudaError_t
ck_dec_self_attention (ck_dtype dt, const void *qkv, const int *tokens, int n_beams, int n_tokens,
    const ck_step_params *sp, const int *slot, void *k_cache, void *v_cache, int max_len, int pad_id, void *ctx, int H,
    int heads, cudaStream_t stream)
{
  if (check_heads (H, heads) != cudaSuccess || n_beams <= 0 || n_tokens <= 0)
    return cudaErrorInvalidValue;
  const float scale = 1.0f / sqrtf ((float) (H / heads));
  CK_DISPATCH (dt, self_attention_kernel<T><<<n_beams * n_tokens * heads, 32 * DEC_WARPS, 0, stream>>> (
      (const T *) qkv, tokens, n_tokens, sp, slot, (T *) k_cache, (T *) v_cache, max_len, pad_id, (T *) ctx, H, heads,
      scale));
  return cudaGetLastError ();
}

extern "C" cudaError_t
ck_dec_cross_attention (ck_dtype dt, const void *q, int rows, const void *kv, int ld_kv,
    const ck_step_params *sp, void *ctx, int H, int heads, cudaStream_t stream)
{
  if (check_heads (H, heads) != cudaSuccess || rows <= 0)
    return cudaErrorInvalidValue;
  const float scale = 1.0f / sqrtf ((float) (H / heads));
  CK_DISPATCH (dt, cross_attention_kernel<T><<<rows * heads, 32 * DEC_WARPS, 0, stream>>> ((const T *) q,
      (const T *) kv, ld_kv, sp, (T *) ctx, H, heads, scale));
  return cudaGetLastError ();
}
