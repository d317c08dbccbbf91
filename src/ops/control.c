/*
 * control.c - control flow: If, Loop and Scan, the operators whose graph attributes
 * (branches, bodies) run as graphs of their own.
 *
 * Each graph attribute gets a runner once, in init (dab_subgraph_api_t: a session over
 * the subgraph, made by the session this node runs in). Every run, and every iteration
 * of it, reuses that runner, so a body plans its activations like any graph and steady
 * iterations do not touch the heap. Values a body reads by name from enclosing graphs
 * (initializers, inputs, values computed earlier) are bound by that session at each
 * body run; the graph layer made them the node's implicit inputs, so they are computed
 * before the node and live until it has run.
 *
 * Output shapes depend on data (the branch taken, the trip count, each iteration's
 * shapes), so the work happens in reshape, where inputs hold their data:
 *   If    runs the branch and keeps pointers to its outputs (valid until the branch runs
 *         again); compute copies them.
 *   Loop  runs every iteration. Loop-carried values go back and forth between two sets of
 *   Scan  buffers owned by the op (a body may return an input as it is, or swap two, so
 *         an iteration never writes the set it reads). Scan outputs are appended to
 *         buffers that grow as needed (Loop) or are sized once (Scan); compute copies the
 *         final values. Scan inputs sliced along axis 0 are read in place; other axes
 *         are gathered into a buffer per input.
 * Every buffer is kept between runs, so a repeated run with the same shapes does not
 * allocate. Before a scan output grows, its size is checked against the session's
 * max_value_bytes (ELIMIT): a Loop with a huge trip count and no condition cannot
 * allocate without bound where the session has a limit (with none, 0, it grows until
 * memory runs out and fails with ENOMEM). A Loop whose body never turns its condition
 * false, with no trip count and no output that grows, runs forever, as the model asks:
 * ONNX bounds it no more than a C `for (;;)`, and nothing in the engine interrupts a run,
 * so such a model keeps the thread running it busy. That is the model's own business.
 *
 * Only tensors are supported: sequence- and optional-typed values are refused where
 * the loader reads the types.
 */
#include <stdio.h>

#include "ops.h"

/* ------------------------------------------------------------------ */
/* shared helpers                                                      */
/* ------------------------------------------------------------------ */

/* A heap block owned by an op, grown as needed and kept between runs. */
typedef struct cf_buf {
    void *data;
    size_t cap;
} cf_buf_t;

static size_t elem_size(dab_dtype_t dt)
{
    return dt == DAB_DT_STRING ? sizeof(dab_str_t) : dab_dtype_size(dt);
}

/* Makes b hold at least bytes (contents kept). Grows by half again at least, but never
 * past limit (0: none) unless bytes itself needs it (the caller checked bytes). */
static int buf_reserve(cf_buf_t *b, size_t bytes, size_t limit, dab_err_t *err)
{
    if (!bytes)
        bytes = 1;
    if (bytes <= b->cap)
        return 0;
    size_t ncap = b->cap + b->cap / 2;
    if (limit && ncap > limit)
        ncap = limit;
    if (ncap < bytes)
        ncap = bytes;
    void *p = dab_realloc(b->data, ncap);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory growing a buffer to %zu bytes", ncap);
    b->data = p;
    b->cap = ncap;
    return 0;
}

static void buf_free(cf_buf_t *b)
{
    dab_free(b->data);
    b->data = NULL;
    b->cap = 0;
}

/* *dst becomes t with its bytes copied into b: keeps a body output beyond the body's
 * next run. t may point into b (a value passed through). */
static int keep(const dab_tensor_t *t, cf_buf_t *b, dab_tensor_t *dst, size_t limit,
                const char *what, int idx, dab_err_t *err)
{
    char label[64];
    size_t bytes;
    snprintf(label, sizeof label, "%s %d", what, idx);
    int rc = dab_shape_check(label, t->dtype, t->rank, t->dims, limit, &bytes, err);
    if (rc)
        return rc;
    if (t->data == b->data) {
        *dst = *t;
        return 0;
    }
    if ((rc = buf_reserve(b, bytes, limit, err)))
        return rc;
    if (bytes)
        memcpy(b->data, t->data, bytes);
    *dst = *t;
    dst->data = b->data;
    return 0;
}

/* Copies src's bytes into dst, whose shape the op set from src in reshape. */
static void copy_out(dab_tensor_t *dst, const dab_tensor_t *src)
{
    size_t bytes = dab_tensor_bytes(dst);
    if (bytes && dst->data != src->data)
        memcpy(dst->data, src->data, bytes);
}

/* A scan output being assembled: one element per iteration, each placed at its position
 * along `axis` of the output. */
typedef struct cf_acc {
    bool set;          /* the first element of this run fixed dtype and shape */
    dab_tensor_t elem; /* dtype and shape of one element (data unused) */
    int64_t axis_attr; /* where the iteration axis goes, as given (may be negative) */
    int axis;          /* ... normalized against the output's rank */
    bool zero_fill;    /* positions no iteration writes read as zeros (Scan 8) */
    cf_buf_t buf;
} cf_acc_t;

/* The output's shape with `slots` positions along the iteration axis. */
static void acc_shape(const cf_acc_t *a, int64_t slots, dab_tensor_t *out)
{
    int64_t dims[DAB_MAX_RANK];
    for (int d = 0, s = 0; d <= a->elem.rank; d++)
        dims[d] = d == a->axis ? slots : a->elem.dims[s++];
    dab_tensor_set_shape(out, a->elem.dtype, a->elem.rank + 1, dims);
}

/*
 * Places t at position pos of `slots` along the accumulator's axis; the first call of a
 * run fixes dtype and shape, later ones must match. Checks the whole output against
 * limit before growing. what/idx name the output, iter the iteration, for errors.
 */
static int acc_put(cf_acc_t *a, const dab_tensor_t *t, int64_t pos, int64_t slots, size_t limit,
                   const char *what, int idx, int64_t iter, dab_err_t *err)
{
    char label[64], s1[96], s2[96];
    snprintf(label, sizeof label, "%s %d", what, idx);
    bool fresh = !a->set;
    if (fresh) {
        if (t->rank < 0 || t->rank >= DAB_MAX_RANK)
            return dab_err_set(err, DAB_ELIMIT, "%s has rank %d; with the iteration axis at most "
                               "%d is supported", label, t->rank, DAB_MAX_RANK - 1);
        int rc = dab_norm_axis(a->axis_attr, t->rank + 1, "scan output axis", &a->axis, err);
        if (rc)
            return rc;
        a->elem = *t;
        a->elem.data = NULL;
        a->set = true;
    } else if (t->dtype != a->elem.dtype || !dab_shape_equal(t, &a->elem)) {
        return dab_err_set(err, DAB_ESHAPE,
                           "%s is %s %s in iteration %lld but was %s %s before; scan outputs "
                           "keep their shape",
                           label, dab_dtype_name(t->dtype), dab_shape_str(t, s1, sizeof s1),
                           (long long)iter, dab_dtype_name(a->elem.dtype),
                           dab_shape_str(&a->elem, s2, sizeof s2));
    }
    dab_tensor_t full = {0};
    size_t bytes;
    acc_shape(a, slots, &full);
    int rc = dab_shape_check(label, full.dtype, full.rank, full.dims, limit, &bytes, err);
    if (rc)
        return rc;
    if ((rc = buf_reserve(&a->buf, bytes, limit, err)))
        return rc;
    if (fresh && a->zero_fill && bytes) /* slots are fixed: sized once per run */
        memset(a->buf.data, 0, bytes);
    size_t esz = elem_size(t->dtype);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < t->rank; d++) {
        if (d < a->axis)
            outer *= t->dims[d];
        else
            inner *= t->dims[d];
    }
    size_t inner_bytes = (size_t)inner * esz;
    if (!inner_bytes)
        return 0;
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)a->buf.data + ((size_t)o * (size_t)slots + (size_t)pos) * inner_bytes,
               (const char *)t->data + (size_t)o * inner_bytes, inner_bytes);
    return 0;
}

/*
 * Shape of a scan output no iteration produced: `slots` (0 or more) along the axis, the
 * rest as the body declares it (unknown dims read 0). EUNSUPPORTED when the body does not
 * declare the dtype.
 */
static int acc_empty_shape(const cf_acc_t *a, const dab_tensor_t *decl, int64_t slots,
                           const char *what, int idx, dab_tensor_t *out, dab_err_t *err)
{
    if (decl->dtype == DAB_DT_UNDEFINED)
        return dab_err_set(err, DAB_EUNSUPPORTED,
                           "%s %d: no iteration ran and the body does not declare its type", what,
                           idx);
    int rank = decl->rank >= 0 && decl->rank < DAB_MAX_RANK ? decl->rank : 0;
    int axis;
    int rc = dab_norm_axis(a->axis_attr, rank + 1, "scan output axis", &axis, err);
    if (rc)
        return rc;
    int64_t dims[DAB_MAX_RANK];
    for (int d = 0, s = 0; d <= rank; d++) {
        if (d == axis) {
            dims[d] = slots;
            continue;
        }
        dims[d] = decl->dims[s] >= 0 ? decl->dims[s] : 0;
        s++;
    }
    dab_tensor_set_shape(out, decl->dtype, rank + 1, dims);
    return 0;
}

/* Reads a one-element tensor as int64 (trip counts) or as a truth value. */
static int scalar_i64(const dab_tensor_t *t, const char *what, int64_t *v, dab_err_t *err)
{
    char s[96];
    if (dab_tensor_numel(t) != 1 || t->dtype == DAB_DT_STRING)
        return dab_err_set(err, DAB_ESHAPE, "%s must hold one number, got %s %s", what,
                           dab_dtype_name(t->dtype), dab_shape_str(t, s, sizeof s));
    *v = dab_tensor_get_i64(t, 0);
    return 0;
}

static int scalar_bool(const dab_tensor_t *t, const char *what, bool *v, dab_err_t *err)
{
    char s[96];
    if (dab_tensor_numel(t) != 1 || t->dtype == DAB_DT_STRING)
        return dab_err_set(err, DAB_ESHAPE, "%s must hold one boolean, got %s %s", what,
                           dab_dtype_name(t->dtype), dab_shape_str(t, s, sizeof s));
    *v = dab_tensor_get_f64(t, 0) != 0;
    return 0;
}

/* The graph attribute `name` of node, or NULL with EFORMAT set. */
static const struct dab_graph *graph_attr(const dab_node_t *node, const char *name,
                                          dab_err_t *err)
{
    const dab_attr_t *a = dab_attr_find(node, name);
    if (!a || a->type != DAB_ATTR_GRAPH || !a->g) {
        dab_err_set(err, DAB_EFORMAT, "attribute '%s' is missing or not a graph", name);
        return NULL;
    }
    return a->g;
}

/* Makes the runner for graph attribute `name` and checks its input and output counts
 * (-1: any). */
static int make_runner(dab_node_t *node, const char *name, int want_in, int want_out,
                       dab_subgraph_t **out, dab_err_t *err)
{
    const dab_subgraph_api_t *api = node->ctx ? node->ctx->sub : NULL;
    if (!api)
        return dab_err_set(err, DAB_EUNSUPPORTED, "subgraphs cannot run here");
    const struct dab_graph *body = graph_attr(node, name, err);
    if (!body)
        return DAB_EFORMAT;
    int rc = api->create(node, body, out, err);
    if (rc)
        return dab_err_prefix(err, "%s: ", name);
    int n_in, n_out;
    api->counts(*out, &n_in, &n_out);
    if (want_in >= 0 && n_in != want_in)
        return dab_err_set(err, DAB_EFORMAT, "%s has %d inputs; the node needs %d", name, n_in,
                           want_in);
    if (want_out >= 0 && n_out != want_out)
        return dab_err_set(err, DAB_EFORMAT, "%s has %d outputs; the node needs %d", name, n_out,
                           want_out);
    return 0;
}

static void free_runner(dab_node_t *node, dab_subgraph_t *sg)
{
    if (sg && node->ctx && node->ctx->sub)
        node->ctx->sub->free(sg);
}

static size_t limit_of(const dab_node_t *node)
{
    return node->ctx ? node->ctx->max_value_bytes : 0;
}

/* ------------------------------------------------------------------ */
/* If                                                                  */
/* ------------------------------------------------------------------ */

typedef struct if_priv {
    dab_subgraph_t *branch[2]; /* else_branch, then_branch */
    const dab_tensor_t **res;  /* [n_outputs]: the taken branch's outputs, reshape to compute */
} if_priv_t;

static void if_exit(dab_node_t *node)
{
    if_priv_t *p = node->priv;
    if (!p)
        return;
    free_runner(node, p->branch[0]);
    free_runner(node, p->branch[1]);
    dab_free(p->res);
    dab_free(p);
    node->priv = NULL;
}

static int if_init(dab_node_t *node, dab_err_t *err)
{
    if_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    node->priv = p; /* the session calls exit after a failed init */
    p->res = dab_calloc((size_t)node->n_outputs + 1, sizeof *p->res);
    if (!p->res)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    int rc = make_runner(node, "else_branch", 0, node->n_outputs, &p->branch[0], err);
    if (!rc)
        rc = make_runner(node, "then_branch", 0, node->n_outputs, &p->branch[1], err);
    return rc;
}

static int if_reshape(dab_node_t *node, dab_err_t *err)
{
    if_priv_t *p = node->priv;
    bool cond = false;
    int rc = scalar_bool(node->inputs[0], "cond", &cond, err);
    if (rc)
        return rc;
    const dab_tensor_t *none[1] = {NULL};
    if ((rc = node->ctx->sub->run(p->branch[cond], none, p->res, err)))
        return dab_err_prefix(err, "%s: ", cond ? "then_branch" : "else_branch");
    for (int k = 0; k < node->n_outputs; k++)
        if (node->outputs[k])
            dab_tensor_set_shape(node->outputs[k], p->res[k]->dtype, p->res[k]->rank,
                                 p->res[k]->dims);
    return 0;
}

static int if_compute(dab_node_t *node, dab_err_t *err)
{
    if_priv_t *p = node->priv;
    for (int k = 0; k < node->n_outputs; k++)
        if (node->outputs[k])
            copy_out(node->outputs[k], p->res[k]);
    return 0;
}

/* ------------------------------------------------------------------ */
/* loop-carried values (Loop and Scan)                                 */
/* ------------------------------------------------------------------ */

/* n loop-carried values: the current ones, and two sets of buffers that iterations
 * write in turn. */
typedef struct cf_carry {
    int n;
    dab_tensor_t *cur; /* [n] */
    cf_buf_t *set[2];  /* [n] each */
} cf_carry_t;

static int carry_init(cf_carry_t *c, int n)
{
    c->n = n;
    c->cur = dab_calloc((size_t)n + 1, sizeof *c->cur);
    c->set[0] = dab_calloc((size_t)n + 1, sizeof *c->set[0]);
    c->set[1] = dab_calloc((size_t)n + 1, sizeof *c->set[1]);
    return c->cur && c->set[0] && c->set[1] ? 0 : DAB_ENOMEM;
}

static void carry_free(cf_carry_t *c)
{
    for (int s = 0; s < 2; s++) {
        for (int j = 0; c->set[s] && j < c->n; j++)
            buf_free(&c->set[s][j]);
        dab_free(c->set[s]);
    }
    dab_free(c->cur);
}

/* Takes the body's new values (outs[0..n)) as the current ones; run counts the body runs
 * so far, choosing the set not being read. */
static int carry_update(cf_carry_t *c, const dab_tensor_t *const *outs, int64_t run,
                        size_t limit, dab_err_t *err)
{
    cf_buf_t *set = c->set[run & 1];
    for (int j = 0; j < c->n; j++) {
        int rc = keep(outs[j], &set[j], &c->cur[j], limit, "loop-carried value", j, err);
        if (rc)
            return rc;
    }
    return 0;
}

static cf_acc_t *accs_new(int n)
{
    return dab_calloc((size_t)n + 1, sizeof(cf_acc_t));
}

static void accs_free(cf_acc_t *a, int n)
{
    for (int k = 0; a && k < n; k++)
        buf_free(&a[k].buf);
    dab_free(a);
}

/* ------------------------------------------------------------------ */
/* Loop                                                                */
/* ------------------------------------------------------------------ */

typedef struct loop_priv {
    dab_subgraph_t *body;
    int n_carried, n_scan;
    const dab_tensor_t **in;  /* [2 + n_carried] one run's inputs */
    const dab_tensor_t **out; /* [1 + n_carried + n_scan] one run's outputs */
    cf_carry_t carry;
    cf_acc_t *acc; /* [n_scan] */
    int64_t iters; /* iterations of the last run */
    int64_t iter_num;
    uint8_t cond_in;
    dab_tensor_t iter_t, cond_t; /* the body's first two inputs */
} loop_priv_t;

static void loop_exit(dab_node_t *node)
{
    loop_priv_t *p = node->priv;
    if (!p)
        return;
    free_runner(node, p->body);
    carry_free(&p->carry);
    accs_free(p->acc, p->n_scan);
    dab_free(p->in);
    dab_free(p->out);
    dab_free(p);
    node->priv = NULL;
}

static int loop_init(dab_node_t *node, dab_err_t *err)
{
    if (node->n_inputs < 2)
        return dab_err_set(err, DAB_EFORMAT,
                           "takes a trip count and a condition (either may be \"\") before the "
                           "loop-carried values; the node has %d inputs",
                           node->n_inputs);
    loop_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    node->priv = p;
    p->n_carried = node->n_inputs - 2;
    p->n_scan = node->n_outputs - p->n_carried;
    if (p->n_scan < 0)
        return dab_err_set(err, DAB_EFORMAT,
                           "has %d loop-carried inputs but only %d outputs", p->n_carried,
                           node->n_outputs);
    for (int j = 0; j < p->n_carried; j++)
        if (!node->inputs[2 + j])
            return dab_err_set(err, DAB_EFORMAT, "omits input %d, a loop-carried value", 2 + j);
    int rc = make_runner(node, "body", 2 + p->n_carried, 1 + p->n_carried + p->n_scan, &p->body,
                         err);
    if (rc)
        return rc;
    p->in = dab_calloc((size_t)p->n_carried + 3, sizeof *p->in);
    p->out = dab_calloc((size_t)node->n_outputs + 2, sizeof *p->out);
    p->acc = accs_new(p->n_scan);
    if (!p->in || !p->out || !p->acc || carry_init(&p->carry, p->n_carried))
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    p->iter_t.dtype = DAB_DT_INT64;
    p->iter_t.rank = 0;
    p->iter_t.data = &p->iter_num;
    p->cond_t.dtype = DAB_DT_BOOL;
    p->cond_t.rank = 0;
    p->cond_t.data = &p->cond_in;
    return 0;
}

static int loop_reshape(dab_node_t *node, dab_err_t *err)
{
    loop_priv_t *p = node->priv;
    const dab_subgraph_api_t *api = node->ctx->sub;
    size_t limit = limit_of(node);
    int64_t trips = 0;
    bool has_m = node->inputs[0] != NULL, cond = true;
    int rc;
    if (has_m && (rc = scalar_i64(node->inputs[0], "trip count M", &trips, err)))
        return rc;
    if (node->inputs[1] && (rc = scalar_bool(node->inputs[1], "cond", &cond, err)))
        return rc;
    for (int j = 0; j < p->n_carried; j++)
        p->carry.cur[j] = *node->inputs[2 + j];
    for (int k = 0; k < p->n_scan; k++) {
        p->acc[k].set = false;
        p->acc[k].axis_attr = 0;
    }
    int64_t it = 0;
    /* for (i = 0; (no M || i < M) && cond; i++), cond starting true when the node has
     * none. ONNX's text calls cond_out "ignored" without a cond input, but onnxruntime
     * and ONNX's reference evaluator both stop on it; dabba does as they do. */
    for (; (!has_m || it < trips) && cond; it++) {
        p->iter_num = it;
        p->cond_in = cond;
        p->in[0] = &p->iter_t;
        p->in[1] = &p->cond_t;
        for (int j = 0; j < p->n_carried; j++)
            p->in[2 + j] = &p->carry.cur[j];
        if ((rc = api->run(p->body, p->in, p->out, err)))
            return dab_err_prefix(err, "body, iteration %lld: ", (long long)it);
        if ((rc = scalar_bool(p->out[0], "the body's cond output", &cond, err)))
            goto fail;
        if ((rc = carry_update(&p->carry, p->out + 1, it, limit, err)))
            goto fail;
        for (int k = 0; k < p->n_scan; k++)
            if ((rc = acc_put(&p->acc[k], p->out[1 + p->n_carried + k], it, it + 1, limit,
                              "scan output", k, it, err)))
                goto fail;
    }
    p->iters = it;
    for (int j = 0; j < p->n_carried; j++)
        if (node->outputs[j])
            dab_tensor_set_shape(node->outputs[j], p->carry.cur[j].dtype, p->carry.cur[j].rank,
                                 p->carry.cur[j].dims);
    for (int k = 0; k < p->n_scan; k++) {
        dab_tensor_t *o = node->outputs[p->n_carried + k];
        if (!o)
            continue;
        if (p->acc[k].set) {
            acc_shape(&p->acc[k], it, o);
        } else {
            dab_tensor_t decl;
            api->declared_output(p->body, 1 + p->n_carried + k, &decl);
            if ((rc = acc_empty_shape(&p->acc[k], &decl, 0, "scan output", k, o, err)))
                return rc;
        }
    }
    return 0;
fail:
    return dab_err_prefix(err, "iteration %lld: ", (long long)it);
}

static int loop_compute(dab_node_t *node, dab_err_t *err)
{
    loop_priv_t *p = node->priv;
    for (int j = 0; j < p->n_carried; j++)
        if (node->outputs[j])
            copy_out(node->outputs[j], &p->carry.cur[j]);
    for (int k = 0; k < p->n_scan; k++) {
        dab_tensor_t *o = node->outputs[p->n_carried + k];
        if (o && p->acc[k].set) {
            dab_tensor_t src = *o;
            src.data = p->acc[k].buf.data;
            copy_out(o, &src);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Scan                                                                */
/* ------------------------------------------------------------------ */

typedef struct scan_priv {
    dab_subgraph_t *body;
    bool v8;                     /* opset 8: batch axis first, sequence_lens, `directions` */
    int first;                   /* index of the first state input (1 in opset 8) */
    int n_state, n_in, n_out;    /* N loop-carried, M scan inputs, K scan outputs */
    int64_t *in_axis, *in_dir;   /* [M] as given */
    int64_t *out_axis, *out_dir; /* [K] as given */
    int *axis;                   /* [M] scan input axes, normalized for this run */
    dab_tensor_t *xs;            /* [M] the scan inputs (opset 8: one batch entry's) */
    dab_tensor_t *init;          /* [N] the initial states (opset 8: one batch entry's) */
    const dab_tensor_t **in;     /* [N + M] one body run's inputs */
    const dab_tensor_t **out;    /* [N + K] one body run's outputs */
    cf_carry_t carry;
    dab_tensor_t *slice;         /* [M] the current elements of the scan inputs */
    cf_buf_t *slice_buf;         /* [M] gathered elements (when read across an outer axis) */
    cf_acc_t *acc;               /* [K] scan outputs */
    cf_acc_t *final;             /* [N] opset 8: final states, one per batch entry */
    int64_t slots;               /* positions along the scan outputs' iteration axis */
    int64_t batch, seq;          /* opset 8: batch size and longest sequence */
} scan_priv_t;

static void scan_exit(dab_node_t *node)
{
    scan_priv_t *p = node->priv;
    if (!p)
        return;
    free_runner(node, p->body);
    carry_free(&p->carry);
    accs_free(p->acc, p->n_out);
    accs_free(p->final, p->n_state);
    for (int i = 0; p->slice_buf && i < p->n_in; i++)
        buf_free(&p->slice_buf[i]);
    dab_free(p->slice_buf);
    dab_free(p->slice);
    dab_free(p->in_axis);
    dab_free(p->in_dir);
    dab_free(p->out_axis);
    dab_free(p->out_dir);
    dab_free(p->axis);
    dab_free(p->xs);
    dab_free(p->init);
    dab_free(p->in);
    dab_free(p->out);
    dab_free(p);
    node->priv = NULL;
}

/* Reads the optional INTS attribute `name` of n entries into a new array (def for each
 * when absent); directions must be 0 or 1. */
static int scan_list(const dab_node_t *node, const char *name, int n, bool is_dir,
                     int64_t **out, dab_err_t *err)
{
    *out = dab_calloc((size_t)n + 1, sizeof **out);
    if (!*out)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    const int64_t *vals;
    int cnt = dab_attr_ints(node, name, &vals);
    if (cnt >= 0 && cnt != n)
        return dab_err_set(err, DAB_EINVAL, "attribute '%s' has %d entries; expected %d", name,
                           cnt, n);
    for (int i = 0; i < n; i++) {
        (*out)[i] = cnt >= 0 ? vals[i] : 0;
        if (is_dir && (*out)[i] != 0 && (*out)[i] != 1)
            return dab_err_set(err, DAB_EINVAL,
                               "attribute '%s' entry %d is %lld; directions are 0 (forward) or "
                               "1 (reverse)",
                               name, i, (long long)(*out)[i]);
    }
    return 0;
}

static int scan_init(dab_node_t *node, dab_err_t *err)
{
    scan_priv_t *p = dab_calloc(1, sizeof *p);
    if (!p)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    node->priv = p;
    p->v8 = node->opset < 9;
    p->first = p->v8 ? 1 : 0;
    const dab_attr_t *m = dab_attr_find(node, "num_scan_inputs");
    if (!m || m->type != DAB_ATTR_INT || m->i < 1 || m->i > node->n_inputs - p->first)
        return dab_err_set(err, DAB_EINVAL,
                           "attribute 'num_scan_inputs' must be between 1 and %d (the node's "
                           "inputs%s)",
                           node->n_inputs - p->first, p->v8 ? " after sequence_lens" : "");
    p->n_in = (int)m->i;
    p->n_state = node->n_inputs - p->first - p->n_in;
    p->n_out = node->n_outputs - p->n_state;
    if (p->n_out < 0)
        return dab_err_set(err, DAB_EFORMAT, "has %d state inputs but only %d outputs",
                           p->n_state, node->n_outputs);
    for (int i = p->first; i < node->n_inputs; i++)
        if (!node->inputs[i])
            return dab_err_set(err, DAB_EFORMAT, "omits input %d", i);
    int rc = make_runner(node, "body", p->n_state + p->n_in, p->n_state + p->n_out, &p->body, err);
    if (rc)
        return rc;
    /* Opset 8 has only `directions` (for the scan inputs): the sequence axis is 1 and
     * outputs go forward, which the zeroed lists below say. */
    if ((rc = scan_list(node, p->v8 ? "directions" : "scan_input_directions", p->n_in, true,
                        &p->in_dir, err)))
        return rc;
    if (p->v8) {
        p->in_axis = dab_calloc((size_t)p->n_in + 1, sizeof *p->in_axis);
        p->out_axis = dab_calloc((size_t)p->n_out + 1, sizeof *p->out_axis);
        p->out_dir = dab_calloc((size_t)p->n_out + 1, sizeof *p->out_dir);
        if (!p->in_axis || !p->out_axis || !p->out_dir)
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
    } else if ((rc = scan_list(node, "scan_input_axes", p->n_in, false, &p->in_axis, err)) ||
               (rc = scan_list(node, "scan_output_axes", p->n_out, false, &p->out_axis, err)) ||
               (rc = scan_list(node, "scan_output_directions", p->n_out, true, &p->out_dir,
                               err))) {
        return rc;
    }
    size_t nm = (size_t)(p->n_state + p->n_in) + 1, nk = (size_t)(p->n_state + p->n_out) + 1;
    p->axis = dab_calloc((size_t)p->n_in + 1, sizeof *p->axis);
    p->xs = dab_calloc((size_t)p->n_in + 1, sizeof *p->xs);
    p->init = dab_calloc((size_t)p->n_state + 1, sizeof *p->init);
    p->in = dab_calloc(nm, sizeof *p->in);
    p->out = dab_calloc(nk, sizeof *p->out);
    p->slice = dab_calloc((size_t)p->n_in + 1, sizeof *p->slice);
    p->slice_buf = dab_calloc((size_t)p->n_in + 1, sizeof *p->slice_buf);
    p->acc = accs_new(p->n_out);
    p->final = p->v8 ? accs_new(p->n_state) : NULL;
    if (!p->axis || !p->xs || !p->init || !p->in || !p->out || !p->slice || !p->slice_buf ||
        !p->acc || (p->v8 && !p->final) || carry_init(&p->carry, p->n_state))
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    return 0;
}

/* dst = element idx of x along axis (rank one less): read in place when no axis is
 * outside it, else gathered into buf. */
static int slice_at(const dab_tensor_t *x, int axis, int64_t idx, dab_tensor_t *dst,
                    cf_buf_t *buf, dab_err_t *err)
{
    int64_t outer = 1, inner = 1, dims[DAB_MAX_RANK];
    for (int d = 0, s = 0; d < x->rank; d++) {
        if (d == axis)
            continue;
        dims[s++] = x->dims[d];
        if (d < axis)
            outer *= x->dims[d];
        else
            inner *= x->dims[d];
    }
    dab_tensor_set_shape(dst, x->dtype, x->rank - 1, dims);
    size_t inner_bytes = (size_t)inner * elem_size(x->dtype);
    size_t len = (size_t)x->dims[axis];
    if (outer == 1) {
        dst->data = (char *)x->data + (size_t)idx * inner_bytes;
        return 0;
    }
    /* no larger than the input, which the session already holds */
    int rc = buf_reserve(buf, (size_t)outer * inner_bytes, 0, err);
    if (rc)
        return rc;
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)buf->data + (size_t)o * inner_bytes,
               (const char *)x->data + ((size_t)o * len + (size_t)idx) * inner_bytes, inner_bytes);
    dst->data = buf->data;
    return 0;
}

/*
 * Runs the body over one sequence of len steps: the states start from p->init, scan
 * input i is p->xs[i] read along p->axis[i] (backwards when reversed); scan output k of
 * step t lands at position base + t (base + len-1-t when reversed) of p->slots. *run
 * counts body runs across calls; it picks the carry set and names iterations in errors.
 */
static int scan_sequence(dab_node_t *node, scan_priv_t *p, int64_t len, int64_t base,
                         int64_t *run, dab_err_t *err)
{
    const dab_subgraph_api_t *api = node->ctx->sub;
    size_t limit = limit_of(node);
    for (int j = 0; j < p->n_state; j++)
        p->carry.cur[j] = p->init[j];
    for (int64_t t = 0; t < len; t++) {
        int rc;
        for (int i = 0; i < p->n_in; i++)
            if ((rc = slice_at(&p->xs[i], p->axis[i], p->in_dir[i] ? len - 1 - t : t,
                               &p->slice[i], &p->slice_buf[i], err)))
                return rc;
        for (int j = 0; j < p->n_state; j++)
            p->in[j] = &p->carry.cur[j];
        for (int i = 0; i < p->n_in; i++)
            p->in[p->n_state + i] = &p->slice[i];
        if ((rc = api->run(p->body, p->in, p->out, err)))
            return dab_err_prefix(err, "body, iteration %lld: ", (long long)t);
        if ((rc = carry_update(&p->carry, p->out, *run, limit, err)))
            return dab_err_prefix(err, "iteration %lld: ", (long long)t);
        for (int k = 0; k < p->n_out; k++) {
            int64_t pos = base + (p->out_dir[k] ? len - 1 - t : t);
            if ((rc = acc_put(&p->acc[k], p->out[p->n_state + k], pos, p->slots, limit,
                              "scan output", k, *run, err)))
                return dab_err_prefix(err, "iteration %lld: ", (long long)t);
        }
        ++*run;
    }
    return 0;
}

static void scan_reset_accs(scan_priv_t *p, bool zero_fill)
{
    for (int k = 0; k < p->n_out; k++) {
        p->acc[k].set = false;
        p->acc[k].axis_attr = p->out_axis[k];
        p->acc[k].zero_fill = zero_fill;
    }
}

/* Opset 9 and later: one sequence; scan inputs and outputs along their own axes. */
static int scan9_run(dab_node_t *node, scan_priv_t *p, dab_err_t *err)
{
    int64_t len = -1, run = 0;
    for (int i = 0; i < p->n_in; i++) {
        const dab_tensor_t *x = node->inputs[p->n_state + i];
        char what[48];
        snprintf(what, sizeof what, "scan_input_axes entry %d", i);
        if (x->rank < 1)
            return dab_err_set(err, DAB_ESHAPE, "scan input %d is a scalar; it needs an axis",
                               i);
        int rc = dab_norm_axis(p->in_axis[i], x->rank, what, &p->axis[i], err);
        if (rc)
            return rc;
        if (len >= 0 && x->dims[p->axis[i]] != len)
            return dab_err_set(err, DAB_ESHAPE,
                               "scan input %d has %lld steps along axis %d; scan input 0 has "
                               "%lld",
                               i, (long long)x->dims[p->axis[i]], p->axis[i], (long long)len);
        len = x->dims[p->axis[i]];
        p->xs[i] = *x;
    }
    for (int j = 0; j < p->n_state; j++)
        p->init[j] = *node->inputs[j];
    p->slots = len;
    scan_reset_accs(p, false);
    return scan_sequence(node, p, len, 0, &run, err);
}

/* Opset 8: inputs [batch, sequence, ...] and states [batch, ...]; each batch entry is
 * its own sequence of sequence_lens[b] steps (all when absent). Scan outputs are
 * [batch, longest sequence, ...], zero past each entry's length. */
static int scan8_run(dab_node_t *node, scan_priv_t *p, dab_err_t *err)
{
    const dab_tensor_t *lens = node->inputs[0];
    int64_t batch = -1, seq = -1, run = 0;
    char s1[96];
    for (int i = 0; i < p->n_in; i++) {
        const dab_tensor_t *x = node->inputs[p->first + p->n_state + i];
        if (x->rank < 2)
            return dab_err_set(err, DAB_ESHAPE,
                               "scan input %d is %s; opset 8 needs [batch, sequence, ...]", i,
                               dab_shape_str(x, s1, sizeof s1));
        if (batch >= 0 && (x->dims[0] != batch || x->dims[1] != seq))
            return dab_err_set(err, DAB_ESHAPE,
                               "scan input %d is %s; scan input 0 has batch %lld and sequence "
                               "%lld",
                               i, dab_shape_str(x, s1, sizeof s1), (long long)batch,
                               (long long)seq);
        batch = x->dims[0];
        seq = x->dims[1];
    }
    for (int j = 0; j < p->n_state; j++) {
        const dab_tensor_t *st = node->inputs[p->first + j];
        if (st->rank < 1 || st->dims[0] != batch)
            return dab_err_set(err, DAB_ESHAPE, "state %d is %s; its first axis must be the "
                               "batch (%lld)", j, dab_shape_str(st, s1, sizeof s1),
                               (long long)batch);
    }
    if (lens) {
        if (lens->dtype != DAB_DT_INT64 && lens->dtype != DAB_DT_INT32)
            return dab_err_set(err, DAB_ETYPE, "sequence_lens must be int64, got %s",
                               dab_dtype_name(lens->dtype));
        if (lens->rank != 1 || lens->dims[0] != batch)
            return dab_err_set(err, DAB_ESHAPE, "sequence_lens is %s; expected [%lld]",
                               dab_shape_str(lens, s1, sizeof s1), (long long)batch);
        for (int64_t b = 0; b < batch; b++) {
            int64_t l = dab_tensor_get_i64(lens, b);
            if (l < 0 || l > seq)
                return dab_err_set(err, DAB_ERANGE,
                                   "sequence_lens[%lld] is %lld, outside [0, %lld]",
                                   (long long)b, (long long)l, (long long)seq);
        }
    }
    p->batch = batch;
    p->seq = seq;
    int64_t slots;
    if (dab_mul_i64(batch, seq, &slots))
        return dab_err_set(err, DAB_ERANGE, "batch times sequence overflows");
    p->slots = slots;
    scan_reset_accs(p, true);
    for (int j = 0; j < p->n_state; j++) {
        p->final[j].set = false;
        p->final[j].axis_attr = 0;
        p->final[j].zero_fill = false;
    }
    for (int i = 0; i < p->n_in; i++)
        p->axis[i] = 0;
    for (int64_t b = 0; b < batch; b++) {
        int64_t len = lens ? dab_tensor_get_i64(lens, b) : seq;
        for (int i = 0; i < p->n_in; i++) {
            const dab_tensor_t *x = node->inputs[p->first + p->n_state + i];
            size_t row = dab_tensor_bytes(x) / (size_t)DAB_MAX(batch, 1);
            /* this entry's [sequence, ...], of which the first len steps are read */
            dab_tensor_set_shape(&p->xs[i], x->dtype, x->rank - 1, x->dims + 1);
            p->xs[i].dims[0] = len;
            p->xs[i].data = (char *)x->data + (size_t)b * row;
        }
        for (int j = 0; j < p->n_state; j++) {
            const dab_tensor_t *st = node->inputs[p->first + j];
            size_t row = dab_tensor_bytes(st) / (size_t)DAB_MAX(batch, 1);
            dab_tensor_set_shape(&p->init[j], st->dtype, st->rank - 1, st->dims + 1);
            p->init[j].data = (char *)st->data + (size_t)b * row;
        }
        int rc = scan_sequence(node, p, len, b * seq, &run, err);
        if (rc)
            return dab_err_prefix(err, "batch entry %lld: ", (long long)b);
        for (int j = 0; j < p->n_state; j++)
            if ((rc = acc_put(&p->final[j], &p->carry.cur[j], b, batch, limit_of(node),
                              "final state", j, b, err)))
                return dab_err_prefix(err, "batch entry %lld: ", (long long)b);
    }
    return 0;
}

static int scan_reshape(dab_node_t *node, dab_err_t *err)
{
    scan_priv_t *p = node->priv;
    const dab_subgraph_api_t *api = node->ctx->sub;
    int rc = p->v8 ? scan8_run(node, p, err) : scan9_run(node, p, err);
    if (rc)
        return rc;
    for (int j = 0; j < p->n_state; j++) {
        dab_tensor_t *o = node->outputs[j];
        if (!o)
            continue;
        if (!p->v8)
            dab_tensor_set_shape(o, p->carry.cur[j].dtype, p->carry.cur[j].rank,
                                 p->carry.cur[j].dims);
        else if (p->final[j].set)
            acc_shape(&p->final[j], p->batch, o);
        else /* an empty batch: the states as given */
            dab_tensor_set_shape(o, node->inputs[p->first + j]->dtype,
                                 node->inputs[p->first + j]->rank,
                                 node->inputs[p->first + j]->dims);
    }
    for (int k = 0; k < p->n_out; k++) {
        dab_tensor_t *o = node->outputs[p->n_state + k];
        if (!o)
            continue;
        if (p->acc[k].set) {
            acc_shape(&p->acc[k], p->slots, o);
        } else {
            dab_tensor_t decl;
            api->declared_output(p->body, p->n_state + k, &decl);
            if ((rc = acc_empty_shape(&p->acc[k], &decl, p->slots, "scan output", k, o, err)))
                return rc;
        }
        if (p->v8) { /* [batch * sequence, ...] is [batch, sequence, ...] */
            if (o->rank >= DAB_MAX_RANK)
                return dab_err_set(err, DAB_ELIMIT, "scan output %d has rank %d; at most %d "
                                   "is supported", k, o->rank + 1, DAB_MAX_RANK);
            memmove(o->dims + 2, o->dims + 1, (size_t)(o->rank - 1) * sizeof o->dims[0]);
            o->dims[0] = p->batch;
            o->dims[1] = p->seq;
            o->rank++;
        }
    }
    return 0;
}

static int scan_compute(dab_node_t *node, dab_err_t *err)
{
    scan_priv_t *p = node->priv;
    for (int j = 0; j < p->n_state; j++) {
        dab_tensor_t *o = node->outputs[j];
        if (!o)
            continue;
        if (!p->v8) {
            copy_out(o, &p->carry.cur[j]);
        } else if (p->final[j].set) {
            dab_tensor_t src = *o;
            src.data = p->final[j].buf.data;
            copy_out(o, &src);
        }
    }
    for (int k = 0; k < p->n_out; k++) {
        dab_tensor_t *o = node->outputs[p->n_state + k];
        if (o && p->acc[k].set) {
            dab_tensor_t src = *o;
            src.data = p->acc[k].buf.data;
            copy_out(o, &src);
        } else if (o) {
            size_t bytes = dab_tensor_bytes(o); /* no step ran: opset 8 pads with zeros */
            if (bytes)
                memset(o->data, 0, bytes);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* the family's table                                                  */
/* ------------------------------------------------------------------ */

#define ANY (DAB_DTM_ALL | DAB_DTM(DAB_DT_STRING) | DAB_DTM_LOWP | DAB_DTM(DAB_DT_FLOAT16) | \
             DAB_DTM(DAB_DT_BFLOAT16))

/* Inputs and outputs are checked in init (M and cond may be omitted: ""). If takes any
 * one-element cond; ONNX's is bool. */
const dab_op_def_t dab_ops_control[] = {
    {"", "If", 1, 0, ANY, -1, 1, 1, 1, -1, if_init, if_reshape, if_compute, if_exit},
    {"", "Loop", 1, 0, ANY, -1, 0, -1, 0, -1, loop_init, loop_reshape, loop_compute, loop_exit},
    {"", "Scan", 8, 8, ANY, -1, 0, -1, 0, -1, scan_init, scan_reshape, scan_compute, scan_exit},
    {"", "Scan", 9, 0, ANY, -1, 1, -1, 0, -1, scan_init, scan_reshape, scan_compute, scan_exit},
    {0},
};
