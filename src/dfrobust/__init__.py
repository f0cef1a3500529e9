"""dfrobust: red-team and harden deepfake image detectors.

Conventions kept by every module (see docs/architecture.md):

* images are float tensors ``N x 3 x H x W`` in ``[0, 1]``; a detector maps them to 2 logits;
* labels: ``FAKE = 0``, ``REAL = 1``; a score is ``P(real)``; attacks read the other common
  convention when told (``attack(model, x, y, labels="fake=1")``);
* everything is batched, device-agnostic and seeded.

The public API is importable from here; each name is imported on first use, so
``import dfrobust`` stays light::

    from dfrobust import load_detector, load_split, make_attack, evaluate_detector
    model, meta = load_detector("runs/quick/models/resnet18.safetensors")
    fakes = load_split("runs/quick/data", "test", classes=["fake"], limit=16)
    adv = make_attack("fgsm", eps=0.02)(model, fakes.images(), fakes.y)

Any other classifier joins through :func:`wrap_detector` (a detector card's options as arguments)::

    model = wrap_detector(torchvision.models.resnet18(num_classes=1), output="logit", fake_index=1, input_size=224)
    x_adv = adversarial_images("pgd", model, x, y, labels="fake=1", eps=8 / 255)

The library logs through :mod:`logging` under the ``dfrobust`` logger (progress lines under
``dfrobust.progress``) and adds no handler of its own.
"""

import importlib
import logging
from typing import Any

from dfrobust.constants import CLASS_NAMES, FAKE, REAL

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported when the name is first used).
API: dict[str, str] = {
    "load_detector": "dfrobust.models.checkpoint",
    "load_card": "dfrobust.models.cards",
    "wrap_detector": "dfrobust.models.wrap",
    "make_purifier": "dfrobust.defenses.base",
    "build_detector": "dfrobust.models.detectors",
    "load_split": "dfrobust.data.layouts",
    "load_images": "dfrobust.data.layouts",
    "evaluate_detector": "dfrobust.evaluate.evaluation",
    "make_attack": "dfrobust.attacks.base",
    "adversarial_images": "dfrobust.attacks.base",
    "run_attack": "dfrobust.studies.attack_run",
    "AttackConfig": "dfrobust.studies.attack_run",
    "dip_purify": "dfrobust.defenses.dip",
    "DipConfig": "dfrobust.defenses.dip",
    "TrainConfig": "dfrobust.train.config",
    "train_detector": "dfrobust.train.loop",
}

__all__ = ["CLASS_NAMES", "FAKE", "REAL", "__version__", *API]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    """Import a public name of :data:`API` from its module on first use."""
    module = API.get(name)
    if module is None:
        raise AttributeError(f"module 'dfrobust' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
