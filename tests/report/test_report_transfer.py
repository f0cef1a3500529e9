"""The transfer table: every blackbox attack beside the paper's plain FGSM, and the strongest one quoted."""

from __future__ import annotations

from dfrobust.evaluate.intervals import wilson_interval
from dfrobust.report.transfer import transfer_rows, transfer_table


def _row(model: str, attack: str, source: str, acc: float, setting: str = "blackbox", n: int = 20) -> dict:
    return {"model": model, "attack": attack, "setting": setting, "source": source, "n": n, "perturbed_accuracy": acc}


def test_strongest_transfer_per_model_with_ties_to_the_paper() -> None:
    rows = transfer_rows([
        _row("resnet18", "fgsm", "vgg16", 0.60), _row("resnet18", "mifgsm", "vgg16", 0.45),
        _row("resnet18", "dimifgsm", "vgg16", 0.30), _row("resnet18", "fgsm", "resnet18", 0.0, setting="whitebox"),
        _row("vgg16", "fgsm", "resnet18", 0.50), _row("vgg16", "dimifgsm", "resnet18", 0.50),
    ])  # fmt: skip
    by = {r["model"]: r for r in rows}
    assert by["resnet18"]["strongest"]["attack"] == "dimifgsm" and by["resnet18"]["strongest"]["accuracy"] == 0.30
    assert by["resnet18"]["plain"]["accuracy"] == 0.60
    assert all(t["attack"] != "fgsm" or t["source"] != "resnet18" for t in by["resnet18"]["transfers"])  # whitebox left out
    assert by["vgg16"]["strongest"]["attack"] == "fgsm"  # a tie is no stronger than the paper's attack
    table = transfer_table(rows, ["vgg16", "resnet18"])
    assert [r[0] for r in table.rows] == ["vgg16", "resnet18"]
    assert table.columns[2] == "FGSM blackbox" and table.rows[1][-1] == "DI-MI-FGSM (vgg16)"


def test_several_sources_show_the_strongest_per_attack() -> None:
    rows = transfer_rows([_row("a", "fgsm", "b", 0.9), _row("a", "fgsm", "c", 0.4, n=10), _row("a", "square-linf", "b", 0.5, n=4)])
    assert rows[0]["plain"] == {"attack": "fgsm", "source": "c", "n": 10, "accuracy": 0.4, "accuracy_ci": list(wilson_interval(4, 10))}
    row = transfer_table(rows, ["a"]).rows[0]
    assert row[1] == "10" and row[2].startswith("40.0%") and "(n=" not in row[2]
    assert row[3].startswith("50.0%") and row[3].endswith("(n=4)")  # another number of images is said in the cell


def test_each_cell_of_table2_has_its_own_n() -> None:
    from dfrobust.studies.attack_tables import table2_counts

    rows = [_row("a", "fgsm", "b", 0.5, n=20), _row("a", "square-linf", "a", 0.9, setting="whitebox", n=10)]
    rows = [{**r, "clean_accuracy": 1.0} for r in rows]
    counts = table2_counts(rows)["a"]
    assert counts == {"unperturbed": 20, "fgsm_blackbox": 20, "square-linf_whitebox": 10}
