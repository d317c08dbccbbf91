/*
 * image.c - image and signal operators (resizing, spatial rearrangement, normalizations over images, pooling variants, sampling).
 */
#include "ops.h"

const dab_op_def_t dab_ops_image[] = {
    {0},
};
