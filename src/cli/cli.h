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

/* Reads a tensor file (.npy, or an ONNX TensorProto .pb) into t (free with dab_tensor_free). */
int dab_cli_read_tensor(const char *path, dab_tensor_t *t, dab_err_t *err);

#endif
