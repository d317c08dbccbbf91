/*
 * npy.c - NumPy .npy files: the format people keep sample inputs and expected
 * outputs in. Little-endian, C-order arrays of bool, integers and floats;
 * header versions 1.0, 2.0 and 3.0. Headers come from outside and are parsed
 * defensively.
 */
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *descr;
    dab_dtype_t dt;
} g_descr[] = {
    {"<f4", DAB_DT_FLOAT}, {"<f8", DAB_DT_DOUBLE}, {"<f2", DAB_DT_FLOAT16},
    {"|i1", DAB_DT_INT8},  {"|u1", DAB_DT_UINT8},  {"<i2", DAB_DT_INT16},
    {"<u2", DAB_DT_UINT16}, {"<i4", DAB_DT_INT32}, {"<u4", DAB_DT_UINT32},
    {"<i8", DAB_DT_INT64}, {"<u8", DAB_DT_UINT64}, {"|b1", DAB_DT_BOOL},
    {"<b1", DAB_DT_BOOL},  {"|i8", DAB_DT_INT64},
};

/* Finds the value after 'key': in the header dict; NULL when absent. */
static const char *dict_value(const char *hdr, const char *key)
{
    const char *p = strstr(hdr, key);
    if (!p)
        return NULL;
    p += strlen(key);
    while (*p == ' ' || *p == ':')
        p++;
    return p;
}

int dab_npy_parse(const void *buf, size_t len, dab_tensor_t *t, dab_err_t *err)
{
    const unsigned char *b = buf;
    if (len < 10 || memcmp(b, "\x93NUMPY", 6))
        return dab_err_set(err, DAB_EFORMAT, "not a .npy file (bad magic)");
    size_t hlen, hoff;
    if (b[6] == 1) {
        hlen = b[8] | (size_t)b[9] << 8;
        hoff = 10;
    } else if (b[6] == 2 || b[6] == 3) {
        if (len < 12)
            return dab_err_set(err, DAB_EFORMAT, ".npy header is truncated");
        hlen = b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        hoff = 12;
    } else {
        return dab_err_set(err, DAB_EUNSUPPORTED, ".npy format version %d is not supported", b[6]);
    }
    if (hlen > len - hoff || hlen > 65536)
        return dab_err_set(err, DAB_EFORMAT, ".npy header length %zu exceeds the file", hlen);
    char hdr[65537];
    memcpy(hdr, b + hoff, hlen);
    hdr[hlen] = 0;

    const char *d = dict_value(hdr, "'descr'");
    if (!d || *d != '\'')
        return dab_err_set(err, DAB_EFORMAT, ".npy header has no 'descr'");
    dab_dtype_t dt = DAB_DT_UNDEFINED;
    for (size_t i = 0; i < DAB_ARRAY_LEN(g_descr); i++)
        if (!strncmp(d + 1, g_descr[i].descr, 3) && d[4] == '\'')
            dt = g_descr[i].dt;
    if (dt == DAB_DT_UNDEFINED)
        return dab_err_set(err, DAB_EUNSUPPORTED, ".npy dtype %.8s is not supported", d);
    const char *fo = dict_value(hdr, "'fortran_order'");
    if (!fo || strncmp(fo, "False", 5))
        return dab_err_set(err, DAB_EUNSUPPORTED, ".npy arrays must be in C order");
    const char *sh = dict_value(hdr, "'shape'");
    if (!sh || *sh != '(')
        return dab_err_set(err, DAB_EFORMAT, ".npy header has no 'shape'");
    int64_t dims[DAB_MAX_RANK];
    int rank = 0;
    sh++;
    for (;;) {
        while (*sh == ' ' || *sh == ',')
            sh++;
        if (*sh == ')')
            break;
        if (*sh < '0' || *sh > '9')
            return dab_err_set(err, DAB_EFORMAT, ".npy shape is malformed");
        if (rank == DAB_MAX_RANK)
            return dab_err_set(err, DAB_ELIMIT, ".npy rank exceeds %d", DAB_MAX_RANK);
        char *end;
        unsigned long long v = strtoull(sh, &end, 10);
        if (v > (unsigned long long)INT64_MAX / 4)
            return dab_err_set(err, DAB_ERANGE, ".npy dimension is too large");
        dims[rank++] = (int64_t)v;
        sh = end;
    }
    size_t bytes;
    int rc = dab_shape_check(".npy array", dt, rank, dims, 0, &bytes, err);
    if (rc)
        return rc;
    size_t doff = hoff + hlen;
    if (len - doff < bytes)
        return dab_err_set(err, DAB_EFORMAT, ".npy data is truncated: %zu bytes, expected %zu",
                           len - doff, bytes);
    rc = dab_tensor_alloc(t, dt, rank, dims, err);
    if (rc)
        return rc;
    memcpy(t->data, b + doff, bytes);
    return 0;
}

/* Reads a whole file into a dab_malloc'd buffer. */
static int read_file(const char *path, void **out, size_t *len, dab_err_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dab_err_set(err, DAB_EIO, "cannot open %s", path);
    if (fseek(f, 0, SEEK_END) || ftell(f) < 0) {
        fclose(f);
        return dab_err_set(err, DAB_EIO, "cannot read %s", path);
    }
    size_t n = (size_t)ftell(f);
    rewind(f);
    void *buf = dab_malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return dab_err_set(err, DAB_ENOMEM, "out of memory reading %s", path);
    }
    if (fread(buf, 1, n, f) != n) {
        fclose(f);
        dab_free(buf);
        return dab_err_set(err, DAB_EIO, "cannot read %s", path);
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

int dab_npy_read(const char *path, dab_tensor_t *t, dab_err_t *err)
{
    void *buf = NULL;
    size_t len = 0;
    int rc = read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    rc = dab_npy_parse(buf, len, t, err);
    dab_free(buf);
    if (rc)
        dab_err_prefix(err, "%s: ", path);
    return rc;
}

int dab_npy_write(const char *path, const dab_tensor_t *t, dab_err_t *err)
{
    const char *descr = NULL;
    for (size_t i = 0; i < DAB_ARRAY_LEN(g_descr); i++)
        if (g_descr[i].dt == t->dtype) {
            descr = g_descr[i].descr;
            break;
        }
    if (!descr)
        return dab_err_set(err, DAB_EUNSUPPORTED, "cannot write %s tensors to .npy",
                           dab_dtype_name(t->dtype));
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < t->rank; i++)
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%lld,%s", (long long)t->dims[i],
                      i + 1 < t->rank ? " " : "");
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "), }");
    /* Pad with spaces so that data starts on a 64-byte boundary, newline last. */
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f)
        return dab_err_set(err, DAB_EIO, "cannot create %s", path);
    unsigned hl = (unsigned)(n + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, hl & 0xff, hl >> 8};
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    size_t bytes = dab_tensor_bytes(t);
    int bad = fwrite(t->data, 1, bytes, f) != bytes;
    bad |= fclose(f) != 0;
    return bad ? dab_err_set(err, DAB_EIO, "cannot write %s", path) : 0;
}
