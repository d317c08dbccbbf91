/*
 * nn_norm.c - BatchNormalization, opsets 1 to 15+.
 *
 * Inference folds the statistics into a per-channel scale and shift (computed in double,
 * in scratch, on each run: O(C)) and applies y = x * scale + shift. Older opsets' spatial=0
 * gives statistics per (channel, position) instead. Training mode (opset 14+'s
 * training_mode=1, or an older node asking for the mean/var outputs) normalizes with the
 * batch's own statistics and writes running_mean/var = input * momentum + batch * (1 -
 * momentum), plus saved mean/var for opsets before 14.
 */
#include "nn_int.h"

#include <math.h>
#include <string.h>

typedef struct bn_priv {
    double eps, momentum;
    int spatial;  /* 0: statistics per (channel, position), opsets < 9 */
    int training; /* batch statistics and running outputs */
    /* decided by reshape */
    int64_t n, c, sp, params; /* params = c or c * sp */
} bn_priv_t;

int dab_nn_bn_init(dab_node_t *node, dab_err_t *err)
{
    bn_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "no memory for the operator state");
    p->eps = dab_attr_float(node, "epsilon", 1e-5f);
    p->momentum = dab_attr_float(node, "momentum", 0.9f);
    p->spatial = node->opset < 9 ? (int)dab_attr_int(node, "spatial", 1) != 0 : 1;
    if (node->opset >= 14) {
        int64_t tm = dab_attr_int(node, "training_mode", 0);
        if (tm != 0 && tm != 1) {
            dab_free(p);
            return dab_err_set(err, DAB_EINVAL, "attribute training_mode must be 0 or 1, got %lld",
                               (long long)tm);
        }
        p->training = (int)tm;
    } else {
        int is_test = (int)dab_attr_int(node, "is_test", 0);
        p->training = !is_test && node->n_outputs > 1 && node->outputs[1];
    }
    node->priv = p;
    return 0;
}

static const char *const g_param_names[] = {"scale", "B", "input_mean", "input_var"};

int dab_nn_bn_reshape(dab_node_t *node, dab_err_t *err)
{
    bn_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    if (x->rank < 2)
        return dab_err_set(err, DAB_ESHAPE, "input X must be [N, C, ...], got rank %d", x->rank);
    p->n = x->dims[0];
    p->c = x->dims[1];
    p->sp = 1;
    for (int i = 2; i < x->rank; i++)
        p->sp *= x->dims[i];
    p->params = p->c;
    int per_elem = 0;
    for (int i = 1; i <= 4; i++) {
        const dab_tensor_t *t = node->inputs[i];
        if (!t)
            return dab_err_set(err, DAB_EINVAL, "input %s is required", g_param_names[i - 1]);
        if (t->dtype != DAB_DT_FLOAT && t->dtype != DAB_DT_DOUBLE)
            return dab_err_set(err, DAB_EUNSUPPORTED,
                               "input %s has dtype %s (float and double "
                               "are supported)",
                               g_param_names[i - 1], dab_dtype_name(t->dtype));
        int64_t cnt = dab_tensor_numel(t);
        if (cnt == p->c && (t->rank == 1 || p->spatial))
            continue;
        if (!p->spatial && cnt == p->c * p->sp && p->sp != 1) {
            per_elem = 1;
            continue;
        }
        char s[96];
        return dab_err_set(err, DAB_ESHAPE, "input %s %s does not match %lld channels",
                           g_param_names[i - 1], dab_shape_str(t, s, sizeof s), (long long)p->c);
    }
    if (per_elem) {
        for (int i = 1; i <= 4; i++)
            if (dab_tensor_numel(node->inputs[i]) != p->c * p->sp)
                return dab_err_set(err, DAB_ESHAPE,
                                   "with spatial=0 every statistic must be [C, "
                                   "spatial...], %s is not",
                                   g_param_names[i - 1]);
        if (p->training)
            return dab_err_set(err, DAB_EUNSUPPORTED, "training with spatial=0 is not supported");
        p->params = p->c * p->sp;
    }
    dab_tensor_set_shape(node->outputs[0], x->dtype, x->rank, x->dims);
    for (int i = 1; i < node->n_outputs; i++) {
        dab_tensor_t *o = node->outputs[i];
        if (!o)
            continue;
        if (!p->training)
            return dab_err_set(err, DAB_EUNSUPPORTED, "output %d is only produced in training mode",
                               i);
        const dab_tensor_t *like = node->inputs[i == 2 || i == 4 ? 4 : 3];
        int64_t c = p->c;
        dab_tensor_set_shape(o, like->dtype, 1, &c);
    }
    /* scale and shift per parameter, then batch mean and variance per channel */
    node->scratch_bytes = (size_t)(2 * p->params + 2 * p->c) * sizeof(double);
    return 0;
}

static double param_at(const dab_tensor_t *t, int64_t i)
{
    return t->dtype == DAB_DT_DOUBLE ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

static void param_put(dab_tensor_t *t, int64_t i, double v)
{
    if (t->dtype == DAB_DT_DOUBLE)
        ((double *)t->data)[i] = v;
    else
        ((float *)t->data)[i] = (float)v;
}

int dab_nn_bn_compute(dab_node_t *node, dab_err_t *err)
{
    bn_priv_t *p = node->priv;
    const dab_tensor_t *x = node->inputs[0];
    const dab_tensor_t *sc = node->inputs[1], *bi = node->inputs[2];
    const dab_tensor_t *mean = node->inputs[3], *var = node->inputs[4];
    double *a = node->scratch, *b = a + p->params, *bm = b + p->params, *bv = bm + p->c;
    int nt = dab_par_threads(node->ctx, dab_tensor_numel(x));
    if (p->training) {
        int rc = dab_ref_channel_moments(x->dtype, p->n, p->c, p->sp, x->data, bm, bv, nt);
        if (rc)
            return dab_err_set(err, rc, "dtype %s is not supported", dab_dtype_name(x->dtype));
        for (int64_t c = 0; c < p->c; c++) {
            double m = p->momentum;
            if (node->outputs[1])
                param_put(node->outputs[1], c, param_at(mean, c) * m + bm[c] * (1 - m));
            if (node->n_outputs > 2 && node->outputs[2])
                param_put(node->outputs[2], c, param_at(var, c) * m + bv[c] * (1 - m));
            if (node->n_outputs > 3 && node->outputs[3])
                param_put(node->outputs[3], c, bm[c]);
            if (node->n_outputs > 4 && node->outputs[4])
                param_put(node->outputs[4], c, bv[c]);
        }
    }
    for (int64_t i = 0; i < p->params; i++) {
        double m = p->training ? bm[i] : param_at(mean, i);
        double v = p->training ? bv[i] : param_at(var, i);
        a[i] = param_at(sc, i) / sqrt(v + p->eps);
        b[i] = param_at(bi, i) - m * a[i];
    }
    int rc = dab_ref_channel_affine(x->dtype, p->n, p->c, p->sp, p->params != p->c, x->data, a, b,
                                    node->outputs[0]->data, nt);
    if (rc)
        return dab_err_set(err, rc, "dtype %s is not supported", dab_dtype_name(x->dtype));
    return 0;
}
