/* gst-canary — the .nemo archive (POSIX tar, plain or gzip'd, or an extracted directory).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _canary_archive canary_archive;

/* Opens `path`: a .nemo tar (mapped read-only, members are used in place), a gzip'd tar (inflated
 * into memory once), or a directory holding the extracted members. Errors use CANARY_ERROR. */
canary_archive *canary_archive_open (const char *path, GError **error);

/* Same, over bytes the caller keeps alive for the archive's lifetime (fuzzing, tests). */
canary_archive *canary_archive_open_bytes (const guint8 *data, gsize len, GError **error);

void canary_archive_free (canary_archive *ar);

/* Looks a member up by name. Leading "./" on either side is ignored; a bare basename also matches
 * a member in the archive root. Returns FALSE (no error set) when absent. The bytes stay valid
 * until canary_archive_free. */
gboolean canary_archive_find (canary_archive *ar, const char *name, const guint8 **data, gsize *len);

/* Resolves a config value that names an artifact ("nemo:<hex>_tokenizer.model", or a bare
 * basename of old archives) to the member's bytes. Error names the value when it is missing. */
gboolean canary_archive_resolve (canary_archive *ar, const char *config_value, const guint8 **data,
    gsize *len, GError **error);

/* Number of members and their names, in archive order (for diagnostics and tests). */
guint canary_archive_n_members (canary_archive *ar);
const char *canary_archive_member_name (canary_archive *ar, guint i);

/* Tells the kernel the archive's file mapping may leave memory (madvise MADV_DONTNEED on the
 * mapped tar, or each mapped member of a directory): the bytes stay valid and are read back
 * from the file if touched again. Used once the weights have been converted (precision=fp16 on
 * the CPU), so the process does not keep both copies resident. An inflated gzip'd archive is
 * heap memory and is left alone. */
void canary_archive_release_pages (canary_archive *ar);

/* The same for the whole pages inside [p, p + len), when they lie in one of the archive's file
 * mappings; bytes elsewhere (heap copies, an inflated gzip) are left alone. */
void canary_archive_release_range (canary_archive *ar, const void *p, gsize len);

/* The path the archive was opened from ("<memory>" for open_bytes). */
const char *canary_archive_path (canary_archive *ar);

G_END_DECLS
