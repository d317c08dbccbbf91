#!/usr/bin/env python3
"""Helpers of the HTTP benchmark (bench/http/run.sh): request bodies, answer checks, wrk parsing.

    check.py digit-body LUA OUT           extract the body of bench/http/infer.lua into OUT and
                                          verify it is exactly row SAMPLE of the held-out pixels
    check.py digit RESPONSE MODEL         check a digits_mlp v2 JSON response: output
                                          `probabilities` FP32 [1,10], argmax = the label, and
                                          every value within 1e-4 (abs) of the numpy reference
                                          of MODEL's ONNX graph on the same sample
    check.py image-bodies DIR             write DIR/image.json (v2 JSON), DIR/image.bin (binary
                                          extension), DIR/header_bytes, DIR/expected.npy for a
                                          1x3x224x224 FP32 image from a fixed seed
    check.py image RESPONSE DIR           check an image_cnn response against DIR/expected.npy
    check.py wrk OUT                      parse `wrk --latency` output: prints
                                          "rps p50_ms p99_ms non2xx socket_errors requests"

Every check prints one line saying what it saw and exits 1 on a wrong answer.
Needs python3-numpy and python3-onnx (/usr/bin/python3).
"""
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SAMPLE = 0  # row of examples/data/digits_test_pixels.npy that infer.lua posts
sys.path.insert(0, HERE)


def fail(msg):
    print(f"check: {msg}")
    sys.exit(1)


def sample():
    pixels = np.load(os.path.join(ROOT, "examples", "data", "digits_test_pixels.npy"))
    labels = np.load(os.path.join(ROOT, "examples", "data", "digits_test_labels.npy"))
    return pixels[SAMPLE].astype(np.float32), int(labels[SAMPLE])


def digit_body(lua, out):
    text = open(lua, encoding="utf-8").read()
    m = re.search(r"^wrk\.body = '(.*)'$", text, re.M)
    if not m:
        fail(f"{lua}: no single-line wrk.body = '...'")
    body = m.group(1)
    req = json.loads(body)
    inp = req["inputs"][0]
    x, label = sample()
    got = np.asarray(inp["data"], np.float32)
    if inp["name"] != "pixels" or inp["shape"] != [1, 64] or inp["datatype"] != "FP32" or \
            got.shape != (64,) or not np.array_equal(got, x):
        fail(f"{lua}: the body is not row {SAMPLE} of digits_test_pixels.npy as FP32 [1,64]")
    with open(out, "w", encoding="utf-8") as f:
        f.write(body)
    print(f"check: infer.lua posts held-out digit #{SAMPLE} (label {label}), {len(body)} bytes")


def digit(response, model):
    import onnx_mlp

    try:
        resp = json.load(open(response, encoding="utf-8"))
        out = resp["outputs"][0]
        y = np.asarray(out["data"], np.float64).reshape(-1)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        fail(f"{response}: not a v2 infer response ({e})")
    x, label = sample()
    _, _, layers = onnx_mlp.load_layers(model)
    want = onnx_mlp.numpy_forward(layers, x[None, :])[0]
    if out.get("name") != "probabilities" or out.get("datatype") != "FP32" or out.get("shape") != [1, 10] \
            or y.shape != (10,):
        fail(f"{response}: output is {out.get('name')} {out.get('datatype')} {out.get('shape')}, "
             f"want probabilities FP32 [1,10]")
    diff = float(np.abs(y - want).max())
    pred = int(y.argmax())
    if pred != label or diff > 1e-4:
        fail(f"{response}: predicted {pred} (label {label}), max |diff| to the numpy reference {diff:.2g}")
    print(f"check: predicted {pred} = label {label}, p={y[pred]:.6f}, max |diff| to numpy reference "
          f"{diff:.1g}, model_version {resp.get('model_version')}, {os.path.getsize(response)} bytes")


def image_bodies(outdir):
    import make_image_model

    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(224)
    x = rng.random((1, 3, 224, 224), dtype=np.float32)
    # JSON numbers as the shortest text that round-trips to the same float32 (what a careful
    # client sends; numpy's repr of float64 would make the body ~1.7x larger)
    flat = x.reshape(-1)
    nums = ",".join(np.format_float_positional(v, unique=True, trim="-") for v in flat)
    if not np.array_equal(np.asarray(nums.split(","), np.float32), flat):
        fail("the JSON numbers do not round-trip")
    body = ('{"inputs":[{"name":"image","shape":[1,3,224,224],"datatype":"FP32","data":[' + nums + ']}]}')
    with open(os.path.join(outdir, "image.json"), "w", encoding="ascii") as f:
        f.write(body)
    raw = x.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}]},
                        separators=(",", ":")).encode()
    with open(os.path.join(outdir, "image.bin"), "wb") as f:
        f.write(header + raw)
    with open(os.path.join(outdir, "header_bytes"), "w", encoding="ascii") as f:
        f.write(str(len(header)))
    np.save(os.path.join(outdir, "expected.npy"), make_image_model.reference_logits(x))
    print(f"check: image bodies: JSON {len(body)} bytes, binary {len(header) + len(raw)} bytes "
          f"({len(header)}-byte header)")


def image(response, outdir):
    try:
        resp = json.load(open(response, encoding="utf-8"))
        out = resp["outputs"][0]
        y = np.asarray(out["data"], np.float64).reshape(1, -1)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        fail(f"{response}: not a v2 infer response ({e})")
    want = np.load(os.path.join(outdir, "expected.npy"))
    if out.get("name") != "logits" or out.get("shape") != [1, 10] or y.shape != want.shape:
        fail(f"{response}: output is {out.get('name')} {out.get('shape')}, want logits [1,10]")
    diff = float(np.abs(y - want).max())
    if diff > 1e-3 * max(1.0, float(np.abs(want).max())):
        fail(f"{response}: logits differ from the numpy reference by {diff:.2g}")
    print(f"check: logits match the numpy reference (max |diff| {diff:.1g}), argmax {int(y.argmax())}")


def to_ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]


def wrk(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    reqs = re.search(r"^\s*(\d+) requests in", text, re.M)
    p50 = re.search(r"^\s+50%\s+([0-9.]+)(us|ms|s|m|h)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s|m|h)\s*$", text, re.M)
    if not (rps and reqs and p50 and p99):
        print("nan nan nan nan nan nan")
        sys.exit(1)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    sock_n = sum(int(g) for g in sock.groups()) if sock else 0
    print(f"{float(rps.group(1)):.1f} {to_ms(*p50.groups()):.3f} {to_ms(*p99.groups()):.3f} "
          f"{int(non2xx.group(1)) if non2xx else 0} {sock_n} {reqs.group(1)}")


def main():
    cmds = {"digit-body": (digit_body, 2), "digit": (digit, 2), "image-bodies": (image_bodies, 1),
            "image": (image, 2), "wrk": (wrk, 1)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) != 2 + cmds[sys.argv[1]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[sys.argv[1]][0](*sys.argv[2:])


if __name__ == "__main__":
    main()
