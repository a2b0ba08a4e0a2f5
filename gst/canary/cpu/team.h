/* gst-canary — a small team of threads for the CPU model's parallel passes.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A team runs one function on n threads (the caller is thread 0) and returns when all have; the
 * function takes its work items from a shared counter (canary_team_next), so uneven items
 * balance themselves. Helpers spin for a moment after each job (the next one usually follows
 * within microseconds), then sleep on a condition variable. One job at a time: a team belongs to
 * one thread of the caller (the encoder gives each canary_encoder_work its own).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define CANARY_TEAM_MAX_THREADS 64

typedef struct _canary_team canary_team;
typedef void (*canary_team_fn) (void *ctx, int tid);

/* A team of up to n threads (fewer if threads cannot be started; at least the caller). */
canary_team *canary_team_new (int n);
void canary_team_free (canary_team *t);
/* Threads in the team, the caller included. */
int canary_team_size (const canary_team *t);
/* Runs fn (ctx, tid) on every thread of the team (tid 0 is the caller) and returns when all
 * have. Resets the work-item counter first. */
void canary_team_run (canary_team *t, canary_team_fn fn, void *ctx);
/* The next work item of the current job (handed out in order, each once). */
int canary_team_next (canary_team *t);

G_END_DECLS
