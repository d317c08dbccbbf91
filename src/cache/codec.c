/*
 * codec.c - the compact binary encoding of named tensors that cached outputs,
 * embeddings and token ids are stored in, on both tiers.
 *
 *   "DBT1" | u32 count
 *   per tensor, starting 8-aligned:
 *     u16 name length | u8 dtype | u8 rank | u32 0 | i64 dims[rank] | u64 data bytes
 *     | name bytes + NUL | zero padding to 16 (from the blob's start) | data
 *   strings: per element u32 length + bytes
 *
 * Little-endian, as dabba's targets are. Decoding trusts nothing: the blob may come
 * from Redis, so every length is checked against what is left before it is used,
 * and the blob must be consumed exactly.
 */
#include <string.h>

#include "cache.h"

#define MAGIC "DBT1"

static size_t align_up(size_t x, size_t a)
{
    return (x + a - 1) & ~(a - 1);
}

/* Bytes of t's data in the encoding. */
static size_t data_bytes(const dab_tensor_t *t)
{
    if (t->dtype != DAB_DT_STRING)
        return dab_tensor_bytes(t);
    size_t n = 0;
    int64_t count = dab_tensor_numel(t);
    const dab_str_t *s = t->data;
    for (int64_t i = 0; i < count; i++)
        n += 4 + s[i].len;
    return n;
}

/* Zeroes the padding from off up to the next multiple of a; returns that offset. */
static size_t pad_to(uint8_t *b, size_t off, size_t a)
{
    size_t to = align_up(off, a);
    memset(b + off, 0, to - off);
    return to;
}

static size_t head_bytes(int rank, size_t name_len)
{
    return 8 + 8 * (size_t)rank + 8 + name_len + 1;
}

int dab_cache_tensors_encode(int n, const char *const *names, const dab_tensor_t *const *tensors,
                             dab_cache_val_t **out, dab_err_t *err)
{
    *out = NULL;
    if (n < 0 || n > DAB_CACHE_MAX_TENSORS)
        return dab_err_set(err, DAB_ELIMIT, "cannot cache %d tensors (at most %d)", n,
                           DAB_CACHE_MAX_TENSORS);
    size_t len = 8;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        if (nl > 65535)
            return dab_err_set(err, DAB_ELIMIT, "tensor name of %zu bytes is too long to cache", nl);
        len = align_up(len, 8);
        len = align_up(len + head_bytes(tensors[i]->rank, nl), 16) + data_bytes(tensors[i]);
    }
    dab_cache_val_t *v = dab_cache_val_new(len);
    if (!v)
        return dab_err_set(err, DAB_ENOMEM, "out of memory encoding %zu bytes for the cache", len);
    /* every byte is written below: the fields, the data, and the padding (zeroed) */
    uint8_t *b = v->data;
    memcpy(b, MAGIC, 4);
    uint32_t count = (uint32_t)n;
    memcpy(b + 4, &count, 4);
    size_t off = 8;
    for (int i = 0; i < n; i++) {
        const dab_tensor_t *t = tensors[i];
        uint16_t nl = (uint16_t)strlen(names[i]);
        uint64_t db = data_bytes(t);
        off = pad_to(b, off, 8);
        memcpy(b + off, &nl, 2);
        b[off + 2] = (uint8_t)t->dtype;
        b[off + 3] = (uint8_t)t->rank;
        memset(b + off + 4, 0, 4);
        off += 8;
        memcpy(b + off, t->dims, 8 * (size_t)t->rank);
        off += 8 * (size_t)t->rank;
        memcpy(b + off, &db, 8);
        off += 8;
        memcpy(b + off, names[i], nl);
        b[off + nl] = 0;
        off = pad_to(b, off + nl + 1, 16);
        if (t->dtype == DAB_DT_STRING) {
            const dab_str_t *s = t->data;
            int64_t count_s = dab_tensor_numel(t);
            for (int64_t k = 0; k < count_s; k++) {
                uint32_t sl = (uint32_t)s[k].len;
                memcpy(b + off, &sl, 4);
                if (sl)
                    memcpy(b + off + 4, s[k].ptr, sl);
                off += 4 + sl;
            }
        } else if (db) {
            memcpy(b + off, t->data, db);
            off += db;
        }
    }
    *out = v;
    return 0;
}

/* Inside dab_cache_tensors_decode: record the error and unwind. */
#define BAD(...)                                 \
    do {                                         \
        rc = dab_err_set(err, __VA_ARGS__);      \
        goto fail;                               \
    } while (0)

int dab_cache_tensors_decode(const dab_cache_val_t *v, dab_cache_tensors_t *out, dab_err_t *err)
{
    int rc;
    const uint8_t *b = v->data;
    size_t len = v->len;
    /* only what is filled below is read: no need to clear the arrays (a hit's path) */
    out->n = 0;
    out->strings = NULL;
    if (len < 8 || memcmp(b, MAGIC, 4))
        BAD(DAB_EFORMAT, "cached value is not a tensor encoding");
    uint32_t count;
    memcpy(&count, b + 4, 4);
    if (count > DAB_CACHE_MAX_TENSORS)
        BAD(DAB_EFORMAT, "cached value claims %u tensors", count);
    /* String tensors need dab_str_t arrays: sized in a first pass. */
    size_t off = 8, str_elems = 0;
    for (int pass = 0; pass < 2; pass++) {
        dab_str_t *strs = out->strings;
        off = 8;
        for (uint32_t i = 0; i < count; i++) {
            off = align_up(off, 8);
            if (off > len || len - off < 8)
                BAD(DAB_EFORMAT, "cached tensor %u is cut short", i);
            uint16_t nl;
            memcpy(&nl, b + off, 2);
            int dtype = b[off + 2], rank = b[off + 3];
            if (!dab_dtype_valid(dtype) || rank > DAB_MAX_RANK)
                BAD(DAB_EFORMAT,
                                   "cached tensor %u has dtype %d and rank %d", i, dtype, rank);
            off += 8;
            if (len - off < head_bytes(rank, nl) - 8)
                BAD(DAB_EFORMAT, "cached tensor %u is cut short", i);
            dab_tensor_t *t = &out->tensors[i];
            t->dtype = dtype;
            t->rank = rank;
            memcpy(t->dims, b + off, 8 * (size_t)rank);
            off += 8 * (size_t)rank;
            uint64_t db;
            memcpy(&db, b + off, 8);
            off += 8;
            const char *name = (const char *)b + off;
            if (name[nl] != '\0' || memchr(name, 0, nl))
                BAD(DAB_EFORMAT, "cached tensor %u has a malformed name", i);
            out->names[i] = name;
            off = align_up(off + nl + 1, 16);
            size_t want;
            if (off > len || dab_shape_check("cached tensor", t->dtype, rank, t->dims, 0, &want, err))
                BAD(DAB_EFORMAT, "cached tensor '%s' has a bad shape", name);
            if (db > len - off)
                BAD(DAB_EFORMAT, "cached tensor '%s' is cut short", name);
            if (t->dtype != DAB_DT_STRING) {
                if (db != want)
                    BAD(DAB_EFORMAT,
                                       "cached tensor '%s' has %llu data bytes, its shape needs %zu",
                                       name, (unsigned long long)db, want);
                t->data = (void *)(b + off);
            } else {
                int64_t n = dab_tensor_numel(t);
                size_t p = off, end = off + db;
                if (pass == 0)
                    str_elems += (size_t)n;
                else
                    t->data = strs;
                for (int64_t k = 0; k < n; k++) {
                    uint32_t sl;
                    if (end - p < 4)
                        BAD(DAB_EFORMAT, "cached strings of '%s' are cut short",
                                           name);
                    memcpy(&sl, b + p, 4);
                    if (end - p - 4 < sl)
                        BAD(DAB_EFORMAT, "cached strings of '%s' are cut short",
                                           name);
                    if (pass == 1)
                        *strs++ = (dab_str_t){.ptr = (const char *)b + p + 4, .len = sl};
                    p += 4 + sl;
                }
                if (p != end)
                    BAD(DAB_EFORMAT, "cached strings of '%s' do not fill it",
                                       name);
            }
            off += db;
        }
        if (off != len)
            BAD(DAB_EFORMAT, "cached value has %zu bytes past its tensors",
                               len - off);
        if (pass == 0) {
            if (!str_elems)
                break;
            out->strings = dab_calloc(str_elems, sizeof(dab_str_t));
            if (!out->strings)
                BAD(DAB_ENOMEM, "out of memory decoding cached strings");
        }
    }
    out->n = (int)count;
    return 0;
fail:
    dab_free(out->strings);
    out->strings = NULL;
    return rc;
}

#undef BAD

void dab_cache_tensors_release(dab_cache_tensors_t *t)
{
    dab_free(t->strings);
    t->strings = NULL;
}
