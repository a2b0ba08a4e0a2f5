/* gst-canary — a small pickle virtual machine for torch state dicts (data.pkl).
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Implements the opcodes CPython's pickler emits for an OrderedDict of tensors at protocols 2-4
 * (plus a few cheap neighbours), and only the callables torch uses to rebuild tensors. Anything
 * else is refused with an error naming the opcode and byte offset: a state dict never needs to run
 * arbitrary code, and refusing keeps a hostile file from doing anything but failing.
 *
 * Objects live in one list owned by the VM and are freed together, so shared references (memo,
 * BINGET, DUP) and even cycles need no reference counting. Every opcode creates at most one object
 * and consumes at least one byte, so memory stays proportional to the input; explicit limits on
 * the stack, marks and memo keep that proportion small. */
#include "formats/pickle.h"
#include "util.h"

#include <string.h>

#define MAX_STACK (1u << 22)
#define MAX_MARKS (1u << 16)
#define MAX_MEMO (1u << 24)

typedef enum {
  OBJ_NONE,
  OBJ_BOOL,
  OBJ_INT,
  OBJ_FLOAT,
  OBJ_STR,
  OBJ_BYTES,
  OBJ_TUPLE,
  OBJ_LIST,
  OBJ_DICT,      /* items: key, value, key, value, ... */
  OBJ_GLOBAL,
  OBJ_STORAGE,
  OBJ_TENSOR,
} obj_kind;

typedef enum {
  FN_ORDERED_DICT,
  FN_REBUILD_TENSOR,      /* torch._utils._rebuild_tensor (storage, offset, size, stride) */
  FN_REBUILD_TENSOR_V2,   /* ... + requires_grad, backward_hooks [, metadata] */
  FN_REBUILD_PARAMETER,   /* (tensor, requires_grad, backward_hooks [, state]) */
  FN_STORAGE_TYPE,
} global_fn;

typedef struct obj obj;
struct obj {
  obj_kind kind;
  gint64 i;                 /* BOOL, INT; STORAGE: numel */
  double f;
  char *s;                  /* STR, BYTES (NUL-terminated copy); STORAGE: key */
  gsize s_len;
  GPtrArray *items;         /* TUPLE, LIST, DICT */
  global_fn fn;             /* GLOBAL */
  canary_dtype dtype;       /* GLOBAL storage type; STORAGE */
  char *location;           /* STORAGE */
  obj *storage;             /* TENSOR */
  gint64 offset;            /* TENSOR */
  int ndim;
  gint64 shape[CANARY_MAX_DIMS];
  gint64 stride[CANARY_MAX_DIMS];
};

typedef struct {
  const guint8 *d;
  gsize len, pos;
  gsize op_pos;             /* offset of the opcode being run, for messages */
  guint8 op;
  GPtrArray *stack;
  GArray *marks;            /* stack heights at each MARK */
  GPtrArray *memo;          /* obj* or NULL */
  guint memo_keys;          /* set entries: MEMOIZE uses this as its index, like len(memo) */
  gsize memo_limit;
  GPtrArray *all;           /* every object, for freeing */
  GError **error;
} vm;

static const struct {
  guint8 op;
  const char *name;
} opcode_names[] = {
  { 0x80, "PROTO" }, { 0x95, "FRAME" }, { 'c', "GLOBAL" }, { 0x93, "STACK_GLOBAL" },
  { 'q', "BINPUT" }, { 'r', "LONG_BINPUT" }, { 0x94, "MEMOIZE" }, { 'h', "BINGET" },
  { 'j', "LONG_BINGET" }, { '(', "MARK" }, { ')', "EMPTY_TUPLE" }, { 't', "TUPLE" },
  { 0x85, "TUPLE1" }, { 0x86, "TUPLE2" }, { 0x87, "TUPLE3" }, { '}', "EMPTY_DICT" },
  { 'd', "DICT" }, { ']', "EMPTY_LIST" }, { 'l', "LIST" }, { 's', "SETITEM" },
  { 'u', "SETITEMS" }, { 'a', "APPEND" }, { 'e', "APPENDS" }, { 'X', "BINUNICODE" },
  { 0x8c, "SHORT_BINUNICODE" }, { 0x8d, "BINUNICODE8" }, { 'T', "BINSTRING" },
  { 'U', "SHORT_BINSTRING" }, { 'B', "BINBYTES" }, { 'C', "SHORT_BINBYTES" },
  { 0x8e, "BINBYTES8" }, { 'J', "BININT" }, { 'K', "BININT1" }, { 'M', "BININT2" },
  { 0x8a, "LONG1" }, { 0x8b, "LONG4" }, { 'G', "BINFLOAT" }, { 0x88, "NEWTRUE" },
  { 0x89, "NEWFALSE" }, { 'N', "NONE" }, { 'R', "REDUCE" }, { 0x81, "NEWOBJ" }, { 'b', "BUILD" },
  { 'Q', "BINPERSID" }, { '0', "POP" }, { '1', "POP_MARK" }, { '2', "DUP" }, { '.', "STOP" },
};

static const char *
opcode_name (guint8 op)
{
  for (gsize i = 0; i < G_N_ELEMENTS (opcode_names); i++)
    if (opcode_names[i].op == op)
      return opcode_names[i].name;
  return NULL;
}

static gboolean
vm_fail (vm *m, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* Sets the error (once) as "pickle: <opcode> (0xNN) at byte N: <message>". */
static gboolean
vm_fail (vm *m, const char *fmt, ...)
{
  if (m->error && *m->error)
    return FALSE;
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const char *name = opcode_name (m->op);
  g_set_error (m->error, CANARY_ERROR, CANARY_ERROR_FORMAT, "pickle: %s (0x%02x) at byte %" G_GSIZE_FORMAT ": %s",
      name ? name : "unknown opcode", m->op, m->op_pos, msg);
  g_free (msg);
  return FALSE;
}

static void
obj_free (gpointer p)
{
  obj *o = p;
  g_free (o->s);
  g_free (o->location);
  if (o->items)
    g_ptr_array_unref (o->items);
  g_free (o);
}

static obj *
obj_new (vm *m, obj_kind kind)
{
  obj *o = g_new0 (obj, 1);
  o->kind = kind;
  if (kind == OBJ_TUPLE || kind == OBJ_LIST || kind == OBJ_DICT)
    o->items = g_ptr_array_new ();
  g_ptr_array_add (m->all, o);
  return o;
}

/* --- reading operands ------------------------------------------------------------------------ */

static gboolean
take (vm *m, gsize n, const guint8 **out)
{
  if (n > m->len - m->pos)
    return vm_fail (m, "needs %" G_GSIZE_FORMAT " operand bytes, only %" G_GSIZE_FORMAT " left", n, m->len - m->pos);
  *out = m->d + m->pos;
  m->pos += n;
  return TRUE;
}

static gboolean
take_uint (vm *m, gsize n, guint64 *out)
{
  const guint8 *p = NULL;
  if (!take (m, n, &p))
    return FALSE;
  guint64 v = 0;
  for (gsize i = n; i-- > 0;)
    v = v << 8 | p[i];
  *out = v;
  return TRUE;
}

/* Reads "text\n" (GLOBAL operands). */
static gboolean
take_line (vm *m, char **out)
{
  const guint8 *start = m->d + m->pos;
  const guint8 *nl = memchr (start, '\n', m->len - m->pos);
  if (!nl)
    return vm_fail (m, "operand line has no newline");
  gsize n = nl - start;
  if (memchr (start, 0, n) || !g_utf8_validate ((const char *) start, n, NULL))
    return vm_fail (m, "operand line is not valid text");
  *out = g_strndup ((const char *) start, n);
  m->pos += n + 1;
  return TRUE;
}

/* --- stack ------------------------------------------------------------------------------------ */

static gboolean
push (vm *m, obj *o)
{
  if (m->stack->len >= MAX_STACK)
    return vm_fail (m, "stack exceeds %u entries", MAX_STACK);
  g_ptr_array_add (m->stack, o);
  return TRUE;
}

/* The stack floor is the last MARK: opcodes other than the mark-consuming ones may not reach
 * below it (CPython enforces the same). */
static guint
stack_floor (vm *m)
{
  return m->marks->len ? g_array_index (m->marks, guint, m->marks->len - 1) : 0;
}

static gboolean
pop (vm *m, obj **out)
{
  if (m->stack->len <= stack_floor (m))
    return vm_fail (m, "stack underflow");
  *out = g_ptr_array_steal_index (m->stack, m->stack->len - 1);
  return TRUE;
}

static gboolean
top (vm *m, obj **out)
{
  if (m->stack->len <= stack_floor (m))
    return vm_fail (m, "stack underflow (empty stack)");
  *out = g_ptr_array_index (m->stack, m->stack->len - 1);
  return TRUE;
}

/* Moves everything above the last MARK into `dest` (may be NULL to drop them) and pops the mark. */
static gboolean
pop_mark (vm *m, GPtrArray *dest)
{
  if (m->marks->len == 0)
    return vm_fail (m, "no MARK on the stack");
  guint mark = g_array_index (m->marks, guint, m->marks->len - 1);
  g_array_set_size (m->marks, m->marks->len - 1);
  for (guint i = mark; i < m->stack->len; i++)
    if (dest)
      g_ptr_array_add (dest, g_ptr_array_index (m->stack, i));
  g_ptr_array_set_size (m->stack, mark);
  return TRUE;
}

/* --- memo ------------------------------------------------------------------------------------- */

static gboolean
memo_put (vm *m, guint64 idx)
{
  obj *o = NULL;
  if (!top (m, &o))
    return FALSE;
  if (idx >= m->memo_limit)
    return vm_fail (m, "memo index %" G_GUINT64_FORMAT " exceeds the limit %" G_GSIZE_FORMAT, idx, m->memo_limit);
  if (idx >= m->memo->len)
    g_ptr_array_set_size (m->memo, (guint) idx + 1);
  if (!g_ptr_array_index (m->memo, idx))
    m->memo_keys++;
  g_ptr_array_index (m->memo, idx) = o;
  return TRUE;
}

static gboolean
memo_get (vm *m, guint64 idx)
{
  if (idx >= m->memo->len || !g_ptr_array_index (m->memo, idx))
    return vm_fail (m, "memo index %" G_GUINT64_FORMAT " was never stored", idx);
  return push (m, g_ptr_array_index (m->memo, idx));
}

/* --- globals ---------------------------------------------------------------------------------- */

static const struct {
  const char *name;
  canary_dtype dtype;
} storage_types[] = {
  { "FloatStorage", CANARY_DTYPE_F32 }, { "HalfStorage", CANARY_DTYPE_F16 },
  { "BFloat16Storage", CANARY_DTYPE_BF16 }, { "DoubleStorage", CANARY_DTYPE_F64 },
  { "LongStorage", CANARY_DTYPE_I64 }, { "IntStorage", CANARY_DTYPE_I32 },
  { "ShortStorage", CANARY_DTYPE_I16 }, { "CharStorage", CANARY_DTYPE_I8 },
  { "ByteStorage", CANARY_DTYPE_U8 }, { "BoolStorage", CANARY_DTYPE_BOOL },
};

static gboolean
make_global (vm *m, const char *module, const char *name)
{
  obj *g = obj_new (m, OBJ_GLOBAL);
  gboolean known = TRUE;
  if (strcmp (module, "collections") == 0 && strcmp (name, "OrderedDict") == 0) {
    g->fn = FN_ORDERED_DICT;
  } else if (strcmp (module, "torch._utils") == 0 && strcmp (name, "_rebuild_tensor_v2") == 0) {
    g->fn = FN_REBUILD_TENSOR_V2;
  } else if (strcmp (module, "torch._utils") == 0 && strcmp (name, "_rebuild_tensor") == 0) {
    g->fn = FN_REBUILD_TENSOR;
  } else if (strcmp (module, "torch._utils") == 0 &&
      (strcmp (name, "_rebuild_parameter") == 0 || strcmp (name, "_rebuild_parameter_with_state") == 0)) {
    g->fn = FN_REBUILD_PARAMETER;
  } else if (strcmp (module, "torch") == 0 || strcmp (module, "torch.cuda") == 0) {
    known = FALSE;
    for (gsize i = 0; i < G_N_ELEMENTS (storage_types); i++) {
      if (strcmp (name, storage_types[i].name) == 0) {
        g->fn = FN_STORAGE_TYPE;
        g->dtype = storage_types[i].dtype;
        known = TRUE;
      }
    }
  } else {
    known = FALSE;
  }
  if (!known)
    return vm_fail (m, "unsupported global '%s.%s' (not part of a torch state dict)", module, name);
  return push (m, g);
}

/* --- helpers for REDUCE arguments ------------------------------------------------------------- */

static gboolean
is_int (const obj *o)
{
  return o->kind == OBJ_INT || o->kind == OBJ_BOOL;
}

/* Reads a tuple of non-negative ints (torch.Size or a stride tuple). */
static gboolean
int_tuple (vm *m, const obj *t, const char *what, int *ndim, gint64 *out)
{
  if (t->kind != OBJ_TUPLE && t->kind != OBJ_LIST)
    return vm_fail (m, "tensor %s is not a tuple", what);
  if (t->items->len > CANARY_MAX_DIMS)
    return vm_fail (m, "tensor %s has %u dims (max %d)", what, t->items->len, CANARY_MAX_DIMS);
  for (guint i = 0; i < t->items->len; i++) {
    const obj *v = g_ptr_array_index (t->items, i);
    if (!is_int (v) || v->i < 0)
      return vm_fail (m, "tensor %s[%u] is not a non-negative integer", what, i);
    out[i] = v->i;
  }
  *ndim = (int) t->items->len;
  return TRUE;
}

static gboolean
rebuild_tensor (vm *m, const obj *args, gboolean v2, obj **out)
{
  guint n = args->items->len;
  if (v2 ? (n != 6 && n != 7) : n != 4)
    return vm_fail (m, "%s takes %s arguments, got %u", v2 ? "_rebuild_tensor_v2" : "_rebuild_tensor",
        v2 ? "6 or 7" : "4", n);
  obj **a = (obj **) args->items->pdata;
  if (a[0]->kind != OBJ_STORAGE)
    return vm_fail (m, "tensor storage argument is not a persistent storage");
  if (!is_int (a[1]) || a[1]->i < 0)
    return vm_fail (m, "tensor storage_offset is not a non-negative integer");

  obj *t = obj_new (m, OBJ_TENSOR);
  t->storage = a[0];
  t->offset = a[1]->i;
  int nd_stride;
  if (!int_tuple (m, a[2], "size", &t->ndim, t->shape) || !int_tuple (m, a[3], "stride", &nd_stride, t->stride))
    return FALSE;
  if (nd_stride != t->ndim)
    return vm_fail (m, "tensor size has %d dims but stride has %d", t->ndim, nd_stride);
  if (v2 && a[4]->kind != OBJ_BOOL && a[4]->kind != OBJ_INT)
    return vm_fail (m, "tensor requires_grad is not a bool");
  *out = t;
  return TRUE;
}

static gboolean
op_reduce (vm *m)
{
  obj *args = NULL, *fn = NULL, *res = NULL;
  if (!pop (m, &args) || !pop (m, &fn))
    return FALSE;
  if (fn->kind != OBJ_GLOBAL)
    return vm_fail (m, "callable is not a global");
  if (args->kind != OBJ_TUPLE)
    return vm_fail (m, "arguments are not a tuple");

  switch (fn->fn) {
    case FN_ORDERED_DICT:
      if (args->items->len != 0)
        return vm_fail (m, "OrderedDict with constructor arguments is not supported");
      res = obj_new (m, OBJ_DICT);
      break;
    case FN_REBUILD_TENSOR:
    case FN_REBUILD_TENSOR_V2:
      if (!rebuild_tensor (m, args, fn->fn == FN_REBUILD_TENSOR_V2, &res))
        return FALSE;
      break;
    case FN_REBUILD_PARAMETER:
      if (args->items->len < 3 || args->items->len > 4 ||
          ((obj *) g_ptr_array_index (args->items, 0))->kind != OBJ_TENSOR)
        return vm_fail (m, "_rebuild_parameter needs (tensor, requires_grad, hooks[, state])");
      res = g_ptr_array_index (args->items, 0);
      break;
    case FN_STORAGE_TYPE:
      return vm_fail (m, "storage types cannot be called");
  }
  return push (m, res);
}

/* BINPERSID: ('storage', <torch.XStorage>, key, location, numel) → a storage object. */
static gboolean
op_persid (vm *m)
{
  obj *pid = NULL;
  if (!pop (m, &pid))
    return FALSE;
  if (pid->kind != OBJ_TUPLE || pid->items->len != 5)
    return vm_fail (m, "persistent id is not a 5-tuple ('storage', type, key, location, numel)");
  obj **a = (obj **) pid->items->pdata;
  if (a[0]->kind != OBJ_STR || strcmp (a[0]->s, "storage") != 0)
    return vm_fail (m, "persistent id kind is not 'storage'");
  if (a[1]->kind != OBJ_GLOBAL || a[1]->fn != FN_STORAGE_TYPE)
    return vm_fail (m, "persistent id storage type is not a torch.*Storage global");
  if (a[2]->kind != OBJ_STR || a[2]->s_len == 0)
    return vm_fail (m, "persistent id key is not a string");
  if (a[3]->kind != OBJ_STR)
    return vm_fail (m, "persistent id location is not a string");
  if (!is_int (a[4]) || a[4]->i < 0)
    return vm_fail (m, "persistent id numel is not a non-negative integer");

  obj *s = obj_new (m, OBJ_STORAGE);
  s->dtype = a[1]->dtype;
  s->s = g_strdup (a[2]->s);
  s->location = g_strdup (a[3]->s);
  s->i = a[4]->i;
  return push (m, s);
}

/* --- containers ------------------------------------------------------------------------------- */

static gboolean
op_tuple_n (vm *m, guint n)
{
  obj *t = obj_new (m, OBJ_TUPLE);
  g_ptr_array_set_size (t->items, n);
  for (guint i = n; i-- > 0;)
    if (!pop (m, (obj **) &t->items->pdata[i]))
      return FALSE;
  return push (m, t);
}

static gboolean
op_from_mark (vm *m, obj_kind kind)
{
  obj *o = obj_new (m, kind);
  if (!pop_mark (m, o->items))
    return FALSE;
  if (kind == OBJ_DICT && o->items->len % 2)
    return vm_fail (m, "odd number of items for a dict");
  return push (m, o);
}

/* SETITEMS/APPENDS add the items above the mark to the container just below it. */
static gboolean
op_extend (vm *m, obj_kind want)
{
  GPtrArray *items = g_ptr_array_new ();
  gboolean ok = pop_mark (m, items);
  obj *c = NULL;
  if (ok)
    ok = top (m, &c);
  if (ok && c->kind != want)
    ok = vm_fail (m, "target is not a %s", want == OBJ_DICT ? "dict" : "list");
  if (ok && want == OBJ_DICT && items->len % 2)
    ok = vm_fail (m, "odd number of items for a dict");
  if (ok)
    for (guint i = 0; i < items->len; i++)
      g_ptr_array_add (c->items, g_ptr_array_index (items, i));
  g_ptr_array_unref (items);
  return ok;
}

static gboolean
op_setitem (vm *m)
{
  obj *k = NULL, *v = NULL, *d = NULL;
  if (!pop (m, &v) || !pop (m, &k) || !top (m, &d))
    return FALSE;
  if (d->kind != OBJ_DICT)
    return vm_fail (m, "target is not a dict");
  g_ptr_array_add (d->items, k);
  g_ptr_array_add (d->items, v);
  return TRUE;
}

static gboolean
op_append (vm *m)
{
  obj *v = NULL, *l = NULL;
  if (!pop (m, &v) || !top (m, &l))
    return FALSE;
  if (l->kind != OBJ_LIST)
    return vm_fail (m, "target is not a list");
  g_ptr_array_add (l->items, v);
  return TRUE;
}

/* --- scalars ---------------------------------------------------------------------------------- */

static gboolean
push_int (vm *m, gint64 v)
{
  obj *o = obj_new (m, OBJ_INT);
  o->i = v;
  return push (m, o);
}

/* LONG1/LONG4: little-endian two's complement of n bytes; we keep what fits in 64 bits. */
static gboolean
op_long (vm *m, gsize len_bytes)
{
  guint64 n = 0;
  const guint8 *p = NULL;
  if (!take_uint (m, len_bytes, &n))
    return FALSE;
  if (n > 8)
    return vm_fail (m, "integer of %" G_GUINT64_FORMAT " bytes does not fit in 64 bits", n);
  if (!take (m, (gsize) n, &p))
    return FALSE;
  guint64 v = 0;
  for (gsize i = n; i-- > 0;)
    v = v << 8 | p[i];
  if (n > 0 && n < 8 && (p[n - 1] & 0x80))
    v |= ~(guint64) 0 << (8 * n);  /* sign-extend */
  return push_int (m, (gint64) v);
}

/* String operands: `len_bytes` of length, then the bytes. Text must be UTF-8 without NULs (we
 * hand out C strings). */
static gboolean
op_string (vm *m, gsize len_bytes, obj_kind kind)
{
  guint64 n = 0;
  const guint8 *p = NULL;
  if (!take_uint (m, len_bytes, &n))
    return FALSE;
  if (len_bytes == 4 && m->op == 'T' && n > G_MAXINT32)
    return vm_fail (m, "negative string length");
  if (n > m->len - m->pos)
    return vm_fail (m, "string of %" G_GUINT64_FORMAT " bytes runs past the end of the pickle", n);
  if (!take (m, (gsize) n, &p))
    return FALSE;
  if (kind == OBJ_STR && (memchr (p, 0, n) || !g_utf8_validate ((const char *) p, n, NULL)))
    return vm_fail (m, "string is not valid UTF-8 text");
  obj *o = obj_new (m, kind);
  o->s = g_strndup ((const char *) p, n);
  o->s_len = n;
  return push (m, o);
}

static gboolean
op_binfloat (vm *m)
{
  const guint8 *p = NULL;
  if (!take (m, 8, &p))
    return FALSE;
  guint64 bits = 0;
  for (int i = 0; i < 8; i++)
    bits = bits << 8 | p[i];  /* big-endian */
  obj *o = obj_new (m, OBJ_FLOAT);
  memcpy (&o->f, &bits, 8);
  return push (m, o);
}

static gboolean
op_global (vm *m, gboolean from_stack)
{
  char *module = NULL, *name = NULL;
  gboolean ok;
  if (from_stack) {
    obj *on = NULL, *om = NULL;
    ok = pop (m, &on) && pop (m, &om);
    if (ok && (on->kind != OBJ_STR || om->kind != OBJ_STR))
      ok = vm_fail (m, "module and name are not strings");
    if (ok) {
      module = g_strdup (om->s);
      name = g_strdup (on->s);
    }
  } else {
    ok = take_line (m, &module) && take_line (m, &name);
  }
  if (ok)
    ok = make_global (m, module, name);
  g_free (module);
  g_free (name);
  return ok;
}

/* --- the loop --------------------------------------------------------------------------------- */

static gboolean
step (vm *m, gboolean *stop)
{
  guint64 u = 0;
  obj *o = NULL;

  m->op_pos = m->pos;
  m->op = m->d[m->pos++];
  switch (m->op) {
    case 0x80: /* PROTO */
      if (!take_uint (m, 1, &u))
        return FALSE;
      if (u > 5)
        return vm_fail (m, "unsupported protocol %" G_GUINT64_FORMAT, u);
      return TRUE;
    case 0x95: /* FRAME: framing only matters for streaming readers */
      return take_uint (m, 8, &u);
    case 'c': return op_global (m, FALSE);
    case 0x93: return op_global (m, TRUE);
    case 'q': return take_uint (m, 1, &u) && memo_put (m, u);
    case 'r': return take_uint (m, 4, &u) && memo_put (m, u);
    case 0x94: return memo_put (m, m->memo_keys);
    case 'h': return take_uint (m, 1, &u) && memo_get (m, u);
    case 'j': return take_uint (m, 4, &u) && memo_get (m, u);
    case '(':
      if (m->marks->len >= MAX_MARKS)
        return vm_fail (m, "more than %u nested MARKs", MAX_MARKS);
      g_array_append_val (m->marks, m->stack->len);
      return TRUE;
    case ')': return push (m, obj_new (m, OBJ_TUPLE));
    case 't': return op_from_mark (m, OBJ_TUPLE);
    case 0x85: return op_tuple_n (m, 1);
    case 0x86: return op_tuple_n (m, 2);
    case 0x87: return op_tuple_n (m, 3);
    case '}': return push (m, obj_new (m, OBJ_DICT));
    case 'd': return op_from_mark (m, OBJ_DICT);
    case ']': return push (m, obj_new (m, OBJ_LIST));
    case 'l': return op_from_mark (m, OBJ_LIST);
    case 's': return op_setitem (m);
    case 'u': return op_extend (m, OBJ_DICT);
    case 'a': return op_append (m);
    case 'e': return op_extend (m, OBJ_LIST);
    case 'X': return op_string (m, 4, OBJ_STR);
    case 0x8c: return op_string (m, 1, OBJ_STR);
    case 0x8d: return op_string (m, 8, OBJ_STR);
    case 'T': return op_string (m, 4, OBJ_STR);
    case 'U': return op_string (m, 1, OBJ_STR);
    case 'B': return op_string (m, 4, OBJ_BYTES);
    case 'C': return op_string (m, 1, OBJ_BYTES);
    case 0x8e: return op_string (m, 8, OBJ_BYTES);
    case 'J': return take_uint (m, 4, &u) && push_int (m, (gint32) (guint32) u);
    case 'K': return take_uint (m, 1, &u) && push_int (m, (gint64) u);
    case 'M': return take_uint (m, 2, &u) && push_int (m, (gint64) u);
    case 0x8a: return op_long (m, 1);
    case 0x8b: return op_long (m, 4);
    case 'G': return op_binfloat (m);
    case 0x88:
    case 0x89:
      o = obj_new (m, OBJ_BOOL);
      o->i = m->op == 0x88;
      return push (m, o);
    case 'N': return push (m, obj_new (m, OBJ_NONE));
    case 'R':
    case 0x81: /* NEWOBJ (cls, args): same meaning for the callables we accept */
      return op_reduce (m);
    case 'b': /* BUILD: the state (OrderedDict _metadata, tensor hooks) is not needed */
      return pop (m, &o) && top (m, &o);
    case 'Q': return op_persid (m);
    case '0': return pop (m, &o);
    case '1': return pop_mark (m, NULL);
    case '2': return top (m, &o) && push (m, o);
    case '.':
      *stop = TRUE;
      return TRUE;
    default:
      return vm_fail (m, "unsupported opcode");
  }
}

static canary_pickle_tensor *
export_tensor (const char *name, const obj *t)
{
  canary_pickle_tensor *pt = g_new0 (canary_pickle_tensor, 1);
  pt->name = g_strdup (name);
  pt->storage_key = g_strdup (t->storage->s);
  pt->location = g_strdup (t->storage->location);
  pt->dtype = t->storage->dtype;
  pt->storage_numel = t->storage->i;
  pt->offset = t->offset;
  pt->ndim = t->ndim;
  memcpy (pt->shape, t->shape, sizeof pt->shape);
  memcpy (pt->stride, t->stride, sizeof pt->stride);
  return pt;
}

void
canary_pickle_tensor_free (canary_pickle_tensor *t)
{
  if (!t)
    return;
  g_free (t->name);
  g_free (t->storage_key);
  g_free (t->location);
  g_free (t);
}

/* Turns the final dict into the tensor list. A key set twice keeps its first position and its
 * last value, like a Python dict. */
static GPtrArray *
export_state_dict (vm *m, const obj *dict)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) canary_pickle_tensor_free);
  /* owns its keys: a replaced entry's name is freed with it */
  GHashTable *seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i + 1 < dict->items->len; i += 2) {
    const obj *k = g_ptr_array_index (dict->items, i);
    const obj *v = g_ptr_array_index (dict->items, i + 1);
    if (k->kind != OBJ_STR) {
      vm_fail (m, "state-dict key %u is not a string", i / 2);
      g_ptr_array_unref (out);
      out = NULL;
      break;
    }
    if (v->kind != OBJ_TENSOR) {
      CANARY_WARN ("pickle: state-dict entry '%s' is not a tensor; ignored", k->s);
      continue;
    }
    canary_pickle_tensor *pt = export_tensor (k->s, v);
    gpointer prev;
    if (g_hash_table_lookup_extended (seen, k->s, NULL, &prev)) {
      guint at = GPOINTER_TO_UINT (prev);
      canary_pickle_tensor_free (g_ptr_array_index (out, at));
      g_ptr_array_index (out, at) = pt;
    } else {
      g_hash_table_insert (seen, g_strdup (pt->name), GUINT_TO_POINTER (out->len));
      g_ptr_array_add (out, pt);
    }
  }
  g_hash_table_unref (seen);
  return out;
}

GPtrArray *
canary_pickle_load_state_dict (const guint8 *data, gsize len, GError **error)
{
  vm m = {
    .d = data,
    .len = len,
    .stack = g_ptr_array_new (),
    .marks = g_array_new (FALSE, FALSE, sizeof (guint)),
    .memo = g_ptr_array_new (),
    .memo_limit = MIN (MAX_MEMO, len + 1),
    .all = g_ptr_array_new_with_free_func (obj_free),
    .error = error,
  };
  GPtrArray *result = NULL;
  gboolean stop = FALSE, ok = TRUE;

  while (ok && !stop) {
    if (m.pos >= m.len) {
      m.op_pos = m.pos;
      m.op = 0;
      g_set_error (error, CANARY_ERROR, CANARY_ERROR_FORMAT,
          "pickle: truncated: no STOP opcode before the end (%" G_GSIZE_FORMAT " bytes)", len);
      ok = FALSE;
      break;
    }
    ok = step (&m, &stop);
  }
  if (ok) {
    obj *res = NULL;
    if (m.stack->len != 1 || m.marks->len != 0) {
      vm_fail (&m, "STOP with %u objects and %u marks on the stack (expected exactly one object)",
          m.stack->len, m.marks->len);
    } else if (pop (&m, &res)) {
      if (res->kind != OBJ_DICT)
        vm_fail (&m, "the pickled object is not a dict (not a state dict)");
      else
        result = export_state_dict (&m, res);
    }
  }

  g_ptr_array_unref (m.stack);
  g_array_unref (m.marks);
  g_ptr_array_unref (m.memo);
  g_ptr_array_unref (m.all);
  return result;
}
