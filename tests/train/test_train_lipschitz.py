"""Lipschitz regularisation (eq. 7): value and weight-gradient against brute force, effect on gradients."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dfrobust.data.dataset import load_split
from dfrobust.models.detectors import build_detector
from dfrobust.models.gradients import input_gradient_norms
from dfrobust.train.lipschitz import lipschitz_penalty, training_loss


def brute_force_penalty(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """eq. (7)'s bracket, one image and one logit at a time (differentiable)."""
    terms = []
    for xb in x:
        xb = xb[None].clone().requires_grad_(True)
        z = model(xb)[0]
        for i in range(len(z)):
            (g,) = torch.autograd.grad(z[i], xb, create_graph=True)
            terms.append(g.pow(2).sum() / (len(z) * xb.numel()))
    return torch.stack(terms).sum() / len(x)


def test_penalty_and_its_weight_gradient_match_brute_force() -> None:
    torch.manual_seed(0)
    model = build_detector("tiny")
    x = torch.rand(4, 3, 16, 16)
    xr = x.clone().requires_grad_(True)
    fast = lipschitz_penalty(model(xr), xr)
    slow = brute_force_penalty(model, x)
    assert fast.item() > 0
    assert torch.allclose(fast, slow, rtol=1e-5)
    params = [p for name, p in model.named_parameters() if name != "backbone.fc.bias"]  # the bias has no input gradient
    g_fast = torch.autograd.grad(fast, params)
    g_slow = torch.autograd.grad(slow, params)
    for a, b in zip(g_fast, g_slow):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-9)


def test_batchnorm_eval_mode_penalises_each_images_own_gradient() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model.train()
    model(torch.rand(8, 3, 12, 12))  # give BatchNorm running statistics ...
    model[1].momentum = 0.0  # ... and keep them through the training passes below
    x, y = torch.rand(3, 3, 12, 12), torch.tensor([0, 1, 1])
    model.eval()
    per_image = brute_force_penalty(model, x)
    model.train()
    # the default ("batch", as the authors) differs through the batch statistics; "eval" is exact
    _, _, batch_pen = training_loss(model, x, y, 1.0, batchnorm="batch")
    _, logits, eval_pen = training_loss(model, x, y, 1.0, batchnorm="eval")
    assert torch.allclose(eval_pen, per_image, rtol=1e-5)
    assert not torch.allclose(batch_pen, per_image, rtol=1e-2)
    assert model.training and logits.requires_grad


def test_rademacher_estimator_is_unbiased() -> None:
    torch.manual_seed(2)
    model = build_detector("tiny")
    x = torch.rand(4, 3, 16, 16).requires_grad_(True)
    z = model(x)
    exact = lipschitz_penalty(z, x).item()
    gen = torch.Generator().manual_seed(0)
    draws = [lipschitz_penalty(z, x, "rademacher", gen).item() for _ in range(200)]
    assert abs(sum(draws) / len(draws) - exact) < 0.15 * exact
    assert max(draws) != min(draws)  # it is random, not the exact value in disguise


def test_rademacher_under_batchnorm_estimates_the_batch_penalty() -> None:
    """In train mode BatchNorm couples the images: shared signs are unbiased, per-image ones are not."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model.train()
    x = torch.rand(6, 3, 12, 12).requires_grad_(True)
    z = model(x)
    exact = lipschitz_penalty(z, x).item()
    gen = torch.Generator().manual_seed(0)
    shared = [lipschitz_penalty(z, x, "rademacher", gen, coupled=True).item() for _ in range(400)]
    per_image = [lipschitz_penalty(z, x, "rademacher", gen, coupled=False).item() for _ in range(400)]
    assert abs(sum(shared) / len(shared) - exact) < 0.1 * exact
    assert abs(sum(per_image) / len(per_image) - exact) > 0.2 * exact  # the bias the shared signs avoid


def test_training_loss_adds_lambda_times_penalty() -> None:
    torch.manual_seed(3)
    model = build_detector("tiny")
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    plain, _, none = training_loss(model, x, y, 0.0)
    reg, logits, penalty = training_loss(model, x, y, 1e4)
    assert none is None and penalty is not None
    assert torch.allclose(reg, plain + 1e4 * penalty, rtol=1e-5)
    assert torch.allclose(logits, model(x))


def test_regulariser_shrinks_input_gradients_on_the_toy_task(toy_dataset: Path) -> None:
    train = load_split(toy_dataset, "train")
    x, y = train.images(), train.y
    norms, accuracies = {}, {}
    for lam in (0.0, 3e4):
        torch.manual_seed(0)
        model = build_detector("tiny")
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(40):
            loss, _, _ = training_loss(model, x, y, lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        norms[lam] = input_gradient_norms(model, x).mean().item()
        accuracies[lam] = (model(x).argmax(1) == y).float().mean().item()
    assert norms[3e4] < 0.7 * norms[0.0], norms
    assert accuracies[3e4] >= 0.8, accuracies
