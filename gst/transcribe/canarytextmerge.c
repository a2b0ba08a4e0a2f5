/* gst-canary — joining the texts of overlapping transcription windows.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * With overlap > 0, consecutive windows share `overlap` of audio, so the words spoken there come out
 * twice: at the end of the previous window's text and at the start of the next one's. The engine
 * gives no word timings, so the shared words are found in the text itself:
 *
 *   Find the longest run of k words that ends the previous text and starts the next text; the
 *   next text's words up to and including that run are dropped and the rest is emitted.
 *
 * Words are compared case-insensitively with punctuation removed ("Bank." matches "bank"), since
 * the model capitalises and punctuates a sentence start differently from a sentence middle. Three
 * tolerances handle the window edges, where audio is cut mid-word and the two windows hear the
 * same speech with different context:
 *   - up to SKIP_NEXT_MAX leading words of the next text may be skipped (the next window starts
 *     inside a word, which the model renders as a fragment or a spurious word);
 *   - up to SKIP_PREV_MAX trailing words of the previous text may be ignored (the previous window
 *     ended inside a word, which the model may render as one or two words: "herse is");
 *   - two words of three letters or more may differ by up to half the longer one's letters
 *     (Levenshtein): the same word heard twice, or heard whole in one window and cut in the other,
 *     can come out spelt two ways ("dist", "difft"; "star", "starving"), and an exact-only rule
 *     then emits the whole repeat again.
 * A run with a spelling difference must hold at least one exact word. A match that skips words
 * must be at least two words long, or one exact word of MIN_ANCHOR_CHARS letters or more with at
 * most one previous word skipped: a 1 s overlap often holds one word both windows hear whole
 * between two cut ones ("on first" / "one first base"), while a common short word such as "the"
 * must not delete text by chance. Among the candidates the longest run wins, then the one that
 * skips the fewest words, then the one with the most exact words.
 *
 * The tolerances were chosen on the demo model's long-form runs (training/work/audio dev split,
 * 124 windows): a third of the letters and no single-word anchor gave 13.70 % WER; half the
 * letters and the anchor 13.14 %. On the test splits (seen voices, unseen voices) the same change
 * gave 13.20 -> 12.66 % and 34.74 -> 34.09 % (docs/accuracy.md).
 *
 * If nothing matches, the next text is emitted whole: a word may then appear twice, but no word is
 * ever dropped unless it was matched against text already emitted. A word cut at the previous
 * window's end was already emitted in its cut form; the next window's complete form follows it.
 */
#include "canarytextmerge.h"

#include <string.h>

#define SKIP_NEXT_MAX 2
#define SKIP_PREV_MAX 2
#define FUZZY_MIN_CHARS 3
#define MIN_ANCHOR_CHARS 4  /* a single word matched across a skip */
#define WORD_MAX_CHARS 64  /* longer words are compared exactly */

typedef struct {
  GPtrArray *keys;     /* normalised words (gchar *) */
  GArray *offsets;     /* byte offset of each word in the source text (gsize) */
} WordList;

/* Lower-cases and drops everything but letters and digits; a word made only of punctuation keeps
 * its case-folded form so that "-" still matches "-". */
static gchar *
normalise_word (const gchar *word, gssize len)
{
  gchar *folded = g_utf8_casefold (word, len);
  GString *key = g_string_sized_new (strlen (folded));

  for (const gchar *p = folded; *p; p = g_utf8_next_char (p)) {
    gunichar c = g_utf8_get_char (p);
    if (g_unichar_isalnum (c))
      g_string_append_unichar (key, c);
  }
  if (key->len == 0) {
    g_string_free (key, TRUE);
    return folded;
  }
  g_free (folded);
  return g_string_free (key, FALSE);
}

static void
word_list_init (WordList *wl, const gchar *text)
{
  wl->keys = g_ptr_array_new_with_free_func (g_free);
  wl->offsets = g_array_new (FALSE, FALSE, sizeof (gsize));
  if (!text || !g_utf8_validate (text, -1, NULL))
    return;

  const gchar *p = text;
  while (*p) {
    while (*p && g_unichar_isspace (g_utf8_get_char (p)))
      p = g_utf8_next_char (p);
    if (!*p)
      break;
    const gchar *start = p;
    while (*p && !g_unichar_isspace (g_utf8_get_char (p)))
      p = g_utf8_next_char (p);
    gsize offset = start - text;
    g_ptr_array_add (wl->keys, normalise_word (start, p - start));
    g_array_append_val (wl->offsets, offset);
  }
}

static void
word_list_clear (WordList *wl)
{
  g_ptr_array_unref (wl->keys);
  g_array_unref (wl->offsets);
}

/* Levenshtein distance of two short UCS-4 strings (one row of the table). */
static guint
edit_distance (const gunichar *a, glong na, const gunichar *b, glong nb)
{
  guint row[WORD_MAX_CHARS + 1];
  for (glong j = 0; j <= nb; j++)
    row[j] = j;
  for (glong i = 1; i <= na; i++) {
    guint diag = row[0];
    row[0] = i;
    for (glong j = 1; j <= nb; j++) {
      const guint up = row[j];
      row[j] = MIN (MIN (row[j] + 1, row[j - 1] + 1), diag + (a[i - 1] != b[j - 1]));
      diag = up;
    }
  }
  return row[nb];
}

/* The same word spelt two ways: both at least FUZZY_MIN_CHARS letters, at most half the longer
 * one's letters apart. */
static gboolean
words_similar (const gchar *x, const gchar *y)
{
  glong nx, ny;
  gunichar *ux = g_utf8_to_ucs4_fast (x, -1, &nx), *uy = g_utf8_to_ucs4_fast (y, -1, &ny);
  gboolean similar = FALSE;
  if (MIN (nx, ny) >= FUZZY_MIN_CHARS && MAX (nx, ny) <= WORD_MAX_CHARS)
    similar = edit_distance (ux, nx, uy, ny) <= (guint) (MAX (nx, ny) / 2);
  g_free (ux);
  g_free (uy);
  return similar;
}

/* Whether the k words at a_start and b_start match: each pair equal or similar. Returns the number
 * of exactly equal pairs through @exact; a run with a similar pair needs one exact pair. */
static gboolean
runs_match (const WordList *a, guint a_start, const WordList *b, guint b_start, guint k, guint *exact)
{
  guint n_exact = 0;
  for (guint i = 0; i < k; i++) {
    const gchar *x = g_ptr_array_index (a->keys, a_start + i), *y = g_ptr_array_index (b->keys, b_start + i);
    if (strcmp (x, y) == 0)
      n_exact++;
    else if (!words_similar (x, y))
      return FALSE;
  }
  *exact = n_exact;
  return n_exact == k || (k >= 2 && n_exact >= 1);
}

/* Number of leading words of @next that repeat @prev's tail (0 when nothing matches). */
static guint
count_repeated_words (const WordList *prev, const WordList *next)
{
  guint np = prev->keys->len, nn = next->keys->len;
  guint best_k = 0, best_skip = G_MAXUINT, best_exact = 0, best_b = 0;

  for (guint a = 0; a <= SKIP_PREV_MAX && a < np; a++) {
    for (guint b = 0; b <= SKIP_NEXT_MAX && b < nn; b++) {
      for (guint k = MIN (np - a, nn - b); k >= 1; k--) {
        guint exact;
        if (!runs_match (prev, np - a - k, next, b, k, &exact))
          continue;
        /* A skip needs two words, or one long word (a one-word run is exact: runs_match). */
        if ((a || b) && k < 2 && !(a <= 1 &&
                g_utf8_strlen (g_ptr_array_index (next->keys, b), -1) >= MIN_ANCHOR_CHARS))
          break;
        if (k > best_k || (k == best_k && (a + b < best_skip || (a + b == best_skip && exact > best_exact)))) {
          best_k = k;
          best_skip = a + b;
          best_exact = exact;
          best_b = b;
        }
        break;                  /* the longest run for this (a, b) is found */
      }
    }
  }
  return best_k ? best_b + best_k : 0;
}

gchar *
canary_text_merge (const gchar *prev, const gchar *next)
{
  if (!next)
    return g_strdup ("");
  if (!prev || !*prev)
    return g_strdup (next);

  WordList pw, nw;
  word_list_init (&pw, prev);
  word_list_init (&nw, next);

  guint drop = count_repeated_words (&pw, &nw);
  gchar *out;
  if (drop == 0)
    out = g_strdup (next);
  else if (drop >= nw.keys->len)
    out = g_strdup ("");
  else
    out = g_strdup (next + g_array_index (nw.offsets, gsize, drop));

  word_list_clear (&pw);
  word_list_clear (&nw);
  return out;
}
