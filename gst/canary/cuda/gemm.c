/* gst-canary — cuBLASLt GEMMs for the CUDA backend (see cuda/gemm.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Row-major y[m][n] = x[m][k]·wᵀ is column-major yᵀ (n×m) = op(A)·B with A = w seen as a
 * column-major k×n matrix (transposed) and B = xᵀ, a column-major k×m matrix: no copies, and
 * the bias runs along yᵀ's rows (cuBLASLt's bias vector of length n). */
#include "cuda/gemm.h"

#include <cublasLt.h>

#include "canary.h"
#include "cuda/device.h"

struct _canary_cuda_gemm {
  cublasLtHandle_t lt;
  void *ws;
  gsize ws_bytes;
  GHashTable *algos;  /* shape key → cublasLtMatmulAlgo_t */
};

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
  g->algos = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return g;
}

void
canary_cuda_gemm_free (canary_cuda_gemm *g)
{
  if (!g)
    return;
  cublasLtDestroy (g->lt);
  g_hash_table_unref (g->algos);
  g_free (g);
}

typedef struct {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, c;
} gemm_descs;

static void
descs_free (gemm_descs *d)
{
  if (d->a)
    cublasLtMatrixLayoutDestroy (d->a);
  if (d->b)
    cublasLtMatrixLayoutDestroy (d->b);
  if (d->c)
    cublasLtMatrixLayoutDestroy (d->c);
  if (d->desc)
    cublasLtMatmulDescDestroy (d->desc);
}

static gboolean
descs_make (canary_cuda_dtype dt, const cl_gemm *op, gemm_descs *d, GError **error)
{
  const cudaDataType_t ab = dt == CANARY_CUDA_F16 ? CUDA_R_16F : CUDA_R_32F;
  const cudaDataType_t cd = op->y_f32 ? CUDA_R_32F : ab;
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (op->epilogue == CL_EPI_BIAS)
    epi = CUBLASLT_EPILOGUE_BIAS;
  else if (op->epilogue == CL_EPI_RELU_BIAS)
    epi = CUBLASLT_EPILOGUE_RELU_BIAS;
  const void *bias = (const void *) op->bias;
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
      && (!canary_cublas_ok (cublasLtMatmulDescSetAttribute (d->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
              sizeof bias), "setting the bias", error)
          || !canary_cublas_ok (cublasLtMatmulDescSetAttribute (d->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
              &bias_type, sizeof bias_type), "setting the bias type", error)))
    return FALSE;
  return canary_cublas_ok (cublasLtMatrixLayoutCreate (&d->a, ab, op->k, op->n, op->k), "layout of W", error)
      && canary_cublas_ok (cublasLtMatrixLayoutCreate (&d->b, ab, op->k, op->m, op->ldx), "layout of X", error)
      && canary_cublas_ok (cublasLtMatrixLayoutCreate (&d->c, cd, op->n, op->m, op->ldy), "layout of Y", error);
}

/* The heuristic's first choice for this shape, asked once and cached. */
static const cublasLtMatmulAlgo_t *
algo_for (canary_cuda_gemm *g, canary_cuda_dtype dt, const cl_gemm *op, gemm_descs *d, GError **error)
{
  char *key = g_strdup_printf ("%d:%d:%d:%d:%d:%d:%d:%d:%d", dt, op->y_f32, op->m, op->n, op->k, op->ldx,
      op->ldy, op->epilogue, op->beta != 0.0f);
  cublasLtMatmulAlgo_t *algo = g_hash_table_lookup (g->algos, key);
  if (algo) {
    g_free (key);
    return algo;
  }
  cublasLtMatmulPreference_t pref = NULL;
  cublasLtMatmulHeuristicResult_t res;
  int found = 0;
  const size_t ws = g->ws_bytes;
  gboolean ok = canary_cublas_ok (cublasLtMatmulPreferenceCreate (&pref), "creating a matmul preference", error)
      && canary_cublas_ok (cublasLtMatmulPreferenceSetAttribute (pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
          &ws, sizeof ws), "setting the workspace size", error)
      && canary_cublas_ok (cublasLtMatmulAlgoGetHeuristic (g->lt, d->desc, d->a, d->b, d->c, d->c, pref, 1, &res,
          &found), "choosing a GEMM algorithm", error);
  if (pref)
    cublasLtMatmulPreferenceDestroy (pref);
  if (ok && found < 1) {
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE,
        "cuBLASLt has no algorithm for a %d×%d×%d GEMM (epilogue %d)", op->m, op->n, op->k, op->epilogue);
    ok = FALSE;
  }
  if (!ok) {
    g_free (key);
    return NULL;
  }
  algo = g_memdup2 (&res.algo, sizeof res.algo);
  g_hash_table_insert (g->algos, key, algo);
  return algo;
}

gboolean
canary_cuda_gemm_run (canary_cuda_gemm *g, canary_cuda_dtype dt, const cl_gemm *op, cudaStream_t stream,
    GError **error)
{
  if (op->m <= 0)
    return TRUE;
  gemm_descs d = { 0 };
  gboolean ok = descs_make (dt, op, &d, error);
  const cublasLtMatmulAlgo_t *algo = ok ? algo_for (g, dt, op, &d, error) : NULL;
  if (algo) {
    const float alpha = 1.0f, beta = op->beta;
    ok = canary_cublas_ok (cublasLtMatmul (g->lt, d.desc, &alpha, (const void *) op->w, d.a, (const void *) op->x,
        d.b, &beta, (void *) op->y, d.c, (void *) op->y, d.c, algo, g->ws, g->ws_bytes, stream),
        "running a GEMM", error);
  } else {
    ok = FALSE;
  }
  descs_free (&d);
  return ok;
}
