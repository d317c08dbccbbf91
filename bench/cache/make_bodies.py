#!/usr/bin/python3
"""Request bodies of the cache benchmark (bench/cache/run.sh): COUNT distinct KServe v2 JSON
infer bodies per model, one body per line, in popularity order (line 1 is the body the Zipf
workload of bench/cache/zipf.lua asks for most).

    make_bodies.py OUTDIR [COUNT]       (COUNT: 10000)

Writes OUTDIR/digits_cnn.jsonl, OUTDIR/text_classifier.jsonl and OUTDIR/info.txt (one line
per model: bodies, bytes, and for the text model the sequence lengths).

digits_cnn: the input's name, shape and type are read from
examples/repository/digits_cnn/1/model.onnx (python3-onnx): FP32 [batch, 1, 8, 8]. Images are
scikit-learn's digits (python3-sklearn; 1,797 of them), scaled to [0, 1] as
tools/train_examples.py trained the model; body i is image i mod 1797 plus uniform noise in
[-0.02, 0.02] on every pixel (fixed seed), clipped to [0, 1] and written with 4 decimals, so
all COUNT bodies differ (checked) and each still looks like its digit.

text_classifier: inputs input_ids and attention_mask, INT64 [1, L], names checked against
version 2's model.onnx. Texts are Debian package descriptions from apt's bookworm index (the
corpus the classifier was trained on), read and tokenized by tools/train_text_classifier.py's
own functions (read_index, parse_stanzas, normalize, WordPiece over the model's vocab.txt),
imported rather than rewritten; /var/lib/dpkg/status stands in when the index is missing.
Distinct texts are ordered by SHA-256 of the normalised text (a fixed, arbitrary order) and
the first COUNT whose token sequences are distinct are kept. Sequences have their natural
length ([CLS] pieces [SEP], cut to at most 128 tokens), no padding: attention_mask is all 1.
"""
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
REPO = os.path.join(ROOT, "examples", "repository")
MAX_SEQ = 128
NOISE = 0.02
SEED = 20261128


def fail(msg):
    print(f"make_bodies: {msg}", file=sys.stderr)
    sys.exit(1)


def onnx_inputs(path):
    """{name: (elem_type name, [dims as int or str])} of the graph's real inputs."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    out = {}
    for i in m.graph.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
        out[i.name] = (onnx.TensorProto.DataType.Name(t.elem_type), dims)
    return out


def digits_bodies(count):
    from sklearn.datasets import load_digits

    ins = onnx_inputs(os.path.join(REPO, "digits_cnn", "1", "model.onnx"))
    if len(ins) != 1:
        fail(f"digits_cnn has inputs {sorted(ins)}, want one")
    name, (dtype, dims) = next(iter(ins.items()))
    if dtype != "FLOAT" or len(dims) != 4 or dims[1:] != [1, 8, 8]:
        fail(f"digits_cnn input {name} is {dtype} {dims}, want FLOAT [batch, 1, 8, 8]")
    images = (load_digits().data / 16.0).astype(np.float64)
    rng = np.random.default_rng(SEED)
    bodies, seen = [], set()
    i = 0
    while len(bodies) < count:
        x = np.clip(images[i % len(images)] + rng.uniform(-NOISE, NOISE, 64), 0.0, 1.0)
        data = ",".join(f"{v:.4f}".rstrip("0").rstrip(".") for v in x)
        i += 1
        if data in seen:
            continue  # a repeat (vanishingly rare): draw again
        seen.add(data)
        bodies.append('{"inputs":[{"name":"%s","shape":[1,1,8,8],"datatype":"FP32","data":[%s]}]}'
                      % (name, data))
    return bodies, f"digits_cnn: {len(bodies)} bodies, input {name} FP32 [1,1,8,8]"


def text_bodies(count):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import train_text_classifier as ttc  # noqa: E402 - the trainer's own corpus and tokenizer

    model_dir = os.path.join(REPO, "text_classifier")
    versions = sorted(int(v) for v in os.listdir(model_dir) if v.isdigit())
    ins = onnx_inputs(os.path.join(model_dir, str(versions[-1]), "model.onnx"))
    for want in ("input_ids", "attention_mask"):
        if want not in ins or ins[want][0] != "INT64" or len(ins[want][1]) != 2:
            fail(f"text_classifier version {versions[-1]}: no INT64 [batch, sequence] input {want} "
                 f"(has {ins})")
    with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f]
    wp = ttc.WordPiece(vocab)
    if os.path.exists(ttc.PACKAGES):
        source = ttc.PACKAGES
        raw = ttc.read_index(source)
    else:
        source = "/var/lib/dpkg/status"
        with open(source, "rb") as f:
            raw = f.read()
    norms = {}
    for _, text, _ in ttc.parse_stanzas(raw):
        norm = ttc.normalize(text)
        if norm:
            norms.setdefault(hashlib.sha256(norm.encode("utf-8")).hexdigest(), norm)
    bodies, seen, lengths = [], set(), []
    for _, norm in sorted(norms.items()):
        ids = wp.encode(norm)
        if len(ids) > MAX_SEQ:
            ids = ids[:MAX_SEQ - 1] + [ids[-1]]
        key = tuple(ids)
        if key in seen:
            continue
        seen.add(key)
        n = len(ids)
        lengths.append(n)
        ones = ",".join(["1"] * n)
        bodies.append('{"inputs":[{"name":"input_ids","shape":[1,%d],"datatype":"INT64",'
                      '"data":[%s]},{"name":"attention_mask","shape":[1,%d],"datatype":"INT64",'
                      '"data":[%s]}]}' % (n, ",".join(map(str, ids)), n, ones))
        if len(bodies) == count:
            break
    if len(bodies) < count:
        fail(f"only {len(bodies)} distinct token sequences in {source}, want {count}")
    lens = np.asarray(lengths)
    return bodies, (f"text_classifier: {len(bodies)} bodies from {source}; natural lengths (no "
                    f"padding, cut at {MAX_SEQ}): median {int(np.median(lens))}, p99 "
                    f"{int(np.percentile(lens, 99))}, max {lens.max()} tokens")


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    outdir = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) == 3 else 10000
    if count < 1:
        fail("COUNT must be at least 1")
    os.makedirs(outdir, exist_ok=True)
    info = []
    for model, make in (("digits_cnn", digits_bodies), ("text_classifier", text_bodies)):
        bodies, line = make(count)
        if len(set(bodies)) != len(bodies):
            fail(f"{model}: bodies are not distinct")
        with open(os.path.join(outdir, model + ".jsonl"), "w", encoding="ascii") as f:
            for b in bodies:
                f.write(b + "\n")
        sizes = np.asarray([len(b) for b in bodies])
        line += f"; body bytes median {int(np.median(sizes))}, max {sizes.max()}"
        info.append(line)
        print(f"make_bodies: {line}", file=sys.stderr)
    with open(os.path.join(outdir, "info.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(info) + "\n")


if __name__ == "__main__":
    main()
