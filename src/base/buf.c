/*
 * buf.c - the growable byte buffer used to build bodies and texts.
 */
#include <stdio.h>
#include <string.h>

#include "base.h"

int dab_buf_reserve(dab_buf_t *b, size_t extra_bytes)
{
    if (extra_bytes >= SIZE_MAX / 2 - b->len)
        return DAB_ENOMEM;
    size_t need = b->len + extra_bytes + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = dab_realloc(b->data, cap);
    if (!p)
        return DAB_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int dab_buf_append(dab_buf_t *b, const void *p, size_t n)
{
    if (dab_buf_reserve(b, n))
        return DAB_ENOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int dab_buf_puts(dab_buf_t *b, const char *s)
{
    return dab_buf_append(b, s, strlen(s));
}

int dab_buf_printf(dab_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return DAB_EINVAL;
    if ((size_t)n < sizeof small)
        return dab_buf_append(b, small, (size_t)n);
    if (dab_buf_reserve(b, (size_t)n))
        return DAB_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void dab_buf_reset(dab_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

void dab_buf_free(dab_buf_t *b)
{
    dab_free(b->data);
    memset(b, 0, sizeof *b);
}
