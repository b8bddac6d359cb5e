/* Native hot paths of the batched form (docs/wire.md, section 13): optional.
 *
 * bus/batched.py and bus/envelope.py hold the reference code in Python and
 * use these functions when the extension was built (setup.py builds it when
 * a C compiler is there and goes on without it when not). Every function here
 * is a drop-in for a piece of that Python code: same bytes out, same objects
 * out. Whatever it does not handle exactly as the Python code would (a value
 * msgpack's own packer would need its ``default`` for, a subclass of a
 * builtin, a malformed record) it leaves to the Python code by returning
 * None, so errors and their messages come from one place.
 *
 * record(ts, body)   the bytes of one record [ts, body], ts as a msgpack
 *                    uint64, body packed as msgpack.Packer(use_bin_type=True)
 *                    packs it; None when the body holds anything but exact
 *                    dict, list, tuple, str, bytes, int, float, bool, None.
 * batch_head(batch)  the head of a batch, how many records follow it and
 *                    where they start.
 * batch_messages(batch, offset, n, topic, src, seq0, iid, host, latched,
 *                size, version)
 *                    the Messages of the records, as bus.batched's Python
 *                    record loop builds them from msgpack.unpackb's output;
 *                    None when a record is not [ts, body] / [ts, body, corr]
 *                    with the types that loop requires, or holds anything
 *                    msgpack would refuse or an extension type.
 * setup(Message, Header)  the classes batch_messages builds (bus.envelope).
 *
 * The decoder builds no list per record, and the Headers it builds are not
 * tracked by the cycle collector (they hold atoms only): a Python reader of
 * a batch makes two such containers per message, which survive into the
 * older generations while the batch is read and set off full collections
 * that cost more than the decoding itself (bench/README.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <structmember.h>
#include <limits.h>
#include <time.h>

/* ------------------------------------------------------------------ packer */

#define MAX_DEPTH 64 /* deeper bodies go to msgpack itself (its limit is 511) */

typedef struct {
    char *buf;
    Py_ssize_t len;
    Py_ssize_t cap;
    char small[512];
} Out;

static int out_reserve(Out *o, Py_ssize_t n) {
    if (o->len + n <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap * 2;
    while (cap < o->len + n)
        cap *= 2;
    char *nb;
    if (o->buf == o->small) {
        nb = PyMem_Malloc(cap);
        if (nb != NULL)
            memcpy(nb, o->small, o->len);
    } else {
        nb = PyMem_Realloc(o->buf, cap);
    }
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = nb;
    o->cap = cap;
    return 0;
}

static inline void put_be(char *p, unsigned long long v, int nbytes) {
    for (int i = nbytes - 1; i >= 0; i--) {
        p[i] = (char)(v & 0xff);
        v >>= 8;
    }
}

static int put_head(Out *o, unsigned char code, unsigned long long v, int nbytes) {
    if (out_reserve(o, 1 + nbytes) < 0)
        return -1;
    o->buf[o->len] = (char)code;
    put_be(o->buf + o->len + 1, v, nbytes);
    o->len += 1 + nbytes;
    return 0;
}

static int put_raw(Out *o, const char *p, Py_ssize_t n) {
    if (out_reserve(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

/* A container head: fix form below fix_max, else 16- or 32-bit length. */
static int put_len(Out *o, Py_ssize_t n, unsigned char fix, Py_ssize_t fix_max, unsigned char c8,
                   unsigned char c16, unsigned char c32) {
    if (n < fix_max)
        return put_head(o, (unsigned char)(fix | n), 0, 0);
    if (c8 && n < 256)
        return put_head(o, c8, (unsigned long long)n, 1);
    if (n < 65536)
        return put_head(o, c16, (unsigned long long)n, 2);
    if (n <= 0xffffffffLL)
        return put_head(o, c32, (unsigned long long)n, 4);
    return 1;
}

static int put_int(Out *o, PyObject *v) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 1; /* over uint64: msgpack's error, from msgpack */
        }
        return put_head(o, 0xcf, u, 8);
    }
    if (overflow < 0)
        return 1;
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x >= 0) {
        if (x < 128)
            return put_head(o, (unsigned char)x, 0, 0);
        if (x < 256)
            return put_head(o, 0xcc, (unsigned long long)x, 1);
        if (x < 65536)
            return put_head(o, 0xcd, (unsigned long long)x, 2);
        if (x < 4294967296LL)
            return put_head(o, 0xce, (unsigned long long)x, 4);
        return put_head(o, 0xcf, (unsigned long long)x, 8);
    }
    if (x >= -32)
        return put_head(o, (unsigned char)(x & 0xff), 0, 0);
    if (x >= -128)
        return put_head(o, 0xd0, (unsigned long long)x & 0xff, 1);
    if (x >= -32768)
        return put_head(o, 0xd1, (unsigned long long)x & 0xffff, 2);
    if (x >= -2147483648LL)
        return put_head(o, 0xd2, (unsigned long long)x & 0xffffffffULL, 4);
    return put_head(o, 0xd3, (unsigned long long)x, 8);
}

/* 0: packed; 1: not ours to pack (the caller falls back to msgpack); -1: a Python error is set. */
static int pack(Out *o, PyObject *v, int depth) {
    if (depth > MAX_DEPTH)
        return 1;
    if (v == Py_None)
        return put_head(o, 0xc0, 0, 0);
    if (v == Py_True)
        return put_head(o, 0xc3, 0, 0);
    if (v == Py_False)
        return put_head(o, 0xc2, 0, 0);
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyLong_Type)
        return put_int(o, v);
    if (t == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(v);
        unsigned long long bits;
        memcpy(&bits, &d, 8);
        return put_head(o, 0xcb, bits, 8);
    }
    if (t == &PyUnicode_Type) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL) {
            PyErr_Clear(); /* e.g. a lone surrogate: msgpack raises its own error */
            return 1;
        }
        int r = put_len(o, n, 0xa0, 32, 0xd9, 0xda, 0xdb);
        return r ? r : put_raw(o, s, n);
    }
    if (t == &PyBytes_Type) {
        Py_ssize_t n = PyBytes_GET_SIZE(v);
        int r = put_len(o, n, 0, 0, 0xc4, 0xc5, 0xc6);
        return r ? r : put_raw(o, PyBytes_AS_STRING(v), n);
    }
    if (t == &PyDict_Type) {
        Py_ssize_t n = PyDict_GET_SIZE(v), pos = 0;
        PyObject *key, *value;
        int r = put_len(o, n, 0x80, 16, 0, 0xde, 0xdf);
        if (r)
            return r;
        while (PyDict_Next(v, &pos, &key, &value)) {
            if ((r = pack(o, key, depth + 1)) != 0 || (r = pack(o, value, depth + 1)) != 0)
                return r;
        }
        return 0;
    }
    if (t == &PyList_Type || t == &PyTuple_Type) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        int r = put_len(o, n, 0x90, 16, 0, 0xdc, 0xdd);
        if (r)
            return r;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(v); i++) {
            if ((r = pack(o, PySequence_Fast_GET_ITEM(v, i), depth + 1)) != 0)
                return r;
        }
        return 0;
    }
    return 1;
}

static PyObject *packed(Out *o, int r) {
    PyObject *res = NULL;
    if (r == 0)
        res = PyBytes_FromStringAndSize(o->buf, o->len);
    else if (r == 1)
        res = Py_NewRef(Py_None);
    if (o->buf != o->small)
        PyMem_Free(o->buf);
    return res;
}

static PyObject *sp_pack(PyObject *self, PyObject *v) {
    Out o = {.len = 0, .cap = sizeof(o.small)};
    o.buf = o.small;
    return packed(&o, pack(&o, v, 0));
}

/* The bytes of record [ts, body]; None when the Python code must pack it. */
static PyObject *pack_record(PyObject *ts_obj, PyObject *body) {
    Out o = {.len = 0, .cap = sizeof(o.small)};
    o.buf = o.small;
    unsigned long long ts = PyLong_AsUnsignedLongLong(ts_obj);
    if (ts == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear(); /* not a uint64: the Python code raises its own error */
        Py_RETURN_NONE;
    }
    if (!PyDict_CheckExact(body))
        Py_RETURN_NONE;
    o.buf[0] = (char)0x92;
    o.buf[1] = (char)0xcf;
    put_be(o.buf + 2, ts, 8);
    o.len = 10;
    return packed(&o, pack(&o, body, 0));
}

static PyObject *sp_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "record(ts, body)");
        return NULL;
    }
    return pack_record(args[0], args[1]);
}

/* ---------------------------------------------------------------- gatherer */

/* bus.batched.Gatherer, the same policy (its docstring, and the Python class is the reference). */
typedef struct {
    PyObject_HEAD
    long long gather_ns;
    Py_ssize_t max_records;
    Py_ssize_t max_bytes;
    PyObject *pending; /* dict: topic frame -> [first seq, records, bytes of records] */
    long long deadline_ns; /* NO_DEADLINE when nothing is gathered */
    long long last_send_ns;
    long long last_add_ns;
} Gatherer;

/* deadline_ns and last_add_ns are read by wait_due without the GIL, in the flusher's thread, while the
 * publisher's thread writes them (with the GIL): every access to them is atomic. */
#define NO_DEADLINE LLONG_MAX
#define LOAD(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define STORE(field, value) __atomic_store_n(&(field), (value), __ATOMIC_RELAXED)

static int gatherer_init(Gatherer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"gather_ns", "max_records", "max_bytes", NULL};
    long long gather_ns = 200000;
    Py_ssize_t max_records = 1024, max_bytes = 256 * 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Lnn", kwlist, &gather_ns, &max_records, &max_bytes))
        return -1;
    self->gather_ns = gather_ns;
    self->max_records = max_records;
    self->max_bytes = max_bytes;
    Py_XSETREF(self->pending, PyDict_New());
    if (self->pending == NULL)
        return -1;
    STORE(self->deadline_ns, NO_DEADLINE);
    self->last_send_ns = -(1LL << 62);
    STORE(self->last_add_ns, -(1LL << 62));
    return 0;
}

static void gatherer_dealloc(Gatherer *self) {
    Py_XDECREF(self->pending);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *take_all(Gatherer *self, long long now_ns) {
    if (PyDict_GET_SIZE(self->pending) == 0)
        Py_RETURN_NONE;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *topic, *p;
    while (PyDict_Next(self->pending, &pos, &topic, &p)) {
        PyObject *batch = PyTuple_Pack(3, topic, PyList_GET_ITEM(p, 0), PyList_GET_ITEM(p, 1));
        if (batch == NULL || PyList_Append(out, batch) < 0) {
            Py_XDECREF(batch);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(batch);
    }
    PyObject *fresh = PyDict_New();
    if (fresh == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    Py_SETREF(self->pending, fresh);
    STORE(self->deadline_ns, NO_DEADLINE);
    self->last_send_ns = now_ns;
    return out;
}

/* A list [batch] or, with gathered ones first, take_all's list and batch after them. */
static PyObject *alone_after(Gatherer *self, PyObject *topic, PyObject *seq, PyObject *record, long long now_ns) {
    PyObject *out = take_all(self, now_ns);
    if (out == NULL)
        return NULL;
    if (out == Py_None) {
        Py_DECREF(out);
        out = PyList_New(0);
        if (out == NULL)
            return NULL;
    }
    PyObject *batch = Py_BuildValue("(O O [O])", topic, seq, record);
    if (batch == NULL || PyList_Append(out, batch) < 0) {
        Py_XDECREF(batch);
        Py_DECREF(out);
        return NULL;
    }
    Py_DECREF(batch);
    return out;
}

/* Whether first + count == seq (ints of any size: the common ones in C). */
static int seq_follows(PyObject *first, Py_ssize_t count, PyObject *seq) {
    unsigned long long f = PyLong_AsUnsignedLongLong(first), q = PyLong_AsUnsignedLongLong(seq);
    if (!PyErr_Occurred())
        return f + (unsigned long long)count >= f && f + (unsigned long long)count == q;
    PyErr_Clear();
    PyObject *n = PyLong_FromSsize_t(count);
    PyObject *next = n != NULL ? PyNumber_Add(first, n) : NULL;
    Py_XDECREF(n);
    if (next == NULL)
        return -1;
    int r = PyObject_RichCompareBool(next, seq, Py_EQ);
    Py_DECREF(next);
    return r;
}

/* add, with max_bytes the byte limit of this topic's batch (the gatherer's own, or a smaller one). */
static PyObject *gather_add(Gatherer *self, PyObject *topic, PyObject *seq_obj, PyObject *record, long long now_ns,
                            Py_ssize_t max_bytes) {
    if (!PyBytes_Check(record)) {
        PyErr_SetString(PyExc_TypeError, "a record must be bytes");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(record);
    STORE(self->last_add_ns, now_ns);
    PyObject *p = PyDict_GetItemWithError(self->pending, topic); /* borrowed */
    if (p == NULL && PyErr_Occurred())
        return NULL;
    if (p != NULL) {
        PyObject *records = PyList_GET_ITEM(p, 1);
        Py_ssize_t have = PyLong_AsSsize_t(PyList_GET_ITEM(p, 2));
        if (have == -1 && PyErr_Occurred())
            return NULL;
        int follows = seq_follows(PyList_GET_ITEM(p, 0), PyList_GET_SIZE(records), seq_obj);
        if (follows < 0)
            return NULL;
        if (have + n <= max_bytes && follows) { /* the common case: one more for the batch */
            if (PyList_Append(records, record) < 0)
                return NULL;
            have += n;
            PyObject *total = PyLong_FromSsize_t(have);
            if (total == NULL || PyList_SetItem(p, 2, total) < 0)
                return NULL;
            if (now_ns < self->deadline_ns && PyList_GET_SIZE(records) < self->max_records && have < max_bytes)
                Py_RETURN_NONE;
            return take_all(self, now_ns);
        }
        if (follows && n < max_bytes) { /* too big for this batch: it goes, this one starts the next */
            PyObject *out = take_all(self, now_ns);
            PyObject *entry = out != NULL ? Py_BuildValue("[O [O] n]", seq_obj, record, n) : NULL;
            if (entry == NULL || PyDict_SetItem(self->pending, topic, entry) < 0) {
                Py_XDECREF(entry);
                Py_XDECREF(out);
                return NULL;
            }
            Py_DECREF(entry);
            STORE(self->deadline_ns, now_ns + self->gather_ns);
            return out;
        }
        return alone_after(self, topic, seq_obj, record, now_ns);
    }
    if (n >= max_bytes) {
        PyObject *out = alone_after(self, topic, seq_obj, record, now_ns);
        if (out != NULL)
            self->last_send_ns = now_ns;
        return out;
    }
    int empty = PyDict_GET_SIZE(self->pending) == 0;
    if (empty && now_ns - self->last_send_ns >= self->gather_ns) {
        self->last_send_ns = now_ns;
        return Py_BuildValue("[(O O [O])]", topic, seq_obj, record);
    }
    PyObject *entry = Py_BuildValue("[O [O] n]", seq_obj, record, n);
    if (entry == NULL)
        return NULL;
    int r = PyDict_SetItem(self->pending, topic, entry);
    Py_DECREF(entry);
    if (r < 0)
        return NULL;
    if (empty) {
        STORE(self->deadline_ns, self->last_send_ns + self->gather_ns);
        Py_RETURN_NONE;
    }
    if (now_ns >= self->deadline_ns)
        return take_all(self, now_ns);
    Py_RETURN_NONE;
}

static PyObject *gatherer_add(Gatherer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "add(topic_raw, seq, record, now_ns)");
        return NULL;
    }
    long long now_ns = PyLong_AsLongLong(args[3]);
    if (now_ns == -1 && PyErr_Occurred())
        return NULL;
    return gather_add(self, args[0], args[1], args[2], now_ns, self->max_bytes);
}

static long long monotonic_ns(void);

static PyObject *gatherer_add_body(Gatherer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "add_body(topic_raw, seq, ts, body, max_bytes=None)");
        return NULL;
    }
    Py_ssize_t max_bytes = self->max_bytes;
    if (nargs == 5 && args[4] != Py_None) {
        max_bytes = PyLong_AsSsize_t(args[4]);
        if (max_bytes == -1 && PyErr_Occurred())
            return NULL;
        if (max_bytes > self->max_bytes)
            max_bytes = self->max_bytes;
    }
    PyObject *record = pack_record(args[2], args[3]);
    if (record == NULL)
        return NULL;
    if (record == Py_None) {
        Py_DECREF(record);
        Py_RETURN_FALSE;
    }
    PyObject *out = gather_add(self, args[0], args[1], record, monotonic_ns(), max_bytes);
    Py_DECREF(record);
    return out;
}

static PyObject *gatherer_due(Gatherer *self, PyObject *arg) {
    long long now_ns = PyLong_AsLongLong(arg);
    if (now_ns == -1 && PyErr_Occurred())
        return NULL;
    if (now_ns >= self->deadline_ns)
        return take_all(self, now_ns);
    Py_RETURN_NONE;
}

static PyObject *gatherer_take_all(Gatherer *self, PyObject *arg) {
    long long now_ns = PyLong_AsLongLong(arg);
    if (now_ns == -1 && PyErr_Occurred())
        return NULL;
    return take_all(self, now_ns);
}

static long long monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* time.monotonic_ns's clock */
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void sleep_ns(long long ns) {
    struct timespec t = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    nanosleep(&t, NULL); /* a signal cuts it short: the caller looks again */
}

/* The Python class's wait_due, without the GIL: a publisher that keeps publishing is not interrupted. */
static PyObject *gatherer_wait_due(Gatherer *self, PyObject *unused) {
    long long period = self->gather_ns, grace = self->gather_ns / 4;
    int due;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        long long now = monotonic_ns(), deadline = LOAD(self->deadline_ns), since_add = now - LOAD(self->last_add_ns);
        if (deadline == NO_DEADLINE) {
            if (since_add >= period) {
                due = 0;
                break;
            }
            sleep_ns(period - since_add);
        } else if (now < deadline) {
            sleep_ns(deadline - now);
        } else if (since_add < grace) {
            sleep_ns(grace - since_add);
        } else {
            due = 1;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(due);
}

static PyObject *gatherer_get_deadline(Gatherer *self, void *closure) {
    if (self->deadline_ns == NO_DEADLINE)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(self->deadline_ns);
}

/* A copy: the entries are this object's to change (its code takes their shape for granted). */
static PyObject *gatherer_get_pending(Gatherer *self, void *closure) {
    PyObject *copy = PyDict_New();
    Py_ssize_t pos = 0;
    PyObject *topic, *p;
    while (copy != NULL && PyDict_Next(self->pending, &pos, &topic, &p)) {
        PyObject *records = PyList_GetSlice(PyList_GET_ITEM(p, 1), 0, PY_SSIZE_T_MAX);
        PyObject *entry = records != NULL ? PyList_New(3) : NULL;
        if (entry == NULL || PyDict_SetItem(copy, topic, entry) < 0) {
            Py_XDECREF(records);
            Py_XDECREF(entry);
            Py_CLEAR(copy);
            break;
        }
        PyList_SET_ITEM(entry, 0, Py_NewRef(PyList_GET_ITEM(p, 0)));
        PyList_SET_ITEM(entry, 1, records);
        PyList_SET_ITEM(entry, 2, Py_NewRef(PyList_GET_ITEM(p, 2)));
        Py_DECREF(entry);
    }
    return copy;
}

static PyMethodDef gatherer_methods[] = {
    {"add", (PyCFunction)(void (*)(void))gatherer_add, METH_FASTCALL,
     "add(topic_raw, seq, record, now_ns) -> batches to send now, oldest first, or None"},
    {"add_body", (PyCFunction)(void (*)(void))gatherer_add_body, METH_FASTCALL,
     "add_body(topic_raw, seq, ts, body, max_bytes=None) -> as add at time.monotonic_ns(), the record packed "
     "here, this topic's batch held to max_bytes (at most the gatherer's); False when the body needs the Python "
     "packer"},
    {"due", (PyCFunction)gatherer_due, METH_O, "due(now_ns) -> the batches whose time has come, or None"},
    {"take_all", (PyCFunction)gatherer_take_all, METH_O, "take_all(now_ns) -> every gathered batch, or None"},
    {"wait_due", (PyCFunction)gatherer_wait_due, METH_NOARGS,
     "wait_due() -> True when what is gathered is due and the publisher will not send it, False when idle "
     "(the Python class's docstring); waits without the GIL"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef gatherer_members[] = {
    {"gather_ns", T_LONGLONG, offsetof(Gatherer, gather_ns), READONLY, NULL},
    {"max_records", T_PYSSIZET, offsetof(Gatherer, max_records), READONLY, NULL},
    {"max_bytes", T_PYSSIZET, offsetof(Gatherer, max_bytes), READONLY, NULL},
    {"last_send_ns", T_LONGLONG, offsetof(Gatherer, last_send_ns), READONLY, NULL},
    {"last_add_ns", T_LONGLONG, offsetof(Gatherer, last_add_ns), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef gatherer_getset[] = {
    {"deadline_ns", (getter)gatherer_get_deadline, NULL, "when the gathered batches must leave (monotonic ns)",
     NULL},
    {"pending", (getter)gatherer_get_pending, NULL,
     "a copy of what is gathered, per topic frame: [first seq, records, bytes of records]",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject GathererType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bus._speedups.Gatherer",
    .tp_basicsize = sizeof(Gatherer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "bus.batched.Gatherer in C: the same policy, and add_body packing the record itself",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)gatherer_init,
    .tp_dealloc = (destructor)gatherer_dealloc,
    .tp_methods = gatherer_methods,
    .tp_members = gatherer_members,
    .tp_getset = gatherer_getset,
};

/* ---------------------------------------------------------------- messages */

static PyTypeObject *message_type = NULL;
static PyTypeObject *header_type = NULL;
#define N_SLOTS 6
static const char *slot_names[N_SLOTS] = {"topic", "header", "body", "nbytes", "frames", "shm_taken"};
static Py_ssize_t slot_offsets[N_SLOTS]; /* where each slot's object pointer lies in a Message */

static PyObject *sp_setup(PyObject *self, PyObject *args) {
    PyObject *msg, *hdr;
    if (!PyArg_ParseTuple(args, "O!O!", &PyType_Type, &msg, &PyType_Type, &hdr))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)hdr, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Header must be a tuple type");
        return NULL;
    }
    /* Message's slots are written where its member descriptors say they lie, as object.__setattr__ would
     * through them: each must be a plain object slot (T_OBJECT_EX) of Message itself. */
    Py_ssize_t offsets[N_SLOTS];
    for (int i = 0; i < N_SLOTS; i++) {
        PyObject *d = PyObject_GetAttrString(msg, slot_names[i]);
        if (d == NULL)
            return NULL;
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX &&
                 !(((PyMemberDescrObject *)d)->d_member->flags & READONLY);
        if (ok)
            offsets[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "Message.%s is not a writable object slot", slot_names[i]);
            return NULL;
        }
    }
    memcpy(slot_offsets, offsets, sizeof(offsets));
    Py_XSETREF(message_type, (PyTypeObject *)Py_NewRef(msg));
    Py_XSETREF(header_type, (PyTypeObject *)Py_NewRef(hdr));
    Py_RETURN_NONE;
}

/* ----------------------------------------------------------------- decoder */

/* A msgpack reader with msgpack.unpackb's defaults (raw=False, strict_map_key=True, use_list=True), for the
 * values a batch holds. NULL without a Python error set: not ours to decode (an extension type, bytes that
 * msgpack would refuse, a nesting deeper than MAX_DEPTH); the caller leaves the batch to msgpack itself. */
typedef struct {
    const unsigned char *p;
    Py_ssize_t len;
    Py_ssize_t pos;
} In;

static inline int in_need(In *in, Py_ssize_t n) { return n >= 0 && in->len - in->pos >= n; }

static unsigned long long in_be(In *in, int nbytes) {
    unsigned long long v = 0;
    for (int i = 0; i < nbytes; i++)
        v = (v << 8) | in->p[in->pos + i];
    in->pos += nbytes;
    return v;
}

/* The length that follows a head byte (nbytes of big-endian), or -1 when the input ends first. */
static Py_ssize_t in_len(In *in, int nbytes) {
    if (!in_need(in, nbytes))
        return -1;
    return (Py_ssize_t)in_be(in, nbytes);
}

static PyObject *unpack(In *in, int depth);

static PyObject *unpack_str(In *in, Py_ssize_t n) {
    if (n < 0 || !in_need(in, n))
        return NULL;
    PyObject *s = PyUnicode_DecodeUTF8((const char *)in->p + in->pos, n, NULL);
    if (s == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            return NULL;
        PyErr_Clear(); /* msgpack raises its own error for it */
        return NULL;
    }
    in->pos += n;
    return s;
}

static PyObject *unpack_array(In *in, Py_ssize_t n, int depth) {
    if (n < 0 || !in_need(in, n)) /* every element takes a byte at least: no list larger than the input */
        return NULL;
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = unpack(in, depth + 1);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

/* Map keys seen before, by their bytes: a body's keys are the same few strs in every message, and looking
 * them up here costs less than decoding and interning each again (which msgpack does). ASCII keys only,
 * whose str holds their UTF-8 bytes itself; a slot is replaced when another key hashes to it. */
#define KEY_CACHE 256
#define KEY_MAX 32
static PyObject *key_cache[KEY_CACHE];

static PyObject *unpack_key(In *in, Py_ssize_t n) {
    if (n < 0 || n > KEY_MAX || !in_need(in, n))
        return unpack_str(in, n);
    const unsigned char *p = in->p + in->pos;
    unsigned h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    PyObject **slot = &key_cache[h % KEY_CACHE];
    PyObject *k = *slot;
    if (k != NULL && PyUnicode_GET_LENGTH(k) == n && memcmp(PyUnicode_DATA(k), p, n) == 0) {
        in->pos += n;
        return Py_NewRef(k);
    }
    k = unpack_str(in, n);
    if (k == NULL)
        return NULL;
    PyUnicode_InternInPlace(&k);
    if (PyUnicode_IS_COMPACT_ASCII(k))
        Py_XSETREF(*slot, Py_NewRef(k));
    return k;
}

static PyObject *unpack_map(In *in, Py_ssize_t n, int depth) {
    if (n < 0 || n > (in->len - in->pos) / 2)
        return NULL;
    PyObject *dict = PyDict_New();
    if (dict == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k;
        if (in_need(in, 1) && in->p[in->pos] >= 0xa0 && in->p[in->pos] <= 0xbf) { /* a fixstr: most keys */
            unsigned char b = in->p[in->pos++];
            k = unpack_key(in, b & 0x1f);
        } else {
            k = unpack(in, depth + 1);
            if (k != NULL && PyUnicode_CheckExact(k))
                PyUnicode_InternInPlace(&k); /* as msgpack does: the same keys in every body share one str */
        }
        if (k == NULL)
            goto fail;
        if (!PyUnicode_CheckExact(k) && !PyBytes_CheckExact(k)) {
            Py_DECREF(k); /* strict_map_key: msgpack raises for it */
            goto fail;
        }
        PyObject *v = unpack(in, depth + 1);
        if (v == NULL) {
            Py_DECREF(k);
            goto fail;
        }
        int r = PyDict_SetItem(dict, k, v);
        Py_DECREF(k);
        Py_DECREF(v);
        if (r < 0)
            goto fail;
    }
    return dict;
fail:
    Py_DECREF(dict);
    return NULL;
}

static PyObject *unpack(In *in, int depth) {
    if (depth > MAX_DEPTH || !in_need(in, 1))
        return NULL;
    unsigned char b = in->p[in->pos++];
    if (b <= 0x7f)
        return PyLong_FromLong(b);
    if (b >= 0xe0)
        return PyLong_FromLong((long)(signed char)b);
    if (b <= 0x8f)
        return unpack_map(in, b & 0x0f, depth);
    if (b <= 0x9f)
        return unpack_array(in, b & 0x0f, depth);
    if (b <= 0xbf)
        return unpack_str(in, b & 0x1f);
    switch (b) {
    case 0xc0:
        return Py_NewRef(Py_None);
    case 0xc2:
        return Py_NewRef(Py_False);
    case 0xc3:
        return Py_NewRef(Py_True);
    case 0xc4:
    case 0xc5:
    case 0xc6: {
        Py_ssize_t n = in_len(in, b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4);
        if (n < 0 || !in_need(in, n))
            return NULL;
        PyObject *v = PyBytes_FromStringAndSize((const char *)in->p + in->pos, n);
        in->pos += n;
        return v;
    }
    case 0xca:
        if (!in_need(in, 4))
            return NULL;
        in->pos += 4;
        return PyFloat_FromDouble(PyFloat_Unpack4((const char *)in->p + in->pos - 4, 0));
    case 0xcb:
        if (!in_need(in, 8))
            return NULL;
        in->pos += 8;
        return PyFloat_FromDouble(PyFloat_Unpack8((const char *)in->p + in->pos - 8, 0));
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: {
        int nb = 1 << (b - 0xcc);
        if (!in_need(in, nb))
            return NULL;
        return PyLong_FromUnsignedLongLong(in_be(in, nb));
    }
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        int nb = 1 << (b - 0xd0);
        if (!in_need(in, nb))
            return NULL;
        unsigned long long u = in_be(in, nb);
        long long x;
        if (nb == 1)
            x = (signed char)u;
        else if (nb == 2)
            x = (short)u;
        else if (nb == 4)
            x = (int)u;
        else
            x = (long long)u;
        return PyLong_FromLongLong(x);
    }
    case 0xd9:
        return unpack_str(in, in_len(in, 1));
    case 0xda:
        return unpack_str(in, in_len(in, 2));
    case 0xdb:
        return unpack_str(in, in_len(in, 4));
    case 0xdc:
        return unpack_array(in, in_len(in, 2), depth);
    case 0xdd:
        return unpack_array(in, in_len(in, 4), depth);
    case 0xde:
        return unpack_map(in, in_len(in, 2), depth);
    case 0xdf:
        return unpack_map(in, in_len(in, 4), depth);
    default: /* 0xc1 (never used), extension types: msgpack and the ext hook decide */
        return NULL;
    }
}

/* The count of an array head at the reader, or -1 when the next value is no array. */
static Py_ssize_t array_head(In *in) {
    if (!in_need(in, 1))
        return -1;
    unsigned char b = in->p[in->pos];
    if (b >= 0x90 && b <= 0x9f) {
        in->pos++;
        return b & 0x0f;
    }
    if (b == 0xdc || b == 0xdd) {
        in->pos++;
        return in_len(in, b == 0xdc ? 2 : 4);
    }
    return -1;
}

static PyObject *not_ours(PyObject *obj) {
    Py_XDECREF(obj);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* batch_head(batch) -> (head, records, offset) or None: the head value of a batch, the number of records
 * that follow it and where the first starts. */
static PyObject *sp_batch_head(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    In in = {view.buf, view.len, 0};
    PyObject *res = NULL;
    Py_ssize_t n = array_head(&in);
    if (n >= 2) {
        PyObject *head = unpack(&in, 1);
        if (head != NULL)
            res = Py_BuildValue("(Nnn)", head, n - 1, in.pos);
    }
    PyBuffer_Release(&view);
    return res != NULL ? res : not_ours(NULL);
}

static PyObject *new_message(PyObject *values[N_SLOTS]) {
    PyObject *m = message_type->tp_alloc(message_type, 0);
    if (m == NULL)
        return NULL;
    for (int i = 0; i < N_SLOTS; i++)
        *(PyObject **)((char *)m + slot_offsets[i]) = Py_NewRef(values[i]); /* a new object's slots are NULL */
    return m;
}

/* One record [ts, body] / [ts, body, corr] at the reader as a Message, or NULL (not ours, or an error). */
static PyObject *record_message(In *in, PyObject *const *args, unsigned long long seq) {
    PyObject *topic = args[3], *src = args[4], *iid = args[6], *host = args[7], *latched = args[8];
    PyObject *size = args[9], *version = args[10];
    Py_ssize_t k = array_head(in);
    if (k != 2 && k != 3)
        return NULL;
    PyObject *ts = unpack(in, 2);
    if (ts == NULL)
        return NULL;
    int overflow = 0;
    long long x = PyLong_CheckExact(ts) ? PyLong_AsLongLongAndOverflow(ts, &overflow) : -1;
    if (overflow < 0 || (overflow == 0 && x < 0)) { /* not an int, or negative */
        Py_DECREF(ts);
        return NULL;
    }
    PyObject *body = unpack(in, 2);
    if (body == NULL || !PyDict_CheckExact(body)) {
        Py_DECREF(ts);
        Py_XDECREF(body);
        return NULL;
    }
    PyObject *corr = Py_NewRef(Py_None);
    if (k == 3) {
        Py_DECREF(corr);
        corr = unpack(in, 2);
        if (corr == NULL || (corr != Py_None && !PyUnicode_CheckExact(corr))) {
            Py_DECREF(ts);
            Py_DECREF(body);
            Py_XDECREF(corr);
            return NULL;
        }
    }
    PyObject *seq_obj = PyLong_FromUnsignedLongLong(seq);
    PyObject *h = seq_obj != NULL ? header_type->tp_alloc(header_type, 8) : NULL;
    if (h == NULL) {
        Py_XDECREF(seq_obj);
        Py_DECREF(ts);
        Py_DECREF(body);
        Py_DECREF(corr);
        return NULL;
    }
    /* Stolen: seq_obj, ts, corr. */
    PyObject *fields[8] = {Py_NewRef(src), seq_obj, ts, corr, Py_NewRef(version), Py_NewRef(iid),
                           Py_NewRef(host), Py_NewRef(latched)};
    for (int f = 0; f < 8; f++)
        PyTuple_SET_ITEM(h, f, fields[f]); /* a tuple subclass: the tuple's own layout */
    /* Every field is an atom (str, int, bool, None): the collector would untrack it at its first pass
     * (CPython's _PyTuple_MaybeUntrack). Untracked now, Headers alive together in a batch are never
     * promoted, so never make the full collections that walk the whole heap. */
    PyObject_GC_UnTrack(h);
    PyObject *values[N_SLOTS] = {topic, h, body, size, Py_None, Py_None};
    PyObject *m = new_message(values);
    if (m != NULL && !PyObject_GC_IsTracked(body))
        PyObject_GC_UnTrack(m); /* no cycle can run through it (the Message class says why) */
    Py_DECREF(h);
    Py_DECREF(body);
    return m;
}

/* batch_messages(batch, offset, n, topic, src, seq0, iid, host, latched, size, version) -> [Message] or
 * None: the n records from offset to the end of the batch, as decode_batch's Python record loop builds
 * them; None when anything is not as that loop requires (it then says what). */
static PyObject *sp_batch_messages(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError,
                        "batch_messages(batch, offset, n, topic, src, seq0, iid, host, latched, size, version)");
        return NULL;
    }
    if (message_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bus._speedups.setup was not called");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]), n = PyLong_AsSsize_t(args[2]);
    unsigned long long seq0 = PyLong_AsUnsignedLongLong(args[5]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = NULL;
    if (offset < 0 || offset > view.len || n < 1 || n > view.len - offset)
        goto done;
    In in = {view.buf, view.len, offset};
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = record_message(&in, args, seq0 + (unsigned long long)i);
        if (m == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, m);
    }
    if (in.pos != in.len) /* bytes after the last record: msgpack's ExtraData */
        Py_CLEAR(out);
done:
    PyBuffer_Release(&view);
    return out != NULL ? out : not_ours(NULL);
}

static PyMethodDef methods[] = {
    {"record", (PyCFunction)(void (*)(void))sp_record, METH_FASTCALL,
     "record(ts, body) -> bytes of [ts, body], or None when msgpack itself must pack the body"},
    {"pack", (PyCFunction)sp_pack, METH_O,
     "pack(obj) -> msgpack bytes as msgpack.packb(obj, use_bin_type=True), or None when not ours to pack"},
    {"batch_head", (PyCFunction)sp_batch_head, METH_O,
     "batch_head(batch) -> (head, records, offset of the first record), or None when not ours to decode"},
    {"batch_messages", (PyCFunction)(void (*)(void))sp_batch_messages, METH_FASTCALL,
     "batch_messages(batch, offset, n, topic, src, seq0, iid, host, latched, size, version) -> [Message] or None"},
    {"setup", sp_setup, METH_VARARGS, "setup(Message, Header): the classes messages() builds"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "bus._speedups", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) {
    if (PyType_Ready(&GathererType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Gatherer", (PyObject *)&GathererType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
