"""The training configuration, with the paper's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from dfrobust.data.augment import PAPER_WIDTH
from dfrobust.errors import DfrobustError
from dfrobust.train.lipschitz import BATCHNORM_MODES, ESTIMATORS

#: Fields that change how a run is executed but not what it computes (ignored when deciding
#: whether a finished model or a partial run belongs to this config).
EXECUTION_FIELDS = ("device", "eval_batch_size")

#: Optimizers a detector can train with (the paper: SGD with momentum).
OPTIMIZERS = ("sgd", "adam")

#: Settings added after models were first trained, with their defaults: left out of the identity
#: while at that default, so that models and run folders made before they existed stay valid.
LATER_FIELDS = {"optimizer": "sgd"}


@dataclass
class TrainConfig:
    """Everything that determines a trained detector (JSON-serialisable with ``asdict``).

    Defaults are the paper's: ResNet-18 from random init, SGD with lr 1e-3 and momentum 0.9,
    batch 16, 5 epochs, no weight decay, raw ``[0, 1]`` pixels, horizontal flips only.

    Attributes:
        arch: torchvision architecture name (``resnet18``, ``vgg16``, ...; ``tiny`` for tests).
        epochs: epochs to train (with ``resume_from``: epochs added to that model).
        optimizer: ``sgd`` (the paper: SGD with ``momentum``) or ``adam`` (Adam with default
            betas; ``momentum`` is unused).
        lr, momentum, weight_decay: optimizer settings.
        batch_size: training batch size.
        eval_batch_size: batch size of validation and test evaluation.
        normalization: ``none`` (the paper) or ``imagenet`` (a layer inside the model).
        activation: ``relu`` or ``halfhuber`` (the authors' smooth ReLU for double backprop).
        init: local torchvision state dict to start from (e.g. ImageNet weights); ``None`` =
            random init. Nothing is downloaded.
        resume_from: a dfrobust checkpoint to continue training (the paper's blur model is the
            ResNet trained 10 more epochs with blur).
        hflip: random horizontal flips.
        blur_fraction: fraction of training images blurred (the paper's blur model: 0.4).
        blur_sigma: Gaussian sigma range ``(lo, hi)`` at ``blur_reference_width`` pixels; scaled
            to the dataset's width.
        blur_reference_width: width at which ``blur_sigma`` is given (the paper's 300 px).
        lipschitz: lambda of eq. (7) (0 = off; the paper's set is 5, 50, 500, 5000).
        lipschitz_estimator: ``rademacher`` (default: one backward pass with random signs per
            logit, shared by the batch where BatchNorm couples its images, an unbiased estimate
            of eq. (7) and of its gradient, ~2.7x a plain step on the CPU) or ``exact`` (one
            backward per logit, ~4x).
        lipschitz_batchnorm: ``batch`` (penalty on the training pass, BatchNorm on batch
            statistics, as the authors) or ``eval`` (a second pass on running statistics: each
            image's own gradient, as at test time); see :mod:`dfrobust.train.lipschitz`.
        val_fraction: share of each class of the training split held out for model selection
            (0 = keep the last epoch). The test split is never used for selection.
        seed: seeds init, the validation split, batch order, augmentation and dropout.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: mixed precision (bf16, or fp16 with loss scaling) when training on CUDA; ignored
            on the CPU.
    """

    arch: str = "resnet18"
    epochs: int = 5
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 16
    eval_batch_size: int = 64
    normalization: str = "none"
    activation: str = "relu"
    init: str | None = None
    resume_from: str | None = None
    hflip: bool = True
    blur_fraction: float = 0.0
    blur_sigma: tuple[float, float] = (3.0, 5.0)
    blur_reference_width: int = PAPER_WIDTH
    lipschitz: float = 0.0
    lipschitz_estimator: str = "rademacher"
    lipschitz_batchnorm: str = "batch"
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        self.blur_sigma = (float(self.blur_sigma[0]), float(self.blur_sigma[1]))
        self.check_ranges()
        if self.epochs < 1:
            raise DfrobustError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise DfrobustError(f"--batch-size must be at least 2, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise DfrobustError(f"unknown optimizer {self.optimizer!r}; use one of {OPTIMIZERS}")
        if self.lr <= 0:
            raise DfrobustError(f"--lr must be positive, got {self.lr}")
        if self.lipschitz < 0:
            raise DfrobustError(f"--lipschitz must be >= 0, got {self.lipschitz}")
        if self.lipschitz_estimator not in ESTIMATORS:
            raise DfrobustError(f"unknown Lipschitz estimator {self.lipschitz_estimator!r}; use one of {ESTIMATORS}")
        if self.lipschitz_batchnorm not in BATCHNORM_MODES:
            raise DfrobustError(f"unknown Lipschitz BatchNorm mode {self.lipschitz_batchnorm!r}; use one of {BATCHNORM_MODES}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise DfrobustError(f"--val-fraction must lie in [0, 1), got {self.val_fraction}")
        if self.init is not None and self.resume_from is not None:
            raise DfrobustError("give --init (torchvision weights) or --resume-from (a dfrobust model), not both")

    def to_dict(self) -> dict[str, Any]:
        """``dataclasses.asdict`` with the sigma range as a list (as JSON gives it back)."""
        out = asdict(self)
        out["blur_sigma"] = list(self.blur_sigma)
        return out

    def check_ranges(self) -> None:
        """One-line errors for values no optimizer or loop can use (NaN, negative rates, empty batches, unknown arch)."""
        import math

        from dfrobust.models.detectors import check_architecture

        for name in ("lr", "momentum", "weight_decay", "lipschitz", "blur_fraction", "val_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DfrobustError(f"--{name.replace('_', '-')} must be a finite number, got {value!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "blur_reference_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DfrobustError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise DfrobustError(f"--momentum must lie in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise DfrobustError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.blur_fraction <= 1.0:
            raise DfrobustError(f"--blur-fraction must lie in [0, 1], got {self.blur_fraction}")
        lo, hi = self.blur_sigma
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
            raise DfrobustError(f"--blur-sigma needs 0 <= LO <= HI, got {lo} {hi}")
        check_architecture(self.arch)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. a preset's ``train`` section); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DfrobustError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def identity(self) -> dict[str, Any]:
        """The settings that determine the result (without :data:`EXECUTION_FIELDS`)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in EXECUTION_FIELDS and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
