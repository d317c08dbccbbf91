"""Reads a single-chain ONNX graph (digits_mlp, mlp_wide, digits_cnn) into plain numpy layers.

Shared by the HTTP benchmarks' FastAPI peer (bench/http/fastapi_server.py, which turns the
layers into a torch module) and their answer checkers (bench/http/check.py,
bench/batch/batch.py, which run them in numpy as the reference). Only the node kinds these
models use are accepted; anything else is an error naming the node, so a changed model cannot
be served wrongly by the peer.

load_layers() takes MLPs only (Gemm, Relu, Softmax), as bench/http/run.sh always did;
load_chain() also takes the convolutional nodes of digits_cnn (Conv, MaxPool, AveragePool,
Flatten) for the batching benchmark (bench/batch/run.sh).
Needs Debian's python3-onnx and python3-numpy.
"""
import numpy as np

MLP_OPS = ("Gemm", "Relu", "Softmax")
CHAIN_OPS = MLP_OPS + ("Conv", "MaxPool", "AveragePool", "Flatten")


def load_layers(path):
    """Returns (input_name, output_name, layers) for the ONNX model at path.

    layers is a list, in graph order, of ("gemm", W [out,in] float32, b [out] float32),
    ("relu",) and ("softmax",). Raises ValueError for any graph that is not a single chain
    of Gemm (alpha 1, beta 1, transA 0), Relu and Softmax (last axis) nodes."""
    return _load(path, MLP_OPS)


def load_chain(path):
    """Like load_layers, but also accepts these 2-D convolutional nodes (NCHW):

    Conv        -> ("conv", W [out,in/group,kh,kw] float32, b [out] float32,
                    strides (sh,sw), pads (top,left,bottom,right), dilations (dh,dw), group)
                   symmetric pads, auto_pad NOTSET
    MaxPool     -> ("maxpool", (kh,kw), (sh,sw))       no padding, ceil_mode 0, no dilation
    AveragePool -> ("avgpool", (kh,kw), (sh,sw))       no padding, ceil_mode 0
    Flatten     -> ("flatten", axis)                   axis >= 1
    Raises ValueError naming the node for anything else."""
    return _load(path, CHAIN_OPS)


def _load(path, allowed):
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
        if n.op_type not in allowed:
            raise ValueError(f"{path}: unsupported node {n.name} of type {n.op_type}")
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
        elif n.op_type == "Conv":
            layers.append(_conv_layer(path, n, attrs, inits))
        elif n.op_type in ("MaxPool", "AveragePool"):
            layers.append(_pool_layer(path, n, attrs))
        else:  # Flatten
            axis = attrs.get("axis", 1)
            if axis < 1:
                raise ValueError(f"{path}: Flatten {n.name} axis {axis} (need >= 1)")
            layers.append(("flatten", axis))
        current = n.output[0]
    if current != g.output[0].name:
        raise ValueError(f"{path}: the chain ends in {current}, not the output {g.output[0].name}")
    return inputs[0], g.output[0].name, layers


def _conv_layer(path, n, attrs, inits):
    if n.input[1] not in inits or (len(n.input) > 2 and n.input[2] and n.input[2] not in inits):
        raise ValueError(f"{path}: Conv {n.name} weights are not initializers")
    w = inits[n.input[1]]
    if w.ndim != 4:
        raise ValueError(f"{path}: Conv {n.name} is not 2-D (weights {list(w.shape)})")
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if auto_pad not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"{path}: Conv {n.name} auto_pad {auto_pad} (need NOTSET)")
    if list(attrs.get("kernel_shape", w.shape[2:])) != list(w.shape[2:]):
        raise ValueError(f"{path}: Conv {n.name} kernel_shape {attrs['kernel_shape']} != weights {list(w.shape)}")
    pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise ValueError(f"{path}: Conv {n.name} pads {list(pads)} (need symmetric 2-D pads)")
    b = inits[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[0], np.float32)
    return ("conv", w, b, tuple(attrs.get("strides", (1, 1))), pads,
            tuple(attrs.get("dilations", (1, 1))), int(attrs.get("group", 1)))


def _pool_layer(path, n, attrs):
    kernel = tuple(attrs.get("kernel_shape", ()))
    strides = tuple(attrs.get("strides", (1,) * len(kernel)))
    if len(kernel) != 2 or len(strides) != 2:
        raise ValueError(f"{path}: {n.op_type} {n.name} is not 2-D (kernel_shape {list(kernel)})")
    if any(attrs.get("pads", (0, 0, 0, 0))) or attrs.get("ceil_mode", 0) or \
            attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or \
            any(d != 1 for d in attrs.get("dilations", (1, 1))) or attrs.get("storage_order", 0):
        raise ValueError(f"{path}: {n.op_type} {n.name} has attributes {attrs} "
                         f"(need no padding, ceil_mode 0, no dilation)")
    return ("maxpool" if n.op_type == "MaxPool" else "avgpool", kernel, strides)


def _windows(x, kernel, strides, dilations=(1, 1)):
    """Yields (i, j, view [n,c,oh,ow]) for each kernel offset of a strided 2-D window."""
    kh, kw = kernel
    oh = (x.shape[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (x.shape[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilations[0], j * dilations[1]
            yield i, j, x[:, :, r0:r0 + strides[0] * (oh - 1) + 1:strides[0],
                          c0:c0 + strides[1] * (ow - 1) + 1:strides[1]]


def numpy_forward(layers, x):
    """Runs layers on x [batch,...] in float64; returns [batch,out] float64."""
    y = np.asarray(x, np.float64)
    for layer in layers:
        if layer[0] == "gemm":
            y = y @ layer[1].astype(np.float64).T + layer[2].astype(np.float64)
        elif layer[0] == "relu":
            y = np.maximum(y, 0.0)
        elif layer[0] == "softmax":
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        elif layer[0] == "conv":
            w, b, strides, pads, dil, group = layer[1:]
            w = w.astype(np.float64)
            xp = np.pad(y, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
            cin, cout = w.shape[1], w.shape[0] // group
            out = None
            for g in range(group):
                xg = xp[:, g * cin:(g + 1) * cin]
                wg = w[g * cout:(g + 1) * cout]
                for i, j, view in _windows(xg, w.shape[2:], strides, dil):
                    part = np.einsum("nchw,oc->nohw", view, wg[:, :, i, j])
                    if out is None:
                        out = np.zeros((y.shape[0], w.shape[0]) + part.shape[2:])
                    out[:, g * cout:(g + 1) * cout] += part
            y = out + b.astype(np.float64)[None, :, None, None]
        elif layer[0] in ("maxpool", "avgpool"):
            views = [v for _, _, v in _windows(y, layer[1], layer[2])]
            y = np.max(views, axis=0) if layer[0] == "maxpool" else np.mean(views, axis=0)
        elif layer[0] == "flatten":
            y = y.reshape(int(np.prod(y.shape[:layer[1]])), -1)
        else:
            raise ValueError(f"unknown layer {layer[0]}")
    return y
