/*
 * cmd_inspect.c - `dabba inspect MODEL`: what a model is before it is served:
 * opsets, inputs and outputs with their (symbolic) shapes, parameter count,
 * the operators it uses and whether this build runs every one of them.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_value(const dab_value_t *v)
{
    printf("  %s: %s ", v->name, dab_dtype_name(v->dtype));
    if (v->rank < 0) {
        printf("[?]\n");
        return;
    }
    printf("[");
    for (int d = 0; d < v->rank; d++) {
        if (d)
            printf(", ");
        if (v->dim_params[d])
            printf("%s", v->dim_params[d]);
        else if (v->dims[d] < 0)
            printf("?");
        else
            printf("%lld", (long long)v->dims[d]);
    }
    printf("]\n");
}

int dab_cmd_inspect(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: dabba inspect MODEL\n");
        return 2;
    }
    dab_err_t err = {0};
    dab_graph_t *g;
    if (dab_onnx_load_file(argv[1], &g, &err)) {
        fprintf(stderr, "dabba: %s\n", err.msg);
        return 1;
    }
    printf("model: %s\n", argv[1]);
    printf("graph: %s\n", g->name[0] ? g->name : "(unnamed)");
    printf("opsets:");
    for (int i = 0; i < g->n_opsets; i++)
        printf(" %s=%lld", g->opsets[i].domain[0] ? g->opsets[i].domain : "ai.onnx",
               (long long)g->opsets[i].version);
    printf("\ninputs:\n");
    for (int i = 0; i < g->n_inputs; i++)
        print_value(&g->values[g->inputs[i]]);
    printf("outputs:\n");
    for (int i = 0; i < g->n_outputs; i++)
        print_value(&g->values[g->outputs[i]]);
    printf("parameters: %lld\n", (long long)dab_graph_param_count(g));
    printf("nodes: %d\n", g->n_nodes);

    /* Operator histogram, in order of first appearance. */
    printf("operators:\n");
    for (int n = 0; n < g->n_nodes; n++) {
        const dab_gnode_t *gn = &g->nodes[n];
        int seen = 0, count = 0;
        for (int m = 0; m < g->n_nodes; m++) {
            const dab_gnode_t *o = &g->nodes[m];
            if (strcmp(o->op_type, gn->op_type) || strcmp(o->domain, gn->domain))
                continue;
            if (m < n)
                seen = 1;
            count++;
        }
        if (!seen)
            printf("  %s%s%s x%d%s\n", gn->domain, gn->domain[0] ? ":" : "", gn->op_type, count,
                   gn->op ? "" : "  (unsupported)");
    }
    const dab_gnode_t *un[64];
    int n_un = dab_graph_unsupported(g, un, 64);
    if (!n_un) {
        printf("supported: yes, every operator runs in this build\n");
    } else {
        printf("supported: no, %d node%s cannot run:", n_un, n_un > 1 ? "s" : "");
        for (int i = 0; i < n_un && i < 64; i++)
            printf(" %s(%s%s%s opset %d)", un[i]->name, un[i]->domain,
                   un[i]->domain[0] ? ":" : "", un[i]->op_type, un[i]->opset);
        printf("\n");
    }
    dab_graph_free(g);
    return n_un ? 1 : 0;
}
