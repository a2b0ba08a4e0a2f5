/* gst-canary — the checkpoint's layout: the name of every tensor the model reads, in one table
 * that every binder uses (the CPU encoder and decoder, the CUDA weight image, the random-model
 * builder in tools/), and the arithmetic on checkpoint tensors they share (the BatchNorm fold).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Names are NeMo's state-dict keys (docs/MODEL.md §formats, §encoder, §decoder). A binder asks
 * for a layer's part and a leaf ("weight", "bias", "running_mean", ...), so a renamed module is
 * fixed here once instead of in four places that could disagree. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Modules outside the layer stacks (add ".weight" / ".bias" where the name is a module). */
#define CANARY_KEY_SUB_CONV "encoder.pre_encode.conv"  /* + ".<index>", see canary_sub_conv_index */
#define CANARY_KEY_PRE_OUT "encoder.pre_encode.out"
/* untie_biases: false → one pair of position biases on the encoder, shared by every layer. */
#define CANARY_KEY_POS_BIAS_U "encoder.pos_bias_u"
#define CANARY_KEY_POS_BIAS_V "encoder.pos_bias_v"
#define CANARY_KEY_PROJ "encoder_decoder_proj"         /* only when the widths differ */
#define CANARY_KEY_TOKEN_EMB "transf_decoder._embedding.token_embedding.weight"
#define CANARY_KEY_POS_ENC "transf_decoder._embedding.position_embedding.pos_enc"
#define CANARY_KEY_EMB_LN "transf_decoder._embedding.layer_norm"
#define CANARY_KEY_FINAL_LN "transf_decoder._decoder.final_layer_norm"
#define CANARY_KEY_HEAD "log_softmax.mlp.layer0"       /* weight tied to the token embedding */

/* The dw_striding subsampling's nn.Sequential index of stage s's depthwise conv (s >= 1; conv.0
 * is the first full conv, ReLUs in between): 2, 5, 8, …; the pointwise conv follows at + 1. */
static inline int
canary_sub_conv_index (int stage)
{
  return 2 + 3 * (stage - 1);
}

/* The parts of one conformer layer, "encoder.layers.<i>.<part>". */
typedef enum {
  CANARY_ENC_NORM_FF1,
  CANARY_ENC_FF1_LINEAR1,
  CANARY_ENC_FF1_LINEAR2,
  CANARY_ENC_NORM_ATT,
  CANARY_ENC_ATT_Q,
  CANARY_ENC_ATT_K,
  CANARY_ENC_ATT_V,
  CANARY_ENC_ATT_OUT,
  CANARY_ENC_ATT_POS,       /* linear_pos, no bias */
  CANARY_ENC_POS_BIAS_U,    /* a tensor, not a module (untie_biases: true) */
  CANARY_ENC_POS_BIAS_V,
  CANARY_ENC_NORM_CONV,
  CANARY_ENC_CONV_PW1,
  CANARY_ENC_CONV_DW,
  CANARY_ENC_CONV_BN,
  CANARY_ENC_CONV_PW2,
  CANARY_ENC_NORM_FF2,
  CANARY_ENC_FF2_LINEAR1,
  CANARY_ENC_FF2_LINEAR2,
  CANARY_ENC_NORM_OUT,
  CANARY_ENC_N_PARTS
} canary_enc_part;

/* The parts of one transformer decoder layer, "transf_decoder._decoder.layers.<i>.<part>". */
typedef enum {
  CANARY_DEC_LN1,
  CANARY_DEC_LN2,
  CANARY_DEC_LN3,
  CANARY_DEC_SELF_Q,
  CANARY_DEC_SELF_K,
  CANARY_DEC_SELF_V,
  CANARY_DEC_SELF_OUT,
  CANARY_DEC_CROSS_Q,
  CANARY_DEC_CROSS_K,
  CANARY_DEC_CROSS_V,
  CANARY_DEC_CROSS_OUT,
  CANARY_DEC_FF_IN,
  CANARY_DEC_FF_OUT,
  CANARY_DEC_N_PARTS
} canary_dec_part;

/* "encoder.layers.<layer>.<part>" with ".<leaf>" appended unless leaf is NULL (the module
 * itself, or the tensor for the pos_bias parts). Free with g_free. */
char *canary_enc_key (int layer, canary_enc_part part, const char *leaf);
/* The same for "transf_decoder._decoder.layers.<layer>.<part>[.<leaf>]". */
char *canary_dec_key (int layer, canary_dec_part part, const char *leaf);
/* "<module>[.<leaf>]" for the modules above; "encoder.pre_encode.conv.<index>[.<leaf>]" with
 * index >= 0. */
char *canary_key (const char *module, int index, const char *leaf);

/* Folds the eval-mode BatchNorm that follows the conformer's depthwise conv into it:
 * bn(conv(x)) = s·(w∗x + b − mean) + beta with s = gamma / sqrt(var + CANARY_BN_EPS), into
 * fw[D][K], fb[D]. Computed in double, stored in FP32, so every backend gets the same bits. */
void canary_fold_batch_norm (const float *w, const float *b, const float *gamma, const float *beta,
    const float *mean, const float *var, int D, int K, float *fw, float *fb);

G_END_DECLS
