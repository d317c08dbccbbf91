/*
 * fuzz_cache.c - libFuzzer target for what the cache reads back from Redis: the tensor
 * encoding of cached values (src/cache/codec.c).
 *
 * Any bytes are decoded; a value that decodes is encoded again and decoded once more,
 * and the tensors must come back equal (names, dtypes, shapes, bytes). Anything but a
 * clean DAB_EFORMAT or an equal round trip (a crash, a leak, a sanitizer report, a trap)
 * is a bug. With DAB_FUZZ_SEEDS=dir, seed values are written to dir first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"

static bool same(const dab_tensor_t *a, const dab_tensor_t *b)
{
    if (a->dtype != b->dtype || !dab_shape_equal(a, b))
        return false;
    int64_t n = dab_tensor_numel(a);
    if (a->dtype != DAB_DT_STRING)
        return !memcmp(a->data, b->data, dab_tensor_bytes(a));
    for (int64_t k = 0; k < n; k++) {
        const dab_str_t *x = (const dab_str_t *)a->data + k, *y = (const dab_str_t *)b->data + k;
        if (x->len != y->len || (x->len && memcmp(x->ptr, y->ptr, x->len)))
            return false;
    }
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("DAB_FUZZ_SEEDS");
    if (!dir)
        return 0;
    float f[6] = {1, 2, 3, 4, 5, 6};
    int64_t i = 7;
    dab_str_t s[2] = {{"ab", 2}, {"", 0}};
    dab_tensor_t a = {.dtype = DAB_DT_FLOAT, .rank = 2, .dims = {2, 3}, .data = f};
    dab_tensor_t b = {.dtype = DAB_DT_INT64, .rank = 0, .data = &i};
    dab_tensor_t c = {.dtype = DAB_DT_STRING, .rank = 1, .dims = {2}, .data = s};
    const char *names[] = {"logits", "n", "words"};
    const dab_tensor_t *ts[] = {&a, &b, &c};
    for (int n = 1; n <= 3; n++) {
        dab_cache_val_t *v = NULL;
        if (dab_cache_tensors_encode(n, names, ts, &v, NULL))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/seed-%d", dir, n);
        FILE *fp = fopen(path, "wb");
        if (fp) {
            fwrite(v->data, 1, v->len, fp);
            fclose(fp);
        }
        dab_cache_val_release(v);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dab_cache_val_t *v = dab_cache_val_copy(data, size);
    if (!v)
        return 0;
    dab_cache_tensors_t t;
    dab_err_t err;
    int rc = dab_cache_tensors_decode(v, &t, &err);
    if (rc == 0) {
        const char *names[DAB_CACHE_MAX_TENSORS];
        const dab_tensor_t *ts[DAB_CACHE_MAX_TENSORS];
        for (int i = 0; i < t.n; i++) {
            names[i] = t.names[i];
            ts[i] = &t.tensors[i];
        }
        dab_cache_val_t *again = NULL;
        if (dab_cache_tensors_encode(t.n, names, ts, &again, &err) == 0) {
            dab_cache_tensors_t u;
            if (dab_cache_tensors_decode(again, &u, &err) || u.n != t.n)
                __builtin_trap();
            for (int i = 0; i < t.n; i++)
                if (strcmp(u.names[i], t.names[i]) || !same(&u.tensors[i], &t.tensors[i]))
                    __builtin_trap();
            dab_cache_tensors_release(&u);
            dab_cache_val_release(again);
        } else if (err.code != DAB_ENOMEM) {
            __builtin_trap(); /* what decoded must encode */
        }
        dab_cache_tensors_release(&t);
    } else if (rc != DAB_EFORMAT && rc != DAB_ENOMEM) {
        __builtin_trap();
    }
    dab_cache_val_release(v);
    return 0;
}
