/*
 * transformer.c - transformer operators (normalizations, attention, rotary embeddings, triangular masks, scans along an axis).
 */
#include "ops.h"

const dab_op_def_t dab_ops_transformer[] = {
    {0},
};
