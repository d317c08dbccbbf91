/*
 * session.c - running a graph: operator state, shape propagation node by node,
 * and the activation arena.
 *
 * Memory plan. Each computed value lives from its producing node to its last
 * reader (graph outputs to the end). The planner packs these intervals into
 * one arena, each value at the lowest 64-byte-aligned offset that does not
 * collide in time and space with a value already placed (largest first).
 * Sizes are the largest seen so far, so one plan serves every smaller shape:
 * a session that has seen batch 32 runs batch 1 inside the same arena. When
 * a run needs more than planned (first run, larger shapes, data-dependent
 * outputs), the values that do not fit get heap blocks for that run and the
 * plan is rebuilt after it. Blocks that outputs may still point into are
 * freed at the start of the next run. Steady state never touches the heap.
 *
 * Views. A node marked DAB_GNODE_VIEW (Reshape and friends, by the optimizer) makes its
 * output share its input's bytes instead of copying them. The output then takes no
 * arena space of its own, and the value owning the bytes lives until the last reader
 * of any view of it. A graph output is a view only of a value computed in this run,
 * never of a caller's input or a constant.
 *
 * Subgraphs. A control-flow op's init asks the session (dab_subgraph_api_t in its
 * dab_exec_ctx_t) for a session over each graph attribute: a child at depth + 1, made
 * once. Values the subgraph reads from enclosing graphs are bound by name at creation to
 * this session's tensors (the node's implicit inputs, which the graph layer made live
 * until the node runs) and copied in, descriptor only, at the start of each child run.
 * A child does not check its inputs' shapes against the subgraph's declarations (loop
 * state may change shape); the op owns the child and frees it in exit.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

#define ARENA_ALIGN 64

struct dab_session {
    const dab_graph_t *g;
    dab_exec_ctx_t ctx;
    size_t max_value_bytes;  /* 0 = unlimited */
    dab_tensor_t *vals;      /* [n_values] */
    dab_node_t *nodes;       /* [n_nodes] */
    dab_tensor_t **ptrs;     /* storage for every node's input and output pointers */
    int *last_use;           /* [n_values]: index of the last node reading it */
    int *alias;              /* [n_values]: value whose memory a view borrows, or -1 */
    size_t *planned_bytes;   /* [n_values]: size reserved in the arena */
    size_t *offsets;         /* [n_values]: offset in the arena */
    size_t scratch_planned;  /* scratch size the next plan reserves (largest seen) */
    size_t scratch_cap;      /* scratch size the current arena holds at scratch_off */
    size_t scratch_off;
    char *arena;
    size_t arena_bytes;
    void **deferred;         /* heap blocks to free at the next run */
    int n_deferred, cap_deferred;
    int inited;              /* number of nodes whose init ran */
    /* A subgraph's session (an If branch, a Loop body): values its graph reads from the
     * enclosing scope, copied from the enclosing session's tensors at each run. */
    int n_outer;
    int *outer_v;                   /* [n_outer] values of g */
    const dab_tensor_t **outer_src; /* [n_outer] the enclosing session's tensors */
    bool is_sub;                    /* inputs' shapes are not checked against declarations */
};

static const dab_subgraph_api_t g_sub_api;

static int defer_free(dab_session_t *s, void *p, dab_err_t *err)
{
    if (s->n_deferred == s->cap_deferred) {
        int ncap = s->cap_deferred ? s->cap_deferred * 2 : 16;
        void **np = dab_realloc(s->deferred, (size_t)ncap * sizeof *np);
        if (!np) {
            dab_free(p);
            return dab_err_set(err, DAB_ENOMEM, "out of memory");
        }
        s->deferred = np;
        s->cap_deferred = ncap;
    }
    s->deferred[s->n_deferred++] = p;
    return 0;
}

static void free_deferred(dab_session_t *s)
{
    for (int i = 0; i < s->n_deferred; i++)
        dab_free(s->deferred[i]);
    s->n_deferred = 0;
}

/* True when g itself defines value v (a node's output, a constant or an input); the
 * others of a subgraph are read from the enclosing scope. */
static bool defined_in(const dab_graph_t *g, int v)
{
    const dab_value_t *val = &g->values[v];
    return val->producer >= 0 || val->const_data || val->is_input;
}

static void reset_value(dab_session_t *s, int v)
{
    const dab_value_t *val = &s->g->values[v];
    dab_tensor_t *t = &s->vals[v];
    if (val->const_data) {
        *t = *val->const_data;
        return;
    }
    memset(t, 0, sizeof *t);
    t->dtype = val->dtype;
    t->rank = -1;
}

/* Creates a session over g at subgraph depth `depth` (0 for a top-level one). */
static int session_create(const dab_graph_t *g, const dab_session_opts_t *opts, int depth,
                          dab_session_t **out, dab_err_t *err)
{
    *out = NULL;
    for (int n = 0; n < g->n_nodes; n++) {
        const dab_gnode_t *gn = &g->nodes[n];
        if (!gn->op)
            return dab_err_set(err, DAB_EUNSUPPORTED, "node '%s': operator %s%s%s (opset %d) %s",
                               gn->name, gn->domain[0] ? gn->domain : "",
                               gn->domain[0] ? ":" : "", gn->op_type, gn->opset,
                               dab_op_known(gn->domain, gn->op_type)
                                   ? "is not supported at this opset version"
                                   : "is not supported");
    }
    dab_session_t *s = dab_calloc(1, sizeof *s);
    if (!s)
        return dab_err_set(err, DAB_ENOMEM, "out of memory");
    s->g = g;
    s->ctx.threads = opts && opts->threads > 0 ? opts->threads : dab_cpu_count();
    s->max_value_bytes = opts ? opts->max_value_bytes : 0;
    s->ctx.max_value_bytes = s->max_value_bytes;
    s->ctx.sub = &g_sub_api;
    s->ctx.sub_owner = s;
    s->ctx.depth = depth;
    size_t nv = (size_t)g->n_values + 1, nn = (size_t)g->n_nodes + 1;
    size_t nptr = 1;
    for (int n = 0; n < g->n_nodes; n++)
        nptr += (size_t)g->nodes[n].n_inputs + (size_t)g->nodes[n].n_outputs;
    s->vals = dab_calloc(nv, sizeof *s->vals);
    s->nodes = dab_calloc(nn, sizeof *s->nodes);
    s->ptrs = dab_calloc(nptr, sizeof *s->ptrs);
    s->last_use = dab_calloc(nv, sizeof *s->last_use);
    s->planned_bytes = dab_calloc(nv, sizeof *s->planned_bytes);
    s->offsets = dab_calloc(nv, sizeof *s->offsets);
    s->alias = dab_malloc(nv * sizeof *s->alias);
    if (!s->vals || !s->nodes || !s->ptrs || !s->last_use || !s->planned_bytes || !s->offsets ||
        !s->alias) {
        dab_session_free(s);
        return dab_err_set(err, DAB_ENOMEM, "out of memory creating a session");
    }
    for (int v = 0; v < g->n_values; v++) {
        reset_value(s, v);
        s->last_use[v] = g->values[v].producer;
        s->alias[v] = -1;
    }
    for (int i = 0; i < g->n_outputs; i++)
        s->last_use[g->outputs[i]] = g->n_nodes;
    dab_tensor_t **p = s->ptrs;
    for (int n = 0; n < g->n_nodes; n++) {
        const dab_gnode_t *gn = &g->nodes[n];
        dab_node_t *node = &s->nodes[n];
        node->name = gn->name;
        node->op_type = gn->op_type;
        node->domain = gn->domain;
        node->opset = gn->opset;
        node->n_inputs = gn->n_inputs;
        node->n_outputs = gn->n_outputs;
        node->inputs = p;
        p += gn->n_inputs;
        node->outputs = p;
        p += gn->n_outputs;
        node->n_attrs = gn->n_attrs;
        node->attrs = gn->attrs;
        node->op = gn->op;
        node->ctx = &s->ctx;
        for (int k = 0; k < gn->n_inputs; k++) {
            int v = gn->inputs[k];
            node->inputs[k] = v >= 0 ? &s->vals[v] : NULL;
            if (v >= 0 && s->last_use[v] < n)
                s->last_use[v] = n;
        }
        for (int k = 0; k < gn->n_outputs; k++)
            node->outputs[k] = gn->outputs[k] >= 0 ? &s->vals[gn->outputs[k]] : NULL;
        /* values the node's subgraphs read must live until the node has run */
        for (int k = 0; k < gn->n_implicit; k++)
            if (s->last_use[gn->implicit[k]] < n)
                s->last_use[gn->implicit[k]] = n;
        const dab_op_def_t *op = gn->op;
        if (gn->n_inputs < op->min_inputs || (op->max_inputs >= 0 && gn->n_inputs > op->max_inputs) ||
            gn->n_outputs < op->min_outputs ||
            (op->max_outputs >= 0 && gn->n_outputs > op->max_outputs)) {
            dab_err_set(err, DAB_EFORMAT,
                        "node '%s' (%s) has %d inputs and %d outputs; the operator takes %d..%d "
                        "inputs and %d..%d outputs",
                        gn->name, gn->op_type, gn->n_inputs, gn->n_outputs, op->min_inputs,
                        op->max_inputs, op->min_outputs, op->max_outputs);
            dab_session_free(s);
            return err ? err->code : DAB_EFORMAT;
        }
        /* ONNX puts required inputs and outputs first: an omitted one ("") is a malformed
         * node, refused here so that operators may rely on them. */
        for (int k = 0; k < op->min_inputs + op->min_outputs; k++) {
            bool in = k < op->min_inputs;
            int idx = in ? k : k - op->min_inputs;
            if ((in ? gn->inputs[idx] : gn->outputs[idx]) >= 0)
                continue;
            dab_err_set(err, DAB_EFORMAT,
                        "node '%s' (%s) omits its %s %d, which the operator requires", gn->name,
                        gn->op_type, in ? "input" : "output", idx);
            dab_session_free(s);
            return DAB_EFORMAT;
        }
    }
    /* A view borrows its input's bytes, so the input lives as long as the view's last
     * reader; walking backwards carries that along chains of views to the owner. */
    for (int n = 0; n < g->n_nodes; n++) {
        const dab_gnode_t *gn = &g->nodes[n];
        if (!(gn->flags & DAB_GNODE_VIEW) || gn->n_inputs < 1 || gn->inputs[0] < 0 ||
            gn->n_outputs < 1 || gn->outputs[0] < 0)
            continue;
        int src = gn->inputs[0], out = gn->outputs[0], owner = src;
        while (s->alias[owner] >= 0)
            owner = s->alias[owner];
        if (g->values[out].is_output && g->values[owner].producer < 0)
            continue;
        s->alias[out] = src;
    }
    for (int n = g->n_nodes - 1; n >= 0; n--) {
        const dab_gnode_t *gn = &g->nodes[n];
        int out = gn->n_outputs >= 1 ? gn->outputs[0] : -1;
        if (out >= 0 && s->alias[out] >= 0 && s->last_use[s->alias[out]] < s->last_use[out])
            s->last_use[s->alias[out]] = s->last_use[out];
    }
    for (int n = 0; n < g->n_nodes; n++) {
        dab_node_t *node = &s->nodes[n];
        if (node->op->init) {
            dab_err_t e = {0};
            int rc = node->op->init(node, &e);
            if (rc) {
                dab_err_set(err, rc, "node '%s' (%s): %s", node->name, node->op_type,
                            e.msg[0] ? e.msg : dab_strerror(rc));
                /* an init may fail after making its state: its exit frees what there is */
                if (node->priv && node->op->exit)
                    node->op->exit(node);
                node->priv = NULL;
                dab_session_free(s);
                return rc;
            }
        }
        s->inited = n + 1;
    }
    *out = s;
    return 0;
}

int dab_session_create(const dab_graph_t *g, const dab_session_opts_t *opts,
                       dab_session_t **out, dab_err_t *err)
{
    return session_create(g, opts, 0, out, err);
}

void dab_session_free(dab_session_t *s)
{
    if (!s)
        return;
    for (int n = 0; n < s->inited; n++)
        if (s->nodes[n].op->exit)
            s->nodes[n].op->exit(&s->nodes[n]);
    free_deferred(s);
    dab_free(s->deferred);
    dab_free(s->arena);
    dab_free(s->vals);
    dab_free(s->nodes);
    dab_free(s->ptrs);
    dab_free(s->last_use);
    dab_free(s->alias);
    dab_free(s->planned_bytes);
    dab_free(s->offsets);
    dab_free(s->outer_v);
    dab_free(s->outer_src);
    dab_free(s);
}

size_t dab_session_arena_bytes(const dab_session_t *s)
{
    return s->arena_bytes;
}

typedef struct plan_item {
    int v;
    size_t bytes;
} plan_item_t;

static int cmp_items(const void *a, const void *b)
{
    const plan_item_t *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? 1 : -1;
    return x->v - y->v;
}

/* Rebuilds the arena from planned_bytes and lifetimes. The old arena is deferred. */
static int replan(dab_session_t *s, dab_err_t *err)
{
    const dab_graph_t *g = s->g;
    int n = 0;
    plan_item_t *items = dab_malloc(((size_t)g->n_values + 1) * sizeof *items);
    int *placed = dab_malloc(((size_t)g->n_values + 1) * sizeof *placed);
    if (!items || !placed) {
        dab_free(items);
        dab_free(placed);
        return dab_err_set(err, DAB_ENOMEM, "out of memory planning activations");
    }
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].producer >= 0 && s->planned_bytes[v])
            items[n++] = (plan_item_t){v, DAB_ALIGN_UP(s->planned_bytes[v], ARENA_ALIGN)};
    qsort(items, (size_t)n, sizeof *items, cmp_items);
    size_t total = 0;
    int n_placed = 0;
    for (int i = 0; i < n; i++) {
        int v = items[i].v;
        int b0 = g->values[v].producer, e0 = s->last_use[v];
        size_t off = 0;
        /* Lowest offset clear of every placed value alive at the same time. Restart the
         * scan whenever a collision moves the candidate. */
        for (int again = 1; again;) {
            again = 0;
            for (int j = 0; j < n_placed; j++) {
                int w = placed[j];
                int b1 = g->values[w].producer, e1 = s->last_use[w];
                if (e0 < b1 || e1 < b0)
                    continue;
                size_t wo = s->offsets[w], we = wo + DAB_ALIGN_UP(s->planned_bytes[w], ARENA_ALIGN);
                if (off < we && wo < off + items[i].bytes) {
                    off = we;
                    again = 1;
                }
            }
        }
        s->offsets[v] = off;
        placed[n_placed++] = v;
        total = DAB_MAX(total, off + items[i].bytes);
    }
    dab_free(items);
    dab_free(placed);
    s->scratch_off = total;
    s->scratch_cap = s->scratch_planned;
    total += DAB_ALIGN_UP(s->scratch_planned, ARENA_ALIGN);
    char *arena = dab_malloc_aligned(total ? total : 1, 4096);
    if (!arena)
        return dab_err_set(err, DAB_ENOMEM, "out of memory allocating a %zu-byte arena", total);
    if (s->arena && defer_free(s, s->arena, err)) {
        dab_free(arena);
        s->arena = NULL;
        s->arena_bytes = 0;
        return DAB_ENOMEM;
    }
    s->arena = arena;
    s->arena_bytes = total;
    return 0;
}

/* Checks a caller's input against the declaration and binds it. */
static int bind_input(dab_session_t *s, int i, const dab_tensor_t *in, dab_err_t *err)
{
    const dab_value_t *val = &s->g->values[s->g->inputs[i]];
    dab_tensor_t *t = &s->vals[s->g->inputs[i]];
    if (!in || !in->data)
        return dab_err_set(err, DAB_EINVAL, "input '%s' is missing", val->name);
    if (val->dtype != DAB_DT_UNDEFINED && in->dtype != val->dtype)
        return dab_err_set(err, DAB_ETYPE, "input '%s' must be %s, got %s", val->name,
                           dab_dtype_name(val->dtype), dab_dtype_name(in->dtype));
    int rc = dab_shape_check(val->name, in->dtype, in->rank, in->dims, 0, NULL, err);
    if (rc)
        return rc;
    /* A subgraph's declared input shapes are hints: loop-carried values and scan slices
     * may change shape from one iteration to the next. */
    if (val->rank >= 0 && !s->is_sub) {
        if (in->rank != val->rank)
            return dab_err_set(err, DAB_ESHAPE, "input '%s' must have rank %d, got %d", val->name,
                               val->rank, in->rank);
        for (int d = 0; d < val->rank; d++)
            if (val->dims[d] >= 0 && in->dims[d] != val->dims[d])
                return dab_err_set(err, DAB_ESHAPE,
                                   "input '%s' must have %lld at axis %d, got %lld", val->name,
                                   (long long)val->dims[d], d, (long long)in->dims[d]);
    }
    *t = *in;
    return 0;
}

int dab_session_run(dab_session_t *s, const dab_tensor_t *const *inputs,
                    const dab_tensor_t **outputs, dab_err_t *err)
{
    const dab_graph_t *g = s->g;
    int rc = 0;
    free_deferred(s);
    for (int i = 0; i < g->n_inputs; i++)
        if ((rc = bind_input(s, i, inputs[i], err)))
            return rc;
    for (int i = 0; i < s->n_outer; i++) {
        const dab_tensor_t *src = s->outer_src[i];
        if (!src->data || src->rank < 0)
            return dab_err_set(err, DAB_EINVAL, "outer value '%s' has not been computed",
                               g->values[s->outer_v[i]].name);
        s->vals[s->outer_v[i]] = *src;
    }
    omp_set_num_threads(s->ctx.threads);
    bool overflow = false;
    for (int n = 0; n < g->n_nodes; n++) {
        dab_node_t *node = &s->nodes[n];
        const dab_gnode_t *gn = &g->nodes[n];
        const dab_op_def_t *op = node->op;
        dab_err_t e;
        e.code = 0;
        e.msg[0] = 0;
        if (op->dtype_input >= 0 && op->dtype_input < node->n_inputs &&
            node->inputs[op->dtype_input]) {
            dab_dtype_t dt = node->inputs[op->dtype_input]->dtype;
            if (!(op->dtypes & DAB_DTM(dt))) {
                rc = dab_err_set(&e, DAB_EUNSUPPORTED, "input %d has data type %s, which %s does not support",
                                 op->dtype_input, dab_dtype_name(dt), node->op_type);
                goto node_fail;
            }
        }
        node->scratch_bytes = 0;
        if ((rc = op->reshape(node, &e)))
            goto node_fail;
        /* A view whose bytes match its input's takes them as they are: nothing to run. */
        if (gn->n_outputs >= 1 && gn->outputs[0] >= 0 && s->alias[gn->outputs[0]] >= 0) {
            dab_tensor_t *t = node->outputs[0], *in = node->inputs[0];
            size_t bytes;
            if ((rc = dab_shape_check(g->values[gn->outputs[0]].name, t->dtype, t->rank, t->dims,
                                      s->max_value_bytes, &bytes, &e)))
                goto node_fail;
            if (t->dtype == in->dtype && bytes == dab_tensor_bytes(in)) {
                t->data = in->data;
                continue;
            }
        }
        for (int k = 0; k < node->n_outputs; k++) {
            int v = gn->outputs[k];
            if (v < 0)
                continue;
            dab_tensor_t *t = &s->vals[v];
            size_t bytes;
            if ((rc = dab_shape_check(g->values[v].name, t->dtype, t->rank, t->dims,
                                      s->max_value_bytes, &bytes, &e)))
                goto node_fail;
            if (s->arena && bytes <= s->planned_bytes[v]) {
                t->data = s->arena + s->offsets[v];
            } else {
                overflow = true;
                s->planned_bytes[v] = DAB_MAX(s->planned_bytes[v], bytes);
                t->data = dab_malloc(bytes ? bytes : 1);
                if (!t->data || defer_free(s, t->data, &e)) {
                    rc = dab_err_set(&e, DAB_ENOMEM, "out of memory for output '%s' (%zu bytes)",
                                     g->values[v].name, bytes);
                    goto node_fail;
                }
            }
        }
        node->scratch = NULL;
        if (s->max_value_bytes && node->scratch_bytes > s->max_value_bytes) {
            rc = dab_err_set(&e, DAB_ELIMIT, "needs %zu bytes of scratch, more than the limit of %zu",
                             node->scratch_bytes, s->max_value_bytes);
            goto node_fail;
        }
        if (node->scratch_bytes) {
            if (s->arena && node->scratch_bytes <= s->scratch_cap) {
                node->scratch = s->arena + s->scratch_off;
            } else {
                overflow = true;
                s->scratch_planned = DAB_MAX(s->scratch_planned, node->scratch_bytes);
                node->scratch = dab_malloc(node->scratch_bytes);
                if (!node->scratch || defer_free(s, node->scratch, &e)) {
                    rc = dab_err_set(&e, DAB_ENOMEM, "out of memory for %zu bytes of scratch",
                                     node->scratch_bytes);
                    goto node_fail;
                }
            }
        }
        if ((rc = op->compute(node, &e)))
            goto node_fail;
        continue;
    node_fail:
        return dab_err_set(err, rc, "node '%s' (%s): %s", node->name, node->op_type,
                           e.msg[0] ? e.msg : dab_strerror(rc));
    }
    for (int i = 0; i < g->n_outputs; i++)
        outputs[i] = &s->vals[g->outputs[i]];
    if (overflow && (rc = replan(s, err)))
        return rc;
    return 0;
}

/* ---- subgraphs: the callbacks control-flow operators run their bodies with ---- */

/* True when value v of g is read by a node (input or implicit input) or is an output. */
static bool value_read(const dab_graph_t *g, int v)
{
    for (int n = 0; n < g->n_nodes; n++) {
        const dab_gnode_t *gn = &g->nodes[n];
        for (int k = 0; k < gn->n_inputs; k++)
            if (gn->inputs[k] == v)
                return true;
        for (int k = 0; k < gn->n_implicit; k++)
            if (gn->implicit[k] == v)
                return true;
    }
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v)
            return true;
    return false;
}

static int sub_create(dab_node_t *node, const dab_graph_t *body, dab_subgraph_t **out,
                      dab_err_t *err)
{
    *out = NULL;
    dab_session_t *s = node->ctx ? node->ctx->sub_owner : NULL;
    if (!s || node < s->nodes || node >= s->nodes + s->g->n_nodes || !body)
        return dab_err_set(err, DAB_EINVAL, "a subgraph runner needs a node of a session");
    const dab_gnode_t *gn = &s->g->nodes[node - s->nodes];
    if (body->parent != s->g)
        return dab_err_set(err, DAB_EINVAL, "subgraph '%s' does not belong to this graph",
                           body->name);
    if (s->ctx.depth + 1 > DAB_GRAPH_MAX_DEPTH)
        return dab_err_set(err, DAB_ELIMIT, "subgraphs nest deeper than %d levels",
                           DAB_GRAPH_MAX_DEPTH);
    dab_session_opts_t o = {.threads = s->ctx.threads, .max_value_bytes = s->max_value_bytes};
    dab_session_t *c = NULL;
    int rc = session_create(body, &o, s->ctx.depth + 1, &c, err);
    if (rc)
        return rc;
    c->is_sub = true;
    int n_free = 0;
    for (int v = 0; v < body->n_values; v++)
        if (!defined_in(body, v))
            n_free++;
    c->outer_v = dab_malloc(((size_t)n_free + 1) * sizeof *c->outer_v);
    c->outer_src = dab_malloc(((size_t)n_free + 1) * sizeof *c->outer_src);
    if (!c->outer_v || !c->outer_src) {
        dab_session_free(c);
        return dab_err_set(err, DAB_ENOMEM, "out of memory creating a subgraph session");
    }
    for (int v = 0; v < body->n_values; v++) {
        if (defined_in(body, v))
            continue;
        const char *name = body->values[v].name;
        int k = 0;
        while (k < gn->n_implicit && strcmp(s->g->values[gn->implicit[k]].name, name))
            k++;
        if (k < gn->n_implicit) {
            c->outer_v[c->n_outer] = v;
            c->outer_src[c->n_outer++] = &s->vals[gn->implicit[k]];
        } else if (value_read(body, v)) {
            dab_session_free(c);
            return dab_err_set(err, DAB_EFORMAT,
                               "subgraph '%s' reads '%s', which the enclosing graph does not "
                               "provide",
                               body->name, body->values[v].name);
        }
    }
    *out = (dab_subgraph_t *)c;
    return 0;
}

static void sub_counts(const dab_subgraph_t *sg, int *n_inputs, int *n_outputs)
{
    const dab_session_t *c = (const dab_session_t *)sg;
    *n_inputs = c->g->n_inputs;
    *n_outputs = c->g->n_outputs;
}

static void sub_declared_output(const dab_subgraph_t *sg, int k, dab_tensor_t *decl)
{
    const dab_session_t *c = (const dab_session_t *)sg;
    const dab_value_t *val = &c->g->values[c->g->outputs[k]];
    memset(decl, 0, sizeof *decl);
    decl->dtype = val->dtype;
    decl->rank = val->rank;
    for (int d = 0; d < val->rank && d < DAB_MAX_RANK; d++)
        decl->dims[d] = val->dims[d];
}

static int sub_run(dab_subgraph_t *sg, const dab_tensor_t *const *inputs,
                   const dab_tensor_t **outputs, dab_err_t *err)
{
    return dab_session_run((dab_session_t *)sg, inputs, outputs, err);
}

static void sub_free(dab_subgraph_t *sg)
{
    dab_session_free((dab_session_t *)sg);
}

static const dab_subgraph_api_t g_sub_api = {sub_create, sub_counts, sub_declared_output, sub_run,
                                             sub_free};
