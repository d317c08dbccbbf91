#!/usr/bin/env python3
"""Helpers of the dynamic-batching benchmark (bench/batch/run.sh): bodies, checks, stats.

    batch.py body NAME MODEL DIR      write DIR/NAME.json (a v2 JSON infer of one sample) and
                                      DIR/NAME.expected.npy (the numpy reference's answer)
                                      for the ONNX model MODEL; prints what the sample is
    batch.py check RESPONSE NAME DIR  check a v2 JSON response against DIR/NAME.expected.npy:
                                      output `probabilities` FP32 [1,N], the same argmax and
                                      every value within 1e-4 (abs)
    batch.py stats BEFORE AFTER       two GET /v2/models/<m>/stats answers of one model,
                                      taken around a run; prints for what ran in between
                                      "mean_batch max_batch max_batch_count max_batch_ns":
                                      inferences / executions, and the largest batch_size in
                                      `batch_stats` with its compute_infer count and ns
                                      ("nan" where the server did not report them)
    batch.py perf OUT                 median_us of the `perf: batch ...` line in OUT, or nan

The sample: for a model whose input holds 64 values per sample (digits_cnn [1,8,8],
digits_mlp [64]) row 0 of examples/data/digits_test_pixels.npy (held out, label 1) in the
model's sample shape; otherwise (mlp_wide [784]) a fixed-seed vector of multiples of 1/16 in
[0,1], whose answer is whatever the numpy reference of the ONNX graph says. Either way the
expected answer is bench/http/onnx_mlp.py's float64 numpy run of the graph, and the held-out
digit must be classified as its label. The JSON numbers are exact (multiples of 1/16).
Every check prints one line and exits 1 on a wrong answer.
Needs python3-numpy and python3-onnx (/usr/bin/python3).
"""
import json
import math
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "http"))
SAMPLE = 0  # row of examples/data/digits_test_pixels.npy for 64-value models
SEED = 784  # of the random sample for the others


def fail(msg):
    print(f"batch: {msg}")
    sys.exit(1)


def sample_shape(path):
    import onnx

    g = onnx.load(path).graph
    inits = {t.name for t in g.initializer}
    inp = [i for i in g.input if i.name not in inits][0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim[1:]]
    if not dims or None in dims:
        fail(f"{path}: input {inp.name} needs fixed non-batch dimensions, has {dims}")
    return dims


def body(name, model, outdir):
    import onnx_mlp

    in_name, _, layers = onnx_mlp.load_chain(model)
    dims = sample_shape(model)
    size = int(np.prod(dims))
    label = None
    if size == 64:
        pixels = np.load(os.path.join(ROOT, "examples", "data", "digits_test_pixels.npy"))
        labels = np.load(os.path.join(ROOT, "examples", "data", "digits_test_labels.npy"))
        x = pixels[SAMPLE].astype(np.float32).reshape(dims)
        label = int(labels[SAMPLE])
        what = f"held-out digit #{SAMPLE} (label {label})"
    else:
        x = (np.random.default_rng(SEED).integers(0, 17, size) / 16).astype(np.float32).reshape(dims)
        what = f"fixed random vector (seed {SEED}, multiples of 1/16)"
    flat = x.reshape(-1)
    if not np.array_equal(flat * 16, np.round(flat * 16)):
        fail("the sample is not made of multiples of 1/16 (its JSON text would not be exact)")
    nums = ",".join(np.format_float_positional(v, unique=True, trim="-") for v in flat)
    if not np.array_equal(np.asarray(nums.split(","), np.float32), flat):
        fail("the JSON numbers do not round-trip")
    text = (f'{{"inputs":[{{"name":"{in_name}","shape":{json.dumps([1] + dims, separators=(",", ":"))},'
            f'"datatype":"FP32","data":[{nums}]}}]}}')
    want = onnx_mlp.numpy_forward(layers, x[None])[0]
    pred = int(want.argmax())
    if label is not None and pred != label:
        fail(f"{model}: the numpy reference predicts {pred} for {what}")
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, f"{name}.json"), "w", encoding="ascii") as f:
        f.write(text)
    np.save(os.path.join(outdir, f"{name}.expected.npy"), want)
    print(f"batch: {name}: {what} as FP32 {[1] + dims}, {len(text)}-byte body; "
          f"reference argmax {pred}, p={want[pred]:.6f}")


def check(response, name, outdir):
    want = np.load(os.path.join(outdir, f"{name}.expected.npy"))
    try:
        resp = json.load(open(response, encoding="utf-8"))
        out = resp["outputs"][0]
        y = np.asarray(out["data"], np.float64).reshape(-1)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        fail(f"{response}: not a v2 infer response ({e})")
    if out.get("name") != "probabilities" or out.get("datatype") != "FP32" or \
            out.get("shape") != [1, want.shape[0]] or y.shape != want.shape:
        fail(f"{response}: output is {out.get('name')} {out.get('datatype')} {out.get('shape')}, "
             f"want probabilities FP32 [1,{want.shape[0]}]")
    diff = float(np.abs(y - want).max())
    pred, wpred = int(y.argmax()), int(want.argmax())
    if pred != wpred or diff > 1e-4:
        fail(f"{response}: predicted {pred} (reference {wpred}), max |diff| to the numpy reference {diff:.2g}")
    print(f"batch: predicted {pred} = reference, max |diff| {diff:.1g}, "
          f"model {resp.get('model_name')} version {resp.get('model_version')}")


def _model_stats(path):
    try:
        doc = json.load(open(path, encoding="utf-8"))
        return doc["model_stats"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def stats(before, after):
    a, b = _model_stats(before), _model_stats(after)
    if a is None or b is None:
        print("nan nan nan nan")
        return
    try:
        infers = b["inference_count"] - a["inference_count"]
        execs = b["execution_count"] - a["execution_count"]
        mean = f"{infers / execs:.2f}" if execs > 0 else "nan"
    except (KeyError, TypeError):
        mean = "nan"

    def per_size(s):
        out = {}
        for e in s.get("batch_stats") or []:
            try:
                out[int(e["batch_size"])] = (int(e["compute_infer"]["count"]), int(e["compute_infer"]["ns"]))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    pa, pb = per_size(a), per_size(b)
    seen = {}
    for size, (count, ns) in pb.items():
        c0, n0 = pa.get(size, (0, 0))
        if count - c0 > 0:
            seen[size] = (count - c0, ns - n0)
    if not seen:
        print(f"{mean} nan nan nan")
        return
    top = max(seen)
    print(f"{mean} {top} {seen[top][0]} {seen[top][1]}")


def perf(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    m = re.findall(r"^perf: batch .*median_us ([0-9.eE+-]+),", text, re.M)
    try:
        v = float(m[-1]) if m else math.nan
    except ValueError:
        v = math.nan
    print("nan" if math.isnan(v) else f"{v:.1f}")


def main():
    cmds = {"body": (body, 3), "check": (check, 3), "stats": (stats, 2), "perf": (perf, 1)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) != 2 + cmds[sys.argv[1]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[sys.argv[1]][0](*sys.argv[2:])


if __name__ == "__main__":
    main()
