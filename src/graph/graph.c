/*
 * graph.c - building and checking the IR: values, nodes, ownership of the
 * memory they point into, operator binding and topological order.
 */
#include "graph.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

typedef struct dab_mapping {
    void *addr;
    size_t len;
    struct dab_mapping *next;
} dab_mapping_t;

dab_graph_t *dab_graph_new(const char *name)
{
    dab_graph_t *g = dab_calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->name = dab_strdup(name ? name : "");
    if (!g->name) {
        dab_free(g);
        return NULL;
    }
    return g;
}

void dab_graph_free(dab_graph_t *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_values; i++) {
        dab_value_t *v = &g->values[i];
        dab_free(v->name);
        for (int d = 0; d < DAB_MAX_RANK; d++)
            dab_free(v->dim_params[d]);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        dab_gnode_t *n = &g->nodes[i];
        dab_free(n->name);
        dab_free(n->op_type);
        dab_free(n->domain);
        dab_free(n->inputs);
        dab_free(n->outputs);
        dab_free(n->attrs);
        dab_free(n->implicit);
    }
    for (int i = 0; i < g->n_opsets; i++)
        dab_free(g->opsets[i].domain);
    for (int i = 0; i < g->n_owned; i++)
        dab_free(g->owned[i]);
    for (dab_mapping_t *m = g->mappings, *next; m; m = next) {
        next = m->next;
        munmap(m->addr, m->len);
        dab_free(m);
    }
    for (int i = 0; i < g->n_subgraphs; i++)
        dab_graph_free(g->subgraphs[i]);
    dab_free(g->subgraphs);
    dab_free(g->owned);
    dab_free(g->opsets);
    dab_free(g->values);
    dab_free(g->nodes);
    dab_free(g->inputs);
    dab_free(g->outputs);
    dab_free(g->name);
    dab_free(g);
}

/* Grows an array of elem-sized items to hold at least need; zeroes new space. */
static int grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = dab_realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return DAB_ENOMEM;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(ncap - *cap) * elem);
    *arr = p;
    *cap = ncap;
    return 0;
}

int dab_graph_find_value(const dab_graph_t *g, const char *name)
{
    for (int i = g->n_values - 1; i >= 0; i--)
        if (!strcmp(g->values[i].name, name))
            return i;
    return -1;
}

int dab_graph_value(dab_graph_t *g, const char *name)
{
    int idx = dab_graph_find_value(g, name);
    if (idx >= 0)
        return idx;
    if (grow((void **)&g->values, &g->cap_values, g->n_values + 1, sizeof *g->values))
        return DAB_ENOMEM;
    dab_value_t *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = dab_strdup(name);
    if (!v->name)
        return DAB_ENOMEM;
    v->rank = -1;
    v->producer = -1;
    return g->n_values++;
}

int dab_graph_add_node(dab_graph_t *g)
{
    if (grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes))
        return DAB_ENOMEM;
    memset(&g->nodes[g->n_nodes], 0, sizeof g->nodes[0]);
    return g->n_nodes++;
}

int dab_graph_own(dab_graph_t *g, void *p)
{
    if (!p)
        return 0;
    if (grow((void **)&g->owned, &g->cap_owned, g->n_owned + 1, sizeof *g->owned)) {
        dab_free(p);
        return DAB_ENOMEM;
    }
    g->owned[g->n_owned++] = p;
    return 0;
}

int dab_graph_own_subgraph(dab_graph_t *g, dab_graph_t *sub)
{
    if (grow((void **)&g->subgraphs, &g->cap_subgraphs, g->n_subgraphs + 1,
             sizeof *g->subgraphs)) {
        dab_graph_free(sub);
        return DAB_ENOMEM;
    }
    g->subgraphs[g->n_subgraphs++] = sub;
    return 0;
}

int dab_graph_own_mapping(dab_graph_t *g, void *addr, size_t len)
{
    dab_mapping_t *m = dab_malloc(sizeof *m);
    if (!m)
        return DAB_ENOMEM;
    m->addr = addr;
    m->len = len;
    m->next = g->mappings;
    g->mappings = m;
    return 0;
}

int64_t dab_graph_opset(const dab_graph_t *g, const char *domain)
{
    if (!strcmp(domain, "ai.onnx"))
        domain = "";
    for (; g; g = g->parent)
        for (int i = 0; i < g->n_opsets; i++) {
            const char *d = g->opsets[i].domain;
            if (!strcmp(d, "ai.onnx"))
                d = "";
            if (!strcmp(d, domain))
                return g->opsets[i].version;
        }
    return 0;
}

/* True when value v is defined in g itself: produced by a node (after finalize), a
 * constant or a graph input. */
static bool defined_here(const dab_graph_t *g, int v)
{
    const dab_value_t *val = &g->values[v];
    return val->producer >= 0 || val->const_data || val->is_input;
}

/* True when name is defined in an enclosing graph (subgraphs read outer values). A value
 * that an enclosing subgraph only passes on (its own implicit input) does not count:
 * the search goes on outwards. Parents are finalized before their subgraphs, so their
 * producers are known. */
static bool outer_has(const dab_graph_t *g, const char *name)
{
    for (const dab_graph_t *p = g->parent; p; p = p->parent) {
        int v = dab_graph_find_value(p, name);
        if (v >= 0 && defined_here(p, v))
            return true;
    }
    return false;
}

/* ---- implicit inputs: the names subgraphs read from enclosing scopes ---- */

typedef struct name_set {
    const char **names; /* borrowed from the values of the graphs scanned */
    int n, cap;
} name_set_t;

static int name_add(name_set_t *set, const char *name)
{
    for (int i = 0; i < set->n; i++)
        if (!strcmp(set->names[i], name))
            return 0;
    if (set->n == set->cap) {
        int ncap = set->cap ? set->cap * 2 : 8;
        const char **p = dab_realloc(set->names, (size_t)ncap * sizeof *p);
        if (!p)
            return DAB_ENOMEM;
        set->names = p;
        set->cap = ncap;
    }
    set->names[set->n++] = name;
    return 0;
}

static bool node_has_graphs(const dab_gnode_t *node)
{
    for (int a = 0; a < node->n_attrs; a++)
        if ((node->attrs[a].type == DAB_ATTR_GRAPH && node->attrs[a].g) ||
            (node->attrs[a].type == DAB_ATTR_GRAPHS && node->attrs[a].n > 0))
            return true;
    return false;
}

static int free_names(const dab_graph_t *s, int depth, name_set_t *out);

/* Adds to out the free names of every graph attribute of node (see free_names). */
static int node_free_names(const dab_gnode_t *node, int depth, name_set_t *out)
{
    int rc = 0;
    for (int a = 0; !rc && a < node->n_attrs; a++) {
        const dab_attr_t *at = &node->attrs[a];
        if (at->type == DAB_ATTR_GRAPH && at->g)
            rc = free_names(at->g, depth + 1, out);
        for (int i = 0; !rc && at->type == DAB_ATTR_GRAPHS && i < at->n; i++)
            if (at->graphs[i])
                rc = free_names(at->graphs[i], depth + 1, out);
    }
    return rc;
}

/*
 * Adds to out the names graph s reads but does not define: node inputs and graph outputs
 * that no node of s produces and that are neither constants nor inputs of s, and the free
 * names of its nodes' subgraphs that s does not define either. Computed from the nodes
 * themselves, so s need not be finalized. ELIMIT past DAB_GRAPH_MAX_DEPTH.
 */
static int free_names(const dab_graph_t *s, int depth, name_set_t *out)
{
    if (depth > DAB_GRAPH_MAX_DEPTH)
        return DAB_ELIMIT;
    bool *def = dab_calloc((size_t)s->n_values + 1, sizeof *def);
    name_set_t inner = {0};
    int rc = 0;
    if (!def)
        return DAB_ENOMEM;
    for (int v = 0; v < s->n_values; v++)
        def[v] = s->values[v].const_data || s->values[v].is_input;
    for (int n = 0; n < s->n_nodes; n++)
        for (int k = 0; k < s->nodes[n].n_outputs; k++)
            if (s->nodes[n].outputs[k] >= 0)
                def[s->nodes[n].outputs[k]] = true;
    for (int n = 0; !rc && n < s->n_nodes; n++) {
        const dab_gnode_t *node = &s->nodes[n];
        for (int k = 0; !rc && k < node->n_inputs; k++)
            if (node->inputs[k] >= 0 && !def[node->inputs[k]])
                rc = name_add(out, s->values[node->inputs[k]].name);
        if (!rc && node_has_graphs(node))
            rc = node_free_names(node, depth, &inner);
    }
    for (int i = 0; !rc && i < s->n_outputs; i++)
        if (!def[s->outputs[i]])
            rc = name_add(out, s->values[s->outputs[i]].name);
    for (int i = 0; !rc && i < inner.n; i++) {
        int v = dab_graph_find_value(s, inner.names[i]);
        if (v < 0 || !def[v])
            rc = name_add(out, inner.names[i]);
    }
    dab_free(inner.names);
    dab_free(def);
    return rc;
}

/* Depth of g below the root graph (0 for the root). */
static int graph_depth(const dab_graph_t *g)
{
    int d = 0;
    for (const dab_graph_t *p = g->parent; p; p = p->parent)
        d++;
    return d;
}

/* Sets every node's implicit inputs (values of g its subgraphs read by name), creating
 * values of g for names g does not hold yet. */
static int set_implicit(dab_graph_t *g, dab_err_t *err)
{
    int depth = graph_depth(g);
    for (int n = 0; n < g->n_nodes; n++) {
        dab_gnode_t *node = &g->nodes[n];
        dab_free(node->implicit);
        node->implicit = NULL;
        node->n_implicit = 0;
        if (!node_has_graphs(node))
            continue;
        name_set_t set = {0};
        int rc = node_free_names(node, depth, &set);
        if (rc == DAB_ELIMIT) {
            dab_free(set.names);
            return dab_err_set(err, DAB_ELIMIT,
                               "node '%s' (%s) nests subgraphs deeper than %d levels", node->name,
                               node->op_type, DAB_GRAPH_MAX_DEPTH);
        }
        int *imp = rc ? NULL : dab_malloc(((size_t)set.n + 1) * sizeof *imp);
        if (!imp) {
            dab_free(set.names);
            return dab_err_set(err, DAB_ENOMEM, "out of memory resolving subgraph names");
        }
        for (int i = 0; i < set.n; i++) {
            /* names point into subgraphs' values, which dab_graph_value does not move */
            int v = dab_graph_value(g, set.names[i]);
            if (v < 0) {
                dab_free(imp);
                dab_free(set.names);
                return dab_err_set(err, DAB_ENOMEM, "out of memory resolving subgraph names");
            }
            imp[i] = v;
        }
        dab_free(set.names);
        node = &g->nodes[n];
        node->implicit = imp;
        node->n_implicit = set.n;
    }
    return 0;
}

int dab_graph_finalize(dab_graph_t *g, dab_err_t *err)
{
    int rc = 0;
    int *order = NULL, *pending = NULL, *queue = NULL;
    int *cons_start = NULL, *cons = NULL;

    if ((rc = set_implicit(g, err)))
        return rc;
    /* Producers: each value is produced at most once, and never overwrites a constant
     * or a graph input. */
    for (int i = 0; i < g->n_values; i++)
        g->values[i].producer = -1;
    for (int n = 0; n < g->n_nodes; n++) {
        dab_gnode_t *node = &g->nodes[n];
        for (int k = 0; k < node->n_outputs; k++) {
            int v = node->outputs[k];
            if (v < 0)
                continue;
            dab_value_t *val = &g->values[v];
            if (val->producer >= 0 || val->const_data || val->is_input)
                return dab_err_set(err, DAB_EFORMAT,
                                   "node '%s' (%s) writes '%s', which is already %s", node->name,
                                   node->op_type, val->name,
                                   val->producer >= 0 ? "produced by another node"
                                                      : "a graph input or initializer");
            val->producer = n;
        }
    }
    /* Every input must be available; count unresolved producers for Kahn's sort. */
    pending = dab_calloc((size_t)g->n_nodes + 1, sizeof *pending);
    order = dab_malloc(((size_t)g->n_nodes + 1) * sizeof *order);
    queue = dab_malloc(((size_t)g->n_nodes + 1) * sizeof *queue);
    cons_start = dab_calloc((size_t)g->n_values + 1, sizeof *cons_start);
    if (!pending || !order || !queue || !cons_start) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory sorting the graph");
        goto done;
    }
    int total_edges = 0;
    for (int n = 0; n < g->n_nodes; n++) {
        dab_gnode_t *node = &g->nodes[n];
        /* direct inputs, then the values its subgraphs read (implicit inputs) */
        for (int k = 0; k < node->n_inputs + node->n_implicit; k++) {
            bool implicit = k >= node->n_inputs;
            int v = implicit ? node->implicit[k - node->n_inputs] : node->inputs[k];
            if (v < 0)
                continue;
            dab_value_t *val = &g->values[v];
            if (val->producer < 0 && !val->const_data && !val->is_input &&
                !outer_has(g, val->name)) {
                rc = implicit ? dab_err_set(err, DAB_EFORMAT,
                                            "node '%s' (%s): a subgraph reads '%s', which no node "
                                            "produces and is not a graph input or initializer "
                                            "of any enclosing graph",
                                            node->name, node->op_type, val->name)
                              : dab_err_set(err, DAB_EFORMAT,
                                            "node '%s' (%s) reads '%s', which no node produces "
                                            "and is not a graph input or initializer",
                                            node->name, node->op_type, val->name);
                goto done;
            }
            if (val->producer >= 0) {
                pending[n]++;
                cons_start[v]++;
                total_edges++;
            }
        }
    }
    /* Consumer lists (CSR) for the producers' values. */
    cons = dab_malloc(((size_t)total_edges + 1) * sizeof *cons);
    if (!cons) {
        rc = dab_err_set(err, DAB_ENOMEM, "out of memory sorting the graph");
        goto done;
    }
    for (int v = 0, acc = 0; v <= g->n_values; v++) {
        int c = v < g->n_values ? cons_start[v] : 0;
        cons_start[v] = acc;
        acc += c;
    }
    {
        int *pos = dab_calloc((size_t)g->n_values + 1, sizeof *pos);
        if (!pos) {
            rc = dab_err_set(err, DAB_ENOMEM, "out of memory sorting the graph");
            goto done;
        }
        for (int n = 0; n < g->n_nodes; n++) {
            dab_gnode_t *node = &g->nodes[n];
            for (int k = 0; k < node->n_inputs; k++) {
                int v = node->inputs[k];
                if (v >= 0 && g->values[v].producer >= 0)
                    cons[cons_start[v] + pos[v]++] = n;
            }
            for (int k = 0; k < node->n_implicit; k++) {
                int v = node->implicit[k];
                if (g->values[v].producer >= 0)
                    cons[cons_start[v] + pos[v]++] = n;
            }
        }
        dab_free(pos);
    }
    int head = 0, tail = 0, done_n = 0;
    for (int n = 0; n < g->n_nodes; n++)
        if (!pending[n])
            queue[tail++] = n;
    while (head < tail) {
        int n = queue[head++];
        order[done_n++] = n;
        dab_gnode_t *node = &g->nodes[n];
        for (int k = 0; k < node->n_outputs; k++) {
            int v = node->outputs[k];
            if (v < 0)
                continue;
            for (int c = cons_start[v]; c < cons_start[v + 1]; c++)
                if (--pending[cons[c]] == 0)
                    queue[tail++] = cons[c];
        }
    }
    if (done_n != g->n_nodes) {
        for (int n = 0; n < g->n_nodes; n++)
            if (pending[n]) {
                rc = dab_err_set(err, DAB_EFORMAT, "the graph has a cycle through node '%s' (%s)",
                                 g->nodes[n].name, g->nodes[n].op_type);
                goto done;
            }
    }
    /* Reorder nodes, then renumber producers. */
    {
        dab_gnode_t *sorted = dab_malloc(((size_t)g->n_nodes + 1) * sizeof *sorted);
        if (!sorted) {
            rc = dab_err_set(err, DAB_ENOMEM, "out of memory sorting the graph");
            goto done;
        }
        for (int i = 0; i < g->n_nodes; i++)
            sorted[i] = g->nodes[order[i]];
        dab_free(g->nodes);
        g->nodes = sorted;
        g->cap_nodes = g->n_nodes;
        for (int n = 0; n < g->n_nodes; n++)
            for (int k = 0; k < g->nodes[n].n_outputs; k++)
                if (g->nodes[n].outputs[k] >= 0)
                    g->values[g->nodes[n].outputs[k]].producer = n;
    }
    /* Bind operators. */
    for (int n = 0; n < g->n_nodes; n++) {
        dab_gnode_t *node = &g->nodes[n];
        if (!(node->flags & DAB_GNODE_OPSET_FIXED))
            node->opset = (int)dab_graph_opset(g, node->domain);
        node->op = dab_op_find(node->domain, node->op_type, node->opset);
    }
    for (int i = 0; i < g->n_outputs; i++) {
        dab_value_t *val = &g->values[g->outputs[i]];
        if (val->producer < 0 && !val->const_data && !val->is_input && !outer_has(g, val->name)) {
            rc = dab_err_set(err, DAB_EFORMAT, "graph output '%s' is never produced", val->name);
            goto done;
        }
    }
done:
    dab_free(pending);
    dab_free(order);
    dab_free(queue);
    dab_free(cons_start);
    dab_free(cons);
    return rc;
}

int dab_graph_unsupported(const dab_graph_t *g, const dab_gnode_t **nodes, int max)
{
    int count = 0;
    for (int n = 0; n < g->n_nodes; n++) {
        const dab_gnode_t *node = &g->nodes[n];
        if (!node->op) {
            if (nodes && count < max)
                nodes[count] = node;
            count++;
        }
        /* the graphs this node runs (not g->subgraphs: a removed node's stay owned) */
        for (int a = 0; a < node->n_attrs; a++) {
            const dab_attr_t *at = &node->attrs[a];
            int n_sub = at->type == DAB_ATTR_GRAPH ? 1 : at->type == DAB_ATTR_GRAPHS ? at->n : 0;
            for (int i = 0; i < n_sub; i++) {
                const dab_graph_t *sub = at->type == DAB_ATTR_GRAPH ? at->g : at->graphs[i];
                if (sub)
                    count += dab_graph_unsupported(sub, nodes ? nodes + DAB_MIN(count, max) : NULL,
                                                   DAB_MAX(max - count, 0));
            }
        }
    }
    return count;
}

int64_t dab_graph_param_count(const dab_graph_t *g)
{
    int64_t total = 0;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].const_data)
            total += dab_tensor_numel(g->values[i].const_data);
    return total;
}
