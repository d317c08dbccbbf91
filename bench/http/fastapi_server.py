"""FastAPI + PyTorch peer of the HTTP benchmark (bench/http/run.sh): digits_mlp over KServe v2.

Serves POST /v2/models/digits_mlp/infer with the same JSON request and response shape as
dabba (v2 `inputs` with `data`, `outputs` with name, datatype, shape, data), written the way
FastAPI services are usually written: pydantic models for the request (as KServe's own Python
model server does), an `async def` handler, torch under inference_mode. The handler runs the
(tens of microseconds) forward pass inline on the event loop; a plain `def` handler would add
a thread-pool hop per request, which is slower here.

The model is the ONNX file in DABBA_BENCH_MODEL: its initializers are read with python3-onnx
(bench/http/onnx_mlp.py) and copied into an equivalent torch.nn.Sequential of Linear / ReLU /
Softmax. At import (once per uvicorn worker) the torch module is checked against the numpy
reference of the same ONNX graph on every held-out digit in examples/data: the same argmax
everywhere and max |difference| below 1e-5, or the worker refuses to start.

Run (bench/http/run.sh does this):
    DABBA_BENCH_MODEL=.../model.onnx DABBA_BENCH_VERSION=2 /usr/bin/python3 -m uvicorn \
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
MODEL_NAME = "digits_mlp"
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
        else:
            mods.append(torch.nn.Softmax(dim=1))
    return torch.nn.Sequential(*mods).eval()


INPUT_NAME, OUTPUT_NAME, LAYERS = onnx_mlp.load_layers(MODEL_PATH)
IN_FEATURES = LAYERS[0][1].shape[1]
NET = build_module(LAYERS)


def _self_check():
    pixels = np.load(os.path.join(ROOT, "examples", "data", "digits_test_pixels.npy")).astype(np.float32)
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
    if inp.datatype != "FP32" or len(inp.shape) != 2 or inp.shape[1] != IN_FEATURES or inp.shape[0] < 1:
        raise HTTPException(status_code=400,
                            detail=f"input '{INPUT_NAME}' must be FP32 [batch,{IN_FEATURES}]")
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
