"""Difficulty knobs of the face swap (no heavy imports: the CLI reads their defaults for --help)."""

from __future__ import annotations

from dataclasses import dataclass

from dfrobust.errors import DfrobustError


@dataclass(frozen=True)
class SwapKnobs:
    """Difficulty knobs of a face swap; each fake draws its own values around these means.

    Attributes:
        feather: width of the blend edge as a fraction of the face width (wider = subtler seam).
        resample: mean down-sampling factor of the "generator" (1 = lossless, larger = blurrier face).
        color_mismatch: 0 = the swapped face takes the target's colour statistics fully,
            1 = it keeps its own colours.
        artifacts: amplitude of the generator's period-2 checkerboard, in pixel units (0 = none).
    """

    # Defaults: low-frequency cues (a blurry, off-colour inner face), no checkerboard. With the
    # old default checkerboard (artifacts 0.12) detectors keyed on a pattern larger than the
    # paper's FGSM eps, so FGSM barely moved them and DIP erased the cue (see the README).
    feather: float = 0.08
    resample: float = 3.0
    color_mismatch: float = 0.6
    artifacts: float = 0.0

    def validate(self) -> None:
        """One-line errors for knob values that make no sense."""
        if not 0 < self.feather <= 1:
            raise DfrobustError(f"--feather must be in (0, 1] (fraction of the face width), got {self.feather}")
        if self.resample < 1:
            raise DfrobustError(f"--resample must be >= 1 (1 = no generator loss), got {self.resample}")
        if not 0 <= self.color_mismatch <= 1:
            raise DfrobustError(f"--color-mismatch must be in [0, 1], got {self.color_mismatch}")
        if not 0 <= self.artifacts <= 0.5:
            raise DfrobustError(f"--artifacts must be in [0, 0.5] (amplitude in [0, 1] pixel units), got {self.artifacts}")


@dataclass(frozen=True)
class SynthKnobs(SwapKnobs):
    """The swap knobs (:class:`SwapKnobs`) plus the number of identities.

    Attributes:
        identities: number of distinct identities (default: one per 8 images, at least 8).
    """

    identities: int | None = None

    def validate(self) -> None:
        """One-line errors for knob values that make no sense."""
        super().validate()
        if self.identities is not None and self.identities < 4:
            raise DfrobustError(f"--identities must be at least 4 (two per split), got {self.identities}")
