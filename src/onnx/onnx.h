/*
 * onnx.h - reading ONNX files into the engine's IR (graph/graph.h).
 *
 * Model files come from outside and are never trusted: sizes are checked before
 * they are used, and every failure names the node, tensor or field at fault.
 * Weights are moved out of the parsed protobuf message (no second copy), or
 * mapped from external data files with mmap.
 */
#ifndef DAB_ONNX_H
#define DAB_ONNX_H

#include "../graph/graph.h"

/*
 * Loads the model at path and returns a finalized graph in *out (the caller frees it
 * with dab_graph_free). External data is resolved relative to the model's folder, and a
 * location that leaves that folder is refused. On error *out is NULL and err says why.
 */
int dab_onnx_load_file(const char *path, dab_graph_t **out, dab_err_t *err);

/*
 * Same from memory; base_dir resolves external data (NULL: external data refused).
 * buf is only read during the call.
 */
int dab_onnx_load_buffer(const void *buf, size_t len, const char *base_dir, dab_graph_t **out,
                         dab_err_t *err);

/*
 * Reads a serialized TensorProto (.pb, as in the ONNX backend tests) into t (data
 * allocated with dab_malloc; free with dab_tensor_free). *name, when non-NULL, receives the
 * tensor's name (dab_malloc'd, may be empty). Non-tensor protos (sequences, optionals)
 * are refused with EUNSUPPORTED.
 */
int dab_onnx_read_tensor_file(const char *path, dab_tensor_t *t, char **name, dab_err_t *err);

/* Parses a serialized TensorProto from memory (same contract as above). */
int dab_onnx_parse_tensor(const void *buf, size_t len, dab_tensor_t *t, char **name,
                          dab_err_t *err);

#endif
