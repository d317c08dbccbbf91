#!/usr/bin/env python3
"""Markdown report of the HTTP benchmark (bench/http/run.sh): medians, ratios, targets.

    report.py TSV META > bench/results/http.md

TSV: one row per wrk run (round, section, server, rps, p50_ms, p99_ms, non2xx, socket_errors,
requests, server_cpu_pct), "nan" where the run failed. META: key<TAB>value lines from run.sh.
Each table cell is the median over rounds; non-2xx and socket errors are totals over rounds.
Targets (issue 4): dabba >= 10x FastAPI's requests/s, >= 2x Node+onnxruntime's, >= 40 % of
nginx's, and a lower p99 than both model-serving peers; each printed PASS or MISS (n/a when a
server was not measured). Exit 1 if the TSV has no usable row.
"""
import csv
import math
import statistics
import sys
from importlib.metadata import version


def pkg(name):
    try:
        return version(name)
    except Exception:  # noqa: BLE001 - any lookup failure just means unknown
        return "?"


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def main():
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    meta = {}
    for line in open(sys.argv[2]):
        k, _, v = line.rstrip("\n").partition("\t")
        meta[k] = v
    if not rows:
        print("no benchmark rows", file=sys.stderr)
        sys.exit(1)

    def runs(section, server):
        return [r for r in rows if r["section"] == section and r["server"] == server]

    def med(section, server, key):
        vals = [num(r[key]) for r in runs(section, server)]
        vals = [v for v in vals if not math.isnan(v)]
        return statistics.median(vals) if vals else math.nan

    def cpu_us(section, server):
        vals = []
        for r in runs(section, server):
            c, q = num(r["server_cpu_pct"]), num(r["rps"])
            if not math.isnan(c) and not math.isnan(q) and q > 0:
                vals.append(c / 100 * 1e6 / q)
        return statistics.median(vals) if vals else math.nan

    def total(section, server, key):
        vals = [num(r[key]) for r in runs(section, server)]
        if not vals or any(math.isnan(v) for v in vals):
            return math.nan
        return sum(vals)

    def ok_rounds(section, server):
        return sum(1 for r in runs(section, server) if not math.isnan(num(r["rps"])))

    def f(v, nd=0):
        return "n/a" if math.isnan(v) else f"{v:,.{nd}f}"

    cores = meta.get("cores", "?")
    print("# dabba serve vs peers: HTTP benchmark (KServe v2 infer)")
    print()
    print(f"Command: `{meta.get('command', 'bench/http/run.sh')}` (bench/http/run.sh; `make bench` runs it)")
    print()
    print(f"- started {meta.get('started')}; load average before {meta.get('load_before')}, "
          f"after {meta.get('load_after')}")
    print(f"- machine: {meta.get('cpu')}, {cores} cores; dabba {meta.get('commit')}")
    print(f"- load: {meta.get('wrk')} -t{meta.get('wrk_threads')} -c{meta.get('connections')} "
          f"(keep-alive), {meta.get('warmup')} s warm-up then {meta.get('duration')} s recorded, "
          f"--latency; {meta.get('rounds')} rounds, server order rotated each round, each server "
          f"started fresh per round, with no other benchmark server running; the machine is "
          f"shared, so other processes' load (the load averages above) adds noise")
    print(f"- **wrk runs on the same {cores} cores as the server** and takes a large share of "
          f"them (see the server CPU column: the rest went to wrk and the kernel's loopback "
          f"path); that is the same for every server, but it caps all of them, nginx most")
    print(f"- request: bench/http/infer.lua, one held-out digit (row 0 of "
          f"examples/data/digits_test_pixels.npy, label 1) as v2 JSON to "
          f"/v2/models/digits_mlp/infer; every server's answer was checked first (200, "
          f"predicts 1, probabilities within 1e-4 of a numpy run of the ONNX graph); "
          f"digits_mlp version {meta.get('version')}")
    print()
    print("Servers:")
    print(f"- dabba: `bin/dabba serve --repository examples/repository --log-level warn`, "
          f"otherwise defaults; answer {meta.get('response_bytes_dabba', '?')} bytes")
    print(f"- nginx {meta.get('nginx')}: worker_processes {cores}, access_log off, "
          f"`return 200` of dabba's answer byte for byte ({meta.get('response_bytes_nginx', '?')} "
          f"bytes): the HTTP ceiling, no JSON and no model")
    print(f"- fastapi: FastAPI {pkg('fastapi')} + uvicorn {pkg('uvicorn')} (uvloop {pkg('uvloop')}, "
          f"httptools {pkg('httptools')}), `--workers {cores}`, pydantic {pkg('pydantic')} request "
          f"models, async handler, PyTorch {pkg('torch')} (1 thread per worker) module built from "
          f"the ONNX initializers; answer {meta.get('response_bytes_fastapi', '?')} bytes")
    print(f"- node: Node.js {meta.get('node')} node:http + onnxruntime-node {meta.get('ort')} "
          f"(CPU, 1 intra-op thread), node:cluster with {cores} workers, because a single Node "
          f"process runs all JSON work on one core; answer {meta.get('response_bytes_node', '?')} bytes")
    print()
    servers = meta.get("servers", "dabba nginx fastapi node").split()
    d_rps = med("digit", "dabba", "rps")
    print("| server | requests/s | p50 ms | p99 ms | non-2xx | socket errors | server CPU % "
          f"(of {int(cores) * 100 if cores.isdigit() else '?'}) | server CPU µs/request "
          "| dabba req/s ÷ this | rounds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in servers:
        rps = med("digit", s, "rps")
        ratio = "1.00" if s == "dabba" else ("n/a" if math.isnan(rps) or math.isnan(d_rps) or rps == 0
                                             else f"{d_rps / rps:.2f}")
        print(f"| {s} | {f(rps)} | {f(med('digit', s, 'p50_ms'), 2)} | {f(med('digit', s, 'p99_ms'), 2)} "
              f"| {f(total('digit', s, 'non2xx'))} | {f(total('digit', s, 'socket_errors'))} "
              f"| {f(med('digit', s, 'server_cpu_pct'))} | {f(cpu_us('digit', s))} | {ratio} "
              f"| {ok_rounds('digit', s)} |")
    print()
    print("non-2xx: wrk's \"Non-2xx or 3xx responses\" counter (it counts status >= 400), summed over "
          "rounds; socket errors: connect/read/write/timeout (30 s timeout), summed. Server CPU: "
          "user+system time of the server's processes during the recorded run (from /proc), and "
          "per request; it is less sensitive to other load on the machine than requests/s, and "
          "shows what wrk leaves: requests/s is bounded by (server + wrk + kernel) CPU per request.")
    print()

    def target(label, value, want):
        if math.isnan(value):
            verdict = "n/a (not measured)"
        else:
            verdict = "PASS" if want(value) else "MISS"
        return f"| {label} | {verdict} |"

    fa, nd, ng = (med("digit", s, "rps") for s in ("fastapi", "node", "nginx"))
    d_p99 = med("digit", "dabba", "p99_ms")
    fa_p99, nd_p99 = med("digit", "fastapi", "p99_ms"), med("digit", "node", "p99_ms")

    def q(a, b):
        return math.nan if math.isnan(a) or math.isnan(b) or b == 0 else a / b

    print("| target (issue 4) | result |")
    print("|---|---|")
    r = q(d_rps, fa)
    print(target(f"dabba >= 10x FastAPI requests/s (measured {f(r, 2)}x)", r, lambda v: v >= 10))
    r = q(d_rps, nd)
    print(target(f"dabba >= 2x Node+onnxruntime requests/s (measured {f(r, 2)}x)", r, lambda v: v >= 2))
    r = q(d_rps, ng)
    print(target(f"dabba >= 40% of nginx requests/s (measured {f(100 * r if not math.isnan(r) else r, 1)}%)",
                 r, lambda v: v >= 0.4))
    r = q(d_p99, fa_p99)
    print(target(f"dabba p99 < FastAPI p99 ({f(d_p99, 2)} vs {f(fa_p99, 2)} ms)", r, lambda v: v < 1))
    r = q(d_p99, nd_p99)
    print(target(f"dabba p99 < Node+onnxruntime p99 ({f(d_p99, 2)} vs {f(nd_p99, 2)} ms)", r, lambda v: v < 1))
    print()
    if not math.isnan(ng) and ng > 0:
        parts = []
        if not math.isnan(fa):
            parts.append(f"10x FastAPI's = {f(10 * fa)} req/s = {100 * 10 * fa / ng:.0f}% of nginx's")
        if not math.isnan(nd):
            parts.append(f"2x Node's = {f(2 * nd)} req/s = {100 * 2 * nd / ng:.0f}% of nginx's")
        if parts:
            print("For scale, with nginx's rate as what this machine's HTTP path and wrk allow at all: "
                  + "; ".join(parts) + ".")
            print()

    img = [s for s in ("dabba_json", "dabba_binary") if runs("image", s)]
    if img:
        print(f"## JSON vs binary request body: image_cnn, one 1x3x224x224 FP32 image, dabba only")
        print()
        print(f"bench/http/image_json.lua ({meta.get('json_body_bytes', '?')}-byte body: v2 JSON `data`, "
              f"shortest round-trip float32 text) vs bench/http/image_binary.lua "
              f"({meta.get('binary_body_bytes', '?')}-byte body: binary tensor extension, "
              f"Inference-Header-Content-Length); output `logits` as JSON in both; "
              f"model: bench/http/make_image_model.py (strided Conv, Relu, GlobalAveragePool, Gemm); "
              f"same wrk settings, {meta.get('image_rounds')} rounds, medians; answers checked "
              f"against a numpy run of the model.")
        print()
        print("| request body | requests/s | p50 ms | p99 ms | non-2xx | socket errors | server CPU % "
              "| server CPU µs/request | req/s ÷ JSON's |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        j = med("image", "dabba_json", "rps")
        for s in img:
            rps = med("image", s, "rps")
            print(f"| {s.split('_')[1]} | {f(rps)} | {f(med('image', s, 'p50_ms'), 2)} "
                  f"| {f(med('image', s, 'p99_ms'), 2)} | {f(total('image', s, 'non2xx'))} "
                  f"| {f(total('image', s, 'socket_errors'))} | {f(med('image', s, 'server_cpu_pct'))} "
                  f"| {f(cpu_us('image', s))} | {f(q(rps, j), 2)} |")
        print()

    print("<details><summary>every run</summary>")
    print()
    print("| round | section | server | requests/s | p50 ms | p99 ms | non-2xx | socket errors | server CPU % |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['round']} | {r['section']} | {r['server']} | {f(num(r['rps']))} | {f(num(r['p50_ms']), 2)} "
              f"| {f(num(r['p99_ms']), 2)} | {f(num(r['non2xx']))} | {f(num(r['socket_errors']))} "
              f"| {f(num(r['server_cpu_pct']))} |")
    print()
    print("</details>")


if __name__ == "__main__":
    main()
