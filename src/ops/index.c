/*
 * index.c - indexing, scatter/gather, selection and loss operators.
 */
#include "ops.h"

const dab_op_def_t dab_ops_index[] = {
    {0},
};
