/* gst-canary — the CPU GEMM (cpu/gemm.c) against a double-precision reference, on shapes that
 * hit every edge of its tiling: rows not a multiple of the 6-row tile or of a work item,
 * columns not a multiple of the 64-column tile, k not a multiple of 16 and longer than one
 * k block (split across work items, partial sums combined), for FP32 and FP16 weights, on every
 * kernel path this CPU has (AVX-512 tiler + team, AVX2/F16C, portable), with and without a team.
 *
 * Bound: every path sums in FP32 products of exactly representable inputs (FP16 weights are
 * compared with the reference on the same rounded values), so |C - C_ref| <= K · u · Σ_k |w x|
 * with u = 2^-24 (recursive summation's worst case; blocked sums are tighter). A skipped tail,
 * a stale tile or a wrong stride moves a result by O(|w x|), far outside it.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include <glib.h>
#include <math.h>
#include <string.h>

#include "cpu/gemm.h"
#include "cpu/simd.h"
#include "cpu/team.h"
#include "formats/tensor.h"

typedef struct {
  int N, M, K, act;
  gboolean bias;
} gemm_shape;

static const gemm_shape shapes[] = {
  { 50, 70, 1500, CANARY_ACT_NONE, TRUE },   /* two k blocks, partial tiles everywhere */
  { 7, 126, 1024, CANARY_ACT_RELU, TRUE },   /* the decoder's T ~ 126, one row past a tile */
  { 13, 3, 17, CANARY_ACT_NONE, FALSE },     /* k tail of 1 past 16 */
  { 149, 130, 2100, CANARY_ACT_SWISH, TRUE },/* three k blocks, several work items */
  { 96, 64, 1040, CANARY_ACT_NONE, TRUE },   /* exact tiles, a k block of 1040 / 2 */
};

static float
ref_act (double v, int act)
{
  if (act == CANARY_ACT_RELU)
    return (float) MAX (v, 0.0);
  if (act == CANARY_ACT_SWISH)
    return (float) (v / (1.0 + exp (-v)));
  return (float) v;
}

static void
check_shape (const gemm_shape *sh, canary_gemm *g, gboolean fp16, const char *what)
{
  const int N = sh->N, M = sh->M, K = sh->K;
  const gsize ldx = (gsize) (M + CANARY_GEMM_TILE_M - 1) / CANARY_GEMM_TILE_M * CANARY_GEMM_TILE_M;
  GRand *rng = g_rand_new_with_seed (N * 7919 + M * 31 + K);
  float *w = g_new (float, (gsize) N * K);
  guint16 *w16 = g_new (guint16, (gsize) N * K);
  float *xt = g_new0 (float, (gsize) K * ldx + CANARY_GEMM_TILE_M);
  float *bias = g_new (float, N);
  float *ct = g_new (float, (gsize) N * M);
  for (gsize i = 0; i < (gsize) N * K; i++) {
    w[i] = (float) g_rand_double_range (rng, -1, 1);
    w16[i] = canary_f32_to_f16 (w[i]);
    if (fp16)
      w[i] = canary_f16_to_f32 (w16[i]);  /* the reference multiplies the rounded weights */
  }
  for (int k = 0; k < K; k++)
    for (int m = 0; m < M; m++)
      xt[(gsize) k * ldx + m] = (float) g_rand_double_range (rng, -1, 1);
  for (int n = 0; n < N; n++)
    bias[n] = (float) g_rand_double_range (rng, -1, 1);
  for (gsize i = 0; i < (gsize) N * M; i++)
    ct[i] = NAN;  /* every output must be written */

  canary_gemm_job job = {
    .N = N, .M = M, .K = K, .w = w, .sn = (gsize) K, .sk = 1, .w16 = fp16 ? w16 : NULL,
    .xt = xt, .ldx = ldx, .ct = ct, .ldc = (gsize) M, .bias = sh->bias ? bias : NULL, .act = sh->act,
  };
  canary_gemm_run (g, &job, 1);

  double worst = 0;  /* error / bound */
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++) {
      double sum = sh->bias ? bias[n] : 0.0, mag = sh->bias ? fabs (bias[n]) : 0.0;
      for (int k = 0; k < K; k++) {
        const double p = (double) w[(gsize) n * K + k] * xt[(gsize) k * ldx + m];
        sum += p;
        mag += fabs (p);
      }
      /* The activation is 1-Lipschitz (ReLU) or nearly (Swish: |d/dx| <= 1.1), and the FP32
       * Swish adds a few ulp of its own. */
      const double bound = (K + 1) * ldexp (1.0, -24) * mag * 1.1 + 8 * ldexp (1.0, -24) * fabs (sum) + 1e-30;
      const double err = fabs ((double) ct[(gsize) n * M + m] - ref_act (sum, sh->act));
      if (!(err <= bound))
        g_error ("%s %dx%dx%d: C[%d][%d] = %g, reference %g (bound %g)", what, N, M, K, n, m,
            ct[(gsize) n * M + m], ref_act (sum, sh->act), bound);
      worst = MAX (worst, err / bound);
    }
  g_test_message ("%s %dx%dx%d: worst error %.3f of the bound", what, N, M, K, worst);
  g_rand_free (rng);
  g_free (w);
  g_free (w16);
  g_free (xt);
  g_free (bias);
  g_free (ct);
}

static void
test_paths (void)
{
  canary_team *team = canary_team_new (2);
  const gboolean have_simd = canary_simd_enabled (), have_f16 = canary_f16_simd_enabled ();
  int runs = 0;
  for (int simd = have_simd; simd >= 0; simd--)
    for (int f16 = have_f16; f16 >= 0; f16--)
      for (int with_team = 1; with_team >= 0; with_team--) {
        canary_gemm g = { 0 };
        g.simd = simd;
        g.team = with_team ? team : NULL;
        g.f16_simd = f16;
        g.f16_team = with_team ? team : NULL;
        char *what = g_strdup_printf ("avx512=%d f16c=%d team=%d", simd, f16, with_team);
        for (guint i = 0; i < G_N_ELEMENTS (shapes); i++) {
          check_shape (&shapes[i], &g, TRUE, what);
          check_shape (&shapes[i], &g, FALSE, what);
          runs += 2;
        }
        canary_gemm_clear (&g);
        g_free (what);
      }
  g_test_message ("%d products checked (AVX-512 path %s, F16C path %s)", runs,
      have_simd ? "included" : "absent on this CPU", have_f16 ? "included" : "absent on this CPU");
  canary_team_free (team);
}

/* canary_f16_linear (the decoder's row products) on every path this CPU has, against the double
 * reference on the rounded weights, with the GEMM's bound: out not a multiple of the AVX-512
 * kernel's 4 rows or of the 64-row block, in not a multiple of 16, 1-9 x rows (a beam, the
 * prompt), and a sub-range [o0, o1) as the team's work items use. */
static void
test_f16_linear (void)
{
  static const struct { int out, in, rows, o0, o1; } cases[] = {
    { 70, 1024, 1, 0, 70 }, { 70, 1024, 4, 0, 70 }, { 131, 48, 9, 0, 131 },
    { 67, 1037, 3, 0, 67 }, { 200, 257, 2, 64, 133 }, { 5, 17, 5, 1, 4 },
  };
  const canary_f16_linear_path best = canary_f16_linear_best ();
  /* With AVX-512 also the four-row kernel at every row count (AVX512 proper sends 1-3 rows to
   * the AVX2 kernel). */
  const int last = best == CANARY_F16_LINEAR_AVX512 ? CANARY_F16_LINEAR_AVX512_FOUR_ROWS : (int) best;
  for (int path = CANARY_F16_LINEAR_PORTABLE; path <= last; path++)
    for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
      const int out = cases[c].out, in = cases[c].in, rows = cases[c].rows;
      GRand *rng = g_rand_new_with_seed (out * 131 + in * 7 + rows);
      guint16 *w16 = g_new (guint16, (gsize) out * in);
      float *b = g_new (float, out), *x = g_new (float, (gsize) rows * in);
      float *y = g_new (float, (gsize) rows * out);
      for (gsize i = 0; i < (gsize) out * in; i++)
        w16[i] = canary_f32_to_f16 ((float) g_rand_double_range (rng, -1, 1));
      for (int o = 0; o < out; o++)
        b[o] = (float) g_rand_double_range (rng, -1, 1);
      for (gsize i = 0; i < (gsize) rows * in; i++)
        x[i] = (float) g_rand_double_range (rng, -1, 1);
      for (gsize i = 0; i < (gsize) rows * out; i++)
        y[i] = NAN;
      canary_f16_linear ((canary_f16_linear_path) path, w16, b, out, in, x, rows, y, cases[c].o0,
          cases[c].o1);
      double worst = 0;
      for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
          const float got = y[(gsize) r * out + o];
          if (o < cases[c].o0 || o >= cases[c].o1) {  /* outside the range: untouched */
            g_assert_true (isnan (got));
            continue;
          }
          double sum = b[o], mag = fabs (b[o]);
          for (int k = 0; k < in; k++) {
            const double p = (double) canary_f16_to_f32 (w16[(gsize) o * in + k]) * x[(gsize) r * in + k];
            sum += p;
            mag += fabs (p);
          }
          const double bound = (in + 1) * ldexp (1.0, -24) * mag + 1e-30;
          const double err = fabs ((double) got - sum);
          if (!(err <= bound))
            g_error ("path %d %dx%d rows %d: y[%d][%d] = %g, reference %g (bound %g)", path, out, in,
                rows, r, o, got, sum, bound);
          worst = MAX (worst, err / bound);
        }
      g_test_message ("f16_linear path %d %dx%d rows %d: worst error %.3f of the bound", path, out,
          in, rows, worst);
      g_rand_free (rng);
      g_free (w16);
      g_free (b);
      g_free (x);
      g_free (y);
    }
  g_test_message ("f16_linear paths checked: portable..%d", last);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/gemm/paths", test_paths);
  g_test_add_func ("/gemm/f16-linear", test_f16_linear);
  return g_test_run ();
}
