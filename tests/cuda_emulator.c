/* gst-canary tests — the CUDA decoder's launch list on the CPU (see cuda_emulator.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cuda_emulator.h"

#include <math.h>
#include <string.h>

#define NEG_INF_MASK (-10000.0)
#define LN_EPS 1e-5

#define PTR(a) ((void *) (a))

float
cuda_emu_load (const canary_cuda_weights *w, const void *p, gsize i)
{
  if (w->dims.dtype == CANARY_CUDA_F16)
    return canary_f16_to_f32 (((const guint16 *) p)[i]);
  return ((const float *) p)[i];
}

void
cuda_emu_store (const canary_cuda_weights *w, void *p, gsize i, float v)
{
  if (w->dims.dtype == CANARY_CUDA_F16)
    ((guint16 *) p)[i] = canary_f32_to_f16 (v);
  else
    ((float *) p)[i] = v;
}

/* LayerNorm of v[0..n) in place (FP32 statistics, as the kernel). */
static void
layer_norm (float *v, int n, const float *g, const float *b)
{
  float s = 0, q = 0;
  for (int i = 0; i < n; i++)
    s += v[i];
  const float mean = s / n;
  for (int i = 0; i < n; i++)
    q += (v[i] - mean) * (v[i] - mean);
  const float rstd = 1.0f / sqrtf (q / n + (float) LN_EPS);
  for (int i = 0; i < n; i++)
    v[i] = (v[i] - mean) * rstd * g[i] + b[i];
}

static void
run_norm (const canary_cuda_weights *w, const cl_norm *n)
{
  float *v = g_new (float, n->width);
  for (int r = 0; r < n->rows; r++) {
    for (int c = 0; c < n->width; c++)
      v[c] = cuda_emu_load (w, PTR (n->x), (gsize) r * n->width + c);
    layer_norm (v, n->width, PTR (n->g), PTR (n->b));
    for (int c = 0; c < n->width; c++)
      cuda_emu_store (w, PTR (n->y), (gsize) r * n->width + c, v[c]);
  }
  g_free (v);
}

static void
run_embed (const canary_cuda_weights *w, const cl_embed *e, const canary_cuda_step_params *sp)
{
  const int *tok = PTR (e->tokens), H = e->width;
  float *v = g_new (float, H);
  for (int r = 0; r < e->rows; r++) {
    const gsize te = (gsize) tok[r] * H, pe = (gsize) (sp->pos + r % e->n_tokens) * H;
    for (int c = 0; c < H; c++)
      v[c] = cuda_emu_load (w, PTR (e->tok_emb), te + c) + cuda_emu_load (w, PTR (e->pos_enc), pe + c);
    layer_norm (v, H, PTR (e->g), PTR (e->b));
    for (int c = 0; c < H; c++)
      cuda_emu_store (w, PTR (e->x), (gsize) r * H + c, v[c]);
  }
  g_free (v);
}

static void
run_gemm (const canary_cuda_weights *w, const cl_gemm *g)
{
  for (int m = 0; m < g->m; m++) {
    for (int n = 0; n < g->n; n++) {
      double acc = 0;
      for (int k = 0; k < g->k; k++)
        acc += (double) cuda_emu_load (w, PTR (g->x), (gsize) m * g->ldx + k)
            * cuda_emu_load (w, PTR (g->w), (gsize) n * g->k + k);
      float v = (float) acc;
      if (g->epilogue != CL_EPI_NONE)
        v += g->y_f32 ? ((const float *) PTR (g->bias))[n] : cuda_emu_load (w, PTR (g->bias), n);
      if (g->epilogue == CL_EPI_RELU_BIAS)
        v = MAX (v, 0.0f);
      const gsize at = (gsize) m * g->ldy + n;
      if (g->y_f32) {
        float *y = PTR (g->y);
        y[at] = v + (g->beta != 0.0f ? g->beta * y[at] : 0.0f);
      } else {
        if (g->beta != 0.0f)
          v += g->beta * cuda_emu_load (w, PTR (g->y), at);
        cuda_emu_store (w, PTR (g->y), at, v);
      }
    }
  }
}

/* softmax(q·k_j / sqrt(dk) + mask_j) · v_j over n keys given as element offsets. */
static void
attend (const canary_cuda_weights *w, const void *q, const void *kbase, const void *vbase, const gsize *koff,
    const gboolean *masked, int n, int dk, double *out)
{
  double *s = g_new (double, n), mx = -INFINITY, sum = 0;
  for (int j = 0; j < n; j++) {
    double d = 0;
    for (int c = 0; c < dk; c++)
      d += (double) cuda_emu_load (w, q, c) * cuda_emu_load (w, kbase, koff[j] + c);
    s[j] = d / sqrt ((double) dk) + (masked[j] ? NEG_INF_MASK : 0.0);
    mx = MAX (mx, s[j]);
  }
  for (int j = 0; j < n; j++)
    sum += (s[j] = exp (s[j] - mx));
  for (int c = 0; c < dk; c++) {
    double o = 0;
    for (int j = 0; j < n; j++)
      o += s[j] / sum * cuda_emu_load (w, vbase, koff[j] + c);
    out[c] = o;
  }
  g_free (s);
}

/* Self-attention as the kernel does it: keys before the step from the cache of the hypothesis'
 * slot, the step's own keys from its q|k|v rows; then the step's K/V appended to the cache. */
static void
run_self (const canary_cuda_weights *w, const cl_self *a, const canary_cuda_step_params *sp, int pad)
{
  const canary_cuda_dims *m = &w->dims;
  const int H = m->H, heads = m->dec_heads, dk = H / heads, start = sp->pos, nk = start + a->n_tokens;
  const int rows = a->n_beams * a->n_tokens, *tok = PTR (a->tokens), *slot = PTR (a->slot);
  const gsize es = m->dtype == CANARY_CUDA_F16 ? 2 : 4;
  guint8 *kc = PTR (a->k_cache), *vc = PTR (a->v_cache);
  const guint8 *qkv = PTR (a->qkv);
  const guint8 **kp = g_new (const guint8 *, nk), **vp = g_new (const guint8 *, nk);
  double *s = g_new (double, nk), *o = g_new (double, dk);
  for (int r = 0; r < rows; r++) {
    const int b = r / a->n_tokens, qi = r % a->n_tokens;
    const gsize cache0 = (gsize) slot[b] * m->max_len * H;
    const int *bt = tok + (gsize) b * a->n_tokens;
    for (int h = 0; h < heads; h++) {
      const guint8 *q = qkv + ((gsize) r * 3 * H + h * dk) * es;
      double mx = -INFINITY, sum = 0;
      for (int j = 0; j < nk; j++) {
        if (j < start) {
          kp[j] = kc + (cache0 + (gsize) j * H + h * dk) * es;
          vp[j] = vc + (cache0 + (gsize) j * H + h * dk) * es;
        } else {
          const gsize row = (gsize) (b * a->n_tokens + j - start) * 3 * H;
          kp[j] = qkv + (row + H + h * dk) * es;
          vp[j] = qkv + (row + 2 * H + h * dk) * es;
        }
        const gboolean masked = j > start + qi
            || (a->n_tokens == 1 ? bt[0] == pad : (j >= start && bt[j - start] == pad));
        double d = 0;
        for (int c = 0; c < dk; c++)
          d += (double) cuda_emu_load (w, q, c) * cuda_emu_load (w, kp[j], c);
        s[j] = d / sqrt ((double) dk) + (masked ? NEG_INF_MASK : 0.0);
        mx = MAX (mx, s[j]);
      }
      for (int j = 0; j < nk; j++)
        sum += (s[j] = exp (s[j] - mx));
      for (int c = 0; c < dk; c++)
        o[c] = 0;
      for (int j = 0; j < nk; j++)
        for (int c = 0; c < dk; c++)
          o[c] += s[j] / sum * cuda_emu_load (w, vp[j], c);
      for (int c = 0; c < dk; c++)
        cuda_emu_store (w, PTR (a->ctx), (gsize) r * H + h * dk + c, (float) o[c]);
    }
  }
  for (int r = 0; r < rows; r++) {
    const int b = r / a->n_tokens, qi = r % a->n_tokens;
    const gsize dst = ((gsize) slot[b] * m->max_len + start + qi) * H * es;
    memcpy (kc + dst, qkv + ((gsize) r * 3 * H + H) * es, H * es);
    memcpy (vc + dst, qkv + ((gsize) r * 3 * H + 2 * H) * es, H * es);
  }
  g_free (kp);
  g_free (vp);
  g_free (s);
  g_free (o);
}

static void
run_cross (const canary_cuda_weights *w, const cl_cross *c, const canary_cuda_step_params *sp)
{
  const canary_cuda_dims *m = &w->dims;
  const int H = m->H, heads = m->dec_heads, dk = H / heads, T = sp->T;
  const gsize es = m->dtype == CANARY_CUDA_F16 ? 2 : 4;
  gsize *koff = g_new (gsize, T);
  gboolean *masked = g_new (gboolean, T);
  double *out = g_new (double, dk);
  for (int r = 0; r < c->rows; r++) {
    for (int h = 0; h < heads; h++) {
      for (int t = 0; t < T; t++) {
        koff[t] = (gsize) t * c->ld_kv + h * dk;
        masked[t] = t >= sp->enc_len;
      }
      const guint8 *kv = PTR (c->kv);
      attend (w, (const guint8 *) PTR (c->q) + ((gsize) r * H + h * dk) * es, kv, kv + (gsize) H * es, koff, masked,
          T, dk, out);
      for (int i = 0; i < dk; i++)
        cuda_emu_store (w, PTR (c->ctx), (gsize) r * H + h * dk + i, (float) out[i]);
    }
  }
  g_free (koff);
  g_free (masked);
  g_free (out);
}

static void
run_argmax (const canary_cuda_weights *w, const cl_argmax *a, canary_cuda_step_params *sp)
{
  const float *l = PTR (a->logits);
  const int V = w->dims.V;
  int best = 0;
  for (int i = 1; i < V; i++)
    if (l[i] > l[best])
      best = i;
  double sum = 0;
  for (int i = 0; i < V; i++)
    sum += exp ((double) l[i] - l[best]);
  canary_cuda_choice *ch = PTR (a->choice);
  ch->token = best;
  ch->logp = (float) -log (sum);
  *(int *) PTR (a->next_token) = best;
  sp->pos += a->advance;
}

void
cuda_emu_run (const canary_cuda_weights *w, const canary_cuda_plan *plan, guint8 *arena,
    const canary_cuda_launch *records, guint n, int pad_id)
{
  canary_cuda_step_params *sp = (canary_cuda_step_params *) (arena + plan->region[CR_PARAMS].offset);
  for (guint i = 0; i < n; i++) {
    const canary_cuda_launch *l = &records[i];
    switch (l->op) {
      case CL_EMBED:
        run_embed (w, &l->u.embed, sp);
        break;
      case CL_LAYER_NORM:
        run_norm (w, &l->u.norm);
        break;
      case CL_GEMM:
        run_gemm (w, &l->u.gemm);
        break;
      case CL_SELF_ATTENTION:
        run_self (w, &l->u.self, sp, pad_id);
        break;
      case CL_CROSS_ATTENTION:
        run_cross (w, &l->u.cross, sp);
        break;
      case CL_ARGMAX:
        run_argmax (w, &l->u.argmax, sp);
        break;
    }
  }
}
