"""Is the synthetic real/fake task realistic? Two classifiers on the same dataset.

1. Global colour statistics only (logistic regression on per-channel histograms): should stay
   near chance (<= 65% test accuracy), i.e. no global cue gives the class away.
2. A CNN trained from scratch with the paper's settings (SGD lr 1e-3, momentum 0.9, batch 16,
   5 epochs, random init, inputs in [0, 1], horizontal flips): should reach >= 90%, i.e. the
   swap artefacts are learnable.

Prints one JSON line per measurement (and per epoch). Example::

    python benchmarks/data_realism.py --n 2000 --size 64 --arch resnet18
    python benchmarks/data_realism.py --data runs/x/data --arch vgg16 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dfrobust.data.dataset import ImageSet, load_split
from dfrobust.data.manifest import manifest_hash
from dfrobust.data.synthetic import generate_synthetic
from dfrobust.models.detectors import build_detector


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def colour_histograms(images: torch.Tensor, bins: int = 32) -> np.ndarray:
    """Per-channel intensity histograms (normalised) of ``uint8`` images ``N x 3 x H x W``: ``N x 3*bins``."""
    x = images.reshape(len(images), 3, -1).long() * bins // 256
    onehot = torch.zeros(len(images), 3, bins).scatter_add_(2, x, torch.ones_like(x, dtype=torch.float32))
    return (onehot / x.shape[-1]).reshape(len(images), -1).numpy()


def histogram_accuracy(train: ImageSet, test: ImageSet) -> float:
    """Test accuracy of logistic regression on per-channel colour histograms."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    clf.fit(colour_histograms(train.x), train.y.numpy())
    return float((clf.predict(colour_histograms(test.x)) == test.y.numpy()).mean())


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: ImageSet, batch: int = 128) -> float:
    model.eval()
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y, _ in data.batches(batch))
    return correct / len(data)


def train_paper_settings(arch: str, train: ImageSet, test: ImageSet, epochs: int, seed: int) -> float:
    """Train ``arch`` from scratch as the paper's code does; emit per-epoch test accuracy; return the last."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_detector(arch)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    acc = float("nan")
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(train), generator=gen)
        losses = []
        for i in range(0, len(order), 16):
            idx = order[i : i + 16]
            x, y = train.images(idx), train.y[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        acc = accuracy(model, test)
        emit(measure="cnn_epoch", arch=arch, epoch=epoch, train_loss=float(np.mean(losses)), test_accuracy=acc,
             seconds=round(time.perf_counter() - t0, 1))  # fmt: skip
    return acc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="an existing dataset folder (default: generate one)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", action="append", help="CNN(s) to train (repeatable; default resnet18; 'none' skips)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--knob", action="append", default=[], help="synthetic knob NAME=VALUE (e.g. feather=0.1)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DFROBUST_QUIET", "1")
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            knobs = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.knob)}
            t0 = time.perf_counter()
            data = generate_synthetic(Path(tmp) / "data", n=args.n, size=args.size, seed=args.seed, **knobs)
            emit(measure="generate", n=args.n, size=args.size, seed=args.seed, knobs=knobs, seconds=round(time.perf_counter() - t0, 1))
        train, test = load_split(data, "train"), load_split(data, "test")
        emit(measure="histogram_logreg", test_accuracy=histogram_accuracy(train, test), n_train=len(train), n_test=len(test),
             target="<= 0.65", data_manifest_hash=manifest_hash(data))  # fmt: skip
        for arch in args.arch or ["resnet18"]:
            if arch == "none":
                continue
            t0 = time.perf_counter()
            acc = train_paper_settings(arch, train, test, args.epochs, args.seed)
            emit(measure="cnn", arch=arch, epochs=args.epochs, test_accuracy=acc, target=">= 0.90",
                 settings="SGD lr 1e-3 momentum 0.9 batch 16, random init, [0,1] inputs, hflip",
                 seconds=round(time.perf_counter() - t0, 1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
