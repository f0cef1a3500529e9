"""The user's data read in place (layouts, lazy loading, unreadable files), per-group evaluation, field metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import toy_image
from dfrobust.studies.attack_tables import group_stats, table2_rows
from dfrobust.cli import main
from dfrobust.constants import FAKE, REAL
from dfrobust.data.layouts import LazyImageDataset, load_images, load_items, make_loader, scan_layout
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.evaluation import evaluate_detector, evaluate_items
from dfrobust.evaluate.metrics import detection_metrics, equal_error_rate
from dfrobust.models.detectors import build_detector
from dfrobust.utils.io import read_csv, save_png


def _images(folder: Path, n: int, fake: bool, size: int = 40, seed: int = 0) -> None:
    rng = np.random.default_rng(seed + 100 * fake)
    for i in range(n):
        save_png(folder / f"{i:03d}.png", toy_image(rng, size, fake))


@pytest.fixture(scope="module")
def nested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CNNDetection's test layout: one folder per generator, each with 0_real/ and 1_fake/; one broken file."""
    root = tmp_path_factory.mktemp("cnndet") / "test"
    for k, gen in enumerate(("progan", "stylegan")):
        _images(root / gen / "0_real", 6, False, seed=k)
        _images(root / gen / "1_fake", 6, True, seed=k)
    (root / "stylegan" / "1_fake" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root.parent


def test_layouts_are_recognised(tmp_path: Path, nested: Path) -> None:
    flat = tmp_path / "flat"
    _images(flat / "Real" / "sub", 2, False)
    _images(flat / "fake", 3, True)
    layout = scan_layout(flat)
    assert layout.kind == "folders" and layout.splits == [] and layout.groups == []
    assert sorted(i.rel for i in layout.items)[0] == "Real/sub/000.png" and len(layout.select("test")) == 5  # no splits: all

    split = tmp_path / "split"
    for s in ("train", "val", "test"):
        _images(split / s / "real", 2, False)
        _images(split / s / "fake", 2, True)
    layout = scan_layout(split)
    assert layout.splits == ["test", "train", "val"] and {i.split for i in layout.select("val")} == {"val"}
    assert [i.label for i in layout.select("test", ["fake"])] == [FAKE, FAKE]

    layout = scan_layout(nested)
    assert layout.splits == ["test"] and layout.groups == ["progan", "stylegan"] and "0_real/1_fake" in layout.description
    item = next(i for i in layout.items if i.rel == "test/progan/0_real/000.png")
    assert (item.label, item.split, item.group) == (REAL, "test", "progan")
    assert len(layout.fingerprint()) == 64 and layout.summary()["counts"]["test"] == {"fake": 13, "real": 12}


def test_layout_errors_are_one_line(tmp_path: Path) -> None:
    _images(tmp_path / "mixed" / "real", 1, False)
    _images(tmp_path / "mixed" / "fake", 1, True)
    _images(tmp_path / "mixed" / "x" / "test" / "fake", 1, True)  # not looked into: real/fake at the top win
    assert len(scan_layout(tmp_path / "mixed").items) == 2
    _images(tmp_path / "both" / "gen" / "real", 1, False)
    _images(tmp_path / "both" / "gen" / "fake", 1, True)
    _images(tmp_path / "both" / "test" / "gen" / "fake", 1, True)
    _images(tmp_path / "both" / "test" / "gen" / "real", 1, False)
    _images(tmp_path / "onlyreal" / "0_real", 2, False)
    (tmp_path / "empty").mkdir()
    for folder, message in [("both", "mixes class folders"), ("onlyreal", "no fake images"), ("empty", "found no class folders"),
                            ("missing", "does not exist")]:  # fmt: skip
        with pytest.raises(DfrobustError, match=message) as info:
            scan_layout(tmp_path / folder)
        assert "\n" not in str(info.value)


def test_image_lists_with_relative_paths(tmp_path: Path) -> None:
    _images(tmp_path / "imgs", 4, False)
    _images(tmp_path / "imgs2", 4, True)
    (tmp_path / "list.csv").write_text(
        "path,label,split,group\n"
        + "".join(f"imgs/{i:03d}.png,real,test,a\n" for i in range(4))
        + "".join(f"imgs2/{i:03d}.png,fake,{'test' if i < 2 else 'train'},b\n" for i in range(4))
    )
    layout = scan_layout(tmp_path / "list.csv")
    assert layout.kind == "list" and layout.groups == ["a", "b"] and len(layout.select("test")) == 6
    images, fingerprint = load_images(tmp_path / "list.csv", "test")
    assert len(images) == 6 and images.image_size == (40, 40) and images.records[0]["group"] == "a"
    (tmp_path / "list.json").write_text(json.dumps({"images": [{"path": "imgs/000.png", "label": "0_real"},
                                                               {"path": str(tmp_path / "imgs2/000.png"), "label": "1_fake"}]}))  # fmt: skip
    assert [i.label for i in scan_layout(tmp_path / "list.json").items] == [REAL, FAKE]
    (tmp_path / "num.csv").write_text("path,label\nimgs/000.png,0\nimgs2/000.png,1\n")
    with pytest.raises(DfrobustError, match="ambiguous"):
        scan_layout(tmp_path / "num.csv")
    (tmp_path / "twice.csv").write_text("path,label\nimgs/000.png,real\nimgs/000.png,real\n")
    with pytest.raises(DfrobustError, match="listed twice"):
        scan_layout(tmp_path / "twice.csv")
    (tmp_path / "out.csv").write_text(f"path,label\n../{tmp_path.name}/imgs/000.png,real\n{tmp_path}/../x.png,fake\n")
    assert all(not i.rel.startswith("..") for i in scan_layout(tmp_path / "out.csv").items)  # ids stay under an output folder


def test_lazy_dataset_resizes_and_skips_unreadable_files(nested: Path) -> None:
    layout = scan_layout(nested)
    loader = make_loader(LazyImageDataset(layout.items, (16, 24)), batch_size=10, workers=1)
    batches = list(loader)
    assert sum(len(b["y"]) for b in batches) == 24
    assert batches[0]["x"].dtype == torch.uint8 and batches[0]["x"].shape[1:] == (3, 16, 24)
    skipped = [s for b in batches for s in b["skipped"]]
    assert len(skipped) == 1 and layout.items[skipped[0][0]].rel.endswith("broken.png")
    assert torch.cat([b["index"] for b in batches]).tolist() == [i for i in range(25) if i != skipped[0][0]]


@pytest.mark.parametrize("workers", [0, 2])
def test_evaluate_items_matches_the_same_images_in_memory(nested: Path, workers: int) -> None:
    torch.manual_seed(0)
    model = build_detector("tiny").eval()
    layout = scan_layout(nested)
    out = evaluate_items(model, layout.items, (32, 32), batch_size=5, device="cpu", workers=workers)
    images, skipped = load_items(layout.items, layout.root, (32, 32))
    reference = evaluate_detector(model, images, batch_size=7, device="cpu")
    assert [s["path"] for s in out["skipped"]] == [s["path"] for s in skipped] == ["test/stylegan/1_fake/broken.png"]
    m = out["metrics"]
    assert m["n"] == reference["n"] == 24 and m["confusion"] == reference["confusion"]
    for key in ("accuracy", "auroc", "loss", "input_grad_norm"):
        assert m[key] == pytest.approx(reference[key], rel=1e-5), key
    assert {g: r["n"] for g, r in out["groups"].items()} == {"progan": 12, "stylegan": 12}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc")
def test_evaluate_items_keeps_nothing_open_per_batch(nested: Path) -> None:
    """Tensors from loader workers arrive in shared memory, one open file each: none may outlive its batch."""
    open_files: list[int] = []

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = build_detector("tiny")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            open_files.append(len(os.listdir("/proc/self/fd")))
            return self.net(x)

    items = scan_layout(nested).items
    evaluate_items(Counting(), items, (16, 16), batch_size=1, device="cpu", gradients=False, workers=1)
    assert len(open_files) == 24 and max(open_files) <= open_files[0] + 6  # bounded by the batches in flight


def test_evaluate_in_place_gives_per_generator_rows(
    nested: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "e.json"
    args = ["evaluate", "--data", str(nested / "test"), "--model", str(toy_model), "--device", "cpu", "--workers", "0",
            "--json", str(report)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "per group" in out and "progan" in out and "stylegan" in out
    assert "skipped 1 unreadable file(s): stylegan/1_fake/broken.png" in out
    result = json.loads(report.read_text())
    row = result["models"]["tiny"]
    assert row["input_size"] == [32, 32] and row["metrics"]["n"] == 24  # resized from 40 px to the model's size
    for key in ("ap_fake_positive", "eer_fake_positive", "auroc_fake_positive", "auroc_real_positive"):
        assert key in row["metrics"] and key in result["conventions"]
    assert set(row["groups"]) == {"progan", "stylegan"} and row["groups"]["progan"]["n"] == 12
    assert result["skipped"] == [{"path": "stylegan/1_fake/broken.png", "reason": result["skipped"][0]["reason"]}]
    assert result["data"]["kind"] == "folders" and result["data"]["groups"] == ["progan", "stylegan"]


def test_attack_reads_a_nested_folder_in_place(nested: Path, toy_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "atk"
    card = tmp_path / "toy.toml"  # the 32-px checkpoint through a card: it resizes the 40-px images inside
    card.write_text(f'source = "dfrobust:{toy_model}"\n')
    assert main(["attack", "--data", str(nested), "--source", str(card), "--attack", "fgsm", "--max-images", "6",
                 "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    rows = read_csv(out / "results.csv")
    assert len(rows) == 6 and {r["group"] for r in rows} <= {"progan", "stylegan"}
    assert all(r["image"].startswith("test/") for r in rows) and (out / "images" / rows[0]["image"]).is_file()


def test_field_metrics_and_their_conventions() -> None:
    y = [FAKE, FAKE, FAKE, REAL, REAL, REAL]
    p = [0.1, 0.4, 0.7, 0.3, 0.8, 0.9]  # P(real)
    m = detection_metrics(y, p)
    assert m["auroc"] == m["auroc_real_positive"] == pytest.approx(7 / 9)
    assert m["auroc_fake_positive"] == pytest.approx(7 / 9)  # the same area with the classes swapped
    # fake positive, ranked by P(fake) = 1 - p (0.9 f, 0.7 r, 0.6 f, 0.3 f, ...): fakes at ranks 1, 3, 4
    assert m["ap_fake_positive"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert m["ap_real_positive"] == pytest.approx((1 + 1 + 3 / 5) / 3)  # by P(real): reals at ranks 1, 2, 5
    assert m["eer_fake_positive"] == pytest.approx(1 / 3)
    assert equal_error_rate([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert detection_metrics([REAL, REAL], [0.6, 0.7])["ap_fake_positive"] is None


def test_success_rate_on_images_correct_before_the_attack() -> None:
    def row(clean: int, adv: int) -> dict:
        return {"label": 0, "clean_pred": clean, "adv_pred": adv, "success": int(adv != 0), "target": "m", "attack": "fgsm",
                "setting": "whitebox", "source": "m", "l2": 1.0, "linf": 0.1, "psnr": 30.0, "ssim": 0.9, "seconds": 0.1}  # fmt: skip

    rows = [row(0, 1), row(0, 0), row(0, 1), row(1, 1)]  # the last was wrong before the attack
    stats = group_stats(rows)
    assert stats["success_rate"] == 0.75 and stats["n_correct"] == 3 and stats["success_rate_on_correct"] == pytest.approx(2 / 3)
    table = table2_rows([{k: str(v) for k, v in r.items()} for r in rows])
    assert table[0]["n_correct"] == 3 and table[0]["success_rate_on_correct"] == pytest.approx(2 / 3)
    assert group_stats([row(1, 1)])["success_rate_on_correct"] is None
