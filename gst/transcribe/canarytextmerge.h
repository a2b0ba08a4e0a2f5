/* gst-canary — joining the texts of overlapping transcription windows.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Returns the part of @next (text of a window) that is new after @prev (text of the previous
 * window, whose end overlaps the start of @next's window), as a newly allocated string that may be
 * empty. See canarytextmerge.c for the rule. */
gchar *canary_text_merge (const gchar *prev, const gchar *next);

G_END_DECLS
