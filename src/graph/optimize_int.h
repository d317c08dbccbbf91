/*
 * optimize_int.h - what the graph passes (optimize*.c) share: use counts, pinned
 * values, rewiring and removing nodes, and making new nodes and constants that the
 * graph owns. Only the graph subsystem includes this.
 */
#ifndef DAB_GRAPH_OPTIMIZE_INT_H
#define DAB_GRAPH_OPTIMIZE_INT_H

#include "graph.h"

/* Largest constant one fold may produce, and all folds of one graph together. */
#define DAB_OPT_FOLD_MAX_BYTES ((size_t)64 << 20)
#define DAB_OPT_FOLD_TOTAL_BYTES ((size_t)256 << 20)

/* True when v must keep its name and producer: a graph input or output, or a name
 * that some (nested) subgraph may read from the outer scope. */
bool dab_opt_pinned(const dab_graph_t *g, int v);

/* Readers of each value: uses[v] counts node inputs naming v, plus one per node whose
 * subgraphs read it (implicit input) and one per graph output slot. Returns a dab_malloc'd [n_values] array or NULL on out of memory. */
int *dab_opt_use_counts(const dab_graph_t *g);

/* Rewires every node input reading `from` to read `to`. Graph outputs are untouched. */
void dab_opt_replace_uses(dab_graph_t *g, int from, int to);

/* Drops the nodes n < n_marked with removed[n] set (nodes appended since are kept), then
 * re-finalizes (order, producers, operators). */
int dab_opt_commit(dab_graph_t *g, const bool *removed, int n_marked, dab_err_t *err);

/* True when node n is ai.onnx `op_type`. */
bool dab_opt_is(const dab_graph_t *g, int n, const char *op_type);

/* The node producing v when it is ai.onnx `op_type`, else -1. */
int dab_opt_producer(const dab_graph_t *g, int v, const char *op_type);

/* The float constant data of v when v is a non-input float constant, else NULL; *numel
 * receives the element count. */
const float *dab_opt_const_f32(const dab_graph_t *g, int v, int64_t *numel);

/* A new float constant value named after `base` (made unique) with the given shape and
 * data (copied). Returns its index or DAB_ENOMEM. */
int dab_opt_new_const_f32(dab_graph_t *g, const char *base, int rank, const int64_t *dims,
                          const float *data);

/* A new value named after `base` (made unique), dtype and shape unknown. Index or ENOMEM. */
int dab_opt_new_value(dab_graph_t *g, const char *base);

/* Appends an ai.onnx node with the given inputs, outputs and room for max_attrs
 * attributes (filled with dab_opt_attr_*). Returns its index or DAB_ENOMEM. The graph
 * must be re-finalized (dab_opt_commit) before it runs. */
int dab_opt_new_node(dab_graph_t *g, const char *op_type, const char *name, int n_in,
                     const int *ins, int n_out, const int *outs, int max_attrs);

/* Appends an attribute to node n (names must be static strings or graph-owned). */
void dab_opt_attr_int(dab_graph_t *g, int n, const char *name, int64_t v);
void dab_opt_attr_float(dab_graph_t *g, int n, const char *name, float v);
int dab_opt_attr_string(dab_graph_t *g, int n, const char *name, const char *v);

/* Passes; each returns the number of rewrites or a negative DAB_E* code. */
int dab_opt_fold(dab_graph_t *g, size_t *budget_bytes, dab_err_t *err);
int dab_opt_dead(dab_graph_t *g, dab_err_t *err);
int dab_opt_cse(dab_graph_t *g, dab_err_t *err);
int dab_opt_views(dab_graph_t *g);
int dab_opt_fuse(dab_graph_t *g, dab_err_t *err); /* optimize_fuse.c */

/*
 * MatMul-scale-Add-Softmax-MatMul into one Attention node (opset 23; optimize_fuse.c).
 * Correct and tested, but not part of any level yet: the Attention kernel runs behind
 * oneDNN's MatMul + Softmax on text_classifier (262 against 190 us at sequence 32, 1.9
 * against 0.93 ms at 128, one thread), so dab_graph_optimize leaves the subgraph alone
 * until the kernel is faster. Must be followed by dab_opt_dead (the old K transpose).
 */
int dab_opt_fuse_attention(dab_graph_t *g, dab_err_t *err);

#endif
