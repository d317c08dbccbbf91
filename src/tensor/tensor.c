/*
 * tensor.c - dtype facts, shape arithmetic, owned tensors and half-precision
 * conversions shared by every subsystem.
 */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} g_dtypes[DAB_DT_COUNT_] = {
    [DAB_DT_UNDEFINED] = {"undefined", 0}, [DAB_DT_FLOAT] = {"float", 4},
    [DAB_DT_UINT8] = {"uint8", 1},         [DAB_DT_INT8] = {"int8", 1},
    [DAB_DT_UINT16] = {"uint16", 2},       [DAB_DT_INT16] = {"int16", 2},
    [DAB_DT_INT32] = {"int32", 4},         [DAB_DT_INT64] = {"int64", 8},
    [DAB_DT_STRING] = {"string", 0},       [DAB_DT_BOOL] = {"bool", 1},
    [DAB_DT_FLOAT16] = {"float16", 2},     [DAB_DT_DOUBLE] = {"double", 8},
    [DAB_DT_UINT32] = {"uint32", 4},       [DAB_DT_UINT64] = {"uint64", 8},
    [DAB_DT_COMPLEX64] = {"complex64", 8}, [DAB_DT_COMPLEX128] = {"complex128", 16},
    [DAB_DT_BFLOAT16] = {"bfloat16", 2},
};

size_t dab_dtype_size(dab_dtype_t dt)
{
    return (unsigned)dt < DAB_DT_COUNT_ ? g_dtypes[dt].size : 0;
}

const char *dab_dtype_name(dab_dtype_t dt)
{
    return (unsigned)dt < DAB_DT_COUNT_ ? g_dtypes[dt].name : "undefined";
}

bool dab_dtype_valid(int dt)
{
    return dt > 0 && dt < DAB_DT_COUNT_ && dt != DAB_DT_COMPLEX64 && dt != DAB_DT_COMPLEX128;
}

static size_t elem_bytes(dab_dtype_t dt)
{
    return dt == DAB_DT_STRING ? sizeof(dab_str_t) : dab_dtype_size(dt);
}

int64_t dab_tensor_numel(const dab_tensor_t *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->dims[i];
    return n;
}

size_t dab_tensor_bytes(const dab_tensor_t *t)
{
    return (size_t)dab_tensor_numel(t) * elem_bytes(t->dtype);
}

int dab_shape_check(const char *what, dab_dtype_t dt, int rank, const int64_t *dims,
                    size_t max_bytes, size_t *out_bytes, dab_err_t *err)
{
    if (rank < 0 || rank > DAB_MAX_RANK)
        return dab_err_set(err, DAB_ELIMIT, "%s has rank %d; at most %d is supported", what, rank,
                           DAB_MAX_RANK);
    size_t bytes = elem_bytes(dt);
    if (!bytes && dt != DAB_DT_UNDEFINED)
        return dab_err_set(err, DAB_EUNSUPPORTED, "%s has unsupported data type %s", what,
                           dab_dtype_name(dt));
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return dab_err_set(err, DAB_ESHAPE, "%s has negative dimension %lld at axis %d", what,
                               (long long)dims[i], i);
        if (dab_mul_size(bytes, (size_t)dims[i], &bytes) || (uint64_t)dims[i] > INT64_MAX / 2)
            return dab_err_set(err, DAB_ERANGE, "%s is too large: its dimensions overflow", what);
    }
    if (bytes > (size_t)INT64_MAX / 2 || (max_bytes && bytes > max_bytes))
        return dab_err_set(err, DAB_ELIMIT, "%s needs %zu bytes, more than the limit of %zu",
                           what, bytes, max_bytes);
    if (out_bytes)
        *out_bytes = bytes;
    return 0;
}

void dab_tensor_set_shape(dab_tensor_t *t, dab_dtype_t dt, int rank, const int64_t *dims)
{
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->dims[i] = dims[i];
}

bool dab_shape_equal(const dab_tensor_t *a, const dab_tensor_t *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

char *dab_shape_str(const dab_tensor_t *t, char *buf, size_t buf_len)
{
    size_t off = 0;
    if (!buf_len)
        return buf;
    buf[0] = 0;
    off += (size_t)snprintf(buf, buf_len, "[");
    for (int i = 0; i < t->rank && off < buf_len; i++)
        off += (size_t)snprintf(buf + off, buf_len - off, i ? ",%lld" : "%lld",
                                (long long)t->dims[i]);
    if (off < buf_len)
        snprintf(buf + off, buf_len - off, "]");
    return buf;
}

int dab_tensor_alloc(dab_tensor_t *t, dab_dtype_t dt, int rank, const int64_t *dims,
                     dab_err_t *err)
{
    size_t bytes;
    int rc = dab_shape_check("tensor", dt, rank, dims, 0, &bytes, err);
    if (rc)
        return rc;
    void *data = dab_calloc(1, bytes ? bytes : 1);
    if (!data)
        return dab_err_set(err, DAB_ENOMEM, "out of memory allocating %zu bytes", bytes);
    dab_tensor_set_shape(t, dt, rank, dims);
    t->data = data;
    return 0;
}

void dab_tensor_free(dab_tensor_t *t)
{
    if (!t)
        return;
    dab_free(t->data);
    memset(t, 0, sizeof *t);
}

double dab_tensor_get_f64(const dab_tensor_t *t, int64_t i)
{
    const void *d = t->data;
    switch (t->dtype) {
    case DAB_DT_FLOAT: return ((const float *)d)[i];
    case DAB_DT_DOUBLE: return ((const double *)d)[i];
    case DAB_DT_FLOAT16: return dab_f16_to_f32(((const uint16_t *)d)[i]);
    case DAB_DT_BFLOAT16: return dab_bf16_to_f32(((const uint16_t *)d)[i]);
    case DAB_DT_INT8: return ((const int8_t *)d)[i];
    case DAB_DT_UINT8: return ((const uint8_t *)d)[i];
    case DAB_DT_BOOL: return ((const uint8_t *)d)[i] != 0;
    case DAB_DT_INT16: return ((const int16_t *)d)[i];
    case DAB_DT_UINT16: return ((const uint16_t *)d)[i];
    case DAB_DT_INT32: return ((const int32_t *)d)[i];
    case DAB_DT_UINT32: return ((const uint32_t *)d)[i];
    case DAB_DT_INT64: return (double)((const int64_t *)d)[i];
    case DAB_DT_UINT64: return (double)((const uint64_t *)d)[i];
    default: return NAN;
    }
}

int64_t dab_tensor_get_i64(const dab_tensor_t *t, int64_t i)
{
    const void *d = t->data;
    switch (t->dtype) {
    case DAB_DT_INT64: return ((const int64_t *)d)[i];
    case DAB_DT_UINT64: return (int64_t)((const uint64_t *)d)[i];
    case DAB_DT_INT32: return ((const int32_t *)d)[i];
    case DAB_DT_UINT32: return ((const uint32_t *)d)[i];
    case DAB_DT_INT16: return ((const int16_t *)d)[i];
    case DAB_DT_UINT16: return ((const uint16_t *)d)[i];
    case DAB_DT_INT8: return ((const int8_t *)d)[i];
    case DAB_DT_UINT8: return ((const uint8_t *)d)[i];
    case DAB_DT_BOOL: return ((const uint8_t *)d)[i] != 0;
    default: {
        double v = dab_tensor_get_f64(t, i);
        return isfinite(v) && fabs(v) < 9.2e18 ? (int64_t)v : 0;
    }
    }
}

float dab_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t dab_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff);
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff)
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int32_t e = exp - 127 + 15;
    if (e >= 0x1f)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
        half++;
    return (uint16_t)half;
}

float dab_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t dab_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
