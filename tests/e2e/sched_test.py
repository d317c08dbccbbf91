#!/usr/bin/env python3
"""End-to-end tests of the scheduler through `dabba serve` over loopback.

A bounded burst of concurrent clients against a dynamically batched digits_mlp: every
request answered once, with its own id and the answer it gets alone; batch_stats and the
batch-size histogram show real batches. Priorities under load, a full level's queue
(503 + Retry-After), a queue timeout, a client that hangs up while queued (dropped, not
run), preserve_ordering across two instances (and the same load without it, where the
order does change), and the request errors of the scheduler's parameters.
Prints "test_sched: N passed, N failed".
"""
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from serve_test import EXAMPLES, PIXELS, ROOT, Server, check, infer_body  # noqa: E402
import serve_test  # noqa: E402

SLOW = os.path.join(ROOT, "tests", "data", "models", "slow.onnx")


def add_model(repo, name, model, config):
    os.makedirs(os.path.join(repo, name, "1"))
    os.symlink(model, os.path.join(repo, name, "1", "model.onnx"))
    with open(os.path.join(repo, name, "config.json"), "w") as f:
        json.dump(config, f)


def make_repo():
    repo = tempfile.mkdtemp()
    mlp = os.path.join(EXAMPLES, "digits_mlp", "2", "model.onnx")
    cnn = os.path.join(EXAMPLES, "digits_cnn", "1", "model.onnx")
    add_model(repo, "mlp_batched", mlp,
              {"max_batch_size": 16, "dynamic_batching": {"max_queue_delay_microseconds": 2000}})
    add_model(repo, "mlp_solo", mlp, {"max_batch_size": 16})
    add_model(repo, "slow", SLOW, {
        "max_batch_size": 1,
        "dynamic_batching": {
            "priority_levels": 2, "default_priority_level": 2,
            "default_queue_policy": {"max_queue_size": 3, "allow_timeout_override": True},
            "priority_queue_policy": {"1": {"max_queue_size": 8}}}})
    for name, ordered in (("cnn_ordered", True), ("cnn_unordered", False)):
        add_model(repo, name, cnn, {"max_batch_size": 4096, "instance_group": [{"count": 2}],
                                    "dynamic_batching": {"preserve_ordering": ordered}})
    return repo


def slow_body(rid, priority=None, timeout=None):
    body = {"id": rid, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                   "data": [1, 2, 3, 4]}]}
    params = {}
    if priority is not None:
        params["priority"] = priority
    if timeout is not None:
        params["timeout"] = timeout
    if params:
        body["parameters"] = params
    return json.dumps(body)


def post_async(s, path, body, out, key, headers=None):
    """Starts a request on its own thread; out[key] = (status, headers, body, t_done)."""
    def run():
        try:
            st, h, data = s.request("POST", path, body, headers)
            out[key] = (st, h, data, time.time())
        except Exception as e:  # noqa: BLE001 - recorded as the result
            out[key] = (repr(e), {}, b"", time.time())
    t = threading.Thread(target=run)
    t.start()
    return t


def metric(s, name, **labels):
    text = s.request("GET", "/metrics")[2].decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_running(s, model):
    """Waits until the model's engine runs a request (the blocker holds its instance)."""
    deadline = time.time() + 10
    while metric(s, "dabba_inference_running", model=model) < 1 and time.time() < deadline:
        time.sleep(0.002)


def stats(s, model):
    st, _, data = s.request("GET", f"/v2/models/{model}/stats")
    return json.loads(data)["model_stats"][0] if st == 200 else {}


def test_burst(s):
    # The answers each digit gets alone, from the unbatched twin, one request at a time.
    n_digits = 48
    alone = {}
    for i in range(n_digits):
        st, _, data = s.request("POST", "/v2/models/mlp_solo/infer", infer_body(PIXELS[i:i + 1]))
        alone[i] = np.array(json.loads(data)["outputs"][0]["data"], dtype=np.float32) if st == 200 else None
    check("burst: solo answers", all(v is not None for v in alone.values()))
    clients, per_client = 32, 12
    results = {}
    lock = threading.Lock()

    def client(c):
        conn = s.conn()
        for k in range(per_client):
            rows = 1 + (c + k) % 2
            idx = [(c * 7 + k * 3 + r) % n_digits for r in range(rows)]
            rid = f"c{c}-r{k}"
            body = json.loads(infer_body(PIXELS[idx]))
            body["id"] = rid
            try:
                st, _, data = s.request("POST", "/v2/models/mlp_batched/infer", json.dumps(body), conn=conn)
            except Exception as e:  # noqa: BLE001
                st, data = repr(e), b""
            with lock:
                results.setdefault(rid, []).append((st, data, idx))
        conn.close()
    ts = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    total = clients * per_client
    check("burst: every request answered once", len(results) == total and
          all(len(v) == 1 for v in results.values()), f"{len(results)} of {total}")
    bad = []
    for rid, [(st, data, idx)] in results.items():
        if st != 200:
            bad.append((rid, st, data[:120]))
            continue
        r = json.loads(data)
        out = r["outputs"][0]
        want = np.concatenate([alone[i] for i in idx])
        got = np.array(out["data"], dtype=np.float32)
        if r.get("id") != rid or out["shape"] != [len(idx), 10] or \
                not np.allclose(got, want, rtol=1e-5, atol=1e-6):
            bad.append((rid, out["shape"], r.get("id")))
    check("burst: each answer is the request's own, equal to its solo answer", not bad, str(bad[:3]))
    ms = stats(s, "mlp_batched")
    sizes = [b["batch_size"] for b in ms.get("batch_stats", [])]
    check("burst: batch_stats shows batches of several rows", sizes and max(sizes) > 2, str(sizes))
    rows = sum(b["batch_size"] * b["compute_infer"]["count"] for b in ms.get("batch_stats", []))
    check("burst: batch_stats rows add up to inference_count", rows == ms.get("inference_count"),
          f"{rows} vs {ms.get('inference_count')}")
    check("burst: fewer executions than inferences",
          0 < ms.get("execution_count", 0) < ms.get("inference_count", 0), str(ms)[:300])
    hist = metric(s, "dabba_batch_size_count", model="mlp_batched")
    check("burst: the batch-size histogram counts every run", hist == ms.get("execution_count"),
          f"{hist} vs {ms.get('execution_count')}")


def queued(s, model, priority):
    return metric(s, "dabba_queue_depth", model=model, priority=priority)


def priority_trial(s):
    """Queues 3 low then 3 high behind a blocker. Returns the results, or None when the
    blocker finished before all six were queued (a loaded machine): the trial says
    nothing then."""
    out = {}
    blocker = post_async(s, "/v2/models/slow/infer", slow_body("blocker"), out, "blocker")
    wait_running(s, "slow")
    ts = []
    for i in range(3):
        ts.append(post_async(s, "/v2/models/slow/infer", slow_body(f"low{i}"), out, f"low{i}"))
    deadline = time.time() + 10
    while queued(s, "slow", 2) < 3 and time.time() < deadline:
        time.sleep(0.002)
    for i in range(3):
        ts.append(post_async(s, "/v2/models/slow/infer", slow_body(f"high{i}", priority=1), out, f"high{i}"))
    while queued(s, "slow", 1) < 3 and time.time() < deadline:
        time.sleep(0.002)
    valid = "blocker" not in out and queued(s, "slow", 1) == 3 and queued(s, "slow", 2) == 3
    for t in ts + [blocker]:
        t.join()
    return out if valid else None


def test_priorities_and_limits(s):
    # The blocker occupies the single instance (70 ms or more a run); 3 low, then 3 high
    # are queued behind it.
    out = None
    for _ in range(5):
        out = priority_trial(s)
        if out is not None:
            break
    check("priority: six requests queued behind a running one", out is not None)
    out = out or {}
    statuses = {k: v[0] for k, v in out.items()}
    check("priority: all answered 200", all(v == 200 for v in statuses.values()), str(statuses))
    if out and all(v == 200 for v in statuses.values()):
        last_high = max(out[f"high{i}"][3] for i in range(3))
        first_low = min(out[f"low{i}"][3] for i in range(3))
        check("priority: higher priority served first under load", last_high < first_low,
              f"high done {last_high:.3f}, low from {first_low:.3f}")
    # A full level: 3 waiting at most at the default level.
    out = {}
    blocker = post_async(s, "/v2/models/slow/infer", slow_body("blocker"), out, "blocker")
    wait_running(s, "slow")
    ts = [post_async(s, "/v2/models/slow/infer", slow_body(f"q{i}"), out, f"q{i}") for i in range(8)]
    for t in ts + [blocker]:
        t.join()
    codes = [out[f"q{i}"][0] for i in range(8)]
    check("queue full: 503 past max_queue_size, the rest served", 503 in codes and 200 in codes and
          all(c in (200, 503) for c in codes), str(codes))
    hdrs = [out[f"q{i}"][1] for i in range(8) if out[f"q{i}"][0] == 503]
    check("queue full: 503 carries Retry-After", hdrs and all("retry-after" in h for h in hdrs))
    errs = [json.loads(out[f"q{i}"][2]).get("error", "") for i in range(8) if out[f"q{i}"][0] == 503]
    check("queue full: the error names the full queue", errs and "full" in errs[0], str(errs[:1]))
    check("queue full: counted by reason", metric(s, "dabba_inference_rejections_total",
                                                   model="slow", reason="queue_full") >= 1)
    # A queue timeout: 1 ms allowed, behind a run of 70 ms or more.
    out = {}
    blocker = post_async(s, "/v2/models/slow/infer", slow_body("blocker"), out, "blocker")
    wait_running(s, "slow")
    late = post_async(s, "/v2/models/slow/infer", slow_body("late", timeout=1000), out, "late")
    late.join()
    blocker.join()
    st, _, data = out["late"][:3]
    check("timeout: a request that waits past its timeout gets 503", st == 503, f"{st} {data[:200]}")
    check("timeout: the error says it timed out", b"timed out" in data, data[:200])
    check("timeout: counted by reason", metric(s, "dabba_inference_rejections_total",
                                                model="slow", reason="timeout") >= 1)
    # Bad scheduler parameters.
    st, _, data = s.request("POST", "/v2/models/slow/infer", slow_body("p", priority=3))
    check("priority out of range is 400 naming it", st == 400 and b"priority" in data, f"{st} {data[:200]}")
    st, _, data = s.request("POST", "/v2/models/slow/infer", slow_body("p", priority="high"))
    check("a non-integer priority is 400", st == 400 and b"priority" in data, f"{st} {data[:200]}")
    st, _, data = s.request("POST", "/v2/models/slow/infer", slow_body("p", timeout=-5))
    check("a negative timeout is 400", st == 400 and b"timeout" in data, f"{st} {data[:200]}")
    st, _, data = s.request("POST", "/v2/models/mlp_batched/infer", infer_body(PIXELS[:17]))
    check("a batch over max_batch_size is 400 naming it", st == 400 and b"max_batch_size" in data,
          f"{st} {data[:200]}")


def test_disconnect(s):
    before = stats(s, "slow").get("execution_count", 0)
    out = {}
    blocker = post_async(s, "/v2/models/slow/infer", slow_body("blocker"), out, "blocker")
    wait_running(s, "slow")
    body = slow_body("gone").encode()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.sendall(b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    time.sleep(0.005)
    sock.close()
    blocker.join()
    time.sleep(0.3)
    after = stats(s, "slow").get("execution_count", 0)
    check("disconnect: the queued request was dropped, not run", after - before == 1,
          f"{after - before} runs")
    check("disconnect: counted by reason", metric(s, "dabba_inference_rejections_total",
                                                   model="slow", reason="disconnected") == 1)
    check("disconnect: the server still serves",
          s.request("POST", "/v2/models/slow/infer", slow_body("after"))[0] == 200)


def timed_post(s, path, body, headers, out, key):
    """Starts a request on its own thread; out[key] = (status, time its response headers
    arrived)."""
    def run():
        c = s.conn()
        try:
            c.request("POST", path, body=body, headers=headers or {})
            r = c.getresponse()
            t = time.time()
            r.read()
            out[key] = (r.status, t)
        except Exception as e:  # noqa: BLE001 - recorded as the result
            out[key] = (repr(e), time.time())
        c.close()
    t = threading.Thread(target=run)
    t.start()
    return t


def ordering_trial(s, model):
    """A 4096-row request (tens of ms), then a 1-row one that the other instance answers at
    once: returns (both answered, ms by which the small answer came before the big one)."""
    # binary in and out: the big request is queued a millisecond or two after its send
    x = np.ascontiguousarray(np.tile(PIXELS, (12, 1))[:4096].reshape(4096, 1, 8, 8), dtype=np.float32)
    hdr = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": list(x.shape),
                                  "parameters": {"binary_data_size": x.nbytes}}],
                      "parameters": {"binary_data_output": True}}).encode()
    small = infer_body(PIXELS[:1].reshape(1, 1, 8, 8), name="image")
    out = {}
    a = timed_post(s, f"/v2/models/{model}/infer", hdr + x.tobytes(),
                   {"Inference-Header-Content-Length": str(len(hdr))}, out, "big")
    # the small one is sent once the big one runs (submission order is what is preserved)
    wait_running(s, model)
    b = timed_post(s, f"/v2/models/{model}/infer", small, None, out, "small")
    a.join()
    b.join()
    ok = out["big"][0] == 200 and out["small"][0] == 200
    return ok, (out["big"][1] - out["small"][1]) * 1000


def test_ordering(s):
    # With preserve_ordering the small answer is held until the big one is sent: they
    # arrive together (client threads add several ms of noise either way).
    ordered = [ordering_trial(s, "cnn_ordered") for _ in range(3)]
    check("preserve_ordering: answered", all(ok for ok, _ in ordered), str(ordered))
    check("preserve_ordering: a later request never overtakes",
          all(ahead < 15 for _, ahead in ordered), str(ordered))
    # Without it, the small answer comes tens of ms earlier (so the check above can fail).
    unordered = [ordering_trial(s, "cnn_unordered") for _ in range(3)]
    check("without preserve_ordering the small request overtakes",
          max(ahead for _, ahead in unordered) > 20, str(unordered))


def main():
    repo = make_repo()
    try:
        s = Server(repo, "--threads", "2")
        try:
            check("server ready", s.wait_ready())
            test_burst(s)
            test_priorities_and_limits(s)
            test_disconnect(s)
            test_ordering(s)
        finally:
            check("clean exit", s.stop() == 0, s.text()[-1500:])
    finally:
        shutil.rmtree(repo)
    print(f"test_sched: {serve_test.passed} passed, {serve_test.failed} failed")
    return 1 if serve_test.failed else 0


if __name__ == "__main__":
    sys.exit(main())
