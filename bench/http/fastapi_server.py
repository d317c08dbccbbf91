"""FastAPI + PyTorch peer of the HTTP benchmarks: digits_mlp (or another model) over KServe v2.

Serves POST /v2/models/digits_mlp/infer (or /v2/models/$DABBA_BENCH_MODEL_NAME/infer) with the same JSON request and response shape as
dabba (v2 `inputs` with `data`, `outputs` with name, datatype, shape, data), written the way
FastAPI services are usually written: pydantic models for the request (as KServe's own Python
model server does), an `async def` handler, torch under inference_mode. The handler runs the
(tens of microseconds) forward pass inline on the event loop; a plain `def` handler would add
a thread-pool hop per request, which is slower here.

The model is the ONNX file in DABBA_BENCH_MODEL: its initializers are read with python3-onnx
(bench/http/onnx_mlp.py) and copied into an equivalent torch.nn.Sequential of Linear / ReLU /
Softmax (and Conv2d / MaxPool2d / AvgPool2d / Flatten for a CNN such as digits_cnn, which the
batching benchmark bench/batch/run.sh serves). At import (once per uvicorn worker) the torch
module is checked against the numpy reference of the same ONNX graph on every held-out digit
in examples/data (reshaped to the model's sample shape when that has 64 elements; otherwise
on 64 fixed-seed random samples): the same argmax everywhere and max |difference| below 1e-5,
or the worker refuses to start. Requests must be FP32 [batch, <the model's sample shape>].

Run (bench/http/run.sh does this):
    DABBA_BENCH_MODEL=.../model.onnx DABBA_BENCH_VERSION=2 [DABBA_BENCH_MODEL_NAME=digits_mlp] \
        /usr/bin/python3 -m uvicorn \
        fastapi_server:app --app-dir bench/http --host 127.0.0.1 --port P --workers 2 \
        --no-access-log --log-level warning
Each worker, once checked, creates $DABBA_BENCH_READY_DIR/ready.PID when that variable is set
(run.sh waits for all workers). Each worker uses one torch thread (workers = cores is the parallelism, as usually deployed).
Needs Debian's python3-fastapi, python3-uvicorn, python3-torch, python3-onnx, python3-numpy.
"""
import os
import sys
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_mlp  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL_PATH = os.environ.get("DABBA_BENCH_MODEL",
                            os.path.join(ROOT, "examples", "repository", "digits_mlp", "2", "model.onnx"))
MODEL_NAME = os.environ.get("DABBA_BENCH_MODEL_NAME", "digits_mlp")
MODEL_VERSION = os.environ.get("DABBA_BENCH_VERSION", "2")

torch.set_num_threads(1)


def build_module(layers):
    """torch.nn.Sequential equivalent to onnx_mlp layers (weights copied, eval mode)."""
    mods = []
    for layer in layers:
        if layer[0] == "gemm":
            w, b = layer[1], layer[2]
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
            mods.append(lin)
        elif layer[0] == "relu":
            mods.append(torch.nn.ReLU())
        elif layer[0] == "softmax":
            mods.append(torch.nn.Softmax(dim=1))
        elif layer[0] == "conv":
            w, b, strides, pads, dilations, group = layer[1:]
            conv = torch.nn.Conv2d(w.shape[1] * group, w.shape[0], tuple(w.shape[2:]), stride=strides,
                                   padding=(pads[0], pads[1]), dilation=dilations, groups=group)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w))
                conv.bias.copy_(torch.from_numpy(b))
            mods.append(conv)
        elif layer[0] == "maxpool":
            mods.append(torch.nn.MaxPool2d(layer[1], stride=layer[2]))
        elif layer[0] == "avgpool":
            mods.append(torch.nn.AvgPool2d(layer[1], stride=layer[2]))
        elif layer[0] == "flatten":
            mods.append(torch.nn.Flatten(start_dim=layer[1]))
        else:
            raise ValueError(f"fastapi_server: no torch module for layer {layer[0]}")
    return torch.nn.Sequential(*mods).eval()


def _sample_shape(path):
    """The model input's dimensions after the batch one (all fixed, or the model is refused)."""
    import onnx

    g = onnx.load(path).graph
    inits = {t.name for t in g.initializer}
    inp = [i for i in g.input if i.name not in inits][0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim[1:]]
    if not dims or None in dims:
        raise SystemExit(f"fastapi_server: {path}: input {inp.name} needs fixed non-batch dimensions")
    return dims


INPUT_NAME, OUTPUT_NAME, LAYERS = onnx_mlp.load_chain(MODEL_PATH)
SAMPLE_SHAPE = _sample_shape(MODEL_PATH)
SHAPE_TEXT = ",".join(str(d) for d in SAMPLE_SHAPE)
NET = build_module(LAYERS)


def _self_check():
    pixels = np.load(os.path.join(ROOT, "examples", "data", "digits_test_pixels.npy")).astype(np.float32)
    if int(np.prod(SAMPLE_SHAPE)) == pixels.shape[1]:
        pixels = pixels.reshape([-1] + SAMPLE_SHAPE)
    else:
        pixels = np.random.default_rng(0).random([64] + SAMPLE_SHAPE, dtype=np.float32)
    with torch.inference_mode():
        got = NET(torch.from_numpy(pixels)).numpy().astype(np.float64)
    want = onnx_mlp.numpy_forward(LAYERS, pixels)
    diff = float(np.abs(got - want).max())
    same = bool((got.argmax(1) == want.argmax(1)).all())
    if not same or diff > 1e-5:
        raise SystemExit(f"fastapi_server: torch module disagrees with the ONNX graph "
                         f"(same argmax: {same}, max |diff| {diff:g})")


_self_check()

# bench/http/run.sh waits for one file per worker here before it starts measuring
if os.environ.get("DABBA_BENCH_READY_DIR"):
    open(os.path.join(os.environ["DABBA_BENCH_READY_DIR"], f"ready.{os.getpid()}"), "w").close()


class RequestInput(BaseModel):
    name: str
    shape: List[int]
    datatype: str
    parameters: Optional[Dict[str, Any]] = None
    data: List[Union[float, List[Any]]]


class RequestOutput(BaseModel):
    name: str
    parameters: Optional[Dict[str, Any]] = None


class InferenceRequest(BaseModel):
    id: Optional[str] = None
    parameters: Optional[Dict[str, Any]] = None
    inputs: List[RequestInput]
    outputs: Optional[List[RequestOutput]] = None


app = FastAPI()


@app.post("/v2/models/{model_name}/infer")
async def infer(model_name: str, request: InferenceRequest):
    if model_name != MODEL_NAME:
        raise HTTPException(status_code=404, detail=f"unknown model '{model_name}'")
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT_NAME:
        raise HTTPException(status_code=400, detail=f"expected one input named '{INPUT_NAME}'")
    inp = request.inputs[0]
    if inp.datatype != "FP32" or list(inp.shape[1:]) != SAMPLE_SHAPE or not inp.shape or inp.shape[0] < 1:
        raise HTTPException(status_code=400,
                            detail=f"input '{INPUT_NAME}' must be FP32 [batch,{SHAPE_TEXT}]")
    try:
        x = torch.tensor(inp.data, dtype=torch.float32).reshape(inp.shape)
    except (TypeError, ValueError, RuntimeError) as e:
        raise HTTPException(status_code=400, detail=f"input '{INPUT_NAME}': {e}")
    with torch.inference_mode():
        y = NET(x)
    body = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION,
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": list(y.shape),
                         "data": y.reshape(-1).tolist()}]}
    if request.id is not None:
        body["id"] = request.id
    return body
