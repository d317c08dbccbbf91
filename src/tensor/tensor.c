/*
 * tensor.c - dtype facts, shape arithmetic, owned tensors and the conversions of
 * half-precision and small (8-bit and narrower) floats shared by every subsystem.
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
    [DAB_DT_FLOAT8E4M3FN] = {"float8e4m3fn", 1},
    [DAB_DT_FLOAT8E4M3FNUZ] = {"float8e4m3fnuz", 1},
    [DAB_DT_FLOAT8E5M2] = {"float8e5m2", 1},
    [DAB_DT_FLOAT8E5M2FNUZ] = {"float8e5m2fnuz", 1},
    [DAB_DT_UINT4] = {"uint4", 1},
    [DAB_DT_INT4] = {"int4", 1},
    [DAB_DT_FLOAT4E2M1] = {"float4e2m1", 1},
    [DAB_DT_FLOAT8E8M0] = {"float8e8m0", 1},
    [DAB_DT_UINT2] = {"uint2", 1},
    [DAB_DT_INT2] = {"int2", 1},
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

bool dab_dtype_is_float(dab_dtype_t dt)
{
    switch (dt) {
    case DAB_DT_FLOAT:
    case DAB_DT_DOUBLE:
    case DAB_DT_FLOAT16:
    case DAB_DT_BFLOAT16:
    case DAB_DT_FLOAT8E4M3FN:
    case DAB_DT_FLOAT8E4M3FNUZ:
    case DAB_DT_FLOAT8E5M2:
    case DAB_DT_FLOAT8E5M2FNUZ:
    case DAB_DT_FLOAT8E8M0:
    case DAB_DT_FLOAT4E2M1: return true;
    default: return false;
    }
}

int dab_dtype_packed_bits(dab_dtype_t dt)
{
    switch (dt) {
    case DAB_DT_INT4:
    case DAB_DT_UINT4:
    case DAB_DT_FLOAT4E2M1: return 4;
    case DAB_DT_INT2:
    case DAB_DT_UINT2: return 2;
    default: return 8 * (int)dab_dtype_size(dt);
    }
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
    case DAB_DT_INT4:
    case DAB_DT_INT2: return ((const int8_t *)d)[i];
    case DAB_DT_UINT4:
    case DAB_DT_UINT2: return ((const uint8_t *)d)[i];
    case DAB_DT_FLOAT8E4M3FN:
    case DAB_DT_FLOAT8E4M3FNUZ:
    case DAB_DT_FLOAT8E5M2:
    case DAB_DT_FLOAT8E5M2FNUZ:
    case DAB_DT_FLOAT8E8M0:
    case DAB_DT_FLOAT4E2M1: return dab_small_float_to_f32(t->dtype, ((const uint8_t *)d)[i]);
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
    case DAB_DT_INT4:
    case DAB_DT_INT2: return ((const int8_t *)d)[i];
    case DAB_DT_UINT4:
    case DAB_DT_UINT2: return ((const uint8_t *)d)[i];
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

/* ---- small floats ----
 * The FLOAT8 formats and FLOAT4E2M1 are sign, exponent, mantissa with IEEE-style
 * subnormals; they differ in widths, bias and which codes are NaN or infinity. A code's
 * magnitude bits read as one integer grow with the value, so rounding a float's
 * significand up may carry into the exponent and land on the next binade exactly.
 */
typedef struct small_fmt {
    int man_bits;     /* mantissa bits */
    int bias;         /* exponent bias */
    uint8_t sign;     /* the sign bit */
    uint8_t max;      /* magnitude code of the largest finite value */
    uint8_t inf;      /* magnitude code of infinity; 0: none */
    uint8_t nan;      /* magnitude code of NaN (sign kept); 0: see uz / none */
    bool uz;          /* FNUZ: no -0; the -0 code 0x80 is the one NaN */
    bool always_sat;  /* no NaN to overflow to: out-of-range values saturate */
} small_fmt_t;

static const small_fmt_t *small_fmt(dab_dtype_t dt)
{
    static const small_fmt_t e4m3fn = {3, 7, 0x80, 0x7e, 0, 0x7f, false, false};
    static const small_fmt_t e4m3fnuz = {3, 8, 0x80, 0x7f, 0, 0, true, false};
    static const small_fmt_t e5m2 = {2, 15, 0x80, 0x7b, 0x7c, 0x7e, false, false};
    static const small_fmt_t e5m2fnuz = {2, 16, 0x80, 0x7f, 0, 0, true, false};
    static const small_fmt_t e2m1 = {1, 1, 0x08, 0x07, 0, 0, false, true};
    switch (dt) {
    case DAB_DT_FLOAT8E4M3FN: return &e4m3fn;
    case DAB_DT_FLOAT8E4M3FNUZ: return &e4m3fnuz;
    case DAB_DT_FLOAT8E5M2: return &e5m2;
    case DAB_DT_FLOAT8E5M2FNUZ: return &e5m2fnuz;
    case DAB_DT_FLOAT4E2M1: return &e2m1;
    default: return NULL;
    }
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float dab_small_float_to_f32(dab_dtype_t dt, uint8_t code)
{
    if (dt == DAB_DT_FLOAT8E8M0) {
        if (code == 0xff)
            return NAN;
        /* 2^-127 is a float32 subnormal: only its top mantissa bit set */
        return f32_from_bits(code ? (uint32_t)code << 23 : 0x00400000u);
    }
    const small_fmt_t *F = small_fmt(dt);
    if (!F)
        return NAN;
    bool neg = code & F->sign;
    uint32_t mag = code & (F->sign - 1u);
    if (F->uz && code == 0x80)
        return NAN;
    if (F->inf && mag == F->inf)
        return neg ? -INFINITY : INFINITY;
    if (mag > F->max && !F->uz)
        return NAN;
    uint32_t e = mag >> F->man_bits, m = mag & ((1u << F->man_bits) - 1);
    float v;
    if (e == 0) /* subnormal: m units of 2^(1 - bias - man_bits) */
        v = (float)m * f32_from_bits((uint32_t)(127 + 1 - F->bias - F->man_bits) << 23);
    else
        v = f32_from_bits((e + 127u - (uint32_t)F->bias) << 23 | m << (23 - F->man_bits));
    return neg ? -v : v;
}

uint8_t dab_f32_to_small_float(dab_dtype_t dt, float f, bool saturate)
{
    if (dt == DAB_DT_FLOAT8E8M0)
        return dab_f32_to_e8m0(f, DAB_ROUND_UP, saturate);
    const small_fmt_t *F = small_fmt(dt);
    if (!F)
        return 0;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t a = u & 0x7fffffffu;
    uint8_t sign = (u >> 31) ? F->sign : 0;
    uint8_t nan = F->uz ? 0x80 : F->nan ? (uint8_t)(sign | F->nan) : F->sign;
    if (a > 0x7f800000u)
        return nan;
    saturate = saturate || F->always_sat;
    uint32_t code;
    if (a == 0x7f800000u) {
        code = 0x100; /* past any max: handled as an overflow below */
    } else if (a < 0x00800000u) {
        code = 0; /* float32 zero or subnormal: far below every format's smallest value */
    } else {
        int e = (int)(a >> 23) - 127, emin = 1 - F->bias;
        uint32_t sig = (a & 0x7fffffu) | 0x800000u; /* 24-bit significand */
        int below = e < emin ? emin - e : 0;        /* binades under the normal range */
        int sh = 23 - F->man_bits + below;
        if (sh > 24) {
            code = 0; /* under half the smallest subnormal */
        } else {
            code = sig >> sh;
            if (!below)
                code += (uint32_t)(e + F->bias - 1) << F->man_bits;
            uint32_t rem = sig & ((1u << sh) - 1), half = 1u << (sh - 1);
            if (rem > half || (rem == half && (code & 1)))
                code++;
        }
    }
    if (code > F->max) {
        if (saturate)
            code = F->max;
        else if (F->inf)
            code = F->inf;
        else
            return nan | (F->uz ? 0 : sign);
    }
    if (code == 0 && F->uz)
        return 0;
    return (uint8_t)(sign | code);
}

uint8_t dab_f32_to_e8m0(float f, dab_round_mode_t mode, bool saturate)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return 0xff;
    if (a == 0x7f800000u)
        return saturate ? 0xfe : 0xff;
    uint32_t e = a >> 23, m = a & 0x7fffffu;
    if (e == 0) { /* zero or float32 subnormal; 2^-127 is m = 0x400000 */
        switch (mode) {
        case DAB_ROUND_UP: return m > 0x400000u;
        case DAB_ROUND_NEAREST: return m >= 0x600000u;
        default: return 0;
        }
    }
    if ((mode == DAB_ROUND_UP && m) || (mode == DAB_ROUND_NEAREST && m >= 0x400000u))
        e++;
    if (e > 0xfe)
        return saturate ? 0xfe : 0xff;
    return (uint8_t)e;
}
