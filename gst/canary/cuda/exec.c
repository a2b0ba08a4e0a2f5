/* gst-canary — runs the CUDA launch records (cuda/launch.h: encoder and decoder) on the state's stream.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cuda/internal.h"

#include "canary.h"
#include "cuda/device.h"

#define P(addr) ((void *) (addr))

gboolean
canary_cuda_exec (canary_cuda_state *st, const canary_cuda_launch *l, GError **error)
{
  const canary_cuda_dims *m = &st->model->w->dims;
  const ck_dtype dt = cuda_ck (st);
  ck_step_params *sp = cuda_region (st, CR_PARAMS);
  cudaStream_t s = st->stream;
  switch (l->op) {
    case CL_EMBED: {
      const cl_embed *e = &l->u.embed;
      return canary_cuda_ok (ck_dec_embed (dt, P (e->tokens), e->rows, e->n_tokens, sp, P (e->tok_emb),
          P (e->pos_enc), P (e->g), P (e->b), P (e->x), e->width, s), "decoder embedding", error);
    }
    case CL_LAYER_NORM: {
      const cl_norm *n = &l->u.norm;
      return canary_cuda_ok (ck_layer_norm (dt, P (n->x), P (n->g), P (n->b), P (n->y), n->rows, n->width, s),
          "decoder LayerNorm", error);
    }
    case CL_GEMM:
      return canary_cuda_gemm_run (st->gemm, m->dtype, &l->u.gemm, s, error);
    case CL_SELF_ATTENTION: {
      const cl_self *a = &l->u.self;
      return canary_cuda_ok (ck_dec_self_attention (dt, P (a->qkv), P (a->tokens), a->n_beams, a->n_tokens, sp,
          P (a->slot), P (a->k_cache), P (a->v_cache), m->max_len, st->pad_id, P (a->ctx), m->H, m->dec_heads, s),
          "decoder self-attention", error);
    }
    case CL_CROSS_ATTENTION: {
      const cl_cross *c = &l->u.cross;
      return canary_cuda_ok (ck_dec_cross_attention (dt, P (c->q), c->rows, P (c->kv), c->ld_kv, sp, P (c->ctx),
          m->H, m->dec_heads, s), "decoder cross-attention", error);
    }
    case CL_ARGMAX: {
      const cl_argmax *a = &l->u.argmax;
      return canary_cuda_ok (ck_argmax_advance (P (a->logits), m->V, P (a->choice), P (a->next_token), sp,
          a->advance, s), "decoder argmax", error);
    }
    case CL_CONV0: {
      const cl_conv0 *c = &l->u.conv0;
      const cudaError_t err = c->w
          ? ck_conv0_dw_s2 (dt, P (c->mel), c->ld, c->n_mels, c->len0, P (c->w0), P (c->b0), c->f1, c->len1, P (c->w),
              P (c->b), P (c->out), c->C, c->t_out, c->f_out, c->len_out, s)
          : ck_conv0_relu (dt, P (c->mel), c->ld, c->n_mels, c->len0, P (c->w0), P (c->b0), P (c->out), c->C, c->t_out,
              c->f_out, c->len_out, s);
      return canary_cuda_ok (err, "subsampling conv.0", error);
    }
    case CL_DEPTHWISE: {
      const cl_depthwise *d = &l->u.depthwise;
      return canary_cuda_ok (ck_depthwise_s2 (dt, P (d->in), d->t_in, d->f_in, P (d->w), P (d->b), P (d->out), d->C,
          d->t_out, d->f_out, d->len_out, s), "subsampling depthwise conv", error);
    }
    case CL_ZERO:
      return canary_cuda_ok (cudaMemsetAsync (P (l->u.zero.p), 0, l->u.zero.bytes, s), "masking the subsampling", error);
    case CL_SWISH:
      return canary_cuda_ok (ck_swish (dt, P (l->u.swish.x), l->u.swish.n, s), "encoder Swish", error);
    case CL_LAYER_NORM2: {
      const cl_norm2 *n = &l->u.norm2;
      return canary_cuda_ok (ck_layer_norm2 (dt, P (n->x), P (n->g1), P (n->b1), P (n->g2), P (n->b2), P (n->y), n->rows,
          n->width, s), "encoder LayerNorm", error);
    }
    case CL_RELPOS: {
      const cl_relpos *r = &l->u.relpos;
      const gsize col = (gsize) r->heads * r->dk * (m->dtype == CANARY_CUDA_F16 ? 2 : 4);
      guint8 *qkv = P (r->qkv);
      return canary_cuda_ok (ck_relpos_attention (dt, qkv, qkv + col, qkv + 2 * col, 3 * r->heads * r->dk, P (r->p),
          P (r->bias_u), P (r->bias_v), P (r->ctx), r->T, r->L, r->heads, r->dk, s),
          "encoder relative-position attention", error);
    }
    case CL_GLU_CONV: {
      const cl_glu_conv *g = &l->u.glu;
      return canary_cuda_ok (ck_glu_dwconv_swish (dt, P (g->pw1), P (g->w), P (g->b), P (g->out), g->T, g->L, g->D, g->K,
          s), "encoder convolution module", error);
    }
    case CL_CHECK:
      return canary_cuda_check_finite (st, P (l->u.check.buf), l->u.check.n, l->u.check.stage, l->layer, error);
  }
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE, "CUDA: unknown launch kind %d", l->op);
  return FALSE;
}

gboolean
canary_cuda_exec_list (canary_cuda_state *st, const GArray *launches, GError **error)
{
  for (guint i = 0; i < launches->len; i++)
    if (!canary_cuda_exec (st, &g_array_index (launches, canary_cuda_launch, i), error))
      return FALSE;
  return TRUE;
}
