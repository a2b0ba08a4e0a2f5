/* gst-canary — read rate of the CPU's FP16 row-product kernels against a plain read.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   canary-gemv-bench [--rows R] [--repeats N] [--threads N]
 *
 * One decoder step's weight products at canary-1b's shape (24 layers of q/k/v 3072 x 1024, out,
 * cross q, cross out 1024 x 1024, FF 4096 x 1024 and 1024 x 4096: 352 M FP16 weights, 704 MB,
 * far beyond any cache), each product split into work items of 256 output rows over a team of
 * threads, as the decoder runs them. Per kernel and repeat (kernels alternate): milliseconds for
 * one pass over all products with R activation rows, and the weight bytes read per second.
 *   four-row: the AVX-512 kernel that reads four weight rows at a time (its shared activation loads
 *             pay at four rows);
 *   one-row:  the AVX2 + F16C kernel (one weight row, one stream), which canary_f16_linear runs
 *             for one to three rows on AVX-512 CPUs too;
 *   read:     the same bytes XOR-ed together, no arithmetic: what the memory gives these threads.
 * The step's whole time (attention, norms, logits) is canary-bench's step_ms; this isolates the
 * products that hold 96 % of its bytes. */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "cpu/gemm.h"
#include "cpu/team.h"
#include "util.h"

#define LAYERS 24
#define D 1024
#define CHUNK 256 /* output rows per work item, as the decoder's F16_OUT_CHUNK */

typedef struct {
  int out, in;
  gsize off;
} product;

typedef enum { KERNEL_FOUR_ROW, KERNEL_ONE_ROW, KERNEL_READ, N_KERNELS } kernel;
static const char *const kernel_names[N_KERNELS] = { "four-row", "one-row", "read" };

typedef struct {
  canary_team *team;
  const guint16 *w;
  const product *p;
  kernel k;
  const float *x, *b;
  float *y;
  int rows;
  guint64 sink[CANARY_TEAM_MAX_THREADS * 8]; /* a cache line per thread */
} pass_ctx;

static void
product_fn (void *data, int tid)
{
  pass_ctx *c = data;
  const product *p = c->p;
  const int items = (p->out + CHUNK - 1) / CHUNK;
  for (int it; (it = canary_team_next (c->team)) < items;) {
    const int o0 = it * CHUNK, o1 = MIN (o0 + CHUNK, p->out);
    const guint16 *w = c->w + p->off;
    if (c->k == KERNEL_READ) {
      /* 8 bytes at a time: GCC vectorises the loop; the XOR keeps every load. */
      const guint64 *q = (const guint64 *) (w + (gsize) o0 * p->in);
      const gsize n = (gsize) (o1 - o0) * p->in / 4;
      guint64 acc = 0;
      for (gsize i = 0; i < n; i++)
        acc ^= q[i];
      c->sink[tid * 8] ^= acc;
    } else {
      canary_f16_linear (c->k == KERNEL_FOUR_ROW ? CANARY_F16_LINEAR_AVX512_FOUR_ROWS : CANARY_F16_LINEAR_AVX2, w, c->b,
          p->out, p->in, c->x, c->rows, c->y, o0, o1);
    }
  }
}

int
main (int argc, char **argv)
{
  int rows = 1, repeats = 5, threads = 0;
  GOptionEntry entries[] = {
    { "rows", 'R', 0, G_OPTION_ARG_INT, &rows, "Activation rows per product, 1-16 (a greedy step: 1; beam 4: 4)", "R" },
    { "repeats", 'r', 0, G_OPTION_ARG_INT, &repeats, "Timed passes per kernel (default 5)", "N" },
    { "threads", 'j', 0, G_OPTION_ARG_INT, &threads, "Threads (default: all cores)", "N" },
    { NULL },
  };
  GError *err = NULL;
  GOptionContext *ctx = g_option_context_new ("- read rate of the FP16 row-product kernels");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &err)) {
    g_printerr ("%s\n", err->message);
    return 2;
  }
  g_option_context_free (ctx);
  if (rows < 1 || rows > 16 || repeats < 1) {
    g_printerr ("--rows must be 1-16, --repeats >= 1\n");
    return 2;
  }
  if (canary_f16_linear_best () != CANARY_F16_LINEAR_AVX512) {
    g_printerr ("this CPU (or CANARY_F16_AVX512=0 / CANARY_F16_SIMD=0) has no AVX-512 FP16 row kernel to compare\n");
    return 77;
  }

  static const int shapes[6][2] = { { 3 * D, D }, { D, D }, { D, D }, { D, D }, { 4 * D, D }, { D, 4 * D } };
  product prods[LAYERS * 6];
  gsize total = 0;
  for (int l = 0; l < LAYERS; l++)
    for (int i = 0; i < 6; i++) {
      prods[l * 6 + i] = (product) { shapes[i][0], shapes[i][1], total };
      total += (gsize) shapes[i][0] * shapes[i][1];
    }
  guint16 *w = g_new (guint16, total);
  for (gsize i = 0; i < total; i++)
    w[i] = (guint16) (0x2000 + (i * 2654435761u >> 20) % 0x1800); /* 2^-7 .. 2^-1, both signs below */
  float *x = g_new (float, (gsize) rows * 4 * D), *b = g_new0 (float, 4 * D), *y = g_new (float, (gsize) rows * 4 * D);
  for (gsize i = 0; i < (gsize) rows * 4 * D; i++)
    x[i] = (float) ((i % 977) - 488) / 488.0f;

  pass_ctx c = { .team = canary_team_new (threads > 0 ? threads : (int) g_get_num_processors ()), .w = w, .x = x,
    .b = b, .y = y, .rows = rows };
  double *ms[N_KERNELS];
  for (int k = 0; k < N_KERNELS; k++)
    ms[k] = g_new (double, repeats);
  for (int r = -1; r < repeats; r++) /* r = -1: a warm-up pass of each */
    for (int k = 0; k < N_KERNELS; k++) {
      c.k = k;
      const double t0 = canary_now_ms ();
      for (int i = 0; i < LAYERS * 6; i++) {
        c.p = &prods[i];
        canary_team_run (c.team, product_fn, &c);
      }
      if (r >= 0)
        ms[k][r] = canary_now_ms () - t0;
    }
  for (int k = 0; k < N_KERNELS; k++) {
    printf ("{\"kernel\": \"%s\", \"rows\": %d, \"threads\": %d, \"weight_mb\": %.1f, \"ms\": [", kernel_names[k], rows,
        canary_team_size (c.team), total * 2 / 1e6);
    for (int r = 0; r < repeats; r++)
      printf ("%s%.2f", r ? ", " : "", ms[k][r]);
    double best = ms[k][0];
    for (int r = 1; r < repeats; r++)
      best = MIN (best, ms[k][r]);
    printf ("], \"best_gbps\": %.1f}\n", total * 2 / best / 1e6);
    g_free (ms[k]);
  }
  guint64 s = 0;
  for (int i = 0; i < CANARY_TEAM_MAX_THREADS; i++)
    s ^= c.sink[i * 8];
  if (s == 1) /* never: keeps the read kernel's loads */
    printf ("#\n");
  canary_team_free (c.team);
  g_free (w);
  g_free (x);
  g_free (b);
  g_free (y);
  return 0;
}
