/*
 * kernels.h - the numeric kernels behind the neural-network operators (src/ops/nn*.c).
 *
 * Two families sit behind one set of geometry descriptors:
 *   ref/   portable C, every dtype the operators accept, every attribute combination.
 *          They are the oracle: tests/unit/test_kernels.c checks the fast paths against them.
 *   dnnl/  float32 through oneDNN (one engine per process). A dab_dnnl_prim_t is a
 *          primitive built once for one geometry and reused on every run: memory objects
 *          are re-bound to new pointers, temporary buffers live in caller-provided scratch,
 *          constant weights are reordered once into oneDNN's preferred layout.
 *
 * The operators decide the path: they build a geometry from attributes and shapes, ask
 * dnnl for a primitive (DAB_EUNSUPPORTED means "no oneDNN implementation for this
 * combination": use the reference kernel) and cache it in node->priv keyed by geometry.
 *
 * Layouts are always dense row-major ONNX layouts: NC[D][H]W activations, Conv weights
 * [M, C/group, k...], ConvTranspose weights [C, M/group, k...].
 *
 * Threads: kernels that take `nt` run an OpenMP team of that size (1: the calling
 * thread only). oneDNN uses the calling thread's OpenMP setting (omp_set_num_threads).
 * All kernels may be called from any thread; a dab_dnnl_prim_t is used by one thread
 * at a time (it belongs to one node of one session).
 */
#ifndef DAB_KERNELS_H
#define DAB_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"
#include "../tensor/tensor.h"

/* Spatial rank the convolution and pooling kernels handle (1-D, 2-D and 3-D). */
#define DAB_KSP 3

/*
 * An activation fused into a convolution or product by the graph optimizer, applied to
 * every output element after the bias (and a Gemm's C). oneDNN primitives built from a
 * geometry carrying one apply it as a post-op; the reference kernels ignore it and the
 * operator runs dab_act_apply over the output instead. Zeroed: none.
 */
typedef enum dab_act_kind {
    DAB_ACT_NONE = 0,
    DAB_ACT_RELU,       /* max(x, 0); alpha != 0: LeakyRelu's x < 0 ? alpha * x : x */
    DAB_ACT_SIGMOID,
    DAB_ACT_TANH,
    DAB_ACT_CLIP,       /* min(max(x, alpha), beta) */
    DAB_ACT_GELU_ERF,
    DAB_ACT_GELU_TANH,
    DAB_ACT_HARDSWISH,  /* x * min(max(x + 3, 0), 6) / 6 */
} dab_act_kind_t;

typedef struct dab_act {
    int kind; /* dab_act_kind_t */
    float alpha, beta;
} dab_act_t;

/* Applies act in place to n float32 (dt FLOAT) or float64 (DOUBLE) values; other dtypes
 * give DAB_EUNSUPPORTED. */
int dab_act_apply(const dab_act_t *act, dab_dtype_t dt, void *y, int64_t n, int nt);

/*
 * Geometry of a convolution or transposed convolution. Spatial arrays hold nsp
 * meaningful entries; entries nsp..DAB_KSP-1 must be in = out = k = stride = dil = 1 and
 * pads 0 (dab_conv_geom_pad fills them) so kernels can always loop over 3 dims.
 * For Conv, in/out are X/Y spatial sizes and out = floor((in + pl + ph - kd) / s) + 1.
 * For ConvTranspose, c_in/in describe X, c_out/out describe Y and
 * out = (in - 1) * s + kd - pl - ph + output_padding (pads may be negative there when
 * output_shape asked for a larger output).
 * kd = (k - 1) * dil + 1 is the dilated kernel extent.
 */
typedef struct dab_conv_geom {
    int nsp;
    int64_t n;
    int64_t c_in, c_out, group;
    int64_t in[DAB_KSP], out[DAB_KSP], k[DAB_KSP];
    int64_t stride[DAB_KSP], dil[DAB_KSP], pad_lo[DAB_KSP], pad_hi[DAB_KSP];
    dab_act_t act; /* oneDNN post-op; ignored by the reference kernels */
} dab_conv_geom_t;

/*
 * Geometry of a pooling window over [n, c, in...] giving [n, c, out...]. pad_hi is the
 * model's end padding: with count_include_pad, a window's divisor counts the positions
 * inside [-pad_lo, in + pad_hi) (the extension ceil_mode adds past that is not counted).
 * Windows that start in the right padding are the caller's business (output sizing).
 */
typedef struct dab_pool_geom {
    int nsp;
    int64_t n, c;
    int64_t in[DAB_KSP], out[DAB_KSP], k[DAB_KSP];
    int64_t stride[DAB_KSP], dil[DAB_KSP], pad_lo[DAB_KSP], pad_hi[DAB_KSP];
    int count_include_pad; /* AveragePool */
    int storage_order;     /* MaxPool Indices: 0 row-major, 1 column-major */
} dab_pool_geom_t;

/*
 * Geometry of a (batched, broadcast) matrix product
 *   C[b..., i, j] = alpha * sum_k A[b..., i, k] * B[b..., k, j]  (+ C[b..., i, j] if accumulate)
 * C is dense [batch..., m, n]. A's element (b, i, k) sits at
 * sum(b_d * a_bstride[d]) + i * a_rs + k * a_cs (B likewise with k, j); a batch stride of 0
 * broadcasts that operand along the dim. Transposed operands are just swapped strides.
 */
typedef struct dab_matmul_geom {
    int batch_rank; /* 0..DAB_MAX_RANK-2 */
    int64_t batch[DAB_MAX_RANK];
    int64_t a_bstride[DAB_MAX_RANK], b_bstride[DAB_MAX_RANK];
    int64_t m, n, k;
    int64_t a_rs, a_cs, b_rs, b_cs;
    double alpha;
    int accumulate;
    dab_act_t act; /* oneDNN post-op after the sum; ignored by the reference kernels */
} dab_matmul_geom_t;

/* Fills spatial entries nsp..DAB_KSP-1 with the neutral values kernels expect. */
void dab_conv_geom_pad(dab_conv_geom_t *g);
void dab_pool_geom_pad(dab_pool_geom_t *g);

/* ---- reference kernels (src/kernels/ref/) ----
 * Each returns 0, or DAB_EUNSUPPORTED when dt is not one it implements (the operator's
 * dtype mask should have caught that earlier). Inputs never alias outputs. */

/* Matrix product for float32/64 and 8..64-bit signed/unsigned integers (integer
 * products wrap modulo 2^bits; alpha is cast to the dtype). */
int dab_ref_matmul(dab_dtype_t dt, const dab_matmul_geom_t *g, const void *a, const void *b,
                   void *c, int nt);

/*
 * float32 y[j] = alpha * sum_k x[k] * B(k, j) (+ y[j] when accumulate): the M == 1 case of
 * dab_ref_matmul, written for batch-1 latency (one pass over B, vectorized, split over
 * columns). B(k, j) = b[k * b_rs + j * b_cs] with either b_cs == 1 or b_rs == 1.
 */
void dab_gemv_f32(int64_t n, int64_t k, const float *x, const float *b, int64_t b_rs, int64_t b_cs,
                  float alpha, int accumulate, float *y, int nt);

/* Convolution for float32/float64; b (per output channel) may be NULL. */
int dab_ref_conv(dab_dtype_t dt, const dab_conv_geom_t *g, const void *x, const void *w,
                 const void *b, void *y, int nt);

/* Transposed convolution for float32/float64; b may be NULL. */
int dab_ref_conv_transpose(dab_dtype_t dt, const dab_conv_geom_t *g, const void *x, const void *w,
                           const void *b, void *y, int nt);

/* Max pooling for float32/float64/int8/uint8 (+int16/uint16/int32/int64/uint32/uint64).
 * indices (may be NULL) receive the flat input index of each maximum (storage_order
 * decides row- or column-major spatial numbering). A window with no input element gives
 * the dtype's lowest value and index -1. */
int dab_ref_maxpool(dab_dtype_t dt, const dab_pool_geom_t *g, const void *x, void *y,
                    int64_t *indices, int nt);

/* Average pooling for float32/float64. */
int dab_ref_avgpool(dab_dtype_t dt, const dab_pool_geom_t *g, const void *x, void *y, int nt);

/* Global max (is_max) or average over `spatial` contiguous elements of each of `planes`
 * planes: y[p] = reduce(x[p * spatial .. (p + 1) * spatial)). float32/float64. */
int dab_ref_global_pool(dab_dtype_t dt, int is_max, int64_t planes, int64_t spatial, const void *x,
                        void *y, int nt);

/*
 * Per-channel affine map of an [n, c, spatial] tensor: y = x * scale[p] + shift[p] where
 * p = c index (per_elem 0) or c * spatial + s index (per_elem 1). float32/float64 x/y;
 * scale and shift are double. (BatchNormalization folds its statistics into these.)
 */
int dab_ref_channel_affine(dab_dtype_t dt, int64_t n, int64_t c, int64_t spatial, int per_elem,
                           const void *x, const double *scale, const double *shift, void *y,
                           int nt);

/* Mean and (biased) variance per channel of an [n, c, spatial] tensor, in double.
 * float32/float64. */
int dab_ref_channel_moments(dab_dtype_t dt, int64_t n, int64_t c, int64_t spatial, const void *x,
                            double *mean, double *var, int nt);

/* ---- oneDNN kernels (src/kernels/dnnl/) ---- */

typedef struct dab_dnnl_prim dab_dnnl_prim_t;

/*
 * Builds a float32 matmul primitive for g (alpha included; accumulate becomes a "sum"
 * post-op: C = alpha*A*B + C, so C must hold the addend before the run). bias: add a [n]
 * vector to every row (needs alpha == 1). const_b: when non-NULL, B's data is constant
 * at this pointer; it is reordered now into oneDNN's preferred layout and reused while
 * runs pass that pointer (other pointers are repacked on each run). Needs B's batch
 * strides to be 0 (one matrix), else it is ignored.
 * threads: the OpenMP team the primitive is planned for and runs with (small products
 * run on the calling thread alone: an OpenMP fork costs more than they do).
 * On success *out owns the primitive. DAB_EUNSUPPORTED when oneDNN has no implementation.
 * Any thread; allocates (call from reshape, not compute).
 */
int dab_dnnl_matmul_create(const dab_matmul_geom_t *g, int bias, const float *const_b, int threads,
                           dab_dnnl_prim_t **out, dab_err_t *err);

/* Convolution (transposed = 0) or transposed convolution (1), float32, bias optional.
 * const_w and threads as for matmul. DAB_EUNSUPPORTED for negative transposed padding. */
int dab_dnnl_conv_create(const dab_conv_geom_t *g, int transposed, int bias, const float *const_w,
                         int threads, dab_dnnl_prim_t **out, dab_err_t *err);

/* Max (is_max) or average pooling, float32, no indices. DAB_EUNSUPPORTED when oneDNN's
 * semantics differ from g's (count_include_pad over a ceil_mode extension) or it declines
 * the padding. */
int dab_dnnl_pool_create(const dab_pool_geom_t *g, int is_max, int threads, dab_dnnl_prim_t **out,
                         dab_err_t *err);

/*
 * Lets p use peer's packed constant weights when both were built from the same constant
 * and chose the same layout (a node's primitives for other shapes usually do), freeing
 * p's own copy. Returns 1 when shared. Both must belong to the same node (one thread).
 */
int dab_dnnl_prim_share_weights(dab_dnnl_prim_t *p, dab_dnnl_prim_t *peer);

/* Bytes of scratch dab_dnnl_prim_run needs (64-byte aligned memory). */
size_t dab_dnnl_prim_scratch_bytes(const dab_dnnl_prim_t *p);

/*
 * Runs the primitive: src (A / X), wei (B / W, NULL for pooling), bias (NULL when built
 * without), dst (C / Y). scratch: dab_dnnl_prim_scratch_bytes of 64-byte aligned memory.
 * Does not allocate from the heap. One thread at a time per primitive.
 */
int dab_dnnl_prim_run(dab_dnnl_prim_t *p, const void *src, const void *wei, const void *bias,
                      void *dst, void *scratch, dab_err_t *err);

/* Frees the primitive and everything it owns. NULL is fine. */
void dab_dnnl_prim_free(dab_dnnl_prim_t *p);

#endif
