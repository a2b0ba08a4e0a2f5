/* gst-canary — runs the CUDA decoder's launch records (cuda_launch.h) on the state's stream.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cuda_internal.h"

#include "canary.h"
#include "cuda_device.h"

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
  }
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_DEVICE, "CUDA decoder: unknown launch kind %d", l->op);
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
