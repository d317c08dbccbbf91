#!/usr/bin/env bash
# The text classifier (examples/repository/text_classifier, a 2-layer BERT-style encoder) in
# dabba at each optimization level against onnxruntime-node, called by bench/run.sh
# (`make bench`).
#
# Points: batch 1 and 16 x sequence 16 and 128, THREADS thread counts, both model versions
# (1: opset 14, LayerNorm and GELU as subgraphs of primitive operators; 2: opset 17 with
# LayerNormalization). Engines, interleaved per point so that a noisy machine hurts all alike:
#   dabba none|basic|all   `$BINDIR/dabba perf MODEL --batch B --dim sequence=S --threads T
#                          --optimize L` (integer inputs are zeros, as in ort_perf.js)
#   ort                    bench/ort_perf.js, graph optimizations 'all', intraOpNumThreads T
# Each run times ITERS runs after a warm-up (fewer for the large points); the sweep repeats
# ROUNDS times and each cell is the round with the lowest median latency.
# Output: markdown on stdout and in bench/results/text.md; raw output in bench/results/text.log;
# per-run numbers in bench/results/text.tsv. Exit 1 if a run failed.
#
# Env: BINDIR (bin), THREADS ("1 2"), ROUNDS (3), VERSIONS ("1 2"), NODE (node).
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
BINDIR="${BINDIR:-bin}"
DABBA="$BINDIR/dabba"
NODE="${NODE:-node}"
THREADS="${THREADS:-1 2}"
ROUNDS="${ROUNDS:-3}"
VERSIONS="${VERSIONS:-1 2}"
RESULTS=bench/results
LOG="$RESULTS/text.log"
TSV="$RESULTS/text.tsv"
OUT="$RESULTS/text.md"
POINTS="1:16 1:128 16:16 16:128"
ENGINES="none basic all ort"

[ -x "$DABBA" ] || { echo "bench/text: $DABBA not built (run make)" >&2; exit 1; }
mkdir -p "$RESULTS"
: >"$LOG"
printf 'round\tversion\tthreads\tbatch\tsequence\tengine\tmedian_us\tp99_us\n' >"$TSV"
status=0

# iterations BATCH SEQ: timed runs for a point (about a second of work each)
iterations() {
    case "$1:$2" in
        1:16) echo 1000 ;; 1:128) echo 300 ;; 16:16) echo 300 ;; *) echo 60 ;;
    esac
}

# measure VERSION THREADS BATCH SEQ ENGINE: prints "median_us p99_us" (or "nan nan")
measure() {
    local model="examples/repository/text_classifier/$1/model.onnx" t=$2 b=$3 s=$4 e=$5 out
    local it
    it="$(iterations "$b" "$s")"
    if [ "$e" = ort ]; then
        out="$("$NODE" bench/ort_perf.js "$model" --batch "$b" --dim "sequence=$s" --threads "$t" \
            --iterations "$it" --warmup 20 2>&1)"
    else
        out="$("$DABBA" perf "$model" --batch "$b" --dim "sequence=$s" --threads "$t" \
            --iterations "$it" --warmup 20 --optimize "$e" 2>&1)"
    fi
    printf '== v%s t%s b%s s%s %s\n%s\n' "$1" "$t" "$b" "$s" "$e" "$out" >>"$LOG"
    local line
    line="$(printf '%s\n' "$out" | grep '^perf: ' | tail -n 1)"
    if [ -z "$line" ]; then
        echo "nan nan"
        return 1
    fi
    printf '%s\n' "$line" | sed -E 's/.*median_us ([0-9.]+), p99_us ([0-9.]+).*/\1 \2/'
}

for r in $(seq 1 "$ROUNDS"); do
    for v in $VERSIONS; do
        for t in $THREADS; do
            for p in $POINTS; do
                b="${p%%:*}" s="${p##*:}"
                for e in $ENGINES; do
                    if ! res="$(measure "$v" "$t" "$b" "$s" "$e")"; then
                        echo "bench/text: v$v t$t b$b s$s $e failed (see $LOG)" >&2
                        status=1
                    fi
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$v" "$t" "$b" "$s" "$e" \
                        "${res// /$'\t'}" >>"$TSV"
                done
            done
        done
    done
    echo "bench/text: round $r done" >&2
done

/usr/bin/python3 - "$TSV" "$OUT" <<'EOF'
import csv
import math
import sys

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
best = {}
for r in rows:
    k = (r["version"], r["threads"], r["batch"], r["sequence"], r["engine"])
    m = float(r["median_us"])
    if math.isnan(m):
        continue
    if k not in best or m < best[k][0]:
        best[k] = (m, float(r["p99_us"]))
lines = ["| version | threads | batch | sequence | dabba none | dabba basic | dabba all | "
         "onnxruntime | ort ÷ dabba all |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
verdicts = []
keys = sorted({k[:4] for k in best}, key=lambda k: (k[0], int(k[1]), int(k[2]), int(k[3])))
for k in keys:
    cells = []
    for e in ("none", "basic", "all", "ort"):
        v = best.get(k + (e,))
        cells.append(f"{v[0]:,.0f} µs" if v else "n/a")
    a, o = best.get(k + ("all",)), best.get(k + ("ort",))
    ratio = f"{o[0] / a[0]:.2f}×" if a and o else "n/a"
    lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | " + " | ".join(cells) + f" | {ratio} |")
    if a and o:
        verdicts.append(a[0] < o[0])
ok = verdicts and all(verdicts)
lines += ["", f"dabba with all optimizations faster than onnxruntime-node at every point: "
          f"{'PASS' if ok else 'MISS'} ({sum(verdicts)} of {len(verdicts)} points)"]
text = "\n".join(lines)
print(text)
open(sys.argv[2], "w").write("# Text classifier: dabba optimization levels vs onnxruntime-node\n\n"
                             "Median latency per run (best round); command: `bench/text/run.sh`.\n\n"
                             + text + "\n")
EOF
exit "$status"
