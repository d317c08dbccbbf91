#!/usr/bin/env python3
"""Markdown report of the dynamic-batching benchmark (bench/batch/run.sh): medians and targets.

    report.py TSV META > bench/results/batch.md

TSV: one row per wrk run (round, model, server, clients, rps, p50_ms, p99_ms, non2xx,
socket_errors, requests, server_cpu_pct, mean_batch, max_batch, max_batch_count,
max_batch_ns), "nan" where not measured. META: key<TAB>value lines from run.sh, among them
perf_us.<model>.<round> (median µs of `dabba perf --batch <max_batch>`).

Each table cell is the median over rounds. Targets, per model, at the largest client count:
  - dabba-batched requests/s >= 3x dabba-unbatched's;
  - dabba-batched p99 <= delay + 2 x the compute time of the largest batch: the largest
    batch_size that /stats reported during the recorded dabba-batched runs at that client
    count, with its mean compute_infer time (over all those rounds); when /stats reported no
    batches, the median of the dabba perf runs at the largest batch instead.
Each is PASS or MISS (n/a when not measured). Exit 1 if the TSV has no usable row.
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


def median(vals):
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def f(v, nd=0):
    return "n/a" if math.isnan(v) else f"{v:,.{nd}f}"


def main():
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    meta = {}
    for line in open(sys.argv[2]):
        k, _, v = line.rstrip("\n").partition("\t")
        meta[k] = v
    if not any(not math.isnan(num(r["rps"])) for r in rows):
        print("batch report: no usable benchmark row", file=sys.stderr)
        sys.exit(1)

    models = meta.get("models", "").split()
    servers = meta.get("servers", "").split()
    clients = list(dict.fromkeys(meta.get("clients", "").split()))
    top = max(clients, key=int) if clients else "64"
    delay_us = num(meta.get("delay_us"))
    max_batch = meta.get("max_batch", "64")
    cores = meta.get("cores", "?")

    def runs(model, server, c):
        return [r for r in rows if r["model"] == model and r["server"] == server and r["clients"] == c]

    def med(model, server, c, key):
        return median([num(r[key]) for r in runs(model, server, c)])

    def q(a, b):
        return math.nan if math.isnan(a) or math.isnan(b) or b == 0 else a / b

    def verdict(value, ok):
        return "n/a (not measured)" if math.isnan(value) else ("PASS" if ok(value) else "MISS")

    pref = meta.get("preferred", "").split()
    dyn = f'"max_queue_delay_microseconds": {meta.get("delay_us")}'
    if pref:
        dyn += f', "preferred_batch_size": [{", ".join(pref)}]'

    print("# dabba dynamic batching: HTTP benchmark (KServe v2 infer, one sample per request)")
    print()
    print(f"Command: `{meta.get('command', 'bench/batch/run.sh')}` (bench/batch/run.sh; `make bench` runs it)")
    print()
    print(f"- started {meta.get('started')}; load average before {meta.get('load_before')}, "
          f"after {meta.get('load_after')}; the machine is shared, so other processes' load adds noise")
    print(f"- machine: {meta.get('cpu')}, {cores} cores")
    print(f"- load: {meta.get('wrk')} -c CLIENTS -t min(CLIENTS,2) (keep-alive, --latency, 30 s "
          f"timeout), bench/batch/infer.lua; per point {meta.get('warmup')} s warm-up then "
          f"{meta.get('duration')} s recorded; {meta.get('rounds')} rounds, server order rotated "
          f"each round, one server up at a time; cells are medians over rounds; wrk shares the "
          f"server's {cores} cores")
    for m in models:
        print(f"- {m} request: {meta.get('body.' + m, '?')}; every server's answer was checked "
              f"before and after its runs (same argmax, probabilities within 1e-4 of a float64 "
              f"numpy run of the ONNX graph)")
    print()
    print("Servers (each serves one model):")
    print(f'- dabba-unbatched: `{meta.get("dabba", "bin/dabba")} serve --log-level warn`, config.json '
          f'`{{"max_batch_size": {max_batch}}}`: one request, one model run')
    print(f'- dabba-batched: the same with `"dynamic_batching": {{{dyn}}}`')
    print(f"- node: Node.js {meta.get('node')} node:http + onnxruntime-node {meta.get('ort')} "
          f"(CPU, 1 intra-op thread), node:cluster with {cores} workers, one session.run() per request")
    print(f"- fastapi: FastAPI {pkg('fastapi')} + uvicorn {pkg('uvicorn')} `--workers {cores}`, "
          f"PyTorch {pkg('torch')} (1 thread per worker) module built from the ONNX initializers, "
          f"one forward per request")
    print()
    print("| model | clients | server | req/s | p50 ms | p99 ms |")
    print("|---|---:|---|---:|---:|---:|")
    for m in models:
        for c in clients:
            for s in servers:
                print(f"| {m} | {c} | {s} | {f(med(m, s, c, 'rps'))} | {f(med(m, s, c, 'p50_ms'), 2)} "
                      f"| {f(med(m, s, c, 'p99_ms'), 2)} |")
    print()

    print(f"| target at {top} clients | result |")
    print("|---|---|")
    notes = []
    for m in models:
        b, u = med(m, "dabba-batched", top, "rps"), med(m, "dabba-unbatched", top, "rps")
        r = q(b, u)
        print(f"| {m}: dabba-batched >= 3x dabba-unbatched req/s (measured {f(r, 2)}x: "
              f"{f(b)} vs {f(u)}) | {verdict(r, lambda v: v >= 3)} |")
        # the largest batch /stats saw in the recorded batched runs at this client count
        rs = [r for r in runs(m, "dabba-batched", top) if not math.isnan(num(r["max_batch"]))]
        perf_us = median([num(v) for k, v in meta.items() if k.startswith(f"perf_us.{m}.")])
        perf_txt = f"dabba perf --batch {max_batch} median {f(perf_us / 1e3, 3)} ms"
        if rs:
            largest = max(int(num(r["max_batch"])) for r in rs)
            sel = [r for r in rs if int(num(r["max_batch"])) == largest]
            count = sum(num(r["max_batch_count"]) for r in sel)
            compute_ms = sum(num(r["max_batch_ns"]) for r in sel) / count / 1e6 if count > 0 else math.nan
            source = (f"largest batch {largest} from /stats, mean compute {f(compute_ms, 3)} ms over "
                      f"{f(count)} executions; cross-check: {perf_txt}")
        else:
            compute_ms = perf_us / 1e3
            source = (f"/stats reported no batches (empty batch_stats), so the largest possible batch: "
                      f"{perf_txt}")
        bound = delay_us / 1e3 + 2 * compute_ms
        p99 = med(m, "dabba-batched", top, "p99_ms")
        print(f"| {m}: dabba-batched p99 <= max_queue_delay + 2 x largest batch's compute "
              f"({f(p99, 2)} ms vs {f(bound, 2)} ms = {f(delay_us / 1e3, 3)} + 2 x {f(compute_ms, 3)}) "
              f"| {verdict(q(p99, bound), lambda v: v <= 1)} |")
        mean_b = med(m, "dabba-batched", top, "mean_batch")
        notes.append(f"- {m}: {source}; dabba-batched ran {f(mean_b, 2)} requests per model run "
                     f"(median over rounds, from /stats inference_count / execution_count)")
    print()
    print("Compute time of the largest batch (the p99 bound):")
    print()
    print("\n".join(notes))
    print()

    errs = [r for r in rows if num(r["non2xx"]) > 0 or num(r["socket_errors"]) > 0]
    failed = [r for r in rows if math.isnan(num(r["rps"]))]
    if errs or failed:
        print("Problems: " + "; ".join(
            [f"round {r['round']} {r['model']} {r['server']} c={r['clients']}: non-2xx {r['non2xx']}, "
             f"socket errors {r['socket_errors']}" for r in errs] +
            [f"round {r['round']} {r['model']} {r['server']} c={r['clients']}: not measured" for r in failed]))
    else:
        print("No non-2xx answers, socket errors or failed runs.")
    print()

    print("<details><summary>every run</summary>")
    print()
    print("| round | model | server | clients | req/s | p50 ms | p99 ms | non-2xx | socket errors "
          "| server CPU % | requests per model run | largest batch | its mean compute ms |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cnt = num(r["max_batch_count"])
        comp = num(r["max_batch_ns"]) / cnt / 1e6 if cnt > 0 else math.nan
        print(f"| {r['round']} | {r['model']} | {r['server']} | {r['clients']} | {f(num(r['rps']))} "
              f"| {f(num(r['p50_ms']), 2)} | {f(num(r['p99_ms']), 2)} | {f(num(r['non2xx']))} "
              f"| {f(num(r['socket_errors']))} | {f(num(r['server_cpu_pct']))} "
              f"| {f(num(r['mean_batch']), 2)} | {f(num(r['max_batch']))} | {f(comp, 3)} |")
    print()
    print("</details>")


if __name__ == "__main__":
    main()
