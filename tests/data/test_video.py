"""Videos: synthetic clips, reading and writing H.264, frame- and video-level metrics, evaluate and attack on a video folder."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dfrobust.cli import main
from dfrobust.data.synth_video import generate_videos
from dfrobust.data.video import decode_video_bytes, encode_video, read_frames, scan_videos
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.video import video_metrics, video_scores
from dfrobust.utils.io import read_csv, read_json

# data.video imports PyAV only when it reads or writes a clip
av = pytest.importorskip("av", reason="the 'video' extra (PyAV) is not installed")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 real and 2 fake synthetic clips of 4 frames, 32 px, 4 frames/s."""
    return generate_videos(tmp_path_factory.mktemp("videos") / "v", n=2, size=32, frames=4, fps=4.0)


def test_synthetic_clips_move_and_fakes_differ(clips: Path) -> None:
    videos = scan_videos(clips)
    assert [(v.rel, v.label) for v in videos] == [("fake/clip-000.mp4", 0), ("fake/clip-001.mp4", 0),
                                                  ("real/clip-000.mp4", 1), ("real/clip-001.mp4", 1)]  # fmt: skip
    real, fake = read_frames(clips / "real/clip-000.mp4"), read_frames(clips / "fake/clip-000.mp4")
    assert real.shape == (4, 3, 32, 32) and fake.shape == real.shape
    assert (real[0] - real[-1]).abs().mean() > 0.01  # the face moves
    assert (real - fake).abs().mean() > 0.01  # the fake is the same clip with another face swapped in
    assert read_json(clips / "videos.json")["complete"]


def test_frames_are_sampled_at_the_stated_rate(clips: Path) -> None:
    # 4 frames at 4 frames/s span 1 s: at 2 frames/s, frames 0 and 2 are kept
    every = read_frames(clips / "real/clip-000.mp4")
    two = read_frames(clips / "real/clip-000.mp4", fps=2.0)
    assert len(two) == 2 and torch.equal(two, every[[0, 2]])
    assert len(read_frames(clips / "real/clip-000.mp4", max_frames=3)) == 3


def test_h264_round_trip_is_close_and_lossless_at_crf_0() -> None:
    x = torch.rand(3, 3, 16, 16) * 0.5 + 0.25
    coarse = decode_video_bytes(encode_video(x, 4.0, 35), (16, 16))
    fine = decode_video_bytes(encode_video(x, 4.0, 0), (16, 16))
    assert coarse.shape == x.shape
    # CRF 0 is lossless in YUV; the RGB <-> yuv420p conversion still costs a little
    assert (fine - x).abs().mean() < (coarse - x).abs().mean()


def test_generator_refuses_other_folders_and_keeps_a_finished_one(clips: Path, tmp_path: Path) -> None:
    mtime = (clips / "real/clip-000.mp4").stat().st_mtime_ns
    generate_videos(clips, n=2, size=32, frames=4, fps=4.0)  # same arguments: kept as it is
    assert (clips / "real/clip-000.mp4").stat().st_mtime_ns == mtime
    with pytest.raises(DfrobustError, match="other settings"):
        generate_videos(clips, n=2, size=32, frames=5, fps=4.0)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DfrobustError, match="already holds other files"):
        generate_videos(other, n=1, size=32, frames=2)
    with pytest.raises(DfrobustError, match="even number"):
        generate_videos(tmp_path / "odd", n=1, size=33, frames=2)


def test_video_metrics_average_frames_per_video() -> None:
    scores, counts = video_scores([0.2, 0.4, 0.9, 0.7, 0.1], [0, 0, 1, 1, 2])
    assert np.allclose(scores, [0.3, 0.8, 0.1]) and counts.tolist() == [2, 2, 1]
    # video 0 (fake) scores 0.6 on average, above the real video 1 (0.5): video AUROC 0
    m = video_metrics([0.6, 0.6, 0.5, 0.5, 0.9, 0.1], [0, 0, 1, 1, 2, 2], [0, 1, 1])
    assert m["video_n"] == 3 and m["frame_n"] == 6
    assert m["video_auroc"] == pytest.approx(0.0)
    assert m["frame_auroc"] == pytest.approx(0.25)  # frame level: 2 of the 8 (real, fake) frame pairs in order (0.9 > 0.6)
    assert m["video_eer"] is not None and m["video_ap"] is not None


def test_evaluate_cli_prints_and_writes_both_levels(clips: Path, toy_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ev.json"
    assert main(["evaluate", "--data", str(clips), "--model", str(toy_model), "--fps", "4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "frame" in text and "video" in text and "AUROC" in text.upper()
    record = json.loads(out.read_text())
    assert {"video_auroc", "video_ap", "video_eer"} <= set(record)
    m = record["models"]["tiny"]["metrics"]
    assert m["frame_n"] == 16 and m["video_n"] == 4
    assert [r["frames"] for r in record["models"]["tiny"]["videos"]] == [4, 4, 4, 4]


def test_attack_cli_writes_h264_clips_and_scores_them_after_decoding(clips: Path, toy_model: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    out = tmp_path / "att"
    assert main(["attack", "--data", str(clips), "--source", str(toy_model), "--attack", "fgsm", "--eps", "0.03",
                 "--fps", "4", "--crf", "20", "--out", str(out)]) == 0  # fmt: skip
    assert "video-level success" in capsys.readouterr().out
    written = sorted(p.relative_to(out).as_posix() for p in (out / "videos").rglob("*.mp4"))
    assert written == ["videos/fake/clip-000.mp4", "videos/fake/clip-001.mp4"]
    with av.open(str(out / "videos/fake/clip-000.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    summary = read_json(out / "summary.json")
    assert summary["codec"]["crf"] == 20 and summary["codec"]["heldout_crf"] == 32
    assert summary["success"]["decoded"]["n"] == 2
    rows = read_csv(out / "videos.csv")
    assert [r["attacked"] for r in rows] == ["1", "1", "0", "0"]
    # the reals are not attacked: scored as they are in every condition
    assert all(r["clean_p_real"] == r["decoded_p_real"] for r in rows if r["attacked"] == "0")
    assert float(rows[0]["linf"]) <= 0.03 + 1 / 255


def test_shared_perturbation_is_one_for_the_whole_clip(clips: Path, toy_model: Path) -> None:
    from dfrobust.attacks.video_run import VideoAttackConfig, attack_clip
    from dfrobust.models.loading import load_model_arg

    model, _ = load_model_arg(toy_model, "cpu")
    frames = read_frames(clips / "fake/clip-000.mp4") * 0.8 + 0.1  # away from 0 and 1, so no pixel is clipped
    cfg = VideoAttackConfig("pgd", {"eps": 0.03, "steps": 3}, shared=True)
    adv = attack_clip(model, frames, 0, cfg, seed=0)
    delta = adv - frames
    assert delta.abs().amax() <= 0.03 + 1e-6 and delta.abs().amax() > 0.01
    assert torch.allclose(delta, delta[:1].expand_as(delta), atol=1e-5)
    per_frame = attack_clip(model, frames, 0, VideoAttackConfig("pgd", {"eps": 0.03, "steps": 3}), seed=0) - frames
    assert not torch.allclose(per_frame, per_frame[:1].expand_as(per_frame), atol=1e-3)


def test_data_synth_videos_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "v"
    assert main(["data", "synth", "--videos", "1", "--frames", "2", "--size", "16", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.rglob("*.mp4")) == ["clip-000.mp4", "clip-000.mp4"]
    assert "1 real and 1 fake clips" in capsys.readouterr().out


def test_missing_extra_is_a_one_line_error(clips: Path, toy_model: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    real_import = builtins.__import__

    def no_av(name: str, *args: object, **kwargs: object) -> object:
        if name == "av":
            raise ImportError("no av")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    assert main(["evaluate", "--data", str(clips), "--model", str(toy_model)]) == 2
    assert "pip install 'dfrobust[video]'" in capsys.readouterr().err
