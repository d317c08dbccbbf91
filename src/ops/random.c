/*
 * random.c - operators that draw random numbers (RandomUniform, RandomNormal, their *Like
 * forms, Bernoulli, Multinomial).
 *
 * Each node owns a xoshiro256** generator, seeded in init: from the `seed` attribute
 * (a float; its bits go through splitmix64) when present, so the stream is the same in
 * every session, else from the clock and the node's address. The state advances across
 * runs, so consecutive runs draw different numbers. Normals come from Box-Muller, whose
 * second value is kept for the next draw. Generation is sequential (one stream per node);
 * these ops are not on hot paths.
 */
#include "ops.h"

#include <math.h>
#include <string.h>
#include <time.h>

enum rnd_kind { RND_UNIFORM, RND_NORMAL, RND_BERNOULLI, RND_MULTINOMIAL };

typedef struct rnd_priv {
    uint64_t s[4];   /* xoshiro256** state */
    int kind;
    bool like;       /* RandomUniformLike / RandomNormalLike: shape from input 0 */
    int dtype;       /* output dtype from the attribute; UNDEFINED: the input's */
    double a, b;     /* low/high or mean/scale */
    int64_t sample_size;
    bool have_spare; /* Box-Muller's second value */
    double spare;
    int rank;        /* RandomUniform / RandomNormal: the `shape` attribute */
    int64_t dims[DAB_MAX_RANK];
} rnd_priv_t;

static uint64_t rnd_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rnd_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rnd_next(rnd_priv_t *p)
{
    uint64_t r = rnd_rotl(p->s[1] * 5, 7) * 9;
    uint64_t t = p->s[1] << 17;
    p->s[2] ^= p->s[0];
    p->s[3] ^= p->s[1];
    p->s[1] ^= p->s[2];
    p->s[0] ^= p->s[3];
    p->s[2] ^= t;
    p->s[3] = rnd_rotl(p->s[3], 45);
    return r;
}

/* uniform in [0, 1) with 53 random bits */
static double rnd_unit(rnd_priv_t *p)
{
    return (double)(rnd_next(p) >> 11) * 0x1.0p-53;
}

static double rnd_normal(rnd_priv_t *p)
{
    if (p->have_spare) {
        p->have_spare = false;
        return p->spare;
    }
    double u1 = 1.0 - rnd_unit(p); /* (0, 1]: log is finite */
    double u2 = rnd_unit(p);
    double r = sqrt(-2.0 * log(u1));
    double th = 2.0 * 3.14159265358979323846 * u2;
    p->spare = r * sin(th);
    p->have_spare = true;
    return r * cos(th);
}

static bool rnd_float_dtype(int dt)
{
    return dt == DAB_DT_FLOAT || dt == DAB_DT_DOUBLE || dt == DAB_DT_FLOAT16 ||
           dt == DAB_DT_BFLOAT16;
}

/* Stores v as element i of data of dtype dt (a dtype rnd_store_ok accepts). */
static void rnd_store(void *data, dab_dtype_t dt, int64_t i, double v)
{
    switch (dt) {
    case DAB_DT_FLOAT: ((float *)data)[i] = (float)v; break;
    case DAB_DT_DOUBLE: ((double *)data)[i] = v; break;
    case DAB_DT_FLOAT16: ((uint16_t *)data)[i] = dab_f32_to_f16((float)v); break;
    case DAB_DT_BFLOAT16: ((uint16_t *)data)[i] = dab_f32_to_bf16((float)v); break;
    case DAB_DT_INT8: ((int8_t *)data)[i] = (int8_t)v; break;
    case DAB_DT_UINT8: ((uint8_t *)data)[i] = (uint8_t)v; break;
    case DAB_DT_INT16: ((int16_t *)data)[i] = (int16_t)v; break;
    case DAB_DT_UINT16: ((uint16_t *)data)[i] = (uint16_t)v; break;
    case DAB_DT_INT32: ((int32_t *)data)[i] = (int32_t)v; break;
    case DAB_DT_UINT32: ((uint32_t *)data)[i] = (uint32_t)v; break;
    case DAB_DT_INT64: ((int64_t *)data)[i] = (int64_t)v; break;
    case DAB_DT_UINT64: ((uint64_t *)data)[i] = (uint64_t)v; break;
    case DAB_DT_BOOL: ((uint8_t *)data)[i] = v != 0; break;
    default: break;
    }
}

static bool rnd_store_ok(int dt)
{
    return rnd_float_dtype(dt) || dt == DAB_DT_BOOL ||
           (dt > 0 && dt < 32 && ((DAB_DTM_INTS >> dt) & 1u));
}

/* The value stored as dtype dt reads back as (float formats round). */
static double rnd_rounded(dab_dtype_t dt, double v)
{
    switch (dt) {
    case DAB_DT_FLOAT: return (float)v;
    case DAB_DT_FLOAT16: return dab_f16_to_f32(dab_f32_to_f16((float)v));
    case DAB_DT_BFLOAT16: return dab_bf16_to_f32(dab_f32_to_bf16((float)v));
    default: return v;
    }
}

static int rnd_init(dab_node_t *node, dab_err_t *err)
{
    rnd_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    node->priv = p;
    const char *op = node->op_type;
    p->like = strstr(op, "Like") != NULL;
    if (!strncmp(op, "RandomUniform", 13)) {
        p->kind = RND_UNIFORM;
        p->a = dab_attr_float(node, "low", 0.0f);
        p->b = dab_attr_float(node, "high", 1.0f);
    } else if (!strncmp(op, "RandomNormal", 12)) {
        p->kind = RND_NORMAL;
        p->a = dab_attr_float(node, "mean", 0.0f);
        p->b = dab_attr_float(node, "scale", 1.0f);
    } else if (!strcmp(op, "Bernoulli")) {
        p->kind = RND_BERNOULLI;
    } else {
        p->kind = RND_MULTINOMIAL;
    }
    if (!isfinite(p->a) || !isfinite(p->b))
        return dab_err_set(err, DAB_EINVAL, "attributes 'low'/'high' or 'mean'/'scale' must "
                                            "be finite");

    /* dtype: the attribute, else float (RandomUniform/RandomNormal), int32 (Multinomial)
     * or the input's (the rest, decided in reshape) */
    const dab_attr_t *dt_attr = dab_attr_find(node, "dtype");
    int64_t dt = dt_attr ? dt_attr->i : DAB_DT_UNDEFINED;
    if (!dt_attr && p->kind == RND_MULTINOMIAL)
        dt = DAB_DT_INT32;
    if (!dt_attr && (p->kind == RND_UNIFORM || p->kind == RND_NORMAL) && !p->like)
        dt = DAB_DT_FLOAT;
    if (dt_attr) {
        if (dt <= 0 || dt >= DAB_DT_COUNT_)
            return dab_err_set(err, DAB_EINVAL, "attribute 'dtype' %lld is not a data type",
                               (long long)dt);
        bool ok = p->kind == RND_MULTINOMIAL ? dt == DAB_DT_INT32 || dt == DAB_DT_INT64
                  : p->kind == RND_BERNOULLI ? rnd_store_ok((int)dt)
                                             : rnd_float_dtype((int)dt);
        if (!ok)
            return dab_err_set(err, DAB_EINVAL, "attribute 'dtype' %s is not allowed here",
                               dab_dtype_name((dab_dtype_t)dt));
    }
    p->dtype = (int)dt;

    if (p->kind == RND_MULTINOMIAL) {
        p->sample_size = dab_attr_int(node, "sample_size", 1);
        if (p->sample_size < 1)
            return dab_err_set(err, DAB_EINVAL, "attribute 'sample_size' %lld must be positive",
                               (long long)p->sample_size);
    }
    if ((p->kind == RND_UNIFORM || p->kind == RND_NORMAL) && !p->like) {
        if (node->n_inputs > 0)
            return dab_err_set(err, DAB_EINVAL, "%s takes no inputs", op);
        const int64_t *shape;
        int n = dab_attr_ints(node, "shape", &shape);
        if (n < 0)
            return dab_err_set(err, DAB_EINVAL, "attribute 'shape' is required");
        size_t bytes;
        int rc = dab_shape_check("attribute 'shape'", (dab_dtype_t)p->dtype, n, shape, 0,
                                 &bytes, err);
        if (rc)
            return rc;
        p->rank = n;
        memcpy(p->dims, shape, (size_t)n * sizeof *shape);
    }

    uint64_t x;
    const dab_attr_t *seed = dab_attr_find(node, "seed");
    if (seed) {
        uint32_t bits;
        float f = seed->f;
        memcpy(&bits, &f, sizeof bits);
        x = bits;
    } else {
        x = dab_now_ns() ^ ((uint64_t)time(NULL) << 32) ^ (uint64_t)(uintptr_t)p;
    }
    for (int i = 0; i < 4; i++)
        p->s[i] = rnd_splitmix(&x);
    return 0;
}

static int rnd_reshape(dab_node_t *node, dab_err_t *err)
{
    rnd_priv_t *p = node->priv;
    dab_tensor_t *y = node->outputs[0];
    const dab_tensor_t *x = node->n_inputs > 0 ? node->inputs[0] : NULL;
    node->scratch_bytes = 0;
    if ((p->kind == RND_UNIFORM || p->kind == RND_NORMAL) && !p->like) {
        dab_tensor_set_shape(y, (dab_dtype_t)p->dtype, p->rank, p->dims);
        return 0;
    }
    dab_dtype_t dt = p->dtype ? (dab_dtype_t)p->dtype : x->dtype;
    if (p->kind == RND_MULTINOMIAL) {
        if (x->rank != 2)
            return dab_err_set(err, DAB_ESHAPE, "input 'input' must be 2-D [batch, classes], "
                                                "not rank %d", x->rank);
        if (!dab_dtype_is_float(x->dtype))
            return dab_err_set(err, DAB_ETYPE, "input 'input' must be a float tensor, not %s",
                               dab_dtype_name(x->dtype));
        if (x->dims[1] < 1 && x->dims[0] > 0)
            return dab_err_set(err, DAB_ESHAPE, "input 'input' has no classes");
        size_t bytes;
        if (dab_mul_size((size_t)x->dims[1], sizeof(double), &bytes))
            return dab_err_set(err, DAB_ERANGE, "input 'input' has too many classes");
        int64_t dims[2] = {x->dims[0], p->sample_size};
        size_t out_bytes;
        int rc = dab_shape_check("output", dt, 2, dims, 0, &out_bytes, err);
        if (rc)
            return rc;
        node->scratch_bytes = bytes;
        dab_tensor_set_shape(y, dt, 2, dims);
        return 0;
    }
    if (p->kind == RND_BERNOULLI) {
        if (!rnd_float_dtype(x->dtype))
            return dab_err_set(err, DAB_ETYPE, "input 'input' must be a float tensor, not %s",
                               dab_dtype_name(x->dtype));
    } else if (!rnd_float_dtype(dt)) {
        return dab_err_set(err, DAB_ETYPE,
                           "output dtype %s is not a float type: set attribute 'dtype'",
                           dab_dtype_name(dt));
    }
    dab_tensor_set_shape(y, dt, x->rank, x->dims);
    return 0;
}

/* A uniform draw in [lo, hi) that stays below hi once stored as dt. */
static double rnd_uniform(rnd_priv_t *p, dab_dtype_t dt)
{
    double lo = p->a, hi = p->b;
    if (!(hi > lo))
        return lo;
    for (int tries = 0; tries < 16; tries++) {
        double v = rnd_rounded(dt, lo + (hi - lo) * rnd_unit(p));
        if (v >= lo && v < hi)
            return v;
    }
    return rnd_rounded(dt, lo) >= lo ? lo : hi; /* not reached in practice */
}

static int rnd_multinomial(dab_node_t *node, rnd_priv_t *p)
{
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *y = node->outputs[0];
    int64_t batch = x->dims[0], classes = x->dims[1], ns = p->sample_size;
    double *cum = node->scratch;
    for (int64_t b = 0; b < batch; b++) {
        double m = -INFINITY;
        for (int64_t c = 0; c < classes; c++) {
            double v = dab_tensor_get_f64(x, b * classes + c);
            m = v > m ? v : m;
        }
        double total = 0;
        for (int64_t c = 0; c < classes; c++) {
            double v = dab_tensor_get_f64(x, b * classes + c);
            total += isinf(m) || isnan(v) ? 0.0 : exp(v - m);
            cum[c] = total;
        }
        for (int64_t k = 0; k < ns; k++) {
            int64_t pick = 0;
            if (total > 0 && isfinite(total)) {
                double u = rnd_unit(p) * total;
                int64_t lo = 0, hi = classes - 1; /* first c with cum[c] > u */
                while (lo < hi) {
                    int64_t mid = lo + (hi - lo) / 2;
                    if (cum[mid] > u)
                        hi = mid;
                    else
                        lo = mid + 1;
                }
                pick = lo;
            }
            if (y->dtype == DAB_DT_INT64)
                ((int64_t *)y->data)[b * ns + k] = pick;
            else
                ((int32_t *)y->data)[b * ns + k] = (int32_t)pick;
        }
    }
    return 0;
}

static int rnd_compute(dab_node_t *node, dab_err_t *err)
{
    rnd_priv_t *p = node->priv;
    dab_tensor_t *y = node->outputs[0];
    const dab_tensor_t *x = node->n_inputs > 0 ? node->inputs[0] : NULL;
    int64_t n = dab_tensor_numel(y);
    if (!rnd_store_ok(y->dtype))
        return dab_err_set(err, DAB_EUNSUPPORTED, "output dtype %s is not supported",
                           dab_dtype_name(y->dtype));
    switch (p->kind) {
    case RND_MULTINOMIAL:
        return rnd_multinomial(node, p);
    case RND_BERNOULLI:
        for (int64_t i = 0; i < n; i++) {
            double prob = dab_tensor_get_f64(x, i);
            rnd_store(y->data, y->dtype, i, rnd_unit(p) < prob ? 1.0 : 0.0);
        }
        return 0;
    case RND_UNIFORM:
        for (int64_t i = 0; i < n; i++)
            rnd_store(y->data, y->dtype, i, rnd_uniform(p, y->dtype));
        return 0;
    default:
        for (int64_t i = 0; i < n; i++)
            rnd_store(y->data, y->dtype, i, p->a + p->b * rnd_normal(p));
        return 0;
    }
}

#define T_PROB                                                                            \
    (DAB_DTM_FLOATS | DAB_DTM(DAB_DT_FLOAT16) | DAB_DTM(DAB_DT_BFLOAT16))

const dab_op_def_t dab_ops_random[] = {
    {"", "RandomUniform", 1, 0, 0, -1, 0, 0, 1, 1, rnd_init, rnd_reshape, rnd_compute,
     dab_op_free_priv},
    {"", "RandomNormal", 1, 0, 0, -1, 0, 0, 1, 1, rnd_init, rnd_reshape, rnd_compute,
     dab_op_free_priv},
    {"", "RandomUniformLike", 1, 0, 0, -1, 1, 1, 1, 1, rnd_init, rnd_reshape, rnd_compute,
     dab_op_free_priv},
    {"", "RandomNormalLike", 1, 0, 0, -1, 1, 1, 1, 1, rnd_init, rnd_reshape, rnd_compute,
     dab_op_free_priv},
    {"", "Bernoulli", 15, 0, T_PROB, 0, 1, 1, 1, 1, rnd_init, rnd_reshape, rnd_compute,
     dab_op_free_priv},
    {"", "Multinomial", 7, 0, T_PROB, 0, 1, 1, 1, 1, rnd_init, rnd_reshape, rnd_compute,
     dab_op_free_priv},
    {0},
};
