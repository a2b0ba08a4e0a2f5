/* gst-canary tests — builders of the untrusted file formats, byte by byte: tar members (ustar,
 * PAX, GNU long names), gzip and raw deflate streams, torch-style pickles and zips, and whole
 * checkpoints. The tests of formats/tar.c, zip.c, pickle.c and ckpt.c build their valid and
 * malformed inputs with these, so that every malformed case is exact and readable and each format
 * has one writer.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

/* ---- tar --------------------------------------------------------------------------------------- */

/* Appends a 512-byte header (ustar magic, mode 0644, checksum filled in) and returns its offset.
 * `name` is cut at 100 bytes, `prefix` (the ustar prefix field; NULL for none) at 155. */
gsize tar_header (GByteArray *b, const char *name, char type, guint64 size, const char *prefix);

/* Appends `len` bytes of member data and zero-pads them to the next 512-byte block. */
void tar_data (GByteArray *b, const void *data, gsize len);

/* A regular file member holding `text`; returns its header's offset. */
gsize tar_file (GByteArray *b, const char *name, const char *text);

/* Writes `v` as a NUL-terminated octal field of `n` bytes (n - 1 digits). */
void tar_put_octal (guint8 *f, gsize n, guint64 v);

/* Recomputes the checksum of the 512-byte header at `h` (after a test edited a field). */
void tar_fix_checksum (guint8 *h);

/* A PAX record "<len> key=value\n" whose length counts itself; g_free. */
char *pax_record (const char *key, const char *value);

/* A PAX header member ('x' per file, 'g' global) holding `records`. */
void tar_pax (GByteArray *b, char type, const char *records);

/* The end of the archive: two zero blocks. */
void tar_end (GByteArray *b);

/* ---- deflate ----------------------------------------------------------------------------------- */

/* `src` as a gzip stream (level 1); g_free, length in *out_len. */
guint8 *gzip_bytes (const guint8 *src, gsize len, gsize *out_len);

/* `src` as a raw deflate stream (level 6, no header: a zip's method 8); g_free. */
guint8 *deflate_raw (const guint8 *src, gsize len, gsize *out_len);

/* ---- pickle (protocol 2, the opcodes torch.save writes) ---------------------------------------- */

void pk_op (GByteArray *b, guint8 op);                                  /* one opcode or raw byte */
void pk_u32 (GByteArray *b, guint32 v);                                 /* little-endian */
void pk_str (GByteArray *b, const char *s);                             /* BINUNICODE */
void pk_global (GByteArray *b, const char *module, const char *name);   /* GLOBAL */
void pk_int (GByteArray *b, gint64 v);                                  /* BININT1/BININT/LONG1 */
void pk_int_tuple (GByteArray *b, int n, const gint64 *v);              /* MARK ints TUPLE */

/* The exact sequence torch.save writes for one tensor (_rebuild_tensor_v2 of a storage persistent
 * id, without memo). */
void pk_tensor (GByteArray *b, const char *storage_type, const char *key, gint64 numel, gint64 offset, int ndim,
    const gint64 *shape, const gint64 *stride);

/* PROTO 2, an OrderedDict and a MARK: the items follow as key, value pairs ... */
void pk_begin (GByteArray *b);
/* ... then SETITEMS and STOP. */
void pk_end (GByteArray *b);

/* ---- zip --------------------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  const guint8 *data;
  gsize len;
  gboolean deflate;
} zip_entry;

typedef struct {
  guint align;           /* data alignment (torch: 64); 0/1 = none */
  gboolean zip64;        /* write zip64 EOCD record + locator (torch always does) */
  gboolean zip64_extra;  /* saturate sizes/offsets in central headers and use the 0x0001 extra */
  const char *comment;
} zip_opts;

/* How torch.save writes its zips: records aligned to 64 bytes, a zip64 tail. */
extern const zip_opts zip_torch_like;

/* A zip of the `n` entries in order: local headers and data, the central directory, the end
 * records; g_byte_array_unref. */
GByteArray *zip_build (const zip_entry *e, guint n, const zip_opts *o);

/* ---- checkpoints (torch.save's zip of archive/data.pkl, archive/byteorder, archive/data/<i>) --- */

/* A checkpoint "archive/..." with the given pickle and float storages data/0..n-1 (`lens` in
 * floats); o = NULL: zip_torch_like. */
GByteArray *ckpt_build (GByteArray *pkl, const float *const *storages, const gsize *lens, guint n, const zip_opts *o);

/* The storages of good_pickle (): 0..11 and -1..-4. */
extern const float ckpt_store0[12];
extern const float ckpt_store1[4];

/* A small, valid state dict: "a" [3,4] over storage 0, "b" [4] over storage 1, "tied" = storage 0
 * transposed [4,3]. */
GByteArray *good_pickle (void);

/* good_pickle () with ckpt_store0 and ckpt_store1 as a checkpoint. */
GByteArray *good_ckpt (const zip_opts *o);

/* ---- checks of what the parsers say about built inputs ----------------------------------------- */

/* Asserts `err` is CANARY_ERROR `code` and (when given) mentions `needle`, then clears it. */
void assert_error_mentions_ (GError **err, int code, const char *needle);
#define assert_error_mentions(err, code, needle) assert_error_mentions_ (&(err), (int) (code), (needle))

/* Asserts canary_ckpt_parse refuses `z` with CANARY_ERROR `code` mentioning `needle` (NULL: any). */
void expect_ckpt_error (GByteArray *z, int code, const char *needle);
