#!/usr/bin/env python3
"""Generates the small ONNX files the loader and session unit tests use,
valid and deliberately broken, into tests/data/models/. Run with Debian's
python3-onnx: /usr/bin/python3 tools/make_test_models.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "models")


def save(model, name, check=True):
    if check:
        onnx.checker.check_model(model)
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def mlp():
    """x[batch,4] -> MatMul(W1)+b1 -> Relu -> MatMul(W2)+b2 -> Softmax -> y[batch,3]."""
    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.standard_normal((3,)).astype(np.float32), "b2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="add1"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="mm2"),
        helper.make_node("Add", ["h3", "b2"], ["h4"], name="add2"),
        helper.make_node("Softmax", ["h4"], ["y"], name="softmax", axis=-1),
    ]
    g = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w1, b1, w2, b2])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def main():
    os.makedirs(OUT, exist_ok=True)
    m = mlp()
    save(m, "mlp.onnx")

    # Constant node, typed-field initializer and an initializer listed as input.
    g = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
            "c", TensorProto.FLOAT, [2], [1.0, 2.0])),
         helper.make_node("Add", ["x", "c"], ["s"]),
         helper.make_node("Mul", ["s", "k"], ["y"])],
        "consts",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("k", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [helper.make_tensor("k", TensorProto.FLOAT, [2], [3.0, 4.0])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "consts.onnx")

    # External data next to the model, and one whose location escapes the folder.
    for name, loc in (("external.onnx", "external.bin"), ("external_escape.onnx", "../escape.bin")):
        w = helper.make_tensor("w", TensorProto.FLOAT, [4], [0, 0, 0, 0])
        w.ClearField("float_data")
        w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", loc), ("offset", "0"), ("length", "16")):
            e = w.external_data.add()
            e.key, e.value = k, v
        g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "ext",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w])
        save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), name, check=False)
    np.array([1, 2, 3, 4], dtype=np.float32).tofile(os.path.join(OUT, "external.bin"))

    # A cycle: a -> b -> a.
    g = helper.make_graph(
        [helper.make_node("Relu", ["b"], ["a"], name="r1"),
         helper.make_node("Relu", ["a"], ["b"], name="r2"),
         helper.make_node("Add", ["x", "b"], ["y"], name="out")],
        "cycle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "cycle.onnx", False)

    # A node reading a value nobody produces.
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")], "missing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "missing_input.onnx", False)

    # An operator nobody implements.
    g = helper.make_graph(
        [helper.make_node("FrobnicateTensor", ["x"], ["y"], name="frob", domain="example.org")],
        "unknown", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                             helper.make_opsetid("example.org", 1)]),
         "unknown_op.onnx", False)

    # Raw data shorter than the shape needs.
    t = helper.make_tensor("w", TensorProto.FLOAT, [4], np.zeros(4, np.float32).tobytes(), raw=True)
    t.raw_data = np.zeros(3, np.float32).tobytes()
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "short",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [t])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "short_raw.onnx", False)

    # Dimensions whose product overflows 64 bits.
    t = helper.make_tensor("w", TensorProto.FLOAT, [1], np.zeros(1, np.float32).tobytes(), raw=True)
    del t.dims[:]
    t.dims.extend([1 << 40, 1 << 40])
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "huge",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [t])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "overflow_dims.onnx", False)

    # An unknown data type number.
    t = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    t.data_type = 99
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "badtype",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [t])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "bad_dtype.onnx", False)

    # A node that omits a required input (its first, given as "").
    g = helper.make_graph(
        [helper.make_node("ReduceSum", ["", "x"], ["y"], name="reducer")], "omitted",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "omitted_input.onnx", False)

    # A Gather whose constant index is out of range (refused at run time, not a crash).
    g = helper.make_graph(
        [helper.make_node("Gather", ["x", "idx"], ["y"], name="gather", axis=0)], "gather_oob",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [helper.make_tensor("idx", TensorProto.INT64, [1], [7])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "gather_oob.onnx", False)

    # Subgraph attribute (If) reading an outer-scope value: must load.
    then_g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1])])
    g = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)], "iff",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "if_subgraph.onnx")

    # The scheduler's tests. row_sum: y[b] = sum of x[b, :] over a variable row length n,
    # so requests of different n cannot share a batch.
    g = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)], "row_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "row_sum.onnx")
    # slow: y = x + 0 * sum((s * ones[1536, 1536]) @ ... ) with s = sum(x): a run costs three
    # 1536^3 matrix products whatever the batch (70 ms or more), so that end-to-end tests can
    # keep an instance busy while they queue requests behind it.
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("ConstantOfShape", ["big_shape"], ["ones"],
                              value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("Mul", ["ones", "s"], ["m0"])]
    for i in range(3):
        nodes.append(helper.make_node("MatMul", [f"m{i}", "ones"], [f"p{i}"]))
        nodes.append(helper.make_node("Tanh", [f"p{i}"], [f"m{i + 1}"]))
    nodes += [helper.make_node("ReduceSum", ["m3"], ["t"], keepdims=0),
              helper.make_node("Mul", ["t", "zero"], ["z"]),
              helper.make_node("Add", ["x", "z"], ["y"])]
    g = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor("big_shape", TensorProto.INT64, [2], [1536, 1536]),
         helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), "slow.onnx")

    # upsample_cnn: an encoder-decoder style CNN with Resize (linear and cubic) and a strided
    # ConvTranspose, random weights; test_examples.sh compares dabba with onnxruntime on it.
    rng = np.random.default_rng(7)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Resize", ["r1", "", "up2"], ["u1"], mode="linear",
                              coordinate_transformation_mode="half_pixel"),
             helper.make_node("ConvTranspose", ["u1", "w2", "b2"], ["t1"], strides=[2, 2],
                              pads=[1, 1, 1, 1], output_padding=[1, 1]),
             helper.make_node("Relu", ["t1"], ["r2"]),
             helper.make_node("Resize", ["r2", "", "down"], ["u2"], mode="cubic",
                              coordinate_transformation_mode="align_corners"),
             helper.make_node("Conv", ["u2", "w3", "b3"], ["y"])]
    g = helper.make_graph(
        nodes, "upsample_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 48, 48])],
        [weight("w1", 8, 3, 3, 3), weight("b1", 8), weight("w2", 8, 4, 3, 3), weight("b2", 4),
         weight("w3", 2, 4, 1, 1), weight("b3", 2),
         numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up2"),
         numpy_helper.from_array(np.array([1, 1, 0.75, 0.75], np.float32), "down")])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)]), "upsample_cnn.onnx")

    # Inputs and outputs of the mlp for the session tests.
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    onnx.save_tensor(numpy_helper.from_array(x, "x"), os.path.join(OUT, "mlp_x.pb"))
    w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    h = np.maximum(x @ w["w1"] + w["b1"], 0) @ w["w2"] + w["b2"]
    e = np.exp(h - h.max(axis=-1, keepdims=True))
    y = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    onnx.save_tensor(numpy_helper.from_array(y, "y"), os.path.join(OUT, "mlp_y.pb"))


if __name__ == "__main__":
    main()
