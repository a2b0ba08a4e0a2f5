/* gst-canary tests — formats/pickle.c: the pickle VM on what torch.save writes and on what other
 * picklers could (protocol 4 framing, memo, STACK_GLOBAL, _rebuild_parameter), its refusals
 * (opcodes, stack and memo misuse, hostile globals, bad tensor arguments, resource limits), and
 * prefixes and mutations of a valid state dict, built with builders.h.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "canary.h"
#include "builders.h"
#include "formats/pickle.h"

#include <string.h>

/* =============================================================================================
 * Valid pickles
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
/* Asserts the VM refuses `bytes` with a format error that mentions `needle` (NULL: any). */
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
  g_test_add_func ("/pickle/valid", test_pickle_valid);
  g_test_add_func ("/pickle/malformed", test_pickle_malformed);
  g_test_add_func ("/pickle/duplicate-keys", test_pickle_duplicate_keys);
  g_test_add_func ("/pickle/mutations", test_pickle_mutations);
  return g_test_run ();
}
