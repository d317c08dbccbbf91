#!/usr/bin/env bash
# End-to-end test of the bundled example models (examples/repository) against onnxruntime-node.
#
# For each model and each batch (the whole held-out set, the first sample alone, and an odd
# batch of 33): run the oracle (tests/oracle/ort_run.js) and `$BINDIR/dabba run`, then compare
# with |dabba - ort| <= 1e-6 + 1e-4 * |ort| elementwise. On the whole held-out set also check
# dabba's argmax accuracy against the labels (>= 90%).
# Prints one PASS/FAIL line per check and "test_examples: N passed, N failed"; exit 1 on failure.
#
# Env: BINDIR (default bin), PYTHON (default /usr/bin/python3), NODE (default node).
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
BINDIR="${BINDIR:-bin}"
DABBA="$BINDIR/dabba"
PYTHON="${PYTHON:-/usr/bin/python3}"
NODE="${NODE:-node}"
DATA=examples/data
REPO=examples/repository

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
finish() {
    echo "test_examples: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dabba-examples.XXXXXX")" || exit 1
trap 'rm -rf "$TMP"' EXIT

# Prerequisites: each missing one is one failed check, then stop.
if [ ! -x "$DABBA" ]; then fail "prerequisite: $DABBA not built (run make)"; finish; fi
if [ ! -f tests/node_modules/onnxruntime-node/package.json ]; then
    fail "prerequisite: tests/node_modules/onnxruntime-node missing (cd tests && ONNXRUNTIME_NODE_INSTALL=skip npm install)"
    finish
fi
if [ ! -f "$DATA/digits_test_pixels.npy" ] || [ ! -f "$DATA/digits_test_labels.npy" ]; then
    fail "prerequisite: $DATA/digits_test_*.npy missing (make examples)"
    finish
fi

# Inputs: pixels [B,64] and image [B,1,8,8] for B = all, 1 (first sample), 33.
if ! "$PYTHON" - "$DATA/digits_test_pixels.npy" "$TMP" <<'EOF'
import sys
import numpy as np
x = np.load(sys.argv[1]).astype(np.float32)
out = sys.argv[2]
for tag, sub in (("all", x), ("one", x[:1]), ("b33", x[:33])):
    np.save(f"{out}/pixels_{tag}.npy", np.ascontiguousarray(sub))
    np.save(f"{out}/image_{tag}.npy", np.ascontiguousarray(sub.reshape(-1, 1, 8, 8)))
EOF
then
    fail "prerequisite: could not prepare inputs"
    finish
fi

# compare DABBA.npy ORT.npy: shape, dtype and tolerance; prints a reason on failure.
compare() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
if a.shape != b.shape or a.dtype != b.dtype:
    print(f"dabba {a.dtype}{list(a.shape)} vs ort {b.dtype}{list(b.shape)}")
    sys.exit(1)
a64, b64 = a.astype(np.float64), b.astype(np.float64)
if not np.isfinite(a64).all():
    print("dabba output has NaN/Inf")
    sys.exit(1)
diff = np.abs(a64 - b64)
excess = diff - (1e-6 + 1e-4 * np.abs(b64))
worst = int(np.argmax(excess)) if excess.size else 0
if excess.size and excess.flat[worst] > 0:
    print(f"max |diff| {diff.max():.3g}; worst at flat index {worst}: "
          f"dabba {a64.flat[worst]:.9g} ort {b64.flat[worst]:.9g}")
    sys.exit(1)
print(f"max |diff| {diff.max() if diff.size else 0:.3g}")
EOF
}

# accuracy PROBS.npy LABELS.npy
accuracy() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import sys
import numpy as np
p, y = np.load(sys.argv[1]), np.load(sys.argv[2])
if p.ndim != 2 or p.shape[0] != y.shape[0]:
    print(f"probabilities shape {list(p.shape)} vs {y.shape[0]} labels")
    sys.exit(1)
acc = float((p.argmax(axis=1) == y).mean())
print(f"{acc * 100:.2f}% of {y.shape[0]}")
sys.exit(0 if acc >= 0.90 else 1)
EOF
}

# run_case MODEL ONNX INPUT TAG: one "matches onnxruntime" check, plus the accuracy check for
# TAG=all (counted as failed when dabba produced nothing to measure, so counts stay stable).
run_case() {
    local model=$1 onnx=$2 input=$3 tag=$4
    local name="$model batch=$tag"
    local work="$TMP/${model//\//_}_$tag"
    local feed="$input=$TMP/${input}_$tag.npy"
    local out="$work/dabba/probabilities.npy"
    local msg
    mkdir -p "$work/ort" "$work/dabba"
    if ! "$DABBA" run "$onnx" --input "$feed" --output-dir "$work/dabba" >"$work/dabba.log" 2>&1; then
        fail "$name: dabba run exited non-zero: $(tail -n 3 "$work/dabba.log" | tr '\n' ' ')"
    elif [ ! -f "$out" ]; then
        fail "$name: dabba run wrote no probabilities.npy (got: $(cd "$work/dabba" && echo *))"
    elif ! "$NODE" tests/oracle/ort_run.js "$onnx" "$work/ort" "$feed" >"$work/ort.log" 2>&1; then
        fail "$name: onnxruntime failed: $(tail -n 3 "$work/ort.log" | tr '\n' ' ')"
    elif msg="$(compare "$out" "$work/ort/probabilities.npy" 2>&1)"; then
        pass "$name: matches onnxruntime ($msg)"
    else
        fail "$name: differs from onnxruntime: $msg"
    fi
    [ "$tag" = all ] || return 0
    if [ ! -f "$out" ]; then
        fail "$model: dabba held-out accuracy not measured (no output)"
    elif msg="$(accuracy "$out" "$DATA/digits_test_labels.npy" 2>&1)"; then
        pass "$model: dabba held-out accuracy $msg"
    else
        fail "$model: dabba held-out accuracy below 90%: $msg"
    fi
}

for model in digits_mlp/1 digits_mlp/2 digits_cnn/1; do
    onnx="$REPO/$model/model.onnx"
    case "$model" in
        digits_cnn/*) input=image ;;
        *) input=pixels ;;
    esac
    if [ ! -f "$onnx" ]; then fail "$model: $onnx missing (make examples)"; continue; fi
    for tag in all one b33; do
        run_case "$model" "$onnx" "$input" "$tag"
    done
done

finish
