"""How far is the train-mode Lipschitz penalty from each image's own input gradient?

With BatchNorm in train mode the gradient of the batch-summed logit (what ``--lipschitz`` with
``--lipschitz-batchnorm batch`` penalises, as the authors did) also carries the terms through the
batch statistics. This script compares, on one batch of training images, per logit:

* ``batch``: grad of the batch-summed logit, train mode (the default penalty);
* ``per_image_train``: each image's own gradient, batch statistics held as in train mode
  (brute force, one backward per image);
* ``per_image_eval``: each image's own gradient in eval mode (what the deployed model has, and
  what ``--lipschitz-batchnorm eval`` penalises).

Prints one JSON line per model: the three sums of squared gradient norms and the mean relative
difference of ``batch`` against the other two.

    .venv/bin/python benchmarks/bench_lipschitz_batchnorm.py --data data/synth random models/resnet18.safetensors
"""

from __future__ import annotations

import argparse
import json

import torch

from dfrobust.data.dataset import load_split
from dfrobust.models.checkpoint import load_detector
from dfrobust.models.detectors import build_detector
from dfrobust.models.gradients import logit_input_gradients


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over logits and images of ``||a - b|| / ||b||``."""
    return float(((a - b).flatten(2).norm(dim=2) / b.flatten(2).norm(dim=2)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("models", nargs="+", help="checkpoints, or 'random' for a fresh resnet18")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = load_split(args.data, "train", limit=args.batch_size, seed=0).images()
    for name in args.models:
        model = build_detector("resnet18") if name == "random" else load_detector(name)[0]
        model.train()
        xr = x.clone().requires_grad_(True)
        z = model(xr)
        batch = logit_input_gradients(z, xr)
        own = torch.stack(
            [torch.stack([torch.autograd.grad(z[b, i], xr, retain_graph=True)[0][b] for b in range(len(x))]) for i in range(z.shape[1])]
        )
        model.eval()
        xe = x.clone().requires_grad_(True)
        evalg = logit_input_gradients(model(xe), xe)
        print(json.dumps({
            "bench": "lipschitz_batchnorm_coupling", "model": name, "batch_size": len(x),
            "sum_sq_batch": float(batch.pow(2).sum()), "sum_sq_per_image_train": float(own.pow(2).sum()),
            "sum_sq_per_image_eval": float(evalg.pow(2).sum()),
            "rel_diff_batch_vs_per_image_train": relative_difference(batch, own),
            "rel_diff_batch_vs_per_image_eval": relative_difference(batch, evalg),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
