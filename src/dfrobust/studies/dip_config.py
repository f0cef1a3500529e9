"""The options of the DIP study (:class:`DipStudyConfig`, the paper's defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dfrobust.constants import DECISION_THRESHOLD
from dfrobust.defenses.base import available_purifiers
from dfrobust.defenses.dip import DipConfig, default_classify_at
from dfrobust.errors import DfrobustError

#: Fig 5 iterations as fractions of the run (the paper's 10,000: 100, 1,000, 3,000, 6,000, 9,000, 10,000).
KEEP_FRACTIONS = (0.01, 0.1, 0.3, 0.6, 0.9, 1.0)


@dataclass
class DipStudyConfig:
    """Options of the DIP study (paper defaults); JSON-serialisable with :func:`dataclasses.asdict`."""

    dip: DipConfig = field(default_factory=DipConfig)
    per_category: int = 10  #: images per category
    classify_at: int | None = None  #: T; default 60% of dip.iterations (6,000 of 10,000)
    stop_at: int | None = None  #: stop the optimisation here (>= T); default: run dip.iterations
    thresholds: tuple[float, ...] = (DECISION_THRESHOLD, 0.25)
    window: int = 10  #: recorded samples in the window average around T
    keep: tuple[int, ...] | None = None  #: iterations whose outputs are kept (Fig 5); default KEEP_FRACTIONS
    batch_size: int = 8  #: images purified at once (one network each)
    seed: int = 0
    device: str = "auto"
    transforms: bool = True  #: also score the cheap purifiers below beside DIP
    purifiers: tuple[str, ...] = ("jpeg", "blur")  #: registered purifiers scored beside DIP (jpeg/blur with the settings below)
    jpeg_quality: int = 75
    blur_sigma: float | None = None  #: default: width / 256 px (at least 0.5)

    def __post_init__(self) -> None:
        if isinstance(self.dip, dict):
            self.dip = DipConfig(**self.dip)
        self.thresholds = tuple(float(t) for t in self.thresholds)
        self.purifiers = tuple(str(p) for p in self.purifiers)
        if self.keep is not None:
            self.keep = tuple(int(t) for t in self.keep)

    @property
    def end(self) -> int:
        """The last iteration run."""
        return min(self.dip.iterations, self.stop_at) if self.stop_at else self.dip.iterations

    @property
    def t(self) -> int:
        """The classification iteration T."""
        return self.classify_at if self.classify_at is not None else default_classify_at(self.dip.iterations)

    def keep_iterations(self, with_t: bool = True) -> list[int]:
        """Iterations whose outputs are kept: the Fig 5 ones (and T), up to the end."""
        keep = self.keep if self.keep is not None else {max(1, round(f * self.dip.iterations)) for f in KEEP_FRACTIONS}
        return sorted({t for t in keep if 1 <= t <= self.end} | ({self.t} if with_t else set()))

    def validate(self) -> None:
        """One-line errors for options that cannot work together."""
        if self.t > self.end:
            raise DfrobustError(
                f"--classify-at {self.t} lies after the last iteration {self.end}; lower it or raise --stop-at/--iterations"
            )
        if self.per_category < 1 or self.batch_size < 1 or self.window < 1:
            raise DfrobustError("--per-category, --batch-size and the window need to be at least 1")
        unknown = sorted(set(self.purifiers) - set(available_purifiers()))
        if unknown:
            raise DfrobustError(f"unknown purifier(s) {unknown}; use {available_purifiers()}")
