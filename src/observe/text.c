/*
 * text.c - the small text helpers the metrics and the logs share: checking
 * UTF-8 (hostile label values and log fields must not break the exposition
 * or the JSON lines) and formatting doubles the way both formats read them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "observe_int.h"

int dab_obs_utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    int len;
    unsigned cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, or F5..FF */
    }
    if ((size_t)len > n)
        return 0;
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int dab_obs_fmt_double(char *out, size_t cap, double v)
{
    if (isnan(v))
        return snprintf(out, cap, "NaN");
    if (isinf(v))
        return snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    /* Most values (integers, bucket bounds like 0.005) read back at 15 digits;
     * the rest need 16 or 17. */
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    return n;
}
