/*
 * v2_codec.c - decoding KServe v2 infer requests: a small streaming JSON parser for the
 * request object, each input's "data" parsed straight into its tensor buffer, the binary
 * tensor data extension and the raw single-input form. The request's memory is one arena
 * (a short chain of blocks) freed with one call.
 *
 * Everything here treats the body as hostile: sizes are checked before they are
 * multiplied, shapes against the limits before anything sized by them is allocated, and
 * a JSON tensor may not declare more elements than its text could possibly hold.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "v2.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the v2 binary tensor format is little-endian; this file assumes a little-endian host"
#endif

#define MAX_NESTING 64     /* arrays and objects inside each other */
#define NAME_IN_MSG 64     /* bytes of a client's name quoted in an error */
#define ARENA_BLOCK 8192   /* bytes of an ordinary arena block */
#define SNIPPET 24         /* bytes of a bad value quoted in an error */

/* ------------------------------------------------------------------ datatypes */

static const struct {
    const char *name;
    dab_dtype_t dt;
} g_v2_types[] = {
    {"BOOL", DAB_DT_BOOL},     {"UINT8", DAB_DT_UINT8},   {"UINT16", DAB_DT_UINT16},
    {"UINT32", DAB_DT_UINT32}, {"UINT64", DAB_DT_UINT64}, {"INT8", DAB_DT_INT8},
    {"INT16", DAB_DT_INT16},   {"INT32", DAB_DT_INT32},   {"INT64", DAB_DT_INT64},
    {"FP16", DAB_DT_FLOAT16},  {"FP32", DAB_DT_FLOAT},    {"FP64", DAB_DT_DOUBLE},
    {"BYTES", DAB_DT_STRING},  {"BF16", DAB_DT_BFLOAT16},
};

dab_dtype_t dab_v2_dtype_from_name(const char *name, size_t n)
{
    for (size_t i = 0; i < DAB_ARRAY_LEN(g_v2_types); i++)
        if (strlen(g_v2_types[i].name) == n && memcmp(g_v2_types[i].name, name, n) == 0)
            return g_v2_types[i].dt;
    return DAB_DT_UNDEFINED;
}

const char *dab_v2_dtype_name(dab_dtype_t dt)
{
    for (size_t i = 0; i < DAB_ARRAY_LEN(g_v2_types); i++)
        if (g_v2_types[i].dt == dt)
            return g_v2_types[i].name;
    return NULL;
}

void dab_v2_limits_default(dab_v2_limits_t *l)
{
    memset(l, 0, sizeof *l);
    l->max_elements = (int64_t)1 << 24;
    l->max_rank = DAB_MAX_RANK;
    l->max_inputs = 64;
    l->max_total_bytes = (size_t)256 << 20;
}

/* Fills zero fields of *in with defaults and clamps max_rank to what a tensor can hold. */
static dab_v2_limits_t limits_resolve(const dab_v2_limits_t *in)
{
    dab_v2_limits_t d, l;
    dab_v2_limits_default(&d);
    l = in ? *in : d;
    if (l.max_elements <= 0)
        l.max_elements = d.max_elements;
    if (l.max_rank <= 0 || l.max_rank > DAB_MAX_RANK)
        l.max_rank = DAB_MAX_RANK;
    if (l.max_inputs <= 0)
        l.max_inputs = d.max_inputs;
    if (l.max_total_bytes == 0)
        l.max_total_bytes = d.max_total_bytes;
    return l;
}

/* ------------------------------------------------------------------ arena */

/* A block: this header, then its bytes from offset ARENA_HDR (64-aligned). */
typedef struct ablock {
    struct ablock *next;
    size_t cap, used;
} ablock_t;

#define ARENA_HDR 64

struct dab_v2_arena {
    ablock_t *cur;  /* block being filled; older ones hang from ->next */
    ablock_t *solo; /* blocks holding one large allocation each */
};

/* The request and its arena in the arena's first block. */
typedef struct req_full {
    dab_v2_request_t pub;
    struct dab_v2_arena arena;
} req_full_t;

static ablock_t *ablock_new(size_t cap)
{
    if (cap > SIZE_MAX - ARENA_HDR)
        return NULL;
    ablock_t *b = dab_malloc(ARENA_HDR + cap);
    if (b) {
        b->next = NULL;
        b->cap = cap;
        b->used = 0;
    }
    return b;
}

/* size bytes aligned to align (a power of two, at most 64); never NULL for size 0. */
static void *arena_alloc(struct dab_v2_arena *a, size_t size, size_t align)
{
    ablock_t *b = a->cur;
    size_t off = DAB_ALIGN_UP(b->used, align);
    if (off <= b->cap && size <= b->cap - off) {
        b->used = off + size;
        return (char *)b + ARENA_HDR + off;
    }
    if (size > ARENA_BLOCK / 4) {
        ablock_t *s = ablock_new(size);
        if (!s)
            return NULL;
        s->used = size;
        s->next = a->solo;
        a->solo = s;
        return (char *)s + ARENA_HDR;
    }
    ablock_t *nb = ablock_new(ARENA_BLOCK);
    if (!nb)
        return NULL;
    nb->next = b;
    a->cur = nb;
    nb->used = size;
    return (char *)nb + ARENA_HDR;
}

static void arena_free_chain(ablock_t *b)
{
    while (b) {
        ablock_t *next = b->next;
        dab_free(b);
        b = next;
    }
}

static dab_v2_request_t *request_new(void)
{
    ablock_t *b = ablock_new(ARENA_BLOCK / 2);
    if (!b)
        return NULL;
    req_full_t *f = (req_full_t *)((char *)b + ARENA_HDR);
    memset(f, 0, sizeof *f);
    b->used = sizeof *f;
    f->arena.cur = b;
    f->pub.arena_ = &f->arena;
    f->pub.binary_data_output = -1;
    return &f->pub;
}

void dab_v2_request_free(dab_v2_request_t *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_inputs; i++)
        json_decref(r->inputs[i].parameters);
    for (int i = 0; i < r->n_outputs; i++)
        json_decref(r->outputs[i].parameters);
    json_decref(r->parameters);
    dab_buf_free(&r->body_);
    struct dab_v2_arena *a = r->arena_;
    ablock_t *solo = a->solo, *cur = a->cur;
    arena_free_chain(solo);
    arena_free_chain(cur); /* the first block, holding r itself, is freed last */
}

void dab_v2_request_adopt_body(dab_v2_request_t *r, dab_buf_t *body)
{
    dab_buf_free(&r->body_);
    r->body_ = *body;
    memset(body, 0, sizeof *body);
}

const dab_v2_input_t *dab_v2_request_input(const dab_v2_request_t *r, const char *name)
{
    for (int i = 0; i < r->n_inputs; i++)
        if (strcmp(r->inputs[i].name, name) == 0)
            return &r->inputs[i];
    return NULL;
}

bool dab_v2_output_wants_binary(const dab_v2_request_t *r, const char *name)
{
    for (int i = 0; i < r->n_outputs; i++)
        if (strcmp(r->outputs[i].name, name) == 0 && r->outputs[i].binary_data >= 0)
            return r->outputs[i].binary_data == 1;
    return r->binary_data_output == 1;
}

int dab_v2_parse_header_length(const char *value, int64_t *out, dab_err_t *err)
{
    const char *p = value ? value : "";
    while (*p == ' ' || *p == '\t')
        p++;
    int64_t v = 0;
    const char *digits = p;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > ((int64_t)1 << 53))
            return dab_err_set(err, DAB_EINVAL,
                               "Inference-Header-Content-Length '%.32s' is too large", value);
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (p == digits || *p)
        return dab_err_set(err, DAB_EINVAL,
                           "Inference-Header-Content-Length '%.32s' is not a byte count",
                           value ? value : "");
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------ the parser */

typedef struct dec {
    const char *s; /* the JSON text */
    size_t n;      /* its length */
    size_t i;      /* the cursor */
    dab_err_t *err;
    dab_v2_limits_t lim;
    dab_v2_request_t *r;
    struct dab_v2_arena *a;
    int cap_inputs, cap_outputs;
} dec_t;

/* What is being parsed for one input object. */
typedef struct in_ctx {
    int index;
    dab_v2_input_t *in;
    char label[NAME_IN_MSG + 32]; /* "input 'x'" or "input 3" for messages */
    bool have_name, have_shape, have_dtype, have_data, have_params;
    size_t data_at; /* where a "data" value seen before name/shape/datatype starts */
    bool data_deferred;
    int64_t numel;
    bool raw; /* the raw single-input form: the whole body is the data */
} in_ctx_t;

static void skip_ws(dec_t *d)
{
    while (d->i < d->n) {
        char c = d->s[d->i];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
            break;
        d->i++;
    }
}

/* The error for whatever is at the cursor: the end of the text or a character. */
static int unexpected(dec_t *d)
{
    if (d->i >= d->n)
        return dab_err_set(d->err, DAB_EFORMAT, "the JSON body ends unexpectedly after %zu bytes",
                           d->n);
    unsigned char c = (unsigned char)d->s[d->i];
    if (c >= 0x20 && c < 0x7f)
        return dab_err_set(d->err, DAB_EFORMAT,
                           "unexpected character '%c' at byte %zu of the JSON body", c, d->i);
    return dab_err_set(d->err, DAB_EFORMAT, "unexpected byte 0x%02x at byte %zu of the JSON body",
                       c, d->i);
}

static int expect(dec_t *d, char c)
{
    skip_ws(d);
    if (d->i < d->n && d->s[d->i] == c) {
        d->i++;
        return 0;
    }
    return unexpected(d);
}

/* Consumes the literal word (true, false, null) at the cursor. */
static int literal(dec_t *d, const char *word)
{
    for (const char *w = word; *w; w++, d->i++)
        if (d->i >= d->n || d->s[d->i] != *w)
            return unexpected(d);
    return 0;
}

/* Copies a client's name into dst for a message: printable, at most NAME_IN_MSG bytes. */
static void quote_name(char *dst, size_t cap, const char *s, size_t len)
{
    size_t k = 0, max = DAB_MIN(len, (size_t)NAME_IN_MSG);
    for (size_t j = 0; j < max && k + 4 < cap; j++) {
        unsigned char c = (unsigned char)s[j];
        dst[k++] = (c < 0x20 || c == 0x7f || c == '\'') ? '?' : (char)c;
    }
    if (len > max && k + 4 < cap) {
        memcpy(dst + k, "...", 3);
        k += 3;
    }
    dst[k] = 0;
}

/* Reads 4 hex digits at s[i..]; -1 (with the cursor on the bad one) when they are not. */
static int hex4(dec_t *d)
{
    int v = 0;
    for (int k = 0; k < 4; k++, d->i++) {
        int h = d->i < d->n ? dab_hex_digit(d->s[d->i]) : -1;
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/*
 * Scans the string at the cursor (on its opening quote), validating escapes (surrogates
 * paired) and refusing control characters. *start and *len: the raw bytes between the quotes;
 * *escaped: whether they hold escapes (so must be decoded with unescape()).
 */
static int scan_string(dec_t *d, size_t *start, size_t *len, bool *escaped)
{
    const char *s = d->s;
    size_t n = d->n, i = d->i + 1;
    *escaped = false;
    *start = i;
    for (;;) {
        while (i < n) {
            unsigned char c = (unsigned char)s[i];
            if (c == '"' || c == '\\' || c < 0x20)
                break;
            i++;
        }
        if (i >= n) {
            d->i = n;
            return unexpected(d);
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            break;
        if (c < 0x20) {
            d->i = i;
            return dab_err_set(d->err, DAB_EFORMAT,
                               "control character 0x%02x inside a string at byte %zu of the JSON "
                               "body (it must be escaped)",
                               c, i);
        }
        *escaped = true;
        if (++i >= n) {
            d->i = n;
            return unexpected(d);
        }
        c = (unsigned char)s[i];
        if (c != 'u') {
            if (!strchr("\"\\/bfnrt", c) || !c) {
                d->i = i;
                return dab_err_set(d->err, DAB_EFORMAT,
                                   "invalid escape '\\%c' at byte %zu of the JSON body",
                                   c >= 0x20 && c < 0x7f ? c : '?', i - 1);
            }
            i++;
            continue;
        }
        d->i = i + 1;
        int u = hex4(d);
        if (u < 0)
            return d->i >= n ? unexpected(d)
                             : dab_err_set(d->err, DAB_EFORMAT,
                                           "invalid \\u escape at byte %zu of the JSON body",
                                           i - 1);
        if (u >= 0xDC00 && u <= 0xDFFF)
            return dab_err_set(d->err, DAB_EFORMAT,
                               "unpaired UTF-16 surrogate \\u%04x at byte %zu of the JSON body",
                               u, i - 1);
        if (u >= 0xD800 && u <= 0xDBFF) {
            size_t at = d->i;
            if (at + 1 < n && s[at] == '\\' && s[at + 1] == 'u') {
                d->i = at + 2;
                int lo = hex4(d);
                if (lo < 0)
                    return d->i >= n ? unexpected(d)
                                     : dab_err_set(d->err, DAB_EFORMAT,
                                                   "invalid \\u escape at byte %zu of the JS"
                                                   "ON body",
                                                   at);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return dab_err_set(d->err, DAB_EFORMAT,
                                       "unpaired UTF-16 surrogate \\u%04x at byte %zu of the JSON "
                                       "body",
                                       u, i - 1);
            } else {
                if (at >= n || (at + 1 >= n && s[at] == '\\')) {
                    d->i = n;
                    return unexpected(d);
                }
                return dab_err_set(d->err, DAB_EFORMAT,
                                   "unpaired UTF-16 surrogate \\u%04x at byte %zu of the JSON body",
                                   u, i - 1);
            }
        }
        i = d->i;
    }
    *len = i - *start;
    d->i = i + 1;
    return 0;
}

/* Decodes the validated raw string src[0..len) into dst (at least len bytes); its length. */
static size_t unescape(const char *src, size_t len, char *dst)
{
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        if (src[i] != '\\') {
            dst[k++] = src[i++];
            continue;
        }
        char e = src[i + 1];
        i += 2;
        switch (e) {
        case 'b': dst[k++] = '\b'; continue;
        case 'f': dst[k++] = '\f'; continue;
        case 'n': dst[k++] = '\n'; continue;
        case 'r': dst[k++] = '\r'; continue;
        case 't': dst[k++] = '\t'; continue;
        case 'u': break;
        default: dst[k++] = e; continue;
        }
        uint32_t u = 0;
        for (int h = 0; h < 4; h++)
            u = u * 16 + (uint32_t)dab_hex_digit(src[i + h]);
        i += 4;
        if (u >= 0xD800 && u <= 0xDBFF) {
            uint32_t lo = 0;
            for (int h = 0; h < 4; h++)
                lo = lo * 16 + (uint32_t)dab_hex_digit(src[i + 2 + h]);
            i += 6;
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (u < 0x80) {
            dst[k++] = (char)u;
        } else if (u < 0x800) {
            dst[k++] = (char)(0xC0 | (u >> 6));
            dst[k++] = (char)(0x80 | (u & 0x3F));
        } else if (u < 0x10000) {
            dst[k++] = (char)(0xE0 | (u >> 12));
            dst[k++] = (char)(0x80 | ((u >> 6) & 0x3F));
            dst[k++] = (char)(0x80 | (u & 0x3F));
        } else {
            dst[k++] = (char)(0xF0 | (u >> 18));
            dst[k++] = (char)(0x80 | ((u >> 12) & 0x3F));
            dst[k++] = (char)(0x80 | ((u >> 6) & 0x3F));
            dst[k++] = (char)(0x80 | (u & 0x3F));
        }
    }
    return k;
}

/*
 * Reads the string at the cursor into the arena as a NUL-terminated copy (*out, *out_len).
 * what names the field for the message refusing an embedded NUL.
 */
static int string_copy(dec_t *d, const char *what, const char **out, size_t *out_len)
{
    size_t start, len;
    bool esc;
    skip_ws(d);
    if (d->i >= d->n || d->s[d->i] != '"')
        return d->i >= d->n ? unexpected(d)
                            : dab_err_set(d->err, DAB_EINVAL, "%s must be a string (byte %zu)",
                                          what, d->i);
    int rc = scan_string(d, &start, &len, &esc);
    if (rc)
        return rc;
    char *p = arena_alloc(d->a, len + 1, 1);
    if (!p)
        return dab_err_set(d->err, DAB_ENOMEM, "out of memory reading %s", what);
    size_t k = esc ? unescape(d->s + start, len, p) : (memcpy(p, d->s + start, len), len);
    p[k] = 0;
    if (memchr(p, 0, k))
        return dab_err_set(d->err, DAB_EINVAL, "%s contains a NUL character", what);
    *out = p;
    *out_len = k;
    return 0;
}

/*
 * Reads an object key at the cursor and the ':' after it. Keys of at most cap-1 bytes are
 * decoded into buf; longer ones (no key we know is long) give *klen = cap.
 */
static int read_key(dec_t *d, char *buf, size_t cap, size_t *klen)
{
    size_t start, len;
    bool esc;
    skip_ws(d);
    if (d->i >= d->n || d->s[d->i] != '"')
        return unexpected(d);
    int rc = scan_string(d, &start, &len, &esc);
    if (rc)
        return rc;
    if (len >= cap) {
        *klen = cap;
    } else {
        *klen = esc ? unescape(d->s + start, len, buf) : (memcpy(buf, d->s + start, len), len);
        buf[*klen] = 0;
    }
    return expect(d, ':');
}

static bool key_is(const char *k, size_t klen, const char *want)
{
    return strlen(want) == klen && memcmp(k, want, klen) == 0;
}

typedef struct num {
    size_t start, len;
    bool is_int; /* no fraction, no exponent */
} num_t;

/* Validates the JSON number at the cursor and moves past it. */
static int scan_number(dec_t *d, num_t *nm)
{
    const char *s = d->s;
    size_t n = d->n, i = d->i;
    nm->start = i;
    nm->is_int = true;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
        goto bad;
    if (s[i] == '0')
        i++;
    else
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    if (i < n && s[i] == '.') {
        nm->is_int = false;
        if (++i >= n || s[i] < '0' || s[i] > '9')
            goto bad;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        nm->is_int = false;
        if (++i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || s[i] < '0' || s[i] > '9')
            goto bad;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    nm->len = i - nm->start;
    d->i = i;
    return 0;
bad:
    d->i = i;
    return unexpected(d);
}

/*
 * Parses any JSON value at the cursor. With out, builds it as a jansson value (for the
 * small "parameters" objects); without, only validates and skips it.
 */
static int json_value(dec_t *d, json_t **out, int depth)
{
    skip_ws(d);
    if (d->i >= d->n)
        return unexpected(d);
    char c = d->s[d->i];
    int rc;
    if (out)
        *out = NULL;
    if (c == '{' || c == '[') {
        if (depth >= MAX_NESTING)
            return dab_err_set(d->err, DAB_EFORMAT,
                               "the JSON body nests more than %d levels deep at byte %zu",
                               MAX_NESTING, d->i);
        bool obj = c == '{';
        char close = obj ? '}' : ']';
        json_t *v = NULL;
        if (out && !(v = obj ? json_object() : json_array()))
            return dab_err_set(d->err, DAB_ENOMEM, "out of memory reading parameters");
        d->i++;
        skip_ws(d);
        if (d->i < d->n && d->s[d->i] == close) {
            d->i++;
            if (out)
                *out = v;
            return 0;
        }
        for (;;) {
            const char *key = NULL;
            size_t klen = 0;
            char *kbuf = NULL;
            if (obj) {
                size_t start;
                bool esc;
                skip_ws(d);
                if (d->i >= d->n || d->s[d->i] != '"') {
                    rc = unexpected(d);
                    goto fail;
                }
                if ((rc = scan_string(d, &start, &klen, &esc)))
                    goto fail;
                key = d->s + start;
                if (out && esc) {
                    if (!(kbuf = dab_malloc(klen + 1))) {
                        rc = dab_err_set(d->err, DAB_ENOMEM, "out of memory reading parameters");
                        goto fail;
                    }
                    klen = unescape(key, klen, kbuf);
                    key = kbuf;
                }
                if ((rc = expect(d, ':'))) {
                    dab_free(kbuf);
                    goto fail;
                }
            }
            if (out && obj && !dab_v2_utf8_valid(key, klen)) {
                dab_free(kbuf);
                rc = dab_err_set(d->err, DAB_EINVAL,
                                 "the key before byte %zu of the JSON body is not valid UTF-8",
                                 d->i);
                goto fail;
            }
            json_t *item = NULL;
            rc = json_value(d, out ? &item : NULL, depth + 1);
            if (!rc && out) {
                if (obj ? json_object_setn_new_nocheck(v, key, klen, item)
                        : json_array_append_new(v, item))
                    rc = dab_err_set(d->err, DAB_ENOMEM, "out of memory reading parameters");
            }
            dab_free(kbuf);
            if (rc)
                goto fail;
            skip_ws(d);
            if (d->i < d->n && d->s[d->i] == ',') {
                d->i++;
                continue;
            }
            if (d->i < d->n && d->s[d->i] == close) {
                d->i++;
                break;
            }
            rc = unexpected(d);
            goto fail;
        }
        if (out)
            *out = v;
        return 0;
    fail:
        json_decref(v);
        return rc;
    }
    if (c == '"') {
        size_t start, len, at = d->i;
        bool esc;
        if ((rc = scan_string(d, &start, &len, &esc)))
            return rc;
        if (!out)
            return 0;
        char *tmp = NULL;
        const char *p = d->s + start;
        if (esc) {
            if (!(tmp = dab_malloc(len + 1)))
                return dab_err_set(d->err, DAB_ENOMEM, "out of memory reading parameters");
            len = unescape(p, len, tmp);
            p = tmp;
        }
        if (!dab_v2_utf8_valid(p, len)) {
            dab_free(tmp);
            return dab_err_set(d->err, DAB_EINVAL,
                               "the string at byte %zu of the JSON body is not valid UTF-8", at);
        }
        *out = json_stringn_nocheck(p, len);
        dab_free(tmp);
        if (!*out)
            return dab_err_set(d->err, DAB_ENOMEM, "out of memory reading parameters");
        return 0;
    }
    if (c == 't' || c == 'f' || c == 'n') {
        if ((rc = literal(d, c == 't' ? "true" : c == 'f' ? "false" : "null")))
            return rc;
        if (out && !(*out = c == 't' ? json_true() : c == 'f' ? json_false() : json_null()))
            return dab_err_set(d->err, DAB_ENOMEM, "out of memory reading parameters");
        return 0;
    }
    if (c != '-' && (c < '0' || c > '9'))
        return unexpected(d);
    num_t nm;
    if ((rc = scan_number(d, &nm)))
        return rc;
    if (!out)
        return 0;
    char buf[64];
    if (nm.len >= sizeof buf)
        return dab_err_set(d->err, DAB_ERANGE,
                           "the number at byte %zu of the JSON body is too long (%zu digits)",
                           nm.start, nm.len);
    memcpy(buf, d->s + nm.start, nm.len);
    buf[nm.len] = 0;
    errno = 0;
    if (nm.is_int) {
        long long v = strtoll(buf, NULL, 10);
        if (errno == 0) {
            if (!(*out = json_integer(v)))
                return dab_err_set(d->err, DAB_ENOMEM, "out of memory reading parameters");
            return 0;
        }
        errno = 0;
    }
    double v = strtod(buf, NULL);
    if (errno == ERANGE && (v > 1 || v < -1))
        return dab_err_set(d->err, DAB_ERANGE,
                           "the number %s at byte %zu of the JSON body is out of range", buf,
                           nm.start);
    if (!(*out = json_real(v)))
        return dab_err_set(d->err, DAB_ENOMEM, "out of memory reading parameters");
    return 0;
}

/* Reads a "parameters" value, which must be an object, as a jansson object. what names
 * the field in messages ("input 'x': 'parameters'"). */
static int parameters(dec_t *d, const char *what, json_t **out)
{
    skip_ws(d);
    if (d->i < d->n && d->s[d->i] != '{')
        return dab_err_set(d->err, DAB_EINVAL, "%s must be an object (byte %zu)", what, d->i);
    return json_value(d, out, 1);
}

/* ------------------------------------------------------------------ tensor data */

static void fmt_shape(const dab_tensor_t *t, char *buf, size_t cap)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < t->rank && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? "," : "", (long long)t->dims[i]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

/* The value at text s[start..] quoted for a message (at most SNIPPET bytes). */
static void snippet(const dec_t *d, size_t start, char *buf)
{
    size_t k = 0;
    for (size_t i = start; i < d->n && k < SNIPPET; i++, k++) {
        unsigned char c = (unsigned char)d->s[i];
        if (c == ',' || c == ']' || c == '}' || c == ' ' || c == '\n')
            break;
        buf[k] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    buf[k] = 0;
}

/* What the value at the cursor is, for messages. */
static const char *value_kind(const dec_t *d)
{
    switch (d->s[d->i]) {
    case '"': return "a string";
    case 't':
    case 'f': return "a boolean";
    case 'n': return "null";
    case '{': return "an object";
    case '[': return "an array";
    default: return "a number";
    }
}

static int kind_error(dec_t *d, in_ctx_t *c, int64_t k)
{
    char ch = d->s[d->i];
    bool valid_start = ch == '"' || ch == 't' || ch == 'f' || ch == 'n' || ch == '{' ||
                       ch == '-' || (ch >= '0' && ch <= '9');
    if (!valid_start)
        return unexpected(d);
    dab_dtype_t dt = c->in->tensor.dtype;
    const char *want = dt == DAB_DT_BOOL     ? "true or false"
                       : dt == DAB_DT_STRING ? "strings"
                                             : "numbers";
    return dab_err_set(d->err, DAB_ETYPE, "%s: element %lld is %s; %s data must be %s", c->label,
                       (long long)k, value_kind(d), dab_v2_dtype_name(dt), want);
}

/* Parses a JSON integer element into *neg / *mag; not-an-integer and overflow are errors. */
static int parse_int(dec_t *d, in_ctx_t *c, int64_t k, bool *neg, uint64_t *mag)
{
    const char *s = d->s;
    size_t n = d->n, i = d->i, start = i;
    uint64_t m = 0;
    bool ovf = false;
    *neg = s[i] == '-';
    if (*neg)
        i++;
    if (i >= n || s[i] < '0' || s[i] > '9') {
        d->i = i;
        return unexpected(d);
    }
    if (s[i] == '0') {
        i++;
    } else {
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            unsigned dv = (unsigned)(s[i] - '0');
            if (m > (UINT64_MAX - dv) / 10)
                ovf = true;
            m = m * 10 + dv;
        }
    }
    if (i < n && (s[i] == '.' || s[i] == 'e' || s[i] == 'E')) {
        num_t nm;
        d->i = start;
        int rc = scan_number(d, &nm);
        if (rc)
            return rc;
        char sn[SNIPPET + 1];
        snippet(d, start, sn);
        return dab_err_set(d->err, DAB_ETYPE, "%s: element %lld (%s) is not an integer, as %s data "
                           "needs", c->label, (long long)k, sn,
                           dab_v2_dtype_name(c->in->tensor.dtype));
    }
    d->i = i;
    if (ovf) {
        char sn[SNIPPET + 1];
        snippet(d, start, sn);
        return dab_err_set(d->err, DAB_ERANGE, "%s: element %lld (%s) is out of range for %s",
                           c->label, (long long)k, sn, dab_v2_dtype_name(c->in->tensor.dtype));
    }
    *mag = m;
    return 0;
}

static const float g_pow10f[] = {1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f,
                                 1e6f, 1e7f, 1e8f, 1e9f, 1e10f};
static const double g_pow10d[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                  1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/*
 * Parses a JSON number element as float (dbl false) or double, correctly rounded: exact
 * small cases in one rounded operation (mantissa and power of ten both exact), the rest
 * through strtof/strtod. Values too large for the type are errors; tiny ones underflow.
 */
static int parse_float(dec_t *d, in_ctx_t *c, int64_t k, bool dbl, float *of, double *od)
{
    const char *s = d->s;
    size_t n = d->n, i = d->i, start = i;
    uint64_t m = 0;
    int nd = 0, e10 = 0;
    bool trunc = false, neg = s[i] == '-';
    if (neg)
        i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
        goto bad;
    if (s[i] == '0') {
        i++;
    } else {
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            if (nd < 19) {
                m = m * 10 + (uint64_t)(s[i] - '0');
                nd++;
            } else {
                e10++;
                trunc |= s[i] != '0';
            }
        }
    }
    if (i < n && s[i] == '.') {
        if (++i >= n || s[i] < '0' || s[i] > '9')
            goto bad;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            if (m == 0 && s[i] == '0') {
                e10--;
            } else if (nd < 19) {
                m = m * 10 + (uint64_t)(s[i] - '0');
                nd++;
                e10--;
            } else {
                trunc |= s[i] != '0';
            }
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        bool eneg = false;
        int ev = 0;
        if (++i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        if (i >= n || s[i] < '0' || s[i] > '9')
            goto bad;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            ev = ev < 100000 ? ev * 10 + (s[i] - '0') : ev;
        e10 += eneg ? -ev : ev;
    }
    d->i = i;
    if (m == 0) {
        if (dbl)
            *od = neg ? -0.0 : 0.0;
        else
            *of = neg ? -0.0f : 0.0f;
        return 0;
    }
    if (!dbl && !trunc && m <= (1u << 24) && e10 >= -10 && e10 <= 10) {
        float f = (float)m;
        f = e10 >= 0 ? f * g_pow10f[e10] : f / g_pow10f[-e10];
        *of = neg ? -f : f;
        return 0;
    }
    if (!dbl && !trunc && m <= ((uint64_t)1 << 53) && e10 >= -22 && e10 <= 22) {
        /* The correctly rounded double, then float: rounding twice errs only when the
         * double falls exactly on a midpoint between two floats (any other midpoint
         * between it and the decimal would be a nearer double). The double lies in
         * [1e-22, 1e38], where floats are normal: a midpoint has its 29 low bits 1000...0. */
        double v = (double)m;
        v = e10 >= 0 ? v * g_pow10d[e10] : v / g_pow10d[-e10];
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        if ((bits & 0x1FFFFFFFu) != 0x10000000u && v < 3.4028234663852886e38) {
            float f = (float)v;
            *of = neg ? -f : f;
            return 0;
        }
    }
    if (dbl && !trunc && m <= ((uint64_t)1 << 53) && e10 >= -22 && e10 <= 22) {
        double v = (double)m;
        v = e10 >= 0 ? v * g_pow10d[e10] : v / g_pow10d[-e10];
        *od = neg ? -v : v;
        return 0;
    }
    /* The slow exact path: a NUL-terminated copy for strtof/strtod. */
    size_t len = i - start;
    char small[80], *buf = small;
    if (len >= sizeof small && !(buf = dab_malloc(len + 1)))
        return dab_err_set(d->err, DAB_ENOMEM, "out of memory reading a number");
    memcpy(buf, s + start, len);
    buf[len] = 0;
    errno = 0;
    bool inf;
    if (dbl) {
        *od = strtod(buf, NULL);
        inf = *od > 1.7976931348623157e308 || *od < -1.7976931348623157e308;
    } else {
        *of = strtof(buf, NULL);
        inf = *of > 3.40282347e38f || *of < -3.40282347e38f;
    }
    if (buf != small)
        dab_free(buf);
    if (inf) {
        char sn[SNIPPET + 1];
        snippet(d, start, sn);
        return dab_err_set(d->err, DAB_ERANGE, "%s: element %lld (%s) is out of range for %s",
                           c->label, (long long)k, sn, dbl ? "FP64" : "FP32");
    }
    return 0;
bad:
    d->i = i;
    return unexpected(d);
}

/* Stores the scalar at the cursor as element k of the input's tensor. */
static int store_elem(dec_t *d, in_ctx_t *c, int64_t k)
{
    dab_tensor_t *t = &c->in->tensor;
    char ch = d->s[d->i];
    bool is_num = ch == '-' || (ch >= '0' && ch <= '9');
    int rc;
    switch (t->dtype) {
    case DAB_DT_FLOAT:
        if (!is_num)
            return kind_error(d, c, k);
        return parse_float(d, c, k, false, (float *)t->data + k, NULL);
    case DAB_DT_DOUBLE:
        if (!is_num)
            return kind_error(d, c, k);
        return parse_float(d, c, k, true, NULL, (double *)t->data + k);
    case DAB_DT_BOOL:
        if (ch != 't' && ch != 'f')
            return kind_error(d, c, k);
        ((uint8_t *)t->data)[k] = ch == 't';
        return literal(d, ch == 't' ? "true" : "false");
    case DAB_DT_STRING: {
        if (ch != '"')
            return kind_error(d, c, k);
        size_t start, len;
        bool esc;
        if ((rc = scan_string(d, &start, &len, &esc)))
            return rc;
        dab_str_t *str = (dab_str_t *)t->data + k;
        if (len > d->lim.max_total_bytes - d->r->tensor_bytes)
            return dab_err_set(d->err, DAB_ELIMIT,
                               "%s: its strings exceed the limit of %zu tensor bytes", c->label,
                               d->lim.max_total_bytes);
        d->r->tensor_bytes += len;
        if (!esc) {
            str->ptr = d->s + start;
            str->len = len;
            return 0;
        }
        char *p = arena_alloc(d->a, len, 1);
        if (!p)
            return dab_err_set(d->err, DAB_ENOMEM, "%s: out of memory for its strings", c->label);
        str->ptr = p;
        str->len = unescape(d->s + start, len, p);
        return 0;
    }
    default: break;
    }
    if (!is_num)
        return kind_error(d, c, k);
    size_t start = d->i;
    bool neg;
    uint64_t mag = 0;
    if ((rc = parse_int(d, c, k, &neg, &mag)))
        return rc;
    uint64_t max_pos;
    switch (t->dtype) {
    case DAB_DT_INT8: max_pos = INT8_MAX; break;
    case DAB_DT_INT16: max_pos = INT16_MAX; break;
    case DAB_DT_INT32: max_pos = INT32_MAX; break;
    case DAB_DT_INT64: max_pos = INT64_MAX; break;
    case DAB_DT_UINT8: max_pos = UINT8_MAX; break;
    case DAB_DT_UINT16: max_pos = UINT16_MAX; break;
    case DAB_DT_UINT32: max_pos = UINT32_MAX; break;
    default: max_pos = UINT64_MAX; break;
    }
    bool is_signed = t->dtype == DAB_DT_INT8 || t->dtype == DAB_DT_INT16 ||
                     t->dtype == DAB_DT_INT32 || t->dtype == DAB_DT_INT64;
    bool ok = neg ? (is_signed ? mag <= max_pos + 1 : mag == 0) : mag <= max_pos;
    if (!ok) {
        char sn[SNIPPET + 1];
        snippet(d, start, sn);
        return dab_err_set(d->err, DAB_ERANGE, "%s: element %lld (%s) is out of range for %s",
                           c->label, (long long)k, sn, dab_v2_dtype_name(t->dtype));
    }
    uint64_t u = neg ? (uint64_t)0 - mag : mag; /* two's complement for negatives */
    switch (t->dtype) {
    case DAB_DT_INT8:
    case DAB_DT_UINT8: ((uint8_t *)t->data)[k] = (uint8_t)u; break;
    case DAB_DT_INT16:
    case DAB_DT_UINT16: ((uint16_t *)t->data)[k] = (uint16_t)u; break;
    case DAB_DT_INT32:
    case DAB_DT_UINT32: ((uint32_t *)t->data)[k] = (uint32_t)u; break;
    default: ((uint64_t *)t->data)[k] = u; break;
    }
    return 0;
}

/*
 * Checks the input's shape against the limits and counts its bytes; for JSON data also
 * against the text left (each element takes at least two bytes with its separator) and
 * allocates the buffer. Nothing sized by the request is allocated before these checks.
 */
static int prepare_tensor(dec_t *d, in_ctx_t *c, bool json_data, size_t text_left)
{
    dab_tensor_t *t = &c->in->tensor;
    if (d->lim.check_input && c->in->name) {
        int rc = d->lim.check_input(d->lim.check_user, c->in->name, t, d->err);
        if (rc)
            return rc;
    }
    char shape[160];
    fmt_shape(t, shape, sizeof shape);
    int64_t numel = 1;
    bool over = false;
    for (int k = 0; k < t->rank; k++)
        if (t->dims[k] > d->lim.max_elements || dab_mul_i64(numel, t->dims[k], &numel) ||
            numel > d->lim.max_elements)
            over = true;
    if (over)
        return dab_err_set(d->err, DAB_ELIMIT,
                           "%s: shape %s has more than %lld elements, the limit", c->label, shape,
                           (long long)d->lim.max_elements);
    c->numel = numel;
    size_t esize = t->dtype == DAB_DT_STRING ? sizeof(dab_str_t) : dab_dtype_size(t->dtype);
    size_t bytes = (size_t)numel * esize; /* numel <= max_elements keeps this small */
    if (json_data && (uint64_t)numel > text_left / 2 + 1)
        return dab_err_set(d->err, DAB_ESHAPE,
                           "%s: shape %s needs %lld values, more than the %zu bytes of JSON left "
                           "can hold",
                           c->label, shape, (long long)numel, text_left);
    if (!json_data && t->dtype == DAB_DT_STRING) {
        if ((uint64_t)numel > (uint64_t)c->in->binary_size_bytes / 4)
            return dab_err_set(d->err, DAB_ESHAPE,
                               "%s: shape %s needs %lld BYTES elements, but %lld bytes of binary "
                               "data hold at most %lld",
                               c->label, shape, (long long)numel,
                               (long long)c->in->binary_size_bytes,
                               (long long)(c->in->binary_size_bytes / 4));
        bytes += (size_t)c->in->binary_size_bytes;
    }
    if (bytes > d->lim.max_total_bytes - d->r->tensor_bytes)
        return dab_err_set(d->err, DAB_ELIMIT,
                           "%s: shape %s of %s needs %zu bytes, which with the other inputs "
                           "exceeds the limit of %zu bytes",
                           c->label, shape, dab_v2_dtype_name(t->dtype), bytes,
                           d->lim.max_total_bytes);
    d->r->tensor_bytes += bytes;
    if (json_data) {
        size_t alloc = (size_t)numel * esize;
        t->data = arena_alloc(d->a, alloc, 64);
        if (!t->data)
            return dab_err_set(d->err, DAB_ENOMEM, "%s: out of memory for %zu bytes", c->label,
                               alloc);
    }
    return 0;
}

/* Parses the "data" value at the cursor (flat or nested arrays) into the tensor. */
static int parse_data(dec_t *d, in_ctx_t *c)
{
    dab_tensor_t *t = &c->in->tensor;
    if (t->dtype == DAB_DT_FLOAT16 || t->dtype == DAB_DT_BFLOAT16)
        return dab_err_set(d->err, DAB_EUNSUPPORTED,
                           "%s: %s data cannot be sent as JSON; send it as binary data "
                           "(parameters.binary_data_size)",
                           c->label, dab_v2_dtype_name(t->dtype));
    skip_ws(d);
    int rc = prepare_tensor(d, c, true, d->n - d->i);
    if (rc)
        return rc;
    int64_t count = 0;
    int depth = 0;
    for (;;) {
        skip_ws(d);
        if (d->i >= d->n)
            return unexpected(d);
        if (d->s[d->i] == '[') {
            if (++depth > MAX_NESTING)
                return dab_err_set(d->err, DAB_EFORMAT,
                                   "%s: 'data' nests more than %d arrays deep at byte %zu",
                                   c->label, MAX_NESTING, d->i);
            d->i++;
            skip_ws(d);
            if (d->i < d->n && d->s[d->i] == ']') {
                d->i++;
                depth--;
            } else {
                continue;
            }
        } else {
            if (count < c->numel)
                rc = store_elem(d, c, count);
            else
                rc = json_value(d, NULL, depth);
            if (rc)
                return rc;
            count++;
        }
        /* After a value: close arrays until a ',' starts the next value. */
        for (;;) {
            if (depth == 0)
                goto done;
            skip_ws(d);
            if (d->i < d->n && d->s[d->i] == ',') {
                d->i++;
                break;
            }
            if (d->i < d->n && d->s[d->i] == ']') {
                d->i++;
                depth--;
                continue;
            }
            return unexpected(d);
        }
    }
done:
    if (count != c->numel) {
        char shape[160];
        fmt_shape(t, shape, sizeof shape);
        return dab_err_set(d->err, DAB_ESHAPE, "%s: shape %s needs %lld values, got %lld",
                           c->label, shape, (long long)c->numel, (long long)count);
    }
    return 0;
}

/* ------------------------------------------------------------------ the request object */

static int parse_shape(dec_t *d, in_ctx_t *c)
{
    dab_tensor_t *t = &c->in->tensor;
    skip_ws(d);
    if (d->i < d->n && d->s[d->i] != '[')
        return dab_err_set(d->err, DAB_EINVAL,
                           "%s: 'shape' must be an array of integers; found %s at byte %zu",
                           c->label, value_kind(d), d->i);
    int rc = expect(d, '[');
    if (rc)
        return rc;
    t->rank = 0;
    skip_ws(d);
    if (d->i < d->n && d->s[d->i] == ']') {
        d->i++;
        return 0;
    }
    for (;;) {
        skip_ws(d);
        if (d->i >= d->n)
            return unexpected(d);
        char ch = d->s[d->i];
        if (ch != '-' && (ch < '0' || ch > '9'))
            return dab_err_set(d->err, DAB_EINVAL,
                               "%s: 'shape' must be an array of integers; found %s at byte %zu",
                               c->label, value_kind(d), d->i);
        if (t->rank >= d->lim.max_rank)
            return dab_err_set(d->err, DAB_ELIMIT,
                               "%s: shape has more than %d dimensions, the limit", c->label,
                               d->lim.max_rank);
        size_t start = d->i;
        num_t nm;
        if ((rc = scan_number(d, &nm)))
            return rc;
        char sn[SNIPPET + 1];
        snippet(d, start, sn);
        errno = 0;
        char buf[32];
        long long v = -1;
        if (nm.is_int && nm.len < sizeof buf) {
            memcpy(buf, d->s + start, nm.len);
            buf[nm.len] = 0;
            v = strtoll(buf, NULL, 10);
        }
        if (!nm.is_int || errno || v < 0)
            return dab_err_set(d->err, DAB_EINVAL,
                               "%s: shape dimension %d is %s; dimensions must be non-negative "
                               "integers",
                               c->label, t->rank, sn);
        t->dims[t->rank++] = v;
        skip_ws(d);
        if (d->i < d->n && d->s[d->i] == ',') {
            d->i++;
            continue;
        }
        return expect(d, ']');
    }
}

static void set_label(in_ctx_t *c, const char *kind)
{
    if (c->have_name) {
        char q[NAME_IN_MSG + 8];
        quote_name(q, sizeof q, c->in->name, strlen(c->in->name));
        snprintf(c->label, sizeof c->label, "%s '%s'", kind, q);
    } else {
        snprintf(c->label, sizeof c->label, "%s %d", kind, c->index);
    }
}

/* After the input object: required fields, binary size, deferred data. */
static int finish_input(dec_t *d, in_ctx_t *c)
{
    dab_v2_input_t *in = c->in;
    if (!c->have_name)
        return dab_err_set(d->err, DAB_EINVAL, "input %d has no 'name'", c->index);
    if (!c->have_dtype)
        return dab_err_set(d->err, DAB_EINVAL, "%s has no 'datatype'", c->label);
    if (!c->have_shape)
        return dab_err_set(d->err, DAB_EINVAL, "%s has no 'shape'", c->label);
    if (in->parameters) {
        if (json_object_get(in->parameters, "shared_memory_region"))
            return dab_err_set(d->err, DAB_EUNSUPPORTED,
                               "%s: shared-memory inputs are not supported", c->label);
        json_t *bs = json_object_get(in->parameters, "binary_data_size");
        if (bs) {
            if (!json_is_integer(bs) || json_integer_value(bs) < 0)
                return dab_err_set(d->err, DAB_EINVAL,
                                   "%s: parameters.binary_data_size must be a non-negative "
                                   "integer",
                                   c->label);
            in->binary_size_bytes = json_integer_value(bs);
        }
    }
    for (int k = 0; k < c->index; k++)
        if (strcmp(d->r->inputs[k].name, in->name) == 0)
            return dab_err_set(d->err, DAB_EINVAL, "%s appears twice in 'inputs'", c->label);
    if (in->binary_size_bytes >= 0) {
        if (c->have_data)
            return dab_err_set(d->err, DAB_EINVAL,
                               "%s has both 'data' and parameters.binary_data_size", c->label);
        return prepare_tensor(d, c, false, 0);
    }
    if (!c->have_data)
        return dab_err_set(d->err, DAB_EINVAL, "%s has no 'data' and no binary_data_size",
                           c->label);
    if (c->data_deferred) {
        size_t resume = d->i;
        d->i = c->data_at;
        int rc = parse_data(d, c);
        d->i = resume;
        return rc;
    }
    return 0;
}

static int parse_input(dec_t *d, int index)
{
    if (index >= d->lim.max_inputs)
        return dab_err_set(d->err, DAB_ELIMIT, "the request has more than %d inputs, the limit",
                           d->lim.max_inputs);
    dab_v2_request_t *r = d->r;
    if (index >= d->cap_inputs) {
        int cap = d->cap_inputs ? d->cap_inputs * 2 : 4;
        dab_v2_input_t *a = arena_alloc(d->a, (size_t)cap * sizeof *a, 8);
        if (!a)
            return dab_err_set(d->err, DAB_ENOMEM, "out of memory for the inputs");
        if (r->n_inputs)
            memcpy(a, r->inputs, (size_t)r->n_inputs * sizeof *a);
        r->inputs = a;
        d->cap_inputs = cap;
    }
    in_ctx_t c = {.index = index, .in = &r->inputs[index]};
    memset(c.in, 0, sizeof *c.in);
    c.in->binary_size_bytes = -1;
    c.in->name = "";
    r->n_inputs = index + 1;
    set_label(&c, "input");
    int rc = expect(d, '{');
    if (rc)
        return rc;
    skip_ws(d);
    if (d->i < d->n && d->s[d->i] == '}') {
        d->i++;
        return finish_input(d, &c);
    }
    for (;;) {
        char key[32];
        size_t klen;
        if ((rc = read_key(d, key, sizeof key, &klen)))
            return rc;
        bool *seen = NULL;
        if (key_is(key, klen, "name"))
            seen = &c.have_name;
        else if (key_is(key, klen, "shape"))
            seen = &c.have_shape;
        else if (key_is(key, klen, "datatype"))
            seen = &c.have_dtype;
        else if (key_is(key, klen, "data"))
            seen = &c.have_data;
        else if (key_is(key, klen, "parameters"))
            seen = &c.have_params;
        if (seen && *seen)
            return dab_err_set(d->err, DAB_EINVAL, "%s: field '%s' appears twice", c.label, key);
        if (seen)
            *seen = true;
        if (key_is(key, klen, "name")) {
            size_t len;
            char what[48];
            snprintf(what, sizeof what, "the name of input %d", index);
            if ((rc = string_copy(d, what, &c.in->name, &len)))
                return rc;
            if (!len)
                return dab_err_set(d->err, DAB_EINVAL, "input %d has an empty 'name'", index);
            set_label(&c, "input");
        } else if (key_is(key, klen, "shape")) {
            rc = parse_shape(d, &c);
        } else if (key_is(key, klen, "datatype")) {
            size_t start, len;
            bool esc;
            skip_ws(d);
            if (d->i >= d->n || d->s[d->i] != '"')
                return d->i >= d->n ? unexpected(d)
                                    : dab_err_set(d->err, DAB_EINVAL,
                                                  "%s: 'datatype' must be a string", c.label);
            if ((rc = scan_string(d, &start, &len, &esc)))
                return rc;
            char name[16] = "";
            size_t nlen = 0;
            if (len < sizeof name && esc)
                nlen = unescape(d->s + start, len, name);
            else if (len < sizeof name)
                memcpy(name, d->s + start, nlen = len);
            c.in->tensor.dtype = len < sizeof name ? dab_v2_dtype_from_name(name, nlen)
                                                   : DAB_DT_UNDEFINED;
            if (c.in->tensor.dtype == DAB_DT_UNDEFINED) {
                char q[NAME_IN_MSG + 8];
                quote_name(q, sizeof q, d->s + start, len);
                return dab_err_set(d->err, DAB_EINVAL, "%s: datatype '%s' is not a v2 datatype",
                                   c.label, q);
            }
        } else if (key_is(key, klen, "parameters")) {
            char what[sizeof c.label + 16];
            snprintf(what, sizeof what, "%s: 'parameters'", c.label);
            rc = parameters(d, what, &c.in->parameters);
        } else if (key_is(key, klen, "data")) {
            if (c.have_name && c.have_shape && c.have_dtype) {
                rc = parse_data(d, &c);
            } else {
                skip_ws(d);
                c.data_at = d->i;
                c.data_deferred = true;
                rc = json_value(d, NULL, 2);
            }
        } else {
            rc = json_value(d, NULL, 2);
        }
        if (rc)
            return rc;
        skip_ws(d);
        if (d->i < d->n && d->s[d->i] == ',') {
            d->i++;
            continue;
        }
        if ((rc = expect(d, '}')))
            return rc;
        return finish_input(d, &c);
    }
}

static int parse_output(dec_t *d, int index)
{
    dab_v2_request_t *r = d->r;
    if (index >= d->lim.max_inputs)
        return dab_err_set(d->err, DAB_ELIMIT,
                           "the request names more than %d outputs, the limit", d->lim.max_inputs);
    if (index >= d->cap_outputs) {
        int cap = d->cap_outputs ? d->cap_outputs * 2 : 4;
        dab_v2_requested_output_t *a = arena_alloc(d->a, (size_t)cap * sizeof *a, 8);
        if (!a)
            return dab_err_set(d->err, DAB_ENOMEM, "out of memory for the outputs");
        if (r->n_outputs)
            memcpy(a, r->outputs, (size_t)r->n_outputs * sizeof *a);
        r->outputs = a;
        d->cap_outputs = cap;
    }
    dab_v2_requested_output_t *o = &r->outputs[index];
    memset(o, 0, sizeof *o);
    o->name = "";
    o->binary_data = -1;
    r->n_outputs = index + 1;
    bool have_name = false, have_params = false;
    char label[NAME_IN_MSG + 32];
    snprintf(label, sizeof label, "output %d", index);
    int rc = expect(d, '{');
    if (rc)
        return rc;
    skip_ws(d);
    if (d->i < d->n && d->s[d->i] == '}') {
        d->i++;
        return dab_err_set(d->err, DAB_EINVAL, "output %d has no 'name'", index);
    }
    for (;;) {
        char key[32];
        size_t klen;
        if ((rc = read_key(d, key, sizeof key, &klen)))
            return rc;
        if (key_is(key, klen, "name")) {
            size_t len;
            char what[48];
            if (have_name)
                return dab_err_set(d->err, DAB_EINVAL, "%s: field 'name' appears twice", label);
            have_name = true;
            snprintf(what, sizeof what, "the name of output %d", index);
            if ((rc = string_copy(d, what, &o->name, &len)))
                return rc;
            char q[NAME_IN_MSG + 8];
            quote_name(q, sizeof q, o->name, len);
            snprintf(label, sizeof label, "output '%s'", q);
        } else if (key_is(key, klen, "parameters")) {
            if (have_params)
                return dab_err_set(d->err, DAB_EINVAL, "%s: field 'parameters' appears twice",
                                   label);
            have_params = true;
            char what[sizeof label + 16];
            snprintf(what, sizeof what, "%s: 'parameters'", label);
            rc = parameters(d, what, &o->parameters);
        } else {
            rc = json_value(d, NULL, 2);
        }
        if (rc)
            return rc;
        skip_ws(d);
        if (d->i < d->n && d->s[d->i] == ',') {
            d->i++;
            continue;
        }
        if ((rc = expect(d, '}')))
            return rc;
        break;
    }
    if (!have_name)
        return dab_err_set(d->err, DAB_EINVAL, "output %d has no 'name'", index);
    if (o->parameters) {
        json_t *bd = json_object_get(o->parameters, "binary_data");
        if (bd && !json_is_boolean(bd))
            return dab_err_set(d->err, DAB_EINVAL,
                               "%s: parameters.binary_data must be true or false", label);
        if (bd)
            o->binary_data = json_is_true(bd);
    }
    for (int k = 0; k < index; k++)
        if (strcmp(r->outputs[k].name, o->name) == 0)
            return dab_err_set(d->err, DAB_EINVAL, "%s is requested twice", label);
    return 0;
}

/* Parses an array of objects at the cursor, calling each() for each element. */
static int parse_list(dec_t *d, const char *field, int (*each)(dec_t *, int))
{
    skip_ws(d);
    if (d->i < d->n && d->s[d->i] != '[')
        return dab_err_set(d->err, DAB_EINVAL, "'%s' must be an array (byte %zu)", field, d->i);
    int rc = expect(d, '[');
    if (rc)
        return rc;
    skip_ws(d);
    if (d->i < d->n && d->s[d->i] == ']') {
        d->i++;
        return 0;
    }
    for (int k = 0;; k++) {
        skip_ws(d);
        if (d->i < d->n && d->s[d->i] != '{')
            return dab_err_set(d->err, DAB_EINVAL,
                               "'%s' must hold objects; element %d is %s (byte %zu)", field, k,
                               value_kind(d), d->i);
        if ((rc = each(d, k)))
            return rc;
        skip_ws(d);
        if (d->i < d->n && d->s[d->i] == ',') {
            d->i++;
            continue;
        }
        return expect(d, ']');
    }
}

static int parse_request(dec_t *d)
{
    dab_v2_request_t *r = d->r;
    bool have_id = false, have_params = false, have_inputs = false, have_outputs = false;
    int rc = expect(d, '{');
    if (rc)
        return rc;
    skip_ws(d);
    if (d->i < d->n && d->s[d->i] == '}') {
        d->i++;
    } else {
        for (;;) {
            char key[32];
            size_t klen;
            if ((rc = read_key(d, key, sizeof key, &klen)))
                return rc;
            bool *seen = key_is(key, klen, "id")           ? &have_id
                         : key_is(key, klen, "parameters") ? &have_params
                         : key_is(key, klen, "inputs")     ? &have_inputs
                         : key_is(key, klen, "outputs")    ? &have_outputs
                                                           : NULL;
            if (seen && *seen)
                return dab_err_set(d->err, DAB_EINVAL, "the request's '%s' appears twice", key);
            if (seen)
                *seen = true;
            if (seen == &have_id)
                rc = string_copy(d, "the request's 'id'", &r->id, &r->id_len);
            else if (seen == &have_params)
                rc = parameters(d, "the request's 'parameters'", &r->parameters);
            else if (seen == &have_inputs)
                rc = parse_list(d, "inputs", parse_input);
            else if (seen == &have_outputs)
                rc = parse_list(d, "outputs", parse_output);
            else
                rc = json_value(d, NULL, 1);
            if (rc)
                return rc;
            skip_ws(d);
            if (d->i < d->n && d->s[d->i] == ',') {
                d->i++;
                continue;
            }
            if ((rc = expect(d, '}')))
                return rc;
            break;
        }
    }
    skip_ws(d);
    if (d->i < d->n)
        return unexpected(d);
    if (!have_inputs)
        return dab_err_set(d->err, DAB_EINVAL, "the request has no 'inputs'");
    if (r->parameters) {
        json_t *bo = json_object_get(r->parameters, "binary_data_output");
        if (bo && !json_is_boolean(bo))
            return dab_err_set(d->err, DAB_EINVAL,
                               "parameters.binary_data_output must be true or false");
        if (bo)
            r->binary_data_output = json_is_true(bo);
    }
    return 0;
}

/* ------------------------------------------------------------------ binary data */

/*
 * Binds binary slice p[0..size) to input c: fixed-size data points into the body when its
 * address suits the element type, else is copied into the arena; BYTES elements are
 * parsed (4-byte little-endian length, then the bytes) and point into the body.
 */
static int bind_binary(dec_t *d, in_ctx_t *c, const char *p, size_t size)
{
    dab_tensor_t *t = &c->in->tensor;
    char shape[160];
    fmt_shape(t, shape, sizeof shape);
    if (t->dtype == DAB_DT_STRING) {
        dab_str_t *strs = arena_alloc(d->a, (size_t)c->numel * sizeof *strs, 64);
        if (!strs)
            return dab_err_set(d->err, DAB_ENOMEM, "%s: out of memory", c->label);
        size_t off = 0;
        int64_t k = 0;
        while (off < size) {
            if (size - off < 4)
                return dab_err_set(d->err, DAB_EINVAL,
                                   "%s: BYTES element %lld has a truncated length prefix (%zu of "
                                   "4 bytes)",
                                   c->label, (long long)k, size - off);
            uint32_t len;
            memcpy(&len, p + off, 4);
            off += 4;
            if (len > size - off)
                return dab_err_set(d->err, DAB_EINVAL,
                                   "%s: BYTES element %lld says %u bytes, but only %zu remain in "
                                   "its binary data",
                                   c->label, (long long)k, len, size - off);
            if (k >= c->numel)
                return dab_err_set(d->err, DAB_ESHAPE,
                                   "%s: shape %s needs %lld BYTES elements, but its binary data "
                                   "holds more",
                                   c->label, shape, (long long)c->numel);
            strs[k].ptr = p + off;
            strs[k].len = len;
            off += len;
            k++;
        }
        if (k != c->numel)
            return dab_err_set(d->err, DAB_ESHAPE,
                               "%s: shape %s needs %lld BYTES elements, got %lld", c->label,
                               shape, (long long)c->numel, (long long)k);
        t->data = strs;
        return 0;
    }
    size_t esize = dab_dtype_size(t->dtype);
    size_t need = (size_t)c->numel * esize;
    if (size != need)
        return dab_err_set(d->err, DAB_ESHAPE, "%s: shape %s of %s needs %zu bytes, but %s %zu",
                           c->label, shape, dab_v2_dtype_name(t->dtype), need,
                           c->raw ? "the raw body has" : "binary_data_size is", size);
    if (t->dtype == DAB_DT_BOOL)
        for (size_t k = 0; k < size; k++)
            if ((unsigned char)p[k] > 1)
                return dab_err_set(d->err, DAB_EINVAL,
                                   "%s: BOOL element %zu is byte %u; it must be 0 or 1", c->label,
                                   k, (unsigned char)p[k]);
    if ((uintptr_t)p % esize == 0) {
        t->data = (void *)p;
        c->in->in_body = true;
        return 0;
    }
    if (!(t->data = arena_alloc(d->a, size, 64)))
        return dab_err_set(d->err, DAB_ENOMEM, "%s: out of memory for %zu bytes", c->label, size);
    memcpy(t->data, p, size);
    return 0;
}

static int bind_all_binary(dec_t *d, const char *body, size_t body_len)
{
    dab_v2_request_t *r = d->r;
    size_t off = d->n;
    for (int k = 0; k < r->n_inputs; k++) {
        dab_v2_input_t *in = &r->inputs[k];
        if (in->binary_size_bytes < 0)
            continue;
        in_ctx_t c = {.index = k, .in = in, .have_name = true};
        set_label(&c, "input");
        c.numel = dab_tensor_numel(&in->tensor);
        size_t size = (size_t)in->binary_size_bytes;
        if ((uint64_t)in->binary_size_bytes > body_len - off)
            return dab_err_set(d->err, DAB_EINVAL,
                               "%s: binary_data_size is %zu bytes, but only %zu bytes of binary "
                               "data remain after the JSON header and the inputs before it",
                               c.label, size, body_len - off);
        int rc = bind_binary(d, &c, body + off, size);
        if (rc)
            return rc;
        off += size;
    }
    if (off != body_len)
        return dab_err_set(d->err, DAB_EINVAL,
                           "the body has %zu bytes after the %zu-byte JSON header, but the "
                           "inputs' binary_data_size add up to %zu",
                           body_len - d->n, d->n, off - d->n);
    return 0;
}

/* ------------------------------------------------------------------ entry points */

int dab_v2_request_decode(const void *body, size_t body_len, int64_t header_bytes,
                          const dab_v2_limits_t *lim, dab_v2_request_t **out, dab_err_t *err)
{
    *out = NULL;
    if (!body && body_len)
        return dab_err_set(err, DAB_EINVAL, "no request body");
    if (header_bytes == 0)
        return dab_err_set(err, DAB_EINVAL,
                           "Inference-Header-Content-Length is 0: the body is raw binary data "
                           "for a single input, which needs the model's input metadata");
    if (header_bytes > 0 && (uint64_t)header_bytes > body_len)
        return dab_err_set(err, DAB_EINVAL,
                           "Inference-Header-Content-Length is %lld, but the body has only %zu "
                           "bytes",
                           (long long)header_bytes, body_len);
    if (body_len == 0)
        return dab_err_set(err, DAB_EFORMAT, "the request body is empty");
    dab_v2_request_t *r = request_new();
    if (!r)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for a request");
    dec_t d = {
        .s = body,
        .n = header_bytes > 0 ? (size_t)header_bytes : body_len,
        .err = err,
        .lim = limits_resolve(lim),
        .r = r,
        .a = r->arena_,
    };
    int rc = parse_request(&d);
    if (!rc)
        rc = bind_all_binary(&d, body, body_len);
    if (rc) {
        dab_v2_request_free(r);
        return rc;
    }
    r->json_bytes = d.n;
    *out = r;
    return 0;
}

int dab_v2_request_from_raw(const void *body, size_t body_len, const char *input_name,
                            dab_dtype_t dt, int rank, const int64_t *dims,
                            const dab_v2_limits_t *lim, dab_v2_request_t **out, dab_err_t *err)
{
    *out = NULL;
    if (!dab_v2_dtype_name(dt) || dt == DAB_DT_UNDEFINED)
        return dab_err_set(err, DAB_EUNSUPPORTED, "input '%.64s' has data type %s, which v2 "
                           "cannot carry", input_name, dab_dtype_name(dt));
    if (!body && body_len)
        return dab_err_set(err, DAB_EINVAL, "no request body");
    dab_v2_limits_t l = limits_resolve(lim);
    static const int64_t flat[1] = {-1};
    if (rank < 0) { /* rank unknown: one flat dimension */
        rank = 1;
        dims = flat;
    }
    if (rank > l.max_rank)
        return dab_err_set(err, DAB_ELIMIT, "input '%.64s' has rank %d; at most %d is allowed",
                           input_name, rank, l.max_rank);
    dab_v2_request_t *r = request_new();
    if (!r)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for a request");
    dec_t d = {.s = body, .n = 0, .err = err, .lim = l, .r = r, .a = r->arena_};
    int rc = 0;
    size_t nlen = strlen(input_name);
    char *name = arena_alloc(d.a, nlen + 1, 1);
    r->inputs = arena_alloc(d.a, sizeof *r->inputs, 8);
    if (!name || !r->inputs) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory for a request");
        goto fail;
    }
    memcpy(name, input_name, nlen + 1);
    dab_v2_input_t *in = r->inputs;
    memset(in, 0, sizeof *in);
    in->name = name;
    in->binary_size_bytes = (int64_t)body_len;
    r->n_inputs = 1;
    r->binary_data_output = 1;
    in_ctx_t c = {.index = 0, .in = in, .have_name = true, .raw = true};
    set_label(&c, "input");
    /* Resolve a -1 dimension from the body's size. */
    int wild = -1;
    int64_t known = 1;
    for (int k = 0; k < rank; k++) {
        if (dims[k] == -1 && wild < 0) {
            wild = k;
            continue;
        }
        if (dims[k] < 0 || dab_mul_i64(known, dims[k], &known) || known > l.max_elements) {
            rc = dab_err_set(err, dims[k] < 0 ? DAB_EINVAL : DAB_ELIMIT,
                             "%s: its shape cannot be used for a raw binary body (dimension %d "
                             "is %lld)",
                             c.label, k, (long long)dims[k]);
            goto fail;
        }
    }
    dab_tensor_set_shape(&in->tensor, dt, rank, dims);
    if (wild >= 0) {
        int64_t count;
        if (dt == DAB_DT_STRING) {
            count = 0;
            for (size_t off = 0; off < body_len; count++) {
                uint32_t len;
                if (body_len - off < 4)
                    break;
                memcpy(&len, (const char *)body + off, 4);
                off += 4;
                if (len > body_len - off)
                    break;
                off += len;
            }
        } else {
            count = (int64_t)(body_len / dab_dtype_size(dt));
        }
        in->tensor.dims[wild] = known ? count / known : 0;
        if (known == 0 && body_len)
            in->tensor.dims[wild] = 0;
    }
    c.numel = dab_tensor_numel(&in->tensor);
    if ((rc = prepare_tensor(&d, &c, false, 0)))
        goto fail;
    if ((rc = bind_binary(&d, &c, body, body_len)))
        goto fail;
    *out = r;
    return 0;
fail:
    dab_v2_request_free(r);
    return rc;
}
