/*
 * cli.h - the command line's internal interface: one function per command,
 * each parsing its own flags and calling into the subsystems.
 */
#ifndef DAB_CLI_H
#define DAB_CLI_H

#include "../base/base.h"
#include "../graph/graph.h"
#include "../onnx/onnx.h"

int dab_cmd_inspect(int argc, char **argv);
int dab_cmd_run(int argc, char **argv);
int dab_cmd_perf(int argc, char **argv);
int dab_cmd_conformance(int argc, char **argv);
int dab_cmd_serve(int argc, char **argv);

/* Parses a positive int flag value; prints an error naming flag and returns -1 on bad input. */
int dab_cli_int(const char *flag, const char *value, int min, int max);

/*
 * Loads the model at path and optimizes it at `level` (dab_graph_optimize). On error *out
 * is NULL and err says why.
 */
int dab_cli_load(const char *path, dab_opt_level_t level, dab_graph_t **out, dab_err_t *err);

/* Parses an --optimize value (none|basic|all); prints an error naming flag and returns -1
 * on a bad one. */
int dab_cli_opt_level(const char *flag, const char *value, dab_opt_level_t *out);

/* Reads a tensor file (.npy, or an ONNX TensorProto .pb) into t (free with dab_tensor_free). */
int dab_cli_read_tensor(const char *path, dab_tensor_t *t, dab_err_t *err);

#endif
