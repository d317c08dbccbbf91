#!/usr/bin/env bash
# `make bench`: dabba vs onnxruntime-node on the same machine, in the same run.
#
# Models: digits_mlp (version 1), digits_cnn (version 1), mlp_wide (784-1024-1024-10, generated
# into bench/models/ by tools/make_bench_models.py). For each model and thread count T:
#   - batch-1 latency: median and p99 over LAT_ITERS timed runs after LAT_WARMUP warmup runs;
#   - batch-32 throughput: samples/s = 32 * 1e6 / mean_us over TP_ITERS runs after TP_WARMUP.
# dabba: `$BINDIR/dabba perf MODEL --batch N --threads T --iterations K --warmup W`.
# onnxruntime: bench/ort_perf.js (intraOpNumThreads = T, interOpNumThreads = 1, optimization
# level 'all'; times each `await session.run()`), plus, for batch-1 latency only, the same
# through the native binding's synchronous run() (--api binding) to show how much of ort's
# small-model latency is the JS wrapper.
# Peers run interleaved: for each point dabba, then ort, so a noisy machine hurts both alike.
# The whole sweep repeats ROUNDS times; per point and engine the table reports the round with
# the lowest median latency (latency) or the highest throughput (throughput), which filters
# out bursts of load from other processes on a shared machine.
# Output: a markdown table on stdout and in bench/results/engine.md; raw tool output in
# bench/results/engine.log. Exit 1 if any run failed (the table shows "n/a" there).
#
# Env: BINDIR (bin), THREADS ("1 2"), LAT_ITERS (2000), LAT_WARMUP (200), TP_ITERS (1000),
#      TP_WARMUP (100), TP_BATCH (32), ROUNDS (3), MODELS ("digits_mlp digits_cnn mlp_wide"),
#      NODE, PYTHON.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
BINDIR="${BINDIR:-bin}"
DABBA="$BINDIR/dabba"
NODE="${NODE:-node}"
PYTHON="${PYTHON:-/usr/bin/python3}"
THREADS="${THREADS:-1 2}"
LAT_ITERS="${LAT_ITERS:-2000}"
LAT_WARMUP="${LAT_WARMUP:-200}"
TP_ITERS="${TP_ITERS:-500}"
TP_WARMUP="${TP_WARMUP:-100}"
TP_BATCH="${TP_BATCH:-32}"
ROUNDS="${ROUNDS:-3}"
MODELS="${MODELS:-digits_mlp digits_cnn mlp_wide}"
RESULTS=bench/results
LOG="$RESULTS/engine.log"
TSV="$RESULTS/engine.tsv"

[ -x "$DABBA" ] || { echo "bench: $DABBA not built (run make)" >&2; exit 1; }
mkdir -p "$RESULTS"
if [ ! -f bench/models/mlp_wide.onnx ]; then
    "$PYTHON" tools/make_bench_models.py || exit 1
fi

model_path() {
    case "$1" in
        digits_mlp) echo examples/repository/digits_mlp/1/model.onnx ;;
        digits_cnn) echo examples/repository/digits_cnn/1/model.onnx ;;
        mlp_wide) echo bench/models/mlp_wide.onnx ;;
        *) echo "bench/models/$1.onnx" ;;
    esac
}

: >"$LOG"
printf 'round\tmodel\tthreads\tpoint\tengine\tmedian_us\tp99_us\tthroughput_per_s\n' >"$TSV"
status=0

# measure MODEL T POINT ENGINE CMD...: runs CMD, logs it, appends the parsed perf line.
measure() {
    local model=$1 threads=$2 point=$3 engine=$4
    shift 4
    local out line
    {
        echo "## round $round: $model threads=$threads $point $engine"
        echo "\$ $*"
    } >>"$LOG"
    out="$("$@" 2>&1)"
    local rc=$?
    printf '%s\n\n' "$out" >>"$LOG"
    line="$(printf '%s\n' "$out" | grep -E '^perf: batch' | tail -n 1)"
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        echo "bench: $engine failed on $model threads=$threads $point (rc $rc): $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')" >&2
        printf '%s\t%s\t%s\t%s\t%s\tnan\tnan\tnan\n' "$round" "$model" "$threads" "$point" "$engine" >>"$TSV"
        status=1
        return
    fi
    # perf: batch N, threads T, median_us X, p99_us Y, throughput_per_s Z
    printf '%s\n' "$line" | sed -E 's/.*median_us ([0-9.eE+-]+|nan|inf), p99_us ([0-9.eE+-]+|nan|inf), throughput_per_s ([0-9.eE+-]+|nan|inf).*/\1 \2 \3/' |
        { read -r med p99 tput; printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$model" "$threads" "$point" "$engine" "$med" "$p99" "$tput"; } >>"$TSV"
    echo "  round $round $model T=$threads $point $engine: $line" >&2
}

started="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
for model in $MODELS; do
    path="$(model_path "$model")"
    if [ ! -f "$path" ]; then echo "bench: $path missing" >&2; status=1; continue; fi
    for t in $THREADS; do
        measure "$model" "$t" lat dabba "$DABBA" perf "$path" --batch 1 --threads "$t" \
            --iterations "$LAT_ITERS" --warmup "$LAT_WARMUP"
        measure "$model" "$t" lat ort "$NODE" bench/ort_perf.js "$path" --batch 1 --threads "$t" \
            --iterations "$LAT_ITERS" --warmup "$LAT_WARMUP"
        measure "$model" "$t" lat ort_binding "$NODE" bench/ort_perf.js "$path" --api binding \
            --batch 1 --threads "$t" --iterations "$LAT_ITERS" --warmup "$LAT_WARMUP"
        measure "$model" "$t" tp dabba "$DABBA" perf "$path" --batch "$TP_BATCH" --threads "$t" \
            --iterations "$TP_ITERS" --warmup "$TP_WARMUP"
        measure "$model" "$t" tp ort "$NODE" bench/ort_perf.js "$path" --batch "$TP_BATCH" \
            --threads "$t" --iterations "$TP_ITERS" --warmup "$TP_WARMUP"
    done
done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo none)"
if [ -n "$(git status --porcelain 2>/dev/null | head -n 1)" ]; then commit="$commit (dirty tree)"; fi
ortver="$("$NODE" -e "console.log(require(require.resolve('onnxruntime-node/package.json',{paths:['tests']})).version)" 2>/dev/null || echo '?')"

"$PYTHON" - "$TSV" >"$RESULTS/engine.md" <<EOF
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def fl(r, key):
    try:
        return float(r[key])
    except (TypeError, ValueError):
        return math.nan
# best round per (model, threads, point, engine): lowest median latency / highest throughput
get = {}
for r in rows:
    k = (r["model"], r["threads"], r["point"], r["engine"])
    score = fl(r, "throughput_per_s") if r["point"] == "tp" else -fl(r, "median_us")
    if math.isnan(score):
        continue
    if k not in get or score > get[k][0]:
        get[k] = (score, r)
def num(model, t, point, engine, key):
    r = get.get((model, t, point, engine))
    return fl(r[1], key) if r else math.nan
def f(v, nd=1):
    return "n/a" if math.isnan(v) else f"{v:,.{nd}f}"
def ratio(a, b):
    return "n/a" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}"
print("# dabba vs onnxruntime-node: engine benchmark")
print()
print("- started: $started; load average before: $load_before, after: $load_after")
print("- machine: $cpu, $(nproc) cores")
print("- dabba: $commit; onnxruntime-node $ortver (CPU EP, graphOptimizationLevel all, "
      "interOpNumThreads 1, intraOpNumThreads = threads); node $("$NODE" --version)")
print("- batch-1 latency: median / p99 over $LAT_ITERS runs after $LAT_WARMUP warmup; "
      "batch-$TP_BATCH throughput: $TP_BATCH * 1e6 / mean_us over $TP_ITERS runs after $TP_WARMUP warmup")
print("- peers interleaved per point (dabba, then ort); the sweep ran $ROUNDS times and each cell is "
      "the engine's best round for that point (lowest median / highest throughput); "
      "inputs generated by each tool")
print("- ratios are dabba / ort: latency < 1 and throughput > 1 mean dabba is faster")
print()
print("| model | threads | dabba median us | ort median us | ratio | dabba p99 us | ort p99 us | ratio "
      "| dabba b$TP_BATCH samples/s | ort b$TP_BATCH samples/s | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
models, threads = "$MODELS".split(), "$THREADS".split()
for m in models:
    for t in threads:
        dm, om = num(m, t, "lat", "dabba", "median_us"), num(m, t, "lat", "ort", "median_us")
        dp, op = num(m, t, "lat", "dabba", "p99_us"), num(m, t, "lat", "ort", "p99_us")
        dt, ot = num(m, t, "tp", "dabba", "throughput_per_s"), num(m, t, "tp", "ort", "throughput_per_s")
        print(f"| {m} | {t} | {f(dm)} | {f(om)} | {ratio(dm, om)} | {f(dp)} | {f(op)} | {ratio(dp, op)} "
              f"| {f(dt, 0)} | {f(ot, 0)} | {ratio(dt, ot)} |")
print()
print("ort's numbers above time \`await session.run()\`, which includes onnxruntime-node's async "
      "wrapper (a setImmediate hop and N-API tensor conversion). For reference, batch-1 latency "
      "through the native binding's synchronous run() (no async hop):")
print()
print("| model | threads | dabba median us | ort binding median us | ratio | dabba p99 us | ort binding p99 us | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for m in models:
    for t in threads:
        dm, om = num(m, t, "lat", "dabba", "median_us"), num(m, t, "lat", "ort_binding", "median_us")
        dp, op = num(m, t, "lat", "dabba", "p99_us"), num(m, t, "lat", "ort_binding", "p99_us")
        print(f"| {m} | {t} | {f(dm)} | {f(om)} | {ratio(dm, om)} | {f(dp)} | {f(op)} | {ratio(dp, op)} |")
EOF
cat "$RESULTS/engine.md"
echo
echo "bench: wrote $RESULTS/engine.md (raw output: $LOG)"
# The HTTP serving benchmark (SKIP_HTTP=1 leaves it out).
if [ -z "${SKIP_HTTP:-}" ]; then
    BINDIR="$BINDIR" NODE="$NODE" PYTHON="$PYTHON" bench/http/run.sh || status=1
fi
if [ -z "${SKIP_BATCH:-}" ]; then BINDIR="$BINDIR" NODE="$NODE" PYTHON="$PYTHON" bench/batch/run.sh || status=1; fi  # dynamic batching (SKIP_BATCH=1 leaves it out)
if [ -z "${SKIP_TEXT:-}" ]; then BINDIR="$BINDIR" NODE="$NODE" bench/text/run.sh || status=1; fi  # text classifier x optimization levels (SKIP_TEXT=1 leaves it out)
if [ -z "${SKIP_CACHE:-}" ]; then BINDIR="$BINDIR" PYTHON="$PYTHON" bench/cache/run.sh || status=1; fi  # response cache + L1 policy study (SKIP_CACHE=1 leaves it out)
exit "$status"
