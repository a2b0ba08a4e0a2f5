/* gst-canary — model_config.yaml (libyaml) → the hyper-parameters the engine needs.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  CANARY_PROMPT_CANARY,   /* canary-1b: 5 special tokens */
  CANARY_PROMPT_CANARY2,  /* flash / v2: startofcontext ... nodiarize */
} canary_prompt_format;

typedef enum {
  CANARY_TOKENIZER_AGGREGATE,  /* tokenizer.type: agg (spl_tokens + per-language SentencePiece) */
  CANARY_TOKENIZER_UNIFIED,    /* tokenizer.type: bpe (one SentencePiece model, v2) */
} canary_tokenizer_kind;

typedef struct {
  char *lang;        /* "spl_tokens", "en", ... in YAML order */
  char *model_path;  /* config value, e.g. "nemo:<hex>_tokenizer.model" */
} canary_tokenizer_lang;

typedef struct {
  /* preprocessor */
  int sample_rate;          /* 16000 */
  int n_window_size;        /* samples, int(window_size * sample_rate) */
  int n_window_stride;      /* samples */
  int n_fft;
  int n_mels;               /* features */
  char *window;             /* "hann" ... */
  char *normalize;          /* "per_feature" */
  double preemph;           /* 0.97 unless set; 0 = off */
  double log_zero_guard_value;
  char *log_zero_guard_type;  /* "add" or "clamp" */
  double mag_power;
  gboolean log;
  gboolean exact_pad;
  double pad_min_duration;  /* seconds; transcribe-time padding of short clips (1.0) */

  /* encoder (FastConformer) */
  int enc_layers;
  int enc_d_model;
  int enc_heads;
  int enc_ff_expansion;     /* ff_expansion_factor */
  int enc_conv_kernel;
  int subsampling_factor;
  int subsampling_channels;
  char *subsampling;        /* "dw_striding" */
  char *self_attention_model; /* "rel_pos" */
  gboolean untie_biases;
  gboolean xscaling;
  char *conv_norm_type;     /* "batch_norm" */
  int feat_out;             /* -1 */

  /* decoder (Transformer) */
  int dec_layers;
  int dec_hidden;
  int dec_heads;
  int dec_inner;
  int dec_max_seq_len;
  char *dec_hidden_act;     /* "relu" */
  gboolean dec_pre_ln;
  int vocab_size;           /* head.num_classes if present, else -1 (derive from the tokenizer) */

  /* decoding defaults */
  int beam_size;
  double length_penalty;    /* beam.length_penalty (NeMo ignores len_pen), 0 when absent */
  int max_generation_delta; /* beam.max_generation_delta; -1 (no cap) when absent, as in NeMo */

  /* prompt / tokenizer */
  canary_prompt_format prompt_format;
  canary_tokenizer_kind tokenizer_kind;
  GPtrArray *tokenizer_langs; /* of canary_tokenizer_lang*, aggregate only */
  char *tokenizer_model_path; /* unified only */

  char *target;             /* class path from the yaml */
  char *nemo_version;       /* may be NULL */
} canary_config;

/* Parses model_config.yaml text. Rejects documents that are not an EncDecMultiTaskModel-style
 * Canary config (missing encoder/transf_decoder/preprocessor/tokenizer sections, unsupported
 * layer types) with CANARY_ERROR_UNSUPPORTED or CANARY_ERROR_FORMAT naming the key. */
canary_config *canary_config_parse (const char *yaml, gsize len, GError **error);
void canary_config_free (canary_config *cfg);

G_END_DECLS
