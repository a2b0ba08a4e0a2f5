/* gst-canary — SentencePiece .model pieces, aggregate and unified tokenizers, Canary prompts.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>
#include "formats/config.h"
#include "formats/tar.h"

G_BEGIN_DECLS

/* SentencePiece ModelProto, only what decoding and prompt lookup need. */
typedef enum {
  CANARY_PIECE_NORMAL = 1,
  CANARY_PIECE_UNKNOWN = 2,
  CANARY_PIECE_CONTROL = 3,
  CANARY_PIECE_USER_DEFINED = 4,
  CANARY_PIECE_UNUSED = 5,
  CANARY_PIECE_BYTE = 6,
} canary_piece_type;

typedef struct {
  guint n_pieces;
  char **pieces;              /* UTF-8 strings */
  float *scores;
  guint8 *types;              /* canary_piece_type */
  int model_type;             /* trainer_spec.model_type (1 unigram, 2 bpe, ...) */
  gboolean byte_fallback;
  gboolean add_dummy_prefix;  /* normalizer_spec, default TRUE */
  int unk_id;                 /* id of the UNKNOWN piece (what sentencepiece uses at run time) */
  GHashTable *piece_to_id;    /* char* → GINT_TO_POINTER(id + 1) */
  /* The rest of trainer_spec / normalizer_spec that decoding and prompt encoding consult. */
  int vocab_size;             /* trainer_spec.vocab_size (informational; n_pieces is the truth) */
  int bos_id, eos_id, pad_id; /* trainer_spec values (-1 = disabled) */
  char *unk_surface;          /* trainer_spec.unk_surface: how <unk> decodes, default " ⁇ " */
  gboolean treat_whitespace_as_suffix;
  gboolean remove_extra_whitespaces;  /* normalizer_spec, default TRUE */
  gboolean escape_whitespaces;        /* normalizer_spec, default TRUE */
  gboolean has_denormalizer;  /* denormalizer_spec carries rules: sentencepiece would post-process
                               * decoded text with them, canary_spm_decode does not */
} canary_spm;

/* Parses a SentencePiece ModelProto. Malformed protobuf → CANARY_ERROR_FORMAT. */
canary_spm *canary_spm_parse (const guint8 *data, gsize len, GError **error);
void canary_spm_free (canary_spm *spm);
/* Piece id or -1. */
int canary_spm_piece_to_id (const canary_spm *spm, const char *piece);

/* SentencePiece's decode_ids(): pieces concatenated with ▁ → space; CONTROL pieces dropped;
 * <unk> → unk_surface; runs of BYTE pieces reassembled into bytes, each byte that does not start
 * a valid UTF-8 character becoming U+FFFD; the space of the dummy prefix removed from the first
 * piece. Two deviations, both documented in spm.c: ids out of range are skipped (sentencepiece
 * raises), and a decoded U+0000 byte is dropped (the result is a C string). Free with g_free. */
char *canary_spm_decode (const canary_spm *spm, const gint32 *ids, gsize n);

/* SentencePiece's encode() for the one kind of text a Canary prompt is: a string made only of
 * USER_DEFINED pieces such as "<|startofcontext|><|en|>". Appends the ids to `out` (a GArray of
 * gint32): the dummy-prefix whitespace piece first when add_dummy_prefix (last with
 * treat_whitespace_as_suffix), then one id per symbol, symbols matched longest first. Text that is
 * not such a string → CANARY_ERROR_UNSUPPORTED naming the position (general segmentation is not
 * implemented). Empty text appends nothing. */
gboolean canary_spm_encode_symbols (const canary_spm *spm, const char *text, GArray *out,
    GError **error);

typedef struct _canary_tokenizer canary_tokenizer;

/* Builds the tokenizer the config describes, reading its SentencePiece models from the archive. */
canary_tokenizer *canary_tokenizer_new (const canary_config *cfg, canary_archive *ar, GError **error);
void canary_tokenizer_free (canary_tokenizer *tok);

/* Total number of ids (sum of sub-vocabularies); the model's V is this rounded up to 8. */
int canary_tokenizer_vocab_size (const canary_tokenizer *tok);
/* Special ids (looked up by string): -1 when absent. */
int canary_tokenizer_eos (const canary_tokenizer *tok);   /* <|endoftext|> */
int canary_tokenizer_bos (const canary_tokenizer *tok);   /* <|startoftranscript|> */
int canary_tokenizer_pad (const canary_tokenizer *tok);   /* <pad> */
/* Id of a special token string such as "<|en|>", or -1. */
int canary_tokenizer_special_id (const canary_tokenizer *tok, const char *token);

/* The language codes the model knows, i.e. those with a <|xx|> special token (aggregate: also a
 * sub-tokenizer). NULL-terminated, owned by the tokenizer. */
const char *const *canary_tokenizer_languages (const canary_tokenizer *tok);

/* The model's code for "en", "en-US", "EN_us" or "<|en|>" (owned by the tokenizer), or NULL when
 * the model has no such language. */
const char *canary_tokenizer_lookup_language (const canary_tokenizer *tok, const char *code);

/* Prompt slots; NULL/negative means "NeMo's default". */
typedef struct {
  const char *source_lang;   /* "en" (also accepts "en-US", "<|en|>") */
  const char *target_lang;   /* defaults to source_lang; for translation to "en" (NeMo's default) */
  const char *task;          /* "asr"/"transcribe" or "ast"/"translate"/"s2t_translation" */
  int pnc;                   /* 1 yes, 0 no, -1 default (yes) */
  int itn;                   /* canary2 only, default no */
  int timestamp;             /* canary2 only, default no */
  int diarize;               /* canary2 only, default no */
  const char *emotion;       /* canary2 only: "undefined" (default), "neutral", ... */
} canary_prompt_options;

/* Decoder input ids for the prompt, exactly as NeMo's prompt formatter builds them for the model's
 * format and tokenizer kind. Unknown language/task → CANARY_ERROR_INVALID_ARGUMENT naming it. */
GArray *canary_tokenizer_build_prompt (const canary_tokenizer *tok, canary_prompt_format format,
    const canary_prompt_options *opts, GError **error);

/* Text for output ids (prompt already stripped) exactly as NeMo's ids_to_text does it for the
 * tokenizer kind: aggregate = piece concatenation with ▁→space; unified = SentencePiece decoding
 * (dummy-prefix space dropped, byte pieces reassembled, <unk> as " ⁇ "). Ids out of range render
 * as nothing. Free with g_free. */
char *canary_tokenizer_decode (const canary_tokenizer *tok, const gint32 *ids, gsize n);

/* Piece string of an id (for logs and tests), or NULL. */
const char *canary_tokenizer_id_to_piece (const canary_tokenizer *tok, int id);

G_END_DECLS
