#!/usr/bin/python3
"""Train the example text classifier: a small BERT-style encoder that reads a Debian package's
description and predicts the package's archive section.

Corpus: Debian 12 (bookworm) main amd64 package index as apt keeps it,
  /var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4
read with `/usr/lib/apt/apt-helper cat-file` (--packages FILE names another copy; the script
prints the SHA-256 of the decompressed index, and a rerun on the same index gives the same
files).
  text   the Description field. Debian's Packages index carries only the one-line synopsis
         (the long descriptions live in the Translation-en index, which this project's apt
         does not download); continuation lines, where an index has them, are appended.
  label  the Section field with any "contrib/", "non-free/" or "non-free-firmware/" prefix
         removed. Classes are the NUM_CLASSES sections with the most packages, class id in
         that order (libs, libdevel, python, doc, perl, devel, utils, haskell, net, rust for
         the index of 2026-11); packages of every other section are dropped.
  dedupe identical texts (after normalisation, below) are one sample, labelled with their
         most common section; a text whose sections tie is dropped.
  split  held-out when the first 8 hex digits of SHA-256(normalised text) mod 100 are below
         HELDOUT_PERCENT, else train; so a text is never on both sides.

Tokenizer (WordPiece, learned here from the training texts): lower-case, accents stripped
(NFD), split on white space, every punctuation character a word of its own (BERT's basic
tokenizer). The vocabulary is grown BPE-style: start from the characters seen at least
MIN_CHAR_COUNT times (word-initial "c" and continuation "##c" forms), then repeatedly add the
most frequent adjacent pair of pieces (ties: the smaller pair) until VOCAB_SIZE entries.
Words are then split greedily, longest match first, with "##" continuation pieces; a word
that cannot be split (or has more than 100 characters) is [UNK]. Sequences are
[CLS] pieces [SEP], at most MAX_POSITIONS tokens. Special ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3.

Model: BERT-style post-LN encoder, LAYERS layers, hidden HIDDEN, HEADS heads, FFN FFN, GELU
(erf), LayerNorm eps 1e-12, learned positions (MAX_POSITIONS), no token types; the attention
mask is added to the scores as (1 - mask) * -10000; the [CLS] state goes through a tanh
pooler and a linear layer to the logits. Trained EPOCHS epochs with AdamW (linear warm-up
and decay) on TRAIN_SAMPLES training texts drawn with a fixed seed (the vocabulary uses them
all), one thread, fixed seeds, torch's deterministic algorithms.

Writes (relative to the repository root):
  examples/repository/text_classifier/1/model.onnx   opset 14: LayerNorm and GELU as
                                                      subgraphs of primitive operators
  examples/repository/text_classifier/2/model.onnx   opset 17: LayerNormalization nodes
      the same weights; inputs input_ids and attention_mask INT64 [batch, sequence]
      (mask 1 for tokens, 0 for padding), output logits FP32 [batch, NUM_CLASSES]
  examples/repository/text_classifier/config.json    both versions, max_batch_size 16
  examples/repository/text_classifier/vocab.txt      one token per line, id = line number - 1
  examples/repository/text_classifier/labels.txt     one section per line, class id = line - 1
  examples/data/text_heldout.jsonl   the held-out set, one JSON object per line:
      {"package": name of one package with this text, "text": the description as in the
       index, "section": label name, "label": class id, "input_ids": [CLS] ... [SEP]}
  examples/data/text_heldout_input_ids.npy       int64 [N, L]: the same ids, padded with
                                                 [PAD] to the longest (L)
  examples/data/text_heldout_attention_mask.npy  int64 [N, L]: 1 for tokens, 0 for padding
  examples/data/text_heldout_labels.npy          int64 [N]
  examples/data/text_accuracy.txt    held-out accuracy of the trained model (torch, on the
                                     padded .npy inputs): "text_classifier CORRECT N ACCURACY"

Run: nice -n 19 /usr/bin/python3 tools/train_text_classifier.py  (about 10 minutes on one
core). Needs Debian's python3-torch, python3-numpy and python3-onnx.
"""
import argparse
import collections
import hashlib
import heapq
import json
import math
import os
import random
import subprocess
import sys
import time
import unicodedata

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "examples", "repository", "text_classifier")
DATA = os.path.join(ROOT, "examples", "data")
PACKAGES = ("/var/lib/apt/lists/"
            "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4")

NUM_CLASSES = 10
HELDOUT_PERCENT = 5
VOCAB_SIZE = 6000
MIN_CHAR_COUNT = 2
MAX_WORD_CHARS = 100
MAX_POSITIONS = 256
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
PAD, UNK, CLS, SEP = range(4)

LAYERS = 2
HIDDEN = 128
HEADS = 4
FFN = 512
DROPOUT = 0.1
EPOCHS = 3
TRAIN_SAMPLES = 26000  # the model trains on this many training texts (fixed-seed sample)
BATCH = 64
LR = 1e-3
WARMUP_STEPS = 200
SEED = 7
MIN_ACCURACY = 0.70
MAX_MODEL_BYTES = 6 * 1024 * 1024
OPSETS = {1: 14, 2: 17}


# ---------------------------------------------------------------- corpus

def read_index(path):
    """Decompresses the index with apt's helper (any compression apt knows)."""
    res = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path],
                         stdout=subprocess.PIPE, check=True)
    return res.stdout


def parse_stanzas(raw):
    """Yields (package, description, section) per stanza of a Debian Packages file."""
    for stanza in raw.decode("utf-8", "replace").split("\n\n"):
        fields = {}
        last = None
        for line in stanza.split("\n"):
            if line.startswith((" ", "\t")):
                if last is not None:
                    fields[last].append(line[1:])
                continue
            name, sep, value = line.partition(":")
            if not sep:
                last = None
                continue
            last = name
            fields[name] = [value.strip()]
        if "Package" in fields and "Description" in fields and "Section" in fields:
            desc = fields["Description"]
            # Continuation lines: " ." is an empty line in Debian's format.
            text = " ".join([desc[0]] + [s.strip() for s in desc[1:] if s.strip() != "."])
            yield fields["Package"][0], text, fields["Section"][0]


def strip_area(section):
    for area in ("contrib/", "non-free-firmware/", "non-free/"):
        if section.startswith(area):
            return section[len(area):]
    return section


def build_corpus(raw):
    """Returns (classes, train, heldout, stats); samples are (package, text, norm, label)."""
    rows = [(p, t, strip_area(s)) for p, t, s in parse_stanzas(raw)]
    counts = collections.Counter(s for _, _, s in rows)
    classes = [s for s, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    classes = classes[:NUM_CLASSES]
    class_id = {s: i for i, s in enumerate(classes)}

    groups = collections.OrderedDict()
    for package, text, section in sorted(rows):
        if section not in class_id:
            continue
        groups.setdefault(normalize(text), []).append((package, text, class_id[section]))
    train, heldout, ambiguous = [], [], 0
    for norm, members in groups.items():
        votes = collections.Counter(label for _, _, label in members).most_common()
        if len(votes) > 1 and votes[0][1] == votes[1][1]:
            ambiguous += 1
            continue
        label = votes[0][0]
        package, text, _ = min(m for m in members if m[2] == label)
        bucket = int(hashlib.sha256(norm.encode("utf-8")).hexdigest()[:8], 16) % 100
        (heldout if bucket < HELDOUT_PERCENT else train).append((package, text, norm, label))
    stats = {"packages": len(rows), "in_classes": sum(len(m) for m in groups.values()),
             "unique_texts": len(groups), "ambiguous": ambiguous}
    return classes, train, heldout, stats


# ---------------------------------------------------------------- tokenizer

def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def normalize(text):
    text = unicodedata.normalize("NFD", text.lower())
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Mn":
            continue
        out.append(" " if ch.isspace() or cat.startswith("C") else ch)
    return " ".join("".join(out).split())


def basic_words(norm):
    """BERT's basic split of normalised text: white space, then punctuation alone."""
    words = []
    for chunk in norm.split():
        cur = []
        for ch in chunk:
            if is_punctuation(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
    return words


def learn_vocab(texts):
    """Learns a WordPiece vocabulary of VOCAB_SIZE entries from normalised texts."""
    word_counts = collections.Counter(w for t in texts for w in basic_words(t))
    char_counts = collections.Counter()
    for w, c in word_counts.items():
        for ch in w:
            char_counts[ch] += c
    alphabet = {ch for ch, c in char_counts.items() if c >= MIN_CHAR_COUNT}
    pieces = set()
    words, freqs = [], []
    for w, c in sorted(word_counts.items()):
        if len(w) > MAX_WORD_CHARS or any(ch not in alphabet for ch in w):
            continue
        syms = [w[0]] + ["##" + ch for ch in w[1:]]
        pieces.update(syms)
        words.append(syms)
        freqs.append(c)
    vocab = list(SPECIALS) + sorted(pieces)
    known = set(vocab)

    pair_counts = collections.Counter()
    where = collections.defaultdict(set)
    for i, syms in enumerate(words):
        for a, b in zip(syms, syms[1:]):
            pair_counts[(a, b)] += freqs[i]
            where[(a, b)].add(i)
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    while len(vocab) < VOCAB_SIZE and heap:
        negc, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negc:
            continue  # stale entry: the count changed and was pushed again
        if -negc < 2:
            break
        a, b = pair
        merged = a + b[2:]
        touched = set()
        for i in sorted(where.pop(pair, ())):
            syms = words[i]
            for x, y in zip(syms, syms[1:]):
                pair_counts[(x, y)] -= freqs[i]
                touched.add((x, y))
            out, j = [], 0
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            words[i] = out
            for x, y in zip(out, out[1:]):
                pair_counts[(x, y)] += freqs[i]
                where[(x, y)].add(i)
                touched.add((x, y))
        for p in touched:
            c = pair_counts[p]
            if c <= 0:
                del pair_counts[p]
            elif p != pair:
                heapq.heappush(heap, (-c, p))
        pair_counts.pop(pair, None)
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
    return vocab


class WordPiece:
    def __init__(self, vocab):
        self.ids = {tok: i for i, tok in enumerate(vocab)}
        self.cache = {}

    def word(self, w):
        """Greedy longest-match-first split of one word into piece ids."""
        if w in self.cache:
            return self.cache[w]
        out, start = [], 0
        if len(w) > MAX_WORD_CHARS:
            start = len(w)
            out = [UNK]
        while start < len(w):
            end = len(w)
            while end > start:
                sub = w[start:end] if start == 0 else "##" + w[start:end]
                if sub in self.ids:
                    break
                end -= 1
            if end == start:
                out = [UNK]
                break
            out.append(self.ids[sub])
            start = end
        self.cache[w] = out
        return out

    def encode(self, norm):
        ids = [CLS]
        for w in basic_words(norm):
            ids.extend(self.word(w))
        return ids[:MAX_POSITIONS - 1] + [SEP]


# ---------------------------------------------------------------- model

class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(HIDDEN, HIDDEN)
        self.k = nn.Linear(HIDDEN, HIDDEN)
        self.v = nn.Linear(HIDDEN, HIDDEN)
        self.o = nn.Linear(HIDDEN, HIDDEN)
        self.ln1 = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.ff1 = nn.Linear(HIDDEN, FFN)
        self.ff2 = nn.Linear(FFN, HIDDEN)
        self.ln2 = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.act = nn.GELU()  # exact (erf) GELU
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x, mask_bias):
        b, s = x.shape[0], x.shape[1]

        def heads(t):
            return t.view(b, s, HEADS, HIDDEN // HEADS).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(HIDDEN // HEADS) + mask_bias
        probs = self.drop(torch.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, HIDDEN)
        x = self.ln1(x + self.drop(self.o(ctx)))
        return self.ln2(x + self.drop(self.ff2(self.act(self.ff1(x)))))


class TextClassifier(nn.Module):
    def __init__(self, vocab_size, num_classes):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, HIDDEN)
        self.pos = nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.emb_ln = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.layers = nn.ModuleList([Layer() for _ in range(LAYERS)])
        self.pool = nn.Linear(HIDDEN, HIDDEN)
        self.out = nn.Linear(HIDDEN, num_classes)
        self.drop = nn.Dropout(DROPOUT)
        for m in self.modules():  # BERT's initialisation
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos.weight[:s]
        x = self.drop(self.emb_ln(x))
        # Padded keys get -10000 before the softmax, which underflows their weight to 0.
        bias = (1.0 - attention_mask.to(x.dtype)).unsqueeze(1).unsqueeze(2) * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        pooled = torch.tanh(self.pool(x[:, 0]))
        return self.out(self.drop(pooled))


def pad_batch(seqs, length=None):
    length = length or max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), length), dtype=np.int64)
    mask = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask


def batches(seqs, labels, gen):
    """Shuffled batches of similar lengths (pools of 50 batches sorted by length)."""
    perm = torch.randperm(len(seqs), generator=gen).tolist()
    pool = BATCH * 50
    out = []
    for p in range(0, len(perm), pool):
        chunk = sorted(perm[p:p + pool], key=lambda i: (len(seqs[i]), i))
        out.extend(chunk[j:j + BATCH] for j in range(0, len(chunk), BATCH))
    order = torch.randperm(len(out), generator=gen).tolist()
    for k in order:
        idx = out[k]
        ids, mask = pad_batch([seqs[i] for i in idx])
        yield torch.from_numpy(ids), torch.from_numpy(mask), torch.tensor([labels[i] for i in idx])


def train(model, seqs, labels):
    gen = torch.Generator().manual_seed(SEED)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=LR)
    steps = EPOCHS * math.ceil(len(seqs) / BATCH) + EPOCHS
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min((t + 1) / WARMUP_STEPS, max(0.0, (steps - t) / (steps - WARMUP_STEPS))))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = time.monotonic()
    for epoch in range(EPOCHS):
        total, n = 0.0, 0
        for ids, mask, y in batches(seqs, labels, gen):
            opt.zero_grad()
            loss = loss_fn(model(ids, mask), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss) * len(y)
            n += len(y)
        print(f"epoch {epoch + 1}/{EPOCHS}: train loss {total / n:.4f} "
              f"({time.monotonic() - start:.0f} s)", flush=True)
    model.eval()
    return model


# ---------------------------------------------------------------- export

def export(model, version):
    import onnx
    opset = OPSETS[version]
    path = os.path.join(MODEL_DIR, str(version), "model.onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ids, mask = pad_batch([[CLS, 5, 6, 7, SEP], [CLS, 8, SEP]])
    torch.onnx.export(
        model, (torch.from_numpy(ids), torch.from_numpy(mask)), path,
        input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                      "attention_mask": {0: "batch", 1: "sequence"},
                      "logits": {0: "batch"}},
        opset_version=opset, do_constant_folding=True)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    if opset < 17:
        assert "LayerNormalization" not in ops and ops["Erf"] == LAYERS, ops
    else:
        assert ops["LayerNormalization"] == 2 * LAYERS + 1, ops
    m.producer_name = "dabba tools/train_text_classifier.py"
    m.doc_string = ("Debian package description -> archive section (labels.txt); "
                    "WordPiece ids from vocab.txt as [CLS] ... [SEP], attention_mask 1 for "
                    "tokens and 0 for padding; output logits")
    onnx.save(m, path)
    size = os.path.getsize(path)
    return path, opset, size, ops


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", default=PACKAGES, help="the Packages index to read")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    t0 = time.monotonic()

    raw = read_index(args.packages)
    digest = hashlib.sha256(raw).hexdigest()
    classes, train_set, heldout, stats = build_corpus(raw)
    print(f"corpus: {args.packages}\n  sha256 {digest}; {stats['packages']} packages, "
          f"{stats['in_classes']} in the {NUM_CLASSES} classes, {stats['unique_texts']} "
          f"distinct texts ({stats['ambiguous']} with tied sections dropped); "
          f"train {len(train_set)}, held-out {len(heldout)}")
    print("  classes: " + ", ".join(
        f"{i}={c} ({sum(1 for s in train_set if s[3] == i)}/"
        f"{sum(1 for s in heldout if s[3] == i)})" for i, c in enumerate(classes)))

    vocab = learn_vocab([s[2] for s in train_set])
    tok = WordPiece(vocab)
    train_ids = [tok.encode(s[2]) for s in train_set]
    held_ids = [tok.encode(s[2]) for s in heldout]
    unk = sum(i == UNK for s in held_ids for i in s) / sum(len(s) for s in held_ids)
    print(f"vocabulary: {len(vocab)} tokens; held-out [UNK] rate {unk * 100:.2f}%, "
          f"longest held-out sequence {max(len(s) for s in held_ids)} tokens "
          f"({time.monotonic() - t0:.0f} s)", flush=True)

    os.makedirs(MODEL_DIR, exist_ok=True)
    os.makedirs(DATA, exist_ok=True)
    with open(os.path.join(MODEL_DIR, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    with open(os.path.join(MODEL_DIR, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("".join(c + "\n" for c in classes))
    with open(os.path.join(MODEL_DIR, "config.json"), "w") as f:
        f.write('{\n  "version_policy": {"all": {}},\n  "max_batch_size": 16\n}\n')
    with open(os.path.join(DATA, "text_heldout.jsonl"), "w", encoding="utf-8") as f:
        for (package, text, _, label), ids in zip(heldout, held_ids):
            f.write(json.dumps({"package": package, "text": text, "section": classes[label],
                                "label": label, "input_ids": ids}, ensure_ascii=False) + "\n")
    h_ids, h_mask = pad_batch(held_ids)
    h_labels = np.array([s[3] for s in heldout], dtype=np.int64)
    np.save(os.path.join(DATA, "text_heldout_input_ids.npy"), h_ids)
    np.save(os.path.join(DATA, "text_heldout_attention_mask.npy"), h_mask)
    np.save(os.path.join(DATA, "text_heldout_labels.npy"), h_labels)

    # Debian's torch multiplies with the reference BLAS: a sample keeps training near 10 min.
    pick = sorted(random.Random(SEED).sample(range(len(train_set)),
                                             min(TRAIN_SAMPLES, len(train_set))))
    torch.manual_seed(SEED)
    model = TextClassifier(len(vocab), len(classes))
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {LAYERS} layers, hidden {HIDDEN}, {HEADS} heads, FFN {FFN}, "
          f"{params} parameters; training on {len(pick)} of the {len(train_set)} training texts",
          flush=True)
    train(model, [train_ids[i] for i in pick], [train_set[i][3] for i in pick])

    with torch.no_grad():
        pred = model(torch.from_numpy(h_ids), torch.from_numpy(h_mask)).argmax(dim=1).numpy()
    correct = int((pred == h_labels).sum())
    acc = correct / len(h_labels)
    print(f"held-out accuracy {acc * 100:.2f}% ({correct} of {len(h_labels)})")
    for i, c in enumerate(classes):
        sel = h_labels == i
        print(f"  {c:>10}: {float((pred[sel] == i).mean()) * 100:6.2f}% of {int(sel.sum())}")
    with open(os.path.join(DATA, "text_accuracy.txt"), "w") as f:
        f.write(f"# held-out accuracy (torch, before export): name correct total accuracy\n"
                f"# corpus sha256 {digest}\n")
        f.write(f"text_classifier {correct} {len(h_labels)} {acc:.4f}\n")

    failed = acc < MIN_ACCURACY
    for version in sorted(OPSETS):
        path, opset, size, ops = export(model, version)
        print(f"text_classifier/{version}: opset {opset}, {size} bytes, "
              f"{sum(ops.values())} nodes ({', '.join(sorted(ops))})")
        if size > MAX_MODEL_BYTES:
            print(f"error: {path} is over {MAX_MODEL_BYTES} bytes", file=sys.stderr)
            failed = True
    print(f"done in {time.monotonic() - t0:.0f} s")
    if acc < MIN_ACCURACY:
        print(f"error: held-out accuracy below {MIN_ACCURACY * 100:.0f}%", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
