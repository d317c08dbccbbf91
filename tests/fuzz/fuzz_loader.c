/*
 * fuzz_loader.c - libFuzzer target for model files: the bytes are loaded as an
 * ONNX model; when that succeeds and the inputs have small declared shapes,
 * the model is also run once on zero inputs under a memory limit. Anything but
 * a clean error or a result is a bug.
 */
#include <stdint.h>
#include <string.h>

#include "onnx/onnx.h"

#define MAX_INPUT_ELEMS 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dab_graph_t *g = NULL;
    dab_err_t err = {0};
    if (dab_onnx_load_buffer(data, size, NULL, &g, &err))
        return 0;
    dab_session_t *s = NULL;
    dab_session_opts_t so = {.threads = 1, .max_value_bytes = 16u << 20};
    enum { MAX_IO = 16 };
    dab_tensor_t ins[MAX_IO] = {0};
    const dab_tensor_t *feed[MAX_IO] = {0};
    const dab_tensor_t *outs[MAX_IO] = {0};
    if (g->n_inputs > MAX_IO || g->n_outputs > MAX_IO || dab_session_create(g, &so, &s, &err))
        goto done;
    for (int i = 0; i < g->n_inputs; i++) {
        const dab_value_t *v = &g->values[g->inputs[i]];
        int64_t dims[DAB_MAX_RANK], n = 1;
        if (v->rank < 0 || v->dtype == DAB_DT_UNDEFINED || v->dtype == DAB_DT_STRING)
            goto done;
        for (int d = 0; d < v->rank; d++) {
            dims[d] = v->dims[d] < 0 ? 1 : v->dims[d];
            if (dims[d] > MAX_INPUT_ELEMS || (n *= dims[d]) > MAX_INPUT_ELEMS)
                goto done;
        }
        if (dab_tensor_alloc(&ins[i], v->dtype, v->rank, dims, &err))
            goto done;
        feed[i] = &ins[i];
    }
    dab_session_run(s, feed, outs, &err);
done:
    for (int i = 0; i < MAX_IO; i++)
        dab_tensor_free(&ins[i]);
    dab_session_free(s);
    dab_graph_free(g);
    return 0;
}
