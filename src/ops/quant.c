/*
 * quant.c - the quantization operator family: QuantizeLinear, DequantizeLinear and
 * DynamicQuantizeLinear here, the integer matrix products in quant_mm.c and the integer
 * convolutions in quant_conv.c; this file holds the family's table.
 *
 * Quantize/Dequantize view x as [outer, n, inner] around `axis` and read the scale (and
 * zero point) per tensor, per axis (index along n) or per block (blocked along n, one
 * scale per `block_size` elements, the other dims matching x). Integer targets round
 * x / scale half to even, add the zero point and saturate; float8 / float4 targets add
 * the zero point and convert with Cast's rounding and `saturate`. NaN quantizes to the
 * zero point (as the engine's float-to-integer Cast takes NaN to 0).
 * Dequantization computes (x - zero_point) * scale in float and rounds once to the
 * output dtype, as ONNX's reference does.
 */
#include "quant_int.h"

#include <string.h>

bool dab_q_int_range(dab_dtype_t dt, int32_t *lo, int32_t *hi)
{
    switch (dt) {
    case DAB_DT_INT8: *lo = INT8_MIN, *hi = INT8_MAX; return true;
    case DAB_DT_UINT8: *lo = 0, *hi = UINT8_MAX; return true;
    case DAB_DT_INT16: *lo = INT16_MIN, *hi = INT16_MAX; return true;
    case DAB_DT_UINT16: *lo = 0, *hi = UINT16_MAX; return true;
    case DAB_DT_INT4: *lo = -8, *hi = 7; return true;
    case DAB_DT_UINT4: *lo = 0, *hi = 15; return true;
    case DAB_DT_INT2: *lo = -2, *hi = 1; return true;
    case DAB_DT_UINT2: *lo = 0, *hi = 3; return true;
    default: return false;
    }
}

/* The quantized dtypes: QuantizeLinear's outputs, DequantizeLinear's inputs (with int32). */
#define Q_DTM_INTS                                                                        \
    (DAB_DTM(DAB_DT_INT8) | DAB_DTM(DAB_DT_UINT8) | DAB_DTM(DAB_DT_INT16) |               \
     DAB_DTM(DAB_DT_UINT16) | DAB_DTM(DAB_DT_INT4) | DAB_DTM(DAB_DT_UINT4) |              \
     DAB_DTM(DAB_DT_INT2) | DAB_DTM(DAB_DT_UINT2))
#define Q_DTM_QUANT (Q_DTM_INTS | DAB_DTM_FLOAT8 | DAB_DTM(DAB_DT_FLOAT4E2M1))
#define Q_DTM_DEQ_IN (Q_DTM_QUANT | DAB_DTM(DAB_DT_INT32))
/* What scales and full-precision values may be. */
#define Q_DTM_HALF (DAB_DTM(DAB_DT_FLOAT16) | DAB_DTM(DAB_DT_BFLOAT16))
#define Q_DTM_FULL (DAB_DTM(DAB_DT_FLOAT) | Q_DTM_HALF)
#define Q_DTM_SCALE (Q_DTM_FULL | DAB_DTM(DAB_DT_FLOAT8E8M0))

static bool dtm_has(uint32_t m, dab_dtype_t dt)
{
    return (unsigned)dt < DAB_DT_COUNT_ && (m & DAB_DTM(dt));
}

/* ---- granularity ---- */

enum { Q_TENSOR, Q_AXIS, Q_BLOCKED };

typedef struct q_layout {
    int mode;
    int64_t outer, n, inner; /* x as [outer, n, inner] around the axis */
    int64_t block, nblocks;  /* Q_BLOCKED: elements of n per scale, scales along n */
} q_layout_t;

/* Index of the scale of x's element (o, a, i). */
static inline int64_t q_scale_index(const q_layout_t *l, int64_t o, int64_t a, int64_t i)
{
    switch (l->mode) {
    case Q_AXIS: return a;
    case Q_BLOCKED: return (o * l->nblocks + a / l->block) * l->inner + i;
    default: return 0;
    }
}

/*
 * Works out how scale (and zp, which must have its shape) map onto x from the scale's
 * shape and the axis / block_size attributes. `sname` / `zname` name the inputs.
 */
static int q_layout(const dab_node_t *node, const dab_tensor_t *x, const dab_tensor_t *scale,
                    const dab_tensor_t *zp, const char *sname, const char *zname,
                    q_layout_t *l, dab_err_t *err)
{
    memset(l, 0, sizeof *l);
    int64_t block = node->opset >= 21 ? dab_attr_int(node, "block_size", 0) : 0;
    if (block < 0)
        return dab_err_set(err, DAB_EINVAL, "attribute block_size = %lld must be >= 0",
                           (long long)block);
    if (zp) {
        bool same = dab_shape_equal(zp, scale) || (dab_q_is_single(zp) && dab_q_is_single(scale));
        if (!same) {
            char a[96], b[96];
            return dab_err_set(err, DAB_ESHAPE, "%s %s must have the shape of %s %s", zname,
                               dab_shape_str(zp, a, sizeof a), sname,
                               dab_shape_str(scale, b, sizeof b));
        }
    }
    l->outer = 1;
    l->n = 1;
    l->inner = dab_tensor_numel(x);
    if (scale->rank == 0 || (dab_q_is_single(scale) && block == 0)) {
        l->mode = Q_TENSOR;
        return 0;
    }
    if (node->opset < 13)
        return dab_err_set(err, DAB_EINVAL, "%s must be a scalar before opset 13", sname);
    int axis;
    int rc = dab_norm_axis(dab_attr_int(node, "axis", 1), x->rank, "attribute axis", &axis, err);
    if (rc)
        return rc;
    l->outer = 1;
    l->inner = 1;
    for (int d = 0; d < x->rank; d++) {
        if (d < axis)
            l->outer *= x->dims[d];
        else if (d > axis)
            l->inner *= x->dims[d];
    }
    l->n = x->dims[axis];
    char a[96], b[96];
    if (block == 0) {
        if (scale->rank != 1 || scale->dims[0] != l->n)
            return dab_err_set(err, DAB_ESHAPE,
                               "%s %s must be a scalar or 1-D with x's %lld values along axis "
                               "%d (x is %s)",
                               sname, dab_shape_str(scale, a, sizeof a), (long long)l->n, axis,
                               dab_shape_str(x, b, sizeof b));
        l->mode = Q_AXIS;
        return 0;
    }
    l->mode = Q_BLOCKED;
    l->block = block;
    l->nblocks = l->n / block + (l->n % block != 0);
    bool ok = scale->rank == x->rank;
    for (int d = 0; ok && d < x->rank; d++)
        ok = scale->dims[d] == (d == axis ? l->nblocks : x->dims[d]);
    if (!ok)
        return dab_err_set(err, DAB_ESHAPE,
                           "%s %s does not fit x %s blocked by %lld along axis %d (expected x's "
                           "shape with %lld there)",
                           sname, dab_shape_str(scale, a, sizeof a), dab_shape_str(x, b, sizeof b),
                           (long long)block, axis, (long long)l->nblocks);
    return 0;
}

/*
 * Runs fn over the elements of x as [rows = outer * n, inner] in segments, over the
 * node's threads. fn gets (job, o, a, i0, i1).
 */
typedef void (*q_seg_fn)(const void *job, int64_t o, int64_t a, int64_t i0, int64_t i1);

static void q_run(const dab_node_t *node, const q_layout_t *l, q_seg_fn fn, const void *job,
                  int64_t cost)
{
    enum { SEG = 4096 };
    int64_t rows = l->outer * l->n, inner = l->inner;
    if (rows == 0 || inner == 0)
        return;
    int64_t nseg = (inner + SEG - 1) / SEG, items = rows * nseg;
    int nt = dab_par_threads(node->ctx, dab_q_work(rows * inner, cost));
    DAB_PAR_FOR(nt, int64_t, it, items,
        int64_t r = it / nseg, s = it - r * nseg;
        fn(job, r / l->n, r % l->n, s * SEG, DAB_MIN((s + 1) * SEG, inner));
    );
}

/* ---- QuantizeLinear ---- */

typedef struct q_job {
    const q_layout_t *l;
    const dab_tensor_t *x, *scale, *zp;
    dab_tensor_t *y;
    dab_dtype_t prec; /* dtype whose precision x / scale is rounded to */
    bool saturate;
    int32_t lo, hi; /* integer targets */
} q_job_t;

/* float x, float scale, constant over the segment, 8-bit integer target: the common case,
 * written so the loop vectorizes. */
static void q_seg_f32_8(const q_job_t *j, float s, float zp, int64_t off, int64_t n)
{
    const float *restrict x = (const float *)j->x->data + off;
    const float lo = (float)j->lo, hi = (float)j->hi;
    if (j->y->dtype == DAB_DT_UINT8) {
        uint8_t *restrict y = (uint8_t *)j->y->data + off;
        for (int64_t i = 0; i < n; i++) {
            float q = x[i] / s;
            q = (q == q ? nearbyintf(q) : 0.0f) + zp;
            y[i] = (uint8_t)(q < lo ? lo : q > hi ? hi : q);
        }
    } else {
        int8_t *restrict y = (int8_t *)j->y->data + off;
        for (int64_t i = 0; i < n; i++) {
            float q = x[i] / s;
            q = (q == q ? nearbyintf(q) : 0.0f) + zp;
            y[i] = (int8_t)(q < lo ? lo : q > hi ? hi : q);
        }
    }
}

static void q_seg(const void *job, int64_t o, int64_t a, int64_t i0, int64_t i1)
{
    const q_job_t *j = job;
    const q_layout_t *l = j->l;
    int64_t off = (o * l->n + a) * l->inner;
    int64_t s0 = q_scale_index(l, o, a, i0);
    int64_t ds = l->mode == Q_BLOCKED;
    dab_dtype_t ydt = j->y->dtype;
    bool int_out = j->lo < j->hi;
    if (!ds && j->x->dtype == DAB_DT_FLOAT && j->scale->dtype == DAB_DT_FLOAT &&
        j->prec == DAB_DT_FLOAT && (ydt == DAB_DT_UINT8 || ydt == DAB_DT_INT8)) {
        float zp = j->zp ? (float)dab_q_geti(j->zp, s0) : 0.0f;
        q_seg_f32_8(j, ((const float *)j->scale->data)[s0], zp, off + i0, i1 - i0);
        return;
    }
    bool x_int = j->x->dtype == DAB_DT_INT32;
    for (int64_t i = i0; i < i1; i++) {
        int64_t si = s0 + (i - i0) * ds;
        float s = dab_q_round_to(j->prec, dab_q_getf(j->scale, si));
        /* int32 x divides in double (numpy's int32 / float); floats in float, operands and
         * quotient rounded to the precision dtype */
        double q;
        if (x_int)
            q = dab_tensor_get_f64(j->x, off + i) / s;
        else
            q = dab_q_round_to(j->prec, dab_q_round_to(j->prec, dab_q_getf(j->x, off + i)) / s);
        if (int_out) {
            int32_t zp = j->zp ? dab_q_geti(j->zp, si) : 0;
            double r = (q == q ? nearbyint(q) : 0.0) + zp;
            int32_t v = r < j->lo ? j->lo : r > j->hi ? j->hi : (int32_t)r;
            void *yd = j->y->data;
            switch (ydt) {
            case DAB_DT_INT16: ((int16_t *)yd)[off + i] = (int16_t)v; break;
            case DAB_DT_UINT16: ((uint16_t *)yd)[off + i] = (uint16_t)v; break;
            case DAB_DT_INT8:
            case DAB_DT_INT4:
            case DAB_DT_INT2: ((int8_t *)yd)[off + i] = (int8_t)v; break;
            default: ((uint8_t *)yd)[off + i] = (uint8_t)v; break;
            }
        } else {
            float zp = j->zp ? dab_q_getf(j->zp, si) : 0.0f;
            ((uint8_t *)j->y->data)[off + i] =
                dab_f32_to_small_float(ydt, (float)q + zp, j->saturate);
        }
    }
}

typedef struct ql_priv {
    dab_dtype_t out_dt; /* from output_dtype; UNDEFINED: from the zero point or uint8 */
    dab_dtype_t prec;   /* from precision; UNDEFINED: the scale's dtype */
    bool saturate;
    q_layout_t l; /* from the last reshape */
} ql_priv_t;

/* Reads a dtype attribute (0 or absent: UNDEFINED) that must be in mask. */
static int dtype_attr(const dab_node_t *node, const char *name, uint32_t mask, dab_dtype_t *dt,
                      dab_err_t *err)
{
    int64_t v = dab_attr_int(node, name, 0);
    *dt = DAB_DT_UNDEFINED;
    if (v == 0)
        return 0;
    if (v < 0 || v >= DAB_DT_COUNT_ || !dab_dtype_valid((int)v))
        return dab_err_set(err, DAB_EINVAL, "attribute %s = %lld is not a data type", name,
                           (long long)v);
    if (!(mask & DAB_DTM(v)))
        return dab_err_set(err, DAB_EUNSUPPORTED, "attribute %s = %s is not supported", name,
                           dab_dtype_name((dab_dtype_t)v));
    *dt = (dab_dtype_t)v;
    return 0;
}

static int quantize_init(dab_node_t *node, dab_err_t *err)
{
    ql_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    node->priv = p;
    int64_t sat = node->opset >= 19 ? dab_attr_int(node, "saturate", 1) : 1;
    if (sat != 0 && sat != 1)
        return dab_err_set(err, DAB_EINVAL, "attribute saturate = %lld must be 0 or 1",
                           (long long)sat);
    p->saturate = sat != 0;
    int rc = 0;
    if (node->opset >= 21)
        rc = dtype_attr(node, "output_dtype", Q_DTM_QUANT, &p->out_dt, err);
    if (!rc && node->opset >= 23)
        rc = dtype_attr(node, "precision", Q_DTM_FULL, &p->prec, err);
    return rc;
}

static int quantize_reshape(dab_node_t *node, dab_err_t *err)
{
    ql_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *scale = node->inputs[1];
    const dab_tensor_t *zp = dab_q_in(node, 2);
    if (!dtm_has(Q_DTM_FULL, scale->dtype))
        return dab_err_set(err, DAB_ETYPE, "y_scale must be float, float16 or bfloat16, got %s",
                           dab_dtype_name(scale->dtype));
    dab_dtype_t out = p->out_dt ? p->out_dt : DAB_DT_UINT8;
    if (zp) {
        if (!dtm_has(Q_DTM_QUANT, zp->dtype))
            return dab_err_set(err, DAB_EUNSUPPORTED, "y_zero_point of type %s is not supported",
                               dab_dtype_name(zp->dtype));
        if (p->out_dt && p->out_dt != zp->dtype)
            return dab_err_set(err, DAB_ETYPE,
                               "attribute output_dtype %s differs from y_zero_point's type %s",
                               dab_dtype_name(p->out_dt), dab_dtype_name(zp->dtype));
        out = zp->dtype;
    }
    int rc = q_layout(node, x, scale, zp, "y_scale", "y_zero_point", &p->l, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(node->outputs[0], out, x->rank, x->dims);
    return 0;
}

static int quantize_compute(dab_node_t *node, dab_err_t *err)
{
    ql_priv_t *p = node->priv;
    q_job_t j = {&p->l, node->inputs[0], node->inputs[1], dab_q_in(node, 2), node->outputs[0],
                 p->prec ? p->prec : node->inputs[1]->dtype, p->saturate, 0, 0};
    dab_q_int_range(j.y->dtype, &j.lo, &j.hi);
    q_run(node, &p->l, q_seg, &j, 8);
    return 0;
}

/* ---- DequantizeLinear ---- */

typedef struct dq_job {
    const q_layout_t *l;
    const dab_tensor_t *x, *scale, *zp;
    dab_tensor_t *y;
} dq_job_t;

/* Stores float v into element i of a float / float16 / bfloat16 tensor's data. */
static inline void put_full(dab_dtype_t dt, void *data, int64_t i, float v)
{
    if (dt == DAB_DT_FLOAT)
        ((float *)data)[i] = v;
    else if (dt == DAB_DT_FLOAT16)
        ((uint16_t *)data)[i] = dab_f32_to_f16(v);
    else
        ((uint16_t *)data)[i] = dab_f32_to_bf16(v);
}

static void dq_seg(const void *job, int64_t o, int64_t a, int64_t i0, int64_t i1)
{
    const dq_job_t *j = job;
    const q_layout_t *l = j->l;
    int64_t off = (o * l->n + a) * l->inner;
    int64_t s0 = q_scale_index(l, o, a, i0);
    int64_t ds = l->mode == Q_BLOCKED;
    dab_dtype_t xdt = j->x->dtype, ydt = j->y->dtype;
    if (!ds && j->scale->dtype == DAB_DT_FLOAT && ydt == DAB_DT_FLOAT &&
        (xdt == DAB_DT_UINT8 || xdt == DAB_DT_INT8)) {
        /* the common case, vectorized */
        float s = ((const float *)j->scale->data)[s0];
        float zp = j->zp ? (float)dab_q_geti(j->zp, s0) : 0.0f;
        float *restrict y = (float *)j->y->data + off;
        if (xdt == DAB_DT_UINT8) {
            const uint8_t *restrict x = (const uint8_t *)j->x->data + off;
            for (int64_t i = i0; i < i1; i++)
                y[i] = ((float)x[i] - zp) * s;
        } else {
            const int8_t *restrict x = (const int8_t *)j->x->data + off;
            for (int64_t i = i0; i < i1; i++)
                y[i] = ((float)x[i] - zp) * s;
        }
        return;
    }
    for (int64_t i = i0; i < i1; i++) {
        int64_t si = s0 + (i - i0) * ds;
        float dx = dab_q_getf(j->x, off + i);
        if (j->zp)
            dx -= dab_q_getf(j->zp, si);
        put_full(ydt, j->y->data, off + i, dx * dab_q_getf(j->scale, si));
    }
}

static int dequantize_init(dab_node_t *node, dab_err_t *err)
{
    ql_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the operator's state");
    node->priv = p;
    if (node->opset >= 23)
        return dtype_attr(node, "output_dtype", Q_DTM_FULL, &p->out_dt, err);
    return 0;
}

static int dequantize_reshape(dab_node_t *node, dab_err_t *err)
{
    ql_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *scale = node->inputs[1];
    const dab_tensor_t *zp = dab_q_in(node, 2);
    if (!dtm_has(Q_DTM_SCALE, scale->dtype))
        return dab_err_set(err, DAB_ETYPE,
                           "x_scale must be float, float16, bfloat16 or float8e8m0, got %s",
                           dab_dtype_name(scale->dtype));
    dab_dtype_t out = p->out_dt ? p->out_dt : scale->dtype;
    if (!dtm_has(Q_DTM_FULL, out))
        return dab_err_set(err, DAB_EINVAL,
                           "x_scale is %s: attribute output_dtype must name the output type",
                           dab_dtype_name(scale->dtype));
    if (zp && zp->dtype != x->dtype)
        return dab_err_set(err, DAB_ETYPE, "x_zero_point is %s but x is %s",
                           dab_dtype_name(zp->dtype), dab_dtype_name(x->dtype));
    int rc = q_layout(node, x, scale, zp, "x_scale", "x_zero_point", &p->l, err);
    if (rc)
        return rc;
    dab_tensor_set_shape(node->outputs[0], out, x->rank, x->dims);
    return 0;
}

static int dequantize_compute(dab_node_t *node, dab_err_t *err)
{
    ql_priv_t *p = node->priv;
    dq_job_t j = {&p->l, node->inputs[0], node->inputs[1], dab_q_in(node, 2), node->outputs[0]};
    q_run(node, &p->l, dq_seg, &j, 4);
    return 0;
}

/* ---- DynamicQuantizeLinear ---- */

/*
 * uint8 quantization of float x with a scale and zero point computed from x's range
 * widened to include 0: scale = (max - min) / 255, zero point = saturate(round(-min /
 * scale)); every step in float as the spec's function body does.
 */
static int dynq_reshape(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_set_shape(node->outputs[0], DAB_DT_UINT8, x->rank, x->dims);
    if (node->n_outputs > 1 && node->outputs[1])
        dab_tensor_set_shape(node->outputs[1], DAB_DT_FLOAT, 0, NULL);
    if (node->n_outputs > 2 && node->outputs[2])
        dab_tensor_set_shape(node->outputs[2], DAB_DT_UINT8, 0, NULL);
    return 0;
}

static int dynq_compute(dab_node_t *node, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    const float *xd = x->data;
    int64_t n = dab_tensor_numel(x);
    float mn = 0.0f, mx = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        mn = xd[i] < mn ? xd[i] : mn;
        mx = xd[i] > mx ? xd[i] : mx;
    }
    float scale = (mx - mn) / 255.0f;
    float zpf = 0.0f - mn / scale;
    zpf = zpf != zpf ? 0.0f : zpf < 0.0f ? 0.0f : zpf > 255.0f ? 255.0f : zpf;
    uint8_t zp = (uint8_t)nearbyintf(zpf);
    if (node->n_outputs > 1 && node->outputs[1])
        *(float *)node->outputs[1]->data = scale;
    if (node->n_outputs > 2 && node->outputs[2])
        *(uint8_t *)node->outputs[2]->data = zp;
    dab_tensor_t st = {.dtype = DAB_DT_FLOAT, .rank = 0, .data = &scale};
    q_layout_t l = {.mode = Q_TENSOR, .outer = 1, .n = 1, .inner = n};
    q_job_t j = {&l, x, &st, NULL, node->outputs[0], DAB_DT_FLOAT, true, 0, 255};
    /* the zero point enters as a constant: a 1-element uint8 view of zp */
    dab_tensor_t zt = {.dtype = DAB_DT_UINT8, .rank = 0, .data = &zp};
    j.zp = &zt;
    q_run(node, &l, q_seg, &j, 8);
    return 0;
}

/* ---- the family's table ---- */

#define Q_DTM_X (Q_DTM_FULL | DAB_DTM(DAB_DT_INT32))

const dab_op_def_t dab_ops_quant[] = {
    {"", "QuantizeLinear", 10, 0, Q_DTM_X, 0, 2, 3, 1, 1, quantize_init, quantize_reshape,
     quantize_compute, dab_op_free_priv},
    {"", "DequantizeLinear", 10, 0, Q_DTM_DEQ_IN, 0, 2, 3, 1, 1, dequantize_init,
     dequantize_reshape, dequantize_compute, dab_op_free_priv},
    {"", "DynamicQuantizeLinear", 11, 0, DAB_DTM(DAB_DT_FLOAT), 0, 1, 1, 1, 3, NULL,
     dynq_reshape, dynq_compute, NULL},
    {"", "MatMulInteger", 10, 0, DAB_DTM_Q8, 0, 2, 4, 1, 1, NULL, dab_q_matmulint_reshape,
     dab_q_matmulint_compute, NULL},
    {"", "QLinearMatMul", 10, 0, DAB_DTM_Q8, 0, 8, 8, 1, 1, NULL, dab_q_qlmatmul_reshape,
     dab_q_qlmatmul_compute, NULL},
    {"", "ConvInteger", 10, 0, DAB_DTM_Q8, 0, 2, 4, 1, 1, dab_q_conv_init,
     dab_q_convint_reshape, dab_q_conv_compute, dab_op_free_priv},
    {"", "QLinearConv", 10, 0, DAB_DTM_Q8, 0, 8, 9, 1, 1, dab_q_conv_init, dab_q_qlconv_reshape,
     dab_q_conv_compute, dab_op_free_priv},
    {0},
};
