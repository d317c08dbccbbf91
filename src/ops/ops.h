/*
 * ops.h - the operator interface: what an ONNX operator implementation declares
 * and the view of a node it works on. One file per operator family lives beside
 * this header; each exports a table of dab_op_def_t that registry.c lists.
 *
 * Life of a node in a session:
 *   init     once per session: read and validate attributes, build private state.
 *            Inputs that are initializers already have dtype, shape and data;
 *            other inputs have dtype and shape unknown (rank -1) and data NULL.
 *   reshape  before every compute: inputs are complete (dtype, shape, data);
 *            set each present output's dtype and shape, and node->scratch_bytes
 *            if compute needs temporary memory. Must not allocate from the heap
 *            in steady state (caches keyed by shape in priv are fine).
 *   compute  outputs' data are assigned (non-overlapping with inputs); fill them.
 *   exit     once when the session is destroyed: free private state.
 * All return 0 or a negative DAB_E* code with a sentence in err. The session
 * prefixes the node's name and op type, so messages need not repeat them.
 * DAB_EUNSUPPORTED means "a valid model this build cannot run" (a dtype or an
 * attribute value not implemented); anything else wrong is EINVAL/ESHAPE/ETYPE.
 */
#ifndef DAB_OPS_H
#define DAB_OPS_H

#include "../base/base.h"
#include "../tensor/tensor.h"

struct dab_graph;

/* Attribute types, numbered as ONNX's AttributeProto.AttributeType. */
typedef enum dab_attr_type {
    DAB_ATTR_UNDEFINED = 0,
    DAB_ATTR_FLOAT = 1,
    DAB_ATTR_INT = 2,
    DAB_ATTR_STRING = 3,
    DAB_ATTR_TENSOR = 4,
    DAB_ATTR_GRAPH = 5,
    DAB_ATTR_FLOATS = 6,
    DAB_ATTR_INTS = 7,
    DAB_ATTR_STRINGS = 8,
    DAB_ATTR_TENSORS = 9,
    DAB_ATTR_GRAPHS = 10,
} dab_attr_type_t;

/* One attribute of a node; owned by the model (immutable, shared by sessions). */
typedef struct dab_attr {
    const char *name;
    dab_attr_type_t type;
    float f;
    int64_t i;
    const char *s; /* STRING: bytes, NUL-terminated for convenience */
    size_t s_len;
    const dab_tensor_t *t;       /* TENSOR */
    const struct dab_graph *g;   /* GRAPH (control flow; kept for subgraph ops) */
    int n;                       /* element count of the list below */
    const float *floats;         /* FLOATS */
    const int64_t *ints;         /* INTS */
    const char *const *strings;  /* STRINGS */
    const dab_tensor_t *tensors; /* TENSORS */
    const struct dab_graph *const *graphs; /* GRAPHS */
} dab_attr_t;

typedef struct dab_op_def dab_op_def_t;
typedef struct dab_node dab_node_t;

/*
 * A graph attribute made runnable (an If branch, a Loop or Scan body): a session of its
 * own over the subgraph, whose values read from enclosing scopes are bound to the
 * running session's tensors at each run. Opaque to operators, which reach it through
 * dab_subgraph_api_t: ops sit below the graph layer, so the session passes these
 * callbacks down in dab_exec_ctx_t.
 */
typedef struct dab_subgraph dab_subgraph_t;

typedef struct dab_subgraph_api {
    /* Makes a runner for body, a graph attribute of node (from node->ctx's session), and
     * runs its nodes' inits; called from the op's init. The op owns *out (free below).
     * Errors name the subgraph's node at fault. */
    int (*create)(dab_node_t *node, const struct dab_graph *body, dab_subgraph_t **out,
                  dab_err_t *err);
    /* The body's declared input and output counts. */
    void (*counts)(const dab_subgraph_t *sg, int *n_inputs, int *n_outputs);
    /* What the body declares for output k: dtype (UNDEFINED when unknown), rank (-1 when
     * unknown) and dims (-1 unknown); data NULL. */
    void (*declared_output)(const dab_subgraph_t *sg, int k, dab_tensor_t *decl);
    /* Runs the body once: inputs[i] feeds body input i (dtype checked against a declared
     * one, shape free: it may change from run to run), outputs[k] receives the body's
     * output k, valid until the next run of sg. The inputs are only read. */
    int (*run)(dab_subgraph_t *sg, const dab_tensor_t *const *inputs,
               const dab_tensor_t **outputs, dab_err_t *err);
    void (*free)(dab_subgraph_t *sg); /* NULL is fine */
} dab_subgraph_api_t;

/* What a compute may use besides its tensors; owned by the session. */
typedef struct dab_exec_ctx {
    int threads;            /* intra-op threads this session may use (OpenMP team size) */
    size_t max_value_bytes; /* the session's per-value limit (0 = none), for ops that
                             * accumulate outputs themselves (Loop and Scan outputs) */
    const dab_subgraph_api_t *sub; /* runs graph attributes; NULL where no session does */
    void *sub_owner;               /* the session, for sub->create */
    int depth;                     /* subgraph nesting of this session (0 at the top) */
} dab_exec_ctx_t;

/* A node as an operator sees it in a session. */
struct dab_node {
    const char *name;    /* may be "" */
    const char *op_type; /* "Conv" */
    const char *domain;  /* "" for ai.onnx */
    int opset;           /* the model's opset for this node's domain */
    int n_inputs;
    int n_outputs;
    dab_tensor_t **inputs;  /* [n_inputs]; NULL for an omitted optional input */
    dab_tensor_t **outputs; /* [n_outputs]; NULL for an omitted optional output */
    int n_attrs;
    const dab_attr_t *attrs;
    const dab_op_def_t *op;
    dab_exec_ctx_t *ctx;
    void *priv;           /* the op's state from init */
    size_t scratch_bytes; /* set by reshape; the session provides scratch before compute */
    void *scratch;        /* 64-byte aligned, valid during compute only */
};

struct dab_op_def {
    const char *domain;   /* "" for ai.onnx, "com.microsoft", ... */
    const char *name;     /* op type */
    int since_version;    /* first opset this definition covers */
    int until_version;    /* last opset it covers (inclusive); 0 = still current */
    uint32_t dtypes;      /* DAB_DTM mask accepted for the input named below */
    int dtype_input;      /* input whose dtype is checked against dtypes (-1: none) */
    int min_inputs, max_inputs;   /* max -1: variadic */
    int min_outputs, max_outputs;
    int (*init)(dab_node_t *node, dab_err_t *err);    /* may be NULL */
    int (*reshape)(dab_node_t *node, dab_err_t *err); /* required */
    int (*compute)(dab_node_t *node, dab_err_t *err); /* required */
    void (*exit)(dab_node_t *node);                   /* may be NULL */
};

/*
 * Finds the definition for op `name` in `domain` at `opset`. Returns NULL when
 * none covers it. Any thread (the registry is immutable).
 */
const dab_op_def_t *dab_op_find(const char *domain, const char *name, int opset);

/* True when some opset of (domain, name) has a definition, so "not at this opset" can
 * be told apart from "unknown op". */
int dab_op_known(const char *domain, const char *name);

/* Calls fn for every registered definition (for `dabba inspect --ops` and tests). */
void dab_op_foreach(void (*fn)(const dab_op_def_t *def, void *user), void *user);

/* Attributes the graph optimizer puts on Conv, Gemm and MatMul when it fuses the
 * activation that followed them (not ONNX's; the leading underscore keeps them apart):
 * the dab_act_kind_t number (kernels.h) and its two parameters. */
#define DAB_ATTR_FUSED_ACT "_dabba_activation"
#define DAB_ATTR_FUSED_ALPHA "_dabba_activation_alpha"
#define DAB_ATTR_FUSED_BETA "_dabba_activation_beta"
/* On an Attention the optimizer made from MatMul-scale-Add-Softmax-MatMul: attn_mask was
 * the Add's other operand, so a last dim of 1 broadcasts over the keys as Add would. */
#define DAB_ATTR_MASK_FROM_ADD "_dabba_mask_from_add"

/* ---- attribute access (node->attrs); missing attributes give the default ---- */
const dab_attr_t *dab_attr_find(const dab_node_t *node, const char *name);
int64_t dab_attr_int(const dab_node_t *node, const char *name, int64_t def);
float dab_attr_float(const dab_node_t *node, const char *name, float def);
const char *dab_attr_string(const dab_node_t *node, const char *name, const char *def);
/* Returns the list length and sets *vals, or -1 (and *vals = NULL) when absent. */
int dab_attr_ints(const dab_node_t *node, const char *name, const int64_t **vals);
int dab_attr_floats(const dab_node_t *node, const char *name, const float **vals);

/* ---- helpers shared by operator families (broadcast.c, ops_util.c) ---- */

/*
 * Multidirectional (numpy) broadcast of n shapes into out (dims and rank only;
 * out->dtype untouched). ESHAPE with both shapes named on mismatch.
 */
int dab_broadcast_shapes(int n, const dab_tensor_t *const *ts, dab_tensor_t *out,
                         dab_err_t *err);

/*
 * Strides (in elements) of `in` viewed as broadcast to out's shape: 0 along broadcast
 * dims. strides has out->rank entries.
 */
void dab_broadcast_strides(const dab_tensor_t *in, const dab_tensor_t *out, int64_t *strides);

/* Normalizes axis in [-rank, rank) to [0, rank); ERANGE naming `what` when out of range. */
int dab_norm_axis(int64_t axis, int rank, const char *what, int *out, dab_err_t *err);

/* Reads a 1-D (or scalar) integer tensor (int32/int64) into vals (at most max); returns the
 * count through *n. ETYPE/ELIMIT with `what` named on bad input. */
int dab_read_ints(const dab_tensor_t *t, const char *what, int64_t *vals, int max, int *n,
                  dab_err_t *err);

/* An exit that frees node->priv (a single dab_malloc'd block). */
void dab_op_free_priv(dab_node_t *node);

/* Number of OpenMP threads to use for `work` elementary operations (1 when small). */
int dab_par_threads(const dab_exec_ctx_t *ctx, int64_t work);

/*
 * for (T i = 0; i < n; i++) { body } on nt OpenMP threads, or as a plain loop when nt <= 1:
 * an OpenMP region costs a microsecond or two even when its if-clause is false, which is
 * most of a small model's run time. The thread count must be in a variable named `nt`.
 */
/* clang-format off */
#define DAB_PAR_FOR(nt, T, i, n, ...)                                      \
    do {                                                                   \
        const T dab_pf_n_ = (n);                                           \
        if ((nt) > 1) {                                                    \
            _Pragma("omp parallel for num_threads(nt) schedule(static)")   \
            for (T i = 0; i < dab_pf_n_; i++) { __VA_ARGS__ }              \
        } else {                                                           \
            for (T i = 0; i < dab_pf_n_; i++) { __VA_ARGS__ }              \
        }                                                                  \
    } while (0)
/* clang-format on */

/* Operator families: each family file defines its table, terminated by a {0} entry. */
extern const dab_op_def_t dab_ops_elementwise[];
extern const dab_op_def_t dab_ops_shape[];
extern const dab_op_def_t dab_ops_reduce[];
extern const dab_op_def_t dab_ops_nn[];
extern const dab_op_def_t dab_ops_transformer[];
extern const dab_op_def_t dab_ops_index[];
extern const dab_op_def_t dab_ops_image[];
extern const dab_op_def_t dab_ops_quant[];
extern const dab_op_def_t dab_ops_rnn[];
extern const dab_op_def_t dab_ops_random[];
extern const dab_op_def_t dab_ops_control[];

#endif
