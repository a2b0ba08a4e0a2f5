/* gst-canary — NeMo's numeric constants, one definition each for the C engine and the CUDA
 * kernels (kernels/common.cuh includes this file), so the backends cannot drift apart.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Plain macros without types or includes: valid C11 and CUDA C++. Where a constant is written
 * as a double, code that computes in float converts it with a cast at the use, which gives the
 * same value as the float literal it replaced. Sources and meaning: docs/MODEL.md §encoder,
 * §decoder, §frontend. */
#pragma once

/* Masked attention scores get this additive value, not −inf (NeMo's INF_VAL in the encoder,
 * transformer_utils.NEG_INF in the decoder and the beam search): exp() of it underflows to 0
 * next to any valid score, and a row whose keys are all masked still softmaxes without NaN. */
#define CANARY_MASK_VALUE (-10000.0f)

/* Base of the sinusoidal position tables (the encoder's RelPositionalEncoding reuses INF_VAL for
 * it; the decoder's FixedPositionalEncoding uses the same 10000). */
#define CANARY_POS_BASE 10000.0

/* eps of every LayerNorm, encoder and decoder (the torch.nn.LayerNorm default, kept by NeMo). */
#define CANARY_LN_EPS 1e-5

/* eps of the conformer convolution module's BatchNorm1d (the torch default). */
#define CANARY_BN_EPS 1e-5

/* features.py CONSTANT: added to the per-feature standard deviation of the mel normalisation. */
#define CANARY_MEL_STD_EPS 1e-5f
