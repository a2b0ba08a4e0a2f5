/* gst-canary — the Transformer decoder's own kernels (MODEL-SPEC §4): embedding + LayerNorm,
 * K/V cache append, self- and cross-attention. Positions and the window's frame counts come from
 * a ck_step_params in device memory, so a captured step replays without host updates.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common.cuh"

#define DEC_THREADS 256
#define DEC_WARPS 4
#define DEC_MAX_R 8          /* channels per lane: d_head <= 256 */
#define DEC_NEG_INF (-10000.0f)  /* NeMo's additive mask value */

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

template <typename T>
__global__ void
kv_append_kernel (const T *qkv, int n_tokens, size_t n, const ck_step_params *sp, const int *slot,
    T *k_cache, T *v_cache, int max_len, int H)
{
  for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
    const int c = (int) (i % H), row = (int) (i / H);
    const int b = row / n_tokens, t = row % n_tokens;
    const size_t dst = ((size_t) slot[b] * max_len + sp->pos + t) * H + c;
    const T *src = qkv + (size_t) row * 3 * H;
    k_cache[dst] = src[H + c];
    v_cache[dst] = src[2 * H + c];
  }
}

/* Online-softmax attention of one query (lane-split channels) over keys 0..n_keys−1, with an
 * additive mask given by `masked(j)`; shared by self- and cross-attention. */
template <typename T, typename Mask>
__device__ __forceinline__ void
attend (const T *q, const T *k, const T *v, size_t ld_k, int n_keys, int dk, float scale, Mask masked,
    T *out)
{
  const int lane = threadIdx.x & 31;
  float qr[DEC_MAX_R], acc[DEC_MAX_R];
#pragma unroll
  for (int r = 0; r < DEC_MAX_R; r++) {
    const int c = lane + 32 * r;
    qr[r] = c < dk ? ld_f (q + c) : 0.0f;
    acc[r] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int j = 0; j < n_keys; j++) {
    const T *kj = k + (size_t) j * ld_k;
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
    const T *vj = v + (size_t) j * ld_k;
#pragma unroll
    for (int r = 0; r < DEC_MAX_R; r++) {
      const int c = lane + 32 * r;
      if (c < dk)
        acc[r] = acc[r] * corr + e * ld_f (vj + c);
    }
    m = m_new;
  }
  const float inv = 1.0f / l;
#pragma unroll
  for (int r = 0; r < DEC_MAX_R; r++) {
    const int c = lane + 32 * r;
    if (c < dk)
      st_f (out + c, acc[r] * inv);
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

template <typename T>
__global__ void
self_attention_kernel (const T *qkv, const int *tokens, int n_beams, int n_tokens, const ck_step_params *sp,
    const int *slot, const T *k_cache, const T *v_cache, int max_len, int pad, T *ctx, int H, int heads,
    float scale)
{
  const int item = blockIdx.x * DEC_WARPS + (threadIdx.x >> 5);
  if (item >= n_beams * n_tokens * heads)
    return;
  const int row = item / heads, h = item % heads, dk = H / heads;
  const int b = row / n_tokens, qi = row % n_tokens, start = sp->pos;
  const size_t base = (size_t) slot[b] * max_len * H + (size_t) h * dk;
  self_mask mask = { tokens + (size_t) b * n_tokens, n_tokens, start, qi, pad };
  attend (qkv + (size_t) row * 3 * H + h * dk, k_cache + base, v_cache + base, (size_t) H,
      start + n_tokens, dk, scale, mask, ctx + (size_t) row * H + h * dk);
}

struct cross_mask {
  int enc_len;
  __device__ bool operator() (int t) const { return t >= enc_len; }
};

template <typename T>
__global__ void
cross_attention_kernel (const T *q, int rows, const T *kv, int ld_kv, const ck_step_params *sp, T *ctx,
    int H, int heads, float scale)
{
  const int item = blockIdx.x * DEC_WARPS + (threadIdx.x >> 5);
  if (item >= rows * heads)
    return;
  const int row = item / heads, h = item % heads, dk = H / heads;
  cross_mask mask = { sp->enc_len };
  attend (q + (size_t) row * H + h * dk, kv + h * dk, kv + H + h * dk, (size_t) ld_kv, sp->T, dk, scale,
      mask, ctx + (size_t) row * H + h * dk);
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
ck_dec_kv_append (ck_dtype dt, const void *qkv, int n_beams, int n_tokens, const ck_step_params *sp,
    const int *slot, void *k_cache, void *v_cache, int max_len, int H, cudaStream_t stream)
{
  const size_t n = (size_t) n_beams * n_tokens * H;
  if (!n)
    return cudaErrorInvalidValue;
  CK_DISPATCH (dt, kv_append_kernel<T><<<ck_blocks (n, DEC_THREADS), DEC_THREADS, 0, stream>>> (
      (const T *) qkv, n_tokens, n, sp, slot, (T *) k_cache, (T *) v_cache, max_len, H));
  return cudaGetLastError ();
}

extern "C" cudaError_t
ck_dec_self_attention (ck_dtype dt, const void *qkv, const int *tokens, int n_beams, int n_tokens,
    const ck_step_params *sp, const int *slot, const void *k_cache, const void *v_cache, int max_len,
    int pad_id, void *ctx, int H, int heads, cudaStream_t stream)
{
  if (check_heads (H, heads) != cudaSuccess || n_beams <= 0 || n_tokens <= 0)
    return cudaErrorInvalidValue;
  const int items = n_beams * n_tokens * heads;
  const float scale = 1.0f / sqrtf ((float) (H / heads));
  CK_DISPATCH (dt, self_attention_kernel<T><<<(items + DEC_WARPS - 1) / DEC_WARPS, 32 * DEC_WARPS, 0,
      stream>>> ((const T *) qkv, tokens, n_beams, n_tokens, sp, slot, (const T *) k_cache,
      (const T *) v_cache, max_len, pad_id, (T *) ctx, H, heads, scale));
  return cudaGetLastError ();
}

extern "C" cudaError_t
ck_dec_cross_attention (ck_dtype dt, const void *q, int rows, const void *kv, int ld_kv,
    const ck_step_params *sp, void *ctx, int H, int heads, cudaStream_t stream)
{
  if (check_heads (H, heads) != cudaSuccess || rows <= 0)
    return cudaErrorInvalidValue;
  const int items = rows * heads;
  const float scale = 1.0f / sqrtf ((float) (H / heads));
  CK_DISPATCH (dt, cross_attention_kernel<T><<<(items + DEC_WARPS - 1) / DEC_WARPS, 32 * DEC_WARPS, 0,
      stream>>> ((const T *) q, rows, (const T *) kv, ld_kv, sp, (T *) ctx, H, heads, scale));
  return cudaGetLastError ();
}
