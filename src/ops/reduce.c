/*
 * reduce.c - the reduction family: its operator table, and the Reduce* operators
 * (ReduceSum, ReduceMean, ReduceProd, ReduceMax, ReduceMin, ReduceL1, ReduceL2,
 * ReduceLogSum, ReduceLogSumExp, ReduceSumSquare). ArgMax/ArgMin live in
 * reduce_arg.c, Softmax/LogSoftmax/Hardmax in reduce_softmax.c.
 *
 * Every reduction is pre-map, combine, post-map: sum(|x|), sqrt(sum(x*x)),
 * log(sum(exp(x - m))) + m, ... Reshape turns the axes into a plan: dims of size
 * 1 are dropped and neighbouring dims of the same kind (kept / reduced) merged.
 * When the last merged group is reduced, each output is a walk over contiguous
 * segments (a horizontal reduction, kept in DAB_RED_LANES lanes so it vectorizes);
 * when it is kept, each run of output columns accumulates whole input rows (a
 * vertical reduction, contiguous per row). Any other reduced groups are walked by an
 * odometer, so [outer, reduced, inner] is the one-group case of the same code and
 * non-contiguous axes need neither a transpose nor heap.
 *
 * When there are fewer outputs than threads (a global sum), each output's
 * reduction is split into chunks over the threads instead.
 *
 * Arithmetic happens in an accumulator type: float data is summed (and
 * multiplied) in double, read straight from the tensor, but kept in float for
 * max/min (exact) and LogSumExp (its float exp vectorizes); double in double;
 * integer L2/LogSum/LogSumExp in double; other integer reductions in int64
 * (wrapping, as the narrow type would) or uint64, bool max/min in int64. Inputs
 * of another type than the kernel reads are converted a tile at a time into a
 * stack buffer.
 */
#include "reduce_int.h"

#include <math.h>
#include "kernels/simd/simd.h"
#include <stdbool.h>

enum red_kind {
    RK_SUM,
    RK_MEAN,
    RK_PROD,
    RK_MAX,
    RK_MIN,
    RK_L1,
    RK_L2,
    RK_LOGSUM,
    RK_LOGSUMEXP,
    RK_SUMSQ,
};

static const struct {
    const char *name;
    int kind;
} g_red_names[] = {
    {"ReduceSum", RK_SUM},       {"ReduceMean", RK_MEAN},     {"ReduceProd", RK_PROD},
    {"ReduceMax", RK_MAX},       {"ReduceMin", RK_MIN},       {"ReduceL1", RK_L1},
    {"ReduceL2", RK_L2},         {"ReduceLogSum", RK_LOGSUM}, {"ReduceLogSumExp", RK_LOGSUMEXP},
    {"ReduceSumSquare", RK_SUMSQ},
};

/* Pre-map + combine pairs the kernels are instantiated for. */
enum red_combo { RC_ADD, RC_ABS_ADD, RC_SQ_ADD, RC_EXP_ADD, RC_MUL, RC_MAX, RC_MIN, RC_COUNT };

typedef enum red_acc { RA_F32, RA_F64, RA_I64, RA_U64 } red_acc_t;

/* Most chunks one output's reduction is split into when outputs are fewer than threads. */
#define DAB_RED_MAX_CHUNKS 64

/* How compute walks the input; see the top comment. Offsets and strides in elements. */
typedef struct red_plan {
    int64_t n_out;   /* output elements */
    int64_t n_red;   /* input elements per output */
    bool seg_last;   /* last merged group reduced: outputs reduce contiguous segments */
    int64_t inner;   /* !seg_last: size of the last kept group (contiguous columns); else 1 */
    int64_t seg;     /* seg_last: size of the last reduced group; else 1 */
    int n_keep;      /* kept groups other than `inner`, outermost first */
    int64_t keep_dims[DAB_MAX_RANK], keep_strides[DAB_MAX_RANK];
    int n_rowg;      /* reduced groups other than `seg`, walked by the odometer */
    int64_t row_dims[DAB_MAX_RANK], row_strides[DAB_MAX_RANK];
    int64_t n_outer; /* product of keep_dims */
    int64_t n_rows;  /* product of row_dims */
} red_plan_t;

typedef struct red_priv {
    int kind;
    bool keepdims;
    bool noop_empty;
    int n_axes_attr; /* -1: no `axes` attribute */
    int64_t axes_attr[DAB_MAX_RANK];
    red_plan_t plan; /* from the last reshape */
} red_priv_t;

/* ---- per-dtype limits (the empty-set values of Max and Min) ---- */

static int64_t red_dt_min_i64(dab_dtype_t dt)
{
    switch (dt) {
    case DAB_DT_INT8: return INT8_MIN;
    case DAB_DT_INT16: return INT16_MIN;
    case DAB_DT_INT32: return INT32_MIN;
    case DAB_DT_INT64: return INT64_MIN;
    default: return 0; /* bool */
    }
}

static int64_t red_dt_max_i64(dab_dtype_t dt)
{
    switch (dt) {
    case DAB_DT_INT8: return INT8_MAX;
    case DAB_DT_INT16: return INT16_MAX;
    case DAB_DT_INT32: return INT32_MAX;
    case DAB_DT_INT64: return INT64_MAX;
    default: return 1; /* bool */
    }
}

static uint64_t red_dt_max_u64(dab_dtype_t dt)
{
    switch (dt) {
    case DAB_DT_UINT8: return UINT8_MAX;
    case DAB_DT_UINT16: return UINT16_MAX;
    case DAB_DT_UINT32: return UINT32_MAX;
    default: return UINT64_MAX;
    }
}

/* Float to integer without C's undefined behaviour: NaN gives 0, the rest saturates. */
static int64_t red_sat_i64(double v)
{
    if (v != v)
        return 0;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

static uint64_t red_sat_u64(double v)
{
    if (v != v || v <= 0)
        return 0;
    if (v >= 18446744073709551615.0)
        return UINT64_MAX;
    return (uint64_t)v;
}

/* ---- element operations per accumulator type ---- */

#define ADD_f32(a, b) ((a) + (b))
#define ADD_f64(a, b) ((a) + (b))
#define ADD_i64(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))
#define ADD_u64(a, b) ((a) + (b))
#define MUL_f32(a, b) ((a) * (b))
#define MUL_f64(a, b) ((a) * (b))
#define MUL_i64(a, b) ((int64_t)((uint64_t)(a) * (uint64_t)(b)))
#define MUL_u64(a, b) ((a) * (b))
#define ABS_f32(a) fabsf(a)
#define ABS_f64(a) fabs(a)
#define ABS_i64(a) ((a) < 0 ? (int64_t)(0 - (uint64_t)(a)) : (a))
#define ABS_u64(a) (a)
#define ISNAN_f32(a) ((a) != (a))
#define ISNAN_f64(a) ((a) != (a))
#define ISNAN_i64(a) 0
#define ISNAN_u64(a) 0
/* exp, sqrt and log only run in float accumulators (integer L2, LogSum and
 * LogSumExp accumulate in double); the integer forms exist to instantiate. */
#define EXP_f32(a) dab_expf_fast(a)
#define EXP_f64(a) exp(a)
#define EXP_i64(a) (a)
#define EXP_u64(a) (a)
#define SQRT_f32(a) sqrtf(a)
#define SQRT_f64(a) sqrt(a)
#define SQRT_i64(a) (a)
#define SQRT_u64(a) (a)
#define LOG_f32(a) logf(a)
#define LOG_f64(a) log(a)
#define LOG_i64(a) (a)
#define LOG_u64(a) (a)
#define ISFIN_f32(a) isfinite(a)
#define ISFIN_f64(a) isfinite(a)
#define ISFIN_i64(a) 1
#define ISFIN_u64(a) 1
#define DIVN_f32(a, n) ((a) / (float)(n))
#define DIVN_f64(a, n) ((a) / (double)(n))
#define DIVN_i64(a, n) ((n) ? (a) / (n) : 0)
#define DIVN_u64(a, n) ((n) ? (a) / (uint64_t)(n) : 0)
#define LOWEST_f32(dt) (-INFINITY)
#define LOWEST_f64(dt) (-INFINITY)
#define LOWEST_i64(dt) red_dt_min_i64(dt)
#define LOWEST_u64(dt) 0
#define HIGHEST_f32(dt) INFINITY
#define HIGHEST_f64(dt) INFINITY
#define HIGHEST_i64(dt) red_dt_max_i64(dt)
#define HIGHEST_u64(dt) red_dt_max_u64(dt)
#define TOI64_f32(a) red_sat_i64(a)
#define TOI64_f64(a) red_sat_i64(a)
#define TOI64_i64(a) (a)
#define TOI64_u64(a) ((int64_t)(a))
#define TOU64_f32(a) red_sat_u64(a)
#define TOU64_f64(a) red_sat_u64(a)
#define TOU64_i64(a) ((uint64_t)(a))
#define TOU64_u64(a) (a)

/* w64: float data accumulated in double (sums and products of float inputs) */
#define ADD_w64 ADD_f64
#define MUL_w64 MUL_f64
#define ABS_w64 ABS_f64
#define ISNAN_w64 ISNAN_f64
#define EXP_w64 EXP_f64
#define SQRT_w64 SQRT_f64
#define LOG_w64 LOG_f64
#define ISFIN_w64 ISFIN_f64
#define DIVN_w64 DIVN_f64
#define LOWEST_w64 LOWEST_f64
#define HIGHEST_w64 HIGHEST_f64
#define TOI64_w64 TOI64_f64
#define TOU64_w64 TOU64_f64

/* pre-maps (s: the LogSumExp shift) and combines */
#define PRE_ID(S, x, s) (x)
#define PRE_ABS(S, x, s) ABS_##S(x)
#define PRE_SQ(S, x, s) MUL_##S(x, x)
#define PRE_EXP(S, x, s) EXP_##S((x) - (s))
#define COMB_ADD(S, a, b) ADD_##S(a, b)
#define COMB_MUL(S, a, b) MUL_##S(a, b)
/* NaN wins, as with numpy's maximum/minimum */
#define COMB_MAX(S, a, b) (((b) > (a) || ISNAN_##S(b)) ? (b) : (a))
#define COMB_MIN(S, a, b) (((b) < (a) || ISNAN_##S(b)) ? (b) : (a))

/* The odometer over reduced groups: advances *off to the next row or segment. */
static inline void red_next(int n, const int64_t *dims, const int64_t *strides, int64_t *idx,
                            int64_t *off)
{
    for (int g = n - 1; g >= 0; g--) {
        *off += strides[g];
        if (++idx[g] < dims[g])
            return;
        *off -= strides[g] * dims[g];
        idx[g] = 0;
    }
}

/* Input offset of outer index o (row-major over the kept groups). */
static inline int64_t red_outer_offset(const red_plan_t *pl, int64_t o)
{
    int64_t off = 0;
    for (int g = pl->n_keep - 1; g >= 0; g--) {
        int64_t q = o / pl->keep_dims[g];
        off += (o - q * pl->keep_dims[g]) * pl->keep_strides[g];
        o = q;
    }
    return off;
}

/*
 * The two kernels of a (pre-map, combine) pair:
 *   rows: acc[i] = comb(acc[i], pre(x[i], sh[i])) for i < n (vertical, vectorizes directly)
 *   seg:  a0 combined with pre(x[i], sh) for i < n, kept in DAB_RED_LANES independent lanes
 *         so that the compiler may vectorize without reassociating float math.
 */
#define RED_KERNELS(S, T, TI, NAME, PRE, COMB)                                               \
    static void rows_##S##_##NAME(T *restrict acc, const TI *restrict x, int64_t n,          \
                                  const T *restrict sh)                                      \
    {                                                                                        \
        (void)sh;                                                                            \
        for (int64_t i = 0; i < n; i++)                                                      \
            acc[i] = COMB(S, acc[i], PRE(S, (T)x[i], sh[i]));                                \
    }                                                                                        \
    static T seg_##S##_##NAME(const TI *restrict x, int64_t n, T sh, T a0)                   \
    {                                                                                        \
        (void)sh;                                                                            \
        T a = a0;                                                                            \
        int64_t i = 0;                                                                       \
        if (n >= DAB_RED_LANES) {                                                            \
            T lane[DAB_RED_LANES];                                                           \
            for (int l = 0; l < DAB_RED_LANES; l++)                                          \
                lane[l] = PRE(S, (T)x[l], sh);                                               \
            for (i = DAB_RED_LANES; i + DAB_RED_LANES <= n; i += DAB_RED_LANES)              \
                for (int l = 0; l < DAB_RED_LANES; l++)                                      \
                    lane[l] = COMB(S, lane[l], PRE(S, (T)x[i + l], sh));                     \
            for (int w = DAB_RED_LANES / 2; w > 0; w /= 2)                                   \
                for (int l = 0; l < w; l++)                                                  \
                    lane[l] = COMB(S, lane[l], lane[l + w]);                                 \
            a = COMB(S, a, lane[0]);                                                         \
        }                                                                                    \
        for (; i < n; i++)                                                                   \
            a = COMB(S, a, PRE(S, (T)x[i], sh));                                             \
        return a;                                                                            \
    }

#define RED_LOAD_CASE(T, DT, CT)                                                             \
    case DT:                                                                                 \
        for (int64_t i = 0; i < n; i++)                                                      \
            dst[i] = (T)((const CT *)src)[off + i];                                          \
        break;

#define RED_STORE_CASE(DT, CT, CONV)                                                         \
    case DT:                                                                                 \
        for (int64_t i = 0; i < n; i++)                                                      \
            ((CT *)dst)[off + i] = (CT)CONV(v[i]);                                           \
        break;

/*
 * Everything for one accumulator type T (suffix S) reading elements of type TI
 * (dtype DTI) straight from the tensor: kernels, tile load (other dtypes, converted
 * to TI) and store (T to the output's dtype), post-maps, and the driver red_run_S.
 */
#define RED_DEFINE(S, T, TI, DTI)                                                            \
    RED_KERNELS(S, T, TI, add, PRE_ID, COMB_ADD)                                             \
    RED_KERNELS(S, T, TI, abs_add, PRE_ABS, COMB_ADD)                                        \
    RED_KERNELS(S, T, TI, sq_add, PRE_SQ, COMB_ADD)                                          \
    RED_KERNELS(S, T, TI, exp_add, PRE_EXP, COMB_ADD)                                        \
    RED_KERNELS(S, T, TI, mul, PRE_ID, COMB_MUL)                                             \
    RED_KERNELS(S, T, TI, max, PRE_ID, COMB_MAX)                                             \
    RED_KERNELS(S, T, TI, min, PRE_ID, COMB_MIN)                                             \
                                                                                             \
    typedef void (*red_rows_fn_##S)(T *restrict, const TI *restrict, int64_t,                \
                                    const T *restrict);                                      \
    typedef T (*red_seg_fn_##S)(const TI *restrict, int64_t, T, T);                          \
    static const red_rows_fn_##S g_rows_##S[RC_COUNT] = {                                    \
        [RC_ADD] = rows_##S##_add,         [RC_ABS_ADD] = rows_##S##_abs_add,                \
        [RC_SQ_ADD] = rows_##S##_sq_add,   [RC_EXP_ADD] = rows_##S##_exp_add,                \
        [RC_MUL] = rows_##S##_mul,         [RC_MAX] = rows_##S##_max,                        \
        [RC_MIN] = rows_##S##_min,                                                           \
    };                                                                                       \
    static const red_seg_fn_##S g_seg_##S[RC_COUNT] = {                                      \
        [RC_ADD] = seg_##S##_add,         [RC_ABS_ADD] = seg_##S##_abs_add,                  \
        [RC_SQ_ADD] = seg_##S##_sq_add,   [RC_EXP_ADD] = seg_##S##_exp_add,                  \
        [RC_MUL] = seg_##S##_mul,         [RC_MAX] = seg_##S##_max,                          \
        [RC_MIN] = seg_##S##_min,                                                            \
    };                                                                                       \
                                                                                             \
    static void red_load_##S(TI *dst, const void *src, dab_dtype_t dt, int64_t off,          \
                             int64_t n)                                                      \
    {                                                                                        \
        switch (dt) {                                                                        \
            RED_LOAD_CASE(TI, DAB_DT_FLOAT, float)                                           \
            RED_LOAD_CASE(TI, DAB_DT_DOUBLE, double)                                         \
            RED_LOAD_CASE(TI, DAB_DT_INT8, int8_t)                                           \
            RED_LOAD_CASE(TI, DAB_DT_INT16, int16_t)                                         \
            RED_LOAD_CASE(TI, DAB_DT_INT32, int32_t)                                         \
            RED_LOAD_CASE(TI, DAB_DT_INT64, int64_t)                                         \
            RED_LOAD_CASE(TI, DAB_DT_UINT8, uint8_t)                                         \
            RED_LOAD_CASE(TI, DAB_DT_UINT16, uint16_t)                                       \
            RED_LOAD_CASE(TI, DAB_DT_UINT32, uint32_t)                                       \
            RED_LOAD_CASE(TI, DAB_DT_UINT64, uint64_t)                                       \
            RED_LOAD_CASE(TI, DAB_DT_BOOL, uint8_t)                                          \
        default:                                                                             \
            break;                                                                           \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    static void red_store_##S(void *dst, dab_dtype_t dt, int64_t off, const T *v, int64_t n) \
    {                                                                                        \
        switch (dt) {                                                                        \
            RED_STORE_CASE(DAB_DT_FLOAT, float, )                                            \
            RED_STORE_CASE(DAB_DT_DOUBLE, double, )                                          \
            RED_STORE_CASE(DAB_DT_INT8, int8_t, TOI64_##S)                                   \
            RED_STORE_CASE(DAB_DT_INT16, int16_t, TOI64_##S)                                 \
            RED_STORE_CASE(DAB_DT_INT32, int32_t, TOI64_##S)                                 \
            RED_STORE_CASE(DAB_DT_INT64, int64_t, TOI64_##S)                                 \
            RED_STORE_CASE(DAB_DT_UINT8, uint8_t, TOU64_##S)                                 \
            RED_STORE_CASE(DAB_DT_UINT16, uint16_t, TOU64_##S)                               \
            RED_STORE_CASE(DAB_DT_UINT32, uint32_t, TOU64_##S)                               \
            RED_STORE_CASE(DAB_DT_UINT64, uint64_t, TOU64_##S)                               \
        case DAB_DT_BOOL:                                                                    \
            for (int64_t i = 0; i < n; i++)                                                  \
                ((uint8_t *)dst)[off + i] = v[i] != 0;                                       \
            break;                                                                           \
        default:                                                                             \
            break;                                                                           \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    static T red_init_##S(int kind, dab_dtype_t dt)                                          \
    {                                                                                        \
        (void)dt;                                                                            \
        switch (kind) {                                                                      \
        case RK_PROD: return (T)1;                                                           \
        case RK_MAX: return (T)LOWEST_##S(dt);                                               \
        case RK_MIN: return (T)HIGHEST_##S(dt);                                              \
        default: return (T)0;                                                                \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    static inline T red_post_##S(int kind, T a, int64_t n, T sh)                             \
    {                                                                                        \
        switch (kind) {                                                                      \
        case RK_MEAN: return (T)DIVN_##S(a, n);                                              \
        case RK_L2: return (T)SQRT_##S(a);                                                   \
        case RK_LOGSUM: return (T)LOG_##S(a);                                                \
        case RK_LOGSUMEXP: return (T)(LOG_##S(a) + sh);                                      \
        default: return a;                                                                   \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* Vertical: acc[0..w) over every row of the odometer, starting at input offset base. */ \
    static void red_walk_rows_##S(const red_plan_t *pl, const dab_tensor_t *x, int combo,    \
                                  int64_t base, int64_t w, T *acc, const T *sh, TI *buf)     \
    {                                                                                        \
        int64_t idx[DAB_MAX_RANK] = {0};                                                     \
        int64_t off = base;                                                                  \
        red_rows_fn_##S fn = g_rows_##S[combo];                                              \
        bool direct = x->dtype == DTI;                                                       \
        for (int64_t m = 0; m < pl->n_rows; m++) {                                           \
            const TI *row = (const TI *)x->data + off;                                       \
            if (!direct) {                                                                   \
                red_load_##S(buf, x->data, x->dtype, off, w);                                \
                row = buf;                                                                   \
            }                                                                                \
            fn(acc, row, w, sh);                                                             \
            red_next(pl->n_rowg, pl->row_dims, pl->row_strides, idx, &off);                  \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* Horizontal: a0 combined over elements [e0, e1) of the reduced space of the output     \
     * at input offset base, in odometer order (segment by segment). */                      \
    static T red_walk_segs_##S(const red_plan_t *pl, const dab_tensor_t *x, int combo,       \
                               int64_t base, int64_t e0, int64_t e1, T a0, T sh)             \
    {                                                                                        \
        int64_t idx[DAB_MAX_RANK];                                                           \
        int64_t m = e0 / pl->seg, j = e0 - m * pl->seg;                                      \
        int64_t off = base;                                                                  \
        for (int g = pl->n_rowg - 1; g >= 0; g--) {                                          \
            int64_t q = m / pl->row_dims[g];                                                 \
            idx[g] = m - q * pl->row_dims[g];                                                \
            off += idx[g] * pl->row_strides[g];                                              \
            m = q;                                                                           \
        }                                                                                    \
        red_seg_fn_##S fn = g_seg_##S[combo];                                                \
        T a = a0;                                                                            \
        TI buf[DAB_RED_TILE];                                                                \
        for (int64_t left = e1 - e0; left > 0; j = 0) {                                      \
            int64_t w = DAB_MIN(pl->seg - j, left);                                          \
            if (x->dtype == DTI) {                                                           \
                a = fn((const TI *)x->data + off + j, w, sh, a);                             \
            } else {                                                                         \
                for (int64_t c = 0; c < w; c += DAB_RED_TILE) {                              \
                    int64_t tw = DAB_MIN(DAB_RED_TILE, w - c);                               \
                    red_load_##S(buf, x->data, x->dtype, off + j + c, tw);                   \
                    a = fn(buf, tw, sh, a);                                                  \
                }                                                                            \
            }                                                                                \
            left -= w;                                                                       \
            red_next(pl->n_rowg, pl->row_dims, pl->row_strides, idx, &off);                  \
        }                                                                                    \
        return a;                                                                            \
    }                                                                                        \
                                                                                             \
    static T red_comb_##S(int combo, T a, T b)                                               \
    {                                                                                        \
        switch (combo) {                                                                     \
        case RC_MUL: return COMB_MUL(S, a, b);                                               \
        case RC_MAX: return COMB_MAX(S, a, b);                                               \
        case RC_MIN: return COMB_MIN(S, a, b);                                               \
        default: return COMB_ADD(S, a, b);                                                   \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* One output's reduction split into chunks over nt threads (few, large outputs). */     \
    static T red_split_##S(const red_plan_t *pl, const dab_tensor_t *x, int combo,           \
                           int64_t base, T init, T sh, int nt)                               \
    {                                                                                        \
        T part[DAB_RED_MAX_CHUNKS];                                                          \
        int nch = DAB_MIN(nt, DAB_RED_MAX_CHUNKS);                                           \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                         \
        for (int c = 0; c < nch; c++)                                                        \
            part[c] = red_walk_segs_##S(pl, x, combo, base, pl->n_red * c / nch,             \
                                        pl->n_red * (c + 1) / nch, init, sh);                \
        T a = init;                                                                          \
        for (int c = 0; c < nch; c++)                                                        \
            a = red_comb_##S(combo, a, part[c]);                                             \
        return a;                                                                            \
    }                                                                                        \
                                                                                             \
    static void red_run_##S(const red_plan_t *pl, int kind, int combo, const dab_tensor_t *x, \
                            dab_tensor_t *y, int nt)                                         \
    {                                                                                        \
        T init = red_init_##S(kind, x->dtype);                                               \
        bool lse = kind == RK_LOGSUMEXP;                                                     \
        T lowest = (T)LOWEST_##S(x->dtype);                                                  \
        if (pl->n_red == 0) {                                                                \
            T v[DAB_RED_TILE];                                                               \
            for (int i = 0; i < DAB_RED_TILE; i++)                                           \
                v[i] = red_post_##S(kind, init, 0, (T)0);                                    \
            for (int64_t o = 0; o < pl->n_out; o += DAB_RED_TILE)                            \
                red_store_##S(y->data, y->dtype, o, v, DAB_MIN(DAB_RED_TILE, pl->n_out - o)); \
            return;                                                                          \
        }                                                                                    \
        if (pl->seg_last && pl->n_out < nt) {                                                \
            for (int64_t o = 0; o < pl->n_out; o++) {                                        \
                int64_t base = red_outer_offset(pl, o);                                      \
                T r;                                                                         \
                if (lse) {                                                                   \
                    T mx = red_split_##S(pl, x, RC_MAX, base, lowest, (T)0, nt);             \
                    T sh = ISFIN_##S(mx) ? mx : (T)0;                                        \
                    T s = red_split_##S(pl, x, RC_EXP_ADD, base, (T)0, sh, nt);              \
                    r = red_post_##S(kind, s, pl->n_red, sh);                                \
                } else {                                                                     \
                    T a = red_split_##S(pl, x, combo, base, init, (T)0, nt);                 \
                    r = red_post_##S(kind, a, pl->n_red, (T)0);                              \
                }                                                                            \
                red_store_##S(y->data, y->dtype, o, &r, 1);                                  \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        if (pl->seg_last) {                                                                  \
            DAB_PAR_FOR(nt, int64_t, o, pl->n_out,                                        \
                int64_t base = red_outer_offset(pl, o);                                      \
                T r;                                                                         \
                if (lse) {                                                                   \
                    T mx = red_walk_segs_##S(pl, x, RC_MAX, base, 0, pl->n_red, lowest, (T)0); \
                    T sh = ISFIN_##S(mx) ? mx : (T)0;                                        \
                    T s = red_walk_segs_##S(pl, x, RC_EXP_ADD, base, 0, pl->n_red, (T)0, sh); \
                    r = red_post_##S(kind, s, pl->n_red, sh);                                \
                } else {                                                                     \
                    T a = red_walk_segs_##S(pl, x, combo, base, 0, pl->n_red, init, (T)0);   \
                    r = red_post_##S(kind, a, pl->n_red, (T)0);                              \
                }                                                                            \
                if (y->dtype == DTI)                                                         \
                    ((TI *)y->data)[o] = (TI)r;                                              \
                else                                                                         \
                    red_store_##S(y->data, y->dtype, o, &r, 1);                              \
            );                                                                                \
            return;                                                                          \
        }                                                                                    \
        int64_t ntiles = (pl->inner + DAB_RED_TILE - 1) / DAB_RED_TILE;                      \
        int64_t items = pl->n_outer * ntiles;                                                \
        DAB_PAR_FOR(nt, int64_t, it, items,                                             \
            int64_t o = it / ntiles;                                                         \
            int64_t i0 = (it - o * ntiles) * DAB_RED_TILE;                                   \
            int64_t w = DAB_MIN(DAB_RED_TILE, pl->inner - i0);                               \
            int64_t base = red_outer_offset(pl, o) + i0;                                     \
            T acc[DAB_RED_TILE], sh[DAB_RED_TILE];                                           \
            TI buf[DAB_RED_TILE];                                                            \
            if (lse) {                                                                       \
                for (int64_t i = 0; i < w; i++)                                              \
                    acc[i] = lowest;                                                         \
                red_walk_rows_##S(pl, x, RC_MAX, base, w, acc, NULL, buf);                   \
                for (int64_t i = 0; i < w; i++) {                                            \
                    sh[i] = ISFIN_##S(acc[i]) ? acc[i] : (T)0;                               \
                    acc[i] = (T)0;                                                           \
                }                                                                            \
                red_walk_rows_##S(pl, x, RC_EXP_ADD, base, w, acc, sh, buf);                 \
            } else {                                                                         \
                for (int64_t i = 0; i < w; i++) {                                            \
                    acc[i] = init;                                                           \
                    sh[i] = (T)0;                                                            \
                }                                                                            \
                red_walk_rows_##S(pl, x, combo, base, w, acc, NULL, buf);                    \
            }                                                                                \
            for (int64_t i = 0; i < w; i++)                                                  \
                acc[i] = red_post_##S(kind, acc[i], pl->n_red, sh[i]);                       \
            red_store_##S(y->data, y->dtype, o * pl->inner + i0, acc, w);                    \
        );                                                                                    \
    }

RED_DEFINE(f32, float, float, DAB_DT_FLOAT)
RED_DEFINE(w64, double, float, DAB_DT_FLOAT)
RED_DEFINE(f64, double, double, DAB_DT_DOUBLE)
RED_DEFINE(i64, int64_t, int64_t, DAB_DT_INT64)
RED_DEFINE(u64, uint64_t, uint64_t, DAB_DT_UINT64)

/*
 * float32 Sum/Mean/SumSquare/L2/Max over the innermost axis with the SIMD kernels: each
 * output reduces one contiguous segment (no odometer). Sums stay in double as in the
 * portable path. Returns false (nothing done) when the plan or the level does not fit;
 * a global reduction (fewer outputs than threads) keeps the portable split.
 */
static bool red_simd_rows(const red_plan_t *pl, int kind, const dab_tensor_t *x, dab_tensor_t *y,
                          int nt)
{
    const dab_simd_ops_t *s = dab_simd();
    if (!s || !pl->seg_last || pl->n_rowg != 0 || pl->n_red == 0 || y->dtype != DAB_DT_FLOAT ||
        (nt > 1 && pl->n_out < nt))
        return false;
    if (kind != RK_SUM && kind != RK_MEAN && kind != RK_SUMSQ && kind != RK_L2 && kind != RK_MAX)
        return false;
    const float *xd = x->data;
    float *yd = y->data;
    const int64_t n = pl->seg;
    DAB_PAR_FOR(nt, int64_t, o, pl->n_out,
        const float *row = xd + red_outer_offset(pl, o);
        switch (kind) {
        case RK_SUM: yd[o] = (float)s->sum(row, n); break;
        case RK_MEAN: yd[o] = (float)(s->sum(row, n) / (double)n); break;
        case RK_SUMSQ: yd[o] = (float)s->sumsq(row, n); break;
        case RK_L2: yd[o] = (float)sqrt(s->sumsq(row, n)); break;
        default: yd[o] = s->max(row, n); break;
        }
    );
    return true;
}

/* ---- operator callbacks ---- */

static int red_init(dab_node_t *node, dab_err_t *err)
{
    int kind = -1;
    for (size_t i = 0; i < DAB_ARRAY_LEN(g_red_names); i++)
        if (!strcmp(node->op_type, g_red_names[i].name))
            kind = g_red_names[i].kind;
    if (kind < 0)
        return dab_err_set(err, DAB_EINTERNAL, "op type '%s' is not a reduction", node->op_type);

    const int64_t *axes = NULL;
    int n_axes = dab_attr_ints(node, "axes", &axes);
    if (n_axes > DAB_MAX_RANK)
        return dab_err_set(err, DAB_EINVAL,
                           "attribute 'axes' lists %d axes, more than any tensor's rank (max %d)",
                           n_axes, DAB_MAX_RANK);

    red_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the reduction's state");
    p->kind = kind;
    p->keepdims = dab_attr_int(node, "keepdims", 1) != 0;
    p->noop_empty = dab_attr_int(node, "noop_with_empty_axes", 0) != 0;
    p->n_axes_attr = n_axes;
    for (int i = 0; i < n_axes; i++)
        p->axes_attr[i] = axes[i];
    node->priv = p;
    return 0;
}

/* Fills pl from x's shape and the reduced-axis mask; see the top comment. */
static void red_make_plan(const dab_tensor_t *x, const bool *red, red_plan_t *pl)
{
    int64_t gd[DAB_MAX_RANK], gs[DAB_MAX_RANK];
    bool gr[DAB_MAX_RANK];
    int ng = 0;
    memset(pl, 0, sizeof *pl);
    pl->n_out = 1;
    pl->n_red = 1;
    for (int d = 0; d < x->rank; d++) {
        int64_t n = x->dims[d];
        if (red[d])
            pl->n_red *= n;
        else
            pl->n_out *= n;
        if (n == 1)
            continue;
        if (ng > 0 && gr[ng - 1] == red[d]) {
            gd[ng - 1] *= n;
        } else {
            gd[ng] = n;
            gr[ng] = red[d];
            ng++;
        }
    }
    int64_t s = 1;
    for (int g = ng - 1; g >= 0; g--) {
        gs[g] = s;
        s *= gd[g];
    }
    pl->inner = 1;
    pl->seg = 1;
    int last = ng;
    if (ng > 0) {
        last = ng - 1;
        pl->seg_last = gr[last];
        if (gr[last])
            pl->seg = gd[last];
        else
            pl->inner = gd[last];
    }
    pl->n_outer = 1;
    pl->n_rows = 1;
    for (int g = 0; g < last; g++) {
        if (gr[g]) {
            pl->row_dims[pl->n_rowg] = gd[g];
            pl->row_strides[pl->n_rowg++] = gs[g];
            pl->n_rows *= gd[g];
        } else {
            pl->keep_dims[pl->n_keep] = gd[g];
            pl->keep_strides[pl->n_keep++] = gs[g];
            pl->n_outer *= gd[g];
        }
    }
}

static int red_reshape(dab_node_t *node, dab_err_t *err)
{
    red_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];

    int64_t axes[DAB_MAX_RANK];
    int n_axes = 0;
    const dab_tensor_t *at = node->n_inputs > 1 ? node->inputs[1] : NULL;
    if (at) {
        int rc = dab_read_ints(at, "input 'axes'", axes, DAB_MAX_RANK, &n_axes, err);
        if (rc)
            return rc;
    } else if (p->n_axes_attr > 0) {
        n_axes = p->n_axes_attr;
        memcpy(axes, p->axes_attr, (size_t)n_axes * sizeof axes[0]);
    }

    bool red[DAB_MAX_RANK] = {false};
    if (n_axes == 0) {
        for (int d = 0; d < x->rank; d++)
            red[d] = !p->noop_empty;
    }
    for (int k = 0; k < n_axes; k++) {
        int a;
        int rc = dab_norm_axis(axes[k], x->rank, "axis", &a, err);
        if (rc)
            return rc;
        if (red[a])
            return dab_err_set(err, DAB_EINVAL, "axis %lld is listed twice in 'axes'",
                               (long long)axes[k]);
        red[a] = true;
    }

    int64_t dims[DAB_MAX_RANK];
    int rank = 0;
    for (int d = 0; d < x->rank; d++) {
        if (!red[d])
            dims[rank++] = x->dims[d];
        else if (p->keepdims)
            dims[rank++] = 1;
    }
    dab_tensor_set_shape(y, x->dtype, rank, dims);
    red_make_plan(x, red, &p->plan);
    return 0;
}

static int red_compute(dab_node_t *node, dab_err_t *err)
{
    red_priv_t *p = node->priv;
    const red_plan_t *pl = &p->plan;
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    if (pl->n_out == 0)
        return 0;

    int kind = p->kind;
    int combo = RC_ADD;
    switch (kind) {
    case RK_PROD: combo = RC_MUL; break;
    case RK_MAX: combo = RC_MAX; break;
    case RK_MIN: combo = RC_MIN; break;
    case RK_L1: combo = RC_ABS_ADD; break;
    case RK_L2:
    case RK_SUMSQ: combo = RC_SQ_ADD; break;
    default: break;
    }

    int64_t work = pl->n_out * pl->n_red * (kind == RK_LOGSUMEXP ? 8 : 1);
    int nt = dab_par_threads(node->ctx, work);
    bool float_math = kind == RK_L2 || kind == RK_LOGSUM || kind == RK_LOGSUMEXP;
    switch (x->dtype) {
    case DAB_DT_FLOAT:
        if (red_simd_rows(pl, kind, x, y, nt))
            return 0;
        /* max and min are exact in float; LogSumExp's sum of exponentials only feeds a
         * log, so float's vectorized exp serves; every other sum goes through double */
        if (kind == RK_MAX || kind == RK_MIN || kind == RK_LOGSUMEXP)
            red_run_f32(pl, kind, combo, x, y, nt);
        else
            red_run_w64(pl, kind, combo, x, y, nt);
        return 0;
    case DAB_DT_DOUBLE: red_run_f64(pl, kind, combo, x, y, nt); return 0;
    case DAB_DT_INT8:
    case DAB_DT_INT16:
    case DAB_DT_INT32:
    case DAB_DT_INT64:
    case DAB_DT_BOOL:
        if (float_math)
            red_run_f64(pl, kind, combo, x, y, nt);
        else
            red_run_i64(pl, kind, combo, x, y, nt);
        return 0;
    case DAB_DT_UINT8:
    case DAB_DT_UINT16:
    case DAB_DT_UINT32:
    case DAB_DT_UINT64:
        if (float_math)
            red_run_f64(pl, kind, combo, x, y, nt);
        else
            red_run_u64(pl, kind, combo, x, y, nt);
        return 0;
    default:
        return dab_err_set(err, DAB_EUNSUPPORTED, "input 'data' of type %s is not supported",
                           dab_dtype_name(x->dtype));
    }
}

/* ---- the family's table ---- */

#define RED_DT DAB_DTM_NUMERIC
#define RED_DT_BOOL (DAB_DTM_NUMERIC | DAB_DTM(DAB_DT_BOOL))
#define SOFTMAX_DT DAB_DTM_FLOATS

/* A reduction row: opsets [since, until], max inputs 1 (axes attribute) or 2 (axes input). */
#define RED_OP(name, since, until, dts, max_in)                                              \
    {"", name, since, until, dts, 0, 1, max_in, 1, 1, red_init, red_reshape, red_compute,    \
     dab_op_free_priv}
#define ARG_OP(name)                                                                         \
    {"", name, 1, 0, DAB_DTM_NUMERIC, 0, 1, 1, 1, 1, dab_reduce_arg_init,                    \
     dab_reduce_arg_reshape, dab_reduce_arg_compute, dab_op_free_priv}
#define SOFTMAX_OP(name, since, until)                                                       \
    {"", name, since, until, SOFTMAX_DT, 0, 1, 1, 1, 1, dab_reduce_softmax_init,             \
     dab_reduce_softmax_reshape, dab_reduce_softmax_compute, dab_op_free_priv}

const dab_op_def_t dab_ops_reduce[] = {
    RED_OP("ReduceSum", 1, 12, RED_DT, 1),
    RED_OP("ReduceSum", 13, 0, RED_DT, 2),
    RED_OP("ReduceMean", 1, 17, RED_DT, 1),
    RED_OP("ReduceMean", 18, 0, RED_DT, 2),
    RED_OP("ReduceProd", 1, 17, RED_DT, 1),
    RED_OP("ReduceProd", 18, 0, RED_DT, 2),
    RED_OP("ReduceMax", 1, 17, RED_DT, 1),
    RED_OP("ReduceMax", 18, 19, RED_DT, 2),
    RED_OP("ReduceMax", 20, 0, RED_DT_BOOL, 2),
    RED_OP("ReduceMin", 1, 17, RED_DT, 1),
    RED_OP("ReduceMin", 18, 19, RED_DT, 2),
    RED_OP("ReduceMin", 20, 0, RED_DT_BOOL, 2),
    RED_OP("ReduceL1", 1, 17, RED_DT, 1),
    RED_OP("ReduceL1", 18, 0, RED_DT, 2),
    RED_OP("ReduceL2", 1, 17, RED_DT, 1),
    RED_OP("ReduceL2", 18, 0, RED_DT, 2),
    RED_OP("ReduceLogSum", 1, 17, RED_DT, 1),
    RED_OP("ReduceLogSum", 18, 0, RED_DT, 2),
    RED_OP("ReduceLogSumExp", 1, 17, RED_DT, 1),
    RED_OP("ReduceLogSumExp", 18, 0, RED_DT, 2),
    RED_OP("ReduceSumSquare", 1, 17, RED_DT, 1),
    RED_OP("ReduceSumSquare", 18, 0, RED_DT, 2),
    ARG_OP("ArgMax"),
    ARG_OP("ArgMin"),
    SOFTMAX_OP("Softmax", 1, 12),
    SOFTMAX_OP("Softmax", 13, 0),
    SOFTMAX_OP("LogSoftmax", 1, 12),
    SOFTMAX_OP("LogSoftmax", 13, 0),
    SOFTMAX_OP("Hardmax", 1, 12),
    SOFTMAX_OP("Hardmax", 13, 0),
    {0},
};
