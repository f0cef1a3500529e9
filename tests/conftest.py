"""Shared fixtures: a toy dataset folder and a small trained detector, made in seconds.

The toy data is deliberately easy (fakes carry a faint high-frequency patch in the centre), so
that a tiny CNN learns it in a few steps and attack/defense tests have a correct model to
work on without waiting for the synthetic face generator or a real training run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dfrobust.constants import FAKE, REAL
from dfrobust.data.manifest import DatasetWriter
from dfrobust.models.checkpoint import save_detector
from dfrobust.models.detectors import build_detector

os.environ.setdefault("DFROBUST_QUIET", "1")
# One intra-op thread: the tests run many tiny ops, for which a second OpenMP thread costs more
# than it gives (and on a loaded 2-core machine two threads wait on each other).
torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"
FFHQ_DIR = SHARED / "data" / "ffhq-real-200"


class Linear(nn.Module):
    """A linear 2-class model on flattened images: logits = W x + b (attacks have closed forms on it)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.lin = nn.Linear(weight.shape[1], 2)
        with torch.no_grad():
            self.lin.weight.copy_(weight)
            self.lin.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def toy_image(rng: np.random.Generator, size: int, fake: bool) -> np.ndarray:
    """A smooth random colour field; fakes get a checkerboard patch blended into the centre."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.2, 0.8, 3)
    slope = rng.uniform(-0.3, 0.3, (3, 2))
    img = base[None, None] + xx[..., None] * slope[:, 0] + yy[..., None] * slope[:, 1]
    img += rng.normal(0, 0.02, img.shape)
    if fake:
        q = size // 4
        checker = ((np.indices((2 * q, 2 * q)).sum(0) % 2) * 2 - 1)[..., None] * 0.12
        img[q : 3 * q, q : 3 * q] += checker
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_toy_dataset(out: Path, n_per_class_split: int = 24, size: int = 32, seed: int = 0) -> Path:
    """Write a toy dataset folder: ``n_per_class_split`` images per class in train and in test."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(out, created_by={"command": "tests toy dataset", "seed": seed, "size": size}) as writer:
        for split in ("train", "test"):
            for i in range(2 * n_per_class_split):
                label = FAKE if i % 2 == 0 else REAL
                writer.add(toy_image(rng, size, fake=label == FAKE), label=label, split=split, identity=i)
    return out


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32x32 toy dataset folder (24 fake + 24 real per split)."""
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "data")


def train_tiny(data_dir: Path, steps: int = 150, seed: int = 0) -> torch.nn.Module:
    """Train the ``tiny`` detector on a toy dataset with plain Adam (tests only)."""
    from dfrobust.data.dataset import load_split

    torch.manual_seed(seed)
    train = load_split(data_dir, "train")
    model = build_detector("tiny")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = train.images(), train.y
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def toy_model(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``tiny`` detector trained on :func:`toy_dataset`, saved as a checkpoint; returns its path."""
    model = train_tiny(toy_dataset)
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_detector(model, path, {"input_size": [32, 32], "seed": 0, "training": {"note": "tests fixture"}})
    return path


@pytest.fixture(scope="session")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study, run once for the session (the pipeline and report layout tests); tests read it and never change it."""
    from dfrobust.config import study_config
    from dfrobust.pipeline import reproduce

    run = tmp_path_factory.mktemp("run") / "tiny"
    reproduce(study_config("tiny"), run, device="cpu")
    return run


@pytest.fixture
def tiny_run(built_run: Path, tmp_path: Path) -> Path:
    """A private copy of the built run, for a test that reruns or changes it."""
    return Path(shutil.copytree(built_run, tmp_path / "tiny"))
