/*
 * random.c - operators that draw random numbers (RandomUniform, RandomNormal, their *Like
 * forms, Bernoulli, Multinomial).
 */
#include "ops.h"

const dab_op_def_t dab_ops_random[] = {
    {0},
};
