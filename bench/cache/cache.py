#!/usr/bin/python3
"""Helpers of the cache benchmark (bench/cache/run.sh): answer checks, cache fill, hit ratios
from /metrics, hit/miss latency from the access log.

    cache.py check URL MODEL BODIES REF MODE   ask a handful of the bodies (lines CHECK_LINES
                                               of BODIES, the file zipf.lua posts), each twice,
                                               on one keep-alive connection to URL (the model's
                                               infer URL). MODE ref: the server runs without the
                                               response cache; write the answers to REF (JSON).
                                               Otherwise every answer's outputs must equal REF's
                                               exactly, and the Dabba-Cache header must fit MODE:
                                               absent for none; miss / hit-l1 / hit-l2 / shared
                                               otherwise, and the repeat of a body must be a hit
                                               (hit-l1 with an L1, hit-l2 for l2) within 1 s.
    cache.py fill URL BODIES                   POST every body once (FILL_CONNECTIONS keep-alive
                                               connections); all must be 200; prints how many
                                               were answered by each cache result
    cache.py hits BEFORE AFTER MODEL           the dabba_cache_{hits,misses}_total deltas of MODEL
                                               between two /metrics scrapes: prints "hit_ratio
                                               lookups l1_hits l1_misses l2_hits l2_misses" (hit
                                               ratio = lookups answered by either tier / lookups
                                               of the first tier; nan without lookups)
    cache.py logsplit LOG MODEL                the JSON access log's "request" lines of MODEL's
                                               infer (status 200) split by their "cache" field:
                                               prints "miss_n miss_p50 hit_l1_n hit_l1_p50
                                               hit_l2_n hit_l2_p50 shared_n shared_p50" (ms of
                                               latency_ms; nan where none)
    cache.py body BODIES LINE OUT              copy line LINE (1-based) of BODIES to OUT

Every check prints one line saying what it saw and exits 1 on a wrong answer.
"""
import http.client
import json
import math
import re
import sys
import threading
import time
import urllib.parse

CHECK_LINES = [1, 2, 3, 10, 100, 1000, 5000, 10000]  # hot to cold; lines past the end are skipped
RESULTS = {"miss", "hit-l1", "hit-l2", "shared"}
FILL_CONNECTIONS = 4


def fail(msg):
    print(f"cache: {msg}")
    sys.exit(1)


def read_lines(path):
    with open(path, encoding="ascii") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects once if the server closed it."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = u.hostname, u.port or 80, u.path
        self.conn = None

    def post(self, body):
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request("POST", self.path, body=body.encode("ascii"),
                                  headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                data = r.read()
                return r.status, r.getheader("Dabba-Cache"), data
            except (http.client.HTTPException, OSError) as e:
                self.conn = None
                if attempt:
                    fail(f"POST {self.path}: {e}")
        return None


def outputs_of(data, what):
    try:
        resp = json.loads(data)
        outs = resp["outputs"]
    except (ValueError, KeyError, TypeError) as e:
        fail(f"{what}: not a v2 infer response ({e}): {data[:200]!r}")
    return {"model_name": resp.get("model_name"), "model_version": resp.get("model_version"),
            "outputs": outs}


def max_diff(a, b):
    try:
        return max(abs(float(x) - float(y)) for oa, ob in zip(a["outputs"], b["outputs"])
                   for x, y in zip(oa["data"], ob["data"]))
    except (KeyError, TypeError, ValueError):
        return math.nan


def check(url, model, bodies_path, ref_path, mode):
    bodies = read_lines(bodies_path)
    lines = [n for n in CHECK_LINES if n <= len(bodies)]
    c = Client(url)
    ref = None
    if mode != "ref":
        with open(ref_path, encoding="utf-8") as f:
            ref = json.load(f)
    got, seen = {}, []
    want_hit = {"ref": None, "none": None, "l2": "hit-l2"}.get(mode, "hit-l1")
    for n in lines:
        answers = []
        for i in range(2):
            status, result, data = c.post(bodies[n - 1])
            if status != 200:
                fail(f"{model} {mode}: body {n} answered HTTP {status}: {data[:200]!r}")
            answers.append((result, outputs_of(data, f"{model} {mode} body {n}")))
        if want_hit is not None and answers[1][0] != want_hit:
            # an L2 fill is written in the background: give it a moment, then ask again
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and answers[-1][0] != want_hit:
                time.sleep(0.02)
                status, result, data = c.post(bodies[n - 1])
                if status != 200:
                    fail(f"{model} {mode}: body {n} answered HTTP {status}")
                answers.append((result, outputs_of(data, f"{model} {mode} body {n}")))
        for result, out in answers:
            seen.append(result)
            if mode in ("ref", "none"):
                if result is not None:
                    fail(f"{model} {mode}: body {n} came with Dabba-Cache: {result} although the "
                         f"model's response cache is off")
            elif result not in RESULTS:
                fail(f"{model} {mode}: body {n} came with Dabba-Cache: {result!r}, want one of "
                     f"{sorted(RESULTS)}")
            if mode == "ref":
                if n in got and got[n] != out:
                    fail(f"{model}: the no-cache server gave two different answers to body {n} "
                         f"(max |diff| {max_diff(got[n], out):.3g})")
                got[n] = out
            elif ref[str(n)] != out:
                fail(f"{model} {mode}: body {n} (Dabba-Cache: {result}) differs from the no-cache "
                     f"server's answer (max |diff| {max_diff(ref[str(n)], out):.3g})")
        if want_hit is not None and answers[-1][0] != want_hit:
            fail(f"{model} {mode}: asked body {n} {len(answers)} times, the repeats came as "
                 f"{[a[0] for a in answers[1:]]}, want {want_hit}")
    if mode == "ref":
        with open(ref_path, "w", encoding="utf-8") as f:
            json.dump({str(n): v for n, v in got.items()}, f)
        print(f"cache: {model}: reference answers of the no-cache server for bodies {lines}")
        return
    counts = {r: seen.count(r) for r in sorted(set(seen), key=str)}
    print(f"cache: {model} {mode}: bodies {lines} x2 equal the no-cache answers; Dabba-Cache "
          f"{counts}")


def fill(url, bodies_path):
    bodies = read_lines(bodies_path)
    counts, errors = {}, []
    lock = threading.Lock()

    def worker(k):
        # FILL_CONNECTIONS connections, each over every FILL_CONNECTIONS-th body
        c = Client(url)
        for i in range(k, len(bodies), FILL_CONNECTIONS):
            try:
                status, result, data = c.post(bodies[i])
            except SystemExit:  # Client.post's fail(): it said why
                with lock:
                    errors.append(f"body {i + 1}: no answer")
                return
            with lock:
                if status != 200:
                    errors.append(f"body {i + 1} answered HTTP {status}: {data[:200]!r}")
                    return
                counts[result] = counts.get(result, 0) + 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(FILL_CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        fail(f"fill: {errors[0]}")
    print(f"cache: filled with {len(bodies)} bodies ({FILL_CONNECTIONS} connections) in "
          f"{time.monotonic() - t0:.1f} s; Dabba-Cache {counts}")


SERIES = re.compile(r'^(dabba_cache_(?:hits|misses)_total)\{([^}]*)\}\s+(\S+)\s*$')


def scrape(path, model):
    vals = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = SERIES.match(line)
            if not m:
                continue
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
            if labels.get("model") != model:
                continue
            kind = "hits" if "hits" in m.group(1) else "misses"
            vals[(labels.get("tier"), kind)] = float(m.group(3))
    return vals


def hits(before, after, model):
    a, b = scrape(before, model), scrape(after, model)
    d = {k: b.get(k, 0.0) - a.get(k, 0.0) for k in set(a) | set(b)}
    l1h, l1m = d.get(("l1", "hits"), 0), d.get(("l1", "misses"), 0)
    l2h, l2m = d.get(("l2", "hits"), 0), d.get(("l2", "misses"), 0)
    lookups = l1h + l1m if l1h + l1m > 0 else l2h + l2m
    ratio = (l1h + l2h) / lookups if lookups > 0 else math.nan
    print(f"{ratio:.6f} {lookups:.0f} {l1h:.0f} {l1m:.0f} {l2h:.0f} {l2m:.0f}")


def percentile(vals, q):
    if not vals:
        return math.nan
    vals = sorted(vals)
    k = (len(vals) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


def logsplit(log, model):
    path = f"/v2/models/{model}/infer"
    by = {r: [] for r in ("miss", "hit-l1", "hit-l2", "shared")}
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("{"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") != "request" or e.get("status") != 200:
                continue
            if not str(e.get("path", "")).startswith(path):
                continue
            r = e.get("cache")
            if r in by and isinstance(e.get("latency_ms"), (int, float)):
                by[r].append(float(e["latency_ms"]))
    kinds = ("miss", "hit-l1", "hit-l2", "shared")
    print(" ".join(f"{len(by[r])} {percentile(by[r], 0.5):.4f}" for r in kinds))


def body(bodies_path, line, out):
    bodies = read_lines(bodies_path)
    with open(out, "w", encoding="ascii") as f:
        f.write(bodies[int(line) - 1])


def main():
    cmds = {"check": (check, 5), "fill": (fill, 2), "hits": (hits, 3), "logsplit": (logsplit, 2),
            "body": (body, 3)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) != 2 + cmds[sys.argv[1]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[sys.argv[1]][0](*sys.argv[2:])


if __name__ == "__main__":
    main()
