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
} canary_gemm;

typedef struct _canary_gemm_job canary_gemm_job;
/* Runs once per finished block of rows [n0, n1) (after bias and act). */
typedef void (*canary_gemm_done_fn) (const canary_gemm *g, const canary_gemm_job *job, int n0,
    int n1);

struct _canary_gemm_job {
  int N, M, K;
  const float *w;
  gsize sn, sk;
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

/* Frees the partial-sum buffer (the team is the caller's). */
void canary_gemm_clear (canary_gemm *g);

G_END_DECLS
