/* gst-canary — checkpoint tensor names and the BatchNorm fold (see layout.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "layout.h"

#include <math.h>

#include "nemo_constants.h"

static const char *const enc_parts[CANARY_ENC_N_PARTS] = {
  [CANARY_ENC_NORM_FF1] = "norm_feed_forward1",
  [CANARY_ENC_FF1_LINEAR1] = "feed_forward1.linear1",
  [CANARY_ENC_FF1_LINEAR2] = "feed_forward1.linear2",
  [CANARY_ENC_NORM_ATT] = "norm_self_att",
  [CANARY_ENC_ATT_Q] = "self_attn.linear_q",
  [CANARY_ENC_ATT_K] = "self_attn.linear_k",
  [CANARY_ENC_ATT_V] = "self_attn.linear_v",
  [CANARY_ENC_ATT_OUT] = "self_attn.linear_out",
  [CANARY_ENC_ATT_POS] = "self_attn.linear_pos",
  [CANARY_ENC_POS_BIAS_U] = "self_attn.pos_bias_u",
  [CANARY_ENC_POS_BIAS_V] = "self_attn.pos_bias_v",
  [CANARY_ENC_NORM_CONV] = "norm_conv",
  [CANARY_ENC_CONV_PW1] = "conv.pointwise_conv1",
  [CANARY_ENC_CONV_DW] = "conv.depthwise_conv",
  [CANARY_ENC_CONV_BN] = "conv.batch_norm",
  [CANARY_ENC_CONV_PW2] = "conv.pointwise_conv2",
  [CANARY_ENC_NORM_FF2] = "norm_feed_forward2",
  [CANARY_ENC_FF2_LINEAR1] = "feed_forward2.linear1",
  [CANARY_ENC_FF2_LINEAR2] = "feed_forward2.linear2",
  [CANARY_ENC_NORM_OUT] = "norm_out",
};

static const char *const dec_parts[CANARY_DEC_N_PARTS] = {
  [CANARY_DEC_LN1] = "layer_norm_1",
  [CANARY_DEC_LN2] = "layer_norm_2",
  [CANARY_DEC_LN3] = "layer_norm_3",
  [CANARY_DEC_SELF_Q] = "first_sub_layer.query_net",
  [CANARY_DEC_SELF_K] = "first_sub_layer.key_net",
  [CANARY_DEC_SELF_V] = "first_sub_layer.value_net",
  [CANARY_DEC_SELF_OUT] = "first_sub_layer.out_projection",
  [CANARY_DEC_CROSS_Q] = "second_sub_layer.query_net",
  [CANARY_DEC_CROSS_K] = "second_sub_layer.key_net",
  [CANARY_DEC_CROSS_V] = "second_sub_layer.value_net",
  [CANARY_DEC_CROSS_OUT] = "second_sub_layer.out_projection",
  [CANARY_DEC_FF_IN] = "third_sub_layer.dense_in",
  [CANARY_DEC_FF_OUT] = "third_sub_layer.dense_out",
};

char *
canary_enc_key (int layer, canary_enc_part part, const char *leaf)
{
  g_return_val_if_fail (part >= 0 && part < CANARY_ENC_N_PARTS, NULL);
  return g_strdup_printf ("encoder.layers.%d.%s%s%s", layer, enc_parts[part], leaf ? "." : "",
      leaf ? leaf : "");
}

char *
canary_dec_key (int layer, canary_dec_part part, const char *leaf)
{
  g_return_val_if_fail (part >= 0 && part < CANARY_DEC_N_PARTS, NULL);
  return g_strdup_printf ("transf_decoder._decoder.layers.%d.%s%s%s", layer, dec_parts[part],
      leaf ? "." : "", leaf ? leaf : "");
}

char *
canary_key (const char *module, int index, const char *leaf)
{
  GString *s = g_string_new (module);
  if (index >= 0)
    g_string_append_printf (s, ".%d", index);
  if (leaf)
    g_string_append_printf (s, ".%s", leaf);
  return g_string_free (s, FALSE);
}

void
canary_fold_batch_norm (const float *w, const float *b, const float *gamma, const float *beta,
    const float *mean, const float *var, int D, int K, float *fw, float *fb)
{
  for (int c = 0; c < D; c++) {
    const double s = (double) gamma[c] / sqrt ((double) var[c] + CANARY_BN_EPS);
    for (int k = 0; k < K; k++)
      fw[(gsize) c * K + k] = (float) (w[(gsize) c * K + k] * s);
    fb[c] = (float) (((double) b[c] - mean[c]) * s + beta[c]);
  }
}
