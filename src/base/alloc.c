/*
 * alloc.c - the counting allocator every heap allocation of dabba goes through.
 *
 * Each block carries a small header (its size and the distance back to the
 * start of the underlying allocation) so that live bytes can be tracked and
 * aligned blocks freed with the same call. Counters are atomics: any thread.
 */
#include "base.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct block_hdr {
    size_t size_bytes;
    size_t offset; /* bytes from the underlying allocation to the user pointer */
} block_hdr_t;

static _Atomic uint64_t g_calls;
static _Atomic uint64_t g_live;
static _Atomic uint64_t g_peak;
static _Atomic uint64_t g_fail_countdown;

#define MIN_ALIGN 64

static int should_fail(void)
{
    uint64_t n = atomic_load_explicit(&g_fail_countdown, memory_order_relaxed);
    while (n > 0) {
        if (atomic_compare_exchange_weak(&g_fail_countdown, &n, n - 1))
            return n == 1;
    }
    return 0;
}

static void account(int64_t delta)
{
    if (delta > 0) {
        atomic_fetch_add(&g_calls, 1);
        uint64_t live = atomic_fetch_add(&g_live, (uint64_t)delta) + (uint64_t)delta;
        uint64_t peak = atomic_load(&g_peak);
        while (live > peak && !atomic_compare_exchange_weak(&g_peak, &peak, live))
            ;
    } else {
        atomic_fetch_sub(&g_live, (uint64_t)(-delta));
    }
}

void *dab_malloc_aligned(size_t size_bytes, size_t alignment)
{
    if (alignment < MIN_ALIGN)
        alignment = MIN_ALIGN;
    if (should_fail())
        return NULL;
    /* The header sits just below the user pointer, inside one alignment unit. */
    if (size_bytes > SIZE_MAX - alignment)
        return NULL;
    void *base = NULL;
    if (posix_memalign(&base, alignment, size_bytes + alignment) != 0)
        return NULL;
    char *user = (char *)base + alignment;
    block_hdr_t *h = (block_hdr_t *)user - 1;
    h->size_bytes = size_bytes;
    h->offset = alignment;
    account((int64_t)size_bytes);
    return user;
}

void *dab_malloc(size_t size_bytes)
{
    return dab_malloc_aligned(size_bytes, MIN_ALIGN);
}

void *dab_calloc(size_t count, size_t size_bytes)
{
    size_t total;
    if (dab_mul_size(count, size_bytes, &total))
        return NULL;
    void *p = dab_malloc(total);
    if (p)
        memset(p, 0, total);
    return p;
}

void dab_free(void *ptr)
{
    if (!ptr)
        return;
    block_hdr_t *h = (block_hdr_t *)ptr - 1;
    account(-(int64_t)h->size_bytes);
    free((char *)ptr - h->offset);
}

void *dab_realloc(void *ptr, size_t size_bytes)
{
    if (!ptr)
        return dab_malloc(size_bytes);
    block_hdr_t *h = (block_hdr_t *)ptr - 1;
    void *p = dab_malloc(size_bytes);
    if (!p)
        return NULL;
    memcpy(p, ptr, DAB_MIN(h->size_bytes, size_bytes));
    dab_free(ptr);
    return p;
}

char *dab_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = dab_malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = 0;
    }
    return p;
}

char *dab_strdup(const char *s)
{
    return dab_strndup(s, SIZE_MAX);
}

void dab_alloc_stats(dab_alloc_stats_t *out)
{
    out->calls = atomic_load(&g_calls);
    out->live_bytes = atomic_load(&g_live);
    out->peak_bytes = atomic_load(&g_peak);
}

void dab_alloc_fail_after(uint64_t n)
{
    atomic_store(&g_fail_countdown, n);
}

int dab_mul_size(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return DAB_ERANGE;
    *out = a * b;
    return 0;
}

int dab_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    if (__builtin_mul_overflow(a, b, out))
        return DAB_ERANGE;
    return 0;
}

uint64_t dab_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int dab_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
