/*
 * quant.c - quantization operators (quantize/dequantize, integer matrix products and convolutions).
 */
#include "ops.h"

const dab_op_def_t dab_ops_quant[] = {
    {0},
};
