/*
 * v2_encode.c - encoding KServe v2 infer responses and error bodies: the response JSON
 * written straight into a dab_buf_t (no DOM, no allocation per element), binary outputs
 * appended after it, JSON string escaping, and the shortest round-trip float formatter.
 *
 * The float32 formatter is exact: the rounding interval of the float is scaled by a power
 * of ten with 64/128/192-bit integer arithmetic, digits are removed while the interval
 * still holds a number with fewer digits, and the survivor nearest the float is printed.
 * float64 values try 15, 16 and 17 significant digits (printf rounds correctly; 15 digits,
 * when they read back, are the shortest).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "v2.h"

typedef unsigned __int128 u128;

/* ------------------------------------------------------------------ numbers */

static const uint64_t g_pow5[28] = {
    1ull,
    5ull,
    25ull,
    125ull,
    625ull,
    3125ull,
    15625ull,
    78125ull,
    390625ull,
    1953125ull,
    9765625ull,
    48828125ull,
    244140625ull,
    1220703125ull,
    6103515625ull,
    30517578125ull,
    152587890625ull,
    762939453125ull,
    3814697265625ull,
    19073486328125ull,
    95367431640625ull,
    476837158203125ull,
    2384185791015625ull,
    11920928955078125ull,
    59604644775390625ull,
    298023223876953125ull,
    1490116119384765625ull,
    7450580596923828125ull,
};

/* 5^p for 0 <= p <= 54, exactly. */
static u128 pow5(int p)
{
    int a = p < 27 ? p : 27;
    return (u128)g_pow5[a] * g_pow5[p - a];
}

/* floor(e * log10(2)) for |e| <= 1650 (78913 / 2^18 approximates log10(2) closely enough). */
static int floor_log10_pow2(int e)
{
    int r = e * 78913;
    return r >= 0 ? r >> 18 : -((-r + (1 << 18) - 1) >> 18);
}

/*
 * floor(x * 2^e2 / 10^q) and whether the division is exact, for the ranges float32 needs
 * (x < 2^27, -151 <= e2 <= 102, q = floor_log10_pow2(e2 + 2) - 2); the result is < 2^40.
 */
static inline __attribute__((always_inline)) uint64_t scaled(uint64_t x, int e2, int q,
                                                          bool *exact)
{
    if (q >= 0) {
        /* x * 2^e2 / (5^q * 2^q), with e2 >= q. */
        u128 num = (u128)x << (e2 - q);
        u128 dv = pow5(q);
        u128 quo = num / dv;
        *exact = quo * dv == num;
        return (uint64_t)quo;
    }
    /* x * 5^p * 2^(e2 + p), p = -q. */
    int p = -q, sh = e2 + p;
    u128 f = pow5(p);
    if (sh >= 0) {
        *exact = true;
        return (uint64_t)(((u128)x * f) << sh);
    }
    int s = -sh;
    if ((f >> 64) == 0 && s < 128) {
        /* The usual case (|v| above about 1e-19): the product fits in 128 bits. */
        u128 prod = (u128)x * (uint64_t)f;
        *exact = (prod & (((u128)1 << s) - 1)) == 0;
        return (uint64_t)(prod >> s);
    }
    u128 a = (u128)x * (uint64_t)f, b = (u128)x * (uint64_t)(f >> 64);
    uint64_t w0 = (uint64_t)a;
    u128 mid = (a >> 64) + (uint64_t)b;
    uint64_t w1 = (uint64_t)mid;
    uint64_t w2 = (uint64_t)(b >> 64) + (uint64_t)(mid >> 64);
    if (s >= 128) {
        int t = s - 128;
        *exact = w0 == 0 && w1 == 0 && (t == 0 || (w2 & ((1ull << t) - 1)) == 0);
        return t >= 64 ? 0 : w2 >> t;
    }
    if (s >= 64) {
        int t = s - 64;
        *exact = w0 == 0 && (t == 0 || (w1 & ((1ull << t) - 1)) == 0);
        return (uint64_t)((((u128)w2 << 64) | w1) >> t);
    }
    *exact = (w0 & ((1ull << s) - 1)) == 0;
    return (uint64_t)(((((u128)w1 << 64) | w0) >> s) | ((u128)w2 << (128 - s)));
}

static const char g_digit_pairs[] =
    "00010203040506070809101112131415161718192021222324"
    "25262728293031323334353637383940414243444546474849"
    "50515253545556575859606162636465666768697071727374"
    "75767778798081828384858687888990919293949596979899";

/* Writes v in decimal at out; returns the number of digits (1..20). */
static int u64_digits(uint64_t v, char *out)
{
    char tmp[20], *p = tmp + sizeof tmp;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, g_digit_pairs + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, g_digit_pairs + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    int n = (int)(tmp + sizeof tmp - p);
    memcpy(out, p, (size_t)n);
    return n;
}

/*
 * Writes (-)c * 10^j as a JSON number: plain notation for decimal exponents -4..15 (with
 * ".0" on whole numbers so readers see a float), scientific otherwise. c has no trailing
 * zeros. Returns the length; out gets a NUL.
 */
static int emit_decimal(char *out, bool neg, uint64_t c, int j)
{
    char dg[20];
    int n = u64_digits(c, dg), k = 0;
    int x = j + n - 1; /* the decimal exponent of the first digit */
    if (neg)
        out[k++] = '-';
    if (x >= 16 || x < -4) {
        out[k++] = dg[0];
        if (n > 1) {
            out[k++] = '.';
            memcpy(out + k, dg + 1, (size_t)n - 1);
            k += n - 1;
        }
        out[k++] = 'e';
        out[k++] = x < 0 ? '-' : '+';
        k += u64_digits((uint64_t)(x < 0 ? -x : x), out + k);
    } else if (x >= 0) {
        if (n <= x + 1) {
            memcpy(out + k, dg, (size_t)n);
            k += n;
            for (int z = 0; z < x + 1 - n; z++)
                out[k++] = '0';
            out[k++] = '.';
            out[k++] = '0';
        } else {
            memcpy(out + k, dg, (size_t)x + 1);
            k += x + 1;
            out[k++] = '.';
            memcpy(out + k, dg + x + 1, (size_t)(n - x - 1));
            k += n - x - 1;
        }
    } else {
        out[k++] = '0';
        out[k++] = '.';
        for (int z = 0; z < -x - 1; z++)
            out[k++] = '0';
        memcpy(out + k, dg, (size_t)n);
        k += n;
    }
    out[k] = 0;
    return k;
}

static int emit_zero(char *out, bool neg)
{
    const char *z = neg ? "-0.0" : "0.0";
    size_t n = strlen(z);
    memcpy(out, z, n + 1);
    return (int)n;
}

int dab_v2_format_f32(float v, char *out)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    bool neg = bits >> 31;
    uint32_t be = (bits >> 23) & 0xFF, fr = bits & 0x7FFFFF;
    if (be == 0xFF) {
        out[0] = 0;
        return 0;
    }
    if (be == 0 && fr == 0)
        return emit_zero(out, neg);
    uint64_t m = be ? (fr | (1u << 23)) : fr;
    int e = be ? (int)be - 150 : -149;
    /* v = m * 2^e. Its rounding interval in units of 2^(e-2): [mm, mp] around mv; the
     * lower half-gap is half as wide at a power of two (the float below is closer). A
     * decimal on the boundary reads back as v only when m is even (ties to even). */
    bool accept = (m & 1) == 0;
    uint64_t mv = 4 * m, mp = mv + 2, mm = mv - ((fr == 0 && be > 1) ? 1 : 2);
    int e2 = e - 2;
    /* 10^q is at most a hundredth of the interval's width, so at least one digit goes. */
    int q = floor_log10_pow2(e) - 2;
    bool vm_ex, vp_ex, vr_ex;
    uint64_t vm = scaled(mm, e2, q, &vm_ex);
    uint64_t vp = scaled(mp, e2, q, &vp_ex);
    uint64_t vr = scaled(mv, e2, q, &vr_ex);
    int j = q;
    bool frac_nz = !vr_ex, below = false;
    unsigned last = 0;
    for (;;) {
        uint64_t nvm = vm / 10, nvp = vp / 10;
        bool nvm_ex = vm_ex && vm % 10 == 0, nvp_ex = vp_ex && vp % 10 == 0;
        uint64_t lo = (nvm_ex && accept) ? nvm : nvm + 1;
        if (nvp_ex && !accept && nvp == 0)
            break;
        uint64_t hi = (nvp_ex && !accept) ? nvp - 1 : nvp;
        if (lo > hi)
            break;
        below = frac_nz;
        last = (unsigned)(vr % 10);
        vr /= 10;
        frac_nz = last != 0 || below;
        vm = nvm;
        vp = nvp;
        vm_ex = nvm_ex;
        vp_ex = nvp_ex;
        j++;
    }
    /* The candidates at this length are [lo, hi]; take the one nearest v (ties to even). */
    uint64_t lo = (vm_ex && accept) ? vm : vm + 1;
    uint64_t hi = (vp_ex && !accept) ? vp - 1 : vp;
    bool up = last > 5 || (last == 5 && (below || (vr & 1)));
    uint64_t c = vr + up;
    if (c < lo)
        c = lo;
    if (c > hi)
        c = hi;
    while (c % 10 == 0) {
        c /= 10;
        j++;
    }
    return emit_decimal(out, neg, c, j);
}

int dab_v2_format_f64(double v, char *out)
{
    if (!isfinite(v)) {
        out[0] = 0;
        return 0;
    }
    if (v == 0)
        return emit_zero(out, signbit(v));
    /* For normal numbers a decimal of at most 15 digits that reads back is what %.15e
     * prints (15-digit decimals lie further apart than the rounding interval is wide), so
     * 15 is the first length worth trying; subnormals have fewer bits and start at 1. */
    char buf[48];
    for (int p = fabs(v) < DBL_MIN ? 1 : 15; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, v);
        if (p == 17 || strtod(buf, NULL) == v)
            break;
    }
    /* buf is [-]d.ddde[+-]x: collect the digits and the exponent. */
    const char *s = buf;
    bool neg = *s == '-';
    if (neg)
        s++;
    uint64_t c = 0;
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') {
            c = c * 10 + (uint64_t)(*s - '0');
            nd++;
        }
    int x = *s == 'e' ? atoi(s + 1) : 0;
    int j = x - (nd - 1);
    while (c % 10 == 0 && c) {
        c /= 10;
        j++;
    }
    return emit_decimal(out, neg, c, j);
}

/* ------------------------------------------------------------------ strings */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xBF)
            return 0;
    return len;
}

bool dab_v2_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_len(u + i, len - i);
        if (!l)
            return false;
        i += l;
    }
    return true;
}

/*
 * Appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, or, when bad_at is given,
 * stops the encoding: *bad_at gets the offset and DAB_EINVAL is returned (out may then
 * hold a partial string; the caller rolls back).
 */
static int json_str(dab_buf_t *b, const char *s, size_t len, size_t *bad_at)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    if (dab_buf_reserve(b, len + 2))
        return DAB_ENOMEM;
    b->data[b->len++] = '"';
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i && dab_buf_append(b, s + i, run - i))
            return DAB_ENOMEM;
        i = run;
        if (i >= len)
            break;
        unsigned c = u[i];
        char esc[8];
        size_t elen = 2;
        if (c >= 0x80) {
            size_t l = utf8_len(u + i, len - i);
            if (l) {
                if (dab_buf_append(b, s + i, l))
                    return DAB_ENOMEM;
                i += l;
                continue;
            }
            if (bad_at) {
                *bad_at = i;
                return DAB_EINVAL;
            }
            if (dab_buf_append(b, "\xEF\xBF\xBD", 3))
                return DAB_ENOMEM;
            i++;
            continue;
        }
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        if (dab_buf_append(b, esc, elen))
            return DAB_ENOMEM;
        i++;
    }
    return dab_buf_append(b, "\"", 1);
}

int dab_v2_json_string(dab_buf_t *out, const char *s, size_t len)
{
    size_t start = out->len;
    int rc = json_str(out, s, len, NULL);
    if (rc && out->data) {
        out->len = start;
        out->data[start] = 0;
    }
    return rc;
}

int dab_v2_error_body(dab_buf_t *out, const char *msg)
{
    size_t start = out->len;
    if (dab_buf_puts(out, "{\"error\":") || dab_v2_json_string(out, msg, strlen(msg)) ||
        dab_buf_puts(out, "}")) {
        if (out->data) {
            out->len = start;
            out->data[start] = 0;
        }
        return DAB_ENOMEM;
    }
    return 0;
}

int dab_v2_http_status(int code)
{
    switch (code) {
    case 0: return 200;
    case DAB_ELIMIT: return 413;
    case DAB_ENOTFOUND: return 404;
    case DAB_EBUSY: return 503;
    case DAB_ENOMEM:
    case DAB_EINTERNAL: return 500;
    default: return 400;
    }
}

/* ------------------------------------------------------------------ responses */

#define CHUNK 256 /* elements formatted per buffer reservation */

static int dump_cb(const char *buffer, size_t size, void *data)
{
    return dab_buf_append(data, buffer, size) ? -1 : 0;
}

/* Appends the elements of t as a flat JSON array. */
static int write_data(dab_buf_t *b, const dab_v2_output_t *o, int64_t numel, dab_err_t *err)
{
    const dab_tensor_t *t = o->tensor;
    if (dab_buf_append(b, "[", 1))
        goto nomem;
    for (int64_t k0 = 0; k0 < numel; k0 += CHUNK) {
        int64_t k1 = DAB_MIN(numel, k0 + CHUNK);
        if (t->dtype == DAB_DT_STRING) {
            for (int64_t k = k0; k < k1; k++) {
                const dab_str_t *str = (const dab_str_t *)t->data + k;
                size_t bad;
                if (k && dab_buf_append(b, ",", 1))
                    goto nomem;
                int rc = json_str(b, str->ptr, str->len, &bad);
                if (rc == DAB_ENOMEM)
                    goto nomem;
                if (rc)
                    return dab_err_set(err, DAB_EINVAL,
                                       "output '%.64s': element %lld is not valid UTF-8 (byte "
                                       "%zu); request it as binary data",
                                       o->name, (long long)k, bad);
            }
            continue;
        }
        if (dab_buf_reserve(b, (size_t)(k1 - k0) * DAB_V2_NUMBER_MAX))
            goto nomem;
        char *p = b->data + b->len;
        for (int64_t k = k0; k < k1; k++) {
            if (k)
                *p++ = ',';
            int n = 0;
            switch (t->dtype) {
            case DAB_DT_FLOAT: n = dab_v2_format_f32(((const float *)t->data)[k], p); break;
            case DAB_DT_DOUBLE: n = dab_v2_format_f64(((const double *)t->data)[k], p); break;
            case DAB_DT_BOOL:
                n = ((const uint8_t *)t->data)[k] ? 4 : 5;
                memcpy(p, n == 4 ? "true" : "false", (size_t)n);
                break;
            case DAB_DT_UINT8: n = u64_digits(((const uint8_t *)t->data)[k], p); break;
            case DAB_DT_UINT16: n = u64_digits(((const uint16_t *)t->data)[k], p); break;
            case DAB_DT_UINT32: n = u64_digits(((const uint32_t *)t->data)[k], p); break;
            case DAB_DT_UINT64: n = u64_digits(((const uint64_t *)t->data)[k], p); break;
            default: {
                int64_t v = t->dtype == DAB_DT_INT8    ? ((const int8_t *)t->data)[k]
                            : t->dtype == DAB_DT_INT16 ? ((const int16_t *)t->data)[k]
                            : t->dtype == DAB_DT_INT32 ? ((const int32_t *)t->data)[k]
                                                       : ((const int64_t *)t->data)[k];
                if (v < 0)
                    *p++ = '-';
                n = u64_digits(v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, p);
            }
            }
            if (n == 0) {
                double x = t->dtype == DAB_DT_FLOAT ? ((const float *)t->data)[k]
                                                    : ((const double *)t->data)[k];
                return dab_err_set(err, DAB_ERANGE,
                                   "output '%.64s': element %lld is %s, which JSON cannot "
                                   "carry; request the output as binary data",
                                   o->name, (long long)k,
                                   isnan(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity");
            }
            p += n;
        }
        b->len = (size_t)(p - b->data);
        b->data[b->len] = 0;
    }
    if (dab_buf_append(b, "]", 1))
        goto nomem;
    return 0;
nomem:
    return dab_err_set(err, DAB_ENOMEM, "out of memory writing output '%.64s'", o->name);
}

/* Bytes of o's binary form (BYTES: 4-byte length + bytes per element). */
static int binary_size(const dab_v2_output_t *o, int64_t numel, size_t *out, dab_err_t *err)
{
    const dab_tensor_t *t = o->tensor;
    if (t->dtype != DAB_DT_STRING) {
        *out = (size_t)numel * dab_dtype_size(t->dtype);
        return 0;
    }
    size_t total = 0;
    for (int64_t k = 0; k < numel; k++) {
        size_t len = ((const dab_str_t *)t->data)[k].len;
        if (len > UINT32_MAX || total + 4 + len < total)
            return dab_err_set(err, DAB_ERANGE,
                               "output '%.64s': element %lld is too long for the binary format",
                               o->name, (long long)k);
        total += 4 + len;
    }
    *out = total;
    return 0;
}

int dab_v2_response_encode(const dab_v2_response_t *r, dab_buf_t *out, size_t *json_bytes,
                           dab_err_t *err)
{
    size_t start = out->len;
    int rc = 0;
    dab_buf_t *b = out;
    if (dab_buf_puts(b, "{\"model_name\":") ||
        json_str(b, r->model_name ? r->model_name : "", r->model_name ? strlen(r->model_name) : 0,
                 NULL))
        goto nomem;
    if (r->model_version && (dab_buf_puts(b, ",\"model_version\":") ||
                             json_str(b, r->model_version, strlen(r->model_version), NULL)))
        goto nomem;
    if (r->id && (dab_buf_puts(b, ",\"id\":") || json_str(b, r->id, r->id_len, NULL)))
        goto nomem;
    if (r->parameters) {
        if (dab_buf_puts(b, ",\"parameters\":") ||
            json_dump_callback(r->parameters, dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY))
            goto nomem;
    }
    if (dab_buf_puts(b, ",\"outputs\":["))
        goto nomem;
    for (int i = 0; i < r->n_outputs; i++) {
        const dab_v2_output_t *o = &r->outputs[i];
        const dab_tensor_t *t = o->tensor;
        const char *dtn = t ? dab_v2_dtype_name(t->dtype) : NULL;
        if (t && !dtn && o->name) {
            rc = dab_err_set(err, DAB_EUNSUPPORTED, "output '%.64s' is %s, which v2 cannot carry",
                             o->name, dab_dtype_name(t->dtype));
            goto fail;
        }
        if (!dtn || !o->name || t->rank < 0 || t->rank > DAB_MAX_RANK) {
            rc = dab_err_set(err, DAB_EINTERNAL, "output '%.64s' has no v2 datatype or shape",
                             o->name ? o->name : "?");
            goto fail;
        }
        int64_t numel = 1;
        for (int k = 0; k < t->rank; k++)
            if (t->dims[k] < 0 || dab_mul_i64(numel, t->dims[k], &numel)) {
                rc = dab_err_set(err, DAB_EINTERNAL, "output '%.64s' has a bad shape", o->name);
                goto fail;
            }
        if (numel > 0 && !t->data) {
            rc = dab_err_set(err, DAB_EINTERNAL, "output '%.64s' has no data", o->name);
            goto fail;
        }
        if (dab_buf_puts(b, i ? ",{\"name\":" : "{\"name\":") ||
            json_str(b, o->name, strlen(o->name), NULL) ||
            dab_buf_printf(b, ",\"datatype\":\"%s\",\"shape\":[", dtn))
            goto nomem;
        for (int k = 0; k < t->rank; k++)
            if (dab_buf_printf(b, k ? ",%lld" : "%lld", (long long)t->dims[k]))
                goto nomem;
        if (dab_buf_puts(b, "]"))
            goto nomem;
        if (o->binary) {
            size_t size = 0;
            if ((rc = binary_size(o, numel, &size, err)))
                goto fail;
            if (dab_buf_printf(b, ",\"parameters\":{\"binary_data_size\":%zu}}", size))
                goto nomem;
            continue;
        }
        if (t->dtype == DAB_DT_FLOAT16 || t->dtype == DAB_DT_BFLOAT16) {
            rc = dab_err_set(err, DAB_ETYPE,
                             "output '%.64s': %s data cannot be returned as JSON; request it as "
                             "binary data (\"binary_data\": true)",
                             o->name, dtn);
            goto fail;
        }
        if (dab_buf_puts(b, ",\"data\":"))
            goto nomem;
        if ((rc = write_data(b, o, numel, err)))
            goto fail;
        if (dab_buf_puts(b, "}"))
            goto nomem;
    }
    if (dab_buf_puts(b, "]}"))
        goto nomem;
    size_t json_len = b->len - start;
    for (int i = 0; i < r->n_outputs; i++) {
        const dab_v2_output_t *o = &r->outputs[i];
        if (!o->binary)
            continue;
        const dab_tensor_t *t = o->tensor;
        int64_t numel = dab_tensor_numel(t);
        if (t->dtype != DAB_DT_STRING) {
            if (dab_buf_append(b, t->data, (size_t)numel * dab_dtype_size(t->dtype)))
                goto nomem;
            continue;
        }
        for (int64_t k = 0; k < numel; k++) {
            const dab_str_t *str = (const dab_str_t *)t->data + k;
            uint32_t len = (uint32_t)str->len;
            if (dab_buf_append(b, &len, 4) || dab_buf_append(b, str->ptr, str->len))
                goto nomem;
        }
    }
    *json_bytes = json_len;
    return 0;
nomem:
    rc = dab_err_set(err, DAB_ENOMEM, "out of memory writing the response");
fail:
    if (out->data) {
        out->len = start;
        out->data[start] = 0;
    }
    return rc;
}
