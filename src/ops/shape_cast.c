/*
 * shape_cast.c - dtype conversion for the shape family: Cast, CastLike, and the
 * element conversion others use (Dropout's mask, ConstantOfShape...).
 *
 * The conversions between the eleven plain C types are generated as one loop
 * per (source, destination) pair from two X-macro lists, so each is a tight
 * loop the compiler vectorizes. float16 and bfloat16 go through float in
 * stack-sized chunks. Floats to integers truncate toward zero to int64 (NaN
 * becomes 0, beyond int64 saturates) and then wrap to the target's width, as
 * numpy and onnxruntime do on x86 for the values they define (-1.0 to uint8 is
 * 255): ONNX leaves out-of-range results undefined, and C makes them undefined
 * behaviour, so we pick this defined answer. uint64 keeps its upper half.
 *
 * The low-precision dtypes (tensor.h): INT4/INT2/UINT4/UINT2 are int8/uint8 in memory,
 * so as sources they are those; as destinations the int8/uint8 result wraps to 4 or 2
 * bits (numpy/ml_dtypes' behaviour, which ONNX's tests expect: -9 to int4 is 7). The
 * small floats (FLOAT8*, FLOAT4E2M1, FLOAT8E8M0) go through float like the halves, with
 * Cast's saturate and round_mode (opsets 19 and 25) applied when encoding.
 */
#include "shape_int.h"

#include <string.h>

#if defined(__F16C__)
#include <immintrin.h>
#endif

/* X(name, C type, dtype, kind, low, high): the conversion sources. */
#define CAST_SRC(X)                                                   \
    X(f32, float, DAB_DT_FLOAT, FLT, 0, 0)                            \
    X(f64, double, DAB_DT_DOUBLE, FLT, 0, 0)                          \
    X(i8, int8_t, DAB_DT_INT8, INT, INT8_MIN, INT8_MAX)               \
    X(u8, uint8_t, DAB_DT_UINT8, INT, 0, UINT8_MAX)                   \
    X(i16, int16_t, DAB_DT_INT16, INT, INT16_MIN, INT16_MAX)          \
    X(u16, uint16_t, DAB_DT_UINT16, INT, 0, UINT16_MAX)               \
    X(i32, int32_t, DAB_DT_INT32, INT, INT32_MIN, INT32_MAX)          \
    X(u32, uint32_t, DAB_DT_UINT32, INT, 0, UINT32_MAX)               \
    X(i64, int64_t, DAB_DT_INT64, INT, INT64_MIN, INT64_MAX)          \
    X(u64, uint64_t, DAB_DT_UINT64, U64, 0, UINT64_MAX)               \
    X(b8, uint8_t, DAB_DT_BOOL, BOOL, 0, 1)

/* The same list for the destinations, carrying the source's fields along. */
#define CAST_DST(X, sn, st, sdt, sk)                                          \
    X(sn, st, sdt, sk, f32, float, DAB_DT_FLOAT, FLT, 0, 0)                   \
    X(sn, st, sdt, sk, f64, double, DAB_DT_DOUBLE, FLT, 0, 0)                 \
    X(sn, st, sdt, sk, i8, int8_t, DAB_DT_INT8, INT, INT8_MIN, INT8_MAX)      \
    X(sn, st, sdt, sk, u8, uint8_t, DAB_DT_UINT8, INT, 0, UINT8_MAX)          \
    X(sn, st, sdt, sk, i16, int16_t, DAB_DT_INT16, INT, INT16_MIN, INT16_MAX) \
    X(sn, st, sdt, sk, u16, uint16_t, DAB_DT_UINT16, INT, 0, UINT16_MAX)      \
    X(sn, st, sdt, sk, i32, int32_t, DAB_DT_INT32, INT, INT32_MIN, INT32_MAX) \
    X(sn, st, sdt, sk, u32, uint32_t, DAB_DT_UINT32, INT, 0, UINT32_MAX)      \
    X(sn, st, sdt, sk, i64, int64_t, DAB_DT_INT64, INT, INT64_MIN, INT64_MAX) \
    X(sn, st, sdt, sk, u64, uint64_t, DAB_DT_UINT64, U64, 0, UINT64_MAX)      \
    X(sn, st, sdt, sk, b8, uint8_t, DAB_DT_BOOL, BOOL, 0, 1)

/* Float to int64: truncation, NaN to 0, saturation beyond int64. */
static inline int64_t f2i64(double x)
{
    return x != x ? 0 : x >= 9223372036854775808.0 ? INT64_MAX
                      : x <= -9223372036854775808.0 ? INT64_MIN : (int64_t)x;
}

/* Float to uint64: as f2i64 below 2^63 (negatives wrap), exact above, saturating. */
static inline uint64_t f2u64(double x)
{
    if (x >= 9223372036854775808.0)
        return x >= 18446744073709551616.0 ? UINT64_MAX
                                           : (uint64_t)(x - 9223372036854775808.0) + (1ull << 63);
    return (uint64_t)f2i64(x);
}

/* One element, by (source kind, destination kind); kinds: FLT, INT (up to int64), U64,
 * BOOL. */
#define CV_FLT_FLT(x, T) ((T)(x))
#define CV_FLT_INT(x, T) ((T)f2i64(x))
#define CV_FLT_U64(x, T) ((T)f2u64(x))
#define CV_FLT_BOOL(x, T) ((T)((x) != 0))
#define CV_INT_FLT(x, T) ((T)(x))
#define CV_INT_INT(x, T) ((T)(x))
#define CV_INT_U64(x, T) ((T)(x))
#define CV_INT_BOOL(x, T) ((T)((x) != 0))
#define CV_U64_FLT(x, T) ((T)(x))
#define CV_U64_INT(x, T) ((T)(x))
#define CV_U64_U64(x, T) ((T)(x))
#define CV_U64_BOOL(x, T) ((T)((x) != 0))
#define CV_BOOL_FLT(x, T) ((T)((x) != 0))
#define CV_BOOL_INT(x, T) ((T)((x) != 0))
#define CV_BOOL_U64(x, T) ((T)((x) != 0))
#define CV_BOOL_BOOL(x, T) ((T)((x) != 0))

typedef void (*cv_fn)(const void *src, void *dst, int64_t n);

#define CV_DEF(sn, st, sdt, sk, dn, dt, ddt, dk, lo, hi)                       \
    static void cv_##sn##_##dn(const void *sv, void *dv, int64_t n)            \
    {                                                                          \
        const st *restrict s = sv;                                             \
        dt *restrict d = dv;                                                   \
        for (int64_t i = 0; i < n; i++)                                        \
            d[i] = CV_##sk##_##dk(s[i], dt);                           \
    }
#define CV_DEF_ROW(sn, st, sdt, sk, lo, hi) CAST_DST(CV_DEF, sn, st, sdt, sk)
CAST_SRC(CV_DEF_ROW)

#define CV_ENTRY(sn, st, sdt, sk, dn, dt, ddt, dk, lo, hi) [sdt][ddt] = cv_##sn##_##dn,
#define CV_ENTRY_ROW(sn, st, sdt, sk, lo, hi) CAST_DST(CV_ENTRY, sn, st, sdt, sk)
static const cv_fn g_cv[DAB_DT_COUNT_][DAB_DT_COUNT_] = {CAST_SRC(CV_ENTRY_ROW)};

static bool is_half(dab_dtype_t dt)
{
    return dt == DAB_DT_FLOAT16 || dt == DAB_DT_BFLOAT16;
}

/* FLOAT8*, FLOAT8E8M0 and FLOAT4E2M1: a code per byte, converted through float. */
static bool is_small_float(dab_dtype_t dt)
{
    return (unsigned)dt < DAB_DT_COUNT_ && (DAB_DTM_LOWP & DAB_DTM(dt)) &&
           dab_dtype_is_float(dt);
}

/* INT4/INT2 as int8, UINT4/UINT2 as uint8; others unchanged. */
static dab_dtype_t byte_storage(dab_dtype_t dt)
{
    switch (dt) {
    case DAB_DT_INT4:
    case DAB_DT_INT2: return DAB_DT_INT8;
    case DAB_DT_UINT4:
    case DAB_DT_UINT2: return DAB_DT_UINT8;
    default: return dt;
    }
}

static bool is_plain(dab_dtype_t dt)
{
    return (unsigned)dt < DAB_DT_COUNT_ && g_cv[dt][DAB_DT_FLOAT] != NULL;
}

/* Converted through float in chunks rather than by a g_cv loop. */
static bool via_float(dab_dtype_t dt)
{
    return is_half(dt) || is_small_float(dt);
}

bool dab_cast_supported(dab_dtype_t sdt, dab_dtype_t ddt)
{
    sdt = byte_storage(sdt);
    ddt = byte_storage(ddt);
    return (is_plain(sdt) || via_float(sdt)) && (is_plain(ddt) || via_float(ddt));
}


static void half_to_f32(dab_dtype_t dt, const uint16_t *s, float *d, int64_t n)
{
    int64_t i = 0;
    if (dt == DAB_DT_BFLOAT16) {
        for (; i < n; i++)
            d[i] = dab_bf16_to_f32(s[i]);
        return;
    }
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
#endif
    for (; i < n; i++)
        d[i] = dab_f16_to_f32(s[i]);
}

static void f32_to_half(dab_dtype_t dt, const float *s, uint16_t *d, int64_t n)
{
    int64_t i = 0;
    if (dt == DAB_DT_BFLOAT16) {
        for (; i < n; i++)
            d[i] = dab_f32_to_bf16(s[i]);
        return;
    }
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++)
        d[i] = dab_f32_to_f16(s[i]);
}

/* Cast's options for small-float destinations (ignored for the others). */
typedef struct cast_opts {
    bool saturate;
    dab_round_mode_t round_mode;
} cast_opts_t;

static const cast_opts_t g_default_opts = {true, DAB_ROUND_UP};

static void small_to_f32(dab_dtype_t dt, const uint8_t *s, float *d, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        d[i] = dab_small_float_to_f32(dt, s[i]);
}

static void f32_to_small(dab_dtype_t dt, const float *s, uint8_t *d, int64_t n,
                         const cast_opts_t *o)
{
    if (dt == DAB_DT_FLOAT8E8M0) {
        for (int64_t i = 0; i < n; i++)
            d[i] = dab_f32_to_e8m0(s[i], o->round_mode, o->saturate);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        d[i] = dab_f32_to_small_float(dt, s[i], o->saturate);
}

/* Wraps int8/uint8 values in place to a 4- or 2-bit dtype (sign-extending INT4/INT2). */
static void wrap_sub_byte(dab_dtype_t dt, uint8_t *d, int64_t n)
{
    unsigned bits = dt == DAB_DT_INT4 || dt == DAB_DT_UINT4 ? 4 : 2;
    unsigned mask = (1u << bits) - 1, sign = 1u << (bits - 1);
    bool is_signed = dt == DAB_DT_INT4 || dt == DAB_DT_INT2;
    for (int64_t i = 0; i < n; i++) {
        unsigned v = d[i] & mask;
        d[i] = (uint8_t)(is_signed && (v & sign) ? v | ~mask : v);
    }
}

static void cast_elems(dab_dtype_t sdt, const void *src, dab_dtype_t ddt, void *dst, int64_t n,
                       const cast_opts_t *o)
{
    if (n <= 0)
        return;
    if (sdt == ddt) {
        memcpy(dst, src, (size_t)n * dab_dtype_size(sdt));
        return;
    }
    dab_dtype_t s2 = byte_storage(sdt), d2 = byte_storage(ddt);
    if (d2 != ddt) {
        cast_elems(s2, src, d2, dst, n, o);
        wrap_sub_byte(ddt, dst, n);
        return;
    }
    sdt = s2;
    if (!via_float(sdt) && !via_float(ddt)) {
        g_cv[sdt][ddt](src, dst, n);
        return;
    }
    /* through float, a chunk at a time */
    enum { CHUNK = 1024 };
    float buf[CHUNK];
    size_t ses = dab_dtype_size(sdt), des = dab_dtype_size(ddt);
    for (int64_t a = 0; a < n; a += CHUNK) {
        int64_t m = DAB_MIN((int64_t)CHUNK, n - a);
        const char *s = (const char *)src + a * (int64_t)ses;
        char *d = (char *)dst + a * (int64_t)des;
        if (is_half(sdt))
            half_to_f32(sdt, (const uint16_t *)s, buf, m);
        else if (is_small_float(sdt))
            small_to_f32(sdt, (const uint8_t *)s, buf, m);
        else
            g_cv[sdt][DAB_DT_FLOAT](s, buf, m);
        if (is_half(ddt))
            f32_to_half(ddt, buf, (uint16_t *)d, m);
        else if (is_small_float(ddt))
            f32_to_small(ddt, buf, (uint8_t *)d, m, o);
        else
            g_cv[DAB_DT_FLOAT][ddt](buf, d, m);
    }
}

void dab_cast_elems(dab_dtype_t sdt, const void *src, dab_dtype_t ddt, void *dst, int64_t n)
{
    cast_elems(sdt, src, ddt, dst, n, &g_default_opts);
}

/*
 * Reads saturate (opset 19+, default 1) and round_mode (opset 25+, default "up") of Cast
 * and CastLike; EINVAL naming the attribute on a bad value.
 */
static int cast_read_opts(const dab_node_t *node, cast_opts_t *o, dab_err_t *err)
{
    *o = g_default_opts;
    int64_t sat = dab_attr_int(node, "saturate", 1);
    if (sat != 0 && sat != 1)
        return dab_err_set(err, DAB_EINVAL, "attribute saturate = %lld must be 0 or 1",
                           (long long)sat);
    o->saturate = sat != 0;
    const char *rm = dab_attr_string(node, "round_mode", "up");
    if (!strcmp(rm, "up"))
        o->round_mode = DAB_ROUND_UP;
    else if (!strcmp(rm, "down"))
        o->round_mode = DAB_ROUND_DOWN;
    else if (!strcmp(rm, "nearest"))
        o->round_mode = DAB_ROUND_NEAREST;
    else
        return dab_err_set(err, DAB_EINVAL,
                           "attribute round_mode = '%s' must be 'up', 'down' or 'nearest'", rm);
    return 0;
}

/* Runs the conversion of in into out over ctx's threads. */
static int cast_run(const dab_node_t *node, const dab_tensor_t *in, dab_tensor_t *out,
                    dab_err_t *err)
{
    cast_opts_t o;
    int rc = cast_read_opts(node, &o, err);
    if (rc)
        return rc;
    int64_t n = dab_tensor_numel(in);
    int nt = dab_par_threads(node->ctx, n);
    size_t ses = dab_dtype_size(in->dtype), des = dab_dtype_size(out->dtype);
    DAB_PAR_FOR(nt, int, t, nt,
        int64_t a = n * t / nt, b = n * (t + 1) / nt;
        cast_elems(in->dtype, (const char *)in->data + a * (int64_t)ses, out->dtype,
                   (char *)out->data + a * (int64_t)des, b - a, &o);
    );
    return 0;
}

/* ---- Cast ---- */

/* The target dtype: an int from opset 6, a name ("FLOAT") in opset 1. */
static int cast_target(const dab_node_t *node, dab_dtype_t *to, dab_err_t *err)
{
    const dab_attr_t *a = dab_attr_find(node, "to");
    if (!a)
        return dab_err_set(err, DAB_EINVAL, "attribute to is required");
    int64_t v = -1;
    if (a->type == DAB_ATTR_INT) {
        v = a->i;
    } else if (a->type == DAB_ATTR_STRING) {
        static const struct {
            const char *name;
            dab_dtype_t dt;
        } names[] = {
            {"FLOAT", DAB_DT_FLOAT},   {"UINT8", DAB_DT_UINT8},   {"INT8", DAB_DT_INT8},
            {"UINT16", DAB_DT_UINT16}, {"INT16", DAB_DT_INT16},   {"INT32", DAB_DT_INT32},
            {"INT64", DAB_DT_INT64},   {"STRING", DAB_DT_STRING}, {"BOOL", DAB_DT_BOOL},
            {"FLOAT16", DAB_DT_FLOAT16}, {"DOUBLE", DAB_DT_DOUBLE}, {"UINT32", DAB_DT_UINT32},
            {"UINT64", DAB_DT_UINT64}, {"BFLOAT16", DAB_DT_BFLOAT16},
        };
        for (size_t i = 0; i < DAB_ARRAY_LEN(names); i++)
            if (!strcasecmp(a->s, names[i].name))
                v = names[i].dt;
        if (v < 0)
            return dab_err_set(err, DAB_EUNSUPPORTED, "attribute to names type '%s', which is not "
                               "supported", a->s);
    } else {
        return dab_err_set(err, DAB_EINVAL, "attribute to must be an int");
    }
    if (v <= 0 || v > 0xffff || !dab_cast_supported((dab_dtype_t)v, DAB_DT_FLOAT))
        return dab_err_set(err, DAB_EUNSUPPORTED, "cast to %s (type %lld) is not supported",
                           dab_dtype_valid((int)v) ? dab_dtype_name((dab_dtype_t)v) : "that type",
                           (long long)v);
    *to = (dab_dtype_t)v;
    return 0;
}

int dab_shp_cast_init(dab_node_t *node, dab_err_t *err)
{
    dab_dtype_t to;
    cast_opts_t o;
    int rc = cast_target(node, &to, err);
    return rc ? rc : cast_read_opts(node, &o, err);
}

int dab_shp_cast_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0];
    dab_dtype_t to;
    int rc = cast_target(node, &to, err);
    if (rc)
        return rc;
    if (!dab_cast_supported(in->dtype, to))
        return dab_err_set(err, DAB_EUNSUPPORTED, "cast from %s to %s is not supported",
                           dab_dtype_name(in->dtype), dab_dtype_name(to));
    return dab_shp_set_out(node, 0, to, in->rank, in->dims, err);
}

int dab_shp_cast_compute(dab_node_t *node, dab_err_t *err)
{
    return cast_run(node, node->inputs[0], node->outputs[0], err);
}

/* ---- CastLike ---- */

int dab_shp_castlike_init(dab_node_t *node, dab_err_t *err)
{
    cast_opts_t o;
    return cast_read_opts(node, &o, err);
}

int dab_shp_castlike_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *in = node->inputs[0], *like = node->inputs[1];
    if (!dab_cast_supported(in->dtype, like->dtype))
        return dab_err_set(err, DAB_EUNSUPPORTED, "cast from %s to %s is not supported",
                           dab_dtype_name(in->dtype), dab_dtype_name(like->dtype));
    return dab_shp_set_out(node, 0, like->dtype, in->rank, in->dims, err);
}

int dab_shp_castlike_compute(dab_node_t *node, dab_err_t *err)
{
    return cast_run(node, node->inputs[0], node->outputs[0], err);
}
