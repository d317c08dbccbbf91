"""Reads a Gemm/Relu/Softmax ONNX graph (digits_mlp) into plain numpy layers.

Shared by the HTTP benchmark's FastAPI peer (bench/http/fastapi_server.py, which turns the
layers into a torch module) and its answer checker (bench/http/check.py, which runs them in
numpy as the reference). Only the node kinds digits_mlp uses are accepted; anything else is
an error naming the node, so a changed model cannot be served wrongly by the peer.
Needs Debian's python3-onnx and python3-numpy.
"""
import numpy as np


def load_layers(path):
    """Returns (input_name, output_name, layers) for the ONNX model at path.

    layers is a list, in graph order, of ("gemm", W [out,in] float32, b [out] float32),
    ("relu",) and ("softmax",). Raises ValueError for any graph that is not a single chain
    of Gemm (alpha 1, beta 1, transA 0), Relu and Softmax (last axis) nodes."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in g.initializer}
    inputs = [i.name for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ValueError(f"{path}: expected one input and one output, got {inputs} and "
                         f"{[o.name for o in g.output]}")
    layers = []
    current = inputs[0]
    for n in g.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if not n.input or n.input[0] != current:
            raise ValueError(f"{path}: node {n.name or n.op_type} does not continue the chain")
        if n.op_type == "Gemm":
            if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
                raise ValueError(f"{path}: Gemm {n.name} has attributes {attrs} (need alpha=beta=1, transA=0)")
            w = inits[n.input[1]]
            if not attrs.get("transB", 0):
                w = w.T.copy()
            b = inits[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[0], np.float32)
            layers.append(("gemm", np.ascontiguousarray(w), b))
        elif n.op_type == "Relu":
            layers.append(("relu",))
        elif n.op_type == "Softmax":
            if attrs.get("axis", -1) not in (1, -1):
                raise ValueError(f"{path}: Softmax {n.name} axis {attrs['axis']} (need the last axis)")
            layers.append(("softmax",))
        else:
            raise ValueError(f"{path}: unsupported node {n.name} of type {n.op_type}")
        current = n.output[0]
    if current != g.output[0].name:
        raise ValueError(f"{path}: the chain ends in {current}, not the output {g.output[0].name}")
    return inputs[0], g.output[0].name, layers


def numpy_forward(layers, x):
    """Runs layers on x [batch,in] in float64; returns [batch,out] float64."""
    y = np.asarray(x, np.float64)
    for layer in layers:
        if layer[0] == "gemm":
            y = y @ layer[1].astype(np.float64).T + layer[2].astype(np.float64)
        elif layer[0] == "relu":
            y = np.maximum(y, 0.0)
        else:
            e = np.exp(y - y.max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
    return y
