/*
 * key.c - cache keys and values: XXH3-128 over length-prefixed parts, and the
 * refcounted immutable blobs every tier stores.
 */
#define XXH_INLINE_ALL
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

#include "cache.h"

_Static_assert(sizeof(XXH3_state_t) <= sizeof(((dab_keyb_t *)0)->state), "dab_keyb_t too small");
#define ST(kb) ((XXH3_state_t *)(kb)->state)

/* Every part is preceded by its length, so that no two different part lists hash
 * the same bytes. */
void dab_keyb_bytes(dab_keyb_t *kb, const void *p, size_t n)
{
    uint64_t len = n;
    XXH3_128bits_update(ST(kb), &len, sizeof len);
    if (n)
        XXH3_128bits_update(ST(kb), p, n);
}

void dab_keyb_str(dab_keyb_t *kb, const char *s)
{
    dab_keyb_bytes(kb, s ? s : "", s ? strlen(s) : 0);
}

void dab_keyb_u64(dab_keyb_t *kb, uint64_t v)
{
    XXH3_128bits_update(ST(kb), &v, sizeof v);
}

void dab_keyb_init(dab_keyb_t *kb, const char *stage, const char *scope, int64_t version,
                   uint64_t identity)
{
    XXH3_128bits_reset(ST(kb));
    dab_keyb_str(kb, "dabba-cache-key-1");
    dab_keyb_str(kb, stage);
    dab_keyb_str(kb, scope);
    dab_keyb_u64(kb, (uint64_t)version);
    dab_keyb_u64(kb, identity);
}

void dab_keyb_tensor(dab_keyb_t *kb, const char *name, const dab_tensor_t *t)
{
    dab_keyb_str(kb, name);
    dab_keyb_u64(kb, (uint64_t)t->dtype);
    dab_keyb_u64(kb, (uint64_t)t->rank);
    for (int d = 0; d < t->rank; d++)
        dab_keyb_u64(kb, (uint64_t)t->dims[d]);
    if (t->dtype == DAB_DT_STRING) {
        int64_t n = dab_tensor_numel(t);
        const dab_str_t *s = t->data;
        for (int64_t i = 0; i < n; i++)
            dab_keyb_bytes(kb, s[i].ptr, s[i].len);
    } else {
        dab_keyb_bytes(kb, t->data, dab_tensor_bytes(t));
    }
}

dab_cache_key_t dab_keyb_final(const dab_keyb_t *kb)
{
    XXH128_hash_t h = XXH3_128bits_digest((const XXH3_state_t *)kb->state);
    return (dab_cache_key_t){.lo = h.low64, .hi = h.high64};
}

void dab_cache_key_hex(const dab_cache_key_t *key, char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)key->lo, (unsigned long long)key->hi);
}

/* ---- values ---- */

dab_cache_val_t *dab_cache_val_new(size_t len)
{
    /* One allocation: the header, padded to 64 bytes, then the data. */
    size_t head = (sizeof(dab_cache_val_t) + 63) & ~(size_t)63;
    if (len > SIZE_MAX - head)
        return NULL;
    dab_cache_val_t *v = dab_malloc_aligned(head + len, 64);
    if (!v)
        return NULL;
    atomic_init(&v->refs, 1);
    v->len = len;
    v->data = (uint8_t *)v + head;
    return v;
}

dab_cache_val_t *dab_cache_val_copy(const void *p, size_t len)
{
    dab_cache_val_t *v = dab_cache_val_new(len);
    if (v && len)
        memcpy(v->data, p, len);
    return v;
}

void dab_cache_val_ref(dab_cache_val_t *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void dab_cache_val_release(dab_cache_val_t *v)
{
    if (v && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1)
        dab_free(v);
}
