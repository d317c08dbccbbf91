#!/usr/bin/env python3
"""Generates the control-flow test models (If, Loop, Scan; subgraphs that read values of
enclosing graphs) with their expected outputs, computed here with numpy.

  tests/data/models/control/<case>/model.onnx + test_data_set_N/{input,output}_K.pb
      the ONNX backend-test layout, so `dabba conformance tests/data/models/control`
      runs them too; tests/unit/test_session.c and test_optimize.c run every case.
  tests/data/models/cf_*.onnx
      models the engine must refuse, or stop, with a clear error.

Run with Debian's python3-onnx: /usr/bin/python3 tools/make_control_flow_models.py
"""
import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "models")
CASES = os.path.join(ROOT, "control")

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def vi(name, elem, shape=None):
    """shape None: rank 1 with a symbolic dim (onnx 1.12's checker wants a shape)."""
    return helper.make_tensor_value_info(name, elem, ["n"] if shape is None else shape)


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def model(graph, opset, check=True):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if check:
        onnx.checker.check_model(m)
    return m


def save_case(name, m, sets):
    """sets: list of (inputs, outputs), each a list of numpy arrays in graph order."""
    d = os.path.join(CASES, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(m.SerializeToString())
    for n, (ins, outs) in enumerate(sets):
        sd = os.path.join(d, "test_data_set_%d" % n)
        os.makedirs(sd)
        for k, (v, a) in enumerate(zip(m.graph.input, ins)):
            with open(os.path.join(sd, "input_%d.pb" % k), "wb") as f:
                f.write(numpy_helper.from_array(np.asarray(a), v.name).SerializeToString())
        for k, (v, a) in enumerate(zip(m.graph.output, outs)):
            with open(os.path.join(sd, "output_%d.pb" % k), "wb") as f:
                f.write(numpy_helper.from_array(np.asarray(a), v.name).SerializeToString())


def save(m, name):
    with open(os.path.join(ROOT, name), "wb") as f:
        f.write(m.SerializeToString())


# ---------------------------------------------------------------------------------------
# If whose branches read outer values (an initializer, a value computed in the outer
# graph and a foldable one used nowhere else) and return differently shaped outputs.
# ---------------------------------------------------------------------------------------

W = np.array([1, 2, 3], np.float32)


def if_outer(unsorted=False):
    then_g = helper.make_graph(
        [helper.make_node("Add", ["a", "nw"], ["t1"], name="then_add"),
         helper.make_node("ReduceSum", ["a"], ["t2"], name="then_sum", keepdims=1)],
        "then_body", [], [vi("t1", F, [3]), vi("t2", F, [1])])
    else_g = helper.make_graph(
        [helper.make_node("Concat", ["x", "a"], ["e1"], name="else_cat", axis=0),
         helper.make_node("Sub", ["x", "w"], ["e2"], name="else_sub")],
        "else_body", [], [vi("e1", F, [6]), vi("e2", F, [3])])
    nodes = [
        # read only inside the branches: the optimizer must keep both
        helper.make_node("Mul", ["x", "w"], ["a"], name="outer_mul"),
        helper.make_node("Neg", ["w"], ["nw"], name="outer_neg_const"),
        helper.make_node("If", ["cond"], ["y1", "y2"], name="the_if",
                         then_branch=then_g, else_branch=else_g),
    ]
    if unsorted:  # the If first: the loader must order it after what its branches read
        nodes = [nodes[2], nodes[1], nodes[0]]
    g = helper.make_graph(nodes, "if_outer", [vi("x", F, [3]), vi("cond", B, [])],
                          [vi("y1", F), vi("y2", F)], [const("w", W)])
    sets = []
    for cond in (True, False):
        x = np.array([0.5, -1.0, 2.0], np.float32)
        a = x * W
        if cond:
            outs = [a - W, a.sum(keepdims=True)]
        else:
            outs = [np.concatenate([x, a]), x - W]
        sets.append(([x, np.array(cond)], outs))
    return model(g, 13, check=not unsorted), sets


def if_const_cond():
    """An If whose cond folds to a constant, with branches reading a foldable outer value:
    the optimizer folds the cond and the value but must leave the If to run."""
    then_g = helper.make_graph([helper.make_node("Add", ["x", "nw"], ["t"], name="then_add")],
                               "then_body", [], [vi("t", F, [3])])
    else_g = helper.make_graph([helper.make_node("Mul", ["x", "nw"], ["e"], name="else_mul")],
                               "else_body", [], [vi("e", F, [3])])
    g = helper.make_graph(
        [helper.make_node("ReduceSum", ["w"], ["ws"], name="fold_sum", keepdims=0),
         helper.make_node("Greater", ["ws", "zero"], ["cond"], name="fold_cond"),
         helper.make_node("Neg", ["w"], ["nw"], name="fold_neg"),
         helper.make_node("If", ["cond"], ["y"], name="const_if", then_branch=then_g,
                          else_branch=else_g)],
        "if_const_cond", [vi("x", F, [3])], [vi("y", F, [3])],
        [const("w", W), const("zero", np.float32(0))])
    x = np.array([0.5, -1.0, 2.0], np.float32)
    return model(g, 13), [([x], [x - W])]


# ---------------------------------------------------------------------------------------
# Loop: trip count and condition, loop-carried values (one grows every iteration), scan
# outputs, a body that reads an outer value computed before the loop and an initializer.
# ---------------------------------------------------------------------------------------

def loop_model(with_m=True, with_cond=True):
    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=F),
         helper.make_node("Mul", ["step", "fi"], ["inc"]),
         helper.make_node("Add", ["acc_in", "inc"], ["acc_out"], name="body_add"),
         helper.make_node("Reshape", ["fi", "one"], ["fi1"]),
         helper.make_node("Concat", ["hist_in", "fi1"], ["hist_out"], axis=0),
         helper.make_node("ReduceSum", ["acc_out"], ["s"], keepdims=0),
         helper.make_node("Less", ["s", "limit"], ["cond_out"]),
         helper.make_node("Identity", ["acc_out"], ["scan_acc"]),
         helper.make_node("Identity", ["i"], ["scan_i"])],
        "loop_body",
        [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [2]), vi("hist_in", F, [None])],
        [vi("cond_out", B, []), vi("acc_out", F, [2]), vi("hist_out", F, [None]),
         vi("scan_acc", F, [2]), vi("scan_i", I64, [])],
        [const("one", np.array([1], np.int64))])
    ins = [vi("x", F, [2])]
    m_name, c_name = "", ""
    if with_m:
        ins.append(vi("M", I64, []))
        m_name = "M"
    if with_cond:
        ins.append(vi("cond", B, []))
        c_name = "cond"
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["step"], name="outer_step"),
         helper.make_node("Loop", [m_name, c_name, "x", "hist0"],
                          ["acc_final", "hist_final", "accs", "iters"], name="the_loop",
                          body=body)],
        "loop", ins,
        [vi("acc_final", F, [2]), vi("hist_final", F), vi("accs", F, ["n", 2]), vi("iters", I64)],
        [const("two", np.float32(2)), const("limit", np.float32(40)),
         const("hist0", np.zeros((0,), np.float32))])
    return model(g, 13)


def loop_expect(x, m, cond):
    """numpy reference of loop_model: m / cond None when the node omits them. A missing
    cond starts true and the body's cond_out still stops the loop: ONNX's text calls it
    ignored, but onnxruntime and ONNX's reference evaluator both stop on it."""
    step = x * 2
    acc, hist, accs, iters = x.copy(), np.zeros((0,), np.float32), [], []
    i = 0
    cond = True if cond is None else cond
    while (m is None or i < m) and cond:
        acc = (acc + step * np.float32(i)).astype(np.float32)
        hist = np.concatenate([hist, np.array([i], np.float32)])
        cond = acc.sum() < 40
        accs.append(acc)
        iters.append(i)
        i += 1
    accs = np.stack(accs) if accs else np.zeros((0, 2), np.float32)
    return [acc, hist, accs, np.array(iters, np.int64)]


def loops():
    x = np.array([1.0, 0.5], np.float32)
    sets = []
    for m, c in ((5, True), (100, True), (0, True), (3, False)):
        ins = [x, np.array(m, np.int64), np.array(c)]
        sets.append((ins, loop_expect(x, m, c)))
    yield "loop", loop_model(), sets
    # a while loop (no trip count): runs until cond_out is false
    yield "loop_while", loop_model(with_m=False), [
        ([x, np.array(True)], loop_expect(x, None, True))]
    # a for loop (no condition): cond_out still stops it early (see loop_expect)
    yield "loop_for", loop_model(with_cond=False), [
        ([x, np.array(7, np.int64)], loop_expect(x, 7, None))]


# ---------------------------------------------------------------------------------------
# Scan (opset 16): two scan inputs along different axes, one reversed; three scan outputs
# on different axes (one in the middle of a rank-3 output), one reversed; a state; a body
# reading an outer initializer and an outer computed value.
# ---------------------------------------------------------------------------------------

def scan9():
    body = helper.make_graph(
        [helper.make_node("Mul", ["a", "b"], ["ab"]),
         helper.make_node("Add", ["s_in", "ab"], ["s1"]),
         helper.make_node("Add", ["s1", "bias"], ["s_out"]),
         helper.make_node("Mul", ["s_out", "scale"], ["y1"]),
         helper.make_node("Sub", ["s_out", "a"], ["y2"]),
         helper.make_node("Unsqueeze", ["s_out", "ax1"], ["s_col"]),
         helper.make_node("Unsqueeze", ["b", "ax0"], ["b_row"]),
         helper.make_node("Mul", ["s_col", "b_row"], ["y3"])],
        "scan_body",
        [vi("s_in", F, [3]), vi("a", F, [3]), vi("b", F, [3])],
        [vi("s_out", F, [3]), vi("y1", F, [3]), vi("y2", F, [3]), vi("y3", F, [3, 3])],
        [const("ax0", np.array([0], np.int64)), const("ax1", np.array([1], np.int64))])
    g = helper.make_graph(
        [helper.make_node("Relu", ["sc"], ["scale"], name="outer_relu"),
         helper.make_node("Scan", ["s0", "x1", "x2"], ["s_final", "y1s", "y2s", "y3s"],
                          name="the_scan", body=body, num_scan_inputs=2,
                          scan_input_axes=[0, 1], scan_input_directions=[1, 0],
                          scan_output_axes=[1, -2, 1], scan_output_directions=[1, 0, 0])],
        "scan9",
        [vi("s0", F, [3]), vi("x1", F, [4, 3]), vi("x2", F, [3, 4]), vi("sc", F, [])],
        [vi("s_final", F, [3]), vi("y1s", F, [3, 4]), vi("y2s", F, [4, 3]),
         vi("y3s", F, [3, 4, 3])],
        [const("bias", np.array([0.5, -0.5, 0.25], np.float32))])
    rng = np.random.default_rng(3)
    s0 = rng.standard_normal(3).astype(np.float32)
    x1 = rng.standard_normal((4, 3)).astype(np.float32)
    x2 = rng.standard_normal((3, 4)).astype(np.float32)
    sc = np.float32(1.5)
    bias = np.array([0.5, -0.5, 0.25], np.float32)
    s, y1, y2, y3 = s0, [None] * 4, [], []
    for t in range(4):
        a, b = x1[3 - t], x2[:, t]
        s = s + a * b + bias
        y1[3 - t] = s * max(sc, 0)
        y2.append(s - a)
        y3.append(np.outer(s, b))
    outs = [s, np.stack(y1, axis=1), np.stack(y2, axis=0), np.stack(y3, axis=1)]
    return model(g, 16), [([s0, x1, x2, np.array(sc)], outs)]


def scan8():
    """Opset 8: batch axis first, sequence_lens, a reversed scan input (within each
    entry's length); outputs zero past each entry's length."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
         helper.make_node("Mul", ["s_out", "k"], ["y"])],
        "scan8_body", [vi("s_in", F, [3]), vi("x_t", F, [3])],
        [vi("s_out", F, [3]), vi("y", F, [3])])
    g = helper.make_graph(
        [helper.make_node("Scan", ["lens", "s0", "x"], ["s_final", "ys"], name="the_scan8",
                          body=body, num_scan_inputs=1, directions=[1])],
        "scan8", [vi("lens", I64, [2]), vi("s0", F, [2, 3]), vi("x", F, [2, 4, 3])],
        [vi("s_final", F, [2, 3]), vi("ys", F, [2, 4, 3])], [const("k", np.float32(2))])
    rng = np.random.default_rng(5)
    s0 = rng.standard_normal((2, 3)).astype(np.float32)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    lens = np.array([4, 2], np.int64)
    s_final, ys = np.zeros_like(s0), np.zeros((2, 4, 3), np.float32)
    for b in range(2):
        s = s0[b]
        for t in range(lens[b]):
            s = s + x[b, lens[b] - 1 - t]
            ys[b, t] = s * 2
        s_final[b] = s
    return model(g, 8), [([lens, s0, x], [s_final, ys])]


# ---------------------------------------------------------------------------------------
# Nesting: a Loop body holding an If whose then-branch holds another If; the innermost
# branches read the root graph's initializer and computed value (three levels out) and
# the loop body's values (two levels out).
# ---------------------------------------------------------------------------------------

K = np.array([10, 20], np.float32)


def nested():
    inner_then = helper.make_graph(
        [helper.make_node("Mul", ["k", "r"], ["w_t"], name="inner_then_mul")],
        "inner_then", [], [vi("w_t", F, [2])])
    inner_else = helper.make_graph(
        [helper.make_node("Sub", ["acc_in", "k"], ["w_e"], name="inner_else_sub")],
        "inner_else", [], [vi("w_e", F, [2])])
    mid_then = helper.make_graph(
        [helper.make_node("ReduceSum", ["acc_in"], ["tot"], keepdims=0),
         helper.make_node("Greater", ["tot", "thr"], ["big"]),
         helper.make_node("If", ["big"], ["w"], name="inner_if", then_branch=inner_then,
                          else_branch=inner_else),
         helper.make_node("Add", ["w", "r"], ["v_t"])],
        "mid_then", [], [vi("v_t", F, [2])])
    mid_else = helper.make_graph(
        [helper.make_node("Sub", ["acc_in", "k"], ["v_e"], name="mid_else_sub")],
        "mid_else", [], [vi("v_e", F, [2])])
    body = helper.make_graph(
        [helper.make_node("Mod", ["i", "two_i"], ["odd_i"]),
         helper.make_node("Cast", ["odd_i"], ["odd"], to=B),
         helper.make_node("If", ["odd"], ["v"], name="mid_if", then_branch=mid_then,
                          else_branch=mid_else),
         helper.make_node("Mul", ["v", "tenth"], ["v10"]),
         helper.make_node("Add", ["acc_in", "v10"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["v"], ["vs"])],
        "nested_body", [vi("i", I64, []), vi("cond_in", B, []), vi("acc_in", F, [2])],
        [vi("cond_out", B, []), vi("acc_out", F, [2]), vi("vs", F, [2])],
        [const("two_i", np.array(2, np.int64))])
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="outer_relu"),
         helper.make_node("Loop", ["M", "", "acc0"], ["acc_final", "v_all"], name="outer_loop",
                          body=body)],
        "nested", [vi("x", F, [2]), vi("M", I64, [])], [vi("acc_final", F, [2]),
         vi("v_all", F, ["n", 2])],
        [const("k", K), const("thr", np.float32(1.0)), const("tenth", np.float32(0.1)),
         const("acc0", np.zeros(2, np.float32))])
    sets = []
    for x in (np.array([1.5, -2.0], np.float32), np.array([0.25, 3.0], np.float32)):
        r = np.maximum(x, 0)
        acc, vs = np.zeros(2, np.float32), []
        for i in range(6):
            if i % 2:
                w = K * r if acc.sum() > 1.0 else acc - K
                v = w + r
            else:
                v = acc - K
            acc = (acc + v * np.float32(0.1)).astype(np.float32)
            vs.append(v)
        sets.append(([x, np.array(6, np.int64)], [acc, np.stack(vs)]))
    return model(g, 13), sets


# ---------------------------------------------------------------------------------------
# Models to refuse or stop.
# ---------------------------------------------------------------------------------------

def loop_unbounded():
    """No trip count, no condition: runs until its scan output (1 KiB per iteration,
    copied from an outer initializer) passes the session's max_value_bytes."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["block"], ["piece"])],
        "forever", [vi("i", I64, []), vi("cond_in", B, [])],
        [vi("cond_out", B, []), vi("piece", F, [256])])
    g = helper.make_graph(
        [helper.make_node("Loop", ["", ""], ["pieces"], name="endless_loop", body=body)],
        "unbounded", [], [vi("pieces", F, ["n", 256])], [const("block", np.ones(256, np.float32))])
    return model(g, 13)


def nest_ifs(depth):
    """depth Ifs, each in the then-branch of the one before; the innermost returns x."""
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y%d" % depth])],
                          "level%d" % depth, [], [vi("y%d" % depth, F)])
    for d in range(depth - 1, -1, -1):
        else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["n%d" % d])], "else%d" % d,
                                   [], [vi("n%d" % d, F)])
        node = helper.make_node("If", ["c"], ["y%d" % d], name="if%d" % d, then_branch=g,
                                else_branch=else_g)
        if d == 0:
            g = helper.make_graph([node], "nest", [vi("c", B, []), vi("x", F, [1])],
                                  [vi("y0", F, [1])])
        else:
            g = helper.make_graph([node], "level%d" % d, [], [vi("y%d" % d, F)])
    return model(g, 13, check=False)


def bad_outer():
    """A branch reads a name no enclosing graph defines."""
    then_g = helper.make_graph([helper.make_node("Add", ["x", "ghost"], ["t"])], "then_body",
                               [], [vi("t", F)])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else_body", [],
                               [vi("e", F)])
    g = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], name="haunted_if", then_branch=then_g,
                          else_branch=else_g)],
        "bad_outer", [vi("c", B, []), vi("x", F, [1])], [vi("y", F)])
    return model(g, 13, check=False)


def main():
    os.makedirs(CASES, exist_ok=True)
    m, sets = if_outer()
    save_case("if_outer", m, sets)
    m, sets = if_outer(unsorted=True)
    save_case("if_unsorted", m, sets)
    m, sets = if_const_cond()
    save_case("if_const_cond", m, sets)
    for name, m, sets in loops():
        save_case(name, m, sets)
    m, sets = scan9()
    save_case("scan9_axes", m, sets)
    m, sets = scan8()
    save_case("scan8_lens", m, sets)
    m, sets = nested()
    save_case("nested", m, sets)

    save(loop_unbounded(), "cf_loop_unbounded.onnx")
    save(nest_ifs(32), "cf_nest32.onnx")  # the deepest accepted
    save(nest_ifs(33), "cf_nest33.onnx")
    save(nest_ifs(80), "cf_nest80.onnx")  # refused before protobuf-c unpacks it
    save(bad_outer(), "cf_bad_outer.onnx")


if __name__ == "__main__":
    main()
