/* gst-canary tests — the CUDA launch lists (encoder, decoder) on the CPU (see cuda_emulator.h).
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

static float
sigm (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

/* conv.0 + ReLU at stage-1 position (t, f), channel c, with its masks (0 outside). */
static float
conv0_at (const cl_conv0 *c, int t, int f, int ch)
{
  if (t < 0 || t >= c->len1 || f < 0 || f >= c->f1)
    return 0.0f;
  const float *mel = PTR (c->mel), *w0 = PTR (c->w0), *b0 = PTR (c->b0);
  float v = b0[ch];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) {
      const int tm = 2 * t + i - 1, fm = 2 * f + j - 1;
      if (tm >= 0 && tm < c->len0 && fm >= 0 && fm < c->n_mels)
        v += w0[ch * 9 + i * 3 + j] * mel[(gsize) fm * c->ld + tm];
    }
  return MAX (v, 0.0f);
}

static void
run_conv0 (const canary_cuda_weights *w, const cl_conv0 *c)
{
  const float *dw = PTR (c->w), *db = PTR (c->b);
  for (int t = 0; t < c->t_out; t++)
    for (int f = 0; f < c->f_out; f++)
      for (int ch = 0; ch < c->C; ch++) {
        float o = 0.0f;
        if (t < c->len_out) {
          if (!c->w) {
            o = conv0_at (c, t, f, ch);
          } else {
            o = db[ch];
            for (int i = 0; i < 3; i++)
              for (int j = 0; j < 3; j++)
                o += dw[ch * 9 + i * 3 + j] * conv0_at (c, 2 * t + i - 1, 2 * f + j - 1, ch);
          }
        }
        cuda_emu_store (w, PTR (c->out), ((gsize) t * c->f_out + f) * c->C + ch, o);
      }
}

static void
run_depthwise (const canary_cuda_weights *w, const cl_depthwise *d)
{
  const float *dw = PTR (d->w), *db = PTR (d->b);
  for (int t = 0; t < d->t_out; t++)
    for (int f = 0; f < d->f_out; f++)
      for (int ch = 0; ch < d->C; ch++) {
        float o = 0.0f;
        if (t < d->len_out) {
          o = db[ch];
          for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
              const int ti = 2 * t + i - 1, fj = 2 * f + j - 1;
              if (ti >= 0 && ti < d->t_in && fj >= 0 && fj < d->f_in)
                o += dw[ch * 9 + i * 3 + j] * cuda_emu_load (w, PTR (d->in), ((gsize) ti * d->f_in + fj) * d->C + ch);
            }
        }
        cuda_emu_store (w, PTR (d->out), ((gsize) t * d->f_out + f) * d->C + ch, o);
      }
}

static void
run_norm2 (const canary_cuda_weights *w, const cl_norm2 *n)
{
  float *v = g_new (float, n->width);
  for (int r = 0; r < n->rows; r++) {
    const gsize at = (gsize) r * n->width;
    for (int c = 0; c < n->width; c++)
      v[c] = cuda_emu_load (w, PTR (n->x), at + c);
    layer_norm (v, n->width, PTR (n->g1), PTR (n->b1));
    for (int c = 0; c < n->width; c++) {
      cuda_emu_store (w, PTR (n->x), at + c, v[c]);
      v[c] = cuda_emu_load (w, PTR (n->x), at + c);
    }
    layer_norm (v, n->width, PTR (n->g2), PTR (n->b2));
    for (int c = 0; c < n->width; c++)
      cuda_emu_store (w, PTR (n->y), at + c, v[c]);
  }
  g_free (v);
}

static void
run_relpos (const canary_cuda_weights *w, const cl_relpos *r)
{
  const int dk = r->dk, D = r->heads * dk, L = r->L;
  const float *u = PTR (r->bias_u), *bv = PTR (r->bias_v);
  double *s = g_new (double, MAX (L, 1)), *o = g_new (double, dk);
  for (int i = 0; i < r->T; i++) {
    for (int h = 0; h < r->heads; h++) {
      for (int c = 0; c < dk; c++)
        o[c] = 0;
      if (i < L) {
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < L; j++) {
          double ac = 0, bd = 0;
          for (int c = 0; c < dk; c++) {
            const float q = cuda_emu_load (w, PTR (r->qkv), (gsize) i * 3 * D + h * dk + c);
            ac += (double) (q + u[h * dk + c]) * cuda_emu_load (w, PTR (r->qkv), (gsize) j * 3 * D + D + h * dk + c);
            bd += (double) (q + bv[h * dk + c]) * cuda_emu_load (w, PTR (r->p), (gsize) (L - 1 - i + j) * D + h * dk + c);
          }
          s[j] = (ac + bd) / sqrt ((double) dk);
          mx = MAX (mx, s[j]);
        }
        for (int j = 0; j < L; j++)
          sum += (s[j] = exp (s[j] - mx));
        for (int j = 0; j < L; j++)
          for (int c = 0; c < dk; c++)
            o[c] += s[j] / sum * cuda_emu_load (w, PTR (r->qkv), (gsize) j * 3 * D + 2 * D + h * dk + c);
      }
      for (int c = 0; c < dk; c++)
        cuda_emu_store (w, PTR (r->ctx), (gsize) i * D + h * dk + c, (float) o[c]);
    }
  }
  g_free (s);
  g_free (o);
}

static void
run_glu_conv (const canary_cuda_weights *w, const cl_glu_conv *g)
{
  const float *dw = PTR (g->w), *db = PTR (g->b);
  const int half = (g->K - 1) / 2;
  for (int t = 0; t < g->T; t++)
    for (int c = 0; c < g->D; c++) {
      float o = db[c];
      for (int k = 0; k < g->K; k++) {
        const int s = t + k - half;
        if (s < 0 || s >= g->L)
          continue;
        const gsize row = (gsize) s * 2 * g->D;
        o += dw[(gsize) c * g->K + k] * cuda_emu_load (w, PTR (g->pw1), row + c)
            * sigm (cuda_emu_load (w, PTR (g->pw1), row + g->D + c));
      }
      cuda_emu_store (w, PTR (g->out), (gsize) t * g->D + c, o * sigm (o));
    }
}

static void
run_check (const canary_cuda_weights *w, const canary_cuda_launch *l)
{
  for (gsize i = 0; i < l->u.check.n; i++) {
    const float v = cuda_emu_load (w, PTR (l->u.check.buf), i);
    if (!isfinite (v))
      g_error ("emulated CUDA %s: non-finite value after %s (layer %d)",
          w->dims.dtype == CANARY_CUDA_F16 ? "fp16" : "fp32", l->u.check.stage, l->layer);
  }
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
      case CL_CONV0:
        run_conv0 (w, &l->u.conv0);
        break;
      case CL_DEPTHWISE:
        run_depthwise (w, &l->u.depthwise);
        break;
      case CL_ZERO:
        memset (PTR (l->u.zero.p), 0, l->u.zero.bytes);
        break;
      case CL_SWISH:
        for (gsize j = 0; j < l->u.swish.n; j++) {
          const float v = cuda_emu_load (w, PTR (l->u.swish.x), j);
          cuda_emu_store (w, PTR (l->u.swish.x), j, v * sigm (v));
        }
        break;
      case CL_LAYER_NORM2:
        run_norm2 (w, &l->u.norm2);
        break;
      case CL_RELPOS:
        run_relpos (w, &l->u.relpos);
        break;
      case CL_GLU_CONV:
        run_glu_conv (w, &l->u.glu);
        break;
      case CL_CHECK:
        run_check (w, l);
        break;
    }
  }
}
