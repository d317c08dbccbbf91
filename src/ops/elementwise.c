/*
 * elementwise.c - the elementwise operator family: arithmetic (Add ... Pow, Mod), the
 * unary math, trigonometric and activation functions (Relu ... Gelu, Mish), comparisons,
 * logic and bitwise ops, IsNaN/IsInf, Where, Clip and the variadic Max/Min/Sum/Mean,
 * with numpy broadcasting (and the opset < 7 broadcast/axis attributes).
 *
 * This file does shapes, dtypes, attributes and threads; the per-dtype inner loops are
 * in elementwise_kernels.c. Every op shares one init/reshape/compute: init finds the
 * op's descriptor by op type and keeps its attributes in a small state.
 *
 * Broadcasting: compute views the output and inputs as an N-d walk whose adjacent
 * dims are merged wherever every input is contiguous (or broadcast) across them, so
 * same-shape inputs, a scalar operand, a bias along the last dim or a per-channel
 * [C,1,1] operand all become long contiguous runs handed to a kernel. The walk keeps
 * its counters on the stack and splits the output between threads.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "elementwise_int.h"
#include "kernels/simd/simd.h"
#include "ops.h"

typedef enum ew_kind {
    EW_UNARY,    /* y = f(x), same dtype and shape */
    EW_BINARY,   /* y = f(a, b) broadcast, dtype of a */
    EW_COMPARE,  /* as BINARY with a bool output */
    EW_POW,      /* as BINARY, the exponent's dtype may differ */
    EW_PRELU,    /* as BINARY, the slope broadcasts to x (one way) */
    EW_VARIADIC, /* Max, Min, Sum, Mean: a fold over 1..n inputs */
    EW_CLIP,
    EW_WHERE,
} ew_kind_t;

typedef struct ew_op {
    const char *name;
    ew_kind_t kind;
    const dab_ew_un_fn *un;   /* EW_UNARY */
    const dab_ew_bin_fn *bin; /* the binary kinds and EW_VARIADIC */
    int cost;                 /* work per element relative to an add, to size thread teams */
    bool attrs;               /* alpha/beta/gamma are attributes (else fixed) */
    bool out_bool;            /* EW_UNARY with a bool output */
    float alpha, beta, gamma; /* defaults */
} ew_op_t;

#define SELU_ALPHA 1.67326319217681884765625f
#define SELU_GAMMA 1.05070102214813232421875f

static const ew_op_t g_ew_ops[] = {
    {"Add", EW_BINARY, NULL, dab_ew_add, 1, false, false, 0, 0, 0},
    {"Sub", EW_BINARY, NULL, dab_ew_sub, 1, false, false, 0, 0, 0},
    {"Mul", EW_BINARY, NULL, dab_ew_mul, 1, false, false, 0, 0, 0},
    {"Div", EW_BINARY, NULL, dab_ew_div, 2, false, false, 0, 0, 0},
    {"Mod", EW_BINARY, NULL, dab_ew_mod, 8, false, false, 0, 0, 0},
    {"Pow", EW_POW, NULL, NULL, 16, false, false, 0, 0, 0},
    {"PRelu", EW_PRELU, NULL, dab_ew_prelu, 1, false, false, 0, 0, 0},
    {"Equal", EW_COMPARE, NULL, dab_ew_equal, 1, false, false, 0, 0, 0},
    {"Less", EW_COMPARE, NULL, dab_ew_less, 1, false, false, 0, 0, 0},
    {"Greater", EW_COMPARE, NULL, dab_ew_greater, 1, false, false, 0, 0, 0},
    {"LessOrEqual", EW_COMPARE, NULL, dab_ew_less_equal, 1, false, false, 0, 0, 0},
    {"GreaterOrEqual", EW_COMPARE, NULL, dab_ew_greater_equal, 1, false, false, 0, 0, 0},
    {"And", EW_COMPARE, NULL, dab_ew_and, 1, false, false, 0, 0, 0},
    {"Or", EW_COMPARE, NULL, dab_ew_or, 1, false, false, 0, 0, 0},
    {"Xor", EW_COMPARE, NULL, dab_ew_xor, 1, false, false, 0, 0, 0},
    {"Max", EW_VARIADIC, NULL, dab_ew_max, 1, false, false, 0, 0, 0},
    {"Min", EW_VARIADIC, NULL, dab_ew_min, 1, false, false, 0, 0, 0},
    {"Sum", EW_VARIADIC, NULL, dab_ew_add, 1, false, false, 0, 0, 0},
    {"Mean", EW_VARIADIC, NULL, dab_ew_add, 1, false, false, 0, 0, 0},
    {"Clip", EW_CLIP, NULL, NULL, 1, false, false, 0, 0, 0},
    {"Where", EW_WHERE, NULL, NULL, 1, false, false, 0, 0, 0},
    {"Abs", EW_UNARY, dab_ew_abs, NULL, 1, false, false, 0, 0, 0},
    {"Neg", EW_UNARY, dab_ew_neg, NULL, 1, false, false, 0, 0, 0},
    {"Sign", EW_UNARY, dab_ew_sign, NULL, 1, false, false, 0, 0, 0},
    {"Relu", EW_UNARY, dab_ew_relu, NULL, 1, false, false, 0, 0, 0},
    {"Not", EW_UNARY, dab_ew_not, NULL, 1, false, false, 0, 0, 0},
    {"Sqrt", EW_UNARY, dab_ew_sqrt, NULL, 2, false, false, 0, 0, 0},
    {"Exp", EW_UNARY, dab_ew_exp, NULL, 4, false, false, 0, 0, 0},
    {"Log", EW_UNARY, dab_ew_log, NULL, 16, false, false, 0, 0, 0},
    {"Reciprocal", EW_UNARY, dab_ew_reciprocal, NULL, 2, false, false, 0, 0, 0},
    {"Floor", EW_UNARY, dab_ew_floor, NULL, 1, false, false, 0, 0, 0},
    {"Ceil", EW_UNARY, dab_ew_ceil, NULL, 1, false, false, 0, 0, 0},
    {"Round", EW_UNARY, dab_ew_round, NULL, 1, false, false, 0, 0, 0},
    {"Sigmoid", EW_UNARY, dab_ew_sigmoid, NULL, 4, false, false, 0, 0, 0},
    {"Tanh", EW_UNARY, dab_ew_tanh, NULL, 4, false, false, 0, 0, 0},
    {"Erf", EW_UNARY, dab_ew_erf, NULL, 16, false, false, 0, 0, 0},
    {"LeakyRelu", EW_UNARY, dab_ew_leaky_relu, NULL, 1, true, false, 0.01f, 0, 0},
    {"HardSigmoid", EW_UNARY, dab_ew_hard_sigmoid, NULL, 1, true, false, 0.2f, 0.5f, 0},
    {"HardSwish", EW_UNARY, dab_ew_hard_swish, NULL, 1, false, false, 1.0f / 6.0f, 0.5f, 0},
    {"Elu", EW_UNARY, dab_ew_elu, NULL, 4, true, false, 1.0f, 0, 0},
    {"Selu", EW_UNARY, dab_ew_selu, NULL, 4, true, false, SELU_ALPHA, 0, SELU_GAMMA},
    {"Celu", EW_UNARY, dab_ew_celu, NULL, 4, true, false, 1.0f, 0, 0},
    {"Softplus", EW_UNARY, dab_ew_softplus, NULL, 16, false, false, 0, 0, 0},
    {"Softsign", EW_UNARY, dab_ew_softsign, NULL, 2, false, false, 0, 0, 0},
    {"Gelu", EW_UNARY, dab_ew_gelu, NULL, 8, false, false, 0, 0, 0},
    {"ThresholdedRelu", EW_UNARY, dab_ew_thresholded_relu, NULL, 1, true, false, 1.0f, 0, 0},
    {"Mish", EW_UNARY, dab_ew_mish, NULL, 16, false, false, 0, 0, 0},
    {"Swish", EW_UNARY, dab_ew_swish, NULL, 4, true, false, 1.0f, 0, 0},
    {"Shrink", EW_UNARY, dab_ew_shrink, NULL, 1, false, false, 0.5f, 0, 0},
    {"IsNaN", EW_UNARY, dab_ew_isnan, NULL, 1, false, true, 0, 0, 0},
    {"IsInf", EW_UNARY, dab_ew_isinf, NULL, 1, false, true, 1, 1, 0},
    {"Sin", EW_UNARY, dab_ew_sin, NULL, 16, false, false, 0, 0, 0},
    {"Cos", EW_UNARY, dab_ew_cos, NULL, 16, false, false, 0, 0, 0},
    {"Tan", EW_UNARY, dab_ew_tan, NULL, 16, false, false, 0, 0, 0},
    {"Asin", EW_UNARY, dab_ew_asin, NULL, 16, false, false, 0, 0, 0},
    {"Acos", EW_UNARY, dab_ew_acos, NULL, 16, false, false, 0, 0, 0},
    {"Atan", EW_UNARY, dab_ew_atan, NULL, 16, false, false, 0, 0, 0},
    {"Sinh", EW_UNARY, dab_ew_sinh, NULL, 16, false, false, 0, 0, 0},
    {"Cosh", EW_UNARY, dab_ew_cosh, NULL, 16, false, false, 0, 0, 0},
    {"Asinh", EW_UNARY, dab_ew_asinh, NULL, 16, false, false, 0, 0, 0},
    {"Acosh", EW_UNARY, dab_ew_acosh, NULL, 16, false, false, 0, 0, 0},
    {"Atanh", EW_UNARY, dab_ew_atanh, NULL, 16, false, false, 0, 0, 0},
    {"BitwiseNot", EW_UNARY, dab_ew_bitwise_not, NULL, 1, false, false, 0, 0, 0},
    {"BitwiseAnd", EW_BINARY, NULL, dab_ew_bitwise_and, 1, false, false, 0, 0, 0},
    {"BitwiseOr", EW_BINARY, NULL, dab_ew_bitwise_or, 1, false, false, 0, 0, 0},
    {"BitwiseXor", EW_BINARY, NULL, dab_ew_bitwise_xor, 1, false, false, 0, 0, 0},
    {"BitShift", EW_BINARY, NULL, dab_ew_shift_left, 1, false, false, 0, 0, 0},
};

/* A node's state from init. */
typedef struct ew_state {
    const ew_op_t *op;
    const dab_ew_bin_fn *bin; /* op->bin, or the variant an attribute picks (Mod, BitShift) */
    const dab_ew_un_fn *un;   /* op->un, or the variant an attribute picks (Gelu) */
    dab_ew_args_t args;
    bool legacy;     /* opset < 7 with broadcast = 1: B broadcasts onto A's shape */
    bool has_axis;   /* ... with B's dims aligned at A's dim `axis` */
    int64_t axis;
    bool clip_attrs; /* Clip before opset 11: bounds are attributes */
    float clip_min, clip_max;
} ew_state_t;

/* ---- the broadcast walk ---- */

/* The output as an N-d walk over at most 3 inputs, adjacent dims merged where possible. */
typedef struct ew_plan {
    int rank; /* >= 1 */
    int n_in;
    int64_t total;
    int64_t dims[DAB_MAX_RANK];
    int64_t st[3][DAB_MAX_RANK]; /* element strides per input, 0 along broadcast dims */
} ew_plan_t;

/* What the walk calls on each contiguous run. */
typedef struct ew_call {
    dab_ew_bin_fn bin;     /* n_in == 2 */
    dab_ew_where_fn where; /* n_in == 3 */
    char *o;
    size_t osz;
    const char *in[3];
    size_t isz[3];
} ew_call_t;

static void plan_build(ew_plan_t *p, const dab_tensor_t *out, int n_in,
                       const dab_tensor_t *const *ins)
{
    int64_t st[3][DAB_MAX_RANK];
    for (int k = 0; k < n_in; k++)
        dab_broadcast_strides(ins[k], out, st[k]);
    p->n_in = n_in;
    p->total = dab_tensor_numel(out);
    /* built innermost first: drop size-1 dims, merge a dim into the one inside it when
     * every input's stride continues across the boundary (0 continues 0) */
    int r = 0;
    for (int d = out->rank - 1; d >= 0; d--) {
        int64_t n = out->dims[d];
        if (n == 1)
            continue;
        if (r > 0) {
            bool merge = true;
            for (int k = 0; k < n_in; k++)
                if (st[k][d] != p->st[k][r - 1] * p->dims[r - 1])
                    merge = false;
            if (merge) {
                p->dims[r - 1] *= n;
                continue;
            }
        }
        p->dims[r] = n;
        for (int k = 0; k < n_in; k++)
            p->st[k][r] = st[k][d];
        r++;
    }
    if (r == 0) {
        p->dims[0] = 1;
        for (int k = 0; k < n_in; k++)
            p->st[k][0] = 0;
        r = 1;
    }
    /* outermost first from here on */
    for (int i = 0, j = r - 1; i < j; i++, j--) {
        int64_t t = p->dims[i];
        p->dims[i] = p->dims[j];
        p->dims[j] = t;
        for (int k = 0; k < n_in; k++) {
            t = p->st[k][i];
            p->st[k][i] = p->st[k][j];
            p->st[k][j] = t;
        }
    }
    p->rank = r;
}

/* Runs output elements [start, end) run by run; returns the kernels' error flags. */
static int plan_rows(const ew_plan_t *p, const ew_call_t *c, int64_t start, int64_t end)
{
    int r = p->rank, n_in = p->n_in;
    int64_t idx[DAB_MAX_RANK], off[3] = {0, 0, 0};
    int64_t rem = start;
    for (int d = r - 1; d >= 0; d--) {
        idx[d] = rem % p->dims[d];
        rem /= p->dims[d];
        for (int k = 0; k < n_in; k++)
            off[k] += idx[d] * p->st[k][d];
    }
    int64_t inner = p->dims[r - 1];
    int s[3] = {0, 0, 0};
    for (int k = 0; k < n_in; k++)
        s[k] = p->st[k][r - 1] != 0;
    int bad = 0;
    for (int64_t pos = start; pos < end;) {
        int64_t len = DAB_MIN(inner - idx[r - 1], end - pos);
        char *o = c->o + pos * (int64_t)c->osz;
        const char *a = c->in[0] + off[0] * (int64_t)c->isz[0];
        const char *b = c->in[1] + off[1] * (int64_t)c->isz[1];
        if (n_in == 2)
            bad |= c->bin(o, a, b, len, s[0], s[1]);
        else
            c->where(o, (const uint8_t *)a, b, c->in[2] + off[2] * (int64_t)c->isz[2], len,
                     s[0], s[1], s[2]);
        pos += len;
        idx[r - 1] += len;
        for (int k = 0; k < n_in; k++)
            off[k] += len * p->st[k][r - 1];
        for (int d = r - 1; d > 0 && idx[d] == p->dims[d]; d--) {
            for (int k = 0; k < n_in; k++)
                off[k] += p->st[k][d - 1] - idx[d] * p->st[k][d];
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
    return bad;
}

/* Runs the whole plan, split between threads on 64-element boundaries. */
static int plan_run(const dab_node_t *node, const ew_plan_t *p, const ew_call_t *c, int cost)
{
    if (p->total == 0)
        return 0;
    int nt = dab_par_threads(node->ctx, p->total * cost);
    if (nt <= 1)
        return plan_rows(p, c, 0, p->total);
    int64_t chunk = (p->total + nt - 1) / nt;
    chunk = (chunk + 63) & ~(int64_t)63;
    int bad = 0;
#pragma omp parallel for num_threads(nt) reduction(| : bad)
    for (int t = 0; t < nt; t++) {
        int64_t s = t * chunk, e = DAB_MIN(s + chunk, p->total);
        if (s < e)
            bad |= plan_rows(p, c, s, e);
    }
    return bad;
}

/* out = fn(a, b) with a and b broadcast to out's shape. */
static int run_binary(const dab_node_t *node, dab_ew_bin_fn fn, const dab_tensor_t *a,
                      const dab_tensor_t *b, dab_tensor_t *out, int cost)
{
    const dab_tensor_t *ins[2] = {a, b};
    ew_plan_t p;
    plan_build(&p, out, 2, ins);
    ew_call_t c = {.bin = fn,
                   .o = out->data,
                   .osz = dab_dtype_size(out->dtype),
                   .in = {a->data, b->data, NULL},
                   .isz = {dab_dtype_size(a->dtype), dab_dtype_size(b->dtype), 0}};
    return plan_run(node, &p, &c, cost);
}

/* ---- init / exit ---- */

static const ew_op_t *op_lookup(const char *name)
{
    for (size_t i = 0; i < DAB_ARRAY_LEN(g_ew_ops); i++)
        if (!strcmp(g_ew_ops[i].name, name))
            return &g_ew_ops[i];
    return NULL;
}

static bool kind_is_binary(ew_kind_t k)
{
    return k == EW_BINARY || k == EW_COMPARE || k == EW_POW || k == EW_PRELU;
}

static int ew_init(dab_node_t *node, dab_err_t *err)
{
    const ew_op_t *op = op_lookup(node->op_type);
    if (!op)
        return dab_err_set(err, DAB_EINTERNAL, "op type '%s' is not an elementwise op",
                           node->op_type);
    ew_state_t *st = dab_calloc(1, sizeof *st);
    if (!st)
        return dab_err_set(err, DAB_ENOMEM, "out of memory for the node's state");
    st->op = op;
    st->bin = op->bin;
    st->un = op->un;
    st->args.alpha = op->attrs ? dab_attr_float(node, "alpha", op->alpha) : op->alpha;
    st->args.beta = op->attrs ? dab_attr_float(node, "beta", op->beta) : op->beta;
    st->args.gamma = op->attrs ? dab_attr_float(node, "gamma", op->gamma) : op->gamma;

    int rc = 0;
    if (!strcmp(op->name, "Mod")) {
        int64_t fm = dab_attr_int(node, "fmod", 0);
        if (fm != 0 && fm != 1) {
            rc = dab_err_set(err, DAB_EINVAL, "attribute fmod must be 0 or 1, got %lld",
                             (long long)fm);
            goto fail;
        }
        if (fm)
            st->bin = dab_ew_fmod;
    } else if (!strcmp(op->name, "Celu") && st->args.alpha == 0) {
        rc = dab_err_set(err, DAB_EINVAL, "attribute alpha must not be 0 (Celu divides by it)");
        goto fail;
    } else if (!strcmp(op->name, "Shrink")) {
        st->args.alpha = dab_attr_float(node, "lambd", 0.5f);
        st->args.beta = dab_attr_float(node, "bias", 0.0f);
    } else if (!strcmp(op->name, "IsInf")) {
        st->args.alpha = dab_attr_int(node, "detect_negative", 1) != 0;
        st->args.beta = dab_attr_int(node, "detect_positive", 1) != 0;
    } else if (!strcmp(op->name, "Gelu")) {
        const char *ap = dab_attr_string(node, "approximate", "none");
        if (!strcmp(ap, "tanh")) {
            st->un = dab_ew_gelu_tanh;
        } else if (strcmp(ap, "none")) {
            rc = dab_err_set(err, DAB_EINVAL,
                             "attribute approximate must be \"none\" or \"tanh\", got \"%s\"",
                             ap);
            goto fail;
        }
    } else if (!strcmp(op->name, "BitShift")) {
        const char *dir = dab_attr_string(node, "direction", NULL);
        if (!dir || (strcmp(dir, "LEFT") && strcmp(dir, "RIGHT"))) {
            rc = dab_err_set(err, DAB_EINVAL,
                             "attribute direction must be \"LEFT\" or \"RIGHT\", got %s%s%s",
                             dir ? "\"" : "", dir ? dir : "none", dir ? "\"" : "");
            goto fail;
        }
        if (!strcmp(dir, "RIGHT"))
            st->bin = dab_ew_shift_right;
    }
    /* before opset 7, binary ops broadcast only when asked, B onto A, optionally at axis */
    if (kind_is_binary(op->kind) && op->kind != EW_PRELU && node->opset < 7) {
        st->legacy = dab_attr_int(node, "broadcast", 0) != 0;
        const dab_attr_t *ax = dab_attr_find(node, "axis");
        if (st->legacy && ax) {
            if (ax->type != DAB_ATTR_INT) {
                rc = dab_err_set(err, DAB_EINVAL, "attribute axis must be an int");
                goto fail;
            }
            st->has_axis = true;
            st->axis = ax->i;
        }
    }
    if (op->kind == EW_CLIP && node->opset < 11) {
        st->clip_attrs = true;
        st->clip_min = dab_attr_float(node, "min", -INFINITY);
        st->clip_max = dab_attr_float(node, "max", INFINITY);
    }
    node->priv = st;
    return 0;
fail:
    dab_free(st);
    return rc;
}

/* ---- shared checks ---- */

static int need_input(const dab_node_t *node, int i, const char *what, dab_err_t *err)
{
    if (i >= node->n_inputs || !node->inputs[i])
        return dab_err_set(err, DAB_EINVAL, "input %d (%s) is required", i, what);
    return 0;
}

static int need_output(const dab_node_t *node, dab_err_t *err)
{
    if (node->n_outputs < 1 || !node->outputs[0])
        return dab_err_set(err, DAB_EINVAL, "output 0 is required");
    return 0;
}

static int same_dtype(const dab_tensor_t *t, const dab_tensor_t *ref, int i, dab_err_t *err)
{
    if (t->dtype != ref->dtype)
        return dab_err_set(err, DAB_ETYPE, "input %d has dtype %s but input 0 has %s", i,
                           dab_dtype_name(t->dtype), dab_dtype_name(ref->dtype));
    return 0;
}

static int no_kernel(const ew_op_t *op, dab_dtype_t dt, dab_err_t *err)
{
    return dab_err_set(err, DAB_EUNSUPPORTED, "%s is not implemented for dtype %s", op->name,
                       dab_dtype_name(dt));
}

static bool dt_ok(dab_dtype_t dt)
{
    return (unsigned)dt < DAB_DT_COUNT_;
}

/* ---- binary ops ---- */

/*
 * The inputs of a binary op as seen for broadcasting: the tensors themselves, except for
 * opset < 7 ops whose B aligns with A at `axis`, and PRelu < 7 whose 1-D slope is per
 * channel (dim 1).
 */
static int bin_views(const dab_node_t *node, const ew_state_t *st, dab_tensor_t *va,
                     dab_tensor_t *vb, dab_err_t *err)
{
    const dab_tensor_t *a = node->inputs[0], *b = node->inputs[1];
    *va = *a;
    *vb = *b;
    if (st->op->kind == EW_PRELU && node->opset < 7) {
        if (b->rank == 1 && a->rank >= 3 && b->dims[0] != 1 && b->dims[0] == a->dims[1]) {
            vb->rank = a->rank - 1;
            for (int d = 1; d < vb->rank; d++)
                vb->dims[d] = 1;
        }
        return 0;
    }
    if (!st->has_axis || dab_tensor_numel(b) == 1)
        return 0;
    int ax;
    int rc = dab_norm_axis(st->axis, a->rank, "attribute axis", &ax, err);
    if (rc)
        return rc;
    if (ax + b->rank > a->rank) {
        char sa[96], sb[96];
        return dab_err_set(err, DAB_ESHAPE,
                           "input B of shape %s does not fit in A of shape %s at axis %d",
                           dab_shape_str(b, sb, sizeof sb), dab_shape_str(a, sa, sizeof sa),
                           ax);
    }
    vb->rank = a->rank - ax;
    for (int d = b->rank; d < vb->rank; d++)
        vb->dims[d] = 1;
    return 0;
}

/* The SIMD float32 kernel standing in for a binary table's entry, or NULL (bitwise the
 * same results: + - * / are exact in both). */
static dab_ew_bin_fn simd_bin(const dab_ew_bin_fn *table, dab_dtype_t dt)
{
    const dab_simd_ops_t *s = dt == DAB_DT_FLOAT ? dab_simd() : NULL;
    if (!s)
        return NULL;
    if (table == dab_ew_add)
        return s->add;
    if (table == dab_ew_sub)
        return s->sub;
    if (table == dab_ew_mul)
        return s->mul;
    if (table == dab_ew_div)
        return s->div;
    return NULL;
}

static dab_ew_bin_fn bin_kernel(const ew_state_t *st, dab_dtype_t da, dab_dtype_t db)
{
    if (!dt_ok(da) || !dt_ok(db))
        return NULL;
    if (st->op->kind == EW_POW)
        return dab_ew_pow[da][db];
    dab_ew_bin_fn simd = st->op->kind == EW_BINARY && da == db ? simd_bin(st->bin, da) : NULL;
    return simd ? simd : st->bin[da];
}

static int bin_reshape(dab_node_t *node, const ew_state_t *st, dab_err_t *err)
{
    int rc;
    if ((rc = need_input(node, 0, "A", err)) || (rc = need_input(node, 1, "B", err)) ||
        (rc = need_output(node, err)))
        return rc;
    const dab_tensor_t *a = node->inputs[0], *b = node->inputs[1];
    if (st->op->kind != EW_POW && (rc = same_dtype(b, a, 1, err)))
        return rc;
    if (!bin_kernel(st, a->dtype, b->dtype)) {
        if (st->op->kind == EW_POW)
            return dab_err_set(err, DAB_EUNSUPPORTED,
                               "Pow is not implemented for base %s with exponent %s",
                               dab_dtype_name(a->dtype), dab_dtype_name(b->dtype));
        return no_kernel(st->op, a->dtype, err);
    }
    dab_tensor_t va, vb;
    if ((rc = bin_views(node, st, &va, &vb, err)))
        return rc;
    const dab_tensor_t *views[2] = {&va, &vb};
    dab_tensor_t *out = node->outputs[0];
    if ((rc = dab_broadcast_shapes(2, views, out, err)))
        return rc;
    /* PRelu's slope and old-style broadcasts go one way: the output keeps A's shape */
    if ((st->legacy || st->op->kind == EW_PRELU) && !dab_shape_equal(out, a)) {
        char sa[96], sb[96];
        return dab_err_set(err, DAB_ESHAPE, "input %s of shape %s does not broadcast to %s",
                           st->op->kind == EW_PRELU ? "slope" : "B",
                           dab_shape_str(b, sb, sizeof sb), dab_shape_str(a, sa, sizeof sa));
    }
    out->dtype = st->op->kind == EW_COMPARE ? DAB_DT_BOOL : a->dtype;
    return 0;
}

static int bin_compute(dab_node_t *node, const ew_state_t *st, dab_err_t *err)
{
    dab_tensor_t va, vb;
    int rc = bin_views(node, st, &va, &vb, err);
    if (rc)
        return rc;
    dab_ew_bin_fn fn = bin_kernel(st, va.dtype, vb.dtype);
    if (run_binary(node, fn, &va, &vb, node->outputs[0], st->op->cost))
        return dab_err_set(err, DAB_EINVAL, "integer %s by zero: input B holds a 0",
                           strcmp(st->op->name, "Div") ? "modulo" : "division");
    return 0;
}

/* ---- Max, Min, Sum, Mean ---- */

static int var_reshape(dab_node_t *node, const ew_state_t *st, dab_err_t *err)
{
    int rc;
    if (node->n_inputs < 1)
        return dab_err_set(err, DAB_EINVAL, "%s needs at least one input", st->op->name);
    if ((rc = need_output(node, err)))
        return rc;
    for (int i = 0; i < node->n_inputs; i++) {
        if ((rc = need_input(node, i, "data", err)))
            return rc;
        if ((rc = same_dtype(node->inputs[i], node->inputs[0], i, err)))
            return rc;
    }
    dab_dtype_t dt = node->inputs[0]->dtype;
    bool mean = !strcmp(st->op->name, "Mean");
    if (!dt_ok(dt) || !st->bin[dt] || (mean && dt != DAB_DT_FLOAT && dt != DAB_DT_DOUBLE))
        return no_kernel(st->op, dt, err);
    dab_tensor_t *out = node->outputs[0];
    if ((rc = dab_broadcast_shapes(node->n_inputs, (const dab_tensor_t *const *)node->inputs,
                                   out, err)))
        return rc;
    out->dtype = dt;
    return 0;
}

static int var_compute(dab_node_t *node, const ew_state_t *st, dab_err_t *err)
{
    dab_tensor_t *out = node->outputs[0];
    const dab_tensor_t *const *in = (const dab_tensor_t *const *)node->inputs;
    dab_ew_bin_fn fn = simd_bin(st->bin, out->dtype);
    if (!fn)
        fn = st->bin[out->dtype];
    dab_ew_bin_fn div = simd_bin(dab_ew_div, out->dtype);
    int n = node->n_inputs;
    if (n == 1) {
        memcpy(out->data, in[0]->data, dab_tensor_bytes(out));
    } else {
        run_binary(node, fn, in[0], in[1], out, st->op->cost);
        for (int i = 2; i < n; i++)
            run_binary(node, fn, out, in[i], out, st->op->cost); /* in place, same index */
    }
    if (!strcmp(st->op->name, "Mean") && n > 1) {
        float nf = (float)n;
        double nd = (double)n;
        dab_tensor_t dv = {.dtype = out->dtype, .rank = 0};
        dv.data = out->dtype == DAB_DT_FLOAT ? (void *)&nf : (void *)&nd;
        run_binary(node, div ? div : dab_ew_div[out->dtype], out, &dv, out, 2);
    }
    return 0;
}

/* ---- Clip ---- */

/* Writes the lowest (or highest) value of dt into buf. */
static void dtype_limit(dab_dtype_t dt, bool high, void *buf)
{
    switch (dt) {
    case DAB_DT_FLOAT: *(float *)buf = high ? INFINITY : -INFINITY; break;
    case DAB_DT_DOUBLE: *(double *)buf = high ? INFINITY : -INFINITY; break;
    case DAB_DT_INT8: *(int8_t *)buf = high ? INT8_MAX : INT8_MIN; break;
    case DAB_DT_INT16: *(int16_t *)buf = high ? INT16_MAX : INT16_MIN; break;
    case DAB_DT_INT32: *(int32_t *)buf = high ? INT32_MAX : INT32_MIN; break;
    case DAB_DT_INT64: *(int64_t *)buf = high ? INT64_MAX : INT64_MIN; break;
    case DAB_DT_UINT8: *(uint8_t *)buf = high ? UINT8_MAX : 0; break;
    case DAB_DT_UINT16: *(uint16_t *)buf = high ? UINT16_MAX : 0; break;
    case DAB_DT_UINT32: *(uint32_t *)buf = high ? UINT32_MAX : 0; break;
    case DAB_DT_UINT64: *(uint64_t *)buf = high ? UINT64_MAX : 0; break;
    default: break;
    }
}

static int clip_reshape(dab_node_t *node, const ew_state_t *st, dab_err_t *err)
{
    int rc;
    if ((rc = need_input(node, 0, "input", err)) || (rc = need_output(node, err)))
        return rc;
    const dab_tensor_t *x = node->inputs[0];
    if (!dt_ok(x->dtype) || !dab_ew_clip[x->dtype])
        return no_kernel(st->op, x->dtype, err);
    if (st->clip_attrs && x->dtype != DAB_DT_FLOAT && x->dtype != DAB_DT_DOUBLE)
        return no_kernel(st->op, x->dtype, err);
    for (int i = 1; i < node->n_inputs && i < 3; i++) {
        const dab_tensor_t *t = node->inputs[i];
        if (!t)
            continue;
        if ((rc = same_dtype(t, x, i, err)))
            return rc;
        if (dab_tensor_numel(t) != 1) {
            char s[96];
            return dab_err_set(err, DAB_ESHAPE, "input %s must be a scalar, got shape %s",
                               i == 1 ? "min" : "max", dab_shape_str(t, s, sizeof s));
        }
    }
    dab_tensor_set_shape(node->outputs[0], x->dtype, x->rank, x->dims);
    return 0;
}

static int clip_compute(dab_node_t *node, const ew_state_t *st, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *out = node->outputs[0];
    dab_dtype_t dt = x->dtype;
    size_t esz = dab_dtype_size(dt);
    _Alignas(8) unsigned char lo[8], hi[8];
    if (st->clip_attrs) {
        if (dt == DAB_DT_FLOAT) {
            memcpy(lo, &st->clip_min, sizeof(float));
            memcpy(hi, &st->clip_max, sizeof(float));
        } else {
            double l = st->clip_min, h = st->clip_max;
            memcpy(lo, &l, sizeof l);
            memcpy(hi, &h, sizeof h);
        }
    } else {
        dtype_limit(dt, false, lo);
        dtype_limit(dt, true, hi);
        if (node->n_inputs > 1 && node->inputs[1])
            memcpy(lo, node->inputs[1]->data, esz);
        if (node->n_inputs > 2 && node->inputs[2])
            memcpy(hi, node->inputs[2]->data, esz);
    }
    dab_ew_clip_fn fn = dab_ew_clip[dt];
    int64_t n = dab_tensor_numel(x);
    int nt = dab_par_threads(node->ctx, n);
    int64_t chunk = ((n + nt - 1) / nt + 63) & ~(int64_t)63;
    const char *xp = x->data;
    char *op = out->data;
    DAB_PAR_FOR(nt, int, t, nt,
        int64_t s = t * chunk, e = DAB_MIN(s + chunk, n);
        if (s < e)
            fn(op + s * (int64_t)esz, xp + s * (int64_t)esz, e - s, lo, hi);
    );
    (void)err;
    return 0;
}

/* ---- Where ---- */

static int where_reshape(dab_node_t *node, const ew_state_t *st, dab_err_t *err)
{
    int rc;
    if ((rc = need_input(node, 0, "condition", err)) || (rc = need_input(node, 1, "X", err)) ||
        (rc = need_input(node, 2, "Y", err)) || (rc = need_output(node, err)))
        return rc;
    const dab_tensor_t *c = node->inputs[0], *x = node->inputs[1], *y = node->inputs[2];
    if (c->dtype != DAB_DT_BOOL)
        return dab_err_set(err, DAB_ETYPE, "input condition must be bool, got %s",
                           dab_dtype_name(c->dtype));
    if (y->dtype != x->dtype)
        return dab_err_set(err, DAB_ETYPE, "input Y has dtype %s but X has %s",
                           dab_dtype_name(y->dtype), dab_dtype_name(x->dtype));
    size_t esz = dab_dtype_size(x->dtype);
    if (x->dtype == DAB_DT_STRING || esz >= DAB_ARRAY_LEN(dab_ew_where) || !dab_ew_where[esz])
        return no_kernel(st->op, x->dtype, err);
    dab_tensor_t *out = node->outputs[0];
    const dab_tensor_t *ins[3] = {c, x, y};
    if ((rc = dab_broadcast_shapes(3, ins, out, err)))
        return rc;
    out->dtype = x->dtype;
    return 0;
}

static int where_compute(dab_node_t *node, const ew_state_t *st, dab_err_t *err)
{
    const dab_tensor_t *ins[3] = {node->inputs[0], node->inputs[1], node->inputs[2]};
    dab_tensor_t *out = node->outputs[0];
    size_t esz = dab_dtype_size(out->dtype);
    ew_plan_t p;
    plan_build(&p, out, 3, ins);
    ew_call_t c = {.where = dab_ew_where[esz],
                   .o = out->data,
                   .osz = esz,
                   .in = {ins[0]->data, ins[1]->data, ins[2]->data},
                   .isz = {1, esz, esz}};
    plan_run(node, &p, &c, st->op->cost);
    (void)err;
    return 0;
}

/* ---- unary ops ---- */

/* The SIMD float32 kernel standing in for a unary table, or NULL. */
static void (*simd_un(const dab_ew_un_fn *table))(float *, const float *, int64_t)
{
    const dab_simd_ops_t *s = dab_simd();
    if (!s)
        return NULL;
    if (table == dab_ew_relu)
        return s->relu;
    if (table == dab_ew_neg)
        return s->neg;
    if (table == dab_ew_abs)
        return s->abs;
    if (table == dab_ew_sqrt)
        return s->sqrt;
    if (table == dab_ew_exp)
        return s->exp;
    if (table == dab_ew_sigmoid)
        return s->sigmoid;
    if (table == dab_ew_tanh)
        return s->tanh;
    if (table == dab_ew_erf)
        return s->erf;
    if (table == dab_ew_gelu)
        return s->gelu;
    if (table == dab_ew_gelu_tanh)
        return s->gelu_tanh;
    return NULL;
}

static int un_reshape(dab_node_t *node, const ew_state_t *st, dab_err_t *err)
{
    int rc;
    if ((rc = need_input(node, 0, "X", err)) || (rc = need_output(node, err)))
        return rc;
    const dab_tensor_t *x = node->inputs[0];
    if (!dt_ok(x->dtype) || !st->un[x->dtype])
        return no_kernel(st->op, x->dtype, err);
    dab_tensor_set_shape(node->outputs[0], st->op->out_bool ? DAB_DT_BOOL : x->dtype, x->rank,
                         x->dims);
    return 0;
}

static int un_compute(dab_node_t *node, const ew_state_t *st, dab_err_t *err)
{
    const dab_tensor_t *x = node->inputs[0];
    dab_tensor_t *out = node->outputs[0];
    dab_ew_un_fn fn = st->un[x->dtype];
    size_t esz = dab_dtype_size(x->dtype), osz = dab_dtype_size(out->dtype);
    int64_t n = dab_tensor_numel(x);
    int nt = dab_par_threads(node->ctx, n * st->op->cost);
    int64_t chunk = ((n + nt - 1) / nt + 63) & ~(int64_t)63;
    const char *xp = x->data;
    char *op = out->data;
    const dab_ew_args_t *args = &st->args;
    void (*vfn)(float *, const float *, int64_t) =
        x->dtype == DAB_DT_FLOAT && !st->op->out_bool ? simd_un(st->un) : NULL;
    if (vfn) {
        DAB_PAR_FOR(nt, int, t, nt,
            int64_t s = t * chunk, e = DAB_MIN(s + chunk, n);
            if (s < e)
                vfn((float *)out->data + s, (const float *)x->data + s, e - s);
        );
        return 0;
    }
    DAB_PAR_FOR(nt, int, t, nt,
        int64_t s = t * chunk, e = DAB_MIN(s + chunk, n);
        if (s < e)
            fn(op + s * (int64_t)osz, xp + s * (int64_t)esz, e - s, args);
    );
    (void)err;
    return 0;
}

/* ---- dispatch ---- */

static int ew_reshape(dab_node_t *node, dab_err_t *err)
{
    const ew_state_t *st = node->priv;
    switch (st->op->kind) {
    case EW_UNARY: return un_reshape(node, st, err);
    case EW_VARIADIC: return var_reshape(node, st, err);
    case EW_CLIP: return clip_reshape(node, st, err);
    case EW_WHERE: return where_reshape(node, st, err);
    default: return bin_reshape(node, st, err);
    }
}

static int ew_compute(dab_node_t *node, dab_err_t *err)
{
    const ew_state_t *st = node->priv;
    switch (st->op->kind) {
    case EW_UNARY: return un_compute(node, st, err);
    case EW_VARIADIC: return var_compute(node, st, err);
    case EW_CLIP: return clip_compute(node, st, err);
    case EW_WHERE: return where_compute(node, st, err);
    default: return bin_compute(node, st, err);
    }
}

/* ---- the table ---- */

#define DTM_NUM DAB_DTM_NUMERIC
#define DTM_FLT DAB_DTM_FLOATS
#define DTM_SIGNED (DAB_DTM_FLOATS | DAB_DTM_SINT)
#define DTM_BOOL DAB_DTM(DAB_DT_BOOL)
#define DTM_POW_BASE (DAB_DTM_FLOATS | DAB_DTM(DAB_DT_INT32) | DAB_DTM(DAB_DT_INT64))

/* One definition: name, opsets [since, until], dtypes of input dtin, input count range. */
#define EW_DEF(name, since, until, mask, dtin, min_in, max_in)                                \
    {"", name, since, until, mask, dtin, min_in, max_in, 1, 1, ew_init, ew_reshape,           \
     ew_compute, dab_op_free_priv}

/* Binary ops: before 7 with the broadcast/axis attributes, from 7 numpy broadcasting. */
#define EW_BIN2(name, mask) EW_DEF(name, 1, 6, mask, 0, 2, 2), EW_DEF(name, 7, 0, mask, 0, 2, 2)

const dab_op_def_t dab_ops_elementwise[] = {
    EW_BIN2("Add", DTM_NUM),
    EW_BIN2("Sub", DTM_NUM),
    EW_BIN2("Mul", DTM_NUM),
    EW_BIN2("Div", DTM_NUM),
    EW_DEF("Mod", 10, 0, DTM_NUM, 0, 2, 2),
    EW_BIN2("Pow", DTM_POW_BASE),
    EW_DEF("PRelu", 1, 6, DTM_NUM, 0, 2, 2), /* 1-D slope per channel */
    EW_DEF("PRelu", 7, 0, DTM_NUM, 0, 2, 2),
    EW_BIN2("Equal", DTM_NUM | DTM_BOOL | DAB_DTM(DAB_DT_STRING)),
    EW_BIN2("Less", DTM_NUM),
    EW_BIN2("Greater", DTM_NUM),
    EW_DEF("LessOrEqual", 12, 0, DTM_NUM, 0, 2, 2),
    EW_DEF("GreaterOrEqual", 12, 0, DTM_NUM, 0, 2, 2),
    EW_BIN2("And", DTM_BOOL),
    EW_BIN2("Or", DTM_BOOL),
    EW_BIN2("Xor", DTM_BOOL),
    EW_DEF("Not", 1, 0, DTM_BOOL, 0, 1, 1),
    EW_DEF("Where", 9, 0, DTM_NUM | DTM_BOOL, 1, 3, 3),
    EW_DEF("Max", 1, 0, DTM_NUM, 0, 1, -1),
    EW_DEF("Min", 1, 0, DTM_NUM, 0, 1, -1),
    EW_DEF("Sum", 1, 0, DTM_NUM, 0, 1, -1),
    EW_DEF("Mean", 1, 0, DTM_FLT, 0, 1, -1),
    EW_DEF("Clip", 1, 10, DTM_FLT, 0, 1, 1), /* min/max attributes */
    EW_DEF("Clip", 11, 0, DTM_NUM, 0, 1, 3), /* min/max inputs; integers from 12 */
    EW_DEF("Abs", 1, 0, DTM_NUM, 0, 1, 1),
    EW_DEF("Neg", 1, 0, DTM_SIGNED, 0, 1, 1),
    EW_DEF("Sign", 9, 0, DTM_NUM, 0, 1, 1),
    EW_DEF("Relu", 1, 0, DTM_SIGNED, 0, 1, 1), /* integers from 14 */
    EW_DEF("Sqrt", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Exp", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Log", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Reciprocal", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Floor", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Ceil", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Round", 11, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Sigmoid", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Tanh", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Erf", 9, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("LeakyRelu", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("HardSigmoid", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("HardSwish", 14, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Elu", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Selu", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Celu", 12, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Softplus", 1, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Softsign", 1, 0, DTM_FLT, 0, 1, 1),
    /* more activations and math */
    EW_DEF("Gelu", 20, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("ThresholdedRelu", 10, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Mish", 18, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Swish", 24, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Shrink", 9, 0, DTM_NUM, 0, 1, 1),
    EW_DEF("IsNaN", 9, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("IsInf", 10, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Sin", 7, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Cos", 7, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Tan", 7, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Asin", 7, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Acos", 7, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Atan", 7, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Sinh", 9, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Cosh", 9, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Asinh", 9, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Acosh", 9, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("Atanh", 9, 0, DTM_FLT, 0, 1, 1),
    EW_DEF("BitShift", 11, 0, DAB_DTM_UINT, 0, 2, 2),
    EW_DEF("BitwiseAnd", 18, 0, DAB_DTM_INTS, 0, 2, 2),
    EW_DEF("BitwiseOr", 18, 0, DAB_DTM_INTS, 0, 2, 2),
    EW_DEF("BitwiseXor", 18, 0, DAB_DTM_INTS, 0, 2, 2),
    EW_DEF("BitwiseNot", 18, 0, DAB_DTM_INTS, 0, 1, 1),
    {0},
};
