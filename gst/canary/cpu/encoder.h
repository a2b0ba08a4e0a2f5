/* gst-canary — FastConformer encoder (NeMo ConformerEncoder, NeMo >= 2.5 behaviour), FP32 CPU.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * mel [n_mels][F] (valid frames L) → dw_striding subsampling (masked) → `pre_encode.out` →
 * conformer layers → optional `encoder_decoder_proj` (docs/MODEL.md §encoder) →
 * [T_enc][out_dim], with enc_len = the subsampled L. On CPUs with AVX-512F the GEMMs use the
 * engine's own kernel (weights read in place from the checkpoint, no packing, fused bias and
 * activation; see cpu/gemm.h for why) on a thread team (cpu/team.h); elsewhere, or with
 * CANARY_ENCODER_SIMD=0, every GEMM is one cblas_sgemm.
 *
 * A canary_encoder holds the weights (views into the checkpoint where possible) and is
 * immutable after canary_encoder_new: share it between threads. A canary_encoder_work holds the
 * activations for one input at a time; give each thread its own.
 */
#pragma once

#include <glib.h>

#include "formats/ckpt.h"
#include "formats/config.h"

G_BEGIN_DECLS

typedef struct _canary_encoder canary_encoder;
typedef struct _canary_encoder_work canary_encoder_work;

/* Loads and checks every encoder tensor against the config; errors (CANARY_ERROR_FORMAT or
 * _NOT_FOUND) name the key and the expected shape. Unsupported encoder variants give
 * CANARY_ERROR_UNSUPPORTED. `ck` must outlive the encoder (weights are used in place). */
canary_encoder *canary_encoder_new (const canary_config *cfg, const canary_ckpt *ck, GError **error);
void canary_encoder_free (canary_encoder *enc);

/* Bytes of weights the encoder holds itself (converted copies, BN-folded depthwise weights),
 * beyond the checkpoint mapping. */
gsize canary_encoder_weight_bytes (const canary_encoder *enc);

/* precision=fp16: converts every GEMM weight (the subsampling's pointwise convs, pre_encode.out,
 * each layer's Linears, pointwise convs and linear_pos, the projection) into one FP16
 * allocation (canary_f32_to_f16, the CUDA image's rounding), which the forward pass then reads
 * with FP32 accumulation. Everything else (LayerNorms, biases, conv.0, the depthwise convs with
 * BatchNorm folded in FP32, the position biases) stays FP32. Call once, before any forward pass;
 * FALSE with CANARY_ERROR_OUT_OF_MEMORY when the allocation fails. Afterwards the FP32 GEMM
 * weights are no longer read (the caller may page the checkpoint out). */
gboolean canary_encoder_use_f16 (canary_encoder *enc, canary_release_fn release, gpointer user_data,
    GError **error);
/* Weights converted to FP16 (0 before canary_encoder_use_f16). */
gsize canary_encoder_f16_elems (const canary_encoder *enc);

/* Width of the output rows: dec_hidden with an encoder→decoder projection, else enc_d_model. */
int canary_encoder_out_dim (const canary_encoder *enc);
int canary_encoder_d_model (const canary_encoder *enc);

/* Encoder frames for a number of mel frames (the subsampling's ceil(n / 2) per stage). */
int canary_encoder_n_out (const canary_encoder *enc, int n_mel_frames);

/* Scratch for inputs of up to `max_frames` mel frames (grown by forward when a longer input
 * arrives). NULL with CANARY_ERROR_OUT_OF_MEMORY (byte count in the message) on failure. */
canary_encoder_work *canary_encoder_work_new (const canary_encoder *enc, int max_frames,
    GError **error);
void canary_encoder_work_free (canary_encoder_work *work);
/* Bytes of scratch currently held. */
gsize canary_encoder_work_bytes (const canary_encoder_work *work);

/* Runs the encoder on mel[n_mels][n_frames] (row stride n_frames, as canary_mel_compute writes
 * it) of which the first n_valid frames are valid. *out points at [t_enc][out_dim] inside
 * `work`, valid until the next call with that work; rows >= enc_len are NeMo's padding rows
 * (computed the same way, but not meaningful). */
gboolean canary_encoder_forward (const canary_encoder *enc, canary_encoder_work *work,
    const float *mel, int n_frames, int n_valid, const float **out, int *t_enc, int *enc_len,
    GError **error);

/* Only the subsampling + `pre_encode.out` (NeMo's `encoder.pre_encode` output, before the
 * positional encoding / xscale): *out is [t_enc][d_model] inside `work`. For tests. */
gboolean canary_encoder_pre_encode (const canary_encoder *enc, canary_encoder_work *work,
    const float *mel, int n_frames, int n_valid, const float **out, int *t_enc, int *enc_len,
    GError **error);

G_END_DECLS
