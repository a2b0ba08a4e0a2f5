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

#include "cuda_plan.h"
#include "cuda_weights.h"

G_BEGIN_DECLS

/* The device-side step parameters and argmax output, as laid out in the arena's CR_PARAMS and
 * CR_CHOICE regions (the kernels' ck_step_params and ck_choice; cuda_state.c checks that the two
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
  canary_cuda_op op;
  int layer;                  /* decoder layer, −1 outside the blocks */
  union {
    cl_gemm gemm;
    cl_norm norm;
    cl_embed embed;
    cl_self self;
    cl_cross cross;
    cl_argmax argmax;
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

G_END_DECLS
