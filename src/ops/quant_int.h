/*
 * quant_int.h - what the quantization operator files share: element access for the
 * many dtypes scales and zero points come in, the integer ranges of quantized types, the
 * requantization step of the QLinear* operators, and each file's entry points for the
 * table in quant.c.
 *
 *   quant.c       QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear; the table
 *   quant_mm.c    MatMulInteger, QLinearMatMul
 *   quant_conv.c  ConvInteger, QLinearConv
 */
#ifndef DAB_OPS_QUANT_INT_H
#define DAB_OPS_QUANT_INT_H

#include <math.h>

#include "ops.h"

/* The 8-bit integer dtypes the integer products take. */
#define DAB_DTM_Q8 (DAB_DTM(DAB_DT_INT8) | DAB_DTM(DAB_DT_UINT8))

/* Input i, or NULL when absent (past n_inputs or omitted). */
static inline const dab_tensor_t *dab_q_in(const dab_node_t *node, int i)
{
    return i < node->n_inputs ? node->inputs[i] : NULL;
}

/* Element i of a numeric tensor of any dtype (small floats decoded) as float. */
static inline float dab_q_getf(const dab_tensor_t *t, int64_t i)
{
    if (t->dtype == DAB_DT_FLOAT)
        return ((const float *)t->data)[i];
    return (float)dab_tensor_get_f64(t, i);
}

/* Element i of an integer tensor as int32 (the zero points and the 8-bit inputs). */
static inline int32_t dab_q_geti(const dab_tensor_t *t, int64_t i)
{
    switch (t->dtype) {
    case DAB_DT_UINT8: return ((const uint8_t *)t->data)[i];
    case DAB_DT_INT8: return ((const int8_t *)t->data)[i];
    default: return (int32_t)dab_tensor_get_i64(t, i);
    }
}

/* float v rounded to the precision of dtype dt (float16 / bfloat16; others unchanged). */
static inline float dab_q_round_to(dab_dtype_t dt, float v)
{
    if (dt == DAB_DT_FLOAT16)
        return dab_f16_to_f32(dab_f32_to_f16(v));
    if (dt == DAB_DT_BFLOAT16)
        return dab_bf16_to_f32(dab_f32_to_bf16(v));
    return v;
}

/* a * b (both >= 0) for sizing thread teams, saturating rather than overflowing. */
static inline int64_t dab_q_work(int64_t a, int64_t b)
{
    return a && b > INT64_MAX / a ? INT64_MAX : a * b;
}

/* The value range of an integer quantized dtype; false for the others. */
bool dab_q_int_range(dab_dtype_t dt, int32_t *lo, int32_t *hi);

/* True when a quantization parameter holds one value (a scalar or a 1-element 1-D). */
static inline bool dab_q_is_single(const dab_tensor_t *t)
{
    return t->rank <= 1 && dab_tensor_numel(t) == 1;
}

/*
 * The multiplier a_scale * b_scale / y_scale of QLinearMatMul and QLinearConv, each step
 * rounded to the scales' dtype sdt (float, float16 or bfloat16) as ONNX's reference
 * computes it in numpy.
 */
static inline double dab_q_mult(dab_dtype_t sdt, float a, float b, float y)
{
    float ab = dab_q_round_to(sdt, a * b);
    return dab_q_round_to(sdt, ab / y);
}

/* An int32 accumulator scaled by mult, rounded half to even, shifted by zp and saturated
 * to [lo, hi] (NaN, from a zero scale, gives zp). */
static inline int32_t dab_q_requant(int32_t acc, double mult, int32_t zp, int32_t lo,
                                    int32_t hi)
{
    double v = (double)acc * mult;
    if (v != v)
        return zp;
    v = nearbyint(v) + zp;
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* Stores an in-range int32 into element i of an int8 / uint8 tensor's data. */
static inline void dab_q_put8(dab_dtype_t dt, void *data, int64_t i, int32_t v)
{
    if (dt == DAB_DT_INT8)
        ((int8_t *)data)[i] = (int8_t)v;
    else
        ((uint8_t *)data)[i] = (uint8_t)v;
}

/* ---- operators (defined in quant_*.c, listed in quant.c) ---- */
int dab_q_matmulint_reshape(dab_node_t *node, dab_err_t *err);
int dab_q_matmulint_compute(dab_node_t *node, dab_err_t *err);
int dab_q_qlmatmul_reshape(dab_node_t *node, dab_err_t *err);
int dab_q_qlmatmul_compute(dab_node_t *node, dab_err_t *err);

int dab_q_conv_init(dab_node_t *node, dab_err_t *err);
int dab_q_convint_reshape(dab_node_t *node, dab_err_t *err);
int dab_q_qlconv_reshape(dab_node_t *node, dab_err_t *err);
int dab_q_conv_compute(dab_node_t *node, dab_err_t *err);

#endif
