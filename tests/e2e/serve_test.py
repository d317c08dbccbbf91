#!/usr/bin/env python3
"""End-to-end tests of `dabba serve`: the real binary over loopback.

Every endpoint, JSON and binary encodings, compressed bodies, the error paths,
a hot swap of digits_mlp from version 1 to 2 under continuous concurrent load
(zero failed requests), and a SIGTERM drain that completes in-flight requests.
Prints "test_serve: N passed, N failed". Uses only the standard library and
numpy (Debian's python3-numpy), plus tests/e2e/check_metrics.py for /metrics.
"""
import gzip
import http.client
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, os.environ.get("BINDIR", "bin"), "dabba")
EXAMPLES = os.path.join(ROOT, "examples", "repository")
PIXELS = np.load(os.path.join(ROOT, "examples", "data", "digits_test_pixels.npy"))
LABELS = np.load(os.path.join(ROOT, "examples", "data", "digits_test_labels.npy"))

passed = 0
failed = 0


def check(what, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what} {detail}".rstrip(), flush=True)


class Server:
    def __init__(self, repo, *args, env=None):
        self.log = tempfile.TemporaryFile(mode="w+")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([BIN, "serve", "--repository", repo, "--http-port", "0",
                                      "--http-address", "127.0.0.1", *args],
                                     stdout=self.log, stderr=self.log, env=e)
        self.port = None
        deadline = time.time() + 60
        while time.time() < deadline and self.port is None:
            time.sleep(0.05)
            for line in self.lines():
                if line.get("event") == "listening":
                    self.port = line["port"]
            if self.proc.poll() is not None:
                break
        if self.port is None:
            raise RuntimeError("server did not start:\n" + self.text())

    def text(self):
        self.log.seek(0)
        return self.log.read()

    def lines(self):
        out = []
        for l in self.text().splitlines():
            try:
                out.append(json.loads(l))
            except ValueError:
                pass
        return out

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method, path, body=None, headers=None, conn=None):
        c = conn or self.conn()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.request("GET", "/v2/health/ready")[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def big_batch_repo():
    """A repository whose digits_cnn takes batches of up to 4096 rows (the examples' default
    max_batch_size is 64): large batches keep an instance busy for the overload and drain
    tests. The caller removes the folder."""
    tmp = tempfile.mkdtemp()
    os.symlink(os.path.join(EXAMPLES, "digits_mlp"), os.path.join(tmp, "digits_mlp"))
    os.makedirs(os.path.join(tmp, "digits_cnn", "1"))
    os.symlink(os.path.join(EXAMPLES, "digits_cnn", "1", "model.onnx"),
               os.path.join(tmp, "digits_cnn", "1", "model.onnx"))
    with open(os.path.join(tmp, "digits_cnn", "config.json"), "w") as f:
        f.write('{"max_batch_size": 4096}')
    return tmp


def in_big_batch_repo(fn):
    repo = big_batch_repo()
    try:
        fn(repo)
    finally:
        shutil.rmtree(repo)


def infer_body(rows, name="pixels", binary_out=False, rid=None, shape=None):
    x = np.asarray(rows, dtype=np.float32)
    body = {"inputs": [{"name": name, "datatype": "FP32", "shape": list(shape or x.shape),
                        "data": x.flatten().tolist()}]}
    if rid:
        body["id"] = rid
    if binary_out:
        body["outputs"] = [{"name": "probabilities", "parameters": {"binary_data": True}}]
    return json.dumps(body)


def test_endpoints(s):
    st, _, data = s.request("GET", "/v2")
    meta = json.loads(data)
    check("GET /v2", st == 200 and meta["name"] == "dabba" and "binary_tensor_data" in meta["extensions"])
    check("live", s.request("GET", "/v2/health/live")[0] == 200)
    check("ready", s.request("GET", "/v2/health/ready")[0] == 200)
    st, _, data = s.request("GET", "/v2/models")
    names = [m["name"] for m in json.loads(data)["models"]] if st == 200 else []
    check("GET /v2/models lists the examples", "digits_mlp" in names and "digits_cnn" in names, str(names))
    st, _, data = s.request("GET", "/v2/models/digits_mlp")
    m = json.loads(data) if st == 200 else {}
    check("model metadata", st == 200 and m.get("inputs", [{}])[0].get("name") == "pixels"
          and m["inputs"][0]["datatype"] == "FP32" and m["inputs"][0]["shape"] == [-1, 64]
          and m["outputs"][0]["name"] == "probabilities", str(m))
    st, _, data = s.request("GET", "/v2/models/digits_mlp/versions/1")
    check("version metadata", st == 200 and json.loads(data)["name"] == "digits_mlp")
    check("model ready", s.request("GET", "/v2/models/digits_mlp/ready")[0] == 200)
    check("version ready", s.request("GET", "/v2/models/digits_mlp/versions/1/ready")[0] == 200)
    st, _, data = s.request("GET", "/v2/models/digits_mlp/config")
    check("model config", st == 200 and isinstance(json.loads(data), dict))
    st, _, data = s.request("POST", "/v2/repository/index", body="{}")
    idx = json.loads(data) if st == 200 else []
    check("repository index", st == 200 and any(e.get("name") == "digits_cnn" and e.get("state") == "READY" for e in idx), str(idx))


def argmax_rows(outputs):
    o = outputs[0]
    return np.asarray(o["data"], dtype=np.float32).reshape(o["shape"]).argmax(axis=1)


def test_infer(s):
    # JSON in, JSON out, echoing the id; predictions right for the held-out digits.
    st, h, data = s.request("POST", "/v2/models/digits_mlp/infer", infer_body(PIXELS[:16], rid="req-7"))
    r = json.loads(data) if st == 200 else {}
    check("JSON infer", st == 200 and r.get("id") == "req-7" and r["model_name"] == "digits_mlp"
          and r["outputs"][0]["shape"] == [16, 10], data[:200])
    if st == 200:
        acc = (argmax_rows(r["outputs"]) == LABELS[:16]).mean()
        check("JSON infer predicts the digits", acc >= 0.8, str(acc))
    # nested data
    nested = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 64],
                          "data": PIXELS[:2].tolist()}]}
    st, _, data = s.request("POST", "/v2/models/digits_mlp/versions/1/infer", json.dumps(nested))
    check("nested data", st == 200 and json.loads(data)["outputs"][0]["shape"] == [2, 10], data[:200])
    # CNN
    img = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [4, 1, 8, 8],
                       "data": PIXELS[:4].flatten().tolist()}]}
    st, _, data = s.request("POST", "/v2/models/digits_cnn/infer", json.dumps(img))
    check("CNN infer", st == 200 and json.loads(data)["outputs"][0]["shape"] == [4, 10], data[:200])
    # binary request and binary response
    x = PIXELS[:8].astype(np.float32)
    hdr = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [8, 64],
                                  "parameters": {"binary_data_size": x.nbytes}}],
                      "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    st, h, data = s.request("POST", "/v2/models/digits_mlp/infer", hdr + x.tobytes(),
                            {"Inference-Header-Content-Length": str(len(hdr)),
                             "Content-Type": "application/octet-stream"})
    ok = st == 200 and "inference-header-content-length" in h
    if ok:
        jl = int(h["inference-header-content-length"])
        meta = json.loads(data[:jl])
        probs = np.frombuffer(data[jl:], dtype=np.float32).reshape(8, 10)
        ok = meta["outputs"][0]["parameters"]["binary_data_size"] == 320 and \
            (probs.argmax(axis=1) == LABELS[:8]).mean() >= 0.75
    check("binary infer", ok, f"{st} {data[:200]}")
    # raw single-input form
    st, h, data = s.request("POST", "/v2/models/digits_mlp/infer", x.tobytes(),
                            {"Inference-Header-Content-Length": "0",
                             "Content-Type": "application/octet-stream"})
    check("raw binary infer", st == 200, f"{st} {data[:200]}")
    # gzip request body, gzip response
    body = gzip.compress(infer_body(PIXELS[:32]).encode())
    st, h, data = s.request("POST", "/v2/models/digits_mlp/infer", body,
                            {"Content-Encoding": "gzip", "Accept-Encoding": "gzip"})
    ok = st == 200 and h.get("content-encoding") == "gzip"
    if ok:
        ok = json.loads(gzip.decompress(data))["outputs"][0]["shape"] == [32, 10]
    check("gzip in and out", ok, f"{st} {h}")
    body = zlib.compress(infer_body(PIXELS[:2]).encode())
    st, _, _ = s.request("POST", "/v2/models/digits_mlp/infer", body, {"Content-Encoding": "deflate"})
    check("deflate request", st == 200)
    # keep-alive: many requests on one connection
    c = s.conn()
    ok = True
    for i in range(20):
        st, _, _ = s.request("POST", "/v2/models/digits_mlp/infer", infer_body(PIXELS[i:i + 1]), conn=c)
        ok &= st == 200
    c.close()
    check("keep-alive", ok)


def test_errors(s):
    def err(method, path, body=None, headers=None):
        st, _, data = s.request(method, path, body, headers)
        try:
            msg = json.loads(data).get("error", "")
        except ValueError:
            msg = ""
        return st, msg
    st, msg = err("POST", "/v2/models/nope/infer", infer_body(PIXELS[:1]))
    check("unknown model is 404", st == 404 and "nope" in msg, msg)
    st, msg = err("POST", "/v2/models/digits_mlp/versions/9/infer", infer_body(PIXELS[:1]))
    check("unknown version is 404", st == 404, f"{st} {msg}")
    st, msg = err("POST", "/v2/models/digits_mlp/infer", "{not json")
    check("bad JSON is 400", st == 400 and msg, msg)
    st, msg = err("POST", "/v2/models/digits_mlp/infer", infer_body(PIXELS[:1], name="pixel"))
    check("unknown input is 400", st == 400 and "pixel" in msg, msg)
    bad = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 63}]}
    st, msg = err("POST", "/v2/models/digits_mlp/infer", json.dumps(bad))
    check("short data is 400", st == 400 and "63" in msg, msg)
    bad = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 65], "data": [0.0] * 65}]}
    st, msg = err("POST", "/v2/models/digits_mlp/infer", json.dumps(bad))
    check("wrong shape is 400", st == 400 and "pixels" in msg, msg)
    bad = {"inputs": [{"name": "pixels", "datatype": "INT32", "shape": [1, 64], "data": [0] * 64}]}
    st, msg = err("POST", "/v2/models/digits_mlp/infer", json.dumps(bad))
    check("wrong datatype is 400", st == 400 and "pixels" in msg, msg)
    bad = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1000000000, 64], "data": [0]}]}
    st, msg = err("POST", "/v2/models/digits_mlp/infer", json.dumps(bad))
    check("huge shape refused before allocating", st in (400, 413), f"{st} {msg}")
    st, msg = err("POST", "/v2/models/digits_mlp/infer", infer_body(PIXELS[:1]).replace("probabilities", "x"))
    body = json.loads(infer_body(PIXELS[:1]))
    body["outputs"] = [{"name": "nope"}]
    st, msg = err("POST", "/v2/models/digits_mlp/infer", json.dumps(body))
    check("unknown output is 400", st == 400 and "nope" in msg, msg)
    st, msg = err("GET", "/v2/models/digits_mlp/infer")
    check("GET infer is 405", st == 405, str(st))
    st, msg = err("GET", "/v2/nothing/here")
    check("unknown path is 404", st == 404, str(st))
    st, msg = err("POST", "/v2/models/digits_mlp/infer", b"\x00" * (2 << 20), {"Content-Encoding": "gzip"})
    check("corrupt gzip is 400", st == 400, f"{st} {msg}")
    bomb = gzip.compress(b" " * (80 << 20))
    st, msg = err("POST", "/v2/models/digits_mlp/infer", bomb, {"Content-Encoding": "gzip"})
    check("gzip bomb is 413", st == 413, f"{st} {msg}")
    st, msg = err("POST", "/v2/models/digits_mlp/infer", b"x" * (65 << 20))
    check("oversized body is 413", st == 413, f"{st} {msg}")


def test_metrics(s):
    st, h, data = s.request("GET", "/metrics")
    check("metrics endpoint", st == 200 and h.get("content-type", "").startswith("text/plain"))
    need = ["dabba_inference_requests_total", "dabba_request_duration_seconds",
            "dabba_queue_duration_seconds", "dabba_compute_duration_seconds",
            "dabba_request_size_bytes", "dabba_inflight_requests", "dabba_model_ready",
            "dabba_model_load_seconds", "dabba_process_resident_memory_bytes",
            "dabba_process_cpu_seconds", "dabba_build_info"]
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "e2e", "check_metrics.py"), *need],
                       input=data, capture_output=True)
    check("metrics parse with prometheus_client and have every family", p.returncode == 0,
          (p.stdout + p.stderr).decode()[:400])
    st, _, data = s.request("GET", "/v2/models/digits_mlp/stats")
    ms = json.loads(data).get("model_stats", []) if st == 200 else []
    ok = ms and ms[0]["inference_count"] > 0 and ms[0]["inference_stats"]["success"]["count"] > 0
    check("statistics extension", ok, data[:300])
    st, _, data = s.request("GET", "/v2/models/stats")
    check("statistics for every model", st == 200 and len(json.loads(data)["model_stats"]) >= 2)
    logs = [l for l in s.lines() if l.get("event") == "request"]
    ok = logs and all(k in logs[-1] for k in ("time", "method", "path", "status", "latency_ms",
                                              "model", "version", "request_id", "bytes_in", "bytes_out"))
    check("one JSON log line per request", ok, str(logs[-1] if logs else s.text()[-300:]))


class Load:
    """Concurrent keep-alive clients posting one digit each, counting failures."""

    def __init__(self, s, model, threads=6):
        self.s, self.model, self.stop, self.ok, self.bad, self.versions = s, model, False, 0, [], set()
        self.mu = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, i):
        c = self.s.conn()
        n = 0
        while not self.stop:
            try:
                st, _, data = self.s.request("POST", f"/v2/models/{self.model}/infer",
                                             infer_body(PIXELS[n % 100:n % 100 + 1]), conn=c)
                with self.mu:
                    if st == 200:
                        self.ok += 1
                        self.versions.add(json.loads(data)["model_version"])
                    else:
                        self.bad.append((st, data[:200]))
            except Exception as e:  # a dropped connection is a failure too
                with self.mu:
                    self.bad.append(("exception", repr(e)))
                c = self.s.conn()
            n += 1
        c.close()

    def finish(self):
        self.stop = True
        for t in self.threads:
            t.join()


def test_hot_swap():
    tmp = tempfile.mkdtemp()
    try:
        os.makedirs(os.path.join(tmp, "digits_mlp"))
        shutil.copytree(os.path.join(EXAMPLES, "digits_mlp", "1"), os.path.join(tmp, "digits_mlp", "1"))
        s = Server(tmp, "--model-control-mode", "poll", "--repository-poll-secs", "1")
        try:
            check("swap: server ready", s.wait_ready())
            load = Load(s, "digits_mlp")
            time.sleep(1.0)
            shutil.copytree(os.path.join(EXAMPLES, "digits_mlp", "2"), os.path.join(tmp, "digits_mlp", "2"))
            deadline = time.time() + 30
            while time.time() < deadline and "2" not in load.versions:
                time.sleep(0.2)
            time.sleep(1.0)
            load.finish()
            check("swap: version 2 served after the swap", "2" in load.versions, str(load.versions))
            check("swap: zero failed requests under load", not load.bad and load.ok > 50,
                  f"ok={load.ok} bad={load.bad[:3]}")
            st, _, data = s.request("GET", "/v2/models/digits_mlp")
            check("swap: metadata lists version 2", st == 200 and "2" in json.loads(data)["versions"], data[:200])
        finally:
            check("swap: clean exit", s.stop() == 0)
    finally:
        shutil.rmtree(tmp)


def test_drain():
    in_big_batch_repo(drain_in)


def drain_in(repo):
    s = Server(repo, "--threads", "1")
    if not s.wait_ready():
        check("drain: server ready", False)
        s.stop()
        return
    results = []
    big = infer_body(np.tile(PIXELS, (4, 1))[:1024])

    def client():
        try:
            st, _, data = s.request("POST", "/v2/models/digits_cnn/infer",
                                    big.replace('"pixels"', '"image"').replace("[1024, 64]", "[1024, 1, 8, 8]"))
            results.append(st)
        except Exception as e:
            results.append(repr(e))
    slow = []
    sent_half = threading.Event()
    resume = threading.Event()

    def slow_client():
        # A request whose body is still arriving when SIGTERM comes: it must complete.
        import socket
        body = infer_body(PIXELS[:4]).encode()
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        sock.sendall(b"POST /v2/models/digits_mlp/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body[:len(body) // 2])
        sent_half.set()
        resume.wait(10)
        sock.sendall(body[len(body) // 2:])
        resp = b""
        while b"\r\n\r\n" not in resp:
            chunk = sock.recv(65536)
            if not chunk:
                break
            resp += chunk
        slow.append(resp.split(b" ")[1] if resp.startswith(b"HTTP/1.1") else resp[:50])
        sock.close()

    st = threading.Thread(target=slow_client)
    st.start()
    sent_half.wait(10)
    ts = [threading.Thread(target=client) for _ in range(12)]
    for t in ts:
        t.start()
    time.sleep(0.2)
    s.proc.send_signal(signal.SIGTERM)
    t0 = time.time()
    time.sleep(0.3)
    resume.set()
    for t in ts:
        t.join()
    st.join()
    rc = s.proc.wait(40)
    check("drain: every in-flight request completed with 200", results == [200] * 12, str(results))
    check("drain: a half-sent request completed with 200", slow == [b"200"], str(slow))
    check("drain: exit status 0", rc == 0, str(rc))
    check("drain: logged the drain", any(l.get("event") == "draining" for l in s.lines()))
    check("drain: finished promptly", time.time() - t0 < 35)


def test_explicit_mode():
    s = Server(EXAMPLES, "--model-control-mode", "explicit", "--load-model", "digits_cnn")
    try:
        check("explicit: server ready with its startup model", s.wait_ready())
        st, _, data = s.request("POST", "/v2/models/digits_mlp/infer", infer_body(PIXELS[:1]))
        check("explicit: an unloaded model is not served", st in (404, 503), f"{st} {data[:200]}")
        st, _, data = s.request("POST", "/v2/repository/models/digits_mlp/load", "")
        check("explicit: load", st == 200, f"{st} {data[:200]}")
        st, _, data = s.request("POST", "/v2/models/digits_mlp/infer", infer_body(PIXELS[:1]))
        check("explicit: served after load", st == 200, f"{st} {data[:200]}")
        cfg = json.dumps({"parameters": {"config": json.dumps({"version_policy": {"specific": {"versions": [1]}}})}})
        st, _, data = s.request("POST", "/v2/repository/models/digits_mlp/load", cfg)
        check("explicit: load with a config in the body", st == 200, f"{st} {data[:200]}")
        st, _, data = s.request("POST", "/v2/models/digits_mlp/infer", infer_body(PIXELS[:1]))
        check("explicit: the body's config chose version 1", st == 200 and json.loads(data)["model_version"] == "1", data[:200])
        bad = json.dumps({"parameters": {"config": "{\"instance_group\": [{\"count\": \"many\"}]}"}})
        st, _, data = s.request("POST", "/v2/repository/models/digits_mlp/load", bad)
        check("explicit: a bad config is refused naming the field", st == 400 and b"instance_group" in data, f"{st} {data[:200]}")
        st, _, data = s.request("POST", "/v2/models/digits_mlp/infer", infer_body(PIXELS[:1]))
        check("explicit: a refused config leaves the model serving", st == 200, f"{st} {data[:200]}")
        st, _, data = s.request("POST", "/v2/repository/models/digits_mlp/load", b" " * (3 << 20))
        check("explicit: an oversized load body is 413", st == 413, f"{st} {data[:200]}")
        st, _, data = s.request("POST", "/v2/repository/models/nope/load", "")
        check("explicit: loading an unknown model is 404", st == 404, f"{st} {data[:200]}")
        st, _, data = s.request("POST", "/v2/repository/models/digits_mlp/unload", "")
        check("explicit: unload", st == 200, f"{st} {data[:200]}")
        time.sleep(0.2)
        st, _, data = s.request("POST", "/v2/models/digits_mlp/infer", infer_body(PIXELS[:1]))
        check("explicit: not served after unload", st in (404, 503), f"{st} {data[:200]}")
        st, _, data = s.request("POST", "/v2/repository/index", "")
        idx = json.loads(data) if st == 200 else []
        check("explicit: index shows the unloaded model", any(e["name"] == "digits_mlp" and e["state"] != "READY" for e in idx), data[:300])
    finally:
        check("explicit: clean exit", s.stop() == 0)


def test_overload_and_timeouts():
    in_big_batch_repo(overload_in)


def overload_in(repo):
    s = Server(repo, "--threads", "1", "--max-queue", "1", "--idle-timeout-secs", "1",
               "--request-timeout-secs", "2")
    try:
        check("overload: server ready", s.wait_ready())
        big = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [512, 1, 8, 8],
                                      "data": np.tile(PIXELS, (2, 1))[:512].flatten().tolist()}]})
        res = []
        hdrs = []

        def client():
            try:
                st, h, _ = s.request("POST", "/v2/models/digits_cnn/infer", big)
                res.append(st)
                hdrs.append(h)
            except Exception as e:
                res.append(repr(e))
        ts = [threading.Thread(target=client) for _ in range(24)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check("overload: every request answered 200 or 503", all(r in (200, 503) for r in res), str(res))
        check("overload: a full queue answers 503 at once", 503 in res and 200 in res, str(res))
        check("overload: 503 carries Retry-After", all("retry-after" in h for h, r in zip(hdrs, res) if r == 503))
        # A half-sent request is closed after the idle timeout.
        import socket
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(b"POST /v2/models/digits_mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        t0 = time.time()
        try:
            data = sock.recv(100)
        except OSError:
            data = b""
        check("timeout: a stalled request is closed", data == b"" and time.time() - t0 < 8, f"{data[:80]} after {time.time() - t0:.1f}s")
        sock.close()
        check("timeout: the server still serves", s.request("GET", "/v2/health/live")[0] == 200)
        # A body trickling in one byte at a time (never idle) is cut off by the request timeout.
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(b"POST /v2/models/digits_mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        t0 = time.time()
        closed = False
        try:
            while time.time() - t0 < 8:
                sock.sendall(b" ")
                time.sleep(0.3)
        except OSError:
            closed = True
        check("timeout: a trickling body is cut off", closed and time.time() - t0 < 6, f"closed={closed} after {time.time() - t0:.1f}s")
        sock.close()
    finally:
        check("overload: clean exit", s.stop() == 0)


def test_sighup_rescan():
    tmp = tempfile.mkdtemp()
    try:
        shutil.copytree(os.path.join(EXAMPLES, "digits_cnn"), os.path.join(tmp, "digits_cnn"))
        s = Server(tmp)
        try:
            check("sighup: ready", s.wait_ready())
            st, _, _ = s.request("GET", "/v2/models/digits_mlp")
            check("sighup: a model not yet in the folder is 404", st == 404, str(st))
            shutil.copytree(os.path.join(EXAMPLES, "digits_mlp"), os.path.join(tmp, "digits_mlp"))
            s.proc.send_signal(signal.SIGHUP)
            ok = False
            for _ in range(100):
                if s.request("GET", "/v2/models/digits_mlp/ready")[0] == 200:
                    ok = True
                    break
                time.sleep(0.1)
            check("sighup: the new model is served after SIGHUP", ok)
        finally:
            check("sighup: clean exit", s.stop() == 0)
    finally:
        shutil.rmtree(tmp)


def test_drain_timeout():
    # More queued work than --exit-timeout-secs allows: the requests still queued are
    # answered 503 at exit, none is dropped without an answer, and the exit status is 0.
    in_big_batch_repo(drain_timeout_in)


def drain_timeout_in(repo):
    s = Server(repo, "--threads", "1", "--exit-timeout-secs", "1")
    if not s.wait_ready():
        check("drain timeout: server ready", False)
        s.stop()
        return
    body = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [4096, 1, 8, 8],
                                   "data": np.tile(PIXELS, (10, 1))[:4096].flatten().tolist()}]})
    results = []

    def client():
        try:
            st, _, _ = s.request("POST", "/v2/models/digits_cnn/infer", body)
            results.append(st)
        except Exception as e:
            results.append(repr(e)[:60])
    n = 48
    ts = [threading.Thread(target=client) for _ in range(n)]
    for t in ts:
        t.start()
    # SIGTERM once the server holds every request (counted in flight; /metrics adds one),
    # so that none of them is a new connection refused by the drain.
    import re
    deadline = time.time() + 30
    while time.time() < deadline:
        m = re.search(rb"^dabba_inflight_requests (\d+)", s.request("GET", "/metrics")[2], re.M)
        if m and int(m.group(1)) >= n + 1:
            break
        time.sleep(0.01)
    s.proc.send_signal(signal.SIGTERM)
    for t in ts:
        t.join()
    rc = s.proc.wait(40)
    check("drain timeout: every request answered 200 or 503", len(results) == n and
          all(r in (200, 503) for r in results), str(results))
    stopped = [l for l in s.lines() if l.get("event") == "stopped"]
    check("drain timeout: logged what was left", stopped and "unfinished_requests" in stopped[-1],
          str(stopped))
    check("drain timeout: exit status 0", rc == 0, str(rc))


def main():
    s = Server(EXAMPLES)
    try:
        check("server becomes ready", s.wait_ready())
        test_endpoints(s)
        test_infer(s)
        test_errors(s)
        test_metrics(s)
    finally:
        rc = s.stop()
        check("SIGTERM exits 0", rc == 0, f"exit status {rc}; server log tail:\n" + s.text()[-1500:])
    test_explicit_mode()
    test_overload_and_timeouts()
    test_sighup_rescan()
    test_hot_swap()
    test_drain()
    test_drain_timeout()
    print(f"test_serve: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
