#!/usr/bin/python3
"""Generate the benchmark-only models into bench/models/ (not committed).

  mlp_wide.onnx  MLP 784-1024-1024-10: Gemm(transB=1)+Relu x2, Gemm, Softmax.
                 input `pixels` FP32 [batch, 784], output `probabilities` FP32 [batch, 10].
                 Random weights (He-scaled normal, seed 0): only the speed matters.

Usage: tools/make_bench_models.py [OUTDIR]   (default bench/models). Deterministic.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPSET = 13


def mlp(sizes, input_name, seed):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = input_name
    for i in range(len(sizes) - 1):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        w = (rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"fc{i}.weight"),
                  numpy_helper.from_array(b, f"fc{i}.bias")]
        y = f"fc{i}"
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [y],
                                      name=f"Gemm_{i}", alpha=1.0, beta=1.0, transB=1))
        x = y
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"relu{i}"], name=f"Relu_{i}"))
            x = f"relu{i}"
    nodes.append(helper.make_node("Softmax", [x], ["probabilities"], name="Softmax", axis=1))
    graph = helper.make_graph(
        nodes, "mlp_" + "_".join(map(str, sizes)),
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="dabba tools/make_bench_models.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "bench", "models")
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "mlp_wide.onnx")
    onnx.save(mlp([784, 1024, 1024, 10], "pixels", seed=0), path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
