/* gst-canary tests — ckpt.c, zip.c, pickle.c: the real fixture checkpoints against torch's own
 * numbers (tests/fixtures/ckpt_checks.json), shapes implied by the config, tied storages, and
 * malformed zips/pickles/views built byte by byte (builders.h).
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "canary.h"
#include "builders.h"
#include "formats/ckpt.h"
#include "formats/config.h"
#include "fixture.h"
#include "formats/tar.h"
#include "formats/pickle.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

static void
check_good_ckpt (canary_ckpt *ck)
{
  g_assert_cmpuint (canary_ckpt_n_tensors (ck), ==, 3);
  const canary_tensor *a = canary_ckpt_get (ck, "a"), *b = canary_ckpt_get (ck, "b"), *t = canary_ckpt_get (ck, "tied");
  g_assert_nonnull (a);
  g_assert_nonnull (b);
  g_assert_nonnull (t);
  g_assert_true (canary_ckpt_tensor (ck, 0) == a);
  g_assert_true (canary_ckpt_tensor (ck, 2) == t);
  g_assert_null (canary_ckpt_tensor (ck, 3));
  g_assert_null (canary_ckpt_get (ck, "missing"));
  g_assert_cmpint (a->ndim, ==, 2);
  g_assert_cmpint (a->numel, ==, 12);
  g_assert_true (a->data == t->data);
  g_assert_cmpstr (a->storage_key, ==, t->storage_key);
  g_assert_true (a->storage_key == t->storage_key);
  float *f = canary_tensor_to_f32 (a);
  g_assert_cmpmem (f, 48, ckpt_store0, 48);
  g_free (f);
  f = canary_tensor_to_f32 (t);
  g_assert_cmpfloat (f[1], ==, 4.0f);  /* t[0][1] = a[1][0] */
  g_free (f);
  f = canary_tensor_to_f32 (b);
  g_assert_cmpmem (f, 16, ckpt_store1, 16);
  g_free (f);
}

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
    if (!fixture_model_open_or_skip (fixture_models[m], &fx))
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
    g_test_skip ("ckpt_checks.json not generated yet (tests/reference/dump_ckpt_checks.py)");
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
    if (!jm || !fixture_model_open_or_skip (fixture_models[m], &fx))
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
    g_test_skip ("no fixture listed in ckpt_checks.json is present");
  tu_json_free (doc);
  g_free (path);
}

/* Damage the real checkpoint: truncations through the tail and directory, and field edits. */
static void
test_fixture_damaged (void)
{
  fixture_model fx;
  if (!fixture_model_open_or_skip ("canary2-tiny", &fx))
    return;
  gsize len = fx.ckpt_len;
  guint8 *z = g_memdup2 (fx.ckpt_data, len);
  GError *err = NULL;

  /* Truncation anywhere must fail cleanly: every byte of the last 4 KiB (the directory and end
   * records) and every 4099th byte before. */
  for (gsize cut = 0; cut < len; cut += (cut + 4096 < len) ? 4099 : 1) {
    canary_ckpt *ck = canary_ckpt_parse (z, cut, &err);
    g_assert_null (ck);
    g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
    g_clear_error (&err);
  }

  GArray *dir = canary_zip_read_directory (z, len, &err);
  g_assert_no_error (err);
  canary_zip_entry *pkl = NULL;
  for (guint i = 0; i < dir->len; i++)
    if (g_str_has_suffix (g_array_index (dir, canary_zip_entry, i).name, "/data.pkl"))
      pkl = &g_array_index (dir, canary_zip_entry, i);
  g_assert_nonnull (pkl);
  g_assert_cmpuint (pkl->method, ==, 0);

  /* a flipped byte inside data.pkl: caught by its CRC */
  z[pkl->offset + pkl->size / 2] ^= 0x20;
  g_assert_null (canary_ckpt_parse (z, len, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, "CRC");
  z[pkl->offset + pkl->size / 2] ^= 0x20;

  /* every EOCD signature gone */
  for (gsize p = len - 22; p + 4 <= len && p > len - 22 - 64; p--)
    if (!memcmp (z + p, "PK\x05\x06", 4)) {
      z[p + 3] = 0x07;
      g_assert_null (canary_ckpt_parse (z, len, &err));
      assert_error_mentions (err, CANARY_ERROR_FORMAT, "end of central directory");
      z[p + 3] = 0x06;
    }

  /* zip64 record: central directory offset lies */
  gsize eocd = len - 22;
  g_assert_cmpmem (z + eocd, 4, "PK\x05\x06", 4);
  gsize loc = eocd - 20;
  g_assert_cmpmem (z + loc, 4, "PK\x06\x07", 4);
  guint64 rec = 0;
  for (int i = 7; i >= 0; i--)
    rec = rec << 8 | z[loc + 8 + i];
  guint8 saved[8];
  memcpy (saved, z + rec + 48, 8);
  memset (z + rec + 48, 0x7f, 8);
  g_assert_null (canary_ckpt_parse (z, len, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, "central directory");
  memcpy (z + rec + 48, saved, 8);
  /* zip64 record: entry count lies */
  memcpy (saved, z + rec + 32, 8);
  memset (z + rec + 24, 0x55, 16);
  g_assert_null (canary_ckpt_parse (z, len, &err));
  g_assert_nonnull (err);
  g_clear_error (&err);
  memcpy (z + rec + 24, saved, 8);
  memcpy (z + rec + 32, saved, 8);
  /* zip64 locator points nowhere */
  z[loc + 8] ^= 0x40;
  g_assert_null (canary_ckpt_parse (z, len, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, "zip64");
  z[loc + 8] ^= 0x40;

  /* a local header offset that misses its header */
  guint64 cd = 0;
  for (int i = 7; i >= 0; i--)
    cd = cd << 8 | z[rec + 48 + i];
  g_assert_cmpmem (z + cd, 4, "PK\x01\x02", 4);
  z[cd + 42] += 4;
  g_assert_null (canary_ckpt_parse (z, len, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, "local header");
  z[cd + 42] -= 4;
  /* an unknown compression method on data.pkl */
  z[cd + 10] = 12;
  g_assert_null (canary_ckpt_parse (z, len, &err));
  assert_error_mentions (err, CANARY_ERROR_UNSUPPORTED, "method");
  z[cd + 10] = 0;

  /* every edit was undone: the copy parses again */
  canary_ckpt *again = canary_ckpt_parse (z, len, &err);
  g_assert_no_error (err);
  canary_ckpt_free (again);
  g_array_unref (dir);
  g_free (z);
  fixture_model_close (&fx);
}

/* =============================================================================================
 * Synthetic zips
 * ============================================================================================= */

static void
test_zip_variants (void)
{
  GError *err = NULL;
  /* torch-like (64-aligned, zip64 tail), plain zip, unaligned, zip64 extras, and a comment */
  const zip_opts variants[] = {
    { .align = 64, .zip64 = TRUE }, { .align = 0 }, { .align = 1, .comment = "a comment PK\x05\x06 inside" },
    { .align = 64, .zip64 = TRUE, .zip64_extra = TRUE }, { .align = 3 },
  };
  for (gsize v = 0; v < G_N_ELEMENTS (variants); v++) {
    GByteArray *z = good_ckpt (&variants[v]);
    canary_ckpt *ck = canary_ckpt_parse (z->data, z->len, &err);
    g_assert_no_error (err);
    check_good_ckpt (ck);
    if (variants[v].align == 64)  /* record data starts on a 64-byte offset within the zip */
      g_assert_cmpint ((canary_ckpt_get (ck, "a")->data - z->data) % 64, ==, 0);
    if (variants[v].align == 3)   /* alignment is never assumed */
      g_assert_cmpint ((canary_ckpt_get (ck, "a")->data - z->data) % 4, !=, 0);
    canary_ckpt_free (ck);
    g_byte_array_unref (z);
  }

  /* deflated records (torch never writes them, other zip tools might) */
  GByteArray *p = good_pickle ();
  zip_entry e[] = {
    { "w/data.pkl", p->data, p->len, TRUE }, { "w/data/0", (const guint8 *) ckpt_store0, 48, TRUE },
    { "w/data/1", (const guint8 *) ckpt_store1, 16, FALSE }, { "w/version", (const guint8 *) "3\n", 2, TRUE },
  };
  GByteArray *z = zip_build (e, G_N_ELEMENTS (e), &(zip_opts) { 0 });
  canary_ckpt *ck = canary_ckpt_parse (z->data, z->len, &err);
  g_assert_no_error (err);
  check_good_ckpt (ck);
  canary_ckpt_free (ck);

  GArray *dir = canary_zip_read_directory (z->data, z->len, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (dir->len, ==, 4);
  const canary_zip_entry *d0 = &g_array_index (dir, canary_zip_entry, 1);
  g_assert_cmpstr (d0->name, ==, "w/data/0");
  g_assert_cmpuint (d0->method, ==, 8);
  g_assert_cmpuint (d0->size, ==, 48);
  const guint8 *data;
  guint8 *owned;
  g_assert_true (canary_zip_entry_data (z->data, z->len, d0, FALSE, &data, &owned, &err));
  g_assert_nonnull (owned);
  g_assert_cmpmem (data, 48, ckpt_store0, 48);
  g_free (owned);
  g_array_unref (dir);
  g_byte_array_unref (z);
  g_byte_array_unref (p);
}

/* Finds the first central header in a zip we built (no zip64 tail). */
static gsize
cd_offset (GByteArray *z)
{
  const guint8 *e = z->data + z->len - 22;
  return e[16] | e[17] << 8 | e[18] << 16 | (gsize) e[19] << 24;
}

static void
test_zip_malformed (void)
{
  const zip_opts plain = { 0 };
  GByteArray *z = good_ckpt (&plain);
  gsize cd = cd_offset (z), eocd = z->len - 22;
  GError *err = NULL;

  /* no EOCD / too short / empty */
  GByteArray *t = g_byte_array_new ();
  g_byte_array_append (t, z->data, (guint) eocd);
  expect_ckpt_error (t, CANARY_ERROR_FORMAT, "end of central directory");
  g_byte_array_set_size (t, 5);
  expect_ckpt_error (t, CANARY_ERROR_FORMAT, "too short");
  g_byte_array_set_size (t, 0);
  g_assert_null (canary_ckpt_parse ((const guint8 *) "", 0, &err));
  assert_error_mentions (err, CANARY_ERROR_FORMAT, NULL);

  /* EOCD fields lying: CD offset, CD size, entry count, disks, zip64 markers without locator */
  struct { gsize off; guint8 val; const char *needle; } edits[] = {
    { eocd + 18, 0xff, "outside the file" }, { eocd + 13, 0xff, "outside the file" }, { eocd + 16, 0x01, NULL },
    { eocd + 10, 0xf0, "multi-disk" }, { eocd + 4, 1, "multi-disk" }, { eocd + 8, 0x00, "multi-disk" },
    { eocd + 19, 0xff, NULL },
  };
  guint8 eocd_copy[22];
  memcpy (eocd_copy, z->data + eocd, 22);
  for (gsize i = 0; i < G_N_ELEMENTS (edits); i++) {
    z->data[edits[i].off] = edits[i].val;
    if (i == G_N_ELEMENTS (edits) - 1)
      memset (z->data + eocd + 16, 0xff, 4);  /* saturated offset with no zip64 records */
    expect_ckpt_error (z, CANARY_ERROR_FORMAT, edits[i].needle);
    memcpy (z->data + eocd, eocd_copy, 22);
  }
  /* an entry count the directory cannot hold */
  z->data[eocd + 8] = z->data[eocd + 10] = 0xf0;
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "claims 240 entries");
  g_byte_array_unref (z);
  z = good_ckpt (&plain);

  /* truncated central directory: cut each header short by shrinking the CD size */
  for (guint sub = 1; sub < 60; sub += 7) {
    guint32 size = z->data[eocd + 12] | z->data[eocd + 13] << 8;
    guint32 ns = size - sub;
    z->data[eocd + 12] = ns & 0xff;
    z->data[eocd + 13] = (ns >> 8) & 0xff;
    expect_ckpt_error (z, CANARY_ERROR_FORMAT, NULL);
    z->data[eocd + 12] = size & 0xff;
    z->data[eocd + 13] = (size >> 8) & 0xff;
  }

  /* central header fields: signature, name length past the directory, encrypted flag, stored size
   * mismatch, local offset past the data, saturated size without a zip64 extra */
  struct { gsize off; guint8 val; canary_error_code code; const char *needle; } hed[] = {
    { cd + 0, 'X', CANARY_ERROR_FORMAT, "corrupt" },
    { cd + 29, 0x40, CANARY_ERROR_FORMAT, "runs past" },
    { cd + 8, 1, CANARY_ERROR_FORMAT, "encrypted" },
    { cd + 20, 0x01, CANARY_ERROR_FORMAT, "sizes differ" },
    { cd + 45, 0x10, CANARY_ERROR_FORMAT, "out of range" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (hed); i++) {
    guint8 old = z->data[hed[i].off];
    z->data[hed[i].off] = hed[i].val;
    expect_ckpt_error (z, hed[i].code, hed[i].needle);
    z->data[hed[i].off] = old;
  }
  guint8 sat[8];
  memcpy (sat, z->data + cd + 20, 8);
  memset (z->data + cd + 20, 0xff, 8);
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "zip64");
  memcpy (z->data + cd + 20, sat, 8);

  /* local header: wrong name, a compressed size past the directory */
  z->data[30] ^= 0x01;
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "different file");
  z->data[30] ^= 0x01;
  z->data[28] = 0xff;  /* local extra length 255: data would start past the CD */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, NULL);
  g_byte_array_unref (z);

  /* zip64 extra fields that lie: a huge size, a huge local offset */
  const zip_opts x64 = { .zip64 = TRUE, .zip64_extra = TRUE };
  z = good_ckpt (&x64);
  GArray *dir = canary_zip_read_directory (z->data, z->len, &err);
  g_assert_no_error (err);
  g_array_unref (dir);
  guint8 *pos = memmem (z->data, z->len, "PK\x01\x02", 4);
  gsize name_len = pos[28] | pos[29] << 8;
  guint8 *extra = pos + 46 + name_len;
  g_assert_cmpint (extra[0], ==, 1);
  guint8 keep[24];
  memcpy (keep, extra + 4, 24);
  memset (extra + 4, 0x7f, 8);   /* uncompressed size 2^63-ish */
  memset (extra + 12, 0x7f, 8);
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, NULL);
  memcpy (extra + 4, keep, 24);
  memset (extra + 20, 0x7f, 8);  /* local header offset */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "local header offset");
  memcpy (extra + 4, keep, 24);
  extra[2] = 8;                  /* extra too short for the saturated fields */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "zip64 extra field lacks");
  extra[2] = 200;                /* extra length past its header */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, NULL);
  g_byte_array_unref (z);

  /* deflate: corrupt stream, and a size no deflate stream can produce */
  GByteArray *p = good_pickle ();
  zip_entry e[] = { { "w/data.pkl", p->data, p->len, TRUE }, { "w/data/0", (const guint8 *) ckpt_store0, 48, FALSE },
                 { "w/data/1", (const guint8 *) ckpt_store1, 16, FALSE } };
  z = zip_build (e, 3, &plain);
  cd = cd_offset (z);
  gsize data0 = 30 + strlen ("w/data.pkl");
  z->data[data0 + 3] ^= 0xff;
  z->data[data0 + 4] ^= 0xff;
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "data.pkl");
  z->data[data0 + 3] ^= 0xff;
  z->data[data0 + 4] ^= 0xff;
  z->data[cd + 27] = 0x7f;  /* uncompressed size ~2 GiB from a few hundred bytes */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "impossible");
  z->data[cd + 27] = 0;
  z->data[cd + 24] += 1;    /* size off by one: inflate ends early */
  expect_ckpt_error (z, CANARY_ERROR_FORMAT, "size does not match");
  g_byte_array_unref (z);
  g_byte_array_unref (p);
  g_byte_array_unref (t);
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

/* =============================================================================================
 * Pickle VM
 * ============================================================================================= */

static GPtrArray *
run_pickle (GByteArray *b, GError **err)
{
  return canary_pickle_load_state_dict (b->data, b->len, err);
}

/* Protocol 4 framing, memo and STACK_GLOBAL, _rebuild_parameter, 7-argument v2, plain dicts,
 * duplicate keys and non-tensor values. */
static void
test_pickle_valid (void)
{
  GError *err = NULL;
  GByteArray *b = g_byte_array_new ();
  pk_op (b, 0x80);
  pk_op (b, 4);
  pk_op (b, 0x95);
  for (int i = 0; i < 8; i++)
    pk_op (b, 0);
  pk_op (b, '}');                                   /* plain dict as the top object */
  pk_op (b, 0x94);                                  /* MEMOIZE → 0 */
  pk_op (b, '(');
  /* "w": _rebuild_parameter (via STACK_GLOBAL) of a 7-argument _rebuild_tensor_v2 */
  pk_op (b, 0x8c); pk_op (b, 1); pk_op (b, 'w');
  pk_op (b, 0x8c); pk_op (b, 12); g_byte_array_append (b, (const guint8 *) "torch._utils", 12);
  pk_op (b, 0x8c); pk_op (b, 18); g_byte_array_append (b, (const guint8 *) "_rebuild_parameter", 18);
  pk_op (b, 0x93);
  pk_global (b, "torch._utils", "_rebuild_tensor_v2");
  pk_op (b, 0x94);                                  /* MEMOIZE → 1 */
  pk_op (b, '(');                                   /* v2 arguments */
  pk_op (b, '(');                                   /* persistent id */
  pk_str (b, "storage"); pk_global (b, "torch", "BFloat16Storage"); pk_str (b, "7"); pk_str (b, "cuda:0");
  pk_op (b, 0x8a); pk_op (b, 2); pk_op (b, 0x00); pk_op (b, 0x01);  /* LONG1 256 */
  pk_op (b, 't');
  pk_op (b, 'Q');
  pk_op (b, 'M'); pk_op (b, 4); pk_op (b, 0);        /* BININT2 offset 4 */
  pk_op (b, 'K'); pk_op (b, 16); pk_op (b, 0x85);    /* (16,) */
  pk_op (b, 'K'); pk_op (b, 1); pk_op (b, 0x85);     /* (1,) */
  pk_op (b, 0x88);                                  /* requires_grad True */
  pk_op (b, '}');                                   /* hooks {} */
  pk_op (b, 'N');                                   /* metadata None */
  pk_op (b, 't');
  pk_op (b, 'R');
  pk_op (b, 0x88);
  pk_op (b, '}');
  pk_op (b, 0x87);                                  /* (tensor, True, {}) */
  pk_op (b, 'R');
  /* "version": a non-tensor value (ignored with a warning) */
  pk_str (b, "version"); pk_int (b, -3);
  /* "w" again: the last value wins, at the first position */
  pk_op (b, 0x8c); pk_op (b, 1); pk_op (b, 'w');
  pk_op (b, 'h'); pk_op (b, 1);                     /* BINGET _rebuild_tensor_v2 */
  pk_op (b, '2'); pk_op (b, '0');                   /* DUP, POP */
  pk_op (b, '(');
  pk_op (b, '(');
  pk_str (b, "storage"); pk_global (b, "torch", "HalfStorage"); pk_str (b, "8"); pk_str (b, "cpu");
  pk_int (b, 100000); pk_op (b, 't'); pk_op (b, 'Q');
  pk_int (b, 70000);
  pk_op (b, ')'); pk_op (b, ')');                   /* 0-d */
  pk_op (b, 0x89); pk_op (b, '}'); pk_op (b, 't'); pk_op (b, 'R');
  pk_op (b, 'u');
  pk_op (b, 'G');                                   /* a BINFLOAT pushed and popped */
  for (int i = 0; i < 8; i++)
    pk_op (b, 0x40);
  pk_op (b, '0');
  pk_op (b, '.');

  GPtrArray *sd = run_pickle (b, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (sd->len, ==, 1);
  canary_pickle_tensor *t = g_ptr_array_index (sd, 0);
  g_assert_cmpstr (t->name, ==, "w");
  g_assert_cmpstr (t->storage_key, ==, "8");
  g_assert_cmpint (t->dtype, ==, CANARY_DTYPE_F16);
  g_assert_cmpint (t->storage_numel, ==, 100000);
  g_assert_cmpint (t->offset, ==, 70000);
  g_assert_cmpint (t->ndim, ==, 0);
  g_ptr_array_unref (sd);
  g_byte_array_unref (b);

  /* the first "w" alone: bf16, LONG1, 7 args, parameter */
  b = g_byte_array_new ();
  pk_begin (b);
  pk_str (b, "p");
  pk_global (b, "torch._utils", "_rebuild_parameter");
  pk_op (b, '(');
  pk_tensor (b, "BFloat16Storage", "3", 256, 4, 1, (gint64[]) { 16 }, (gint64[]) { 1 });
  pk_op (b, 0x88);
  pk_global (b, "collections", "OrderedDict");
  pk_op (b, ')');
  pk_op (b, 'R');
  pk_op (b, 't');
  pk_op (b, 'R');
  pk_str (b, "big");
  pk_tensor (b, "LongStorage", "4", G_GINT64_CONSTANT (5000000000), G_GINT64_CONSTANT (4999999999), 0, NULL, NULL);
  pk_end (b);
  sd = run_pickle (b, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (sd->len, ==, 2);
  t = g_ptr_array_index (sd, 0);
  g_assert_cmpint (t->dtype, ==, CANARY_DTYPE_BF16);
  g_assert_cmpint (t->offset, ==, 4);
  g_assert_cmpint (t->shape[0], ==, 16);
  t = g_ptr_array_index (sd, 1);
  g_assert_cmpint (t->storage_numel, ==, G_GINT64_CONSTANT (5000000000));
  g_assert_cmpint (t->dtype, ==, CANARY_DTYPE_I64);
  g_ptr_array_unref (sd);
  g_byte_array_unref (b);
}

typedef struct {
  const char *what;
  const guint8 *bytes;
  gsize len;
  const char *needle;
} bad_pickle;

/* Splices `mid` between a valid prefix (PROTO, OrderedDict, MARK) and nothing: most cases are
 * self-contained byte strings. */
static void
expect_pickle_error (const char *what, const guint8 *bytes, gsize len, const char *needle)
{
  GError *err = NULL;
  GPtrArray *sd = canary_pickle_load_state_dict (bytes, len, &err);
  if (sd)
    g_error ("%s: accepted", what);
  g_assert_error (err, CANARY_ERROR, CANARY_ERROR_FORMAT);
  if (needle && !strstr (err->message, needle))
    g_error ("%s: '%s' does not mention '%s'", what, err->message, needle);
  g_clear_error (&err);
}

#define BAD(what, lit, needle) expect_pickle_error (what, (const guint8 *) lit, sizeof lit - 1, needle)

static void
test_pickle_malformed (void)
{
  BAD ("empty", "", "truncated");
  BAD ("no STOP", "\x80\x02}", "no STOP");
  BAD ("unknown opcode 0xff", "\x80\x02\xff.", "0xff");
  BAD ("protocol-0 INT", "\x80\x02I1\n.", "unsupported opcode");
  BAD ("opcode offset", "\x80\x02}(\xfe", "at byte 4");
  BAD ("protocol 9", "\x80\x09}.", "protocol");
  BAD ("stack underflow REDUCE", "\x80\x02R.", "stack underflow");
  BAD ("stack underflow TUPLE3", "\x80\x02K\x01K\x02\x87.", "stack underflow");
  BAD ("underflow below MARK", "\x80\x02K\x01(\x85.", "stack underflow");
  BAD ("SETITEM on a list", "\x80\x02]K\x01K\x02s.", "not a dict");
  BAD ("APPEND on a dict", "\x80\x02}K\x01" "a.", "not a list");
  BAD ("SETITEMS odd", "\x80\x02}(K\x01u.", "odd");
  BAD ("TUPLE without MARK", "\x80\x02K\x01t.", "MARK");
  BAD ("BINGET unset", "\x80\x02h\x05.", "never stored");
  BAD ("LONG_BINGET huge", "\x80\x02j\xff\xff\xff\xff.", "never stored");
  BAD ("LONG_BINPUT huge", "\x80\x02}r\xff\xff\xff\x7f.", "exceeds the limit");
  BAD ("BINPUT empty stack", "\x80\x02q\x00.", "stack underflow");
  BAD ("BINUNICODE past end", "\x80\x02X\xff\xff\xff\x7f" "abc", "runs past the end");
  BAD ("BINUNICODE8 huge", "\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff", "runs past the end");
  BAD ("BINSTRING negative", "\x80\x02T\xff\xff\xff\xff", "negative");
  BAD ("bad UTF-8", "\x80\x02X\x02\x00\x00\x00\xc3\x28.", "UTF-8");
  BAD ("NUL in text", "\x80\x02X\x02\x00\x00\x00" "a\x00.", "UTF-8");
  BAD ("LONG1 9 bytes", "\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.", "64 bits");
  BAD ("operand cut", "\x80\x02J\x01\x02", "operand");
  BAD ("GLOBAL no newline", "\x80\x02" "ctorch\nFloat", "newline");
  BAD ("global os.system", "\x80\x02" "cos\nsystem\n.", "os.system");
  BAD ("global builtins.eval", "\x80\x02" "cbuiltins\neval\n.", "builtins.eval");
  BAD ("complex storage", "\x80\x02" "ctorch\nComplexFloatStorage\n.", "ComplexFloatStorage");
  BAD ("untyped storage", "\x80\x02" "ctorch\nUntypedStorage\n.", "UntypedStorage");
  BAD ("STACK_GLOBAL ints", "\x80\x04K\x01K\x02\x93.", "not strings");
  BAD ("calling a storage type", "\x80\x02" "ctorch\nFloatStorage\n)R.", "cannot be called");
  BAD ("calling a non-global", "\x80\x02K\x01)R.", "not a global");
  BAD ("OrderedDict args", "\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R.", "arguments");
  BAD ("REDUCE args not tuple", "\x80\x02" "ccollections\nOrderedDict\n]R.", "not a tuple");
  BAD ("top not a dict", "\x80\x02]\x2e", "not a dict");
  BAD ("extra stack at STOP", "\x80\x02}}.", "exactly one");
  BAD ("open MARK at STOP", "\x80\x02(}.", "exactly one");
  BAD ("non-string key", "\x80\x02}K\x01N\x73.", "not a string");
  BAD ("persid not a tuple", "\x80\x02K\x01Q.", "5-tuple");
  BAD ("persid wrong kind", "\x80\x02(X\x01\x00\x00\x00xctorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x01tQ.",
       "'storage'");
  BAD ("persid type not a storage", "\x80\x02(X\x07\x00\x00\x00storageNX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x01tQ.",
       "storage type");
  BAD ("persid negative numel", "\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuJ\xff\xff\xff\xfftQ.",
       "numel");
  BAD ("persid empty key", "\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x00\x00\x00\x00X\x03\x00\x00\x00" "cpuK\x01tQ.",
       "key");
  BAD ("PROTO cut", "\x80", "operand");

  /* Tensor argument errors, on top of a valid storage persid. */
  static const char storage[] = "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x0ctQ";
  const gsize storage_len = sizeof storage - 1;
#define ARGS(lit) lit, sizeof lit - 1
  struct { const char *what; const char *args; gsize len; const char *needle; } targs[] = {
    { "5 args", ARGS ("K\x00K\x0c\x85K\x01\x85\x89t"), "6 or 7" },
    { "negative offset", ARGS ("J\xff\xff\xff\xffK\x0c\x85K\x01\x85\x89}t"), "storage_offset" },
    { "negative size", ARGS ("K\x00J\xfe\xff\xff\xff\x85K\x01\x85\x89}t"), "size[0]" },
    { "float size", ARGS ("K\x00G\x40\x00\x00\x00\x00\x00\x00\x00\x85K\x01\x85\x89}t"), "size[0]" },
    { "size not tuple", ARGS ("K\x00NK\x01\x85\x89}t"), "size is not a tuple" },
    { "stride rank", ARGS ("K\x00K\x03K\x04\x86K\x01\x85\x89}t"), "stride has 1" },
    { "9 dims", ARGS ("K\x00(K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01t(K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01t\x89}t"), "9 dims" },
    { "requires_grad string", ARGS ("K\x00K\x0c\x85K\x01\x85X\x00\x00\x00\x00}t"), "requires_grad" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (targs); i++) {
    GByteArray *b = g_byte_array_new ();
    g_byte_array_append (b, (const guint8 *) "\x80\x02}(X\x01\x00\x00\x00x", 10);
    pk_global (b, "torch._utils", "_rebuild_tensor_v2");
    pk_op (b, '(');
    g_byte_array_append (b, (const guint8 *) storage, (guint) storage_len);
    g_byte_array_append (b, (const guint8 *) targs[i].args, (guint) targs[i].len);
    pk_op (b, 'R');
    pk_op (b, 'u');
    pk_op (b, '.');
    expect_pickle_error (targs[i].what, b->data, b->len, targs[i].needle);
    g_byte_array_unref (b);
  }
  /* a well-formed version of the above parses (guards the byte counts used there) */
  GByteArray *b = g_byte_array_new ();
  g_byte_array_append (b, (const guint8 *) "\x80\x02}(X\x01\x00\x00\x00x", 10);
  pk_global (b, "torch._utils", "_rebuild_tensor_v2");
  pk_op (b, '(');
  g_byte_array_append (b, (const guint8 *) storage, (guint) storage_len);
  static const char good_args[] = "K\x00K\x0c\x85K\x01\x85\x89}t";
  g_byte_array_append (b, (const guint8 *) good_args, sizeof good_args - 1);
  pk_op (b, 'R');
  pk_op (b, 'u');
  pk_op (b, '.');
  GError *err = NULL;
  GPtrArray *sd = run_pickle (b, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (sd->len, ==, 1);
  g_ptr_array_unref (sd);
  g_byte_array_unref (b);

  /* resource limits: deep MARK nesting, and a long flat stack that is fine */
  b = g_byte_array_new ();
  pk_op (b, 0x80);
  pk_op (b, 2);
  for (int i = 0; i < 70000; i++)
    pk_op (b, '(');
  expect_pickle_error ("deep marks", b->data, b->len, "nested MARKs");
  g_byte_array_set_size (b, 2);
  pk_op (b, '}');
  pk_op (b, ']');
  pk_op (b, '(');
  for (int i = 0; i < 200000; i++)
    pk_op (b, 'N');
  pk_op (b, 'e');
  pk_op (b, '0');
  pk_op (b, '.');
  sd = run_pickle (b, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (sd->len, ==, 0);
  g_ptr_array_unref (sd);
  /* a self-referencing list (cycle) does not hang or leak */
  g_byte_array_set_size (b, 2);
  g_byte_array_append (b, (const guint8 *) "]q\x00h\x00" "a0}.", 9);
  sd = run_pickle (b, &err);
  g_assert_no_error (err);
  g_ptr_array_unref (sd);
  g_byte_array_unref (b);
}

/* A key set three times keeps its first position and its last value (a regression: the name the
 * lookup table held was freed with the replaced entry; found by fuzz_pickle). */
static void
test_pickle_duplicate_keys (void)
{
  GByteArray *b = g_byte_array_new ();
  pk_begin (b);
  const char *keys[] = { "a", "dup", "b", "dup", "c", "dup", "b" };
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++) {
    char *storage = g_strdup_printf ("%zu", i);
    pk_str (b, keys[i]);
    pk_tensor (b, "FloatStorage", storage, 4, 0, 1, (gint64[]) { 4 }, (gint64[]) { 1 });
    g_free (storage);
  }
  pk_end (b);
  GError *err = NULL;
  GPtrArray *sd = run_pickle (b, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (sd->len, ==, 4);
  const char *want_names[] = { "a", "dup", "b", "c" }, *want_keys[] = { "0", "5", "6", "4" };
  for (guint i = 0; i < 4; i++) {
    const canary_pickle_tensor *t = g_ptr_array_index (sd, i);
    g_assert_cmpstr (t->name, ==, want_names[i]);
    g_assert_cmpstr (t->storage_key, ==, want_keys[i]);
  }
  g_ptr_array_unref (sd);
  g_byte_array_unref (b);
}

/* Every prefix and many single-byte mutations of a real torch pickle: errors, never crashes. */
static void
test_pickle_mutations (void)
{
  GByteArray *p = good_pickle ();
  GError *err = NULL;
  for (gsize cut = 0; cut < p->len; cut++) {
    GPtrArray *sd = canary_pickle_load_state_dict (p->data, cut, &err);
    g_assert_null (sd);
    g_assert_nonnull (err);
    g_clear_error (&err);
  }
  GRand *r = g_rand_new_with_seed (7);
  for (int round = 0; round < 20000; round++) {
    gsize at = g_rand_int_range (r, 0, (gint32) p->len);
    guint8 old = p->data[at];
    p->data[at] = (guint8) g_rand_int (r);
    GPtrArray *sd = canary_pickle_load_state_dict (p->data, p->len, &err);
    if (sd)
      g_ptr_array_unref (sd);
    else
      g_assert_nonnull (err);
    g_clear_error (&err);
    p->data[at] = old;
  }
  g_rand_free (r);
  g_byte_array_unref (p);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ckpt/fixture/keys-and-shapes", test_fixture_keys);
  g_test_add_func ("/ckpt/fixture/torch-checks", test_fixture_torch_checks);
  g_test_add_func ("/ckpt/fixture/damaged", test_fixture_damaged);
  g_test_add_func ("/ckpt/zip/variants", test_zip_variants);
  g_test_add_func ("/ckpt/zip/malformed", test_zip_malformed);
  g_test_add_func ("/ckpt/views", test_views);
  g_test_add_func ("/ckpt/structure", test_ckpt_structure);
  g_test_add_func ("/ckpt/pickle/valid", test_pickle_valid);
  g_test_add_func ("/ckpt/pickle/malformed", test_pickle_malformed);
  g_test_add_func ("/ckpt/pickle/duplicate-keys", test_pickle_duplicate_keys);
  g_test_add_func ("/ckpt/pickle/mutations", test_pickle_mutations);
  return g_test_run ();
}
