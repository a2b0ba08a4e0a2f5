/* gst-canary — the encoder's weights as the binder (encoder_weights.c) leaves them for the
 * forward pass (encoder.c). Private to those two files.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "cpu/encoder.h"

#define SUB_K 3               /* dw_striding: 3x3 kernels, stride 2, padding 1 */
#define MAX_STAGES 6          /* subsampling factor up to 64 */

typedef struct {
  const float *w;  /* [out][in], torch Linear / 1x1 conv layout */
  const float *b;  /* [out] or NULL */
  const guint16 *w16;  /* the same weights in FP16 (canary_encoder_use_f16), else NULL */
} linear;

typedef struct {
  const float *ln_ff1_w, *ln_ff1_b;
  linear ff1_1, ff1_2;
  const float *ln_att_w, *ln_att_b;
  linear q, k, v, o;
  const float *pos_w;     /* linear_pos [D][D], no bias */
  const guint16 *pos_w16; /* its FP16 copy (canary_encoder_use_f16), else NULL */
  const float *bias_u;    /* pos_bias_u [H][dk] */
  const float *bias_v;
  const float *ln_conv_w, *ln_conv_b;
  linear pw1;             /* [2D][D] */
  const float *dw_w;      /* BatchNorm folded, [D][K] (owned) */
  const float *dw_b;      /* [D] (owned) */
  linear pw2;             /* [D][D] */
  const float *ln_ff2_w, *ln_ff2_b;
  linear ff2_1, ff2_2;
  const float *ln_out_w, *ln_out_b;
} enc_layer;

struct _canary_encoder {
  int d;          /* d_model */
  int heads;
  int dk;
  int ff;         /* d_model * ff_expansion_factor */
  int kernel;     /* conformer depthwise kernel */
  int n_layers;
  int n_mels;
  int chans;      /* subsampling channels */
  int n_stages;   /* log2(subsampling_factor) */
  int f_out;      /* frequency bins after subsampling */
  int out_dim;
  gboolean xscale;
  const float *conv0_w, *conv0_b;           /* [C][1][3][3], [C] */
  /* Depthwise/pointwise pair i (1 ≤ i < n_stages) makes stage i + 1; conv indices 2+3(i-1),
   * 3+3(i-1). dw [C][1][3][3], pw [C][C][1][1]. */
  const float *dw_w[MAX_STAGES], *dw_b[MAX_STAGES];
  linear pw[MAX_STAGES];
  linear pre_out;                           /* [D][C * f_out] */
  enc_layer *layers;
  linear proj;                              /* w == NULL: identity */
  GPtrArray *owned;                         /* buffers we allocated (converted/folded) */
  gsize owned_bytes;
  gboolean simd;                            /* AVX-512 kernels and threads */
  /* precision=fp16 (canary_encoder_use_f16): every GEMM weight above (the pointwise convs, the
   * Linears, linear_pos, pre_encode.out, the projection) also in one FP16 allocation, which the
   * GEMMs read instead; f16_simd: its AVX2/F16C kernels (canary_f16_simd_enabled). */
  guint16 *f16;
  gsize f16_elems;
  gboolean f16_simd;
};
