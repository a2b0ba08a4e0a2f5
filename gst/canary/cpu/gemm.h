/* gst-canary — the CPU model's GEMM: one job form for every matrix product, tiled over a thread
 * team with an AVX-512 micro-kernel, or one cblas_sgemm per job on the portable path.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A job computes CT[n][m] = act(bias[n] + Σ_k W(n, k) · XT[k][m]) for n < N, m < M, with
 * W(n, k) = w[n·sn + k·sk]: sk = 1 is a torch [out][in] weight read in place from the
 * checkpoint, sn = 1 a transposed activation. Inputs and outputs are transposed
 * ([feature][time]), so one GEMM's output is the next one's input without copies. The
 * micro-kernel reads whole tiles: every XT row needs CANARY_GEMM_TILE_M floats of readable slack
 * past its last column (ordinary numbers: they are read, never used).
 *
 * Why our own kernel: weights are broadcast from where they lie (no packing of the checkpoint's
 * gigabytes), bias and activation are fused into the store, and a callback (`done`) runs on each
 * finished block of rows on the thread that computed it, while it is still in cache.
 */
#pragma once

#include <glib.h>

#include "cpu/simd.h"
#include "cpu/team.h"

G_BEGIN_DECLS

#define CANARY_GEMM_TILE_M 64  /* columns (time steps) of the micro-tile, 4 vectors */
#define CANARY_GEMM_MAX_JOBS 8 /* jobs one canary_gemm_run takes */

/* Where GEMMs run: the path, the team (NULL: the calling thread alone) and the buffer of partial
 * sums for jobs split along K (grown on first use; free with canary_gemm_clear). */
typedef struct {
  gboolean simd;       /* canary_simd_enabled (): tiles and micro-kernel, else cblas */
  canary_team *team;
  float *part;
  gsize part_n;
  /* FP16 weights (jobs with w16): the AVX2/F16C kernel (canary_f16_simd_enabled ()) or the
   * portable scalar one, and without the AVX-512 path the team their row blocks run on (NULL:
   * the calling thread alone). */
  gboolean f16_simd;
  canary_team *f16_team;
} canary_gemm;

typedef struct _canary_gemm_job canary_gemm_job;
/* Runs once per finished block of rows [n0, n1) (after bias and act). */
typedef void (*canary_gemm_done_fn) (const canary_gemm *g, const canary_gemm_job *job, int n0,
    int n1);

struct _canary_gemm_job {
  int N, M, K;
  const float *w;
  gsize sn, sk;
  /* IEEE FP16 weights used instead of w when set (same strides; sk must be 1): each tile is
   * converted to FP32 in registers/L1, the sums are FP32. */
  const guint16 *w16;
  const float *xt;
  gsize ldx;
  float *ct;
  gsize ldc;
  const float *bias;    /* [N] or NULL */
  int act;              /* CANARY_ACT_* */
  int chunk;            /* rows per work item (0: the default, 48) */
  canary_gemm_done_fn done;
  /* Free for the done callbacks. */
  float *dst;
  gsize ldd;
  float scale;
  int m_tot;
  const float *aux1, *aux2;
  const void *user;
};

/* Rows [n0, n1) of a job on the calling thread, then its done callback. */
void canary_gemm_rows (const canary_gemm *g, const canary_gemm_job *job, int n0, int n1);

/* Runs independent jobs together, spread over the team (without the AVX-512 path or a team,
 * one after the other on the calling thread). */
void canary_gemm_run (canary_gemm *g, const canary_gemm_job *jobs, int n_jobs);

/* Whether the FP16 kernels may use AVX2 + FMA + F16C: the CPU has them and neither
 * CANARY_ENCODER_SIMD=0 nor CANARY_F16_SIMD=0 is set (both force the portable scalar kernels). */
gboolean canary_f16_simd_enabled (void);

/* The kernels canary_f16_linear can run: the portable C loop, AVX2 + F16C (one weight row at a
 * time), AVX-512 (four weight rows at a time from 4 activation rows on, else AVX2's one row),
 * and AVX-512's four rows at every row count (for tools/canary-gemv-bench, which compares them). */
typedef enum {
  CANARY_F16_LINEAR_PORTABLE,
  CANARY_F16_LINEAR_AVX2,
  CANARY_F16_LINEAR_AVX512,
  CANARY_F16_LINEAR_AVX512_FOUR_ROWS,
} canary_f16_linear_path;

/* The fastest path this CPU has: portable unless canary_f16_simd_enabled (); AVX-512 when the
 * CPU has AVX-512F (canary_simd_enabled ()) and CANARY_F16_AVX512=0 is not set. */
canary_f16_linear_path canary_f16_linear_best (void);

/* y[r][o] = b[o] + Σ_k x[r][k] · W16[o][k] for r < rows and o in [o0, o1) (nn.Linear with FP16
 * weights [out][in], x and y row-major with rows in and out floats apart), FP32 sums. path must
 * be one this CPU has (at most canary_f16_linear_best ()). */
void canary_f16_linear (canary_f16_linear_path path, const guint16 *w, const float *b, int out,
    int in, const float *x, int rows, float *y, int o0, int o1);

/* dst[i] = the FP32 value of src[i] (exact). */
void canary_f16_row_to_f32 (gboolean simd, const guint16 *src, float *dst, gsize n);

/* Frees the partial-sum buffer (the team is the caller's). */
void canary_gemm_clear (canary_gemm *g);

G_END_DECLS
