/*
 * v2_zlib.c - HTTP content codings for the v2 API: inflating gzip/deflate request bodies
 * under a hard bound on the inflated size (a few kilobytes must not become gigabytes),
 * compressing response bodies, and choosing a coding from Accept-Encoding.
 * zlib allocates through the counting allocator.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "v2.h"

const char *dab_v2_coding_name(dab_v2_coding_t c)
{
    return c == DAB_V2_CODING_GZIP ? "gzip" : c == DAB_V2_CODING_DEFLATE ? "deflate" : "identity";
}

/* Trims spaces and tabs around s[0..*n); returns the new start. */
static const char *trim(const char *s, size_t *n)
{
    while (*n && (*s == ' ' || *s == '\t')) {
        s++;
        (*n)--;
    }
    while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
        (*n)--;
    return s;
}

static bool token_is(const char *s, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(s, want, n) == 0;
}

int dab_v2_coding_parse(const char *content_encoding, dab_v2_coding_t *out, dab_err_t *err)
{
    size_t n = content_encoding ? strlen(content_encoding) : 0;
    const char *s = trim(content_encoding ? content_encoding : "", &n);
    if (n == 0 || token_is(s, n, "identity"))
        *out = DAB_V2_CODING_IDENTITY;
    else if (token_is(s, n, "gzip") || token_is(s, n, "x-gzip"))
        *out = DAB_V2_CODING_GZIP;
    else if (token_is(s, n, "deflate"))
        *out = DAB_V2_CODING_DEFLATE;
    else
        return dab_err_set(err, DAB_EUNSUPPORTED,
                           "Content-Encoding '%.40s' is not supported; use gzip or deflate", s);
    return 0;
}

/* Parses the q of one Accept-Encoding element's parameters ("q=0.5"); 1000 = q 1. */
static int parse_q(const char *s, size_t n)
{
    int q = 1000;
    while (n) {
        const char *semi = memchr(s, ';', n);
        size_t len = semi ? (size_t)(semi - s) : n;
        size_t tl = len;
        const char *t = trim(s, &tl);
        if (tl >= 2 && (t[0] == 'q' || t[0] == 'Q') && t[1] == '=') {
            /* q = 0 | 1 | 0.ddd | 1.000 */
            q = 0;
            int scale = 1000;
            bool frac = false, ok = tl > 2;
            for (size_t k = 2; k < tl; k++) {
                char c = t[k];
                if (c == '.' && !frac) {
                    frac = true;
                } else if (c >= '0' && c <= '9') {
                    if (!frac) {
                        q = q * 10 + (c - '0') * 1000;
                    } else if (scale > 1) {
                        scale /= 10;
                        q += (c - '0') * scale;
                    }
                } else {
                    ok = false;
                }
            }
            if (!ok || q > 1000)
                q = ok ? 1000 : 0;
        }
        if (!semi)
            break;
        n -= len + 1;
        s = semi + 1;
    }
    return q;
}

dab_v2_coding_t dab_v2_coding_accept(const char *accept_encoding)
{
    if (!accept_encoding)
        return DAB_V2_CODING_IDENTITY;
    int q_gzip = -1, q_deflate = -1, q_star = -1;
    const char *s = accept_encoding;
    size_t n = strlen(s);
    while (n) {
        const char *comma = memchr(s, ',', n);
        size_t len = comma ? (size_t)(comma - s) : n;
        const char *semi = memchr(s, ';', len);
        size_t tl = semi ? (size_t)(semi - s) : len;
        const char *t = trim(s, &tl);
        int q = semi ? parse_q(semi + 1, len - (size_t)(semi + 1 - s)) : 1000;
        if (token_is(t, tl, "gzip") || token_is(t, tl, "x-gzip"))
            q_gzip = q;
        else if (token_is(t, tl, "deflate"))
            q_deflate = q;
        else if (token_is(t, tl, "*"))
            q_star = q;
        if (!comma)
            break;
        n -= len + 1;
        s = comma + 1;
    }
    if (q_gzip < 0)
        q_gzip = q_star;
    if (q_deflate < 0)
        q_deflate = q_star;
    if (q_gzip <= 0 && q_deflate <= 0)
        return DAB_V2_CODING_IDENTITY;
    return q_gzip >= q_deflate ? DAB_V2_CODING_GZIP : DAB_V2_CODING_DEFLATE;
}

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return dab_calloc(items, size);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    dab_free(p);
}

/* True when p starts like a zlib (RFC 1950) stream rather than raw deflate data. */
static bool zlib_header(const unsigned char *p, size_t n)
{
    return n >= 2 && (p[0] & 0x0F) == 8 && (p[0] >> 4) <= 7 && ((p[0] << 8) | p[1]) % 31 == 0;
}

int dab_v2_inflate(const void *in, size_t in_len, dab_v2_coding_t coding, size_t max_out_bytes,
                   dab_buf_t *out, dab_err_t *err)
{
    const char *name = dab_v2_coding_name(coding);
    size_t start = out->len;
    if (coding == DAB_V2_CODING_IDENTITY) {
        if (in_len > max_out_bytes)
            return dab_err_set(err, DAB_ELIMIT, "the body has %zu bytes, more than the limit of "
                               "%zu", in_len, max_out_bytes);
        return dab_buf_append(out, in, in_len)
                   ? dab_err_set(err, DAB_ENOMEM, "out of memory for the body")
                   : 0;
    }
    const unsigned char *src = in;
    int wbits = coding == DAB_V2_CODING_GZIP ? 16 + 15 : zlib_header(src, in_len) ? 15 : -15;
    z_stream z;
    memset(&z, 0, sizeof z);
    z.zalloc = z_alloc;
    z.zfree = z_free;
    if (inflateInit2(&z, wbits) != Z_OK)
        return dab_err_set(err, DAB_ENOMEM, "out of memory starting %s decoding", name);
    int rc = 0;
    size_t consumed = 0;
    for (;;) {
        /* Offer at most max_out_bytes + 1 so that one byte too many is seen. */
        size_t produced = out->len - start;
        size_t room = max_out_bytes - produced + 1;
        size_t grow = DAB_MAX((size_t)16384, DAB_MIN(produced, (size_t)1 << 24));
        grow = DAB_MIN(grow, room);
        if (dab_buf_reserve(out, grow)) {
            rc = dab_err_set(err, DAB_ENOMEM, "out of memory decoding the %s body", name);
            break;
        }
        size_t avail_in = in_len - consumed;
        z.next_in = (Bytef *)(src + consumed);
        z.avail_in = (uInt)DAB_MIN(avail_in, (size_t)UINT32_MAX);
        z.next_out = (Bytef *)out->data + out->len;
        z.avail_out = (uInt)DAB_MIN(grow, (size_t)UINT32_MAX);
        uInt in_before = z.avail_in, out_before = z.avail_out;
        int zr = inflate(&z, Z_NO_FLUSH);
        consumed += in_before - z.avail_in;
        out->len += out_before - z.avail_out;
        if (out->len - start > max_out_bytes) {
            rc = dab_err_set(err, DAB_ELIMIT,
                             "the %s body inflates to more than %zu bytes, the limit", name,
                             max_out_bytes);
            break;
        }
        if (zr == Z_STREAM_END) {
            /* gzip allows several members one after another. */
            if (coding == DAB_V2_CODING_GZIP && consumed < in_len) {
                if (inflateReset(&z) != Z_OK) {
                    rc = dab_err_set(err, DAB_EFORMAT, "the gzip body is corrupt");
                    break;
                }
                continue;
            }
            if (consumed < in_len)
                rc = dab_err_set(err, DAB_EFORMAT,
                                 "the %s body has %zu bytes after the end of its data", name,
                                 in_len - consumed);
            break;
        }
        if (zr == Z_NEED_DICT || zr == Z_DATA_ERROR) {
            rc = dab_err_set(err, DAB_EFORMAT, "the %s body is corrupt: %s", name,
                             z.msg ? z.msg : "bad data");
            break;
        }
        if (zr == Z_MEM_ERROR) {
            rc = dab_err_set(err, DAB_ENOMEM, "out of memory decoding the %s body", name);
            break;
        }
        if (zr == Z_BUF_ERROR && consumed >= in_len && z.avail_out > 0) {
            rc = dab_err_set(err, DAB_EFORMAT, "the %s body is truncated", name);
            break;
        }
        if (zr == Z_OK && consumed >= in_len && z.avail_out > 0) {
            rc = dab_err_set(err, DAB_EFORMAT, "the %s body is truncated", name);
            break;
        }
    }
    inflateEnd(&z);
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = 0;
        return rc;
    }
    out->data[out->len] = 0;
    return 0;
}

int dab_v2_compress(const void *in, size_t in_len, dab_v2_coding_t coding, int level,
                    dab_buf_t *out, dab_err_t *err)
{
    if (coding == DAB_V2_CODING_IDENTITY)
        return dab_buf_append(out, in, in_len) ? dab_err_set(err, DAB_ENOMEM, "out of memory")
                                               : 0;
    if (level <= 0 || level > 9)
        level = 6;
    if (in_len > UINT32_MAX)
        return dab_err_set(err, DAB_ELIMIT, "a body of %zu bytes is too large to compress",
                           in_len);
    z_stream z;
    memset(&z, 0, sizeof z);
    z.zalloc = z_alloc;
    z.zfree = z_free;
    int wbits = coding == DAB_V2_CODING_GZIP ? 16 + 15 : 15;
    if (deflateInit2(&z, level, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return dab_err_set(err, DAB_ENOMEM, "out of memory starting %s compression",
                           dab_v2_coding_name(coding));
    size_t bound = deflateBound(&z, (uLong)in_len) + 32;
    int rc = 0;
    if (dab_buf_reserve(out, bound)) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory compressing the body");
    } else {
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)in_len;
        z.next_out = (Bytef *)out->data + out->len;
        z.avail_out = (uInt)DAB_MIN(bound, (size_t)UINT32_MAX);
        if (deflate(&z, Z_FINISH) != Z_STREAM_END)
            rc = dab_err_set(err, DAB_EINTERNAL, "%s compression did not finish",
                             dab_v2_coding_name(coding));
        else
            out->len += z.total_out;
        out->data[out->len] = 0;
    }
    deflateEnd(&z);
    return rc;
}
