/*
 * base.h - what every dabba subsystem uses: the one error space, error messages
 * that travel with a failure, the counting allocator and the clock.
 *
 * Every function that can fail returns int: 0 on success, a negative DAB_E* code
 * otherwise. A dab_err_t carries the human sentence that goes with the code.
 */
#ifndef DAB_BASE_H
#define DAB_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* The error codes: X(name, value, default message). */
#define DAB_ERRNO_MAP(X)                                          \
    X(OK, 0, "success")                                           \
    X(ENOMEM, -1, "out of memory")                                \
    X(EINVAL, -2, "invalid argument")                             \
    X(EIO, -3, "input/output error")                              \
    X(EFORMAT, -4, "malformed input")                             \
    X(EUNSUPPORTED, -5, "not supported")                          \
    X(ENOTFOUND, -6, "not found")                                 \
    X(ERANGE, -7, "value out of range")                           \
    X(ESHAPE, -8, "shape mismatch")                               \
    X(ETYPE, -9, "data type mismatch")                            \
    X(ELIMIT, -10, "limit exceeded")                              \
    X(EBUSY, -11, "busy")                                         \
    X(ETIMEDOUT, -12, "timed out")                                \
    X(ECANCELED, -13, "canceled")                                 \
    X(EINTERNAL, -14, "internal error")

enum {
#define DAB_X(name, value, msg) DAB_##name = (value),
    DAB_ERRNO_MAP(DAB_X)
#undef DAB_X
};

/* The default sentence for an error code; never NULL. Any thread. */
const char *dab_strerror(int code);

/* The name of an error code ("EINVAL"); never NULL. Any thread. */
const char *dab_errname(int code);

/* An error with its message. Owned by the caller, usually on the stack. */
typedef struct dab_err {
    int code;
    char msg[512];
} dab_err_t;

/*
 * Records code and a printf-style message in err (err may be NULL) and returns
 * code, so that `return dab_err_set(err, DAB_EINVAL, "...")` reads naturally.
 * When err already holds an error, the new message is prefixed to the old one
 * only through dab_err_prefix; dab_err_set overwrites.
 */
int dab_err_set(dab_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes context ("node 'conv1': ") to the message already in err; returns err->code. */
int dab_err_prefix(dab_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears err to success. */
void dab_err_clear(dab_err_t *err);

/*
 * The counting allocator. All heap memory of dabba goes through these, so that
 * live bytes and call counts can be read for metrics and limits, and so that
 * tests can make the N-th allocation fail. Thread-safe.
 * dab_malloc(0) returns a unique non-NULL pointer. Sizes are checked: a
 * dab_calloc whose product overflows returns NULL.
 */
void *dab_malloc(size_t size_bytes);
void *dab_calloc(size_t count, size_t size_bytes);
void *dab_realloc(void *ptr, size_t size_bytes);
void dab_free(void *ptr);
char *dab_strdup(const char *s);
char *dab_strndup(const char *s, size_t n);

/* Aligned allocation (alignment a power of two, >= sizeof(void*)); free with dab_free. */
void *dab_malloc_aligned(size_t size_bytes, size_t alignment);

typedef struct dab_alloc_stats {
    uint64_t calls;      /* successful malloc/calloc/realloc/aligned calls since start */
    uint64_t live_bytes; /* bytes currently allocated */
    uint64_t peak_bytes; /* highest live_bytes seen */
} dab_alloc_stats_t;

/* Reads the counters. Any thread. */
void dab_alloc_stats(dab_alloc_stats_t *out);

/* Test hook: the n-th allocation from now (1 = the next) fails, then all succeed
 * again; n = 0 disarms. Any thread. */
void dab_alloc_fail_after(uint64_t n);

/* Overflow-checked arithmetic for sizes taken from outside: return 0 on success,
 * DAB_ERANGE when the result does not fit. */
int dab_mul_size(size_t a, size_t b, size_t *out);
int dab_mul_i64(int64_t a, int64_t b, int64_t *out);

/* Monotonic clock in nanoseconds. */
uint64_t dab_now_ns(void);

/* Number of online CPU cores (at least 1). */
int dab_cpu_count(void);

/* The value of a hexadecimal digit, or -1 when c is not one. */
static inline int dab_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * A growable byte buffer (response bodies, metrics text, encoded tensors).
 * Owned by whoever declared it; free with dab_buf_free. Appends return 0 or
 * DAB_ENOMEM (the buffer is unchanged on failure). Not thread-safe.
 */
typedef struct dab_buf {
    char *data; /* NUL-terminated when len < cap */
    size_t len;
    size_t cap;
} dab_buf_t;

int dab_buf_reserve(dab_buf_t *b, size_t extra_bytes);
int dab_buf_append(dab_buf_t *b, const void *p, size_t n);
int dab_buf_puts(dab_buf_t *b, const char *s);
int dab_buf_printf(dab_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dab_buf_reset(dab_buf_t *b); /* len = 0, memory kept */
void dab_buf_free(dab_buf_t *b);

#define DAB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define DAB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DAB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define DAB_ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((size_t)(a)-1))

#endif
