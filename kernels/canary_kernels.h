/* gst-canary — the CUDA kernels of the engine's GPU backend, as C-callable launchers.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every launcher enqueues its work on `stream` and returns cudaGetLastError() (cudaSuccess or the
 * launch error), so the host checks each launch. `dt` selects the element type of activations
 * and GEMM weights (CK_F16 or CK_F32); the small per-channel parameters (LayerNorm gamma/beta,
 * folded depthwise taps, attention position biases) are always FP32, and so is every statistic
 * (LayerNorm mean/variance, softmax max/sum, log-softmax of the logits).
 *
 * Layouts are row-major. Encoder activations are [time][channel]; the subsampling's 2-D maps are
 * [time][freq][channel] (channels last, so its pointwise convs are plain GEMMs). */
#pragma once

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  CK_F32 = 0,
  CK_F16 = 1,
} ck_dtype;

/* Decoder step parameters, read by the kernels from device memory so that a captured step
 * replays unchanged: `pos` is the absolute position of the step's first token and advances
 * when the step's argmax runs. */
typedef struct {
  int pos;        /* first position of this step */
  int T;          /* encoder frames of the current window */
  int enc_len;    /* valid frames among them */
  int pad;        /* reserved, keeps the struct 16 bytes */
} ck_step_params;

/* Output of the device argmax: the chosen id and its log-probability (FP32 log-softmax). */
typedef struct {
  int token;
  float logp;
} ck_choice;

/* ---- norm.cu --------------------------------------------------------------------------- */

/* y[r] = LN(x[r]) · g + b over D channels (eps 1e-5, FP32 statistics), `rows` rows; y may be x. */
cudaError_t ck_layer_norm (ck_dtype dt, const void *x, const float *g, const float *b, void *y,
    int rows, int D, cudaStream_t stream);

/* x[r] = LN1(x[r]) in place, then y[r] = LN2(x[r]): a layer's norm_out followed by the next
 * layer's first LayerNorm in one pass. */
cudaError_t ck_layer_norm2 (ck_dtype dt, void *x, const float *g1, const float *b1, const float *g2,
    const float *b2, void *y, int rows, int D, cudaStream_t stream);

/* ---- elementwise.cu -------------------------------------------------------------------- */

/* x = x · sigmoid(x) over n elements (the FF Swish after linear1's bias epilogue). */
cudaError_t ck_swish (ck_dtype dt, void *x, size_t n, cudaStream_t stream);

/* Counts the non-finite elements of x[n] into *count (an int in device memory, added to). */
cudaError_t ck_count_nonfinite (ck_dtype dt, const void *x, size_t n, int *count, cudaStream_t stream);

/* dst[i] = (dtype) src[i]: FP32 rows into the activation type. */
cudaError_t ck_from_f32 (ck_dtype dt, const float *src, void *dst, size_t n, cudaStream_t stream);

/* dst[i] = (float) src[i]. */
cudaError_t ck_to_f32 (ck_dtype dt, const void *src, float *dst, size_t n, cudaStream_t stream);

/* ---- subsample.cu ---------------------------------------------------------------------- */

/* conv.0 (3x3, stride 2, padding 1, 1 → C channels) + ReLU on the mel features mel[n_mels][ld]
 * (time t < len0 valid, the rest read as zero). out[t][f][c] for t < len1, zero for len1 <= t <
 * t1. Weights w[C][9] and bias b[C] in FP32. */
cudaError_t ck_conv0_relu (ck_dtype dt, const float *mel, int ld, int n_mels, int len0,
    const float *w, const float *b, void *out, int C, int t1, int f1, int len1, cudaStream_t stream);

/* conv.0 + ReLU fused with the second stage's depthwise conv (w, b: FP32 [C][9], [C]): out is
 * the stage-2 map [t2][f2][C], rows t >= len2 zero; conv.0's output is never stored. */
cudaError_t ck_conv0_dw_s2 (ck_dtype dt, const float *mel, int ld, int n_mels, int len0,
    const float *w0, const float *b0, int f1, int len1, const float *w, const float *b, void *out,
    int C, int t2, int f2, int len2, cudaStream_t stream);

/* Depthwise 3x3, stride 2, padding 1 on in[t_in][f_in][C] → out[t_out][f_out][C] (no
 * activation), rows t >= len_out zero (NeMo's masking before the pointwise conv). */
cudaError_t ck_depthwise_s2 (ck_dtype dt, const void *in, int t_in, int f_in, const float *w,
    const float *b, void *out, int C, int t_out, int f_out, int len_out, cudaStream_t stream);

/* ---- conv.cu --------------------------------------------------------------------------- */

/* The conformer convolution module between its two pointwise convs, in one pass:
 * pw1[T][2D] → GLU (a · sigmoid(gate)) → rows t >= L zeroed → depthwise conv along time (K taps,
 * zero padding (K−1)/2, BatchNorm folded into w[D][K], b[D]) → Swish → out[T][D]. */
cudaError_t ck_glu_dwconv_swish (ck_dtype dt, const void *pw1, const float *w, const float *b,
    void *out, int n_time, int L, int D, int K, cudaStream_t stream);

/* ---- attention.cu ---------------------------------------------------------------------- */

/* Transformer-XL relative-position self-attention of the encoder, without materialising the
 * score or the shifted matrix: for query i < L and head h,
 *   s_j = ((q_i + u_h)·k_j + (q_i + v_h)·p_{L−1−i+j}) / sqrt(dk),   j < L,
 * online softmax, ctx_i = Σ softmax_j · v_j. Queries i >= L get a zero context (NeMo masks the
 * whole row). q, k, v are column blocks of one [T][ld_qkv] buffer; p[2L−1][D]. dk <= 256. */
cudaError_t ck_relpos_attention (ck_dtype dt, const void *q, const void *k, const void *v,
    int ld_qkv, const void *p, const float *bias_u, const float *bias_v, void *ctx, int n_time,
    int L, int H, int dk, cudaStream_t stream);

/* ---- decoder.cu ------------------------------------------------------------------------ */

/* x[r] = LN(tok_emb[tokens[r]] + pos_enc[sp->pos + r % n_tokens]) for rows = n_beams·n_tokens. */
cudaError_t ck_dec_embed (ck_dtype dt, const int *tokens, int rows, int n_tokens,
    const ck_step_params *sp, const void *tok_emb, const void *pos_enc, const float *g,
    const float *b, void *x, int H, cudaStream_t stream);

/* Causal self-attention of the step's rows (q|k|v = qkv[rows][3H], rows = n_beams·n_tokens) over
 * the cached keys 0..sp->pos−1 of each hypothesis' slot and the step's own keys, with NeMo's
 * additive −10000 mask (keys after the query, PAD among this step's tokens; see decoder.c
 * self_key_masked); scores scaled by 1/sqrt(d_head); ctx[rows][H]. Also appends the step's K/V to
 * the cache: cache[slot[beam]][sp->pos + t][H], rows max_len apart per slot. */
cudaError_t ck_dec_self_attention (ck_dtype dt, const void *qkv, const int *tokens, int n_beams,
    int n_tokens, const ck_step_params *sp, const int *slot, void *k_cache, void *v_cache,
    int max_len, int pad_id, void *ctx, int H, int heads, cudaStream_t stream);

/* Cross-attention of q[rows][H] over one layer's K/V (columns [0, H) and [H, 2H) of rows
 * `ld_kv` elements apart), sp->T frames of which frames >= sp->enc_len get −10000. */
cudaError_t ck_dec_cross_attention (ck_dtype dt, const void *q, int rows, const void *kv,
    int ld_kv, const ck_step_params *sp, void *ctx, int H, int heads, cudaStream_t stream);

/* ---- logits.cu ------------------------------------------------------------------------- */

/* For logits[0][V] (FP32): the first maximum and its log-softmax value into *out; then
 * next_token[0] = that id and sp->pos += advance (the step's token count), so the next replay
 * of a captured step continues where this one ended. */
cudaError_t ck_argmax_advance (const float *logits, int V, ck_choice *out, int *next_token,
    ck_step_params *sp, int advance, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
