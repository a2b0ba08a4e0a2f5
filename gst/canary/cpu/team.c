/* gst-canary — the thread team (see team.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cpu/team.h"

typedef struct {
  canary_team *t;
  int tid;
} team_member;

struct _canary_team {
  int n;
  GThread *threads[CANARY_TEAM_MAX_THREADS];
  team_member members[CANARY_TEAM_MAX_THREADS];
  canary_team_fn fn;
  void *ctx;
  gint gen;      /* bumped for every job (and to quit) */
  gint done;     /* helpers finished with the current job */
  gint next;     /* work-item counter of the current job */
  gint quit;
  int sleepers;  /* under lock */
  GMutex lock;
  GCond cond;
};

#define TEAM_SPIN_US 2000

static inline void
cpu_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#endif
}

static gpointer
team_main (gpointer data)
{
  team_member *me = data;
  canary_team *t = me->t;
  int seen = 0;
  for (;;) {
    int g = g_atomic_int_get (&t->gen);
    gint64 until = 0;
    for (int i = 1; g == seen; i++) {
      cpu_relax ();
      if ((i & 1023) == 0) {
        const gint64 now = g_get_monotonic_time ();
        if (!until)
          until = now + TEAM_SPIN_US;
        else if (now > until)
          break;
      }
      g = g_atomic_int_get (&t->gen);
    }
    if (g == seen) {
      g_mutex_lock (&t->lock);
      while ((g = g_atomic_int_get (&t->gen)) == seen) {
        t->sleepers++;
        g_cond_wait (&t->cond, &t->lock);
        t->sleepers--;
      }
      g_mutex_unlock (&t->lock);
    }
    seen = g;
    if (g_atomic_int_get (&t->quit))
      return NULL;
    t->fn (t->ctx, me->tid);
    g_atomic_int_inc (&t->done);
  }
}

canary_team *
canary_team_new (int n)
{
  canary_team *t = g_new0 (canary_team, 1);
  g_mutex_init (&t->lock);
  g_cond_init (&t->cond);
  t->n = 1;
  for (int i = 1; i < MIN (n, CANARY_TEAM_MAX_THREADS); i++) {
    t->members[i] = (team_member) { t, i };
    t->threads[i] = g_thread_try_new ("canary-team", team_main, &t->members[i], NULL);
    if (!t->threads[i])
      break;
    t->n++;
  }
  return t;
}

void
canary_team_free (canary_team *t)
{
  if (!t)
    return;
  g_mutex_lock (&t->lock);
  g_atomic_int_set (&t->quit, 1);
  g_atomic_int_inc (&t->gen);
  g_cond_broadcast (&t->cond);
  g_mutex_unlock (&t->lock);
  for (int i = 1; i < t->n; i++)
    g_thread_join (t->threads[i]);
  g_mutex_clear (&t->lock);
  g_cond_clear (&t->cond);
  g_free (t);
}

void
canary_team_run (canary_team *t, canary_team_fn fn, void *ctx)
{
  g_atomic_int_set (&t->next, 0);
  if (t->n == 1) {
    fn (ctx, 0);
    return;
  }
  t->fn = fn;
  t->ctx = ctx;
  g_atomic_int_set (&t->done, 0);
  g_mutex_lock (&t->lock);
  g_atomic_int_inc (&t->gen);
  if (t->sleepers > 0)
    g_cond_broadcast (&t->cond);
  g_mutex_unlock (&t->lock);
  fn (ctx, 0);
  /* The helpers' shares are about as long as ours: spin, and only after a while (a helper that
   * lost its core) give the core away now and then. */
  for (int i = 1; g_atomic_int_get (&t->done) < t->n - 1; i++) {
    cpu_relax ();
    if (i >= 16384 && (i & 1023) == 0)
      g_thread_yield ();
  }
}

int
canary_team_next (canary_team *t)
{
  return g_atomic_int_add (&t->next, 1);
}

int
canary_team_size (const canary_team *t)
{
  return t->n;
}
