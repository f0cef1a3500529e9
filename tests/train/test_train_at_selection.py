"""Adversarial fine-tuning that keeps a detector: the clean-accuracy floor of model selection and the calibrated threshold."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfrobust.data.dataset import load_split
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.evaluation import evaluate_detector
from dfrobust.models.checkpoint import load_detector
from dfrobust.models.detectors import build_detector
from dfrobust.roles.hardened import hardened_roles
from dfrobust.train import loop
from dfrobust.train.calibration import last_linear, margin_threshold, p_real_threshold, shift_head, shift_logits, shifted_head
from dfrobust.train.config import TrainConfig
from dfrobust.train.loop import carve_validation, train_detector
from dfrobust.train.selection import epoch_score

TUNE = dict(arch="tiny", epochs=3, optimizer="adam", lr=0.005, batch_size=8, val_fraction=0.25, adversarial="pgd", adv_steps=2)


def _logits(margins: list[float]) -> torch.Tensor:
    return torch.tensor([[0.0, m] for m in margins])


def test_the_threshold_is_the_cut_of_best_accuracy_nearest_zero() -> None:
    y = torch.tensor([0, 0, 1, 1])
    # every fake above 0: the 0.5 threshold calls them real, the cut between the classes does not
    assert margin_threshold(_logits([1.0, 2.0, 3.0, 4.0]), y) == 2.5
    # already separated at 0: nothing moves
    assert margin_threshold(_logits([-2.0, -1.0, 1.0, 2.0]), y) == 0.0
    # one class only: a cut beyond every margin of the other side
    assert margin_threshold(_logits([3.0, 5.0]), torch.tensor([0, 0])) == 6.0
    # equal margins cannot be split: the best realisable cut puts both on one side
    tau = margin_threshold(_logits([1.0, 1.0, 2.0]), torch.tensor([0, 1, 1]))
    assert tau == 0.0  # calling all three real (2/3) is as good as any cut that can be made
    with pytest.raises(DfrobustError, match="at least one"):
        margin_threshold(torch.empty(0, 2), torch.empty(0, dtype=torch.long))
    assert p_real_threshold(0.0) == 0.5 and p_real_threshold(2.5) > 0.9


def test_the_shifted_head_decides_by_the_threshold_and_restores_exactly() -> None:
    torch.manual_seed(0)
    model = build_detector("tiny").eval()
    x = torch.rand(32, 3, 16, 16)
    with torch.no_grad():
        logits = model(x)
    d = logits[:, 1] - logits[:, 0]
    s = d.sort().values
    tau = float(s[15] + s[16]) / 2  # between two margins: no image sits on the cut, where rounding would decide
    bias = last_linear(model).bias.detach().clone()
    with shifted_head(model, tau), torch.no_grad():
        shifted = model(x)
    assert torch.equal(last_linear(model).bias, bias)  # training goes on from the exact former head
    assert torch.equal(shifted.argmax(1), (d - tau > 0).long())
    assert torch.allclose(shifted, shift_logits(logits, tau), atol=1e-5)
    shift_head(model, tau)
    assert not torch.equal(last_linear(model).bias, bias)


def test_the_floor_keeps_the_robust_epoch_that_is_still_a_detector() -> None:
    healthy = {"real_recall": 0.9, "fake_recall": 0.8, "auroc": 0.95}
    near = {**healthy, "accuracy": 0.85, "loss": 0.3}  # within the floor, little robustness
    far = {**healthy, "accuracy": 0.65, "loss": 0.6}  # 20 points lost, more robustness
    flat = {"real_recall": 0.0, "fake_recall": 1.0, "auroc": 0.5, "accuracy": 0.5, "loss": 0.7}
    weak, strong, constant = {"pgd_accuracy": 0.1}, {"pgd_accuracy": 0.4}, {"pgd_accuracy": 0.5}
    # without a floor robust selection prefers the epoch that gave up its clean accuracy
    assert epoch_score(far, strong) > epoch_score(near, weak) > epoch_score(flat, constant)
    # with a floor of 0.77 (a start at 0.87, 10 points allowed) the detector wins
    assert epoch_score(near, weak, 0.77) > epoch_score(far, strong, 0.77) > epoch_score(flat, constant, 0.77)
    # within the floor robustness ranks; below it the most accurate epoch is the fallback
    assert epoch_score(near, strong, 0.77) > epoch_score({**near, "accuracy": 0.9}, weak, 0.77)
    assert epoch_score(far, weak, 0.95) > epoch_score({**far, "accuracy": 0.6}, strong, 0.95)
    assert epoch_score(near) == [0.85, -0.3]  # plain training: accuracy, then loss


def test_selection_ranks_by_every_attack_not_by_pgd_alone() -> None:
    """A gradient-masked epoch (PGD fails, APGD succeeds) loses to one robust to all attacks: the quick preset's seed 0."""
    val = {"real_recall": 0.9, "fake_recall": 0.9, "auroc": 0.95, "accuracy": 0.92, "loss": 0.3}
    masked = {"pgd_accuracy": 0.84, "apgd_accuracy": 0.06, "fgsm_accuracy": 0.42, "robust_accuracy": 0.06}
    robust = {"pgd_accuracy": 0.26, "apgd_accuracy": 0.22, "fgsm_accuracy": 0.30, "robust_accuracy": 0.22}
    assert epoch_score(val, robust) > epoch_score(val, masked)
    assert epoch_score(val, robust, 0.8) > epoch_score(val, masked, 0.8)


def test_settings_are_checked_and_stay_out_of_old_identities(toy_model: Path) -> None:
    start = str(toy_model)
    with pytest.raises(DfrobustError, match="only apply to adversarial"):
        TrainConfig(arch="tiny", adv_calibrate=True)
    with pytest.raises(DfrobustError, match="resume-from"):
        TrainConfig(**TUNE, adv_max_clean_drop=0.1)
    with pytest.raises(DfrobustError, match=r"\[0, 1\]"):
        TrainConfig(**TUNE, adv_max_clean_drop=1.5, resume_from=start)
    with pytest.raises(DfrobustError, match="validation split"):
        TrainConfig(**{**TUNE, "val_fraction": 0.0}, adv_calibrate=True)
    with pytest.raises(DfrobustError, match="true or false"):
        TrainConfig(**TUNE, adv_calibrate="yes")  # type: ignore[arg-type]
    off = TrainConfig(**TUNE).identity()
    assert "adv_max_clean_drop" not in off and "adv_calibrate" not in off
    on = TrainConfig(**TUNE, adv_max_clean_drop=0.1, adv_calibrate=True, resume_from=start).identity()
    assert on["adv_max_clean_drop"] == 0.1 and on["adv_calibrate"] is True


def test_the_hardened_roles_pass_the_guards_only_when_set() -> None:
    cfg = {"run": {}, "train": {"hardened": {"roles": ["at", "trades"], "max_clean_drop": 0.1, "calibrate": True}}}
    for role in hardened_roles(cfg):
        assert role.recipe["adv_max_clean_drop"] == 0.1 and role.recipe["adv_calibrate"] is True
    for role in hardened_roles({"run": {}, "train": {"hardened": {"roles": ["at"]}}}):
        assert "adv_max_clean_drop" not in role.recipe and "adv_calibrate" not in role.recipe


def test_fine_tuning_keeps_the_calibrated_epoch_within_the_floor(
    toy_dataset: Path, toy_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # held-out PGD accuracy rises every epoch; the faked validation accuracy of epoch 3 falls 30 points below the start
    checks = iter([{"pgd_accuracy": p, "fgsm_accuracy": p} for p in (0.1, 0.2, 0.6)])
    monkeypatch.setattr(loop, "robustness_check", lambda *args: next(checks))
    real_eval, epochs = loop.evaluate_detector, []
    real_epoch = loop.train_one_epoch

    def epoch(*args, **kwargs):
        epochs.append(args[4])
        return real_epoch(*args, **kwargs)

    def evaluate(model, images, *args, **kwargs):
        out = real_eval(model, images, *args, **kwargs)
        if kwargs.get("gradients") is False and epochs and epochs[-1] == 3:
            out = {**out, "accuracy": out["accuracy"] - 0.3}
        return out

    monkeypatch.setattr(loop, "train_one_epoch", epoch)
    monkeypatch.setattr(loop, "evaluate_detector", evaluate)
    cfg = TrainConfig(**TUNE, resume_from=str(toy_model), adv_max_clean_drop=0.1, adv_calibrate=True)
    out = tmp_path / "at.safetensors"
    meta = train_detector(toy_dataset, cfg, out)
    m = meta["metrics"]
    start = m["start"]["val_accuracy"]
    kept = [h for h in meta["history"] if h["epoch"] == m["selected_epoch"]][0]
    # epoch 3 has the best PGD accuracy but is below the floor; of the others the more robust one is kept if it is within it
    assert m["selected_epoch"] != 3
    eligible = [h for h in meta["history"] if h["val_accuracy"] >= start - 0.1 - 1e-9 and h["epoch"] != 3]
    if eligible:
        assert m["selected_epoch"] == max(eligible, key=lambda h: (h["heldout_pgd_accuracy"], h["val_accuracy"]))["epoch"]
    assert "below the start model's validation accuracy" in m["selection"] and "calibrated" in m["selection"]
    assert m["calibration"]["epoch"] == m["selected_epoch"]
    assert m["calibration"]["p_real_threshold"] == pytest.approx(p_real_threshold(kept["threshold_tau"]))
    # the saved model holds its threshold in its head: at 0.5 it is as accurate as its calibrated epoch was
    _, val = carve_validation(load_split(toy_dataset, "train"), cfg.val_fraction, cfg.seed)
    model, _ = load_detector(out)
    assert evaluate_detector(model, val, gradients=False)["accuracy"] == pytest.approx(kept["val_accuracy"])
