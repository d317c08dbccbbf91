/*
 * rnn.c - recurrent operators (RNN, GRU, LSTM), opsets 7 to 22+.
 *
 * One reference implementation serves all three: the inputs are widened to double in
 * scratch (so float and double share one kernel and the weights need no per-dtype code),
 * then every (direction, batch row) pair runs its own recurrence, independent of the
 * others, which is what the thread loop splits. sequence_lens cuts a row short: its Y
 * steps past the length are zero and Y_h/Y_c hold the state after its last valid step.
 * Gate order follows ONNX: GRU z, r, h; LSTM i, o, f, c; peepholes i, o, f.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

enum { RNN_KIND_RNN, RNN_KIND_GRU, RNN_KIND_LSTM };

typedef enum rnn_act {
    ACT_RELU,
    ACT_TANH,
    ACT_SIGMOID,
    ACT_AFFINE,
    ACT_LEAKY_RELU,
    ACT_THRESHOLDED_RELU,
    ACT_SCALED_TANH,
    ACT_HARD_SIGMOID,
    ACT_ELU,
    ACT_SOFTSIGN,
    ACT_SOFTPLUS,
} rnn_act_t;

typedef struct rnn_fn {
    rnn_act_t act;
    double alpha, beta;
} rnn_fn_t;

typedef struct rnn_priv {
    int kind;
    int gates;    /* G: 1, 3 or 4 */
    int n_fn;     /* activations per direction: 1, 2 or 3 */
    int dirs;     /* 1 or 2 */
    int reverse;  /* direction="reverse" (dirs == 1) */
    int layout;   /* 0: [seq, batch, ...]; 1: [batch, seq, ...] */
    int lbr;      /* GRU linear_before_reset */
    int input_forget;
    int has_clip;
    double clip;
    int64_t hidden; /* from the attribute; 0 when absent (taken from R) */
    rnn_fn_t fn[6];
    /* decided by reshape */
    int64_t seq, batch, in, h;
} rnn_priv_t;

static const struct {
    const char *name;
    rnn_act_t act;
    double alpha, beta; /* defaults, as the matching ONNX operators */
    int uses_alpha, uses_beta;
} g_acts[] = {
    {"Relu", ACT_RELU, 0, 0, 0, 0},
    {"Tanh", ACT_TANH, 0, 0, 0, 0},
    {"Sigmoid", ACT_SIGMOID, 0, 0, 0, 0},
    {"Affine", ACT_AFFINE, 1.0, 0.0, 1, 1},
    {"LeakyRelu", ACT_LEAKY_RELU, 0.01, 0, 1, 0},
    {"ThresholdedRelu", ACT_THRESHOLDED_RELU, 1.0, 0, 1, 0},
    {"ScaledTanh", ACT_SCALED_TANH, 1.0, 1.0, 1, 1},
    {"HardSigmoid", ACT_HARD_SIGMOID, 0.2, 0.5, 1, 1},
    {"Elu", ACT_ELU, 1.0, 0, 1, 0},
    {"Softsign", ACT_SOFTSIGN, 0, 0, 0, 0},
    {"Softplus", ACT_SOFTPLUS, 0, 0, 0, 0},
};

static double act_apply(const rnn_fn_t *f, double x)
{
    switch (f->act) {
    case ACT_RELU:
        return x > 0 ? x : 0;
    case ACT_TANH:
        return tanh(x);
    case ACT_SIGMOID:
        return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
    case ACT_AFFINE:
        return f->alpha * x + f->beta;
    case ACT_LEAKY_RELU:
        return x >= 0 ? x : f->alpha * x;
    case ACT_THRESHOLDED_RELU:
        return x > f->alpha ? x : 0;
    case ACT_SCALED_TANH:
        return f->alpha * tanh(f->beta * x);
    case ACT_HARD_SIGMOID: {
        double v = f->alpha * x + f->beta;
        return v < 0 ? 0 : v > 1 ? 1 : v;
    }
    case ACT_ELU:
        return x >= 0 ? x : f->alpha * (exp(x) - 1);
    case ACT_SOFTSIGN:
        return x / (1 + fabs(x));
    case ACT_SOFTPLUS:
        return x > 30 ? x : log1p(exp(x));
    }
    return x;
}

/* Reads activations, activation_alpha and activation_beta into p->fn. The alpha and beta
 * lists are consumed in order by the activations that take that parameter. */
static int read_activations(dab_node_t *node, rnn_priv_t *p, dab_err_t *err)
{
    static const rnn_act_t defaults[3][3] = {
        {ACT_TANH},
        {ACT_SIGMOID, ACT_TANH},
        {ACT_SIGMOID, ACT_TANH, ACT_TANH},
    };
    int total = p->n_fn * p->dirs;
    for (int i = 0; i < total; i++) {
        p->fn[i].act = defaults[p->kind][i % p->n_fn];
        p->fn[i].alpha = p->fn[i].beta = 0;
    }
    const dab_attr_t *a = dab_attr_find(node, "activations");
    if (!a)
        return 0;
    if (a->type != DAB_ATTR_STRINGS)
        return dab_err_set(err, DAB_EINVAL, "attribute activations must be a list of strings");
    if (a->n != total && !(p->dirs == 2 && a->n == p->n_fn))
        return dab_err_set(err, DAB_EINVAL, "attribute activations has %d entries, expected %d",
                           a->n, total);
    const float *alphas = NULL, *betas = NULL;
    int n_alpha = dab_attr_floats(node, "activation_alpha", &alphas);
    int n_beta = dab_attr_floats(node, "activation_beta", &betas);
    int ia = 0, ib = 0;
    for (int i = 0; i < total; i++) {
        const char *s = a->strings[i % a->n];
        size_t k = 0, n_acts = sizeof g_acts / sizeof g_acts[0];
        while (k < n_acts && strcmp(g_acts[k].name, s) != 0)
            k++;
        if (k == n_acts)
            return dab_err_set(err, DAB_EUNSUPPORTED, "activation \"%s\" is not supported", s);
        p->fn[i].act = g_acts[k].act;
        p->fn[i].alpha = g_acts[k].alpha;
        p->fn[i].beta = g_acts[k].beta;
        if (g_acts[k].uses_alpha && ia < n_alpha)
            p->fn[i].alpha = alphas[ia++];
        if (g_acts[k].uses_beta && ib < n_beta)
            p->fn[i].beta = betas[ib++];
    }
    return 0;
}

static int rnn_init(dab_node_t *node, dab_err_t *err)
{
    rnn_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "no memory for the operator state");
    int rc = 0;
    if (!strcmp(node->op_type, "GRU")) {
        p->kind = RNN_KIND_GRU;
        p->gates = 3;
        p->n_fn = 2;
    } else if (!strcmp(node->op_type, "LSTM")) {
        p->kind = RNN_KIND_LSTM;
        p->gates = 4;
        p->n_fn = 3;
    } else {
        p->kind = RNN_KIND_RNN;
        p->gates = 1;
        p->n_fn = 1;
    }
    const char *dir = dab_attr_string(node, "direction", "forward");
    if (!strcmp(dir, "forward")) {
        p->dirs = 1;
    } else if (!strcmp(dir, "reverse")) {
        p->dirs = 1;
        p->reverse = 1;
    } else if (!strcmp(dir, "bidirectional")) {
        p->dirs = 2;
    } else {
        rc = dab_err_set(err, DAB_EINVAL,
                         "attribute direction must be forward, reverse or bidirectional, got "
                         "\"%s\"",
                         dir);
        goto fail;
    }
    int64_t layout = node->opset >= 14 ? dab_attr_int(node, "layout", 0) : 0;
    if (layout != 0 && layout != 1) {
        rc = dab_err_set(err, DAB_EINVAL, "attribute layout must be 0 or 1, got %lld",
                         (long long)layout);
        goto fail;
    }
    p->layout = (int)layout;
    int64_t hs = dab_attr_int(node, "hidden_size", 0);
    if (hs < 0 || hs > INT32_MAX) {
        rc = dab_err_set(err, DAB_EINVAL, "attribute hidden_size = %lld is out of range",
                         (long long)hs);
        goto fail;
    }
    p->hidden = hs;
    const dab_attr_t *clip = dab_attr_find(node, "clip");
    if (clip) {
        if (!(clip->f > 0)) {
            rc = dab_err_set(err, DAB_EINVAL, "attribute clip must be positive, got %g",
                             (double)clip->f);
            goto fail;
        }
        p->has_clip = 1;
        p->clip = clip->f;
    }
    if (p->kind == RNN_KIND_GRU)
        p->lbr = dab_attr_int(node, "linear_before_reset", 0) != 0;
    if (p->kind == RNN_KIND_LSTM)
        p->input_forget = dab_attr_int(node, "input_forget", 0) != 0;
    rc = read_activations(node, p, err);
    if (rc)
        goto fail;
    node->priv = p;
    return 0;
fail:
    dab_free(p);
    return rc;
}

static int check_float(const dab_tensor_t *t, dab_dtype_t dt, const char *what, dab_err_t *err)
{
    if (t->dtype != dt)
        return dab_err_set(err, DAB_ETYPE, "input %s has dtype %s, expected %s like X", what,
                           dab_dtype_name(t->dtype), dab_dtype_name(dt));
    return 0;
}

static int check_dims(const dab_tensor_t *t, const char *what, int rank, const int64_t *dims,
                      dab_err_t *err)
{
    int ok = t->rank == rank;
    for (int i = 0; ok && i < rank; i++)
        ok = t->dims[i] == dims[i];
    if (ok)
        return 0;
    char s[96], e[96];
    dab_tensor_t want = {.rank = rank};
    memcpy(want.dims, dims, (size_t)rank * sizeof *dims);
    return dab_err_set(err, DAB_ESHAPE, "input %s has shape %s, expected %s", what,
                       dab_shape_str(t, s, sizeof s), dab_shape_str(&want, e, sizeof e));
}

/* a * b into *out; 1 on overflow (both non-negative). */
static int mul_ovf(int64_t a, int64_t b, int64_t *out)
{
    return __builtin_mul_overflow(a, b, out) || *out > INT64_MAX / 16;
}

/* Scratch layout, in doubles. */
typedef struct rnn_layout {
    int64_t x, w, r, b, h0, c0, pp, state, total;
    int64_t per_unit; /* per (direction, batch row): h, c, gates, tmp */
} rnn_layout_t;

static int plan(const rnn_priv_t *p, rnn_layout_t *l)
{
    int64_t gh, v, off = 0;
    if (mul_ovf(p->gates, p->h, &gh))
        return -1;
    int64_t sizes[7];
    if (mul_ovf(p->seq, p->batch, &v) || mul_ovf(v, p->in, &sizes[0]))
        return -1;
    if (mul_ovf(p->dirs, gh, &v) || mul_ovf(v, p->in, &sizes[1]) || mul_ovf(v, p->h, &sizes[2]))
        return -1;
    sizes[3] = 2 * v;
    if (mul_ovf(p->dirs, p->batch, &v) || mul_ovf(v, p->h, &sizes[4]))
        return -1;
    sizes[5] = sizes[4];
    sizes[6] = 3 * p->dirs * p->h;
    int64_t *offs[7] = {&l->x, &l->w, &l->r, &l->b, &l->h0, &l->c0, &l->pp};
    for (int i = 0; i < 7; i++) {
        *offs[i] = off;
        if (__builtin_add_overflow(off, sizes[i], &off))
            return -1;
    }
    l->state = off;
    l->per_unit = 3 * p->h + 2 * gh;
    int64_t units;
    if (mul_ovf(p->dirs, p->batch, &units) || mul_ovf(units, l->per_unit, &v) ||
        __builtin_add_overflow(off, v, &off) || off > (int64_t)(SIZE_MAX / 8 / sizeof(double)))
        return -1;
    l->total = off;
    return 0;
}

static int rnn_reshape(dab_node_t *node, dab_err_t *err)
{
    rnn_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0], *w = node->inputs[1], *r = node->inputs[2];
    if (x->dtype != DAB_DT_FLOAT && x->dtype != DAB_DT_DOUBLE)
        return dab_err_set(err, DAB_EUNSUPPORTED,
                           "input X has dtype %s (float and double are supported)",
                           dab_dtype_name(x->dtype));
    int rc;
    if ((rc = check_float(w, x->dtype, "W", err)) || (rc = check_float(r, x->dtype, "R", err)))
        return rc;
    if (x->rank != 3)
        return dab_err_set(err, DAB_ESHAPE, "input X must have rank 3, got %d", x->rank);
    p->seq = x->dims[p->layout ? 1 : 0];
    p->batch = x->dims[p->layout ? 0 : 1];
    p->in = x->dims[2];
    if (r->rank != 3)
        return dab_err_set(err, DAB_ESHAPE, "input R must have rank 3, got %d", r->rank);
    p->h = p->hidden ? p->hidden : r->dims[2];
    int64_t gh = p->gates * p->h, dirs = p->dirs;
    int64_t dw[3] = {dirs, gh, p->in}, dr[3] = {dirs, gh, p->h};
    if ((rc = check_dims(w, "W", 3, dw, err)) || (rc = check_dims(r, "R", 3, dr, err)))
        return rc;
    const dab_tensor_t *b = node->n_inputs > 3 ? node->inputs[3] : NULL;
    const dab_tensor_t *sl = node->n_inputs > 4 ? node->inputs[4] : NULL;
    const dab_tensor_t *h0 = node->n_inputs > 5 ? node->inputs[5] : NULL;
    const dab_tensor_t *c0 = node->n_inputs > 6 ? node->inputs[6] : NULL;
    const dab_tensor_t *pp = node->n_inputs > 7 ? node->inputs[7] : NULL;
    int64_t db[2] = {dirs, 2 * gh}, dp[2] = {dirs, 3 * p->h};
    int64_t dh[3] = {p->layout ? p->batch : dirs, p->layout ? dirs : p->batch, p->h};
    if (b && ((rc = check_float(b, x->dtype, "B", err)) || (rc = check_dims(b, "B", 2, db, err))))
        return rc;
    if (h0 && ((rc = check_float(h0, x->dtype, "initial_h", err)) ||
               (rc = check_dims(h0, "initial_h", 3, dh, err))))
        return rc;
    if (c0 && ((rc = check_float(c0, x->dtype, "initial_c", err)) ||
               (rc = check_dims(c0, "initial_c", 3, dh, err))))
        return rc;
    if (pp && ((rc = check_float(pp, x->dtype, "P", err)) || (rc = check_dims(pp, "P", 2, dp, err))))
        return rc;
    if (sl) {
        if (sl->dtype != DAB_DT_INT32)
            return dab_err_set(err, DAB_ETYPE, "input sequence_lens must be int32, got %s",
                               dab_dtype_name(sl->dtype));
        if (sl->rank != 1 || sl->dims[0] != p->batch)
            return dab_err_set(err, DAB_ESHAPE,
                               "input sequence_lens must be [batch_size] = [%lld]",
                               (long long)p->batch);
        const int32_t *lens = sl->data;
        for (int64_t i = 0; i < p->batch; i++)
            if (lens[i] < 0 || lens[i] > p->seq)
                return dab_err_set(err, DAB_EINVAL,
                                   "sequence_lens[%lld] = %d is outside [0, %lld]", (long long)i,
                                   (int)lens[i], (long long)p->seq);
    }
    rnn_layout_t l;
    if (plan(p, &l))
        return dab_err_set(err, DAB_ELIMIT, "the recurrence's sizes overflow");
    node->scratch_bytes = (size_t)l.total * sizeof(double);
    if (node->outputs[0]) {
        int64_t dy[4] = {p->seq, dirs, p->batch, p->h};
        if (p->layout) {
            dy[0] = p->batch;
            dy[1] = p->seq;
            dy[2] = dirs;
        }
        dab_tensor_set_shape(node->outputs[0], x->dtype, 4, dy);
    }
    for (int i = 1; i < node->n_outputs; i++)
        if (node->outputs[i])
            dab_tensor_set_shape(node->outputs[i], x->dtype, 3, dh);
    return 0;
}

static void widen(const dab_tensor_t *t, double *dst, int64_t n)
{
    if (!t) {
        memset(dst, 0, (size_t)n * sizeof *dst);
    } else if (t->dtype == DAB_DT_DOUBLE) {
        memcpy(dst, t->data, (size_t)n * sizeof *dst);
    } else {
        const float *s = t->data;
        for (int64_t i = 0; i < n; i++)
            dst[i] = s[i];
    }
}

static void put(dab_tensor_t *t, int64_t i, double v)
{
    if (t->dtype == DAB_DT_DOUBLE)
        ((double *)t->data)[i] = v;
    else
        ((float *)t->data)[i] = (float)v;
}

static inline double clip(const rnn_priv_t *p, double v)
{
    if (!p->has_clip)
        return v;
    return v < -p->clip ? -p->clip : v > p->clip ? p->clip : v;
}

/* out[j] = bias[j] + sum_k m[j, k] * v[k] for j < rows. */
static void matvec(int64_t rows, int64_t cols, const double *m, const double *v,
                   const double *bias, double *out)
{
    for (int64_t j = 0; j < rows; j++) {
        const double *row = m + j * cols;
        double s = 0;
        for (int64_t k = 0; k < cols; k++)
            s += row[k] * v[k];
        out[j] = bias[j] + s;
    }
}

typedef struct rnn_args {
    const rnn_priv_t *p;
    const rnn_layout_t *l;
    const double *base;
    const int32_t *lens;
} rnn_args_t;

/* Runs direction d over batch row b; returns through state h (and c) the final state and
 * writes Y (when y is not NULL). */
static void run_unit(const rnn_args_t *a, double *unit, int64_t d, int64_t b, dab_tensor_t *y)
{
    const rnn_priv_t *p = a->p;
    const rnn_layout_t *l = a->l;
    int64_t H = p->h, G = p->gates, I = p->in, S = p->seq, B = p->batch, D = p->dirs;
    const double *W = a->base + l->w + d * G * H * I, *R = a->base + l->r + d * G * H * H;
    const double *Wb = a->base + l->b + d * 2 * G * H, *Rb = Wb + G * H;
    const double *P = a->base + l->pp + d * 3 * H;
    const rnn_fn_t *fn = p->fn + d * p->n_fn;
    double *h = unit, *c = h + H, *tmp = c + H, *gx = tmp + H, *gr = gx + G * H;
    /* initial_h/c were widened in their own layout */
    int64_t h0 = p->layout ? (b * D + d) * H : (d * B + b) * H;
    memcpy(h, a->base + l->h0 + h0, (size_t)H * sizeof *h);
    memcpy(c, a->base + l->c0 + h0, (size_t)H * sizeof *c);
    int64_t len = a->lens ? a->lens[b] : S;
    int rev = p->reverse || d == 1;
    for (int64_t step = 0; step < len; step++) {
        int64_t t = rev ? len - 1 - step : step;
        const double *xt = a->base + l->x + (p->layout ? (b * S + t) * I : (t * B + b) * I);
        matvec(G * H, I, W, xt, Wb, gx);
        if (p->kind == RNN_KIND_RNN) {
            matvec(H, H, R, h, Rb, gr);
            for (int64_t j = 0; j < H; j++)
                h[j] = act_apply(&fn[0], clip(p, gx[j] + gr[j]));
        } else if (p->kind == RNN_KIND_GRU) {
            /* z and r from the full R; the h gate's recurrent term depends on r first */
            matvec(2 * H, H, R, h, Rb, gr);
            double *z = gx, *rg = gx + H, *hx = gx + 2 * H;
            for (int64_t j = 0; j < 2 * H; j++)
                gx[j] = act_apply(&fn[0], clip(p, gx[j] + gr[j]));
            const double *Rh = R + 2 * H * H, *Rbh = Rb + 2 * H;
            if (p->lbr) {
                matvec(H, H, Rh, h, Rbh, tmp);
                for (int64_t j = 0; j < H; j++)
                    hx[j] = act_apply(&fn[1], clip(p, hx[j] + rg[j] * tmp[j]));
            } else {
                for (int64_t j = 0; j < H; j++)
                    tmp[j] = rg[j] * h[j];
                matvec(H, H, Rh, tmp, Rbh, gr);
                for (int64_t j = 0; j < H; j++)
                    hx[j] = act_apply(&fn[1], clip(p, hx[j] + gr[j]));
            }
            for (int64_t j = 0; j < H; j++)
                h[j] = (1 - z[j]) * hx[j] + z[j] * h[j];
        } else {
            matvec(G * H, H, R, h, Rb, gr);
            double *gi = gx, *go = gx + H, *gf = gx + 2 * H, *gc = gx + 3 * H;
            const double *ri = gr, *ro = gr + H, *rf = gr + 2 * H, *rc = gr + 3 * H;
            for (int64_t j = 0; j < H; j++) {
                double i_ = act_apply(&fn[0], clip(p, gi[j] + ri[j] + P[j] * c[j]));
                double f_ = p->input_forget
                                ? 1 - i_
                                : act_apply(&fn[0], clip(p, gf[j] + rf[j] + P[2 * H + j] * c[j]));
                double c_ = act_apply(&fn[1], clip(p, gc[j] + rc[j]));
                c[j] = f_ * c[j] + i_ * c_;
                double o_ = act_apply(&fn[0], clip(p, go[j] + ro[j] + P[H + j] * c[j]));
                h[j] = o_ * act_apply(&fn[2], c[j]);
            }
        }
        if (y) {
            int64_t o = p->layout ? ((b * S + t) * D + d) * H : ((t * D + d) * B + b) * H;
            for (int64_t j = 0; j < H; j++)
                put(y, o + j, h[j]);
        }
    }
    if (y)
        for (int64_t t = len; t < S; t++) {
            int64_t o = p->layout ? ((b * S + t) * D + d) * H : ((t * D + d) * B + b) * H;
            for (int64_t j = 0; j < H; j++)
                put(y, o + j, 0);
        }
}

static int rnn_compute(dab_node_t *node, dab_err_t *err)
{
    const rnn_priv_t *p = node->priv;
    rnn_layout_t l;
    if (plan(p, &l))
        return dab_err_set(err, DAB_ELIMIT, "the recurrence's sizes overflow");
    double *base = node->scratch;
    int64_t H = p->h, G = p->gates, D = p->dirs;
    const dab_tensor_t *in[8] = {0};
    for (int i = 0; i < node->n_inputs && i < 8; i++)
        in[i] = node->inputs[i];
    widen(in[0], base + l.x, p->seq * p->batch * p->in);
    widen(in[1], base + l.w, D * G * H * p->in);
    widen(in[2], base + l.r, D * G * H * H);
    widen(in[3], base + l.b, D * 2 * G * H);
    widen(in[5], base + l.h0, D * p->batch * H);
    widen(in[6], base + l.c0, D * p->batch * H);
    widen(in[7], base + l.pp, D * 3 * H);
    rnn_args_t a = {p, &l, base, in[4] ? (const int32_t *)in[4]->data : NULL};
    dab_tensor_t *y = node->outputs[0];
    dab_tensor_t *yh = node->n_outputs > 1 ? node->outputs[1] : NULL;
    dab_tensor_t *yc = node->n_outputs > 2 ? node->outputs[2] : NULL;
    int64_t units = D * p->batch;
    int nt = dab_par_threads(node->ctx, units * p->seq * G * H * (H + p->in));
    if (nt > units)
        nt = (int)units;
    DAB_PAR_FOR(nt, int64_t, u, units, {
        int64_t d = u / p->batch, b = u % p->batch;
        double *unit = base + l.state + u * l.per_unit;
        run_unit(&a, unit, d, b, y);
        int64_t o = p->layout ? (b * D + d) * H : (d * p->batch + b) * H;
        for (int64_t j = 0; j < H; j++) {
            if (yh)
                put(yh, o + j, unit[j]);
            if (yc)
                put(yc, o + j, unit[H + j]);
        }
    });
    return 0;
}

#define T_FLOATS DAB_DTM_FLOATS

const dab_op_def_t dab_ops_rnn[] = {
    {"", "RNN", 7, 0, T_FLOATS, 0, 3, 6, 0, 2, rnn_init, rnn_reshape, rnn_compute,
     dab_op_free_priv},
    {"", "GRU", 7, 0, T_FLOATS, 0, 3, 6, 0, 2, rnn_init, rnn_reshape, rnn_compute,
     dab_op_free_priv},
    {"", "LSTM", 7, 0, T_FLOATS, 0, 3, 8, 0, 3, rnn_init, rnn_reshape, rnn_compute,
     dab_op_free_priv},
    {0},
};
