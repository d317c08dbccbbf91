/*
 * test_base.c - the error space and the counting allocator.
 */
#include "base/base.h"
#include "test.h"

TEST(test_errors)
{
    dab_err_t e = {0};
    CHECK_EQ_INT(dab_err_set(&e, DAB_EINVAL, "field '%s' is %d", "x", 3), DAB_EINVAL);
    CHECK(!strcmp(e.msg, "field 'x' is 3"));
    dab_err_prefix(&e, "node '%s': ", "n1");
    CHECK(!strcmp(e.msg, "node 'n1': field 'x' is 3"));
    CHECK(!strcmp(dab_errname(DAB_ESHAPE), "ESHAPE"));
    CHECK(!strcmp(dab_strerror(DAB_ENOMEM), "out of memory"));
    CHECK(!strcmp(dab_strerror(-999), "unknown error"));
    CHECK_EQ_INT(dab_err_set(NULL, DAB_EIO, "ignored"), DAB_EIO);
}

TEST(test_alloc_counts)
{
    dab_alloc_stats_t a, b, c;
    dab_alloc_stats(&a);
    char *p = dab_malloc(1000);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p % 64) == 0);
    dab_alloc_stats(&b);
    CHECK_EQ_INT(b.live_bytes - a.live_bytes, 1000);
    CHECK_EQ_INT(b.calls - a.calls, 1);
    p = dab_realloc(p, 3000);
    CHECK(p != NULL);
    dab_free(p);
    dab_alloc_stats(&c);
    CHECK_EQ_INT(c.live_bytes, a.live_bytes);
    CHECK(c.peak_bytes >= a.live_bytes + 3000);
    void *q = dab_malloc_aligned(10, 4096);
    CHECK(((uintptr_t)q % 4096) == 0);
    dab_free(q);
    CHECK(dab_calloc(SIZE_MAX / 2, 4) == NULL);
}

TEST(test_alloc_failure_injection)
{
    dab_alloc_fail_after(2);
    void *a = dab_malloc(8);
    void *b = dab_malloc(8);
    void *c = dab_malloc(8);
    CHECK(a != NULL);
    CHECK(b == NULL);
    CHECK(c != NULL);
    dab_free(a);
    dab_free(c);
    char *s = dab_strdup("hello");
    CHECK(s && !strcmp(s, "hello"));
    dab_free(s);
}

TEST(test_checked_math)
{
    size_t z;
    int64_t w;
    CHECK_EQ_INT(dab_mul_size(SIZE_MAX / 2, 3, &z), DAB_ERANGE);
    CHECK_EQ_INT(dab_mul_size(1000, 1000, &z), 0);
    CHECK_EQ_INT(z, 1000000);
    CHECK_EQ_INT(dab_mul_i64(INT64_MAX / 2, 3, &w), DAB_ERANGE);
    CHECK(dab_now_ns() > 0);
    CHECK(dab_cpu_count() >= 1);
}

TEST_LIST(T(test_errors), T(test_alloc_counts), T(test_alloc_failure_injection),
          T(test_checked_math))
