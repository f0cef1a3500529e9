"""The paper's own numbers (Gandhi & Jain, IJCNN 2020), to print beside ours.

Every value here is typed from the paper and is labelled as the paper's wherever it is shown.
Percentages. The paper's Table I columns are: accuracy, AUROC, precision and recall of the
fake class, precision and recall of the real class. The text of Table IV did not survive in
our copy of the paper; what the text states about it is kept in ``TABLE4_TEXT``.
"""

from __future__ import annotations

TABLE1_COLUMNS = ("accuracy", "auroc", "fake_precision", "fake_recall", "real_precision", "real_recall")

#: Table I, clean test metrics; keys are our model names.
TABLE1: dict[str, tuple[float, ...]] = {
    "vgg16": (99.7, 99.7, 99.7, 99.8, 99.9, 99.8),
    "resnet18": (93.2, 95.4, 95.2, 97.9, 91.5, 91.1),
    "resnet18-lip5": (95.0, 99.5, 99.3, 99.2, 90.8, 91.5),
    "resnet18-lip50": (96.6, 91.4, 96.8, 94.1, 98.6, 91.8),
    "resnet18-lip500": (89.9, 92.3, 85.3, 90.6, 84.4, 87.5),
    "resnet18-lip5000": (96.2, 98.0, 94.2, 99.1, 94.5, 98.1),
    "resnet18-lip (average)": (97.4, 92.9, 93.9, 93.9, 92.5, 93.2),
    "resnet18-blur": (99.9, 98.9, 98.9, 98.5, 98.7, 98.5),
}

TABLE2_COLUMNS = ("clean", "fgsm-blackbox", "fgsm-whitebox", "cw-blackbox", "cw-whitebox")

#: Table II, accuracy on fake test images, unperturbed and perturbed.
TABLE2: dict[str, tuple[float, ...]] = {
    "vgg16": (99.7, 8.9, 0.0, 26.6, 0.0),
    "resnet18": (95.4, 20.8, 7.5, 4.6, 0.0),
    "resnet18-lip5": (99.3, 42.2, 26.5, 14.5, 0.0),
    "resnet18-lip50": (91.4, 17.8, 12.7, 6.2, 0.0),
    "resnet18-lip500": (90.6, 53.2, 9.0, 19.8, 0.0),
    "resnet18-lip5000": (94.2, 12.8, 1.9, 16.7, 2.2),
    "resnet18-lip (average)": (93.9, 31.5, 12.5, 14.3, 0.5),
    "resnet18-blur": (98.9, 17.0, 2.2, 3.8, 0.1),
}

#: Table II's best regularised values (marked * in the paper).
TABLE2_BEST_REGULARISED: dict[str, float] = {
    "clean": 99.3,
    "fgsm-blackbox": 53.2,
    "fgsm-whitebox": 26.5,
    "cw-blackbox": 19.8,
    "cw-whitebox": 2.2,
}

#: The best rows by our row names.
TABLE2_BEST: dict[str, dict[str, float]] = {"resnet18-lip (best)": TABLE2_BEST_REGULARISED}

TABLE3_COLUMNS = ("accuracy", "auroc", "fake_precision", "fake_recall", "real_precision", "real_recall")

#: Table III, DIP defense on the 100-image subsample, per threshold, and the undefended baseline.
TABLE3: dict[str, tuple[float, ...]] = {
    "dip@0.50": (97.0, 99.2, 96.8, 100.0, 100.0, 70.0),
    "dip@0.25": (97.0, 99.2, 98.9, 97.8, 81.8, 90.0),
    "baseline": (60.0, 41.9, 100.0, 55.5, 20.0, 100.0),
}

#: What the paper's text says of Table IV (accuracy per category).
TABLE4_TEXT: dict[str, float] = {
    "perturbed fake-wrong, DIP @0.25": 95.0,
    "all other categories, DIP @0.25": 98.0,
    "fgsm-whitebox fake-wrong, DIP @0.50": 100.0,
    "fgsm-whitebox fake-wrong, DIP @0.25": 80.0,
}

#: Settings and costs the paper reports.
SETTINGS: dict[str, str] = {
    "data": "5,000 CelebA reals + 5,000 few-shot face-translation GAN fakes, 75/25 split",
    "input size": "368x300 (authors' code)",
    "training": "SGD, batch 16, 5 epochs (authors' code: lr 1e-3, momentum 0.9, ImageNet init)",
    "fgsm": "eps 0.02",
    "cw": "c in [1e2, 1e4], 5 search steps, 1,000 Adam steps, lr 0.01, kappa 200",
    "dip": "10,000 iterations, classify at 6,000, 100 images, ~30 min per image on a K80",
}


def fraction(value: float | None) -> float | None:
    """One of the paper's percentages as a fraction in [0, 1] (``results.json`` holds rates as fractions everywhere)."""
    return None if value is None else round(value / 100, 6)


def as_fractions() -> dict[str, object]:
    """The paper's tables for ``results.json``: every percentage converted to a fraction, labelled as the paper's."""
    return {
        "units": "fractions in [0, 1]: the paper's published percentages divided by 100",
        "table1_columns": list(TABLE1_COLUMNS),
        "table1": {k: [fraction(v) for v in row] for k, row in TABLE1.items()},
        "table2_columns": list(TABLE2_COLUMNS),
        "table2": {k: [fraction(v) for v in row] for k, row in TABLE2.items()},
        "table2_best": {k: {c: fraction(v) for c, v in row.items()} for k, row in TABLE2_BEST.items()},
        "table3_columns": list(TABLE3_COLUMNS),
        "table3": {k: [fraction(v) for v in row] for k, row in TABLE3.items()},
        "table4_text": {k: fraction(v) for k, v in TABLE4_TEXT.items()},
    }
