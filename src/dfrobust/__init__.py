"""dfrobust: red-team and harden deepfake image detectors.

Conventions kept by every module (see docs/architecture.md):

* images are float tensors ``N x 3 x H x W`` in ``[0, 1]``; a detector maps them to 2 logits;
* labels: ``FAKE = 0``, ``REAL = 1``; a score is ``P(real)``;
* everything is batched, device-agnostic and seeded.
"""

from dfrobust.constants import CLASS_NAMES, FAKE, REAL

__version__ = "0.1.0"

__all__ = ["CLASS_NAMES", "FAKE", "REAL", "__version__"]
