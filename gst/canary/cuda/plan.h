/* gst-canary — the CUDA backend's shapes and its workspace arena plan (pure host code, built and
 * tested with or without CUDA).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A canary_cuda_state owns one device allocation, the arena, carved into the regions below at
 * fixed offsets. The plan is sized once for the worst case the state accepts (the longest window,
 * the largest beam, the longest single decoder call), so nothing is allocated per window or per
 * token, and a captured decoder step sees the same addresses on every replay. docs/cuda.md
 * gives the closed form of every size. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Bytes per element of the activation/GEMM type. */
typedef enum {
  CANARY_CUDA_F32 = 0,  /* the values match ck_dtype */
  CANARY_CUDA_F16 = 1,
} canary_cuda_dtype;

#define CANARY_CUDA_MAX_STAGES 6
#define CANARY_CUDA_ALIGN 256          /* every region and weight starts on this boundary */
/* cuBLASLt workspace bytes: NVIDIA recommends 32 MiB on Hopper (sm_90) for its best kernels. */
#define CANARY_CUDA_LT_WORKSPACE (32u << 20)

/* The model's shapes, as the CUDA code uses them. */
typedef struct {
  canary_cuda_dtype dtype;
  /* encoder */
  int n_mels, chans, n_stages, d, heads, dk, ff, kernel, enc_layers, out_dim;
  gboolean has_proj;
  /* decoder */
  int H, dec_heads, inner, dec_layers, max_len, V;
} canary_cuda_dims;

/* The arena's regions. */
typedef enum {
  CR_MEL,        /* FP32 [n_mels][max_frames]: features uploaded from the host */
  CR_SUB_A,      /* subsampling maps [t][f][C] (stage 2 on; stage 1 only as the last), ping */
  CR_SUB_B,      /*                              pong */
  CR_X,          /* residual stream [T][D] */
  CR_H,          /* LayerNorm output [T][D] */
  CR_BIG,        /* FF hidden / pointwise-conv1 output [T][max(ff, 2D)] */
  CR_QKV,        /* [T][3D] */
  CR_CTX,        /* attention context / conv output [T][D] */
  CR_POS_TABLE,  /* sinusoids for positions Tmax−1 … −(Tmax−1) [2Tmax−1][D] */
  CR_P,          /* linear_pos output [2T−1][D] */
  CR_ENC_OUT,    /* encoder→decoder projection output [T][out_dim] (empty without one) */
  CR_CROSS_KV,   /* every decoder layer's cross K|V [T][layers·2H] */
  CR_SELF_K,     /* self-attention cache [layers][max_beam][max_len][H] */
  CR_SELF_V,
  CR_DX,         /* decoder rows [R][H] */
  CR_DH,
  CR_DQKV,       /* [R][3H] */
  CR_DCTX,       /* [R][H] */
  CR_DFF,        /* [R][inner] */
  CR_LOGITS,     /* FP32 [R][V] */
  CR_TOKENS,     /* int [R] */
  CR_SLOT,       /* int [max_beam]: hypothesis → cache slot */
  CR_PARAMS,     /* ck_step_params */
  CR_CHOICE,     /* ck_choice */
  CR_FLAGS,      /* int [4]: the debug non-finite counter */
  CR_LT_WS,      /* cuBLASLt workspace */
  CR_N_REGIONS
} canary_cuda_region_id;

typedef struct {
  const char *name;
  gsize offset, bytes;
} canary_cuda_region;

typedef struct {
  int max_frames;            /* mel frames of the longest window */
  int max_beam;
  int max_rows;              /* decoder rows of the largest call: max(max_beam, max_step_tokens) */
  int t_max;                 /* encoder frames of the longest window */
  int sub_t[CANARY_CUDA_MAX_STAGES + 1], sub_f[CANARY_CUDA_MAX_STAGES + 1];
  canary_cuda_region region[CR_N_REGIONS];
  gsize total;               /* bytes of the arena */
} canary_cuda_plan;

/* ceil(n / 2) per stride-2 stage, as NeMo's calc_length. */
int canary_cuda_stride2 (int n);

/* Lays the arena out for windows of up to max_frames mel frames, beams of up to max_beam and
 * single decoder calls of up to max_step_tokens tokens. CANARY_ERROR_INVALID_ARGUMENT for
 * limits out of range, CANARY_ERROR_OUT_OF_MEMORY when the total does not fit a gsize. */
gboolean canary_cuda_plan_make (const canary_cuda_dims *dims, int max_frames, int max_beam,
    int max_step_tokens, canary_cuda_plan *plan, GError **error);

/* The arena size by the closed form of docs/cuda.md (without alignment padding): what the
 * tests hold the plan to, and what the benchmark prints. */
guint64 canary_cuda_plan_formula (const canary_cuda_dims *dims, int max_frames, int max_beam,
    int max_step_tokens);

/* The encoder's relative positions t_max−1 … −(t_max−1) as NeMo's RelPositionalEncoding computes
 * them (FP32, sin on even channels, cos on odd; docs/MODEL.md, Encoder: relative-position encoding): out[2·t_max−1][D]. A window of
 * L valid frames uses rows t_max−L … t_max+L−2. */
void canary_cuda_pos_table (int t_max, int D, float *out);

G_END_DECLS
