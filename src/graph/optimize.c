/*
 * optimize.c - graph passes run once after loading: constant folding, dead-node
 * removal, common-subexpression elimination and view marking (level basic), then
 * the fusions of optimize_fuse.c (level all). Each pass rewrites the finalized graph
 * and re-finalizes it, so every pass sees nodes in topological order with producers
 * and operators bound. Passes never rename graph inputs or outputs and never touch a
 * value that a subgraph may read by name from the outer scope.
 */
#include <stdio.h>
#include <string.h>

#include "optimize_int.h"

int dab_opt_level_parse(const char *s, dab_opt_level_t *out, dab_err_t *err)
{
    if (!strcmp(s, "none"))
        *out = DAB_OPT_NONE;
    else if (!strcmp(s, "basic"))
        *out = DAB_OPT_BASIC;
    else if (!strcmp(s, "all"))
        *out = DAB_OPT_ALL;
    else
        return dab_err_set(err, DAB_EINVAL, "optimization level must be none, basic or all, got '%s'",
                           s);
    return 0;
}

const char *dab_opt_level_name(dab_opt_level_t level)
{
    return level == DAB_OPT_NONE ? "none" : level == DAB_OPT_BASIC ? "basic" : "all";
}

/* ---- shared helpers ---- */

static bool sub_mentions(const dab_graph_t *g, const char *name)
{
    for (int i = 0; i < g->n_subgraphs; i++) {
        const dab_graph_t *s = g->subgraphs[i];
        if (dab_graph_find_value(s, name) >= 0 || sub_mentions(s, name))
            return true;
    }
    return false;
}

bool dab_opt_pinned(const dab_graph_t *g, int v)
{
    const dab_value_t *val = &g->values[v];
    return val->is_input || val->is_output || (g->n_subgraphs && sub_mentions(g, val->name));
}

int *dab_opt_use_counts(const dab_graph_t *g)
{
    int *uses = dab_calloc((size_t)g->n_values + 1, sizeof *uses);
    if (!uses)
        return NULL;
    for (int n = 0; n < g->n_nodes; n++)
        for (int k = 0; k < g->nodes[n].n_inputs; k++)
            if (g->nodes[n].inputs[k] >= 0)
                uses[g->nodes[n].inputs[k]]++;
    for (int n = 0; n < g->n_nodes; n++)
        for (int k = 0; k < g->nodes[n].n_implicit; k++)
            uses[g->nodes[n].implicit[k]]++;
    for (int i = 0; i < g->n_outputs; i++)
        uses[g->outputs[i]]++;
    return uses;
}

void dab_opt_replace_uses(dab_graph_t *g, int from, int to)
{
    for (int n = 0; n < g->n_nodes; n++)
        for (int k = 0; k < g->nodes[n].n_inputs; k++)
            if (g->nodes[n].inputs[k] == from)
                g->nodes[n].inputs[k] = to;
}

int dab_opt_commit(dab_graph_t *g, const bool *removed, int n_marked, dab_err_t *err)
{
    int kept = 0;
    for (int n = 0; n < g->n_nodes; n++) {
        dab_gnode_t *node = &g->nodes[n];
        if (n >= n_marked || !removed[n]) {
            g->nodes[kept++] = *node;
            continue;
        }
        dab_free(node->name);
        dab_free(node->op_type);
        dab_free(node->domain);
        dab_free(node->inputs);
        dab_free(node->outputs);
        dab_free(node->attrs);
        dab_free(node->implicit);
    }
    g->n_nodes = kept;
    return dab_graph_finalize(g, err);
}

bool dab_opt_is(const dab_graph_t *g, int n, const char *op_type)
{
    const dab_gnode_t *node = &g->nodes[n];
    return (!node->domain[0] || !strcmp(node->domain, "ai.onnx")) &&
           !strcmp(node->op_type, op_type);
}

int dab_opt_producer(const dab_graph_t *g, int v, const char *op_type)
{
    if (v < 0)
        return -1;
    int p = g->values[v].producer;
    return p >= 0 && dab_opt_is(g, p, op_type) ? p : -1;
}

const float *dab_opt_const_f32(const dab_graph_t *g, int v, int64_t *numel)
{
    if (v < 0)
        return NULL;
    const dab_value_t *val = &g->values[v];
    if (!val->const_data || val->is_input || val->const_data->dtype != DAB_DT_FLOAT)
        return NULL;
    *numel = dab_tensor_numel(val->const_data);
    return val->const_data->data;
}

int dab_opt_new_value(dab_graph_t *g, const char *base)
{
    char name[512];
    snprintf(name, sizeof name, "%s", base);
    for (int i = 1; dab_graph_find_value(g, name) >= 0 || sub_mentions(g, name); i++)
        snprintf(name, sizeof name, "%s__opt%d", base, i);
    return dab_graph_value(g, name);
}

int dab_opt_new_const_f32(dab_graph_t *g, const char *base, int rank, const int64_t *dims,
                          const float *data)
{
    dab_tensor_t *t = dab_calloc(1, sizeof *t);
    if (!t || dab_graph_own(g, t))
        return DAB_ENOMEM;
    t->dtype = DAB_DT_FLOAT;
    t->rank = rank;
    for (int d = 0; d < rank; d++)
        t->dims[d] = dims[d];
    size_t bytes = dab_tensor_bytes(t);
    t->data = dab_malloc(bytes ? bytes : 1);
    if (!t->data || dab_graph_own(g, t->data))
        return DAB_ENOMEM;
    if (bytes)
        memcpy(t->data, data, bytes);
    int v = dab_opt_new_value(g, base);
    if (v < 0)
        return v;
    dab_value_t *val = &g->values[v];
    val->const_data = t;
    val->dtype = DAB_DT_FLOAT;
    val->rank = rank;
    for (int d = 0; d < rank; d++)
        val->dims[d] = dims[d];
    return v;
}

int dab_opt_new_node(dab_graph_t *g, const char *op_type, const char *name, int n_in,
                     const int *ins, int n_out, const int *outs, int max_attrs)
{
    int ni = dab_graph_add_node(g);
    if (ni < 0)
        return ni;
    dab_gnode_t *n = &g->nodes[ni];
    n->name = dab_strdup(name);
    n->op_type = dab_strdup(op_type);
    n->domain = dab_strdup("");
    n->inputs = dab_malloc(((size_t)n_in + 1) * sizeof *n->inputs);
    n->outputs = dab_malloc(((size_t)n_out + 1) * sizeof *n->outputs);
    n->attrs = dab_calloc((size_t)max_attrs + 1, sizeof *n->attrs);
    if (!n->name || !n->op_type || !n->domain || !n->inputs || !n->outputs || !n->attrs)
        return DAB_ENOMEM; /* the half-made node is freed with the graph */
    n->n_inputs = n_in;
    n->n_outputs = n_out;
    memcpy(n->inputs, ins, (size_t)n_in * sizeof *ins);
    memcpy(n->outputs, outs, (size_t)n_out * sizeof *outs);
    return ni;
}

void dab_opt_attr_int(dab_graph_t *g, int n, const char *name, int64_t v)
{
    dab_gnode_t *node = &g->nodes[n];
    dab_attr_t *a = &node->attrs[node->n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->type = DAB_ATTR_INT;
    a->i = v;
}

void dab_opt_attr_float(dab_graph_t *g, int n, const char *name, float v)
{
    dab_gnode_t *node = &g->nodes[n];
    dab_attr_t *a = &node->attrs[node->n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->type = DAB_ATTR_FLOAT;
    a->f = v;
}

int dab_opt_attr_string(dab_graph_t *g, int n, const char *name, const char *v)
{
    dab_gnode_t *node = &g->nodes[n];
    dab_attr_t *a = &node->attrs[node->n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->type = DAB_ATTR_STRING;
    a->s = v;
    a->s_len = strlen(v);
    return 0;
}

/* ---- constant folding ---- */

/* Operators whose output is not a function of their inputs: never folded or merged. */
static bool nondeterministic(const dab_gnode_t *node)
{
    static const char *const names[] = {"RandomNormal", "RandomNormalLike", "RandomUniform",
                                        "RandomUniformLike", "Multinomial", "Bernoulli",
                                        "Dropout"};
    for (size_t i = 0; i < DAB_ARRAY_LEN(names); i++)
        if (!strcmp(node->op_type, names[i]))
            return true;
    return false;
}

static bool has_graph_attr(const dab_gnode_t *node)
{
    for (int a = 0; a < node->n_attrs; a++)
        if (node->attrs[a].type == DAB_ATTR_GRAPH || node->attrs[a].type == DAB_ATTR_GRAPHS)
            return true;
    return false;
}

/* Whether node n may be evaluated once at load: all present inputs are constants that
 * the caller cannot override, and nothing about the node depends on run time. */
static bool foldable(const dab_graph_t *g, int n)
{
    const dab_gnode_t *node = &g->nodes[n];
    if (!node->op || nondeterministic(node) || has_graph_attr(node))
        return false;
    int present = 0;
    for (int k = 0; k < node->n_inputs; k++) {
        int v = node->inputs[k];
        if (v < 0)
            continue;
        const dab_value_t *val = &g->values[v];
        if (!val->const_data || val->is_input || val->const_data->dtype == DAB_DT_STRING)
            return false;
        present++;
    }
    if (!present)
        return false;
    for (int k = 0; k < node->n_outputs; k++)
        if (node->outputs[k] >= 0 && dab_opt_pinned(g, node->outputs[k]) &&
            !g->values[node->outputs[k]].is_output)
            return false; /* read by a subgraph by name: leave it computed */
    return true;
}

/* Runs node n alone in a throwaway session over constants borrowed from g and, when it
 * succeeds within the size bounds, turns its outputs into constants of g. Returns 1
 * when folded, 0 when left alone, DAB_ENOMEM. */
static int fold_node(dab_graph_t *g, int n, size_t *budget)
{
    const dab_gnode_t *node = &g->nodes[n];
    dab_graph_t *m = dab_graph_new("fold");
    dab_session_t *s = NULL;
    int rc = DAB_ENOMEM, res = 0;
    if (!m)
        return DAB_ENOMEM;
    int ni = dab_graph_add_node(m);
    if (ni < 0)
        goto done;
    dab_gnode_t *mn = &m->nodes[ni];
    mn->name = dab_strdup(node->name);
    mn->op_type = dab_strdup(node->op_type);
    mn->domain = dab_strdup(node->domain);
    mn->inputs = dab_malloc(((size_t)node->n_inputs + 1) * sizeof *mn->inputs);
    mn->outputs = dab_malloc(((size_t)node->n_outputs + 1) * sizeof *mn->outputs);
    mn->attrs = dab_malloc(((size_t)node->n_attrs + 1) * sizeof *mn->attrs);
    m->outputs = dab_malloc(((size_t)node->n_outputs + 1) * sizeof *m->outputs);
    if (!mn->name || !mn->op_type || !mn->domain || !mn->inputs || !mn->outputs || !mn->attrs ||
        !m->outputs)
        goto done;
    memcpy(mn->attrs, node->attrs, (size_t)node->n_attrs * sizeof *mn->attrs);
    mn->n_attrs = node->n_attrs;
    mn->op = node->op;
    mn->opset = node->opset;
    for (int k = 0; k < node->n_inputs; k++) {
        int v = node->inputs[k], mv = -1;
        if (v >= 0) {
            if ((mv = dab_graph_value(m, g->values[v].name)) < 0)
                goto done;
            m->values[mv].const_data = g->values[v].const_data; /* borrowed, not freed */
            m->values[mv].dtype = g->values[v].const_data->dtype;
        }
        m->nodes[ni].inputs[m->nodes[ni].n_inputs++] = mv;
    }
    for (int k = 0; k < node->n_outputs; k++) {
        int v = node->outputs[k], mv = -1;
        if (v >= 0) {
            if ((mv = dab_graph_value(m, g->values[v].name)) < 0)
                goto done;
            m->values[mv].producer = ni;
            m->values[mv].is_output = true;
            m->outputs[m->n_outputs++] = mv;
        }
        m->nodes[ni].outputs[m->nodes[ni].n_outputs++] = mv;
    }
    dab_session_opts_t so = {.threads = 1, .max_value_bytes = DAB_OPT_FOLD_MAX_BYTES};
    const dab_tensor_t *outs[64];
    rc = 0;
    if (m->n_outputs > (int)DAB_ARRAY_LEN(outs))
        goto done;
    dab_err_t e = {0};
    if (dab_session_create(m, &so, &s, &e) || dab_session_run(s, NULL, outs, &e))
        goto done; /* the run reports the same problem with the real inputs later */
    size_t total = 0;
    for (int i = 0; i < m->n_outputs; i++) {
        if (outs[i]->dtype == DAB_DT_STRING || outs[i]->rank < 0)
            goto done;
        total += dab_tensor_bytes(outs[i]);
    }
    if (total > *budget)
        goto done;
    /* Copy every output before touching g, so a failure leaves g unchanged. */
    dab_tensor_t *made[DAB_ARRAY_LEN(outs)] = {0};
    rc = DAB_ENOMEM;
    for (int i = 0; i < m->n_outputs; i++) {
        dab_tensor_t *t = dab_calloc(1, sizeof *t);
        if (!t || dab_graph_own(g, t))
            goto done;
        *t = *outs[i];
        size_t bytes = dab_tensor_bytes(t);
        t->data = dab_malloc(bytes ? bytes : 1);
        if (!t->data || dab_graph_own(g, t->data))
            goto done;
        if (bytes)
            memcpy(t->data, outs[i]->data, bytes);
        made[i] = t;
    }
    for (int k = 0, i = 0; k < node->n_outputs; k++) {
        int v = node->outputs[k];
        if (v < 0)
            continue;
        dab_value_t *val = &g->values[v];
        val->const_data = made[i++];
        val->dtype = val->const_data->dtype;
        val->rank = val->const_data->rank;
        for (int d = 0; d < DAB_MAX_RANK; d++) {
            val->dims[d] = d < val->rank ? val->const_data->dims[d] : 0;
            dab_free(val->dim_params[d]);
            val->dim_params[d] = NULL;
        }
    }
    *budget -= total;
    rc = 0;
    res = 1;
done:
    dab_session_free(s);
    dab_graph_free(m);
    return rc ? rc : res;
}

int dab_opt_fold(dab_graph_t *g, size_t *budget_bytes, dab_err_t *err)
{
    bool *removed = dab_calloc((size_t)g->n_nodes + 1, sizeof *removed);
    if (!removed)
        return dab_err_set(err, DAB_ENOMEM, "out of memory folding constants");
    int folded = 0;
    /* Topological order: a folded node's outputs are constants for the nodes after it. */
    for (int n = 0; n < g->n_nodes; n++) {
        if (!foldable(g, n))
            continue;
        int rc = fold_node(g, n, budget_bytes);
        if (rc < 0) {
            dab_free(removed);
            return dab_err_set(err, rc, "out of memory folding node '%s'", g->nodes[n].name);
        }
        if (rc) {
            removed[n] = true;
            folded++;
        }
    }
    int rc = folded ? dab_opt_commit(g, removed, g->n_nodes, err) : 0;
    dab_free(removed);
    return rc ? rc : folded;
}

/* ---- dead nodes ---- */

int dab_opt_dead(dab_graph_t *g, dab_err_t *err)
{
    bool *live = dab_calloc((size_t)g->n_values + 1, sizeof *live);
    bool *removed = dab_calloc((size_t)g->n_nodes + 1, sizeof *removed);
    if (!live || !removed) {
        dab_free(live);
        dab_free(removed);
        return dab_err_set(err, DAB_ENOMEM, "out of memory removing dead nodes");
    }
    for (int v = 0; v < g->n_values; v++)
        live[v] = dab_opt_pinned(g, v);
    int dead = 0;
    for (int n = g->n_nodes - 1; n >= 0; n--) {
        const dab_gnode_t *node = &g->nodes[n];
        bool used = false;
        for (int k = 0; k < node->n_outputs && !used; k++)
            used = node->outputs[k] >= 0 && live[node->outputs[k]];
        if (!used) {
            removed[n] = true;
            dead++;
            continue;
        }
        for (int k = 0; k < node->n_inputs; k++)
            if (node->inputs[k] >= 0)
                live[node->inputs[k]] = true;
        for (int k = 0; k < node->n_implicit; k++)
            live[node->implicit[k]] = true; /* read by the node's subgraphs */
    }
    int rc = dead ? dab_opt_commit(g, removed, g->n_nodes, err) : 0;
    dab_free(live);
    dab_free(removed);
    return rc ? rc : dead;
}

/* ---- common subexpressions ---- */

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static bool same_tensor(const dab_tensor_t *a, const dab_tensor_t *b)
{
    if (a == b)
        return true;
    if (a->dtype != b->dtype || a->dtype == DAB_DT_STRING || !dab_shape_equal(a, b))
        return false;
    size_t bytes = dab_tensor_bytes(a);
    return !bytes || !memcmp(a->data, b->data, bytes);
}

static bool same_attr(const dab_attr_t *a, const dab_attr_t *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case DAB_ATTR_FLOAT: return !memcmp(&a->f, &b->f, sizeof a->f);
    case DAB_ATTR_INT: return a->i == b->i;
    case DAB_ATTR_STRING: return a->s_len == b->s_len && !memcmp(a->s, b->s, a->s_len);
    case DAB_ATTR_TENSOR: return same_tensor(a->t, b->t);
    case DAB_ATTR_FLOATS:
        return a->n == b->n && (!a->n || !memcmp(a->floats, b->floats, (size_t)a->n * 4));
    case DAB_ATTR_INTS:
        return a->n == b->n && (!a->n || !memcmp(a->ints, b->ints, (size_t)a->n * 8));
    case DAB_ATTR_STRINGS:
        if (a->n != b->n)
            return false;
        for (int i = 0; i < a->n; i++)
            if (strcmp(a->strings[i], b->strings[i]))
                return false;
        return true;
    default: return false; /* graphs and tensor lists: never merged */
    }
}

static bool same_node(const dab_gnode_t *a, const dab_gnode_t *b)
{
    if (a->op != b->op || a->n_inputs != b->n_inputs || a->n_outputs != b->n_outputs ||
        a->n_attrs != b->n_attrs || strcmp(a->op_type, b->op_type) || strcmp(a->domain, b->domain))
        return false;
    for (int k = 0; k < a->n_inputs; k++)
        if (a->inputs[k] != b->inputs[k])
            return false;
    for (int k = 0; k < a->n_outputs; k++)
        if ((a->outputs[k] < 0) != (b->outputs[k] < 0))
            return false;
    for (int i = 0; i < a->n_attrs; i++) {
        int j = 0;
        while (j < b->n_attrs && strcmp(a->attrs[i].name, b->attrs[j].name))
            j++;
        if (j == b->n_attrs || !same_attr(&a->attrs[i], &b->attrs[j]))
            return false;
    }
    return true;
}

static uint64_t node_hash(const dab_gnode_t *node)
{
    uint64_t h = hash_bytes(node->op_type, strlen(node->op_type));
    h = mix(h, (uint64_t)node->n_inputs);
    for (int k = 0; k < node->n_inputs; k++)
        h = mix(h, (uint64_t)(int64_t)node->inputs[k]);
    return mix(h, (uint64_t)node->n_attrs);
}

/* Largest constant compared byte for byte when merging duplicates. */
#define CSE_CONST_MAX_BYTES ((size_t)16 << 20)

int dab_opt_cse(dab_graph_t *g, dab_err_t *err)
{
    int nb = 1;
    while (nb < 2 * (g->n_nodes + g->n_values) + 2)
        nb *= 2;
    int *repl = dab_malloc(((size_t)g->n_values + 1) * sizeof *repl);
    int *head = dab_malloc((size_t)nb * sizeof *head);
    int *next = dab_malloc(((size_t)g->n_nodes + g->n_values + 1) * sizeof *next);
    uint64_t *hashes = dab_malloc(((size_t)g->n_nodes + g->n_values + 1) * sizeof *hashes);
    bool *removed = dab_calloc((size_t)g->n_nodes + 1, sizeof *removed);
    int merged = 0, rc = 0;
    if (!repl || !head || !next || !hashes || !removed) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory merging common subexpressions");
        goto done;
    }
    for (int v = 0; v < g->n_values; v++)
        repl[v] = v;
    /* Identical constants first (entries 0..n_values-1 of the table), so that nodes
     * reading equal weights compare equal below. */
    for (int i = 0; i < nb; i++)
        head[i] = -1;
    for (int v = 0; v < g->n_values; v++) {
        const dab_value_t *val = &g->values[v];
        const dab_tensor_t *t = val->const_data;
        if (!t || val->is_input || t->dtype == DAB_DT_STRING || dab_opt_pinned(g, v) ||
            dab_tensor_bytes(t) > CSE_CONST_MAX_BYTES)
            continue;
        uint64_t h = mix(hash_bytes(t->data, dab_tensor_bytes(t)), (uint64_t)t->dtype);
        for (int d = 0; d < t->rank; d++)
            h = mix(h, (uint64_t)t->dims[d]);
        int b = (int)(h & (uint64_t)(nb - 1)), w = head[b];
        for (; w >= 0; w = next[w])
            if (hashes[w] == h && same_tensor(g->values[w].const_data, t))
                break;
        if (w >= 0) {
            repl[v] = w;
            merged++;
            continue;
        }
        hashes[v] = h;
        next[v] = head[b];
        head[b] = v;
    }
    for (int i = 0; i < nb; i++)
        head[i] = -1;
    for (int n = 0; n < g->n_nodes; n++) {
        dab_gnode_t *node = &g->nodes[n];
        for (int k = 0; k < node->n_inputs; k++)
            if (node->inputs[k] >= 0)
                node->inputs[k] = repl[node->inputs[k]];
        if (!node->op || nondeterministic(node) || has_graph_attr(node))
            continue;
        bool pinned = false;
        for (int k = 0; k < node->n_outputs && !pinned; k++)
            pinned = node->outputs[k] >= 0 && dab_opt_pinned(g, node->outputs[k]);
        uint64_t h = node_hash(node);
        int b = (int)(h & (uint64_t)(nb - 1)), w = head[b];
        for (; w >= 0 && !pinned; w = next[w])
            if (hashes[w] == h && same_node(&g->nodes[w], node))
                break;
        if (w >= 0 && !pinned) {
            for (int k = 0; k < node->n_outputs; k++)
                if (node->outputs[k] >= 0)
                    repl[node->outputs[k]] = g->nodes[w].outputs[k];
            removed[n] = true;
            merged++;
            continue;
        }
        hashes[n] = h;
        next[n] = head[b];
        head[b] = n;
    }
    if (merged)
        rc = dab_opt_commit(g, removed, g->n_nodes, err);
done:
    dab_free(repl);
    dab_free(head);
    dab_free(next);
    dab_free(hashes);
    dab_free(removed);
    return rc ? rc : merged;
}

/* ---- views ---- */

int dab_opt_views(dab_graph_t *g)
{
    static const char *const names[] = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"};
    int marked = 0;
    for (int n = 0; n < g->n_nodes; n++) {
        dab_gnode_t *node = &g->nodes[n];
        if (!node->op || node->n_inputs < 1 || node->inputs[0] < 0 || node->n_outputs != 1 ||
            node->outputs[0] < 0)
            continue;
        for (size_t i = 0; i < DAB_ARRAY_LEN(names); i++)
            if (dab_opt_is(g, n, names[i])) {
                node->flags |= DAB_GNODE_VIEW;
                marked++;
            }
    }
    return marked;
}

/* ---- the driver ---- */

int dab_graph_optimize(dab_graph_t *g, dab_opt_level_t level, dab_err_t *err)
{
    if (level == DAB_OPT_NONE)
        return 0;
    size_t budget = DAB_OPT_FOLD_TOTAL_BYTES;
    int rc;
    /* Folding exposes dead nodes and equal constants; merging exposes more folding only
     * in contrived graphs, so one round of each suffices. */
    if ((rc = dab_opt_fold(g, &budget, err)) < 0 || (rc = dab_opt_cse(g, err)) < 0 ||
        (rc = dab_opt_dead(g, err)) < 0)
        return rc;
    if (level == DAB_OPT_ALL || level == DAB_OPT_DEFAULT) {
        if ((rc = dab_opt_fuse(g, err)) < 0 || (rc = dab_opt_dead(g, err)) < 0)
            return rc;
    }
    dab_opt_views(g);
    return 0;
}
