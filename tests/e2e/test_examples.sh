#!/usr/bin/env bash
# End-to-end test of the bundled example models (examples/repository) against onnxruntime-node.
#
# For each digits model and each batch (the whole held-out set, the first sample alone, and an odd
# batch of 33): run the oracle (tests/oracle/ort_run.js) and `$BINDIR/dabba run`, then compare
# with |dabba - ort| <= 1e-6 + 1e-4 * |ort| elementwise. On the whole held-out set also check
# dabba's argmax accuracy against the labels (>= 90%). The text classifier's checks are
# described where they start, below; the last checks compare a CNN with Resize and
# ConvTranspose (tests/data/models/upsample_cnn.onnx).
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

# compare DABBA.npy ORT.npy [ATOL]: shape, dtype and |diff| <= ATOL (default 1e-6) + 1e-4 * |ort|;
# prints a reason on failure.
compare() {
    "$PYTHON" - "$1" "$2" "${3:-1e-6}" <<'EOF'
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
atol = float(sys.argv[3])
if a.shape != b.shape or a.dtype != b.dtype:
    print(f"dabba {a.dtype}{list(a.shape)} vs ort {b.dtype}{list(b.shape)}")
    sys.exit(1)
a64, b64 = a.astype(np.float64), b.astype(np.float64)
if not np.isfinite(a64).all():
    print("dabba output has NaN/Inf")
    sys.exit(1)
diff = np.abs(a64 - b64)
excess = diff - (atol + 1e-4 * np.abs(b64))
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

# The text classifier (tools/train_text_classifier.py): versions 1 (opset 14) and 2 (opset 17)
# against onnxruntime for batch {1, 4, 16} x sequence {8, 64, 256}, |diff| <= 1e-5 + 1e-4 |ort|.
# Row r of every case holds the same random tokens, [CLS] first and [SEP] last, cut to
# min(sequence, lengths[r]) and padded with [PAD] (mask 0), so most batches mix padded and
# full rows. On dabba's outputs: the mask masks (garbage ids in the padding of the 16 x 64
# case change nothing; a row's logits agree across the sequence lengths that hold it whole),
# and the held-out accuracy equals the script's (the same count of correct answers).
TEXT=text_classifier
TEXT_DIR="$TMP/text"
text_ready=1
for f in "$REPO/$TEXT/vocab.txt" "$DATA/text_accuracy.txt" "$DATA/text_heldout_input_ids.npy" \
         "$DATA/text_heldout_attention_mask.npy" "$DATA/text_heldout_labels.npy"; do
    if [ ! -f "$f" ]; then
        fail "$TEXT: $f missing (nice -n 19 tools/train_text_classifier.py)"
        text_ready=0
    fi
done
if [ "$text_ready" = 1 ] && ! "$PYTHON" - "$REPO/$TEXT/vocab.txt" "$TEXT_DIR" <<'EOF'
import os
import sys
import numpy as np
with open(sys.argv[1], encoding="utf-8") as f:
    vocab = sum(1 for _ in f)
out = sys.argv[2]
os.makedirs(out, exist_ok=True)
PAD, CLS, SEP = 0, 2, 3
lengths = [256, 8, 64, 2, 200, 8, 40, 256, 17, 64, 3, 128, 255, 9, 100, 31]
rng = np.random.default_rng(20261128)
tokens = rng.integers(4, vocab, size=(16, 256), dtype=np.int64)
garbage = rng.integers(0, vocab, size=(16, 256), dtype=np.int64)
for b in (1, 4, 16):
    for s in (8, 64, 256):
        ids = np.full((b, s), PAD, dtype=np.int64)
        mask = np.zeros((b, s), dtype=np.int64)
        for r in range(b):
            n = min(s, lengths[r])
            ids[r, :n] = tokens[r, :n]
            ids[r, 0], ids[r, n - 1] = CLS, SEP
            mask[r, :n] = 1
        np.save(f"{out}/b{b}_s{s}_input_ids.npy", ids)
        np.save(f"{out}/b{b}_s{s}_attention_mask.npy", mask)
        if (b, s) == (16, 64):
            np.save(f"{out}/garbage_input_ids.npy", np.where(mask == 1, ids, garbage[:, :s]))
            np.save(f"{out}/garbage_attention_mask.npy", mask)
with open(f"{out}/lengths.txt", "w") as f:
    f.write(" ".join(map(str, lengths)) + "\n")
EOF
then
    fail "$TEXT: could not prepare inputs"
    text_ready=0
fi

# text_dabba ONNX PREFIX OUTDIR: dabba run on PREFIX_input_ids.npy and
# PREFIX_attention_mask.npy; succeeds when OUTDIR/logits.npy was written (log in OUTDIR.log).
text_dabba() {
    mkdir -p "$3"
    "$DABBA" run "$1" --input "input_ids=$2_input_ids.npy" \
        --input "attention_mask=$2_attention_mask.npy" --output-dir "$3" >"$3.log" 2>&1 &&
        [ -f "$3/logits.npy" ]
}

for version in 1 2; do
    [ "$text_ready" = 1 ] || break
    model="$TEXT/$version"
    onnx="$REPO/$model/model.onnx"
    if [ ! -f "$onnx" ]; then
        fail "$model: $onnx missing (tools/train_text_classifier.py)"
        continue
    fi
    work="$TMP/text_v$version"
    for b in 1 4 16; do
        for s in 8 64 256; do
            name="$model batch=$b sequence=$s"
            cdir="$work/b${b}_s$s"
            feed="$TEXT_DIR/b${b}_s$s"
            if ! text_dabba "$onnx" "$feed" "$cdir/dabba"; then
                fail "$name: dabba run failed: $(tail -n 3 "$cdir/dabba.log" | tr '\n' ' ')"
            elif ! "$NODE" tests/oracle/ort_run.js "$onnx" "$cdir/ort" \
                    "input_ids=${feed}_input_ids.npy" "attention_mask=${feed}_attention_mask.npy" \
                    >"$cdir/ort.log" 2>&1; then
                fail "$name: onnxruntime failed: $(tail -n 3 "$cdir/ort.log" | tr '\n' ' ')"
            elif msg="$(compare "$cdir/dabba/logits.npy" "$cdir/ort/logits.npy" 1e-5 2>&1)"; then
                pass "$name: matches onnxruntime ($msg)"
            else
                fail "$name: differs from onnxruntime: $msg"
            fi
        done
    done

    if ! text_dabba "$onnx" "$TEXT_DIR/garbage" "$work/garbage"; then
        msg="$(tail -n 3 "$work/garbage.log" | tr '\n' ' ')"
        fail "$model: dabba run failed on garbage padding: $msg"
    elif msg="$("$PYTHON" - "$work" "$TEXT_DIR/lengths.txt" 2>&1 <<'EOF'
import os
import sys
import numpy as np
work = sys.argv[1]
lengths = [int(x) for x in open(sys.argv[2]).read().split()]
def close(a, b):
    return bool((np.abs(a - b) <= 1e-5 + 1e-4 * np.abs(b)).all())
bad = np.load(f"{work}/garbage/logits.npy")
if not close(bad, np.load(f"{work}/b16_s64/dabba/logits.npy")):
    print("garbage ids under mask 0 change the logits")
    sys.exit(1)
ref = np.load(f"{work}/b16_s256/dabba/logits.npy")
worst, rows = 0.0, 0
for b in (1, 4, 16):
    for s in (8, 64, 256):
        path = f"{work}/b{b}_s{s}/dabba/logits.npy"
        if not os.path.exists(path):
            print(f"no dabba output for batch {b} sequence {s}")
            sys.exit(1)
        out = np.load(path)
        for r in range(b):
            if lengths[r] <= s:  # row r whole here, padded in the 16 x 256 case
                worst = max(worst, float(np.abs(out[r] - ref[r]).max()))
                rows += 1
                if not close(out[r], ref[r]):
                    print(f"row {r} (length {lengths[r]}) at batch {b} sequence {s} differs "
                          f"from batch 16 sequence 256 by {np.abs(out[r] - ref[r]).max():.3g}")
                    sys.exit(1)
print(f"{rows} rows agree with their padded form, max |diff| {worst:.3g}")
EOF
)"; then
        pass "$model: attention_mask masks padding ($msg)"
    else
        fail "$model: attention_mask does not mask: $msg"
    fi
done

# Held-out accuracy through the server, which loads the model with its config.json (both
# versions, max_batch_size 16), in requests of 16 rows: the same number of correct answers as
# the script measured in torch, for each version. (`dabba run` on all N rows at once would
# hold every activation of its first run on the heap, gigabytes here.)
if [ "$text_ready" = 1 ]; then
    "$PYTHON" - "$DABBA" "$REPO" "$DATA" >"$TMP/text_serve.out" 2>&1 <<'EOF'
import http.client
import json
import signal
import subprocess
import sys
import tempfile
import time
import numpy as np

dabba, repo, data = sys.argv[1:4]
ids = np.load(f"{data}/text_heldout_input_ids.npy")
mask = np.load(f"{data}/text_heldout_attention_mask.npy")
labels = np.load(f"{data}/text_heldout_labels.npy")
want = None
for line in open(f"{data}/text_accuracy.txt"):
    f = line.split()
    if len(f) == 4 and f[0] == "text_classifier":
        want = (int(f[1]), int(f[2]))

def result(ok, what):
    print(("PASS " if ok else "FAIL ") + what, flush=True)

log = tempfile.TemporaryFile(mode="w+")
proc = subprocess.Popen([dabba, "serve", "--repository", repo, "--http-port", "0",
                         "--http-address", "127.0.0.1", "--model-control-mode", "explicit",
                         "--load-model", "text_classifier"], stdout=log, stderr=log)
try:
    port, deadline = None, time.time() + 60
    while port is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        log.seek(0)
        for line in log.read().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "listening":
                port = ev["port"]
    ready = False
    while port is not None and not ready and time.time() < deadline:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            c.request("GET", "/v2/models/text_classifier/versions/2/ready")
            ready = c.getresponse().status == 200
        except OSError:
            pass
        c.close()
        time.sleep(0.05)
    if not ready:
        log.seek(0)
        result(False, "text_classifier: dabba serve did not make version 2 ready: "
               + " ".join(log.read().splitlines()[-3:]))
        sys.exit(0)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for version in (1, 2):
        name = f"text_classifier/{version}"
        correct, error = 0, None
        for i in range(0, len(labels), 16):
            body = {"inputs": [
                {"name": n, "datatype": "INT64", "shape": list(x[i:i + 16].shape),
                 "data": x[i:i + 16].ravel().tolist()}
                for n, x in (("input_ids", ids), ("attention_mask", mask))]}
            conn.request("POST", f"/v2/models/text_classifier/versions/{version}/infer",
                         body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            reply = r.read()
            if r.status != 200:
                error = f"rows {i}..: HTTP {r.status} {reply[:200]!r}"
                break
            out = {o["name"]: o for o in json.loads(reply)["outputs"]}["logits"]
            logits = np.array(out["data"], dtype=np.float64).reshape(out["shape"])
            correct += int((logits.argmax(axis=1) == labels[i:i + 16]).sum())
        if error:
            result(False, f"{name}: dabba serve held-out accuracy not measured: {error}")
            continue
        n = len(labels)
        msg = f"{correct} of {n} ({correct / n * 100:.2f}%), script: {want}"
        if want == (correct, n):
            result(True, f"{name}: dabba serve held-out accuracy {msg}")
        else:
            result(False, f"{name}: dabba serve held-out accuracy differs from the script's: {msg}")
finally:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
EOF
    rc=$?
    results=0
    while IFS= read -r line; do
        case "$line" in
            "PASS "*) pass "${line#PASS }"; results=$((results + 1)) ;;
            "FAIL "*) fail "${line#FAIL }"; results=$((results + 1)) ;;
        esac
    done <"$TMP/text_serve.out"
    if [ "$rc" != 0 ] || [ "$results" = 0 ]; then
        msg="$(tail -n 3 "$TMP/text_serve.out" | tr '\n' ' ')"
        fail "$TEXT: the serve check ended with status $rc: $msg"
    fi
fi

# A CNN with Resize (linear, then cubic) and a strided ConvTranspose, random weights
# (tests/data/models/upsample_cnn.onnx, tools/make_test_models.py): dabba vs onnxruntime on
# batches of 1 and 3 random images, |diff| <= 1e-5 + 1e-4 * |ort|.
UP=tests/data/models/upsample_cnn.onnx
for b in 1 3; do
    work="$TMP/upsample_b$b"
    mkdir -p "$work/ort" "$work/dabba"
    "$PYTHON" -c "import numpy as np; np.save('$work/image.npy', np.random.default_rng($b).standard_normal(($b, 3, 16, 16)).astype(np.float32))"
    name="upsample_cnn batch=$b"
    if ! "$DABBA" run "$UP" --input "image=$work/image.npy" --output-dir "$work/dabba" >"$work/dabba.log" 2>&1; then
        fail "$name: dabba run exited non-zero: $(tail -n 3 "$work/dabba.log" | tr '\n' ' ')"
    elif ! "$NODE" tests/oracle/ort_run.js "$UP" "$work/ort" "image=$work/image.npy" >"$work/ort.log" 2>&1; then
        fail "$name: onnxruntime failed: $(tail -n 3 "$work/ort.log" | tr '\n' ' ')"
    elif msg="$(compare "$work/dabba/y.npy" "$work/ort/y.npy" 1e-5 2>&1)"; then
        pass "$name: Resize + ConvTranspose match onnxruntime ($msg)"
    else
        fail "$name: differs from onnxruntime: $msg"
    fi
done

finish
