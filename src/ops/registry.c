/*
 * registry.c - the table of operator families and lookups over it, plus the
 * attribute accessors every operator uses. The registry is immutable, so any
 * thread may look up definitions.
 */
#include "ops.h"

#include <string.h>

static const dab_op_def_t *const g_families[] = {
    dab_ops_elementwise,
    dab_ops_shape,
    dab_ops_reduce,
    dab_ops_nn,
    dab_ops_transformer,
    dab_ops_index,
    dab_ops_image,
    dab_ops_quant,
    dab_ops_rnn,
    dab_ops_random,
    dab_ops_control,
};

static int domain_eq(const char *a, const char *b)
{
    if (!a || !strcmp(a, "ai.onnx"))
        a = "";
    if (!b || !strcmp(b, "ai.onnx"))
        b = "";
    return !strcmp(a, b);
}

const dab_op_def_t *dab_op_find(const char *domain, const char *name, int opset)
{
    for (size_t f = 0; f < DAB_ARRAY_LEN(g_families); f++) {
        for (const dab_op_def_t *d = g_families[f]; d->name; d++) {
            if (strcmp(d->name, name) || !domain_eq(d->domain, domain))
                continue;
            if (opset >= d->since_version && (d->until_version == 0 || opset <= d->until_version))
                return d;
        }
    }
    return NULL;
}

int dab_op_known(const char *domain, const char *name)
{
    for (size_t f = 0; f < DAB_ARRAY_LEN(g_families); f++)
        for (const dab_op_def_t *d = g_families[f]; d->name; d++)
            if (!strcmp(d->name, name) && domain_eq(d->domain, domain))
                return 1;
    return 0;
}

void dab_op_foreach(void (*fn)(const dab_op_def_t *def, void *user), void *user)
{
    for (size_t f = 0; f < DAB_ARRAY_LEN(g_families); f++)
        for (const dab_op_def_t *d = g_families[f]; d->name; d++)
            fn(d, user);
}

const dab_attr_t *dab_attr_find(const dab_node_t *node, const char *name)
{
    for (int i = 0; i < node->n_attrs; i++)
        if (!strcmp(node->attrs[i].name, name))
            return &node->attrs[i];
    return NULL;
}

int64_t dab_attr_int(const dab_node_t *node, const char *name, int64_t def)
{
    const dab_attr_t *a = dab_attr_find(node, name);
    return a && a->type == DAB_ATTR_INT ? a->i : def;
}

float dab_attr_float(const dab_node_t *node, const char *name, float def)
{
    const dab_attr_t *a = dab_attr_find(node, name);
    if (!a)
        return def;
    if (a->type == DAB_ATTR_FLOAT)
        return a->f;
    if (a->type == DAB_ATTR_INT)
        return (float)a->i;
    return def;
}

const char *dab_attr_string(const dab_node_t *node, const char *name, const char *def)
{
    const dab_attr_t *a = dab_attr_find(node, name);
    return a && a->type == DAB_ATTR_STRING ? a->s : def;
}

int dab_attr_ints(const dab_node_t *node, const char *name, const int64_t **vals)
{
    const dab_attr_t *a = dab_attr_find(node, name);
    if (!a || a->type != DAB_ATTR_INTS) {
        *vals = NULL;
        return -1;
    }
    *vals = a->ints;
    return a->n;
}

int dab_attr_floats(const dab_node_t *node, const char *name, const float **vals)
{
    const dab_attr_t *a = dab_attr_find(node, name);
    if (!a || a->type != DAB_ATTR_FLOATS) {
        *vals = NULL;
        return -1;
    }
    *vals = a->floats;
    return a->n;
}
