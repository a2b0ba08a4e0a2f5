/* gst-canary — the CUDA backend's weight image: every tensor the GPU code reads, converted once
 * on the host into one blob that is uploaded in one allocation (pure host code, tested on the CPU).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Conversions done here, once, so the kernels do less per window:
 *   - GEMM weights and biases in the activation type (FP16, or FP32 for precision=fp32);
 *   - per-channel parameters (LayerNorm, attention position biases, depthwise taps) in FP32;
 *   - BatchNorm folded into the depthwise conv in FP32 (canary_fold_batch_norm in layout.h),
 *     then kept in FP32;
 *   - q/k/v projections concatenated ([3D][D]) for one GEMM; every decoder layer's cross-attention
 *     K/V projections concatenated ([layers·2H][H]) for one GEMM per window;
 *   - the FF modules' second linear (weights and bias) scaled by 0.5 (exact in FP16: a power of
 *     two), so the residual add is the GEMM's beta = 1;
 *   - pre_encode.out's columns permuted from c·F'+f to f·C+c (the subsampling keeps channels
 *     last), and xscaling's sqrt(D) folded into it;
 *   - the tied embedding / output head stored once.
 * Offsets are bytes from the start of the blob, each CANARY_CUDA_ALIGN-aligned. */
#pragma once

#include <glib.h>

#include "formats/ckpt.h"
#include "formats/tensor.h"  /* the FP16 conversions */
#include "formats/config.h"
#include "cuda/plan.h"

G_BEGIN_DECLS

#define CANARY_CW_NONE ((gsize) -1)

typedef struct {
  gsize w;        /* [out][in], GEMM type */
  gsize b;        /* [out], GEMM type (FP32 for the head); CANARY_CW_NONE: no bias */
  int out, in;
} cw_linear;

typedef struct {
  gsize g, b;     /* FP32 [width] */
} cw_norm;

typedef struct {
  cw_norm ln_ff1, ln_att, ln_conv, ln_ff2, ln_out;
  cw_linear ff1_1, ff1_2, qkv, pos, att_out, pw1, pw2, ff2_1, ff2_2;
  gsize bias_u, bias_v;   /* FP32 [heads][dk] */
  gsize dw_w, dw_b;       /* FP32 [D][K], [D]: BatchNorm folded */
} cw_enc_layer;

typedef struct {
  cw_norm ln1, ln2, ln3;
  cw_linear self_qkv, self_out, cross_q, cross_out, ff_in, ff_out;
} cw_dec_layer;

typedef struct {
  canary_cuda_dims dims;
  gsize conv0_w, conv0_b;                              /* FP32 [C][9], [C] */
  gsize sub_dw_w[CANARY_CUDA_MAX_STAGES], sub_dw_b[CANARY_CUDA_MAX_STAGES];  /* FP32, stages 1.. */
  cw_linear sub_pw[CANARY_CUDA_MAX_STAGES];            /* [C][C], stages 1.. */
  cw_linear pre_out;                                   /* [D][F'·C], permuted */
  cw_enc_layer *enc;
  cw_linear proj;                                      /* w == CANARY_CW_NONE: identity */
  gsize tok_emb, pos_enc;                              /* [V][H], [max_len][H] */
  cw_norm emb_ln, final_ln;
  cw_dec_layer *dec;
  cw_linear cross_kv;                                  /* [layers·2H][H] */
  cw_linear head;                                      /* w: the embedding when tied; b FP32 */
  gsize bytes;                                         /* size of the blob */
  guint8 *blob;                                        /* host image (NULL after the upload) */
} canary_cuda_weights;

/* Builds the image of `ck` for the CUDA code in `dtype`. The checkpoint must already have bound
 * (canary_encoder_new, canary_decoder_new): shapes are taken from `cfg` and each tensor's element
 * count is checked again (CANARY_ERROR_FORMAT naming the key). CANARY_ERROR_UNSUPPORTED for
 * shapes the kernels do not run (attention head width > 256, width > 4096, a non-dw_striding
 * subsampling); CANARY_ERROR_OUT_OF_MEMORY with the byte count when the host image does not fit. */
canary_cuda_weights *canary_cuda_weights_build (const canary_config *cfg, const canary_ckpt *ck,
    canary_cuda_dtype dtype, GError **error);
void canary_cuda_weights_free (canary_cuda_weights *w);
/* The shapes alone (what canary_cuda_weights_build checks first), for planning. */
gboolean canary_cuda_dims_from_config (const canary_config *cfg, const canary_ckpt *ck, canary_cuda_dtype dtype,
    canary_cuda_dims *dims, GError **error);
/* Frees the host image once it is on the device; the offsets stay. */
void canary_cuda_weights_drop_blob (canary_cuda_weights *w);

G_END_DECLS
