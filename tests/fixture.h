/* gst-canary tests — shared access to the NeMo fixtures under tests/fixtures/ (written by
 * tests/reference/make_fixtures.py): where they are, which models and clips exist, opening a
 * fixture model the way the engine does, loading NeMo's .npy dumps, and comparing results.
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Layout: <fixture_dir>/<model>/model.nemo, <fixture_dir>/<model>/<clip>/<name>.npy,
 * <fixture_dir>/audio/<clip>.wav, plus manifest.json, ckpt_checks.json and spm/ at the top.
 *
 * The fixtures are committed, so a missing one is a failure, not a skip: the plain helpers report
 * absence (FALSE, NULL, an empty list) and the *_or_fail variants mark the test failed with
 * fixture_fail_missing () and return FALSE or NULL, so that the caller returns. Everything that reads a fixture which is there asserts that it reads it.
 *
 *   fixture_model fm;
 *   if (!fixture_model_open_or_fail ("canary2-tiny", &fm))
 *     return;
 *   GPtrArray *clips = fixture_list_clips ("canary2-tiny", "enc.npy");
 *   for (guint i = 0; i < clips->len; i++) {
 *     npy_array enc;
 *     fixture_load_npy ("canary2-tiny", clips->pdata[i], "enc.npy", &enc);
 *     ...
 *     npy_array_clear (&enc);
 *   }
 *   g_ptr_array_unref (clips);
 *   fixture_model_close (&fm);
 */
#pragma once

#include <glib.h>

#include "formats/ckpt.h"
#include "formats/config.h"
#include "formats/tar.h"
#include "npy.h"

G_BEGIN_DECLS

/* ---- Where the fixtures are ------------------------------------------------------------------ */

/* $CANARY_TEST_FIXTURES when set (to try another fixture set by hand), else the source tree's
 * tests/fixtures (FIXTURES_DIR). */
const char *fixture_dir (void);

/* fixture_dir()/first_element/...: the elements joined as g_build_filename does; g_free. */
char *fixture_path (const char *first_element, ...) G_GNUC_NULL_TERMINATED G_GNUC_MALLOC;

/* ---- Which models and clips ------------------------------------------------------------------ */

/* The models make_fixtures.py generates, in this order. Tests that name their subtests per model
 * or iterate a fixed set use this list. */
#define FIXTURE_N_MODELS 3
extern const char *const fixture_models[FIXTURE_N_MODELS];

/* The models with NeMo's per-clip dumps (mel, encoder output, teacher-forced log-probs, beam
 * ids): the three above (random weights) and the trained default model, canary-demo
 * (examples/models/canary-default.nemo, dumped by tests/reference/make_demo_fixtures.py): its
 * real margins between tokens are what the random-weight models cannot give. */
#define FIXTURE_N_CLIP_MODELS 4
extern const char *const fixture_clip_models[FIXTURE_N_CLIP_MODELS];

/* fixture_dir()/<model>/model.nemo, whether or not it exists; g_free. */
char *fixture_model_nemo (const char *model);

/* The same, or NULL after fixture_fail_missing () when it is not there. */
char *fixture_model_nemo_or_fail (const char *model);

/* The model directories under fixture_dir() that hold a model.nemo, sorted by name (strcmp);
 * a GPtrArray of g_strdup'ed names that frees them. Empty when there are none. */
GPtrArray *fixture_list_models (void);

/* The clip directories of a fixture model that hold `probe_file` (e.g. "enc.npy" for the tests of
 * the encoder output, "beam1_ids.npy" for the decoding tests), sorted by name; a GPtrArray of
 * g_strdup'ed names that frees them. Empty when the model or its clips are absent. */
GPtrArray *fixture_list_clips (const char *model, const char *probe_file);

/* The script that writes the fixture models, their clips' .npy dumps and manifest.json. */
#define FIXTURE_MODELS_SCRIPT "tests/reference/make_fixtures.py"

/* Marks the test failed (g_test_fail_printf): the committed fixture `path` is missing; the
 * message names it and `script`, the generator that writes it. The test goes on, so return. */
void fixture_fail_missing (const char *path, const char *script);

/* Marks the test failed: no fixture model at all under fixture_dir (). */
void fixture_fail_no_models (void);

/* ---- A fixture model, opened as the engine opens it ------------------------------------------ */

typedef struct {
  char *path;                /* fixture_model_nemo (name) */
  canary_archive *ar;        /* the mapped model.nemo */
  const guint8 *ckpt_data;   /* its model_weights.ckpt member, inside ar */
  gsize ckpt_len;
  canary_ckpt *ck;           /* parsed from ckpt_data (tensors point into it) */
  canary_config *cfg;        /* its model_config.yaml */
} fixture_model;

/* Opens fixture_dir()/<name>/model.nemo: archive → model_weights.ckpt → canary_ckpt_parse, and
 * model_config.yaml → canary_config_parse, asserting each step. FALSE, with `out` zeroed and
 * nothing reported, when the fixture is absent. */
gboolean fixture_model_open (const char *name, fixture_model *out);

/* The same, calling fixture_fail_missing () when it returns FALSE. */
gboolean fixture_model_open_or_fail (const char *name, fixture_model *out);

/* Opens the first fixture model present, trying fixture_models[first] first and then the ones
 * after it (wrapping round): tests that need just one model still run while the fixtures are
 * being regenerated. FALSE after fixture_fail_no_models () when none is there. */
gboolean fixture_model_open_any_or_fail (guint first, fixture_model *out);

/* Frees what fixture_model_open set and zeroes `m`; safe on a zeroed struct. */
void fixture_model_close (fixture_model *m);

/* ---- NeMo's dumps ---------------------------------------------------------------------------- */

/* Loads fixture_dir()/<model>/<clip>/<file> into `out`, asserting that it loads. */
void fixture_load_npy (const char *model, const char *clip, const char *file, npy_array *out);

/* A .npy of token ids (any integer dtype) as a new GArray of gint32, asserting that it loads. */
GArray *fixture_load_ids (const char *model, const char *clip, const char *file);

/* ---- Comparisons ----------------------------------------------------------------------------- */

/* max|a − b| over n elements, computed in double; unless ref_max is NULL, *ref_max = max|b| (b
 * being the reference, for tolerances relative to its magnitude). */
double max_abs_diff (const float *a, const float *b, gsize n, double *ref_max);

/* Asserts two GArrays of gint32 token ids are equal; when they are not, logs both (labelled
 * `what`) with g_test_message first. */
void assert_ids_equal (const GArray *got, const GArray *want, const char *what);

/* NeMo's margin between its two best log-probs at teacher-forced step s of tf (a
 * tf_logprobs.npy, [steps][V]); NAN past the dump. The near-tie rule of the FP16 tests: a token
 * may differ from NeMo's only where this margin is below the FP16 log-prob bound. */
double fixture_nemo_margin (const npy_array *tf, int s);

G_END_DECLS
