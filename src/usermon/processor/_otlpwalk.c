/* usermon.processor._otlpwalk: the usermon parts of an OTLP export request, read off the wire.
 *
 * This module owns one job: given the bytes of an ExportTraceServiceRequest (or
 * ExportLogsServiceRequest) that upb has *already accepted*, return as plain Python values only
 * what usermon.processor.otlp needs to build its events: per resource the value of its
 * service.name attribute; per span carrying a usermon event its hex trace and span ids and its
 * client-address attributes; per usermon event its kind, time and attributes (log records
 * likewise). It replaces the Python walk over the parsed message, which materializes a Python
 * object for every field it reads, and nothing else: every semantic rule (rejections, reasons,
 * text and flag coercion) stays in otlp.py's _build. Validity stays upb's decision.
 *
 * Agreement with upb is by construction: the walker reads only encodings whose meaning is
 * unambiguous and answers None ("not for me", the caller falls back to the Python walk) for
 * anything where protobuf's rules would need more than that: a singular field that occurs twice
 * (upb keeps the last scalar or merges messages), more than one member of AnyValue's oneof, a
 * field it reads arriving with another wire type (upb keeps those as unknown fields), groups,
 * varints longer than 64 bits, an AnyValue field this walker does not know (a newer schema's
 * oneof member), text that is not UTF-8. Every read is bounds-checked: the bytes are untrusted
 * even though upb parsed them, and the walker must be memory-safe on any input.
 *
 * Python interface (all arguments are otlp.py's constants, passed per call so that no attribute
 * name is spelled here):
 *
 *   walk_traces(body, kinds, service_key, ip_keys)
 *       -> [(service, trace_id, span_id, ip_attrs, first, kind, nanos, attrs), ...]
 *   walk_logs(body, kinds, service_key, event_name_key)
 *       -> [(service, trace_id, span_id, kind, nanos, attrs), ...]
 *
 * One flat tuple per usermon event, in request order (one tuple, not nested lists, because every
 * container the cyclic GC tracks costs again at each collection). kinds maps event names to kinds
 * ({"usermon.login": "login", ...}); service is the value of its resource's first service_key
 * attribute (None without one; one object per resource); ids are lowercase hex, None when absent
 * or all zero; ip_attrs is a dict of the span's attributes named in ip_keys (last one wins), or
 * None when it has none, shared by the span's events; first is True for a span's first usermon
 * event; nanos is the event's time, else the span's start (the record's observed time); attrs
 * maps each attribute key to a str, bool, int or float, or None for arrays, maps, bytes and
 * unset values (later keys replace earlier ones).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Wire types (protobuf encoding). */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Every walker step returns one of these. DECLINE: an encoding this walker leaves to the Python
 * walk; ERR: a Python exception is set (memory). */
#define OK 0
#define DECLINE 1
#define ERR (-1)

#define TRY(expr)                   \
    do {                            \
        int status_ = (expr);       \
        if (status_ != OK)          \
            return status_;         \
    } while (0)

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Cursor;

#define MAX_KINDS 8
#define MAX_IP_KEYS 8

/* One call's constants, taken from its arguments. */
typedef struct {
    int n_kinds;
    const char *names[MAX_KINDS];
    Py_ssize_t name_lens[MAX_KINDS];
    PyObject *kinds[MAX_KINDS]; /* borrowed from the kinds dict */
    const char *service_key;
    Py_ssize_t service_key_len;
    int n_ip_keys;
    const char *ip_keys[MAX_IP_KEYS];
    Py_ssize_t ip_key_lens[MAX_IP_KEYS];
    PyObject *ip_key_objs[MAX_IP_KEYS]; /* borrowed from the ip_keys tuple */
    const char *event_name_key;
    Py_ssize_t event_name_key_len;
} Consts;

/* -- wire primitives ------------------------------------------------------------------------- */

static inline int
read_varint(Cursor *c, uint64_t *out)
{
    if (c->p < c->end && !(*c->p & 0x80)) { /* the usual one-byte tag or length */
        *out = *c->p++;
        return OK;
    }
    uint64_t value = 0;
    for (int i = 0; i < 10; i++) {
        if (c->p >= c->end)
            return DECLINE;
        uint8_t byte = *c->p++;
        if (i == 9 && byte > 1)
            return DECLINE; /* more than 64 bits */
        value |= (uint64_t)(byte & 0x7f) << (7 * i);
        if (!(byte & 0x80)) {
            *out = value;
            return OK;
        }
    }
    return DECLINE;
}

static inline int
read_tag(Cursor *c, uint32_t *field, int *wire_type)
{
    uint64_t tag;
    TRY(read_varint(c, &tag));
    if (tag > UINT32_MAX || (tag >> 3) == 0)
        return DECLINE;
    *field = (uint32_t)(tag >> 3);
    *wire_type = (int)(tag & 7);
    return OK;
}

static inline int
read_len(Cursor *c, Cursor *sub)
{
    uint64_t n;
    TRY(read_varint(c, &n));
    if (n > (uint64_t)(c->end - c->p))
        return DECLINE;
    sub->p = c->p;
    sub->end = c->p + n;
    c->p += n;
    return OK;
}

static inline int
read_fixed64(Cursor *c, uint64_t *out)
{
    if (c->end - c->p < 8)
        return DECLINE;
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--)
        value = (value << 8) | c->p[i];
    c->p += 8;
    *out = value;
    return OK;
}

/* Skip one field of a message this walker does not read. Groups (and the invalid wire types 6
 * and 7) are declined rather than matched. */
static inline int
skip_field(Cursor *c, int wire_type)
{
    uint64_t ignored;
    Cursor sub;
    switch (wire_type) {
    case WT_VARINT:
        return read_varint(c, &ignored);
    case WT_I64:
        if (c->end - c->p < 8)
            return DECLINE;
        c->p += 8;
        return OK;
    case WT_LEN:
        return read_len(c, &sub);
    case WT_I32:
        if (c->end - c->p < 4)
            return DECLINE;
        c->p += 4;
        return OK;
    default:
        return DECLINE;
    }
}

/* A length-delimited field the walker reads: the wire type must be LEN and, for a singular
 * field, this its first occurrence. */
static inline int
read_once(Cursor *c, int wire_type, int *seen, Cursor *sub)
{
    if (wire_type != WT_LEN || *seen)
        return DECLINE;
    *seen = 1;
    return read_len(c, sub);
}

static inline int
read_fixed64_once(Cursor *c, int wire_type, int *seen, uint64_t *out)
{
    if (wire_type != WT_I64 || *seen)
        return DECLINE;
    *seen = 1;
    return read_fixed64(c, out);
}

static inline int
equals(Cursor s, const char *text, Py_ssize_t len)
{
    return (s.end - s.p) == len && memcmp(s.p, text, (size_t)len) == 0;
}

/* -- Python values --------------------------------------------------------------------------- */

static int
decode_text(Cursor s, PyObject **out)
{
    *out = PyUnicode_DecodeUTF8((const char *)s.p, s.end - s.p, NULL);
    if (*out != NULL)
        return OK;
    if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) { /* upb would not have accepted it */
        PyErr_Clear();
        return DECLINE;
    }
    return ERR;
}

/* Attribute keys repeat in every event: one str object per distinct short key, kept in a small
 * two-way set-associative table, saves creating and hashing the same strings for every event.
 * Bounded: a new key takes its set's first way and pushes the previous one to the second. */
#define KEY_SETS 128
#define KEY_MAX_LEN 64

typedef struct {
    Py_ssize_t len;
    PyObject *str;
    char bytes[KEY_MAX_LEN];
} KeySlot;

static KeySlot key_cache[KEY_SETS][2];

static int
decode_key(Cursor s, PyObject **out)
{
    Py_ssize_t len = s.end - s.p;
    if (len > KEY_MAX_LEN)
        return decode_text(s, out);
    /* A cheap hash of the length and the first and last 8 bytes: keys sharing a prefix
     * ("usermon.", "user.") differ at the end. Collisions only cost a decode. */
    uint64_t head = 0, tail = 0;
    size_t n = (size_t)len < 8 ? (size_t)len : 8;
    memcpy(&head, s.p, n);
    memcpy(&tail, s.end - n, n);
    uint64_t hash = (head * 0x9E3779B97F4A7C15u) ^ (tail * 0xC2B2AE3D27D4EB4Fu) ^ (uint64_t)len;
    KeySlot *set = key_cache[(hash >> 57) & (KEY_SETS - 1)];
    for (int way = 0; way < 2; way++) {
        if (set[way].str != NULL && set[way].len == len &&
            memcmp(set[way].bytes, s.p, (size_t)len) == 0) {
            *out = Py_NewRef(set[way].str);
            return OK;
        }
    }
    TRY(decode_text(s, out));
    Py_XDECREF(set[1].str);
    set[1] = set[0];
    set[0].str = Py_NewRef(*out);
    set[0].len = len;
    memcpy(set[0].bytes, s.p, (size_t)len);
    return OK;
}

static PyObject *
hex_id(Cursor s)
{
    static const char digits[] = "0123456789abcdef";
    Py_ssize_t len = s.end - s.p;
    int zero = 1;
    for (const uint8_t *q = s.p; q < s.end; q++) {
        if (*q) {
            zero = 0;
            break;
        }
    }
    if (zero) /* absent, empty or all zero: no id, as otlp._hex says */
        Py_RETURN_NONE;
    PyObject *out = PyUnicode_New(2 * len, 127);
    if (out == NULL)
        return NULL;
    Py_UCS1 *data = PyUnicode_1BYTE_DATA(out);
    for (Py_ssize_t i = 0; i < len; i++) {
        data[2 * i] = (Py_UCS1)digits[s.p[i] >> 4];
        data[2 * i + 1] = (Py_UCS1)digits[s.p[i] & 15];
    }
    return out;
}

/* AnyValue -> str, bool, int, float, or None (arrays, maps, bytes, unset), as otlp._pb_value. */
static int
any_value(Cursor v, PyObject **out)
{
    uint32_t which = 0, field;
    int wire_type;
    Cursor text = {NULL, NULL};
    uint64_t number = 0;
    while (v.p < v.end) {
        TRY(read_tag(&v, &field, &wire_type));
        if (which) /* a second oneof member (or the same twice): upb keeps the last; decline */
            return DECLINE;
        switch (field) {
        case 1: /* string_value */
        case 5: /* array_value */
        case 6: /* kvlist_value */
        case 7: /* bytes_value */
            if (wire_type != WT_LEN)
                return DECLINE;
            TRY(read_len(&v, &text));
            break;
        case 2: /* bool_value */
        case 3: /* int_value */
            if (wire_type != WT_VARINT)
                return DECLINE;
            TRY(read_varint(&v, &number));
            break;
        case 4: /* double_value */
            if (wire_type != WT_I64)
                return DECLINE;
            TRY(read_fixed64(&v, &number));
            break;
        default: /* e.g. string_value_strindex: a oneof member in newer schemas */
            return DECLINE;
        }
        which = field;
    }
    switch (which) {
    case 1:
        return decode_text(text, out);
    case 2:
        *out = PyBool_FromLong(number != 0);
        return OK;
    case 3:
        *out = PyLong_FromLongLong((long long)(int64_t)number);
        return *out ? OK : ERR;
    case 4: {
        double d;
        memcpy(&d, &number, sizeof d);
        *out = PyFloat_FromDouble(d);
        return *out ? OK : ERR;
    }
    default:
        *out = Py_NewRef(Py_None);
        return OK;
    }
}

/* KeyValue: its key bytes and its value's bytes (has_value 0 when unset). */
static int
key_value(Cursor kv, Cursor *key, Cursor *value, int *has_value)
{
    int has_key = 0;
    uint32_t field;
    int wire_type;
    key->p = key->end = kv.p; /* unset: the empty key */
    *has_value = 0;
    while (kv.p < kv.end) {
        TRY(read_tag(&kv, &field, &wire_type));
        if (field == 1)
            TRY(read_once(&kv, wire_type, &has_key, key));
        else if (field == 2)
            TRY(read_once(&kv, wire_type, has_value, value));
        else
            TRY(skip_field(&kv, wire_type));
    }
    return OK;
}

static int
value_of(Cursor value, int has_value, PyObject **out)
{
    if (!has_value) {
        *out = Py_NewRef(Py_None);
        return OK;
    }
    return any_value(value, out);
}

/* One KeyValue into dict[key] = value (a later key replaces an earlier one, as in _pb_attrs). */
static int
add_attribute(PyObject *dict, Cursor kv)
{
    Cursor key, value;
    int has_value;
    PyObject *k, *v;
    TRY(key_value(kv, &key, &value, &has_value));
    TRY(decode_key(key, &k));
    int status = value_of(value, has_value, &v);
    if (status != OK) {
        Py_DECREF(k);
        return status;
    }
    int failed = PyDict_SetItem(dict, k, v);
    Py_DECREF(k);
    Py_DECREF(v);
    return failed ? ERR : OK;
}

/* Every attribute (field number attrs_field, repeated KeyValue) of a message into a new dict. */
static int
attributes(Cursor msg, uint32_t attrs_field, PyObject **out)
{
    uint32_t field;
    int wire_type;
    Cursor kv;
    PyObject *dict = PyDict_New();
    if (dict == NULL)
        return ERR;
    while (msg.p < msg.end) {
        int status = read_tag(&msg, &field, &wire_type);
        if (status == OK) {
            if (field == attrs_field)
                status = wire_type == WT_LEN ? read_len(&msg, &kv) : DECLINE;
            else
                status = skip_field(&msg, wire_type);
            if (status == OK && field == attrs_field)
                status = add_attribute(dict, kv);
        }
        if (status != OK) {
            Py_DECREF(dict);
            return status;
        }
    }
    *out = dict;
    return OK;
}

/* Resource: the value of its first service_key attribute, as otlp._pb_service reads it. */
static int
service_of(Cursor resource, int has_resource, const Consts *k, PyObject **out)
{
    uint32_t field;
    int wire_type, has_value;
    Cursor kv, key, value;
    while (has_resource && resource.p < resource.end) {
        TRY(read_tag(&resource, &field, &wire_type));
        if (field != 1) {
            TRY(skip_field(&resource, wire_type));
            continue;
        }
        if (wire_type != WT_LEN)
            return DECLINE;
        TRY(read_len(&resource, &kv));
        TRY(key_value(kv, &key, &value, &has_value));
        if (equals(key, k->service_key, k->service_key_len))
            return value_of(value, has_value, out);
    }
    *out = Py_NewRef(Py_None);
    return OK;
}

static PyObject *
kind_of(Cursor name, const Consts *k)
{
    for (int i = 0; i < k->n_kinds; i++)
        if (equals(name, k->names[i], k->name_lens[i]))
            return k->kinds[i];
    return NULL;
}

/* -- the request ----------------------------------------------------------------------------- */

/* One walk: its constants, its output list, and the resource being read. */
typedef struct {
    const Consts *k;
    PyObject *out;      /* the flat list of events */
    Cursor resource;    /* the current resource's bytes */
    int has_resource;
    PyObject *service;  /* its service value, read at its first usermon event (owned) */
} Walk;

static int
service(Walk *w, PyObject **out)
{
    if (w->service == NULL)
        TRY(service_of(w->resource, w->has_resource, w->k, &w->service));
    *out = w->service;
    return OK;
}

/* Append a new tuple of n items (references stolen, all non-NULL unless ERR is returned). */
static int
append(PyObject *list, Py_ssize_t n, PyObject **items)
{
    PyObject *tuple = PyTuple_New(n);
    if (tuple == NULL) {
        for (Py_ssize_t i = 0; i < n; i++)
            Py_DECREF(items[i]);
        return ERR;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(tuple, i, items[i]);
    int failed = PyList_Append(list, tuple);
    Py_DECREF(tuple);
    return failed ? ERR : OK;
}

/* -- traces ---------------------------------------------------------------------------------- */

/* Span.Event: *kind stays NULL (borrowed otherwise) when it is not a usermon event. */
static int
span_event(Cursor ev, const Consts *k, PyObject **kind, uint64_t *nanos, PyObject **attrs)
{
    Cursor start = ev, name = {ev.p, ev.p};
    uint32_t field;
    int wire_type, has_time = 0, has_name = 0;
    *kind = NULL;
    *nanos = 0;
    while (ev.p < ev.end) {
        TRY(read_tag(&ev, &field, &wire_type));
        if (field == 1)
            TRY(read_fixed64_once(&ev, wire_type, &has_time, nanos));
        else if (field == 2)
            TRY(read_once(&ev, wire_type, &has_name, &name));
        else if (field == 3 && wire_type != WT_LEN)
            return DECLINE;
        else
            TRY(skip_field(&ev, wire_type));
    }
    *kind = kind_of(name, k);
    if (*kind == NULL)
        return OK;
    return attributes(start, 3, attrs);
}

/* The span's attributes named in ip_keys, or None. */
static int
ip_attributes(Cursor span, const Consts *k, PyObject **out)
{
    uint32_t field;
    int wire_type, has_value;
    Cursor kv, key, value;
    PyObject *dict = NULL, *v;
    while (span.p < span.end) {
        int status = read_tag(&span, &field, &wire_type);
        if (status == OK && field != 9)
            status = skip_field(&span, wire_type);
        else if (status == OK) {
            status = wire_type == WT_LEN ? read_len(&span, &kv) : DECLINE;
            if (status == OK)
                status = key_value(kv, &key, &value, &has_value);
            for (int i = 0; status == OK && i < k->n_ip_keys; i++) {
                if (!equals(key, k->ip_keys[i], k->ip_key_lens[i]))
                    continue;
                if (dict == NULL && (dict = PyDict_New()) == NULL)
                    return ERR;
                status = value_of(value, has_value, &v);
                if (status == OK) {
                    status = PyDict_SetItem(dict, k->ip_key_objs[i], v) ? ERR : OK;
                    Py_DECREF(v);
                }
                break;
            }
        }
        if (status != OK) {
            Py_XDECREF(dict);
            return status;
        }
    }
    *out = dict != NULL ? dict : Py_NewRef(Py_None);
    return OK;
}

/* What a span's usermon events share: (service, trace_id, span_id, ip_attrs). */
static int
span_head(Walk *w, Cursor span, Cursor trace_id, Cursor span_id, PyObject **head)
{
    PyObject *svc;
    TRY(service(w, &svc));
    head[0] = Py_NewRef(svc);
    head[1] = hex_id(trace_id);
    head[2] = head[1] ? hex_id(span_id) : NULL;
    int status = head[2] ? ip_attributes(span, w->k, &head[3]) : ERR;
    if (status != OK) {
        Py_DECREF(head[0]);
        Py_XDECREF(head[1]);
        Py_XDECREF(head[2]);
    }
    return status;
}

/* A span: one (service, trace_id, span_id, ip_attrs, first, kind, nanos, attrs) per usermon
 * event, first True for the span's first one. */
static int
span(Walk *w, Cursor sp)
{
    Cursor whole = sp, trace_id = {sp.p, sp.p}, span_id = {sp.p, sp.p}, ev;
    uint32_t field;
    int wire_type, has_trace = 0, has_span = 0, has_start = 0, n_events = 0;
    uint64_t start_nanos = 0;
    /* First pass: the span's own fields, wherever they sit among its events. */
    while (sp.p < sp.end) {
        TRY(read_tag(&sp, &field, &wire_type));
        switch (field) {
        case 1:
            TRY(read_once(&sp, wire_type, &has_trace, &trace_id));
            break;
        case 2:
            TRY(read_once(&sp, wire_type, &has_span, &span_id));
            break;
        case 7:
            TRY(read_fixed64_once(&sp, wire_type, &has_start, &start_nanos));
            break;
        case 9:  /* attributes */
        case 11: /* events */
            if (wire_type != WT_LEN)
                return DECLINE;
            n_events += field == 11;
            TRY(skip_field(&sp, wire_type));
            break;
        default:
            TRY(skip_field(&sp, wire_type));
        }
    }
    if (n_events == 0)
        return OK;
    /* Second pass: the events. */
    PyObject *head[4] = {NULL, NULL, NULL, NULL}, *kind, *attrs, *item[8];
    uint64_t nanos;
    int status = OK;
    sp = whole;
    while (status == OK && sp.p < sp.end) {
        status = read_tag(&sp, &field, &wire_type);
        if (status == OK && field != 11)
            status = skip_field(&sp, wire_type);
        else if (status == OK) {
            status = read_len(&sp, &ev);
            if (status == OK)
                status = span_event(ev, w->k, &kind, &nanos, &attrs);
            if (status != OK || kind == NULL)
                continue;
            int first = head[0] == NULL;
            if (first && (status = span_head(w, whole, trace_id, span_id, head)) != OK) {
                Py_DECREF(attrs);
                continue;
            }
            item[6] = PyLong_FromUnsignedLongLong(nanos ? nanos : start_nanos);
            if (item[6] == NULL) {
                Py_DECREF(attrs);
                status = ERR;
                continue;
            }
            for (int i = 0; i < 4; i++)
                item[i] = Py_NewRef(head[i]);
            item[4] = Py_NewRef(first ? Py_True : Py_False);
            item[5] = Py_NewRef(kind);
            item[7] = attrs;
            status = append(w->out, 8, item);
        }
    }
    for (int i = 0; i < 4; i++)
        Py_XDECREF(head[i]);
    return status;
}

static int
scope_spans(Walk *w, Cursor ss)
{
    uint32_t field;
    int wire_type;
    Cursor sp;
    while (ss.p < ss.end) {
        TRY(read_tag(&ss, &field, &wire_type));
        if (field != 2) {
            TRY(skip_field(&ss, wire_type));
            continue;
        }
        if (wire_type != WT_LEN)
            return DECLINE;
        TRY(read_len(&ss, &sp));
        TRY(span(w, sp));
    }
    return OK;
}

/* -- logs ------------------------------------------------------------------------------------ */

/* The kind a log record's last event_name_key attribute names, if that value is a str naming
 * one (str() of a bool, number or None never equals an event name, so otlp.py's
 * _KINDS.get(str(value)) matches exactly these). */
static int
kind_from_attribute(Cursor rec, const Consts *k, PyObject **kind)
{
    uint32_t field;
    int wire_type, has_value, found = 0;
    Cursor kv, key, value, last = {rec.p, rec.p};
    int last_has_value = 0;
    *kind = NULL;
    while (rec.p < rec.end) {
        TRY(read_tag(&rec, &field, &wire_type));
        if (field != 6) {
            TRY(skip_field(&rec, wire_type));
            continue;
        }
        if (wire_type != WT_LEN)
            return DECLINE;
        TRY(read_len(&rec, &kv));
        TRY(key_value(kv, &key, &value, &has_value));
        if (equals(key, k->event_name_key, k->event_name_key_len)) {
            found = 1;
            last = value;
            last_has_value = has_value;
        }
    }
    if (!found || !last_has_value)
        return OK;
    /* Read the AnyValue with the same checks as any other value, then compare its text. */
    PyObject *v;
    TRY(any_value(last, &v));
    if (PyUnicode_Check(v)) {
        Py_ssize_t len;
        const char *text = PyUnicode_AsUTF8AndSize(v, &len);
        if (text == NULL) {
            Py_DECREF(v);
            return ERR;
        }
        for (int i = 0; i < k->n_kinds; i++)
            if (len == k->name_lens[i] && memcmp(text, k->names[i], (size_t)len) == 0)
                *kind = k->kinds[i];
    }
    Py_DECREF(v);
    return OK;
}

/* A log record: (service, trace_id, span_id, kind, nanos, attrs) when it is a usermon event. */
static int
log_record(Walk *w, Cursor rec)
{
    Cursor whole = rec, trace_id = {rec.p, rec.p}, span_id = {rec.p, rec.p},
           name = {rec.p, rec.p};
    uint32_t field;
    int wire_type, has_time = 0, has_observed = 0, has_trace = 0, has_span = 0, has_name = 0;
    uint64_t nanos = 0, observed = 0;
    while (rec.p < rec.end) {
        TRY(read_tag(&rec, &field, &wire_type));
        switch (field) {
        case 1:
            TRY(read_fixed64_once(&rec, wire_type, &has_time, &nanos));
            break;
        case 11:
            TRY(read_fixed64_once(&rec, wire_type, &has_observed, &observed));
            break;
        case 9:
            TRY(read_once(&rec, wire_type, &has_trace, &trace_id));
            break;
        case 10:
            TRY(read_once(&rec, wire_type, &has_span, &span_id));
            break;
        case 12:
            TRY(read_once(&rec, wire_type, &has_name, &name));
            break;
        case 6: /* attributes */
            if (wire_type != WT_LEN)
                return DECLINE;
            TRY(skip_field(&rec, wire_type));
            break;
        default:
            TRY(skip_field(&rec, wire_type));
        }
    }
    PyObject *kind = kind_of(name, w->k), *svc, *item[6];
    if (kind == NULL)
        TRY(kind_from_attribute(whole, w->k, &kind));
    if (kind == NULL)
        return OK;
    TRY(service(w, &svc));
    TRY(attributes(whole, 6, &item[5]));
    item[1] = hex_id(trace_id);
    item[2] = item[1] ? hex_id(span_id) : NULL;
    item[4] = item[2] ? PyLong_FromUnsignedLongLong(nanos ? nanos : observed) : NULL;
    if (item[4] == NULL) {
        Py_XDECREF(item[1]);
        Py_XDECREF(item[2]);
        Py_DECREF(item[5]);
        return ERR;
    }
    item[0] = Py_NewRef(svc);
    item[3] = Py_NewRef(kind);
    return append(w->out, 6, item);
}

static int
scope_logs(Walk *w, Cursor sl)
{
    uint32_t field;
    int wire_type;
    Cursor rec;
    while (sl.p < sl.end) {
        TRY(read_tag(&sl, &field, &wire_type));
        if (field != 2) {
            TRY(skip_field(&sl, wire_type));
            continue;
        }
        if (wire_type != WT_LEN)
            return DECLINE;
        TRY(read_len(&sl, &rec));
        TRY(log_record(w, rec));
    }
    return OK;
}

/* -- resources ------------------------------------------------------------------------------- */

typedef int (*ScopeReader)(Walk *, Cursor);

/* ResourceSpans or ResourceLogs: the same layout, resource = 1 and its scopes = 2. */
static int
resource_group(Walk *w, Cursor rg, ScopeReader scope)
{
    Cursor whole = rg, sc;
    uint32_t field;
    int wire_type;
    w->has_resource = 0;
    w->resource.p = w->resource.end = rg.p;
    while (rg.p < rg.end) {
        TRY(read_tag(&rg, &field, &wire_type));
        if (field == 1)
            TRY(read_once(&rg, wire_type, &w->has_resource, &w->resource));
        else if (field == 2 && wire_type != WT_LEN)
            return DECLINE;
        else
            TRY(skip_field(&rg, wire_type));
    }
    rg = whole;
    while (rg.p < rg.end) {
        TRY(read_tag(&rg, &field, &wire_type));
        if (field != 2) {
            TRY(skip_field(&rg, wire_type));
            continue;
        }
        TRY(read_len(&rg, &sc));
        TRY(scope(w, sc));
    }
    return OK;
}

/* The request: repeated field 1, ResourceSpans or ResourceLogs. */
static int
request(Walk *w, Cursor req, ScopeReader scope)
{
    uint32_t field;
    int wire_type;
    Cursor rg;
    while (req.p < req.end) {
        TRY(read_tag(&req, &field, &wire_type));
        if (field != 1) {
            TRY(skip_field(&req, wire_type));
            continue;
        }
        if (wire_type != WT_LEN)
            return DECLINE;
        TRY(read_len(&req, &rg));
        Py_CLEAR(w->service);
        TRY(resource_group(w, rg, scope));
    }
    return OK;
}

/* -- module ---------------------------------------------------------------------------------- */

static int
utf8_of(PyObject *s, const char **text, Py_ssize_t *len, const char *what)
{
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str", what);
        return ERR;
    }
    *text = PyUnicode_AsUTF8AndSize(s, len);
    return *text ? OK : ERR;
}

static int
read_consts(PyObject *kinds, PyObject *service_key, Consts *k)
{
    PyObject *name, *kind;
    Py_ssize_t pos = 0;
    if (!PyDict_Check(kinds) || PyDict_GET_SIZE(kinds) > MAX_KINDS) {
        PyErr_SetString(PyExc_TypeError, "kinds must be a dict of at most 8 event names");
        return ERR;
    }
    k->n_kinds = 0;
    while (PyDict_Next(kinds, &pos, &name, &kind)) {
        int i = k->n_kinds++;
        if (utf8_of(name, &k->names[i], &k->name_lens[i], "an event name"))
            return ERR;
        k->kinds[i] = kind;
    }
    return utf8_of(service_key, &k->service_key, &k->service_key_len, "service_key");
}

static PyObject *
walk(PyObject *args, int logs)
{
    Py_buffer body;
    PyObject *kinds, *service_key, *extra;
    Consts k;
    memset(&k, 0, sizeof k);
    if (!PyArg_ParseTuple(args, logs ? "y*OOO:walk_logs" : "y*OOO:walk_traces", &body, &kinds,
                          &service_key, &extra))
        return NULL;
    PyObject *out = NULL;
    int status = read_consts(kinds, service_key, &k);
    if (status == OK && logs)
        status = utf8_of(extra, &k.event_name_key, &k.event_name_key_len, "event_name_key");
    if (status == OK && !logs) {
        if (!PyTuple_Check(extra) || PyTuple_GET_SIZE(extra) > MAX_IP_KEYS) {
            PyErr_SetString(PyExc_TypeError, "ip_keys must be a tuple of at most 8 str");
            status = ERR;
        }
        for (Py_ssize_t i = 0; status == OK && i < PyTuple_GET_SIZE(extra); i++) {
            k.ip_key_objs[i] = PyTuple_GET_ITEM(extra, i);
            status = utf8_of(k.ip_key_objs[i], &k.ip_keys[i], &k.ip_key_lens[i], "an ip key");
            k.n_ip_keys++;
        }
    }
    Walk w = {&k, NULL, {NULL, NULL}, 0, NULL};
    if (status == OK && (w.out = PyList_New(0)) == NULL)
        status = ERR;
    if (status == OK) {
        Cursor c = {(const uint8_t *)body.buf, (const uint8_t *)body.buf + body.len};
        status = request(&w, c, logs ? scope_logs : scope_spans);
    }
    Py_XDECREF(w.service);
    out = w.out;
    PyBuffer_Release(&body);
    if (status == OK)
        return out;
    Py_XDECREF(out);
    if (status == ERR)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
walk_traces(PyObject *module, PyObject *args)
{
    (void)module;
    return walk(args, 0);
}

static PyObject *
walk_logs(PyObject *module, PyObject *args)
{
    (void)module;
    return walk(args, 1);
}

/* new_object(cls, setters, *values): object.__new__(cls), then setters[i].__set__(obj, values[i])
 * for each i. What otlp._event_factory's generated Python does for a slotted dataclass, in one
 * call instead of one Python-level call per field. */
static PyObject *
new_object(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 2 || !PyType_Check(args[0]) || !PyTuple_Check(args[1]) ||
        PyTuple_GET_SIZE(args[1]) != nargs - 2) {
        PyErr_SetString(PyExc_TypeError, "new_object(cls, setters, *values): one value per setter");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    if (cls->tp_new != PyBaseObject_Type.tp_new) { /* object.__new__(cls) would refuse it too */
        PyErr_SetString(PyExc_TypeError, "new_object: cls must use object.__new__");
        return NULL;
    }
    PyObject *none = PyTuple_New(0);
    if (none == NULL)
        return NULL;
    PyObject *obj = PyBaseObject_Type.tp_new(cls, none, NULL);
    Py_DECREF(none);
    if (obj == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < nargs - 2; i++) {
        PyObject *setter = PyTuple_GET_ITEM(args[1], i);
        descrsetfunc set = Py_TYPE(setter)->tp_descr_set;
        if (set == NULL) {
            PyErr_SetString(PyExc_TypeError, "new_object: each setter must be a data descriptor");
            Py_DECREF(obj);
            return NULL;
        }
        if (set(setter, obj, args[2 + i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

static PyMethodDef methods[] = {
    {"new_object", (PyCFunction)(void (*)(void))new_object, METH_FASTCALL,
     "new_object(cls, setters, *values): object.__new__(cls) with setters[i].__set__(obj, "
     "values[i]) for each i (a slotted dataclass built without its __init__)."},
    {"walk_traces", walk_traces, METH_VARARGS,
     "walk_traces(body, kinds, service_key, ip_keys): the usermon events of an "
     "ExportTraceServiceRequest that upb accepted, or None to fall back to the Python walk."},
    {"walk_logs", walk_logs, METH_VARARGS,
     "walk_logs(body, kinds, service_key, event_name_key): the usermon events of an "
     "ExportLogsServiceRequest that upb accepted, or None to fall back to the Python walk."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "usermon.processor._otlpwalk",
    "The usermon parts of an OTLP export request, read off the wire (see otlp.py).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__otlpwalk(void)
{
    return PyModule_Create(&module_def);
}
