/* gst-canary — Canary tokenizers (NeMo's CanaryTokenizer aggregate and the unified SentencePiece
 * tokenizer of canary-1b-v2), prompt building and detokenisation, mirroring NeMo.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * NeMo sources mirrored (nemo/collections/common): tokenizers/canary_tokenizer.py,
 * tokenizers/aggregate_tokenizer.py, tokenizers/sentencepiece_tokenizer.py, prompts/canary.py,
 * prompts/canary2.py, prompts/formatter.py. See docs/MODEL.md (Prompts, Tokenizers).
 */
#include "text/tokenizer.h"

#include <stdarg.h>
#include <string.h>

#include "util.h"

#define SPL_TOKENS "spl_tokens"  /* CANARY_SPECIAL_TOKENIZER: the sub-tokenizer of special tokens */
#define TOK_BOS "<|startoftranscript|>"
#define TOK_EOS "<|endoftext|>"
#define TOK_PAD "<pad>"
#define TOK_BOCTX "<|startofcontext|>"

typedef struct {
  char *lang;        /* sub-tokenizer name from the YAML ("spl_tokens", "en", ...) */
  canary_spm *spm;
  int offset;        /* first global id of this sub-tokenizer */
} sub_tokenizer;

struct _canary_tokenizer {
  canary_tokenizer_kind kind;
  GPtrArray *subs;       /* sub_tokenizer*, in id order; unified: exactly one */
  int vocab_size;
  GHashTable *special;   /* "<|...|>" or "<pad>" → global id + 1 (keys point into the pieces) */
  int eos, bos, pad;
  char **languages;      /* NULL-terminated, normalised codes */
};

#define fail(error, code, ...) canary_fail (error, code, NULL, __VA_ARGS__)

static void
sub_tokenizer_free (gpointer p)
{
  sub_tokenizer *s = p;
  g_free (s->lang);
  canary_spm_free (s->spm);
  g_free (s);
}

void
canary_tokenizer_free (canary_tokenizer *tok)
{
  if (!tok)
    return;
  if (tok->special)
    g_hash_table_unref (tok->special);
  if (tok->subs)
    g_ptr_array_unref (tok->subs);
  g_strfreev (tok->languages);
  g_free (tok);
}

/* ----------------------------------------------------------------------------------------------
 * Language codes
 * ---------------------------------------------------------------------------------------------- */

/* "en", "en-US", "EN_us", "<|en|>" → "en". FALSE when `code` has no alphabetic primary subtag of a
 * sane length. Only the primary subtag matters: Canary's language tokens are bare ISO codes. */
static gboolean
normalize_lang_code (const char *code, char *buf, gsize buf_size)
{
  gsize len = strlen (code);

  if (len >= 4 && g_str_has_prefix (code, "<|") && g_str_has_suffix (code, "|>")) {
    code += 2;
    len -= 4;
  }
  gsize n = 0;
  while (n < len && code[n] != '-' && code[n] != '_')
    n++;
  if (n < 2 || n >= buf_size)
    return FALSE;
  for (gsize i = 0; i < n; i++) {
    if (!g_ascii_isalpha (code[i]))
      return FALSE;
    buf[i] = g_ascii_tolower (code[i]);
  }
  buf[n] = '\0';
  return TRUE;
}

/* The model's canonical code for `code`, or NULL. */
static const char *
lookup_language (const canary_tokenizer *tok, const char *code)
{
  char norm[16];
  if (!code || !normalize_lang_code (code, norm, sizeof norm))
    return NULL;
  for (char **l = tok->languages; *l; l++)
    if (strcmp (*l, norm) == 0)
      return *l;
  return NULL;
}

/* A language token in a unified vocabulary: "<|xx|>" with two lower-case ASCII letters (the ISO
 * 639-1 codes the Canary build scripts use; no other special token has that shape). */
static gboolean
is_language_token (const char *piece, char code[3])
{
  if (strlen (piece) != 6 || !g_str_has_prefix (piece, "<|") || !g_str_has_suffix (piece, "|>"))
    return FALSE;
  if (!g_ascii_islower (piece[2]) || !g_ascii_islower (piece[3]))
    return FALSE;
  code[0] = piece[2];
  code[1] = piece[3];
  code[2] = '\0';
  return TRUE;
}

static void
add_language (GPtrArray *langs, const char *code)
{
  for (guint i = 0; i < langs->len; i++)
    if (strcmp (langs->pdata[i], code) == 0)
      return;
  g_ptr_array_add (langs, g_strdup (code));
}

/* Aggregate: the sub-tokenizers' languages (YAML order) that also have a <|xx|> special token.
 * Unified: every language token of the vocabulary, in id order. */
static void
collect_languages (canary_tokenizer *tok)
{
  GPtrArray *langs = g_ptr_array_new ();

  if (tok->kind == CANARY_TOKENIZER_AGGREGATE) {
    for (guint i = 0; i < tok->subs->len; i++) {
      const sub_tokenizer *s = tok->subs->pdata[i];
      char code[16], token[24];
      if (strcmp (s->lang, SPL_TOKENS) == 0)
        continue;
      if (!normalize_lang_code (s->lang, code, sizeof code)) {
        CANARY_WARN ("tokenizer: sub-tokenizer \"%s\" is not named after a language", s->lang);
        continue;
      }
      g_snprintf (token, sizeof token, "<|%s|>", code);
      if (canary_tokenizer_special_id (tok, token) < 0) {
        CANARY_WARN ("tokenizer: no special token %s for sub-tokenizer \"%s\"", token, s->lang);
        continue;
      }
      add_language (langs, code);
    }
  } else {
    const canary_spm *spm = ((const sub_tokenizer *) tok->subs->pdata[0])->spm;
    for (guint i = 0; i < spm->n_pieces; i++) {
      char code[3];
      if (is_language_token (spm->pieces[i], code))
        add_language (langs, code);
    }
  }
  g_ptr_array_add (langs, NULL);
  tok->languages = (char **) g_ptr_array_free (langs, FALSE);
}

/* ----------------------------------------------------------------------------------------------
 * Construction
 * ---------------------------------------------------------------------------------------------- */

static gboolean
is_special_piece (const char *piece)
{
  /* CanaryTokenizer.special_tokens: every "<|...|>" piece, plus "<pad>". */
  return (g_str_has_prefix (piece, "<|") && g_str_has_suffix (piece, "|>") && strlen (piece) >= 4)
      || strcmp (piece, TOK_PAD) == 0;
}

static void
index_special_tokens (canary_tokenizer *tok, const sub_tokenizer *s)
{
  for (guint i = 0; i < s->spm->n_pieces; i++)
    if (is_special_piece (s->spm->pieces[i]))
      g_hash_table_insert (tok->special, s->spm->pieces[i], GINT_TO_POINTER (s->offset + (int) i + 1));
}

static gboolean
add_sub_tokenizer (canary_tokenizer *tok, canary_archive *ar, const char *lang,
    const char *model_path, GError **error)
{
  const guint8 *data;
  gsize len;

  if (!model_path)
    return fail (error, CANARY_ERROR_FORMAT,
        "tokenizer \"%s\": no model_path in the config", lang);
  if (!canary_archive_resolve (ar, model_path, &data, &len, error))
    return FALSE;
  canary_spm *spm = canary_spm_parse (data, len, error);
  if (!spm) {
    g_prefix_error (error, "tokenizer \"%s\" (%s): ", lang, model_path);
    return FALSE;
  }
  /* NeMo's aggregate offsets are running sums of the sub-vocabulary sizes; keep them in int. */
  if (spm->n_pieces > (guint) (G_MAXINT - tok->vocab_size)) {
    canary_spm_free (spm);
    return fail (error, CANARY_ERROR_FORMAT,
        "tokenizer \"%s\": total vocabulary too large", lang);
  }

  sub_tokenizer *s = g_new0 (sub_tokenizer, 1);
  s->lang = g_strdup (lang);
  s->spm = spm;
  s->offset = tok->vocab_size;
  tok->vocab_size += (int) spm->n_pieces;
  g_ptr_array_add (tok->subs, s);
  return TRUE;
}

static gboolean
load_aggregate (canary_tokenizer *tok, const canary_config *cfg, canary_archive *ar, GError **error)
{
  const sub_tokenizer *spl = NULL;

  if (!cfg->tokenizer_langs || cfg->tokenizer_langs->len == 0)
    return fail (error, CANARY_ERROR_FORMAT,
        "aggregate tokenizer: tokenizer.langs is empty");
  for (guint i = 0; i < cfg->tokenizer_langs->len; i++) {
    const canary_tokenizer_lang *l = cfg->tokenizer_langs->pdata[i];
    if (!add_sub_tokenizer (tok, ar, l->lang, l->model_path, error))
      return FALSE;
    if (strcmp (l->lang, SPL_TOKENS) == 0)
      spl = tok->subs->pdata[tok->subs->len - 1];
  }
  if (!spl)
    return fail (error, CANARY_ERROR_FORMAT,
        "aggregate tokenizer: no \"" SPL_TOKENS "\" sub-tokenizer in tokenizer.langs");
  index_special_tokens (tok, spl);
  return TRUE;
}

static gboolean
load_unified (canary_tokenizer *tok, const canary_config *cfg, canary_archive *ar, GError **error)
{
  if (!add_sub_tokenizer (tok, ar, "unified", cfg->tokenizer_model_path, error))
    return FALSE;
  const sub_tokenizer *s = tok->subs->pdata[0];
  /* ids_to_text is sentencepiece's decode, which would then apply these rules; we do not. */
  if (s->spm->has_denormalizer)
    return fail (error, CANARY_ERROR_UNSUPPORTED,
        "tokenizer %s: denormalizer rules are not supported", cfg->tokenizer_model_path);
  index_special_tokens (tok, s);
  return TRUE;
}

canary_tokenizer *
canary_tokenizer_new (const canary_config *cfg, canary_archive *ar, GError **error)
{
  g_return_val_if_fail (cfg != NULL && ar != NULL, NULL);

  canary_tokenizer *tok = g_new0 (canary_tokenizer, 1);
  tok->kind = cfg->tokenizer_kind;
  tok->subs = g_ptr_array_new_with_free_func (sub_tokenizer_free);
  tok->special = g_hash_table_new (g_str_hash, g_str_equal);

  gboolean ok = tok->kind == CANARY_TOKENIZER_AGGREGATE ? load_aggregate (tok, cfg, ar, error)
      : load_unified (tok, cfg, ar, error);
  if (!ok) {
    canary_tokenizer_free (tok);
    return NULL;
  }
  tok->eos = canary_tokenizer_special_id (tok, TOK_EOS);
  tok->bos = canary_tokenizer_special_id (tok, TOK_BOS);
  tok->pad = canary_tokenizer_special_id (tok, TOK_PAD);
  collect_languages (tok);
  return tok;
}

/* ----------------------------------------------------------------------------------------------
 * Accessors
 * ---------------------------------------------------------------------------------------------- */

int
canary_tokenizer_vocab_size (const canary_tokenizer *tok)
{
  return tok->vocab_size;
}

int
canary_tokenizer_eos (const canary_tokenizer *tok)
{
  return tok->eos;
}

int
canary_tokenizer_bos (const canary_tokenizer *tok)
{
  return tok->bos;
}

int
canary_tokenizer_pad (const canary_tokenizer *tok)
{
  return tok->pad;
}

int
canary_tokenizer_special_id (const canary_tokenizer *tok, const char *token)
{
  if (!token)
    return -1;
  return GPOINTER_TO_INT (g_hash_table_lookup (tok->special, token)) - 1;
}

const char *const *
canary_tokenizer_languages (const canary_tokenizer *tok)
{
  return (const char *const *) tok->languages;
}

/* The sub-tokenizer holding global id `id`, with the id made local; NULL when out of range. */
static const sub_tokenizer *
locate (const canary_tokenizer *tok, int id, int *local)
{
  if (id < 0 || id >= tok->vocab_size)
    return NULL;
  for (guint i = tok->subs->len; i-- > 0;) {
    const sub_tokenizer *s = tok->subs->pdata[i];
    if (id >= s->offset) {
      *local = id - s->offset;
      return s;
    }
  }
  return NULL;
}

const char *
canary_tokenizer_id_to_piece (const canary_tokenizer *tok, int id)
{
  int local;
  const sub_tokenizer *s = locate (tok, id, &local);
  return s ? s->spm->pieces[local] : NULL;
}

/* ----------------------------------------------------------------------------------------------
 * Prompts
 * ---------------------------------------------------------------------------------------------- */

/* The value sets of prompts/canary.py and canary2.py, after our options are mapped to strings. */
static gboolean
resolve_task (const char *task, gboolean *translate, GError **error)
{
  static const char *const transcribe[] = { "asr", "transcribe", "<|transcribe|>", NULL };
  static const char *const translate_[] = { "ast", "translate", "<|translate|>", "s2t_translation",
    NULL };

  if (!task || g_strv_contains (transcribe, task)) {
    *translate = FALSE;
    return TRUE;
  }
  if (g_strv_contains (translate_, task)) {
    *translate = TRUE;
    return TRUE;
  }
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
      "unknown task \"%s\" (expected asr/transcribe or ast/translate/s2t_translation)", task);
  return FALSE;
}

static const char *
resolve_lang_option (const canary_tokenizer *tok, const char *code, const char *which,
    GError **error)
{
  const char *lang = lookup_language (tok, code);
  if (!lang) {
    char *known = g_strjoinv (" ", tok->languages);
    g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
        "unknown %s language \"%s\" (the model knows: %s)", which, code, known);
    g_free (known);
  }
  return lang;
}

/* "undefined" (default), "neutral", ... also as "emo:x" or "<|emo:x|>" → "<|emo:x|>". */
static char *
resolve_emotion (const char *emotion, GError **error)
{
  static const char *const known[] = { "undefined", "neutral", "angry", "happy", "sad", NULL };
  const char *e = emotion ? emotion : "undefined";
  gsize len = strlen (e);

  if (len >= 4 && g_str_has_prefix (e, "<|") && g_str_has_suffix (e, "|>")) {
    e += 2;
    len -= 4;
  }
  if (len >= 4 && strncmp (e, "emo:", 4) == 0) {
    e += 4;
    len -= 4;
  }
  for (const char *const *k = known; *k; k++)
    if (strlen (*k) == len && strncmp (*k, e, len) == 0)
      return g_strdup_printf ("<|emo:%s|>", *k);
  g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
      "unknown emotion \"%s\" (expected undefined, neutral, angry, happy or sad)", emotion);
  return NULL;
}

/* A boolean slot: <|name|> when yes (or by default when default_yes), else <|noname|>. */
static char *
bool_token (const char *name, int value, gboolean default_yes)
{
  const gboolean yes = value < 0 ? default_yes : value > 0;
  return g_strdup_printf (yes ? "<|%s|>" : "<|no%s|>", name);
}

static void
add_symbol (GPtrArray *symbols, char *owned)
{
  g_ptr_array_add (symbols, owned);
}

/* The special-token sequence of the prompt, as the formatter's template fills it in. */
static GPtrArray *
prompt_symbols (const canary_tokenizer *tok, canary_prompt_format format,
    const canary_prompt_options *o, GError **error)
{
  gboolean translate;
  const char *src, *tgt;
  char *emotion = NULL;

  /* NeMo's defaults (_may_be_make_dict_and_fix_paths, canary2 optional slots: source "en",
   * target "en", task asr, pnc yes), except that for transcription the target defaults to the
   * source language, this API's contract (canary.h): NeMo's "en" would turn a German
   * transcription request into a translation. */
  if (!resolve_task (o->task, &translate, error))
    return NULL;
  if (!(src = resolve_lang_option (tok, o->source_lang ? o->source_lang : "en", "source", error)))
    return NULL;
  if (!(tgt = resolve_lang_option (tok, o->target_lang ? o->target_lang : translate ? "en" : src,
            "target", error)))
    return NULL;

  GPtrArray *symbols = g_ptr_array_new_with_free_func (g_free);
  if (format == CANARY_PROMPT_CANARY) {
    /* canary.py: <|startoftranscript|><|src|><|task|><|tgt|><|pnc|>. The v1 format has no
     * timestamp slot and NeMo refuses the option for it. */
    if (o->timestamp > 0) {
      g_ptr_array_unref (symbols);
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_INVALID_ARGUMENT,
          "timestamps are not supported by the \"canary\" prompt format");
      return NULL;
    }
    add_symbol (symbols, g_strdup (TOK_BOS));
    add_symbol (symbols, g_strdup_printf ("<|%s|>", src));
    add_symbol (symbols, g_strdup (translate ? "<|translate|>" : "<|transcribe|>"));
    add_symbol (symbols, g_strdup_printf ("<|%s|>", tgt));
    add_symbol (symbols, bool_token ("pnc", o->pnc, TRUE));
    return symbols;
  }

  /* canary2.py: <|startofcontext|>[context]<|startoftranscript|><|emo|><|src|><|tgt|><|pnc|>
   * <|itn|><|timestamp|><|diarize|>; no task slot (translation = target differs from source). */
  if (!(emotion = resolve_emotion (o->emotion, error))) {
    g_ptr_array_unref (symbols);
    return NULL;
  }
  add_symbol (symbols, g_strdup (TOK_BOCTX));
  add_symbol (symbols, g_strdup (TOK_BOS));
  add_symbol (symbols, emotion);
  add_symbol (symbols, g_strdup_printf ("<|%s|>", src));
  add_symbol (symbols, g_strdup_printf ("<|%s|>", tgt));
  add_symbol (symbols, bool_token ("pnc", o->pnc, TRUE));
  add_symbol (symbols, bool_token ("itn", o->itn, FALSE));
  add_symbol (symbols, bool_token ("timestamp", o->timestamp, FALSE));
  add_symbol (symbols, bool_token ("diarize", o->diarize, FALSE));
  return symbols;
}

GArray *
canary_tokenizer_build_prompt (const canary_tokenizer *tok, canary_prompt_format format,
    const canary_prompt_options *opts, GError **error)
{
  g_return_val_if_fail (tok != NULL, NULL);

  const canary_prompt_options defaults = { NULL, NULL, NULL, -1, -1, -1, -1, NULL };
  GPtrArray *symbols = prompt_symbols (tok, format, opts ? opts : &defaults, error);
  if (!symbols)
    return NULL;

  GArray *ids = g_array_new (FALSE, FALSE, sizeof (gint32));
  gboolean ok = TRUE;
  if (tok->kind == CANARY_TOKENIZER_AGGREGATE) {
    /* CanaryTokenizer._tokenize_special_prompt: each symbol looked up in spl_tokens. */
    for (guint i = 0; ok && i < symbols->len; i++) {
      const gint32 id = canary_tokenizer_special_id (tok, symbols->pdata[i]);
      if (id < 0) {
        g_set_error (error, CANARY_ERROR, CANARY_ERROR_UNSUPPORTED,
            "the model's special tokens have no %s", (const char *) symbols->pdata[i]);
        ok = FALSE;
      }
      g_array_append_val (ids, id);
    }
  } else {
    /* The formatter calls text_to_ids() on the concatenated string: a SentencePiece encode,
     * which puts the dummy-prefix piece first (see canary_spm_encode_symbols). */
    g_ptr_array_add (symbols, NULL);
    char *text = g_strjoinv ("", (char **) symbols->pdata);
    const sub_tokenizer *s = tok->subs->pdata[0];
    ok = canary_spm_encode_symbols (s->spm, text, ids, error);
    g_free (text);
  }
  g_ptr_array_unref (symbols);
  if (!ok) {
    g_array_unref (ids);
    return NULL;
  }
  return ids;
}

/* ----------------------------------------------------------------------------------------------
 * Detokenisation
 * ---------------------------------------------------------------------------------------------- */

char *
canary_tokenizer_decode (const canary_tokenizer *tok, const gint32 *ids, gsize n)
{
  g_return_val_if_fail (tok != NULL, NULL);
  g_return_val_if_fail (ids != NULL || n == 0, NULL);

  if (tok->kind == CANARY_TOKENIZER_UNIFIED)
    return canary_spm_decode (((const sub_tokenizer *) tok->subs->pdata[0])->spm, ids, n);

  /* AggregateTokenizer.ids_to_text: ''.join(pieces).replace('▁', ' ') — no sentencepiece
   * decoding, so no dummy-prefix removal, byte reassembly or control-piece dropping. */
  GString *out = g_string_new (NULL);
  for (gsize i = 0; i < n; i++) {
    const char *piece = canary_tokenizer_id_to_piece (tok, ids[i]);
    if (piece)
      g_string_append (out, piece);
  }
  g_string_replace (out, "\xe2\x96\x81", " ", 0);
  return g_string_free (out, FALSE);
}

const char *
canary_tokenizer_lookup_language (const canary_tokenizer *tok, const char *code)
{
  g_return_val_if_fail (tok != NULL, NULL);
  return lookup_language (tok, code);
}
