/* gst-canary — cuBLASLt GEMMs for the CUDA backend (see cuda/gemm.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Row-major y[m][n] = x[m][k]·wᵀ is column-major yᵀ (n×m) = op(A)·B with A = w seen as a
 * column-major k×n matrix (transposed) and B = xᵀ, a column-major k×m matrix: no copies, and
 * the bias runs along yᵀ's rows (cuBLASLt's bias vector of length n). */
#include "cuda/gemm.h"

#include <cublasLt.h>
#include <string.h>

#include "canary.h"
#include "cuda/device.h"

struct _canary_cuda_gemm {
  cublasLtHandle_t lt;
  void *ws;
  gsize ws_bytes;
  GHashTable *plans;  /* gemm_key → gemm_plan: descriptors, layouts and algorithm per shape */
};

/* Everything a GEMM's descriptors and algorithm depend on. The pointers' alignments are part of
 * it: cuBLASLt's heuristic assumes 256-byte aligned operands unless told otherwise, and some
 * operands are not (the rel-pos GEMM reads the positional table at an offset of (t_max − L)·D
 * elements, 64-byte aligned at small d_model). */
typedef struct {
  int dt, y_f32, m, n, k, ldx, ldy, epilogue, has_beta;
  guint32 align_w, align_x, align_y, align_bias;
} gemm_key;

typedef struct {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulAlgo_t algo;
} gemm_plan;

static guint
key_hash (gconstpointer p)
{
  const guint8 *b = p;
  guint32 h = 2166136261u;  /* FNV-1a */
  for (gsize i = 0; i < sizeof (gemm_key); i++)
    h = (h ^ b[i]) * 16777619u;
  return h;
}

static gboolean
key_equal (gconstpointer a, gconstpointer b)
{
  return memcmp (a, b, sizeof (gemm_key)) == 0;
}

static void
plan_free (gpointer p)
{
  gemm_plan *d = p;
  if (d->a)
    cublasLtMatrixLayoutDestroy (d->a);
  if (d->b)
    cublasLtMatrixLayoutDestroy (d->b);
  if (d->c)
    cublasLtMatrixLayoutDestroy (d->c);
  if (d->desc)
    cublasLtMatmulDescDestroy (d->desc);
  g_free (d);
}

canary_cuda_gemm *
canary_cuda_gemm_new (void *ws, gsize ws_bytes, GError **error)
{
  canary_cuda_gemm *g = g_new0 (canary_cuda_gemm, 1);
  if (!canary_cublas_ok (cublasLtCreate (&g->lt), "creating the cuBLASLt handle", error)) {
    g_free (g);
    return NULL;
  }
  g->ws = ws;
  g->ws_bytes = ws_bytes;
  g->plans = g_hash_table_new_full (key_hash, key_equal, g_free, plan_free);
  return g;
}

void
canary_cuda_gemm_free (canary_cuda_gemm *g)
{
  if (!g)
    return;
  g_hash_table_unref (g->plans);
  cublasLtDestroy (g->lt);
  g_free (g);
}

/* The largest power of two (up to 256) that divides the address. */
static guint32
alignment (guint64 addr)
{
  if (addr == 0)
    return 256;
  guint64 a = addr & (~addr + 1);
  return a > 256 ? 256 : (guint32) a;
}

static gboolean
plan_make (canary_cuda_gemm *g, const gemm_key *key, const cl_gemm *op, gemm_plan *d, GError **error)
{
  const cudaDataType_t ab = key->dt == CANARY_CUDA_F16 ? CUDA_R_16F : CUDA_R_32F;
  const cudaDataType_t cd = op->y_f32 ? CUDA_R_32F : ab;
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (op->epilogue == CL_EPI_BIAS)
    epi = CUBLASLT_EPILOGUE_BIAS;
  else if (op->epilogue == CL_EPI_RELU_BIAS)
    epi = CUBLASLT_EPILOGUE_RELU_BIAS;
  const cudaDataType_t bias_type = cd;

  if (!canary_cublas_ok (cublasLtMatmulDescCreate (&d->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
          "creating a matmul descriptor", error)
      || !canary_cublas_ok (cublasLtMatmulDescSetAttribute (d->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
          "setting TRANSA", error)
      || !canary_cublas_ok (cublasLtMatmulDescSetAttribute (d->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
          "setting TRANSB", error)
      || !canary_cublas_ok (cublasLtMatmulDescSetAttribute (d->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi),
          "setting the epilogue", error))
    return FALSE;
  if (epi != CUBLASLT_EPILOGUE_DEFAULT
      && !canary_cublas_ok (cublasLtMatmulDescSetAttribute (d->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
              &bias_type, sizeof bias_type), "setting the bias type", error))
    return FALSE;
  if (!canary_cublas_ok (cublasLtMatrixLayoutCreate (&d->a, ab, op->k, op->n, op->k), "layout of W", error)
      || !canary_cublas_ok (cublasLtMatrixLayoutCreate (&d->b, ab, op->k, op->m, op->ldx), "layout of X", error)
      || !canary_cublas_ok (cublasLtMatrixLayoutCreate (&d->c, cd, op->n, op->m, op->ldy), "layout of Y", error))
    return FALSE;

  /* The heuristic's first choice for this shape and these alignments, asked once. */
  cublasLtMatmulPreference_t pref = NULL;
  cublasLtMatmulHeuristicResult_t res;
  int found = 0;
  const size_t ws = g->ws_bytes;
  gboolean ok = canary_cublas_ok (cublasLtMatmulPreferenceCreate (&pref), "creating a matmul preference", error)
      && canary_cublas_ok (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
          &ws, sizeof ws), "setting the workspace size", error)
      && canary_cublas_ok (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
          &key->align_w, sizeof key->align_w), "setting W's alignment", error)
      && canary_cublas_ok (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          &key->align_x, sizeof key->align_x), "setting X's alignment", error)
      && canary_cublas_ok (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
          &key->align_y, sizeof key->align_y), "setting Y's alignment", error)
      && canary_cublas_ok (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
          &key->align_y, sizeof key->align_y), "setting Y's alignment", error)
      && canary_cublas_ok (cublasLtMatmulAlgoGetHeuristic (g->lt, d->desc, d->a, d->b, d->c, d->c, pref, 1, &res,
          &found), "choosing a GEMM algorithm", error);
  if (pref)
    cublasLtMatmulPreferenceDestroy (pref);
  if (ok && found < 1) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE,
        "cuBLASLt has no algorithm for a %d×%d×%d GEMM (epilogue %d)", op->m, op->n, op->k, op->epilogue);
    ok = FALSE;
  }
  if (ok)
    d->algo = res.algo;
  return ok;
}

/* The cached descriptors, layouts and algorithm of this GEMM's shape (made on first use: after
 * the first window no GEMM creates anything or formats anything on the hot path). */
static gemm_plan *
plan_for (canary_cuda_gemm *g, canary_cuda_dtype dt, const cl_gemm *op, GError **error)
{
  gemm_key key;
  memset (&key, 0, sizeof key);  /* no padding bytes in the hash */
  key.dt = dt;
  key.y_f32 = op->y_f32;
  key.m = op->m;
  key.n = op->n;
  key.k = op->k;
  key.ldx = op->ldx;
  key.ldy = op->ldy;
  key.epilogue = op->epilogue;
  key.has_beta = op->beta != 0.0f;
  key.align_w = alignment ((guint64) op->w);
  key.align_x = alignment ((guint64) op->x);
  key.align_y = alignment ((guint64) op->y);
  key.align_bias = alignment ((guint64) op->bias);
  gemm_plan *d = g_hash_table_lookup (g->plans, &key);
  if (d)
    return d;
  d = g_new0 (gemm_plan, 1);
  if (!plan_make (g, &key, op, d, error)) {
    plan_free (d);
    return NULL;
  }
  g_hash_table_insert (g->plans, g_memdup2 (&key, sizeof key), d);
  return d;
}

gboolean
canary_cuda_gemm_run (canary_cuda_gemm *g, canary_cuda_dtype dt, const cl_gemm *op, cudaStream_t stream,
    GError **error)
{
  if (op->m <= 0)
    return TRUE;
  gemm_plan *d = plan_for (g, dt, op, error);
  if (!d)
    return FALSE;
  if (op->epilogue != CL_EPI_NONE) {
    /* The bias pointer is the one per-call attribute (a host-side store, no allocation). */
    const void *bias = (const void *) op->bias;
    if (!canary_cublas_ok (cublasLtMatmulDescSetAttribute (d->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
            sizeof bias), "setting the bias", error))
      return FALSE;
  }
  const float alpha = 1.0f, beta = op->beta;
  return canary_cublas_ok (cublasLtMatmul (g->lt, d->desc, &alpha, (const void *) op->w, d->a, (const void *) op->x,
      d->b, &beta, (void *) op->y, d->c, (void *) op->y, d->c, &d->algo, g->ws, g->ws_bytes, stream),
      "running a GEMM", error);
}
