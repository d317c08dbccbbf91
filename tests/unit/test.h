/*
 * test.h - the unit-test harness: CHECK macros that count and report, and a
 * main that runs the suite's tests and prints "N passed, N failed".
 * A test file defines its tests with TEST(name) and lists them in
 * TEST_LIST(...). Each CHECK counts as one assertion.
 */
#ifndef DAB_TEST_H
#define DAB_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_passed, t_failed;
static const char *t_current;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond) {                                                                    \
            t_passed++;                                                                \
        } else {                                                                       \
            t_failed++;                                                                \
            fprintf(stderr, "FAIL %s (%s:%d): %s\n", t_current, __FILE__, __LINE__, #cond); \
        }                                                                              \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                \
    do {                                                                                  \
        long long va_ = (long long)(a), vb_ = (long long)(b);                             \
        if (va_ == vb_) {                                                                 \
            t_passed++;                                                                   \
        } else {                                                                          \
            t_failed++;                                                                   \
            fprintf(stderr, "FAIL %s (%s:%d): %s == %s (%lld vs %lld)\n", t_current,      \
                    __FILE__, __LINE__, #a, #b, va_, vb_);                                \
        }                                                                                 \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                             \
    do {                                                                                  \
        double va_ = (double)(a), vb_ = (double)(b);                                      \
        if (fabs(va_ - vb_) <= (tol)) {                                                   \
            t_passed++;                                                                   \
        } else {                                                                          \
            t_failed++;                                                                   \
            fprintf(stderr, "FAIL %s (%s:%d): %s ~ %s (%g vs %g)\n", t_current, __FILE__,  \
                    __LINE__, #a, #b, va_, vb_);                                          \
        }                                                                                 \
    } while (0)

#define TEST(name) static void name(void)
#define TEST_LIST(...)                                                    \
    int main(void)                                                        \
    {                                                                     \
        struct {                                                          \
            const char *n;                                                \
            void (*f)(void);                                              \
        } tests_[] = {__VA_ARGS__};                                       \
        for (size_t i = 0; i < sizeof tests_ / sizeof tests_[0]; i++) {   \
            t_current = tests_[i].n;                                      \
            tests_[i].f();                                                \
        }                                                                 \
        printf("%s: %d passed, %d failed\n", __FILE__, t_passed, t_failed); \
        return t_failed ? 1 : 0;                                          \
    }
#define T(fn) {#fn, fn}

#endif
