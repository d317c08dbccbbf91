#!/usr/bin/env python3
"""End-to-end tests of the response cache through `dabba serve`, with a real redis-server.

The test starts redis-server on a free loopback port (and stops it), then drives the real
binary: a miss then a hit (answers identical, ids per request), keys that separate output
selections, versions and changed model files; single flight (identical concurrent misses
compute once); TTL; a hit served from Redis after dabba restarts; purges of one model and
of everything; and correct answers while Redis is killed mid-run, paused with SIGSTOP, and
replaced by servers that answer garbage. Prints "test_cache: N passed, N failed".
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from serve_test import EXAMPLES, PIXELS, ROOT, Server, check, infer_body  # noqa: E402
from sched_test import add_model, metric, post_async, stats  # noqa: E402
import serve_test  # noqa: E402

SLOW = os.path.join(ROOT, "tests", "data", "models", "slow.onnx")
MLP1 = os.path.join(EXAMPLES, "digits_mlp", "1", "model.onnx")
MLP2 = os.path.join(EXAMPLES, "digits_mlp", "2", "model.onnx")
CHECK_METRICS = os.path.join(ROOT, "tests", "e2e", "check_metrics.py")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Redis:
    """A real redis-server on a loopback port, without persistence."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip()

    def keys(self, pattern="dabba:*"):
        out = self.cli("--scan", "--pattern", pattern)
        return [k for k in out.splitlines() if k]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class FakeRedis:
    """A TCP server on loopback that answers every command with the same bytes."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.done = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.client, args=(c,), daemon=True).start()

    def client(self, c):
        try:
            while not self.done:
                if not c.recv(65536):
                    break
                c.sendall(self.answer)
        except OSError:
            pass
        c.close()

    def close(self):
        self.done = True
        self.sock.close()


def make_repo():
    repo = tempfile.mkdtemp()
    add_model(repo, "mlp", MLP1, {"max_batch_size": 16, "response_cache": {"enable": True}})
    os.makedirs(os.path.join(repo, "mlp", "2"))
    os.symlink(MLP2, os.path.join(repo, "mlp", "2", "model.onnx"))
    with open(os.path.join(repo, "mlp", "config.json"), "w") as f:
        json.dump({"max_batch_size": 16, "version_policy": {"all": {}},
                   "response_cache": {"enable": True}}, f)
    add_model(repo, "plain", MLP1, {"max_batch_size": 16})
    add_model(repo, "solo", MLP1, {"max_batch_size": 16, "response_cache": {"enable": True}})
    add_model(repo, "short", MLP1, {"max_batch_size": 16,
                                    "response_cache": {"enable": True, "ttl_seconds": 1}})
    add_model(repo, "slow", SLOW, {"max_batch_size": 1, "response_cache": {"enable": True}})
    return repo


def body(i, rid=None, outputs=None, binary=False):
    b = json.loads(infer_body(PIXELS[i:i + 1], rid=rid))
    if outputs is not None:
        b["outputs"] = [{"name": o, "parameters": {"binary_data": binary}} for o in outputs]
    return json.dumps(b)


def infer(s, model, i, rid=None, version=None, conn=None, **kw):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    st, h, data = s.request("POST", path, body(i, rid, **kw), conn=conn)
    out = None
    if st == 200 and not h.get("inference-header-content-length"):
        j = json.loads(data)
        out = (j, np.array(j["outputs"][0]["data"], dtype=np.float32))
    return st, h.get("dabba-cache"), out, data


def reference(s, n):
    """Answers of the uncached twin for digits 0..n-1."""
    ref = []
    for i in range(n):
        st, _, out, _ = infer(s, "plain", i)
        ref.append(out[1] if out else None)
    return ref


def test_hit_after_miss(s):
    st, c1, o1, _ = infer(s, "mlp", 0, rid="first")
    st2, c2, o2, _ = infer(s, "mlp", 0, rid="second")
    check("miss then hit: status", st == 200 and st2 == 200, f"{st} {st2}")
    check("miss then hit: Dabba-Cache header", (c1, c2) == ("miss", "hit-l1"), f"{c1} {c2}")
    check("hit: same outputs", o1 and o2 and o1[0]["outputs"] == o2[0]["outputs"])
    check("hit: its own id", o2 and o2[0].get("id") == "second" and o1[0].get("id") == "first")
    check("hit: model and version", o2 and o2[0]["model_name"] == "mlp"
          and o2[0]["model_version"] == "2", o2 and o2[0])
    _, c3, _, _ = infer(s, "mlp", 1)
    check("another input: miss", c3 == "miss", c3)
    # selecting outputs is part of the key; binary output of a cached answer decodes
    _, c4, _, _ = infer(s, "mlp", 0, outputs=["probabilities"])
    _, c5, _, raw = infer(s, "mlp", 0, outputs=["probabilities"], binary=True)
    check("output selection: its own entry, then shared by the binary form",
          (c4, c5) == ("miss", "hit-l1"), f"{c4} {c5}")
    st, h, data = s.request("POST", "/v2/models/mlp/infer",
                            body(0, outputs=["probabilities"], binary=True))
    hl = int(h.get("inference-header-content-length", "0"))
    if st == 200 and hl:
        probs = np.frombuffer(data[hl:], dtype=np.float32)
        j = json.loads(data[:hl])
        check("binary hit: right bytes", probs.size == 10 and
              abs(float(probs.sum()) - 1) < 1e-4 and j["outputs"][0]["name"] == "probabilities")
    else:
        check("binary hit: answered", False, st)
    # the other version never sees this version's entry
    _, c6, o6, _ = infer(s, "mlp", 0, version=1)
    _, c7, _, _ = infer(s, "mlp", 0, version=1)
    check("version 1: its own entries", (c6, c7) == ("miss", "hit-l1"), f"{c6} {c7}")
    check("version 1: its own answer", o6 and o1 and o6[0]["outputs"] != o1[0]["outputs"])
    _, c8, _, _ = infer(s, "plain", 0)
    check("no cache configured: no header", c8 is None, c8)
    # a request the model refuses is not cached and says why
    st, h, data = s.request("POST", "/v2/models/mlp/infer", json.dumps(
        {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}))
    check("bad request: 400 before the cache", st == 400 and "dabba-cache" not in h, st)


def test_stats_and_metrics(s):
    st = stats(s, "mlp")
    # /stats lists both versions; version 2 is the default one
    _, _, data = s.request("GET", "/v2/models/mlp/versions/2/stats")
    v2 = json.loads(data)["model_stats"][0]["inference_stats"]
    check("stats: cache_hit counted", v2.get("cache_hit", {}).get("count", 0) >= 2, v2)
    check("stats: cache_miss counted", v2.get("cache_miss", {}).get("count", 0) >= 3, v2)
    check("stats: hit time recorded", v2.get("cache_hit", {}).get("ns", 0) > 0, v2)
    check("stats: success includes hits",
          v2["success"]["count"] >= v2["cache_hit"]["count"] + v2["cache_miss"]["count"], v2)
    text = s.request("GET", "/metrics")[2]
    r = subprocess.run([sys.executable, CHECK_METRICS,
                        'dabba_cache_hits_total{tier="l1",model="mlp"}',
                        'dabba_cache_misses_total{tier="l1",model="mlp"}',
                        'dabba_cache_bytes{tier="l1",model="mlp"}',
                        'dabba_cache_lookup_seconds{tier="l1"}',
                        'dabba_response_cache_seconds{model="mlp",result="hit"}'],
                       input=text, capture_output=True)
    check("metrics: cache families parse", r.returncode == 0, r.stdout + r.stderr)
    check("metrics: l1 bytes held", metric(s, "dabba_cache_bytes", tier="l1", model="mlp") > 0)
    check("access log: cache field",
          any(l.get("event") == "request" and l.get("cache") == "hit-l1" for l in s.lines()))


def test_single_flight(s):
    """Eight identical requests to a ~70 ms model at once: one computes, all get its answer."""
    before = stats(s, "slow").get("execution_count", 0)
    body_s = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                     "data": [4, 3, 2, 1]}]})
    out, threads = {}, []
    for k in range(8):
        threads.append(post_async(s, "/v2/models/slow/infer", body_s, out, k))
    for t in threads:
        t.join()
    st = [out[k][0] for k in range(8)]
    answers = {out[k][2] for k in range(8)}
    kinds = sorted(out[k][1].get("dabba-cache") for k in range(8))
    after = stats(s, "slow").get("execution_count", 0)
    check("single flight: all answered", st == [200] * 8, st)
    check("single flight: one answer", len(answers) == 1)
    check("single flight: computed once", after - before == 1, f"{before} -> {after} {kinds}")
    check("single flight: one miss, the rest shared or hit",
          kinds.count("miss") == 1 and all(k in ("miss", "shared", "hit-l1") for k in kinds), kinds)


def test_ttl(s):
    _, c1, _, _ = infer(s, "short", 3)
    _, c2, _, _ = infer(s, "short", 3)
    time.sleep(1.3)
    _, c3, _, _ = infer(s, "short", 3)
    check("ttl: hit within, miss after", (c1, c2, c3) == ("miss", "hit-l1", "miss"), (c1, c2, c3))


def test_purge(s, redis):
    infer(s, "mlp", 5)
    infer(s, "short", 5)
    infer(s, "solo", 5)
    time.sleep(0.3)  # the Redis fill is asynchronous
    st, _, data = s.request("POST", "/v2/models/mlp/cache/purge")
    j = json.loads(data) if st == 200 else {}
    check("purge model: 200 with counts", st == 200 and j.get("l1_entries_removed", 0) >= 1
          and j.get("l2_keys_removed", 0) >= 1, (st, data))
    check("purge model: no Redis key of it left", not redis.keys("dabba:mlp:*"))
    check("purge model: other models' Redis keys kept", bool(redis.keys("dabba:solo:*")))
    _, c, _, _ = infer(s, "mlp", 5)
    check("purge model: miss after", c == "miss", c)
    _, c, _, _ = infer(s, "short", 5)
    check("purge model: other model still hits", c == "hit-l1", c)
    st, _, data = s.request("POST", "/v2/cache/purge")
    check("purge all: 200", st == 200, data)
    time.sleep(0.1)
    _, c, _, _ = infer(s, "short", 5)
    check("purge all: miss after", c == "miss", c)
    st, _, data = s.request("POST", "/v2/models/nope/cache/purge")
    check("purge unknown model: 404 naming it", st == 404 and b"nope" in data, (st, data))
    st, _, _ = s.request("GET", "/v2/cache/purge")
    check("purge: GET is 405", st == 405, st)


def run_load(s, model, n_inputs, seconds, ref, during=None):
    """Four clients cycling over n_inputs digits for `seconds`; returns (bad, count, worst_s)."""
    stop = time.time() + seconds
    bad, count, worst = [], [0], [0.0]
    lock = threading.Lock()

    def client(c):
        conn = s.conn()
        k = c
        while time.time() < stop:
            i = k % n_inputs
            k += 3
            t0 = time.time()
            try:
                st, _, out, _ = infer(s, model, i, conn=conn)
            except Exception as e:  # noqa: BLE001
                st, out = repr(e), None
                conn = s.conn()
            dt = time.time() - t0
            ok = st == 200 and out is not None and np.allclose(out[1], ref[i], rtol=1e-5, atol=1e-6)
            with lock:
                count[0] += 1
                worst[0] = max(worst[0], dt)
                if not ok:
                    bad.append((i, st))

    ts = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in ts:
        t.start()
    if during:
        during()
    for t in ts:
        t.join()
    return bad, count[0], worst[0]


def test_restart_hits_redis(repo, redis):
    args = ["--redis", f"redis://127.0.0.1:{redis.port}/0", "--redis-timeout-ms", "100"]
    s = Server(repo, *args)
    try:
        check("restart: ready", s.wait_ready())
        _, c1, o1, _ = infer(s, "solo", 7)
        time.sleep(0.3)
        check("restart: the fill reached Redis", len(redis.keys("dabba:solo:*")) >= 1)
    finally:
        s.stop()
    s = Server(repo, *args)
    try:
        s.wait_ready()
        _, c2, o2, _ = infer(s, "solo", 7)
        _, c3, _, _ = infer(s, "solo", 7)
        check("restart: hit from Redis, then from L1", (c1, c2, c3) == ("miss", "hit-l2", "hit-l1"),
              (c1, c2, c3))
        check("restart: same answer", o1 and o2 and o1[0]["outputs"] == o2[0]["outputs"])
        check("restart: l2 hit counted",
              metric(s, "dabba_cache_hits_total", tier="l2", model="solo") >= 1)
        # a key on Redis always has a TTL (3600 s by default)
        k = redis.keys("dabba:solo:*")
        ttl = int(redis.cli("TTL", k[0])) if k else -1
        check("redis keys carry a TTL", 0 < ttl <= 3600, ttl)
    finally:
        s.stop()
    # a changed model file under the same version number never sees the old entries
    changed = tempfile.mkdtemp()
    try:
        add_model(changed, "solo", MLP2, {"max_batch_size": 16, "response_cache": {"enable": True}})
        s = Server(changed, *args)
        s.wait_ready()
        _, c4, o4, _ = infer(s, "solo", 7)
        check("changed model: miss, its own answer", c4 == "miss" and o4 and o1 and
              o4[0]["outputs"] != o1[0]["outputs"], c4)
        s.stop()
    finally:
        shutil.rmtree(changed)


def test_redis_faults(repo, redis):
    s0 = Server(repo, "--cache-size", "0")
    ref = reference(s0, 40)
    s0.stop()
    check("faults: reference answers", all(r is not None for r in ref))
    # --cache-size 0: Redis alone, so every hit or fault goes through it
    args = ["--cache-size", "0", "--redis", f"redis://127.0.0.1:{redis.port}/0",
            "--redis-timeout-ms", "50"]
    s = Server(repo, *args)
    try:
        s.wait_ready()
        bad, n, worst = run_load(s, "solo", 20, 1.0, ref)
        check("redis up: all answers right", not bad and n > 20, (bad[:5], n))
        check("redis up: l2 hits", metric(s, "dabba_cache_hits_total", tier="l2", model="solo") > 0)

        bad, n, worst = run_load(s, "solo", 30, 2.0, ref,
                                 during=lambda: (time.sleep(0.6), redis.kill()))
        check("redis killed mid-run: every answer right", not bad and n > 20, (bad[:5], n))
        check("redis killed: no request slowed past a second", worst < 1.0, worst)
        check("redis killed: faults counted", metric(s, "dabba_cache_errors_total", tier="l2") > 0)
        check("redis killed: down", metric(s, "dabba_cache_l2_up") == 0)
        redis.start()
        time.sleep(2.5)  # past the longest backoff
        for i in range(30, 34):
            infer(s, "solo", i)
        time.sleep(0.3)
        check("redis back: fills resume", len(redis.keys("dabba:solo:*")) >= 1)
        _, c, _, _ = infer(s, "solo", 31)
        check("redis back: hits resume", c == "hit-l2", c)

        errors_before = metric(s, "dabba_cache_errors_total", tier="l2")
        def pause():
            time.sleep(0.3)
            redis.proc.send_signal(signal.SIGSTOP)
        bad, n, worst = run_load(s, "solo", 40, 2.0, ref, during=pause)
        redis.proc.send_signal(signal.SIGCONT)
        check("redis paused: every answer right", not bad and n > 20, (bad[:5], n))
        check("redis paused: no request slowed past a second", worst < 1.0, worst)
        check("redis paused: timeouts counted",
              metric(s, "dabba_cache_errors_total", tier="l2", kind="timeout") > 0 and
              metric(s, "dabba_cache_errors_total", tier="l2") > errors_before)
    finally:
        s.stop()
    # servers that answer garbage: bytes that are not RESP, a wrong reply type, and a
    # well-formed string that is not a cached value
    for name, answer, kind in ((b"garbage", b"\x00\xffnot redis at all\r\n", "protocol"),
                               (b"integer", b":42\r\n", None),
                               (b"corrupt", b"$11\r\nhello world\r\n", None)):
        fake = FakeRedis(answer)
        s = Server(repo, "--cache-size", "0", "--redis", f"redis://127.0.0.1:{fake.port}/0",
                   "--redis-timeout-ms", "50")
        try:
            s.wait_ready()
            bad, n, worst = run_load(s, "solo", 20, 0.7, ref)
            check(f"fake redis ({name.decode()}): every answer right", not bad and n > 10,
                  (bad[:5], n))
            check(f"fake redis ({name.decode()}): faults counted",
                  metric(s, "dabba_cache_errors_total", tier="l2") > 0)
            if kind:
                check(f"fake redis ({name.decode()}): kind {kind}",
                      metric(s, "dabba_cache_errors_total", tier="l2", kind=kind) > 0)
            check(f"fake redis ({name.decode()}): logged",
                  any(l.get("event") == "cache_fault" for l in s.lines()))
        finally:
            s.stop()
            fake.close()


def test_bad_flags(repo):
    for args, what in ((["--redis", "http://127.0.0.1:1"], "redis://"),
                       (["--redis", "redis://127.0.0.1:99999"], "99999"),
                       (["--cache-size", "lots"], "--cache-size"),
                       (["--cache-policy", "fifo"], "fifo")):
        r = subprocess.run([serve_test.BIN, "serve", "--repository", repo, "--http-port", "0",
                            *args], capture_output=True, text=True, timeout=60)
        check(f"bad flag {args}: refused, named", r.returncode != 0 and what in r.stderr,
              (r.returncode, r.stderr[-300:]))
    bad = tempfile.mkdtemp()
    try:
        add_model(bad, "m", MLP1, {"response_cache": {"enable": "yes"}})
        s = Server(bad)
        _, _, data = s.request("POST", "/v2/repository/index")
        check("bad response_cache config: named in the index", b"response_cache.enable" in data,
              data)
        s.stop()
    finally:
        shutil.rmtree(bad)


def main():
    repo = make_repo()
    redis = Redis()
    try:
        s = Server(repo, "--redis", f"redis://127.0.0.1:{redis.port}/0", "--redis-timeout-ms", "100")
        try:
            check("ready", s.wait_ready())
            test_hit_after_miss(s)
            test_stats_and_metrics(s)
            test_single_flight(s)
            test_ttl(s)
            test_purge(s, redis)
        finally:
            check("clean exit", s.stop() == 0)
        redis.cli("FLUSHALL")
        test_restart_hits_redis(repo, redis)
        test_redis_faults(repo, redis)
        test_bad_flags(repo)
    finally:
        redis.stop()
        shutil.rmtree(repo)
    print(f"test_cache: {serve_test.passed} passed, {serve_test.failed} failed")
    return 1 if serve_test.failed else 0


if __name__ == "__main__":
    sys.exit(main())
