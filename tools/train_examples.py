#!/usr/bin/python3
"""Train the bundled example models on scikit-learn's digits dataset.

Writes (relative to the repository root):
  examples/repository/digits_mlp/1/model.onnx   MLP 64-128-64-10, input `pixels` [batch, 64]
  examples/repository/digits_mlp/2/model.onnx   MLP 64-96-48-10 (more epochs), same interface (hot-swap target)
  examples/repository/digits_cnn/1/model.onnx   small CNN, input `image` [batch, 1, 8, 8]
  examples/data/digits_test_pixels.npy          held-out pixels, float32 [N, 64], scaled to [0, 1]
  examples/data/digits_test_labels.npy          held-out labels, int64 [N]
  examples/data/accuracy.txt                    held-out accuracy of each model (torch)

Every model outputs `probabilities` FP32 [batch, 10] (softmax). Deterministic: fixed seeds,
one thread, fixed split. Run with `make examples`.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.join(ROOT, "examples", "repository")
DATA = os.path.join(ROOT, "examples", "data")
OPSET = 13
MIN_ACCURACY = 0.90


class MLP(nn.Module):
    def __init__(self, hidden1, hidden2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, hidden1), nn.ReLU(),
            nn.Linear(hidden1, hidden2), nn.ReLU(),
            nn.Linear(hidden2, 10))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                   # 16 x 4 x 4
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(),
            nn.AvgPool2d(2, count_include_pad=False))          # 32 x 2 x 2
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.features(x))


class WithSoftmax(nn.Module):
    """Wraps a logits model so the exported graph ends in Softmax."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.softmax(self.model(x), dim=1)


def train(model, x, y, epochs, seed, lr=1e-2, batch=32):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    return model


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def export(model, example, input_name, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    wrapped = WithSoftmax(model).eval()
    torch.onnx.export(
        wrapped, example, path,
        input_names=[input_name], output_names=["probabilities"],
        dynamic_axes={input_name: {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=OPSET, do_constant_folding=True)
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m)
    m.producer_name = "dabba tools/train_examples.py"
    m.doc_string = "digits classifier; input scaled to [0, 1]; output softmax probabilities"
    onnx.save(m, path)
    return os.path.getsize(path)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    np.random.seed(0)
    torch.manual_seed(0)

    digits = load_digits()
    pixels = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        pixels, labels, test_size=0.25, random_state=42, stratify=labels)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    xe, ye = torch.from_numpy(x_te), torch.from_numpy(y_te)

    os.makedirs(DATA, exist_ok=True)
    np.save(os.path.join(DATA, "digits_test_pixels.npy"), np.ascontiguousarray(x_te))
    np.save(os.path.join(DATA, "digits_test_labels.npy"), np.ascontiguousarray(y_te))

    results = []
    failed = False

    torch.manual_seed(1)
    mlp1 = train(MLP(128, 64), xt, yt, epochs=30, seed=1)
    torch.manual_seed(2)
    mlp2 = train(MLP(96, 48), xt, yt, epochs=60, seed=2)
    torch.manual_seed(3)
    cnn = train(CNN(), xt.reshape(-1, 1, 8, 8), yt, epochs=30, seed=3, lr=5e-3)

    jobs = [
        ("digits_mlp/1", mlp1, xe, "pixels", torch.zeros(1, 64)),
        ("digits_mlp/2", mlp2, xe, "pixels", torch.zeros(1, 64)),
        ("digits_cnn/1", cnn, xe.reshape(-1, 1, 8, 8), "image", torch.zeros(1, 1, 8, 8)),
    ]
    for name, model, x_eval, input_name, example in jobs:
        acc = accuracy(model, x_eval, ye)
        size = export(model, example, input_name, os.path.join(REPO, name, "model.onnx"))
        print(f"{name}: held-out accuracy {acc * 100:.2f}% ({len(y_te)} samples), "
              f"model.onnx {size} bytes")
        results.append(f"{name} {acc:.4f}")
        if acc < MIN_ACCURACY:
            failed = True

    with open(os.path.join(DATA, "accuracy.txt"), "w") as f:
        f.write("# held-out accuracy (torch, before export); N = %d\n" % len(y_te))
        f.write("\n".join(results) + "\n")
    if failed:
        print(f"error: an example model is below {MIN_ACCURACY * 100:.0f}% accuracy",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
