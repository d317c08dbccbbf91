/*
 * graph.h - the engine's intermediate representation and its execution.
 *
 * A dab_graph_t is the model as dabba holds it: values (named tensors with
 * declared dtypes and possibly symbolic shapes, constants carrying their
 * data) and nodes in topological order, each bound to an operator
 * definition. A graph is immutable once finalized and may be shared by any
 * number of sessions on any threads.
 *
 * A dab_session_t runs a graph. It owns the per-run state: one tensor per
 * value, the operators' private state, and the activation arena. Shapes are
 * planned per input-shape signature: the first run with a new signature
 * records each value's size and lifetime and packs them into one arena;
 * later runs with the same signature reuse it and do not touch the heap.
 * A session is used by one thread at a time.
 */
#ifndef DAB_GRAPH_H
#define DAB_GRAPH_H

#include <stdbool.h>

#include "../base/base.h"
#include "../ops/ops.h"
#include "../tensor/tensor.h"

typedef struct dab_value {
    char *name;
    dab_dtype_t dtype;               /* declared or inferred; UNDEFINED when unknown */
    int rank;                        /* -1 when unknown */
    int64_t dims[DAB_MAX_RANK];      /* -1 for an unknown or symbolic dim */
    char *dim_params[DAB_MAX_RANK];  /* symbolic dim names, or NULL */
    dab_tensor_t *const_data;        /* initializer or Constant output; graph-owned */
    int producer;                    /* producing node, -1 for inputs and constants */
    bool is_input;                   /* fed by the caller (may also have const_data: a default) */
    bool is_output;
} dab_value_t;

typedef struct dab_gnode {
    char *name;
    char *op_type;
    char *domain;
    int opset;
    int n_inputs, n_outputs;
    int *inputs;  /* value indices; -1 for an omitted optional input */
    int *outputs; /* value indices; -1 for an omitted optional output */
    int n_attrs;
    dab_attr_t *attrs;
    const dab_op_def_t *op; /* NULL when no definition covers (domain, op_type, opset) */
    unsigned flags;         /* DAB_GNODE_* set by graph passes */
    /* Values of this graph that the node's subgraphs (graph attributes, at any depth) read
     * by name from the enclosing scope, set by dab_graph_finalize: the node depends on
     * them as on its inputs (order, lifetimes, liveness). */
    int n_implicit;
    int *implicit;
} dab_gnode_t;

/* The node's first output may share its first input's memory (Reshape, Squeeze,
 * Unsqueeze, Flatten, Identity): the session skips the copy when the byte counts agree. */
#define DAB_GNODE_VIEW 1u
/* The node's opset was chosen by the pass that made it (a fused LayerNormalization in an
 * opset-13 model binds at 17): finalize keeps it instead of the graph's import. */
#define DAB_GNODE_OPSET_FIXED 2u

/* Deepest nesting of subgraphs (an If inside a Loop body inside ...) that the loader and
 * sessions accept; model files are outside input. */
#define DAB_GRAPH_MAX_DEPTH 32

typedef struct dab_opset {
    char *domain;
    int64_t version;
} dab_opset_t;

typedef struct dab_graph {
    char *name;
    int n_values, cap_values;
    dab_value_t *values;
    int n_nodes, cap_nodes;
    dab_gnode_t *nodes;
    int n_inputs;
    int *inputs; /* values the caller feeds, in declaration order */
    int n_outputs;
    int *outputs;
    int n_opsets;
    dab_opset_t *opsets;
    const struct dab_graph *parent; /* outer scope of a subgraph, or NULL */
    /* ownership of things values and attributes point into */
    void **owned;          /* dab_malloc'd blocks freed with the graph */
    int n_owned, cap_owned;
    struct dab_mapping *mappings; /* mmap'd external data, unmapped with the graph */
    struct dab_graph **subgraphs; /* graph-valued attributes, freed with the graph */
    int n_subgraphs, cap_subgraphs;
} dab_graph_t;

/* ---- building (used by the ONNX loader and graph passes; one thread) ---- */

/* A new empty graph; NULL on out of memory. */
dab_graph_t *dab_graph_new(const char *name);

/* Frees the graph and everything it owns. NULL is fine. */
void dab_graph_free(dab_graph_t *g);

/* Index of the value named `name`, creating it (dtype UNDEFINED, rank -1) when absent.
 * Returns the index, or DAB_ENOMEM. Name lookup is linear at load time only. */
int dab_graph_value(dab_graph_t *g, const char *name);

/* Index of value `name` or -1 when absent. */
int dab_graph_find_value(const dab_graph_t *g, const char *name);

/* Appends a node (fields zeroed); returns its index or DAB_ENOMEM. */
int dab_graph_add_node(dab_graph_t *g);

/* Hands a dab_malloc'd block to the graph, freed with it. On failure frees p and
 * returns DAB_ENOMEM. */
int dab_graph_own(dab_graph_t *g, void *p);

/* Hands a subgraph to g (freed with it). On failure frees sub and returns DAB_ENOMEM. */
int dab_graph_own_subgraph(dab_graph_t *g, dab_graph_t *sub);

/* Registers an mmap'd region to unmap with the graph. */
int dab_graph_own_mapping(dab_graph_t *g, void *addr, size_t len);

/* Opset version the graph imports for `domain` ("" and "ai.onnx" are the same), or 0. */
int64_t dab_graph_opset(const dab_graph_t *g, const char *domain);

/*
 * Checks and completes a built graph: binds each node to its operator
 * definition (leaving op NULL where none exists), records for each node with
 * graph attributes the values its subgraphs read from this scope (implicit
 * inputs: a name no enclosing subgraph level defines becomes a value of g too,
 * resolved further out), sorts nodes topologically (implicit inputs count as
 * inputs), and checks that every node input is produced, constant, a graph input
 * or (in a subgraph) defined in an enclosing graph. Subgraphs themselves are
 * finalized separately, after their parent. Errors name the node and value at
 * fault (cycles, values produced twice, missing inputs).
 */
int dab_graph_finalize(dab_graph_t *g, dab_err_t *err);

/* Number of nodes without an operator definition, subgraphs' nodes included; when nodes
 * is non-NULL, writes up to max of them into it (owned by the graph). */
int dab_graph_unsupported(const dab_graph_t *g, const dab_gnode_t **nodes, int max);

/* Total number of elements in constant values (parameters). */
int64_t dab_graph_param_count(const dab_graph_t *g);

/* ---- optimization (optimize.c) ---- */

typedef enum dab_opt_level {
    DAB_OPT_DEFAULT = 0, /* the same as DAB_OPT_ALL: zeroed options optimize fully */
    DAB_OPT_NONE,        /* run the graph as loaded */
    DAB_OPT_BASIC,       /* constant folding, dead nodes, common subexpressions, views */
    DAB_OPT_ALL,         /* basic plus fusions */
} dab_opt_level_t;

/* "none" / "basic" / "all" -> level; DAB_EINVAL naming the value otherwise. */
int dab_opt_level_parse(const char *s, dab_opt_level_t *out, dab_err_t *err);

/* "none" / "basic" / "all" for a level (DEFAULT reads "all"). */
const char *dab_opt_level_name(dab_opt_level_t level);

/*
 * Rewrites a finalized graph into an equivalent, cheaper one at `level`: folds nodes
 * whose inputs are all constants (with the engine's own operators; outputs over 64 MiB
 * and random operators are left alone), removes nodes nothing reads, merges identical
 * nodes and constants, marks copy-free view nodes and (DAB_OPT_ALL) fuses patterns into
 * single nodes. Graph inputs and outputs keep their names; values read by subgraphs are
 * never renamed or removed, and subgraphs themselves are left as loaded. The graph stays
 * finalized. On error (out of memory) the graph may be half rewritten: the caller frees
 * it. One thread, before any session is created over g.
 */
int dab_graph_optimize(dab_graph_t *g, dab_opt_level_t level, dab_err_t *err);

/* ---- running ---- */

typedef struct dab_session dab_session_t;

typedef struct dab_session_opts {
    int threads;             /* intra-op threads; <= 0 means all cores */
    size_t max_value_bytes;  /* refuse (ELIMIT) any value or scratch larger; 0 = no limit */
} dab_session_opts_t;

/*
 * Creates a session over g (which must outlive it) and runs every node's init.
 * Fails with EUNSUPPORTED naming the first node without an operator. Control-flow
 * nodes (If, Loop, Scan) make sessions of their own over their subgraphs in their init,
 * once (through dab_exec_ctx_t.sub); those read the values their subgraphs name from
 * this session's tensors at each run, and share its threads and max_value_bytes (which
 * also bounds each Loop or Scan output they assemble).
 */
int dab_session_create(const dab_graph_t *g, const dab_session_opts_t *opts,
                       dab_session_t **out, dab_err_t *err);

void dab_session_free(dab_session_t *s);

/*
 * Runs the graph. inputs[i] feeds g->inputs[i] (dtype and shape checked against the
 * declaration; a NULL entry or data uses the value's default initializer when it
 * has one). On success outputs[i] points at a tensor for g->outputs[i] whose data
 * stays valid until the next run or dab_session_free. The caller's input data is only
 * read. On failure err names the node and what went wrong; the session stays usable.
 */
int dab_session_run(dab_session_t *s, const dab_tensor_t *const *inputs,
                    const dab_tensor_t **outputs, dab_err_t *err);

/* Bytes of the current activation arena (0 before the first run). */
size_t dab_session_arena_bytes(const dab_session_t *s);

#endif
