#!/usr/bin/python3
"""Markdown report of the response-cache benchmark (bench/cache/run.sh): medians and targets.

    report.py TSV META > bench/results/cache.md

TSV: one row per wrk run (round, model, mode, rps, p50_ms, p99_ms, non2xx, socket_errors,
requests, server_cpu_pct, hit_ratio, lookups), "nan" where not measured; rounds 1..N are the
-c CONNECTIONS runs (modes, nginx, and health with model "-"), round "c1" the one-connection
passes. META: key<TAB>value lines from run.sh, among them log.<model>.<mode> (the access log
split: "miss_n miss_p50 hit_l1_n hit_l1_p50 hit_l2_n hit_l2_p50 shared_n shared_p50") and
c1.<model>.allhit / c1.<model>.nocache ("rps p50 p99 non2xx sock reqs cpu hit_ratio lookups").

Each cell of the main table is the median over rounds. Targets, per model:
  - a hit is >= 5x faster than a miss at p50: server-side (access log p50 of miss / hit-l1 on
    the cold L1 server) and client-side (wrk -c1 p50 with the cache off / on an all-hit
    workload), each PASS or MISS;
  - L1 requests/s >= 80 % of the HTTP ceiling measured in the same run: nginx's requests/s on
    the same load (the target), and dabba's own GET /v2/health/live (a second reference).
Exit 1 if the TSV has no usable row.
"""
import csv
import math
import statistics
import sys

HIT_TARGET = 5.0
CEIL_TARGET = 0.80


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


def q(a, b):
    return math.nan if math.isnan(a) or math.isnan(b) or b == 0 else a / b


def verdict(value, ok):
    return "n/a (not measured)" if math.isnan(value) else ("PASS" if ok(value) else "MISS")


def main():
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    meta = {}
    for line in open(sys.argv[2]):
        k, _, v = line.rstrip("\n").partition("\t")
        meta[k] = v
    if not any(not math.isnan(num(r["rps"])) for r in rows):
        print("cache report: no usable benchmark row", file=sys.stderr)
        sys.exit(1)
    models = meta.get("models", "").split()
    modes = meta.get("modes", "").split()
    conns = meta.get("connections", "64")
    main_rows = [r for r in rows if r["round"] != "c1"]

    def runs(model, mode):
        return [r for r in main_rows if r["model"] == model and r["mode"] == mode]

    def med(model, mode, key):
        return median([num(r[key]) for r in runs(model, mode)])

    def rounds(model, mode):
        return sum(1 for r in runs(model, mode) if not math.isnan(num(r["rps"])))

    print("# Response cache: Zipf workload over distinct requests, no cache / L1 / L1 + Redis")
    print()
    print(f"- started: {meta.get('started')}; load average before: {meta.get('load_before')}, "
          f"after: {meta.get('load_after')}")
    print(f"- machine: {meta.get('cpu')}, {meta.get('cores')} cores; wrk on the same cores")
    print(f"- {meta.get('dabba')} serve --log-level warn, one model per server, a fresh server "
          f"(cold cache) per mode; response_cache {{enable, ttl_seconds 3600}}; L1 = the default "
          f"128 MiB, SIEVE; L2 = redis-server {meta.get('redis', 'n/a')} on loopback (--save \"\" "
          f"--appendonly no, FLUSHALL before each mode); {meta.get('wrk')}, {meta.get('nginx')}")
    for m in models:
        print(f"- {m}: {meta.get('bodies.' + m, '?')}; answer "
              f"{meta.get('response_bytes.' + m, '?')} bytes")
    print(f"- load: bench/cache/zipf.lua, Zipf(s = {meta.get('zipf_s')}) over the "
          f"{meta.get('count')} bodies of a model (body r with probability ~ 1/r^s), wrk "
          f"-c{conns} -t{meta.get('wrk_threads')} keep-alive --latency, {meta.get('warmup')} s "
          f"unrecorded (which also fills the cache), then {meta.get('duration')} s recorded; "
          f"{meta.get('rounds')} rounds, the order of the modes and nginx rotating; medians")
    print("- hit ratio: cache lookups answered by L1 or L2 / lookups, from the difference of "
          "dabba_cache_{hits,misses}_total around the recorded window")
    print(f"- ceilings, same -c{conns} in the same rounds: nginx answering the model's path with "
          f"dabba's answer to the hottest body (`return 200`, same bytes), and dabba's own GET "
          f"/v2/health/live; {meta.get('ceil_warmup')} s unrecorded, {meta.get('ceil_duration')} s "
          f"recorded")
    print("- every mode's answers to bodies 1, 2, 3, 10, 100, 1000, 5000 and 10000 (each asked "
          "twice: a miss, then a hit) equal the no-cache server's, before and after its load "
          "(bench/cache/cache.py check)")
    print()
    print("| model | server | requests/s | p50 ms | p99 ms | hit ratio | non-2xx | socket errors "
          "| server CPU % (of {}) | rounds |".format(100 * int(meta.get("cores", "1"))))
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    label = {"none": "dabba, no cache", "l1": "dabba, L1", "l1+l2": "dabba, L1 + Redis",
             "l1-warm": "dabba, L1, steady state (after one pass over every body)",
             "l2": "dabba, Redis only (--cache-size 0)", "nginx": "nginx, fixed answer (ceiling)"}
    for m in models:
        for mode in modes + ["nginx"]:
            hr = med(m, mode, "hit_ratio")
            if mode in ("none", "nginx"):
                hrs = "-"
            else:
                hrs = "n/a" if math.isnan(hr) else f"{100 * hr:.2f} %"
            print(f"| {m} | {label.get(mode, mode)} | {f(med(m, mode, 'rps'))} | "
                  f"{f(med(m, mode, 'p50_ms'), 2)} | {f(med(m, mode, 'p99_ms'), 2)} | {hrs} | "
                  f"{f(med(m, mode, 'non2xx'))} | {f(med(m, mode, 'socket_errors'))} | "
                  f"{f(med(m, mode, 'server_cpu_pct'))} | {rounds(m, mode)} |")
    print(f"| - | dabba GET /v2/health/live | {f(med('-', 'health', 'rps'))} | "
          f"{f(med('-', 'health', 'p50_ms'), 2)} | {f(med('-', 'health', 'p99_ms'), 2)} | - | "
          f"{f(med('-', 'health', 'non2xx'))} | {f(med('-', 'health', 'socket_errors'))} | "
          f"{f(med('-', 'health', 'server_cpu_pct'))} | {rounds('-', 'health')} |")
    print()

    # hit vs miss
    def split(m, lm):
        v = [num(x) for x in meta.get(f"log.{m}.{lm}", "").split()]
        v += [math.nan] * (8 - len(v))
        return {"miss": (v[0], v[1]), "hit-l1": (v[2], v[3]), "hit-l2": (v[4], v[5]),
                "shared": (v[6], v[7])}

    def c1(m, key):
        v = [num(x) for x in meta.get(f"c1.{m}.{key}", "").split()]
        v += [math.nan] * (9 - len(v))
        return {"rps": v[0], "p50": v[1], "p99": v[2], "hit_ratio": v[7], "lookups": v[8]}

    has_l2 = "l2" in modes
    print(f"Hit vs miss at one connection (wrk -c1 -t1, {meta.get('c1_duration')} s). Server-side: "
          "`latency_ms` of the JSON access log (`--log-level info`, a pass of its own so that "
          "the throughput runs carry no per-request log line) of a cold L1 server under the "
          "same Zipf load, "
          "split by its `cache` field. Client-side: wrk's p50 on an all-hit workload (an L1 "
          "server after one pass over every body) vs the same load with the cache off.")
    print()
    hdr = "| model | server: miss p50 ms (n) | hit-l1 p50 ms (n) | miss ÷ hit-l1 |"
    sep = "|---|---:|---:|---:|"
    if has_l2:
        hdr += " L2-only server: miss p50 ms (n) | hit-l2 p50 ms (n) | miss ÷ hit-l2 |"
        sep += "---:|---:|---:|"
    hdr += " client: no cache p50 ms | all hits p50 ms | ratio | all-hit run's hit ratio |"
    sep += "---:|---:|---:|---:|"
    print(hdr)
    print(sep)
    ratios = {}
    for m in models:
        s1 = split(m, "l1")
        srv = q(s1["miss"][1], s1["hit-l1"][1])
        nc, ah = c1(m, "nocache"), c1(m, "allhit")
        cli = q(nc["p50"], ah["p50"])
        ratios[m] = (srv, cli, s1, nc, ah)
        line = (f"| {m} | {f(s1['miss'][1], 3)} ({f(s1['miss'][0])}) | {f(s1['hit-l1'][1], 3)} "
                f"({f(s1['hit-l1'][0])}) | {f(srv, 2)}× |")
        if has_l2:
            s2 = split(m, "l2")
            line += (f" {f(s2['miss'][1], 3)} ({f(s2['miss'][0])}) | {f(s2['hit-l2'][1], 3)} "
                     f"({f(s2['hit-l2'][0])}) | {f(q(s2['miss'][1], s2['hit-l2'][1]), 2)}× |")
        ahr = "n/a" if math.isnan(ah["hit_ratio"]) else f"{100 * ah['hit_ratio']:.2f} %"
        line += f" {f(nc['p50'], 3)} | {f(ah['p50'], 3)} | {f(cli, 2)}× | {ahr} |"
        print(line)
    print()

    print("| target | result |")
    print("|---|---|")
    health = med("-", "health", "rps")
    for m in models:
        srv, cli, s1, nc, ah = ratios[m]
        print(f"| {m}: hit ≥ {HIT_TARGET:.0f}× faster than a miss at p50, server-side "
              f"({f(s1['miss'][1], 3)} ÷ {f(s1['hit-l1'][1], 3)} ms = {f(srv, 2)}×) | "
              f"{verdict(srv, lambda v: v >= HIT_TARGET)} |")
        print(f"| {m}: hit ≥ {HIT_TARGET:.0f}× faster than a miss at p50, client-side wrk -c1 "
              f"({f(nc['p50'], 3)} ÷ {f(ah['p50'], 3)} ms = {f(cli, 2)}×) | "
              f"{verdict(cli, lambda v: v >= HIT_TARGET)} |")
        for mode, what in (("l1", "cold L1"), ("l1-warm", "steady-state L1")):
            if mode not in modes:
                continue
            l1, ng = med(m, mode, "rps"), med(m, "nginx", "rps")
            share = q(l1, ng)
            print(f"| {m}: {what} requests/s ≥ {100 * CEIL_TARGET:.0f} % of the HTTP ceiling, "
                  f"nginx ({f(l1)} vs {f(ng)}: {f(100 * share, 1)} %) | "
                  f"{verdict(share, lambda v: v >= CEIL_TARGET)} |")
            share_h = q(l1, health)
            print(f"| {m}: {what} requests/s ≥ {100 * CEIL_TARGET:.0f} % of dabba's GET "
                  f"/v2/health/live ({f(l1)} vs {f(health)}: {f(100 * share_h, 1)} %) | "
                  f"{verdict(share_h, lambda v: v >= CEIL_TARGET)} |")
    print()
    print(f"Command: `{meta.get('command', 'bench/cache/run.sh')}`; raw wrk output and checks in "
          "bench/results/cache.log, per-run numbers in bench/results/cache.tsv.")


if __name__ == "__main__":
    main()
