/* gst-canary — the GEMM tiler and its AVX-512 micro-kernel (see gemm.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cpu/gemm.h"

#include <cblas.h>
#include <stdlib.h>

#include "cpu/avx512.h"

#define TILE_N 6              /* micro-tile: output rows (weight rows) */
#define TILE_M CANARY_GEMM_TILE_M
#define KC 1024               /* k block, at most: a 6 x 1024 weight tile stays in L1 */
#define CHUNK_N 48            /* rows per work item: 8 tiles, 3 blocks of 16 to transpose */
#define MAX_JOBS CANARY_GEMM_MAX_JOBS
#define XT_BLOCK_BYTES (512 * 1024)  /* XT slice one work item reads: about a quarter of the L2 */

static gsize
round_up (gsize n, gsize m)
{
  return (n + m - 1) / m * m;
}

#if CANARY_HAVE_AVX512
/* The GEMM micro-kernel: a TILE_N x TILE_M block of CT (rows n, columns m) over kc steps of k:
 *   CT[j][m] (+)= Σ_k W[j·sn + k·sk] · XT[k][m].
 * Weights are broadcast from where they lie (the checkpoint's [out][in] rows, or a transposed
 * activation in the attention), the 64 columns are 4 vectors of XT: no packing, no horizontal
 * sums. Rows past nr repeat row nr-1 and are not stored; columns past mv are not stored.
 * first: store (else add to CT); last: then add the bias and apply act. (Software prefetch of
 * the next tile measured neutral: the hardware prefetchers follow the weight rows.) */
AVX512 static void
kernel_6x64 (const float *xt, gsize ldx, const float *w, gsize sn, gsize sk, int kc, float *ct,
    gsize ldc, int nr, int mv, gboolean first, gboolean last, const float *bias, int act)
{
  __m512 acc[TILE_N][4];
  gsize off[TILE_N];
  _Pragma ("GCC unroll 8")
  for (int j = 0; j < TILE_N; j++) {
    off[j] = (gsize) MIN (j, nr - 1) * sn;
    _Pragma ("GCC unroll 4")
    for (int v = 0; v < 4; v++)
      acc[j][v] = _mm512_setzero_ps ();
  }
  const float *x = xt, *wk = w;
  for (int k = 0; k < kc; k++, x += ldx, wk += sk) {
    __m512 a[4];
    _Pragma ("GCC unroll 4")
    for (int v = 0; v < 4; v++)
      a[v] = _mm512_loadu_ps (x + 16 * v);
    _Pragma ("GCC unroll 8")
    for (int j = 0; j < TILE_N; j++) {
      const __m512 b = _mm512_set1_ps (wk[off[j]]);
      _Pragma ("GCC unroll 4")
      for (int v = 0; v < 4; v++)
        acc[j][v] = _mm512_fmadd_ps (a[v], b, acc[j][v]);
    }
  }
  __mmask16 mask[4];
  for (int v = 0; v < 4; v++)
    mask[v] = tail_mask (mv - 16 * v);
  _Pragma ("GCC unroll 8")
  for (int j = 0; j < TILE_N; j++) {
    if (j >= nr)
      break;
    float *c = ct + (gsize) j * ldc;
    const __m512 bj = _mm512_set1_ps (bias && last ? bias[j] : 0.0f);
    _Pragma ("GCC unroll 4")
    for (int v = 0; v < 4; v++) {
      if (!mask[v])
        break;
      __m512 r = acc[j][v];
      if (!first)
        r = _mm512_add_ps (_mm512_maskz_loadu_ps (mask[v], c + 16 * v), r);
      if (last) {
        if (bias)
          r = _mm512_add_ps (r, bj);
        if (act == CANARY_ACT_SWISH)
          r = swish16 (r);
        else if (act == CANARY_ACT_RELU)
          r = _mm512_max_ps (r, _mm512_setzero_ps ());
      }
      _mm512_mask_storeu_ps (c + 16 * v, mask[v], r);
    }
  }
}
#endif

#if CANARY_HAVE_AVX512
/* Rows [n0, n1), columns [m0, m1) of a job over k in [k0, k1) (in equal blocks of at most KC),
 * into dst (row stride ldd, same row/column indexing as CT). epilogue: add the bias and apply
 * the activation at the end (else the raw sum is stored). */
static void
gemm_tiles (const canary_gemm_job *j, int n0, int n1, int m0, int m1, int k0, int k1, float *dst,
    gsize ldd, gboolean epilogue)
{
  const int kblocks = (k1 - k0 + KC - 1) / KC;
  const int kcb = (int) round_up ((k1 - k0 + kblocks - 1) / kblocks, 16);
  for (int kb = k0; kb < k1; kb += kcb) {
    const int kc = MIN (kcb, k1 - kb);
    const gboolean first = kb == k0, last = kb + kc == k1 && epilogue;
    for (int n = n0; n < n1; n += TILE_N) {
      const int nr = MIN (TILE_N, n1 - n);
      const float *wt = j->w + (gsize) n * j->sn + (gsize) kb * j->sk;
      for (int m = m0; m < m1; m += TILE_M)
        kernel_6x64 (j->xt + (gsize) kb * j->ldx + m, j->ldx, wt, j->sn, j->sk, kc,
            dst + (gsize) n * ldd + m, ldd, nr, MIN (TILE_M, m1 - m), first, last,
            j->bias ? j->bias + n : NULL, j->act);
    }
  }
}
#endif

void
canary_gemm_rows (const canary_gemm *g, const canary_gemm_job *j, int n0, int n1)
{
  if (n1 <= n0)
    return;
  if (j->M > 0 && j->K > 0) {
#if CANARY_HAVE_AVX512
    if (g->simd)
      gemm_tiles (j, n0, n1, 0, j->M, 0, j->K, j->ct, j->ldc, TRUE);
    else
#endif
    {
      const int rows = n1 - n0;
      if (j->sk == 1)
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, j->M, j->K, 1.0f,
            j->w + (gsize) n0 * j->sn, (int) j->sn, j->xt, (int) j->ldx, 0.0f,
            j->ct + (gsize) n0 * j->ldc, (int) j->ldc);
      else
        cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, rows, j->M, j->K, 1.0f,
            j->w + n0, (int) j->sk, j->xt, (int) j->ldx, 0.0f, j->ct + (gsize) n0 * j->ldc,
            (int) j->ldc);
      if (j->bias || j->act != CANARY_ACT_NONE) {
        for (int n = n0; n < n1; n++) {
          float *c = j->ct + (gsize) n * j->ldc;
          const float b = j->bias ? j->bias[n] : 0.0f;
          for (int m = 0; m < j->M; m++)
            c[m] = canary_activate (j->bias ? c[m] + b : c[m], j->act);
        }
      }
    }
  }
  if (j->done)
    j->done (g, j, n0, n1);
}


#if CANARY_HAVE_AVX512

/* How a job is cut into work items for the team: K in `parts` (each at most KC; partial sums
 * of parts 1… go to the part buffer and are added to part 0's in order, which is the order of
 * the single-threaded k blocks), M in blocks whose XT slice fits XT_BLOCK_BYTES, N in chunks.
 * Items run part by part, then block by block, so the threads share one XT slice at a time. */
typedef struct {
  int parts, kpart, mblocks, mbw, chunks, chunk, first_item;
  float *part;       /* parts - 1 slices [N][ldp] */
  gsize ldp;
  gint *count;       /* items finished per chunk (when a chunk has several) */
} job_plan;

typedef struct {
  const canary_gemm *g;
  canary_team *t;
  const canary_gemm_job *jobs;
  int n_jobs, n_items;
  job_plan plan[MAX_JOBS];
} gemm_batch;

static void
plan_job (const canary_gemm_job *j, gboolean split_k, job_plan *p)
{
  p->parts = split_k ? (j->K + KC - 1) / KC : 1;
  p->kpart = (int) round_up ((j->K + p->parts - 1) / p->parts, 16);
  p->parts = (j->K + p->kpart - 1) / p->kpart;
  const gsize per_col = (gsize) MIN (j->K, KC) * sizeof (float);
  p->mbw = (int) MAX (TILE_M, XT_BLOCK_BYTES / per_col / TILE_M * TILE_M);
  p->mblocks = MAX (1, (j->M + p->mbw - 1) / p->mbw);
  p->chunk = j->chunk > 0 ? j->chunk : CHUNK_N;
  p->chunks = (j->N + p->chunk - 1) / p->chunk;
  p->ldp = round_up (MAX (j->M, 1), TILE_M);
  p->part = NULL;
  p->count = NULL;
}

/* Floats of part buffer a job needs. */
static gsize
part_floats (const job_plan *p, const canary_gemm_job *j)
{
  return p->parts > 1 ? (gsize) (p->parts - 1) * j->N * p->ldp : 0;
}

/* Rows [n0, n1) once every part is in: CT += parts 1…, then bias and activation. */
AVX512 static void
combine_parts (const canary_gemm_job *j, const job_plan *p, int n0, int n1)
{
  for (int n = n0; n < n1; n++) {
    float *c = j->ct + (gsize) n * j->ldc;
    const __m512 b = _mm512_set1_ps (j->bias ? j->bias[n] : 0.0f);
    for (int m = 0; m < j->M; m += 16) {
      const __mmask16 mm = tail_mask (j->M - m);
      __m512 v = _mm512_maskz_loadu_ps (mm, c + m);
      for (int q = 1; q < p->parts; q++)
        v = _mm512_add_ps (v, _mm512_maskz_loadu_ps (mm, p->part + ((gsize) (q - 1) * j->N + n)
            * p->ldp + m));
      if (j->bias)
        v = _mm512_add_ps (v, b);
      if (j->act == CANARY_ACT_SWISH)
        v = swish16 (v);
      else if (j->act == CANARY_ACT_RELU)
        v = _mm512_max_ps (v, _mm512_setzero_ps ());
      _mm512_mask_storeu_ps (c + m, mm, v);
    }
  }
}

static void
gemm_batch_fn (void *ctx, int tid)
{
  const gemm_batch *b = ctx;
  for (int it; (it = canary_team_next (b->t)) < b->n_items;) {
    int jx = 0;
    while (jx + 1 < b->n_jobs && it >= b->plan[jx + 1].first_item)
      jx++;
    const canary_gemm_job *j = &b->jobs[jx];
    const job_plan *p = &b->plan[jx];
    const int local = it - p->first_item, per_part = p->mblocks * p->chunks;
    const int q = local / per_part, mb = local % per_part / p->chunks, c = local % p->chunks;
    const int n0 = c * p->chunk, n1 = MIN (n0 + p->chunk, j->N);
    const int m0 = mb * p->mbw, m1 = MIN (m0 + p->mbw, j->M);
    const int k0 = q * p->kpart, k1 = MIN (k0 + p->kpart, j->K);
    if (m1 > m0) {
      if (q == 0)
        gemm_tiles (j, n0, n1, m0, m1, k0, k1, j->ct, j->ldc, p->parts == 1);
      else
        gemm_tiles (j, n0, n1, m0, m1, k0, k1, p->part + (gsize) (q - 1) * j->N * p->ldp,
            p->ldp, FALSE);
    }
    if (p->count && g_atomic_int_add (&p->count[c], 1) != p->parts * p->mblocks - 1)
      continue;  /* another item of this chunk finishes it */
    if (p->parts > 1)
      combine_parts (j, p, n0, n1);
    if (j->done)
      j->done (b->g, j, n0, n1);
  }
}
#endif

void
canary_gemm_run (canary_gemm *g, const canary_gemm_job *jobs, int n_jobs)
{
  g_assert (n_jobs <= MAX_JOBS);
#if CANARY_HAVE_AVX512
  if (g->simd && g->team) {
    gemm_batch b = { g, g->team, jobs, n_jobs, 0, { { 0 } } };
    gsize need = 0, counters = 0;
    for (int i = 0; i < n_jobs; i++) {
      plan_job (&jobs[i], TRUE, &b.plan[i]);
      need += part_floats (&b.plan[i], &jobs[i]);
    }
    if (need > g->part_n) {
      /* Grown once; without it, parts are summed in place (k blocks inside one item). */
      void *mem = NULL;
      if (posix_memalign (&mem, 64, need * sizeof (float)) == 0) {
        free (g->part);
        g->part = mem;
        g->part_n = need;
      }
    }
    gsize part_off = 0;  /* each job its own slice of the part buffer */
    for (int i = 0; i < n_jobs; i++) {
      job_plan *p = &b.plan[i];
      if (p->parts > 1 && part_off + part_floats (p, &jobs[i]) > g->part_n)
        plan_job (&jobs[i], FALSE, p);
      p->part = g->part + part_off;
      part_off += part_floats (p, &jobs[i]);
      p->first_item = b.n_items;
      b.n_items += p->parts * p->mblocks * p->chunks;
      if (p->parts * p->mblocks > 1 && (p->parts > 1 || jobs[i].done))
        counters += p->chunks;
    }
    gint *count = counters ? g_new0 (gint, counters) : NULL, *next_count = count;
    for (int i = 0; i < n_jobs; i++) {
      job_plan *p = &b.plan[i];
      if (p->parts * p->mblocks > 1 && (p->parts > 1 || jobs[i].done)) {
        p->count = next_count;
        next_count += p->chunks;
      }
    }
    canary_team_run (g->team, gemm_batch_fn, &b);
    g_free (count);
    return;
  }
#endif
  for (int i = 0; i < n_jobs; i++)
    canary_gemm_rows (g, &jobs[i], 0, jobs[i].N);
}

void
canary_gemm_clear (canary_gemm *g)
{
  free (g->part);
  g->part = NULL;
  g->part_n = 0;
}
