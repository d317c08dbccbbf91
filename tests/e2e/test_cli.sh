#!/usr/bin/env bash
# Drives the dabba binary's commands on the small test models: inspect, run (with
# .pb and .npy inputs, printing and --output-dir), perf's result line, and the
# errors a user gets for bad input.
set -u
cd "$(dirname "$0")/../.."
D=${BINDIR:-bin}/dabba
M=tests/data/models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
check() { # description, command...
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $what"
    fi
}
contains() { # file, pattern
    grep -qE -- "$2" "$1"
}

"$D" inspect $M/mlp.onnx >"$tmp/inspect" 2>&1
check "inspect exits 0 for a supported model" test $? = 0
check "inspect shows the symbolic batch" contains "$tmp/inspect" "x: float \[batch, 4\]"
check "inspect counts parameters" contains "$tmp/inspect" "parameters: 67"
check "inspect reports support" contains "$tmp/inspect" "supported: yes"
"$D" inspect $M/unknown_op.onnx >"$tmp/inspect2" 2>&1
check "inspect exits 1 for unsupported ops" test $? = 1
check "inspect names the unsupported op" contains "$tmp/inspect2" "FrobnicateTensor"

"$D" run $M/mlp.onnx --input x=$M/mlp_x.pb >"$tmp/run" 2>&1
check "run with a .pb input" test $? = 0
check "run prints the output" contains "$tmp/run" "^y: float \[2,3\]"
"$D" run $M/mlp.onnx --input x=$M/mlp_x.pb --output-dir "$tmp/out" >/dev/null 2>&1
check "run writes .npy outputs" test -s "$tmp/out/y.npy"
"$D" run $M/mlp.onnx --input x="$tmp/out/y.npy" >"$tmp/err1" 2>&1
check "run refuses a wrong shape" test $? != 0
check "the shape error names the input and axis" contains "$tmp/err1" "'x'.*axis 1"
"$D" run $M/mlp.onnx --input nope=$M/mlp_x.pb >"$tmp/err2" 2>&1
check "run refuses an unknown input name" contains "$tmp/err2" "no input named 'nope'"
"$D" run $M/mlp.onnx >"$tmp/err3" 2>&1
check "run names a missing input" contains "$tmp/err3" "input 'x' is not given"
"$D" run $M/cycle.onnx --input x=$M/mlp_x.pb >"$tmp/err4" 2>&1
check "run refuses a cyclic model" contains "$tmp/err4" "cycle"
"$D" run $M/mlp.onnx --input x=/nonexistent.npy >"$tmp/err5" 2>&1
check "run names an unreadable file" contains "$tmp/err5" "nonexistent"

"$D" perf $M/mlp.onnx --batch 4 --threads 1 --iterations 50 --warmup 5 >"$tmp/perf" 2>&1
check "perf exits 0" test $? = 0
check "perf prints its result line" contains "$tmp/perf" \
    "^perf: batch 4, threads 1, median_us [0-9.]+, p99_us [0-9.]+, throughput_per_s [0-9.]+$"
check "perf runs without heap allocation" contains "$tmp/perf" "heap allocations per run 0.00"
"$D" perf $M/mlp.onnx --batch 0 >/dev/null 2>&1
check "perf refuses batch 0" test $? = 2

"$D" serve --repository examples/repository --http-port 70000 >"$tmp/err6" 2>&1
check "serve refuses a port out of range" test $? = 1
check "the port error names the flag" contains "$tmp/err6" "http-port 70000"
"$D" serve --http-port abc >"$tmp/err7" 2>&1
check "serve refuses a non-numeric flag value" test $? = 2

echo "test_cli: $passed passed, $failed failed"
[ "$failed" = 0 ]
