/* gst-canary tests — shared helpers: whole-file reads and a small JSON reader for the fixtures'
 * metadata files (prompts.json, manifest.json, expectation files). Locating and opening the
 * fixtures themselves is fixture.h's.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The JSON reader takes RFC 8259 JSON (objects, arrays, strings with every escape including
 * surrogate pairs, numbers, true/false/null) into a tree. Strings keep embedded U+0000 (see
 * `len`). Nesting is limited to TU_JSON_MAX_DEPTH. Object member order is kept; duplicate keys
 * are kept too and tu_json_get returns the first.
 *
 *   GError *err = NULL;
 *   tu_json *doc = tu_json_load (FIXTURES_DIR "/canary2-tiny/prompts.json", &err);
 *   g_assert_no_error (err);
 *   for (guint i = 0; i < tu_json_length (doc); i++) {
 *     const tu_json *v = tu_json_at (doc, i);
 *     GArray *ids = tu_json_int_array (tu_json_get (v, "ids"));   // gint64 elements
 *     const char *lang = tu_json_string (tu_json_path (v, "settings.source_lang"));
 *     ...
 *   }
 *   tu_json_free (doc);
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Reads a whole file (NUL-terminated for convenience); aborts the test on failure. */
char *tu_read_file (const char *path, gsize *len);

#define TU_JSON_MAX_DEPTH 64

typedef enum {
  TU_JSON_NULL,
  TU_JSON_BOOL,
  TU_JSON_NUMBER,
  TU_JSON_STRING,
  TU_JSON_ARRAY,
  TU_JSON_OBJECT,
} tu_json_type;

typedef struct tu_json tu_json;
struct tu_json {
  tu_json_type type;
  gboolean boolean;
  double number;
  char *string;        /* TU_JSON_STRING: UTF-8, NUL-terminated, may hold embedded NULs */
  gsize len;           /* string length in bytes */
  GPtrArray *items;    /* TU_JSON_ARRAY: elements; TU_JSON_OBJECT: member values (tu_json*) */
  GPtrArray *keys;     /* TU_JSON_OBJECT: member names (char*), parallel to items */
};

/* Parses text; errors are G_MARKUP_ERROR_PARSE with the byte offset. */
tu_json *tu_json_parse (const char *text, gsize len, GError **error);
/* tu_read_file + tu_json_parse. */
tu_json *tu_json_load (const char *path, GError **error);
void tu_json_free (tu_json *v);

/* Accessors. All accept NULL and a value of the wrong type and then return NULL / 0 / FALSE, so
 * they chain; tests assert on the result. */
const tu_json *tu_json_get (const tu_json *obj, const char *key);
/* Dotted path through objects, with numeric components indexing arrays: "a.b.0.c". */
const tu_json *tu_json_path (const tu_json *v, const char *path);
guint tu_json_length (const tu_json *v);           /* array or object size */
const tu_json *tu_json_at (const tu_json *v, guint i);
const char *tu_json_key_at (const tu_json *obj, guint i);
const char *tu_json_string (const tu_json *v);
double tu_json_number (const tu_json *v);
gint64 tu_json_int (const tu_json *v);
gboolean tu_json_bool (const tu_json *v);
gboolean tu_json_is (const tu_json *v, tu_json_type type);
/* An array of numbers as a new GArray of gint64 (NULL if v is not an array of integers). */
GArray *tu_json_int_array (const tu_json *v);

G_END_DECLS
