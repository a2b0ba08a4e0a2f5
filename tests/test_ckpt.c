/* gst-canary tests — formats/ckpt.c: the real fixture checkpoints against torch's own numbers
 * (tests/fixtures/ckpt_checks.json), the shapes the config implies, tied storages, zero-copy
 * views; and on checkpoints built with builders.h, view bounds and the archive's structure.
 * The zip and pickle layers have their own tests (test_zip.c, test_pickle.c).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "canary.h"
#include "builders.h"
#include "formats/ckpt.h"
#include "formats/config.h"
#include "fixture.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

/* =============================================================================================
 * ckpt_checks.json through tu_json
 * ============================================================================================= */

/* An array's length, -1 for anything else (absent included). */
static int
jlen (const tu_json *seq)
{
  return tu_json_is (seq, TU_JSON_ARRAY) ? (int) tu_json_length (seq) : -1;
}

/* A string's value; asserts it is one. */
static const char *
jstr (const tu_json *n)
{
  const char *s = tu_json_string (n);
  g_assert_nonnull (s);
  return s;
}

/* A number's value; asserts it is one. */
static double
jnum (const tu_json *n)
{
  g_assert_true (tu_json_is (n, TU_JSON_NUMBER));
  return tu_json_number (n);
}

/* =============================================================================================
 * Real fixtures
 * ============================================================================================= */

/* Asserts `name` exists, is float32 and has the given shape (-1 terminates). */
static void
expect (const canary_ckpt *ck, const char *name, const gint64 *shape)
{
  const canary_tensor *t = canary_ckpt_get (ck, name);
  if (!t)
    g_error ("missing tensor %s", name);
  int nd = 0;
  while (shape[nd] >= 0)
    nd++;
  if (t->ndim != nd)
    g_error ("%s: ndim %d, expected %d", name, t->ndim, nd);
  for (int d = 0; d < nd; d++)
    if (t->shape[d] != shape[d])
      g_error ("%s: dim %d is %" G_GINT64_FORMAT ", expected %" G_GINT64_FORMAT, name, d, t->shape[d], shape[d]);
  g_assert_cmpint (t->dtype, ==, CANARY_DTYPE_F32);
}

#define EXPECT(ck, shape, ...)                                                                      \
  G_STMT_START {                                                                                    \
    char *n_ = g_strdup_printf (__VA_ARGS__);                                                       \
    expect ((ck), n_, (const gint64[]) shape);                                                      \
    g_free (n_);                                                                                    \
  } G_STMT_END
#define S(...) { __VA_ARGS__, -1 }

static void
check_expected_keys (const canary_config *c, const canary_ckpt *ck)
{
  gint64 D = c->enc_d_model, H = c->dec_hidden, C = c->subsampling_channels, V = c->vocab_size;
  gint64 F = c->n_mels, K = c->enc_conv_kernel, h = c->enc_heads, FF = D * c->enc_ff_expansion;
  for (int s = c->subsampling_factor; s > 1; s /= 2)
    F = (F + 1) / 2;  /* each stride-2 conv: ceil */

  EXPECT (ck, S (c->n_window_size), "preprocessor.featurizer.window");
  EXPECT (ck, S (1, c->n_mels, c->n_fft / 2 + 1), "preprocessor.featurizer.fb");
  EXPECT (ck, S (C, 1, 3, 3), "encoder.pre_encode.conv.0.weight");
  EXPECT (ck, S (C, 1, 3, 3), "encoder.pre_encode.conv.2.weight");
  EXPECT (ck, S (C, C, 1, 1), "encoder.pre_encode.conv.3.weight");
  EXPECT (ck, S (C, 1, 3, 3), "encoder.pre_encode.conv.5.weight");
  EXPECT (ck, S (C, C, 1, 1), "encoder.pre_encode.conv.6.weight");
  EXPECT (ck, S (D, C * F), "encoder.pre_encode.out.weight");
  EXPECT (ck, S (D), "encoder.pre_encode.out.bias");
  for (int i = 0; i < c->enc_layers; i++) {
    const char *ln[] = { "norm_feed_forward1", "norm_conv", "norm_self_att", "norm_feed_forward2", "norm_out" };
    for (gsize k = 0; k < G_N_ELEMENTS (ln); k++) {
      EXPECT (ck, S (D), "encoder.layers.%d.%s.weight", i, ln[k]);
      EXPECT (ck, S (D), "encoder.layers.%d.%s.bias", i, ln[k]);
    }
    for (int f = 1; f <= 2; f++) {
      EXPECT (ck, S (FF, D), "encoder.layers.%d.feed_forward%d.linear1.weight", i, f);
      EXPECT (ck, S (FF), "encoder.layers.%d.feed_forward%d.linear1.bias", i, f);
      EXPECT (ck, S (D, FF), "encoder.layers.%d.feed_forward%d.linear2.weight", i, f);
      EXPECT (ck, S (D), "encoder.layers.%d.feed_forward%d.linear2.bias", i, f);
    }
    EXPECT (ck, S (2 * D, D, 1), "encoder.layers.%d.conv.pointwise_conv1.weight", i);
    EXPECT (ck, S (D, 1, K), "encoder.layers.%d.conv.depthwise_conv.weight", i);
    EXPECT (ck, S (D, D, 1), "encoder.layers.%d.conv.pointwise_conv2.weight", i);
    EXPECT (ck, S (D), "encoder.layers.%d.conv.batch_norm.running_var", i);
    char *nbt = g_strdup_printf ("encoder.layers.%d.conv.batch_norm.num_batches_tracked", i);
    const canary_tensor *t = canary_ckpt_get (ck, nbt);
    g_assert_nonnull (t);
    g_assert_cmpint (t->dtype, ==, CANARY_DTYPE_I64);
    g_assert_cmpint (t->ndim, ==, 0);
    g_assert_cmpint (t->numel, ==, 1);
    g_free (nbt);
    EXPECT (ck, S (h, D / h), "encoder.layers.%d.self_attn.pos_bias_u", i);
    EXPECT (ck, S (h, D / h), "encoder.layers.%d.self_attn.pos_bias_v", i);
    const char *lin[] = { "linear_q", "linear_k", "linear_v", "linear_out" };
    for (gsize k = 0; k < G_N_ELEMENTS (lin); k++) {
      EXPECT (ck, S (D, D), "encoder.layers.%d.self_attn.%s.weight", i, lin[k]);
      EXPECT (ck, S (D), "encoder.layers.%d.self_attn.%s.bias", i, lin[k]);
    }
    EXPECT (ck, S (D, D), "encoder.layers.%d.self_attn.linear_pos.weight", i);
    char *nb = g_strdup_printf ("encoder.layers.%d.self_attn.linear_pos.bias", i);
    g_assert_null (canary_ckpt_get (ck, nb));
    g_free (nb);
  }

  if (D != H) {
    EXPECT (ck, S (H, D), "encoder_decoder_proj.weight");
    EXPECT (ck, S (H), "encoder_decoder_proj.bias");
  } else {
    g_assert_null (canary_ckpt_get (ck, "encoder_decoder_proj.weight"));
  }

  EXPECT (ck, S (V, H), "transf_decoder._embedding.token_embedding.weight");
  EXPECT (ck, S (c->dec_max_seq_len, H), "transf_decoder._embedding.position_embedding.pos_enc");
  EXPECT (ck, S (H), "transf_decoder._embedding.layer_norm.weight");
  for (int j = 0; j < c->dec_layers; j++) {
    for (int k = 1; k <= 3; k++)
      EXPECT (ck, S (H), "transf_decoder._decoder.layers.%d.layer_norm_%d.weight", j, k);
    const char *sub[] = { "first_sub_layer", "second_sub_layer" };
    const char *nets[] = { "query_net", "key_net", "value_net", "out_projection" };
    for (int s = 0; s < 2; s++)
      for (int k = 0; k < 4; k++) {
        EXPECT (ck, S (H, H), "transf_decoder._decoder.layers.%d.%s.%s.weight", j, sub[s], nets[k]);
        EXPECT (ck, S (H), "transf_decoder._decoder.layers.%d.%s.%s.bias", j, sub[s], nets[k]);
      }
    EXPECT (ck, S (c->dec_inner, H), "transf_decoder._decoder.layers.%d.third_sub_layer.dense_in.weight", j);
    EXPECT (ck, S (H, c->dec_inner), "transf_decoder._decoder.layers.%d.third_sub_layer.dense_out.weight", j);
  }
  EXPECT (ck, S (H), "transf_decoder._decoder.final_layer_norm.weight");
  EXPECT (ck, S (V, H), "log_softmax.mlp.layer0.weight");
  EXPECT (ck, S (V), "log_softmax.mlp.layer0.bias");
}

static void
test_fixture_keys (void)
{
  for (gsize m = 0; m < G_N_ELEMENTS (fixture_models); m++) {
    fixture_model fx;
    if (!fixture_model_open_or_fail (fixture_models[m], &fx))
      continue;
    g_assert_cmpint (fx.cfg->vocab_size, >, 0);
    check_expected_keys (fx.cfg, fx.ck);

    /* tied embedding/head: one storage, the same bytes */
    const canary_tensor *emb = canary_ckpt_get (fx.ck, "transf_decoder._embedding.token_embedding.weight");
    const canary_tensor *head = canary_ckpt_get (fx.ck, "log_softmax.mlp.layer0.weight");
    g_assert_cmpstr (emb->storage_key, ==, head->storage_key);
    g_assert_true (emb->data == head->data);

    /* zero-copy: every tensor points into the mapped member, 64-byte aligned (torch pads records
     * to 64 and the tar member starts on a 512-byte block of a page-aligned mapping) */
    for (guint i = 0; i < canary_ckpt_n_tensors (fx.ck); i++) {
      const canary_tensor *t = canary_ckpt_tensor (fx.ck, i);
      g_assert_true (t->data >= fx.ckpt_data && t->data < fx.ckpt_data + fx.ckpt_len);
      g_assert_cmpuint ((guintptr) t->data % 64, ==, 0);
      g_assert_true (canary_tensor_is_contiguous (t));
      if (t->dtype == CANARY_DTYPE_F32)
        g_assert_true (canary_tensor_f32_view (t) == (const float *) t->data);
    }
    fixture_model_close (&fx);
  }
}

/* Our reading of every tensor against the numbers torch.load produced. */
static void
test_fixture_torch_checks (void)
{
  char *path = fixture_path ("ckpt_checks.json", NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    fixture_fail_missing (path, "tests/reference/dump_ckpt_checks.py");
    g_free (path);
    return;
  }
  GError *err = NULL;
  tu_json *doc = tu_json_load (path, &err);
  g_assert_no_error (err);
  const tu_json *jmodels = tu_json_get (doc, "models");
  guint checked = 0;
  for (gsize m = 0; m < G_N_ELEMENTS (fixture_models); m++) {
    const tu_json *jm = tu_json_get (jmodels, fixture_models[m]);
    fixture_model fx;
    if (!jm || !fixture_model_open_or_fail (fixture_models[m], &fx))
      continue;
    const tu_json *jt = tu_json_get (jm, "tensors");
    g_assert_cmpint (jlen (jt), ==, (int) canary_ckpt_n_tensors (fx.ck));
    g_assert_cmpint ((int) jnum (tu_json_get (jm, "n_tensors")), ==, (int) canary_ckpt_n_tensors (fx.ck));
    for (int i = 0; i < jlen (jt); i++) {
      const tu_json *e = tu_json_at (jt, (guint) i);
      const canary_tensor *t = canary_ckpt_tensor (fx.ck, (guint) i);
      g_assert_cmpstr (t->name, ==, jstr (tu_json_get (e, "name")));  /* state-dict order */
      g_assert_cmpstr (canary_dtype_name (t->dtype), ==, jstr (tu_json_get (e, "dtype")));
      const tu_json *shape = tu_json_get (e, "shape"), *stride = tu_json_get (e, "stride");
      g_assert_cmpint (t->ndim, ==, jlen (shape));
      for (int d = 0; d < t->ndim; d++) {
        g_assert_cmpint (t->shape[d], ==, (gint64) jnum (tu_json_at (shape, (guint) d)));
        g_assert_cmpint (t->stride[d], ==, (gint64) jnum (tu_json_at (stride, (guint) d)));
      }
      if (t->numel == 0)
        continue;
      float *f = canary_tensor_to_f32 (t);
      double sum = 0, asum = 0;
      for (gint64 k = 0; k < t->numel; k++) {
        sum += f[k];
        asum += fabs (f[k]);
      }
      double want = jnum (tu_json_get (e, "sum")), awant = jnum (tu_json_get (e, "abs_sum"));
      /* both are float64 sums of the same float32 values; only the summation order differs */
      g_assert_cmpfloat_with_epsilon (sum, want, 1e-9 * awant + 1e-12);
      g_assert_cmpfloat_with_epsilon (asum, awant, 1e-9 * awant + 1e-12);
      const tu_json *first = tu_json_get (e, "first");
      for (int k = 0; k < jlen (first); k++)
        g_assert_cmpfloat (f[k], ==, (float) jnum (tu_json_at (first, (guint) k)));
      g_assert_cmpfloat (f[t->numel - 1], ==, (float) jnum (tu_json_get (e, "last")));
      g_free (f);
    }
    /* every group torch saw sharing a storage shares it here too */
    const tu_json *shared = tu_json_get (jm, "shared");
    guint n_shared = 0;
    for (int s = 0; s < jlen (shared); s++) {
      const tu_json *grp = tu_json_at (shared, (guint) s);
      const canary_tensor *t0 = canary_ckpt_get (fx.ck, jstr (tu_json_at (grp, 0)));
      for (int k = 1; k < jlen (grp); k++) {
        const canary_tensor *tk = canary_ckpt_get (fx.ck, jstr (tu_json_at (grp, (guint) k)));
        g_assert_cmpstr (t0->storage_key, ==, tk->storage_key);
        n_shared++;
      }
    }
    g_assert_cmpuint (n_shared, >=, 1);
    /* and no other tensors share */
    GHashTable *keys = g_hash_table_new (g_str_hash, g_str_equal);
    guint dups = 0;
    for (guint i = 0; i < canary_ckpt_n_tensors (fx.ck); i++)
      if (!g_hash_table_add (keys, (gpointer) canary_ckpt_tensor (fx.ck, i)->storage_key))
        dups++;
    g_assert_cmpuint (dups, ==, n_shared);
    g_hash_table_unref (keys);
    fixture_model_close (&fx);
    checked++;
  }
  if (!checked)
    g_test_fail_printf ("no fixture model is both present and listed in %s: regenerate it with "
        "tests/reference/dump_ckpt_checks.py", path);
  tu_json_free (doc);
  g_free (path);
}
/* =============================================================================================
 * Checkpoint structure and views
 * ============================================================================================= */

static GByteArray *
one_tensor_ckpt (const char *stype, gint64 numel, gint64 offset, int ndim, const gint64 *shape, const gint64 *stride,
    gsize storage_floats)
{
  GByteArray *p = g_byte_array_new ();
  pk_begin (p);
  pk_str (p, "x");
  pk_tensor (p, stype, "0", numel, offset, ndim, shape, stride);
  pk_end (p);
  static float big[64];
  const float *s[] = { big };
  gsize l[] = { storage_floats };
  GByteArray *z = ckpt_build (p, s, l, 1, NULL);
  g_byte_array_unref (p);
  return z;
}

static void
test_views (void)
{
  GError *err = NULL;
  struct {
    const char *stype;
    gint64 numel, offset;
    int ndim;
    gint64 shape[3], stride[3];
    gsize floats;
    const char *needle;  /* NULL = valid */
  } cases[] = {
    { "FloatStorage", 12, 0, 2, { 3, 4 }, { 4, 1 }, 12, NULL },
    { "FloatStorage", 12, 11, 0, { 0 }, { 0 }, 12, NULL },                 /* 0-d at the last element */
    { "FloatStorage", 12, 12, 1, { 0 }, { 1 }, 12, NULL },                 /* empty view at the end */
    { "FloatStorage", 12, 2, 2, { 2, 5 }, { 5, 1 }, 12, NULL },            /* last index 11 */
    { "HalfStorage", 24, 0, 1, { 24 }, { 1 }, 12, NULL },                  /* 24 halves in 48 bytes */
    { "FloatStorage", 12, 3, 2, { 2, 5 }, { 5, 1 }, 12, "does not fit" },  /* last index 12 */
    { "FloatStorage", 12, 13, 1, { 0 }, { 1 }, 12, "does not fit" },
    { "FloatStorage", 12, 0, 2, { 4, 4 }, { 4, 1 }, 12, "does not fit" },  /* shape disagrees */
    { "FloatStorage", 12, 0, 2, { 3, 4 }, { 1, 4 }, 12, "does not fit" },  /* stride extent: 2 + 12 */
    { "FloatStorage", 12, 0, 2, { 3, 4 }, { 1, 3 }, 12, NULL },            /* overlapping but inside */
    { "FloatStorage", 12, 12, 0, { 0 }, { 0 }, 12, "does not fit" },       /* 0-d past the end */
    { "FloatStorage", 12, 0, 3, { G_GINT64_CONSTANT (1) << 40, G_GINT64_CONSTANT (1) << 40, 1 << 20 }, { 1, 1, 1 }, 12,
      "does not fit" },                                                    /* numel overflows */
    { "FloatStorage", 12, 0, 2, { G_GINT64_CONSTANT (1) << 62, 2 }, { G_GINT64_CONSTANT (1) << 62, 1 }, 12,
      "does not fit" },                                                    /* extent overflows */
    { "FloatStorage", 13, 0, 1, { 12 }, { 1 }, 12, "claims 13" },           /* storage bigger than its entry */
    { "DoubleStorage", 12, 0, 1, { 12 }, { 1 }, 12, "holds 48 bytes" },
    { "FloatStorage", G_MAXINT64 / 2, 0, 1, { 1 }, { 1 }, 12, "claims" },  /* numel * 4 overflows */
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    GByteArray *z = one_tensor_ckpt (cases[i].stype, cases[i].numel, cases[i].offset, cases[i].ndim, cases[i].shape,
        cases[i].stride, cases[i].floats);
    canary_ckpt *ck = canary_ckpt_parse (z->data, z->len, &err);
    if (cases[i].needle) {
      if (ck)
        g_error ("view case %zu accepted", i);
      g_assert_nonnull (err);
      if (!strstr (err->message, cases[i].needle) || !strstr (err->message, "'x'"))
        g_error ("case %zu: '%s' lacks '%s' or the tensor name", i, err->message, cases[i].needle);
      g_clear_error (&err);
    } else {
      g_assert_no_error (err);
      const canary_tensor *t = canary_ckpt_get (ck, "x");
      g_assert_nonnull (t);
      g_assert_cmpint (t->ndim, ==, cases[i].ndim);
      canary_ckpt_free (ck);
    }
    g_byte_array_unref (z);
  }
}

static void
test_ckpt_structure (void)
{
  GError *err = NULL;
  GByteArray *p = good_pickle ();
  const zip_opts plain = { 0 };

  /* missing storage entry */
  const float *s1[] = { ckpt_store0 };
  gsize l1[] = { 12 };
  GByteArray *z = ckpt_build (p, s1, l1, 1, &plain);
  g_assert_null (canary_ckpt_parse (z->data, z->len, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, "archive/data/1");
  g_byte_array_unref (z);

  /* byteorder big → unsupported; missing data.pkl; entries outside a folder; duplicates; empty */
  zip_entry big[] = { { "m/data.pkl", p->data, p->len, FALSE }, { "m/byteorder", (const guint8 *) "big", 3, FALSE } };
  z = zip_build (big, 2, &plain);
  expect_ckpt_error (z, CANARY_ERROR_UNSUPPORTED, "byteorder");
  g_byte_array_unref (z);
  zip_entry nopkl[] = { { "m/version", (const guint8 *) "3\n", 2, FALSE } };
  z = zip_build (nopkl, 1, &plain);
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "m/data.pkl");
  g_byte_array_unref (z);
  zip_entry flat[] = { { "data.pkl", p->data, p->len, FALSE } };
  z = zip_build (flat, 1, &plain);
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "archive folder");
  g_byte_array_unref (z);
  zip_entry dup[] = { { "m/data.pkl", p->data, p->len, FALSE }, { "m/data.pkl", p->data, p->len, FALSE } };
  z = zip_build (dup, 2, &plain);
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "twice");
  g_byte_array_unref (z);
  z = zip_build (NULL, 0, &plain);
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "no entries");
  g_byte_array_unref (z);

  /* a storage used with two dtypes */
  GByteArray *q = g_byte_array_new ();
  pk_begin (q);
  pk_str (q, "f");
  pk_tensor (q, "FloatStorage", "0", 12, 0, 1, (gint64[]) { 12 }, (gint64[]) { 1 });
  pk_str (q, "i");
  pk_tensor (q, "IntStorage", "0", 12, 0, 1, (gint64[]) { 12 }, (gint64[]) { 1 });
  pk_end (q);
  z = ckpt_build (q, s1, l1, 1, &plain);
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "storage '0'");
  g_byte_array_unref (z);
  g_byte_array_unref (q);

  /* errors from the pickle name the entry */
  q = g_byte_array_new ();
  pk_op (q, 0x80);
  pk_op (q, 2);
  pk_op (q, 0xff);
  z = ckpt_build (q, s1, l1, 1, &plain);
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "archive/data.pkl");
  g_byte_array_unref (z);
  g_byte_array_unref (q);
  g_byte_array_unref (p);
}
int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ckpt/fixture/keys-and-shapes", test_fixture_keys);
  g_test_add_func ("/ckpt/fixture/torch-checks", test_fixture_torch_checks);
  g_test_add_func ("/ckpt/views", test_views);
  g_test_add_func ("/ckpt/structure", test_ckpt_structure);
  return g_test_run ();
}
