/*
 * err.c - the error space: code names, default sentences, and the helpers that
 * attach a message to a failure as it travels up the stack.
 */
#include "base.h"

#include <stdio.h>
#include <string.h>

const char *dab_strerror(int code)
{
    switch (code) {
#define DAB_X(name, value, msg) \
    case value:                 \
        return msg;
        DAB_ERRNO_MAP(DAB_X)
#undef DAB_X
    }
    return "unknown error";
}

const char *dab_errname(int code)
{
    switch (code) {
#define DAB_X(name, value, msg) \
    case value:                 \
        return #name;
        DAB_ERRNO_MAP(DAB_X)
#undef DAB_X
    }
    return "EUNKNOWN";
}

int dab_err_set(dab_err_t *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int dab_err_prefix(dab_err_t *err, const char *fmt, ...)
{
    if (!err)
        return DAB_EINTERNAL;
    char prefix[256];
    char old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    if (!old[0])
        snprintf(old, sizeof old, "%s", dab_strerror(err->code));
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    return err->code;
}

void dab_err_clear(dab_err_t *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = 0;
    }
}
