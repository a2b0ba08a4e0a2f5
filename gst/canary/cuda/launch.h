/* gst-canary — the CUDA decoder step as data: a fixed list of launches on fixed addresses
 * (pure host code, tested on the CPU).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A decoder step is built once per (hypotheses, tokens) shape from the weight image's offsets and
 * the arena plan; nothing in it depends on the position, the window or the tokens — those live
 * in device memory (ck_step_params, the token buffer). So the list the executor launches for one
 * token is the list it launches for every token, which is what makes capturing it once as a CUDA
 * graph and replaying it correct. Addresses are plain integers here so the list can be built and
 * checked without a GPU. */
#pragma once

#include <glib.h>

#include "cuda/plan.h"
#include "cuda/weights.h"

G_BEGIN_DECLS

/* The device-side step parameters and argmax output, as laid out in the arena's CR_PARAMS and
 * CR_CHOICE regions (the kernels' ck_step_params and ck_choice; cuda/state.c checks that the two
 * agree), for host code that reads or fills them without the CUDA headers. */
typedef struct {
  int pos, T, enc_len, pad;
} canary_cuda_step_params;

typedef struct {
  int token;
  float logp;
} canary_cuda_choice;

typedef enum {
  CL_EMBED,            /* tokens → LN(tok_emb + pos_enc) */
  CL_LAYER_NORM,
  CL_GEMM,             /* y[m][n] = x[m][k]·w[n][k]ᵀ (+ bias, ReLU) (+ beta·y) */
  CL_SELF_ATTENTION,   /* over the cache and the step's keys; appends the step's K/V */
  CL_CROSS_ATTENTION,
  CL_ARGMAX,           /* device argmax of logits row 0, next token, position advance */
  /* The encoder's own: */
  CL_CONV0,            /* conv.0 + ReLU (+ the stage-2 depthwise conv when fused) */
  CL_DEPTHWISE,        /* a later stage's depthwise 3x3 stride-2 conv */
  CL_ZERO,             /* zero bytes (the subsampling's padding mask) */
  CL_SWISH,
  CL_LAYER_NORM2,      /* norm_out of one layer + the next layer's first LayerNorm */
  CL_RELPOS,           /* relative-position self-attention */
  CL_GLU_CONV,         /* GLU + mask + depthwise conv (BatchNorm folded) + Swish */
  CL_CHECK,            /* the debug inf/NaN check of a buffer (no-op unless enabled) */
} canary_cuda_op;

typedef enum {
  CL_EPI_NONE,
  CL_EPI_BIAS,
  CL_EPI_RELU_BIAS,
} canary_cuda_epilogue;

typedef struct {
  guintptr x, w, bias, y;
  int m, n, k, ldx, ldy;
  canary_cuda_epilogue epilogue;
  float beta;                 /* 1: residual add into y */
  gboolean y_f32;             /* the logits */
} cl_gemm;

typedef struct {
  guintptr x, g, b, y;
  int rows, width;
} cl_norm;

typedef struct {
  guintptr tokens, tok_emb, pos_enc, g, b, x;
  int rows, n_tokens, width;
} cl_embed;

typedef struct {
  guintptr qkv, tokens, slot, k_cache, v_cache, ctx;
  int n_beams, n_tokens;
} cl_self;

typedef struct {
  guintptr q, kv, ctx;
  int rows, ld_kv;
} cl_cross;

typedef struct {
  guintptr logits, choice, next_token;
  int advance;
} cl_argmax;

typedef struct {
  guintptr mel, w0, b0, w, b, out;  /* w, b: the stage-2 depthwise conv (0: conv.0 alone) */
  int ld, n_mels, len0, f1, len1;   /* mel [n_mels][ld], len0 valid frames; stage-1 extent */
  int C, t_out, f_out, len_out;     /* output map [t_out][f_out][C] */
} cl_conv0;

typedef struct {
  guintptr in, w, b, out;
  int t_in, f_in, C, t_out, f_out, len_out;
} cl_depthwise;

typedef struct {
  guintptr p;
  gsize bytes;
} cl_zero;

typedef struct {
  guintptr x;
  gsize n;
} cl_swish;

typedef struct {
  guintptr x, g1, b1, g2, b2, y;
  int rows, width;
} cl_norm2;

typedef struct {
  guintptr qkv, p, bias_u, bias_v, ctx;   /* q|k|v columns of qkv, rows 3D apart */
  int T, L, heads, dk;
} cl_relpos;

typedef struct {
  guintptr pw1, w, b, out;
  int T, L, D, K;
} cl_glu_conv;

typedef struct {
  guintptr buf;
  gsize n;
  const char *stage;          /* static string */
} cl_check;

typedef struct {
  canary_cuda_op op;
  int layer;                  /* encoder/decoder layer, −1 outside the layers */
  union {
    cl_gemm gemm;
    cl_norm norm;
    cl_embed embed;
    cl_self self;
    cl_cross cross;
    cl_argmax argmax;
    cl_conv0 conv0;
    cl_depthwise depthwise;
    cl_zero zero;
    cl_swish swish;
    cl_norm2 norm2;
    cl_relpos relpos;
    cl_glu_conv glu;
    cl_check check;
  } u;
} canary_cuda_launch;

/* The launches of one decoder call for n_beams hypotheses × n_tokens tokens. `all_rows`: logits
 * for every row (teacher forcing), else for each hypothesis' last token; `argmax`: finish with
 * the device argmax (greedy, n_beams 1). wbase/abase: device addresses of the weight image and of
 * the arena. Appends canary_cuda_launch records to `out`; FALSE (CANARY_ERROR_INVALID_ARGUMENT)
 * for a shape outside the plan's limits. */
gboolean canary_cuda_step_launches (const canary_cuda_weights *w, const canary_cuda_plan *plan,
    guintptr wbase, guintptr abase, int n_beams, int n_tokens, gboolean all_rows, gboolean argmax,
    GArray *out, GError **error);

/* The encoder for one window of n_frames mel frames (n_valid valid) already in the arena's mel
 * region ([n_mels][n_frames]): subsampling, conformer layers, final LayerNorm, the optional
 * projection, then every decoder layer's cross-attention K/V — the same records whatever the
 * window's content, so the list is checked on the CPU like the decoder's. *t_enc / *enc_len get
 * the encoder frames and the valid ones. CANARY_ERROR_INVALID_AUDIO when the window is longer
 * than the plan's. */
gboolean canary_cuda_encoder_launches (const canary_cuda_weights *w, const canary_cuda_plan *plan,
    guintptr wbase, guintptr abase, int n_frames, int n_valid, int *t_enc, int *enc_len, GArray *out,
    GError **error);

/* Where the encoder output [t_enc][out_dim] lives in the arena: the projection's region when the
 * model has one, else x. */
canary_cuda_region_id canary_cuda_encoder_output_region (const canary_cuda_weights *w);

/* The window's memory alone: every decoder layer's cross-attention K/V from an encoder output
 * already in that region — the last record of the encoder's list. With it a test feeds NeMo's
 * encoder output to the decoder. CANARY_ERROR_INVALID_AUDIO when t_enc exceeds the plan's. */
gboolean canary_cuda_memory_launches (const canary_cuda_weights *w, const canary_cuda_plan *plan,
    guintptr wbase, guintptr abase, int t_enc, GArray *out, GError **error);

G_END_DECLS
