#!/usr/bin/env python3
"""Writes bench/models/image_cnn/1/model.onnx: a small image model for the HTTP benchmark.

The HTTP benchmark (bench/http/run.sh) compares a JSON body with a binary-extension body on a
1x3x224x224 FP32 input. The model is deliberately cheap so that the request codec, not the
compute, decides the difference:

    image FP32 [batch,3,224,224]
      -> Conv(16 filters, 8x8, stride 8)   [batch,16,28,28]   (non-overlapping patches)
      -> Relu
      -> GlobalAveragePool                 [batch,16,1,1]
      -> Flatten                           [batch,16]
      -> Gemm(transB=1, W [10,16], b [10]) [batch,10]  = logits

Weights come from a fixed seed, so the file is the same on every run. reference_logits() is
the same computation in numpy (the benchmark uses it to check dabba's answer).

Usage: make_image_model.py [OUT]   (default bench/models/image_cnn/1/model.onnx)
Needs Debian's python3-onnx and python3-numpy (/usr/bin/python3).
"""
import os
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(ROOT, "bench", "models", "image_cnn", "1", "model.onnx")
CHANNELS, SIZE, FILTERS, KERNEL, CLASSES = 3, 224, 16, 8, 10


def weights():
    """The model's parameters, from a fixed seed: (conv_w, conv_b, fc_w, fc_b), all float32."""
    rng = np.random.default_rng(20240604)
    conv_w = rng.normal(0.0, 0.1, (FILTERS, CHANNELS, KERNEL, KERNEL)).astype(np.float32)
    conv_b = rng.normal(0.0, 0.1, (FILTERS,)).astype(np.float32)
    fc_w = rng.normal(0.0, 0.5, (CLASSES, FILTERS)).astype(np.float32)
    fc_b = rng.normal(0.0, 0.1, (CLASSES,)).astype(np.float32)
    return conv_w, conv_b, fc_w, fc_b


def reference_logits(image):
    """numpy forward pass of the model; image float32 [batch,3,224,224] -> float64 [batch,10]."""
    conv_w, conv_b, fc_w, fc_b = (w.astype(np.float64) for w in weights())
    b = image.shape[0]
    cells = SIZE // KERNEL
    # stride == kernel: the conv is a matrix product over non-overlapping 8x8 patches
    patches = image.astype(np.float64).reshape(b, CHANNELS, cells, KERNEL, cells, KERNEL)
    conv = np.einsum("bciyjx,fcyx->bfij", patches, conv_w) + conv_b[None, :, None, None]
    pooled = np.maximum(conv, 0.0).mean(axis=(2, 3))
    return pooled @ fc_w.T + fc_b


def build():
    """The ONNX ModelProto (opset 13, dynamic batch)."""
    from onnx import TensorProto, helper, numpy_helper

    conv_w, conv_b, fc_w, fc_b = weights()
    inits = [numpy_helper.from_array(conv_w, "conv.weight"),
             numpy_helper.from_array(conv_b, "conv.bias"),
             numpy_helper.from_array(fc_w, "fc.weight"),
             numpy_helper.from_array(fc_b, "fc.bias")]
    nodes = [
        helper.make_node("Conv", ["image", "conv.weight", "conv.bias"], ["conv"],
                         kernel_shape=[KERNEL, KERNEL], strides=[KERNEL, KERNEL],
                         pads=[0, 0, 0, 0], dilations=[1, 1], group=1),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"],
                         alpha=1.0, beta=1.0, transB=1),
    ]
    graph = helper.make_graph(
        nodes, "image_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="dabba bench/http/make_image_model.py",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def main():
    import onnx

    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    model = build()
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, out)
    print(f"make_image_model: wrote {out}")


if __name__ == "__main__":
    main()
