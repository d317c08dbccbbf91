#!/usr/bin/env bash
# `make run`: classify the first 5 held-out samples with each example model (latest version)
# using `$BINDIR/dabba run`, and print the prediction, its probability and the true label:
# digits for the digit models, Debian archive sections for text_classifier.
# Env: BINDIR (default bin), PYTHON (default /usr/bin/python3), COUNT (default 5).
set -eu

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BINDIR="${BINDIR:-bin}"
DABBA="$BINDIR/dabba"
PYTHON="${PYTHON:-/usr/bin/python3}"
COUNT="${COUNT:-5}"
DATA=examples/data
REPO=examples/repository

[ -x "$DABBA" ] || { echo "run_examples: $DABBA not built (run make)" >&2; exit 1; }
TMP="$(mktemp -d "${TMPDIR:-/tmp}/dabba-run.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

"$PYTHON" - "$DATA/digits_test_pixels.npy" "$TMP" "$COUNT" <<'EOF'
import sys
import numpy as np
x = np.load(sys.argv[1])[: int(sys.argv[3])].astype(np.float32)
np.save(f"{sys.argv[2]}/pixels.npy", np.ascontiguousarray(x))
np.save(f"{sys.argv[2]}/image.npy", np.ascontiguousarray(x.reshape(-1, 1, 8, 8)))
n = int(sys.argv[3])
for name in ("input_ids", "attention_mask"):
    t = np.load(f"examples/data/text_heldout_{name}.npy")[:n]
    np.save(f"{sys.argv[2]}/{name}.npy", np.ascontiguousarray(t))
EOF

# run_text ONNX OUT: the text classifier on the first held-out descriptions (token ids
# made by tools/train_text_classifier.py), with section names from labels.txt
run_text() {
    local onnx=$1 out=$2
    echo "\$ $DABBA run $onnx --input input_ids=input_ids.npy --input attention_mask=attention_mask.npy --output-dir OUT"
    if ! "$DABBA" run "$onnx" --input "input_ids=$TMP/input_ids.npy" \
        --input "attention_mask=$TMP/attention_mask.npy" --output-dir "$out" >"$out.log" 2>&1; then
        echo "run_examples: dabba run failed for text_classifier:" >&2
        cat "$out.log" >&2
        return 1
    fi
    "$PYTHON" - "$out/logits.npy" "$DATA/text_heldout_labels.npy" "$REPO/text_classifier/labels.txt" <<'EOF'
import sys
import numpy as np
z = np.load(sys.argv[1])
y = np.load(sys.argv[2])[: z.shape[0]]
names = open(sys.argv[3]).read().split()
p = np.exp(z - z.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
print(f"{'sample':>6}  {'predicted':>9}  {'probability':>11}  {'label':>9}")
for i, (row, label) in enumerate(zip(p, y)):
    k = int(row.argmax())
    mark = "" if k == label else "  <- wrong"
    print(f"{i:>6}  {names[k]:>9}  {row[k]:>11.4f}  {names[int(label)]:>9}{mark}")
EOF
}

status=0
for dir in "$REPO"/*/; do
    model="$(basename "$dir")"
    version="$(find "$dir" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' -printf '%f\n' | sort -n | tail -n 1)"
    onnx="$dir$version/model.onnx"
    if [ -z "$version" ] || [ ! -f "$onnx" ]; then continue; fi
    case "$model" in
        *cnn*) input=image ;;
        *) input=pixels ;;
    esac
    out="$TMP/$model"
    mkdir -p "$out"
    echo "== $model version $version ($onnx)"
    if [ "$model" = text_classifier ]; then
        run_text "$onnx" "$out" || status=1
        continue
    fi
    echo "\$ $DABBA run $onnx --input $input=$input.npy --output-dir OUT"
    if ! "$DABBA" run "$onnx" --input "$input=$TMP/$input.npy" --output-dir "$out" >"$out.log" 2>&1; then
        echo "run_examples: dabba run failed for $model:" >&2
        cat "$out.log" >&2
        status=1
        continue
    fi
    "$PYTHON" - "$out/probabilities.npy" "$DATA/digits_test_labels.npy" <<'EOF'
import sys
import numpy as np
p = np.load(sys.argv[1])
y = np.load(sys.argv[2])[: p.shape[0]]
print(f"{'sample':>6}  {'predicted':>9}  {'probability':>11}  {'label':>5}")
for i, (row, label) in enumerate(zip(p, y)):
    k = int(row.argmax())
    mark = "" if k == label else "  <- wrong"
    print(f"{i:>6}  {k:>9}  {row[k]:>11.4f}  {int(label):>5}{mark}")
EOF
done
exit "$status"
