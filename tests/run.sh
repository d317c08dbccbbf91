#!/usr/bin/env bash
# Runs every test suite and sums their "N passed, N failed" lines into one.
#   unit tests      $BINDIR/tests/test_*
#   conformance     dabba conformance on the ONNX backend node tests: ../shared's onnx 1.23
#                   suite when present, otherwise Debian's libonnx-testdata (onnx 1.12)
#   end-to-end      tests/e2e/test_*.sh
set -u
cd "$(dirname "$0")/.."
BINDIR=${BINDIR:-bin}
export BINDIR
passed=0
failed=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

add_counts() { # suite-name, output-file, exit-status
    local line p f
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
    if [ -z "$line" ]; then
        echo "$1: no result line (exit status $3)"
        failed=$((failed + 1))
        return
    fi
    p=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
    f=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" = 0 ] && [ "$3" != 0 ]; then
        echo "$1: exit status $3 with no failed test"
        failed=$((failed + 1))
    fi
}

for t in "$BINDIR"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    "$t" >"$log/$name.out" 2>&1
    rc=$?
    grep -E '^FAIL|passed, [0-9]+ failed' "$log/$name.out"
    add_counts "$name" "$log/$name.out" $rc
done

known_bad=()
if [ -d ../shared/onnx-conformance/node ]; then
    conf_dir=../shared/onnx-conformance/node
    min_pass=${DABBA_MIN_CONFORMANCE:-1610}
else
    conf_dir=/usr/share/libonnx-testdata/data/node
    min_pass=${DABBA_MIN_CONFORMANCE:-845}
    known_bad=(--known-bad tests/conformance-onnx112-known-bad.txt)
fi
"$BINDIR"/dabba conformance "$conf_dir" "${known_bad[@]}" >"$log/conformance.out" 2>&1
rc=$?
grep -E '^FAIL' "$log/conformance.out"
summary=$(grep -E '^conformance:' "$log/conformance.out" | tail -n 1)
echo "$summary ($conf_dir)"
if [ -z "$summary" ]; then
    echo "conformance: the runner printed no summary (exit status $rc)"
    failed=$((failed + 1))
else
    p=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
    f=$(echo "$summary" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$p" -lt "$min_pass" ]; then
        echo "conformance: $p passed, fewer than the required $min_pass"
        failed=$((failed + 1))
    fi
fi

for t in tests/e2e/test_*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .sh)
    bash "$t" >"$log/$name.out" 2>&1
    rc=$?
    grep -E '^FAIL|passed, [0-9]+ failed' "$log/$name.out"
    add_counts "$name" "$log/$name.out" $rc
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
