/*
 * optimize_fuse.c - pattern fusions run at level "all": several nodes replaced by one
 * that computes the same thing in a single pass over memory.
 *
 * A fusion only fires when the intermediate values it swallows are read by nothing
 * else (use count 1) and are not pinned (graph outputs, names subgraphs read), so the
 * rest of the graph cannot tell. The fused node writes the last node's output value,
 * which keeps its name.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "optimize_int.h"

/* Value v may disappear into a fusion: one reader, not pinned. */
static bool private_value(const dab_graph_t *g, const int *uses, int v)
{
    return v >= 0 && uses[v] == 1 && !dab_opt_pinned(g, v);
}

static const dab_attr_t *gattr(const dab_gnode_t *node, const char *name)
{
    for (int a = 0; a < node->n_attrs; a++)
        if (!strcmp(node->attrs[a].name, name))
            return &node->attrs[a];
    return NULL;
}

static float gattr_float(const dab_gnode_t *node, const char *name, float def)
{
    const dab_attr_t *a = gattr(node, name);
    return a && a->type == DAB_ATTR_FLOAT ? a->f : def;
}

static int64_t gattr_int(const dab_gnode_t *node, const char *name, int64_t def)
{
    const dab_attr_t *a = gattr(node, name);
    return a && a->type == DAB_ATTR_INT ? a->i : def;
}

/* ---- BatchNormalization into a preceding Conv or Gemm ---- */

/*
 * Inference-mode BatchNormalization is y = x * s + (bias - mean * s) per channel with
 * s = scale / sqrt(var + eps). After Conv (channel = output channel m) or Gemm (channel
 * = column m) it folds into the weights: W'[m, ...] = W[m, ...] * s[m], and the bias
 * B'[m] = (B[m] - mean[m]) * s[m] + bias[m]. Returns 1 when fused, 0 when not, ENOMEM.
 */
static int fold_bn(dab_graph_t *g, const int *uses, const int *ranks, int bn,
                   bool *removed)
{
    dab_gnode_t *bnode = &g->nodes[bn];
    if (bnode->n_inputs != 5 || bnode->inputs[0] < 0 || bnode->n_outputs < 1 ||
        bnode->outputs[0] < 0)
        return 0;
    for (int k = 1; k < bnode->n_outputs; k++)
        if (bnode->outputs[k] >= 0)
            return 0; /* training outputs: batch statistics */
    if (gattr_int(bnode, "training_mode", 0) != 0 ||
        (bnode->opset < 9 && gattr_int(bnode, "spatial", 1) == 0))
        return 0;
    int x = bnode->inputs[0];
    int p = g->values[x].producer;
    if (p < 0 || removed[p] || !private_value(g, uses, x))
        return 0;
    bool conv = dab_opt_is(g, p, "Conv"), gemm = dab_opt_is(g, p, "Gemm");
    if (!conv && !gemm)
        return 0;
    const dab_gnode_t *pn = &g->nodes[p];
    if (pn->n_outputs != 1 || pn->n_inputs < 2 || pn->inputs[0] < 0)
        return 0;
    int64_t nw, nb = 0, n_par[4];
    const float *w = dab_opt_const_f32(g, pn->inputs[1], &nw);
    const float *b = pn->n_inputs > 2 && pn->inputs[2] >= 0
                         ? dab_opt_const_f32(g, pn->inputs[2], &nb)
                         : NULL;
    if (!w || (pn->n_inputs > 2 && pn->inputs[2] >= 0 && !b))
        return 0;
    const float *par[4];
    for (int i = 0; i < 4; i++)
        if (!(par[i] = dab_opt_const_f32(g, bnode->inputs[1 + i], &n_par[i])))
            return 0;
    const dab_tensor_t *wt = g->values[pn->inputs[1]].const_data;
    int64_t m, inner, outer = 1;
    bool cols = false; /* Gemm without transB: channel m is B's column */
    if (conv) {
        if (wt->rank < 3)
            return 0;
        m = wt->dims[0];
        inner = nw / (m ? m : 1);
    } else {
        /* the folded bias becomes C, so beta must leave it as it is */
        if (wt->rank != 2 || gattr_float(pn, "alpha", 1) != 1.0f ||
            gattr_float(pn, "beta", 1) != 1.0f || gattr_int(pn, "transA", 0) != 0)
            return 0;
        if (gattr_int(pn, "transB", 0)) {
            m = wt->dims[0];
            inner = wt->dims[1];
        } else {
            cols = true;
            outer = wt->dims[0];
            m = wt->dims[1];
            inner = 1;
        }
    }
    for (int i = 0; i < 4; i++)
        if (n_par[i] != m)
            return 0;
    if (b && nb != m) /* a broadcast Gemm C other than one per column is left alone */
        return 0;
    if (b && gemm && g->values[pn->inputs[2]].const_data->rank != 1)
        return 0;
    float eps = gattr_float(bnode, "epsilon", 1e-5f);
    float *nw_data = dab_malloc((size_t)nw * sizeof *nw_data + 1);
    float *nb_data = dab_malloc((size_t)m * sizeof *nb_data + 1);
    float *s = dab_malloc((size_t)m * sizeof *s + 1);
    int rc = DAB_ENOMEM;
    if (!nw_data || !nb_data || !s)
        goto done;
    for (int64_t c = 0; c < m; c++) {
        double sc = (double)par[0][c] / sqrt((double)par[3][c] + (double)eps);
        s[c] = (float)sc;
        nb_data[c] = (float)(((b ? (double)b[c] : 0.0) - (double)par[2][c]) * sc + par[1][c]);
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t c = 0; c < m; c++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t at = cols ? o * m + c : c * inner + i;
                nw_data[at] = w[at] * s[c];
            }
    char base[512];
    snprintf(base, sizeof base, "%s_bnfold", g->values[pn->inputs[1]].name);
    int wv = dab_opt_new_const_f32(g, base, wt->rank, wt->dims, nw_data);
    if (wv < 0)
        goto done;
    snprintf(base, sizeof base, "%s_bnfold_bias", g->values[pn->inputs[1]].name);
    int64_t bdims[1] = {m};
    int bv = dab_opt_new_const_f32(g, base, 1, bdims, nb_data);
    if (bv < 0)
        goto done;
    dab_gnode_t *prod = &g->nodes[p];
    if (prod->n_inputs < 3) {
        int *ni = dab_realloc(prod->inputs, 4 * sizeof *ni);
        if (!ni)
            goto done;
        prod->inputs = ni;
        prod->n_inputs = 3;
    }
    prod->inputs[1] = wv;
    prod->inputs[2] = bv;
    prod->outputs[0] = g->nodes[bn].outputs[0];
    removed[bn] = true;
    rc = 1;
done:
    dab_free(nw_data);
    dab_free(nb_data);
    dab_free(s);
    return rc;
}

/* ---- activations into Conv, Gemm and MatMul ---- */

/* The fusable activation node n computes, in *act; false when it is none of them or
 * its parameters are not constants. */
static bool activation_of(const dab_graph_t *g, int n, dab_act_t *act)
{
    const dab_gnode_t *node = &g->nodes[n];
    memset(act, 0, sizeof *act);
    if (node->n_inputs < 1 || node->inputs[0] < 0 || node->n_outputs != 1 ||
        node->outputs[0] < 0 || !node->op)
        return false;
    if (dab_opt_is(g, n, "Relu")) {
        act->kind = DAB_ACT_RELU;
    } else if (dab_opt_is(g, n, "LeakyRelu")) {
        act->kind = DAB_ACT_RELU;
        act->alpha = gattr_float(node, "alpha", 0.01f);
    } else if (dab_opt_is(g, n, "Sigmoid")) {
        act->kind = DAB_ACT_SIGMOID;
    } else if (dab_opt_is(g, n, "Tanh")) {
        act->kind = DAB_ACT_TANH;
    } else if (dab_opt_is(g, n, "HardSwish")) {
        act->kind = DAB_ACT_HARDSWISH;
    } else if (dab_opt_is(g, n, "Gelu")) {
        const dab_attr_t *a = gattr(node, "approximate");
        if (a && a->type != DAB_ATTR_STRING)
            return false;
        if (!a || !strcmp(a->s, "none"))
            act->kind = DAB_ACT_GELU_ERF;
        else if (!strcmp(a->s, "tanh"))
            act->kind = DAB_ACT_GELU_TANH;
        else
            return false;
    } else if (dab_opt_is(g, n, "Clip")) {
        act->kind = DAB_ACT_CLIP;
        act->alpha = -FLT_MAX;
        act->beta = FLT_MAX;
        if (node->opset < 11) {
            act->alpha = gattr_float(node, "min", -FLT_MAX);
            act->beta = gattr_float(node, "max", FLT_MAX);
        } else {
            for (int k = 1; k < node->n_inputs && k < 3; k++) {
                int64_t cnt;
                if (node->inputs[k] < 0)
                    continue;
                const float *v = dab_opt_const_f32(g, node->inputs[k], &cnt);
                if (!v || cnt != 1)
                    return false;
                *(k == 1 ? &act->alpha : &act->beta) = v[0];
            }
        }
        if (!(act->alpha <= act->beta)) /* ONNX gives max everywhere then; keep the node */
            return false;
    } else {
        return false;
    }
    return true;
}

/* True when node p's output is float32: its weights are float constants or an input is
 * declared float (fused activations are only implemented for floating point). */
static bool float_product(const dab_graph_t *g, int p)
{
    const dab_gnode_t *pn = &g->nodes[p];
    int64_t cnt;
    if (pn->n_inputs >= 2 && dab_opt_const_f32(g, pn->inputs[1], &cnt))
        return true;
    for (int k = 0; k < pn->n_inputs && k < 2; k++)
        if (pn->inputs[k] >= 0 && g->values[pn->inputs[k]].dtype == DAB_DT_FLOAT)
            return true;
    return false;
}

static int fuse_activation(dab_graph_t *g, const int *uses, const int *ranks, int n,
                           bool *removed)
{
    dab_act_t act;
    if (!activation_of(g, n, &act))
        return 0;
    int x = g->nodes[n].inputs[0];
    int p = g->values[x].producer;
    if (p < 0 || removed[p] || !private_value(g, uses, x))
        return 0;
    if (!dab_opt_is(g, p, "Conv") && !dab_opt_is(g, p, "Gemm") && !dab_opt_is(g, p, "MatMul"))
        return 0;
    dab_gnode_t *pn = &g->nodes[p];
    if (pn->n_outputs != 1 || gattr(pn, DAB_ATTR_FUSED_ACT) || !float_product(g, p))
        return 0;
    dab_attr_t *attrs = dab_realloc(pn->attrs, ((size_t)pn->n_attrs + 4) * sizeof *attrs);
    if (!attrs)
        return DAB_ENOMEM;
    pn->attrs = attrs;
    dab_opt_attr_int(g, p, DAB_ATTR_FUSED_ACT, act.kind);
    dab_opt_attr_float(g, p, DAB_ATTR_FUSED_ALPHA, act.alpha);
    dab_opt_attr_float(g, p, DAB_ATTR_FUSED_BETA, act.beta);
    pn->outputs[0] = g->nodes[n].outputs[0];
    removed[n] = true;
    return 1;
}

/* ---- subgraphs exporters emit for LayerNormalization and Gelu ---- */

/* The only node reading v when v is private (else -1). */
static int sole_reader(const dab_graph_t *g, const int *uses, int v)
{
    if (!private_value(g, uses, v))
        return -1;
    for (int n = 0; n < g->n_nodes; n++)
        for (int k = 0; k < g->nodes[n].n_inputs; k++)
            if (g->nodes[n].inputs[k] == v)
                return n;
    return -1;
}

/* True when v is a float constant holding one value (any rank), stored in *f. */
static bool const_scalar(const dab_graph_t *g, int v, float *f)
{
    int64_t cnt;
    const float *d = dab_opt_const_f32(g, v, &cnt);
    if (!d || cnt != 1)
        return false;
    *f = d[0];
    return true;
}

/* For a two-input node n reading v, the other input (-1 when n does not read v once). */
static int other_input(const dab_graph_t *g, int n, int v)
{
    const dab_gnode_t *node = &g->nodes[n];
    if (node->n_inputs != 2 || node->outputs[0] < 0)
        return -1;
    if (node->inputs[0] == v && node->inputs[1] != v)
        return node->inputs[1];
    if (node->inputs[1] == v && node->inputs[0] != v)
        return node->inputs[0];
    return -1;
}

/* Node n is `op` with one input v and a scalar constant other input near want. */
static bool binary_const(const dab_graph_t *g, int n, const char *op, int v, float want)
{
    float f;
    if (n < 0 || !dab_opt_is(g, n, op))
        return false;
    int o = other_input(g, n, v);
    if (o < 0 || !const_scalar(g, o, &f))
        return false;
    if (!strcmp(op, "Div") || !strcmp(op, "Sub") || !strcmp(op, "Pow"))
        if (g->nodes[n].inputs[0] != v) /* not commutative: v must come first */
            return false;
    return fabsf(f - want) <= 1e-4f * fabsf(want);
}

/* Node n is a ReduceMean over the last axis only, keeping dims, reading v. */
static bool mean_last_axis(const dab_graph_t *g, int n, int v)
{
    if (n < 0 || !dab_opt_is(g, n, "ReduceMean"))
        return false;
    const dab_gnode_t *node = &g->nodes[n];
    if (node->n_inputs < 1 || node->inputs[0] != v || gattr_int(node, "keepdims", 1) != 1)
        return false;
    const int64_t *axes = NULL;
    int64_t n_axes = 0;
    const dab_attr_t *a = gattr(node, "axes");
    if (a && a->type == DAB_ATTR_INTS) {
        axes = a->ints;
        n_axes = a->n;
    } else if (node->n_inputs >= 2 && node->inputs[1] >= 0) {
        const dab_tensor_t *t = g->values[node->inputs[1]].const_data;
        if (!t || g->values[node->inputs[1]].is_input || t->dtype != DAB_DT_INT64)
            return false;
        axes = t->data;
        n_axes = dab_tensor_numel(t);
    }
    int rank = g->values[v].rank;
    return n_axes == 1 && (axes[0] == -1 || (rank > 0 && axes[0] == rank - 1));
}

/* Makes the fused node: ai.onnx op at a fixed opset, reading ins and writing out. */
static int fused_node(dab_graph_t *g, const char *op, int opset, const char *name, int n_in,
                      const int *ins, int out, int max_attrs)
{
    int n = dab_opt_new_node(g, op, name, n_in, ins, 1, &out, max_attrs);
    if (n < 0)
        return n;
    g->nodes[n].opset = opset;
    g->nodes[n].flags |= DAB_GNODE_OPSET_FIXED;
    return n;
}

/*
 * torch's LayerNorm at opset <= 16, anchored at the Sub:
 *   mean = ReduceMean(x, [-1]); d = Sub(x, mean); var = ReduceMean(Pow(d, 2), [-1])
 *   y = Add(Mul(Div(d, Sqrt(Add(var, eps))), gamma), beta)
 * becomes LayerNormalization(x, gamma, beta, axis = -1, epsilon = eps).
 */
static int fuse_layernorm(dab_graph_t *g, const int *uses, const int *ranks, int sub,
                          bool *removed)
{
    const dab_gnode_t *sn = &g->nodes[sub];
    if (sn->n_inputs != 2 || sn->outputs[0] < 0)
        return 0;
    int x = sn->inputs[0], mean = sn->inputs[1], d = sn->outputs[0];
    int rm1 = g->values[mean].producer;
    if (rm1 < 0 || !mean_last_axis(g, rm1, x) || !private_value(g, uses, mean))
        return 0;
    /* d is read twice: by the square and by the division */
    if (uses[d] != 2 || dab_opt_pinned(g, d))
        return 0;
    int sq = -1, div = -1;
    for (int n = 0; n < g->n_nodes; n++)
        for (int k = 0; k < g->nodes[n].n_inputs; k++)
            if (g->nodes[n].inputs[k] == d) {
                if (dab_opt_is(g, n, "Div") && k == 0)
                    div = n;
                else if (binary_const(g, n, "Pow", d, 2.0f))
                    sq = n;
            }
    if (sq < 0 || div < 0)
        return 0;
    int rm2 = sole_reader(g, uses, g->nodes[sq].outputs[0]);
    if (!mean_last_axis(g, rm2, g->nodes[sq].outputs[0]))
        return 0;
    int var = g->nodes[rm2].outputs[0];
    int add_eps = sole_reader(g, uses, var);
    float eps;
    if (add_eps < 0 || !dab_opt_is(g, add_eps, "Add") || other_input(g, add_eps, var) < 0 ||
        !const_scalar(g, other_input(g, add_eps, var), &eps) || !(eps >= 0))
        return 0;
    int sqrt_n = sole_reader(g, uses, g->nodes[add_eps].outputs[0]);
    if (sqrt_n < 0 || !dab_opt_is(g, sqrt_n, "Sqrt") ||
        sole_reader(g, uses, g->nodes[sqrt_n].outputs[0]) != div ||
        g->nodes[div].inputs[1] != g->nodes[sqrt_n].outputs[0])
        return 0;
    int mul = sole_reader(g, uses, g->nodes[div].outputs[0]);
    if (mul < 0 || !dab_opt_is(g, mul, "Mul"))
        return 0;
    int gamma = other_input(g, mul, g->nodes[div].outputs[0]);
    int add = sole_reader(g, uses, g->nodes[mul].outputs[0]);
    if (add < 0 || !dab_opt_is(g, add, "Add"))
        return 0;
    int beta = other_input(g, add, g->nodes[mul].outputs[0]);
    int64_t ng, nb;
    if (gamma < 0 || beta < 0 || !dab_opt_const_f32(g, gamma, &ng) ||
        !dab_opt_const_f32(g, beta, &nb) || g->values[gamma].const_data->rank != 1 ||
        g->values[beta].const_data->rank != 1 || ng != nb)
        return 0;
    int x_rank = g->values[x].rank;
    if (x_rank > 0 && g->values[x].dims[x_rank - 1] >= 0 && g->values[x].dims[x_rank - 1] != ng)
        return 0;
    const int nodes[9] = {rm1, sub, sq, rm2, add_eps, sqrt_n, div, mul, add};
    int ins[3] = {x, gamma, beta};
    int y = g->nodes[add].outputs[0];
    char name[256];
    snprintf(name, sizeof name, "%s_layernorm", g->nodes[add].name);
    int ln = fused_node(g, "LayerNormalization", 17, name, 3, ins, y, 2);
    if (ln < 0)
        return ln;
    dab_opt_attr_int(g, ln, "axis", -1);
    dab_opt_attr_float(g, ln, "epsilon", eps);
    for (int i = 0; i < 9; i++)
        removed[nodes[i]] = true;
    return 1;
}

/*
 * The end both Gelu forms share: 0.5 * x * c, as Mul(Mul(x, c), 0.5) or Mul(Mul(x, 0.5), c)
 * (operands in either order), with c private. tail receives the nodes: [first Mul, last
 * Mul, -1] or [the Mul by 0.5, last Mul, -1].
 */
static bool gelu_tail(const dab_graph_t *g, const int *uses, int x, int c, int tail[3])
{
    tail[0] = tail[1] = tail[2] = -1;
    int m1 = sole_reader(g, uses, c);
    if (m1 < 0 || !dab_opt_is(g, m1, "Mul"))
        return false;
    int other = other_input(g, m1, c);
    if (other < 0)
        return false;
    if (other == x) {
        int last = sole_reader(g, uses, g->nodes[m1].outputs[0]);
        if (!binary_const(g, last, "Mul", g->nodes[m1].outputs[0], 0.5f))
            return false;
        tail[0] = m1;
        tail[1] = last;
        return true;
    }
    int half = g->values[other].producer;
    if (half < 0 || !private_value(g, uses, other) || !binary_const(g, half, "Mul", x, 0.5f))
        return false;
    tail[0] = half;
    tail[1] = m1;
    return true;
}

/* Gelu(x) writing the output of node `last`; approximate NULL for the erf form. */
static int gelu_node(dab_graph_t *g, int x, int last, const char *approximate)
{
    int y = g->nodes[last].outputs[0];
    char name[256];
    snprintf(name, sizeof name, "%s_gelu", g->nodes[last].name);
    int ge = fused_node(g, "Gelu", 20, name, 1, &x, y, 1);
    if (ge >= 0 && approximate)
        dab_opt_attr_string(g, ge, "approximate", approximate);
    return ge;
}

/*
 * The erf form of Gelu, anchored at the Erf:
 *   y = Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)   (or x / sqrt 2 as Mul by 1/sqrt 2,
 *   and the 0.5 applied to x first) becomes Gelu(x) (opset 20).
 */
static int fuse_gelu_erf(dab_graph_t *g, const int *uses, const int *ranks, int erf,
                         bool *removed)
{
    const dab_gnode_t *en = &g->nodes[erf];
    if (en->n_inputs != 1 || en->outputs[0] < 0)
        return 0;
    int a = en->inputs[0];
    int scale = g->values[a].producer;
    if (scale < 0 || !private_value(g, uses, a))
        return 0;
    const dab_gnode_t *sc = &g->nodes[scale];
    int x = -1;
    float f = 0;
    if (sc->n_inputs != 2)
        return 0;
    if (dab_opt_is(g, scale, "Div") && const_scalar(g, sc->inputs[1], &f) &&
        fabsf(f - 1.41421356f) <= 1e-4f * 1.41421356f) {
        x = sc->inputs[0];
    } else if (dab_opt_is(g, scale, "Mul")) {
        if (const_scalar(g, sc->inputs[1], &f))
            x = sc->inputs[0];
        else if (const_scalar(g, sc->inputs[0], &f))
            x = sc->inputs[1];
        if (fabsf(f - 0.70710678f) > 1e-4f * 0.70710678f)
            x = -1;
    }
    if (x < 0)
        return 0;
    int add1 = sole_reader(g, uses, en->outputs[0]);
    if (!binary_const(g, add1, "Add", en->outputs[0], 1.0f))
        return 0;
    int tail[3];
    if (!gelu_tail(g, uses, x, g->nodes[add1].outputs[0], tail))
        return 0;
    int ge = gelu_node(g, x, tail[1], NULL);
    if (ge < 0)
        return ge;
    removed[scale] = removed[erf] = removed[add1] = true;
    for (int i = 0; i < 3; i++)
        if (tail[i] >= 0)
            removed[tail[i]] = true;
    return 1;
}

/*
 * The tanh form (torch's approximate='tanh' before opset 20, and GPT-2's "new GELU"),
 * anchored at the Tanh:
 *   y = 0.5 * x * (1 + Tanh(sqrt(2 / pi) * (x + 0.044715 * Pow(x, 3))))
 * becomes Gelu(x, approximate = "tanh").
 */
static int fuse_gelu_tanh(dab_graph_t *g, const int *uses, const int *ranks, int th,
                          bool *removed)
{
    const dab_gnode_t *tn = &g->nodes[th];
    if (tn->n_inputs != 1 || tn->outputs[0] < 0)
        return 0;
    int sv = tn->inputs[0];
    int s_node = g->values[sv].producer;
    if (s_node < 0 || !private_value(g, uses, sv) || !dab_opt_is(g, s_node, "Mul"))
        return 0;
    /* s = Mul(r, sqrt(2/pi)) */
    int r = -1;
    for (int k = 0; k < 2 && r < 0; k++) {
        int cand = g->nodes[s_node].inputs[k];
        if (binary_const(g, s_node, "Mul", cand, 0.7978845608f))
            r = cand;
    }
    int r_node = r >= 0 && private_value(g, uses, r) ? g->values[r].producer : -1;
    if (r_node < 0 || !dab_opt_is(g, r_node, "Add") || g->nodes[r_node].n_inputs != 2)
        return 0;
    /* r = Add(x, q) with q = Mul(Pow(x, 3), 0.044715), in either order */
    int x = -1, q_node = -1, p_node = -1;
    for (int k = 0; k < 2 && x < 0; k++) {
        int q = g->nodes[r_node].inputs[k], cand_x = g->nodes[r_node].inputs[1 - k];
        int qn = private_value(g, uses, q) ? g->values[q].producer : -1;
        if (qn < 0 || !dab_opt_is(g, qn, "Mul") || g->nodes[qn].n_inputs != 2)
            continue;
        for (int j = 0; j < 2; j++) {
            int pv = g->nodes[qn].inputs[j];
            int pn = private_value(g, uses, pv) ? g->values[pv].producer : -1;
            if (pn >= 0 && binary_const(g, qn, "Mul", pv, 0.044715f) &&
                binary_const(g, pn, "Pow", cand_x, 3.0f)) {
                x = cand_x;
                q_node = qn;
                p_node = pn;
                break;
            }
        }
    }
    if (x < 0)
        return 0;
    int add1 = sole_reader(g, uses, tn->outputs[0]);
    if (!binary_const(g, add1, "Add", tn->outputs[0], 1.0f))
        return 0;
    int tail[3];
    if (!gelu_tail(g, uses, x, g->nodes[add1].outputs[0], tail))
        return 0;
    int ge = gelu_node(g, x, tail[1], "tanh");
    if (ge < 0)
        return ge;
    removed[p_node] = removed[q_node] = removed[r_node] = removed[s_node] = true;
    removed[th] = removed[add1] = true;
    for (int i = 0; i < 3; i++)
        if (tail[i] >= 0)
            removed[tail[i]] = true;
    return 1;
}

/* ---- a bias Add into a 2-D MatMul: a Gemm ---- */

/* Ranks the graph implies without running it: declared or constant ranks carried
 * through products and elementwise nodes (-1 unknown). A dab_malloc'd [n_values]
 * array, or NULL on out of memory. */
static int *known_ranks(const dab_graph_t *g)
{
    static const char *const same[] = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu",
                                       "Clip", "Erf", "Neg", "Abs", "Exp", "Sqrt",
                                       "HardSwish", "Softmax", "LayerNormalization",
                                       "Identity", "Cast"};
    static const char *const binary[] = {"Add", "Sub", "Mul", "Div", "Pow"};
    int *r = dab_malloc(((size_t)g->n_values + 1) * sizeof *r);
    if (!r)
        return NULL;
    for (int v = 0; v < g->n_values; v++) {
        const dab_value_t *val = &g->values[v];
        r[v] = val->const_data && !val->is_input ? val->const_data->rank : val->rank;
    }
    for (int n = 0; n < g->n_nodes; n++) {
        const dab_gnode_t *node = &g->nodes[n];
        if (node->n_outputs < 1 || node->outputs[0] < 0 || r[node->outputs[0]] >= 0 ||
            node->n_inputs < 1 || node->inputs[0] < 0)
            continue;
        int out = node->outputs[0], a = r[node->inputs[0]];
        int b = node->n_inputs > 1 && node->inputs[1] >= 0 ? r[node->inputs[1]] : -1;
        if (dab_opt_is(g, n, "Gemm")) {
            r[out] = 2;
        } else if (dab_opt_is(g, n, "MatMul")) {
            if (a >= 2 && b >= 2)
                r[out] = DAB_MAX(a, b);
        } else {
            for (size_t i = 0; i < DAB_ARRAY_LEN(same); i++)
                if (dab_opt_is(g, n, same[i]))
                    r[out] = a;
            for (size_t i = 0; i < DAB_ARRAY_LEN(binary); i++)
                if (dab_opt_is(g, n, binary[i]) && node->n_inputs == 2 && a >= 0 && b >= 0)
                    r[out] = DAB_MAX(a, b);
        }
    }
    return r;
}

/*
 * Add(MatMul(a, B), bias) with a of rank 2, B a constant float [K, N] and bias a
 * constant float [N] or [1, N] is Gemm(a, B, bias): oneDNN adds the bias in the product
 * (and the activation after it can then fuse too). The MatMul node becomes the Gemm.
 */
static int fuse_matmul_bias(dab_graph_t *g, const int *uses, const int *ranks, int mm,
                            bool *removed)
{
    dab_gnode_t *mn = &g->nodes[mm];
    if (mn->n_inputs != 2 || mn->n_outputs != 1 || mn->inputs[0] < 0 || mn->inputs[1] < 0 ||
        ranks[mn->inputs[0]] != 2)
        return 0;
    int64_t nw, nb;
    if (!dab_opt_const_f32(g, mn->inputs[1], &nw) || g->values[mn->inputs[1]].const_data->rank != 2)
        return 0;
    int64_t n = g->values[mn->inputs[1]].const_data->dims[1];
    int y = mn->outputs[0];
    int add = sole_reader(g, uses, y);
    if (add < 0 || !dab_opt_is(g, add, "Add"))
        return 0;
    int bias = other_input(g, add, y);
    if (bias < 0 || !dab_opt_const_f32(g, bias, &nb) || nb != n)
        return 0;
    const dab_tensor_t *bt = g->values[bias].const_data;
    if (!(bt->rank == 1 || (bt->rank == 2 && bt->dims[0] == 1)))
        return 0;
    char *op = dab_strdup("Gemm");
    int *ins = dab_realloc(mn->inputs, 4 * sizeof *ins);
    if (!op || !ins) {
        dab_free(op);
        if (ins)
            mn->inputs = ins;
        return DAB_ENOMEM;
    }
    dab_free(mn->op_type);
    mn->op_type = op;
    mn->inputs = ins;
    mn->inputs[2] = bias;
    mn->n_inputs = 3;
    mn->outputs[0] = g->nodes[add].outputs[0];
    mn->opset = 13; /* a MatMul's model may predate Gemm's broadcasting C (opset 7) */
    mn->flags |= DAB_GNODE_OPSET_FIXED;
    removed[add] = true;
    return 1;
}

/* ---- attention ---- */

/* v has rank 4: declared so, or made by a Transpose with a 4-entry perm or a Reshape to a
 * constant 4-entry shape. */
static bool rank4(const dab_graph_t *g, int v)
{
    if (g->values[v].rank == 4)
        return true;
    int p = g->values[v].producer;
    if (p < 0)
        return false;
    const dab_gnode_t *pn = &g->nodes[p];
    if (dab_opt_is(g, p, "Transpose")) {
        const dab_attr_t *perm = gattr(pn, "perm");
        return perm && perm->type == DAB_ATTR_INTS && perm->n == 4;
    }
    if (dab_opt_is(g, p, "Reshape") && pn->n_inputs >= 2 && pn->inputs[1] >= 0) {
        const dab_value_t *sv = &g->values[pn->inputs[1]];
        return sv->const_data && !sv->is_input && dab_tensor_numel(sv->const_data) == 4;
    }
    return false;
}

/* A Transpose of src by perm (4 entries, copied) into a new value; its index or ENOMEM. */
static int new_transpose(dab_graph_t *g, int src, const int64_t *perm, const char *base)
{
    int64_t *owned = dab_malloc(4 * sizeof *owned);
    if (!owned || dab_graph_own(g, owned))
        return DAB_ENOMEM;
    memcpy(owned, perm, 4 * sizeof *owned);
    int out = dab_opt_new_value(g, base);
    if (out < 0)
        return out;
    int n = dab_opt_new_node(g, "Transpose", base, 1, &src, 1, &out, 1);
    if (n < 0)
        return n;
    dab_attr_t *a = &g->nodes[n].attrs[g->nodes[n].n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = "perm";
    a->type = DAB_ATTR_INTS;
    a->n = 4;
    a->ints = owned;
    return out;
}

/* Node sp makes attention scores: a MatMul, or a Div/Mul of a MatMul's output. */
static bool scores_side(const dab_graph_t *g, int sp)
{
    if (dab_opt_is(g, sp, "MatMul"))
        return true;
    if (!dab_opt_is(g, sp, "Div") && !dab_opt_is(g, sp, "Mul"))
        return false;
    for (int k = 0; k < g->nodes[sp].n_inputs; k++)
        if (dab_opt_producer(g, g->nodes[sp].inputs[k], "MatMul") >= 0)
            return true;
    return false;
}

/*
 * Scaled dot-product attention over 4-D [batch, heads, seq, size] tensors, anchored at
 * the Softmax:
 *   y = MatMul(Softmax(Add(Div(MatMul(q, kT), c), mask), -1), v)
 * (Mul by c instead of Div, mask on either side or absent) becomes
 * Attention(q, k, v, mask, scale = 1 / c) at opset 23, which scores one query row at a
 * time instead of materializing [seq, seq] scores three times. k is kT with its last two
 * axes swapped: when kT is itself a Transpose the two perms are composed into one.
 */
static int fuse_attention(dab_graph_t *g, const int *uses, const int *ranks, int sm,
                          bool *removed)
{
    const dab_gnode_t *sn = &g->nodes[sm];
    if (sn->opset < 13 || sn->n_inputs != 1 || sn->n_outputs != 1 || sn->outputs[0] < 0)
        return 0;
    int64_t axis = gattr_int(sn, "axis", -1);
    if (axis != -1 && axis != 3)
        return 0;
    int cur = sn->inputs[0], mask = -1, add = -1, scl = -1;
    float scale = 1.0f, c;
    int pn = private_value(g, uses, cur) ? g->values[cur].producer : -1;
    if (pn >= 0 && dab_opt_is(g, pn, "Add") && g->nodes[pn].n_inputs == 2) {
        /* the scores are the side a scale or the MatMul produced */
        for (int k = 0; k < 2 && mask < 0; k++) {
            int s = g->nodes[pn].inputs[k], o = g->nodes[pn].inputs[1 - k];
            int sp = private_value(g, uses, s) && s != o ? g->values[s].producer : -1;
            if (sp >= 0 && scores_side(g, sp)) {
                mask = o;
                cur = s;
            }
        }
        if (mask < 0)
            return 0;
        add = pn;
        pn = g->values[cur].producer;
    }
    if (pn >= 0 && (dab_opt_is(g, pn, "Div") || dab_opt_is(g, pn, "Mul")) &&
        g->nodes[pn].n_inputs == 2) {
        bool div = dab_opt_is(g, pn, "Div");
        int s = g->nodes[pn].inputs[0], o = g->nodes[pn].inputs[1];
        if (!div && !const_scalar(g, o, &c)) {
            int t = s;
            s = o;
            o = t;
        }
        if (!const_scalar(g, o, &c) || !(c > 0) || !isfinite(c))
            return 0;
        scale = div ? 1.0f / c : c;
        if (!private_value(g, uses, s))
            return 0;
        scl = pn;
        cur = s;
        pn = g->values[cur].producer;
    }
    if (pn < 0 || !dab_opt_is(g, pn, "MatMul") || !private_value(g, uses, cur))
        return 0;
    int qk = pn, q = g->nodes[qk].inputs[0], kt = g->nodes[qk].inputs[1];
    int pv = sn->outputs[0];
    int av = sole_reader(g, uses, pv);
    if (av < 0 || !dab_opt_is(g, av, "MatMul") || g->nodes[av].inputs[0] != pv ||
        g->nodes[av].outputs[0] < 0)
        return 0;
    int v = g->nodes[av].inputs[1];
    if (q < 0 || kt < 0 || v < 0 || !rank4(g, q) || !rank4(g, kt) || !rank4(g, v))
        return 0;
    /* k = kT with the last two axes swapped */
    int64_t perm[4] = {0, 1, 3, 2};
    int src = kt;
    int tp = g->values[kt].producer;
    const dab_attr_t *tperm = tp >= 0 && dab_opt_is(g, tp, "Transpose")
                                  ? gattr(&g->nodes[tp], "perm")
                                  : NULL;
    if (tperm && tperm->type == DAB_ATTR_INTS && tperm->n == 4) {
        const int64_t swap[4] = {0, 1, 3, 2};
        for (int i = 0; i < 4; i++)
            perm[i] = tperm->ints[swap[i]];
        src = g->nodes[tp].inputs[0];
    }
    char base[256];
    snprintf(base, sizeof base, "%s_attn_k", g->values[kt].name);
    int k = new_transpose(g, src, perm, base);
    if (k < 0)
        return k;
    int ins[4] = {q, k, v, mask};
    snprintf(base, sizeof base, "%s_attention", g->nodes[av].name);
    int at = fused_node(g, "Attention", 23, base, mask >= 0 ? 4 : 3, ins, g->nodes[av].outputs[0],
                        2);
    if (at < 0)
        return at;
    dab_opt_attr_float(g, at, "scale", scale);
    if (mask >= 0)
        dab_opt_attr_int(g, at, DAB_ATTR_MASK_FROM_ADD, 1);
    removed[qk] = removed[sm] = removed[av] = true;
    if (scl >= 0)
        removed[scl] = true;
    if (add >= 0)
        removed[add] = true;
    return 1;
}

/* ---- the passes ---- */

/* A fusion anchored at node n; uses and ranks as dab_opt_use_counts and known_ranks. */
typedef int (*fusion_fn)(dab_graph_t *g, const int *uses, const int *ranks, int n,
                         bool *removed);

/* Runs one fusion over every node, then commits; a fusion sees the graph as the
 * previous one left it. */
static int run_fusion(dab_graph_t *g, const char *op_type, fusion_fn fn, dab_err_t *err)
{
    int *uses = dab_opt_use_counts(g), *ranks = known_ranks(g);
    const int n_marked = g->n_nodes;
    bool *removed = dab_calloc((size_t)n_marked + 1, sizeof *removed);
    int fused = 0, rc = 0;
    if (!uses || !ranks || !removed) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory fusing nodes");
        goto done;
    }
    /* Fusions may append nodes: they are not visited, and commit keeps them. */
    for (int n = 0; n < n_marked; n++) {
        if (removed[n] || (op_type && !dab_opt_is(g, n, op_type)))
            continue;
        int r = fn(g, uses, ranks, n, removed);
        if (r < 0) {
            rc = dab_err_set(err, r, "out of memory fusing node '%s'", g->nodes[n].name);
            goto done;
        }
        fused += r;
    }
    if (fused)
        rc = dab_opt_commit(g, removed, n_marked, err);
done:
    dab_free(uses);
    dab_free(ranks);
    dab_free(removed);
    return rc ? rc : fused;
}

int dab_opt_fuse(dab_graph_t *g, dab_err_t *err)
{
    int total = 0, rc;
    if ((rc = run_fusion(g, "BatchNormalization", fold_bn, err)) < 0)
        return rc;
    total += rc;
    if ((rc = run_fusion(g, "Sub", fuse_layernorm, err)) < 0)
        return rc;
    total += rc;
    if ((rc = run_fusion(g, "Erf", fuse_gelu_erf, err)) < 0)
        return rc;
    total += rc;
    if ((rc = run_fusion(g, "Tanh", fuse_gelu_tanh, err)) < 0)
        return rc;
    total += rc;
    if ((rc = run_fusion(g, "MatMul", fuse_matmul_bias, err)) < 0)
        return rc;
    total += rc;
    if ((rc = run_fusion(g, NULL, fuse_activation, err)) < 0)
        return rc;
    return total + rc;
}

int dab_opt_fuse_attention(dab_graph_t *g, dab_err_t *err)
{
    return run_fusion(g, "Softmax", fuse_attention, err);
}
