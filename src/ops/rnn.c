/*
 * rnn.c - recurrent operators (RNN, GRU, LSTM).
 */
#include "ops.h"

const dab_op_def_t dab_ops_rnn[] = {
    {0},
};
