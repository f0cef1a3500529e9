"""Attacking videos: perturb the sampled frames of each clip, write H.264 at a stated CRF, score after decoding.

:func:`run_video_attack` is what ``dfrobust attack --data VIDEO_FOLDER`` calls. Each chosen clip
(by default the fakes) is decoded at ``fps`` frames per second (at most ``max_frames``), attacked
on the source detector either frame by frame or with one perturbation shared by every frame of
the clip (``shared``: the attack maximises the loss of the clip's mean logits, the video-level
score), optionally made robust to a platform chain (``robust_to``, EOT). The attacked frames are
written as an H.264 MP4 at ``crf`` (at the sampling rate) and scored:

- ``lossless``: the 8-bit attacked frames before encoding;
- ``decoded``: the frames of the written video, decoded (the platform's codec);
- ``heldout``: the attacked frames re-encoded at ``heldout_crf`` (a codec setting the attack did not see).

The clips of the other class are scored clean, so frame- and video-level AUROC/AP/EER
(:mod:`dfrobust.evaluate.video`) describe the detector when the chosen class is attacked.

Output folder::

    OUT/video_run.json       the run's record (written first; what makes the folder this command's)
    OUT/videos/<rel>.mp4     the attacked clips, mirroring the data folder's layout
    OUT/videos.csv           one row per clip: scores and success lossless, decoded, held out
    OUT/summary.json         config, success rates with n and Wilson intervals, metrics per condition
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dfrobust.attacks.base import make_attack
from dfrobust.attacks.chain import format_chain, parse_chain
from dfrobust.attacks.robust import RobustModel
from dfrobust.data.layouts import CLASS_CHOICES
from dfrobust.data.video import DEFAULT_CRF, decode_video_bytes, encode_video, read_frames, scan_videos, write_video
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.intervals import wilson_interval
from dfrobust.evaluate.video import DEFAULT_FPS, DEFAULT_MAX_FRAMES, video_metrics
from dfrobust.models.inference import p_real
from dfrobust.models.loading import load_model_arg, model_display_name
from dfrobust.utils.io import claim_own_folder, quantize, require_own_folder, write_csv, write_json
from dfrobust.utils.runtime import progress, resolve_device, versions

#: The record written first into the output folder.
RECORD = "video_run.json"
#: Conditions the attacked frames are scored in.
CONDITIONS = ("lossless", "decoded", "heldout")


@dataclass
class VideoAttackConfig:
    """Settings of a video attack run.

    Attributes:
        attack: a registered attack; ``params`` its parameters (defaults filled in).
        fps: frames sampled per second of video time (also the written videos' rate).
        max_frames: at most this many frames per clip.
        crf: H.264 CRF of the written videos (0 lossless .. 51 coarsest).
        heldout_crf: CRF of the held-out re-encoding (default: ``crf + 12``, at most 51).
        shared: one perturbation for all frames of a clip (else one per frame).
        robust_to: a platform chain the attack averages over (EOT), or ``None``.
        eot: chain draws per gradient with ``robust_to``.
        classes: ``fake``, ``real`` or ``both``: which clips are attacked.
        seed, device: as every command.
    """

    attack: str = "fgsm"
    params: dict[str, Any] = field(default_factory=dict)
    fps: float = DEFAULT_FPS
    max_frames: int = DEFAULT_MAX_FRAMES
    crf: int = DEFAULT_CRF
    heldout_crf: int | None = None
    shared: bool = False
    robust_to: str | None = None
    eot: int = 8
    classes: str = "fake"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.classes not in CLASS_CHOICES:
            raise DfrobustError(f"--classes must be one of {sorted(CLASS_CHOICES)}, got {self.classes!r}")
        if not self.fps > 0 or self.max_frames < 1:
            raise DfrobustError(f"--fps must be positive and --max-frames >= 1, got {self.fps} and {self.max_frames}")
        if self.heldout_crf is None:
            self.heldout_crf = min(51, self.crf + 12)
        for flag, crf in (("--crf", self.crf), ("--heldout-crf", self.heldout_crf)):
            if not 0 <= crf <= 51:
                raise DfrobustError(f"{flag} must lie in 0..51, got {crf}")
        if self.robust_to is not None:
            self.robust_to = format_chain(parse_chain(self.robust_to))
        if self.eot < 1:
            raise DfrobustError(f"--robust-eot must be >= 1, got {self.eot}")
        attack = make_attack(self.attack, **self.params)
        if "seed" in attack.settings and "seed" not in self.params:
            attack = make_attack(self.attack, **{**self.params, "seed": self.seed})
        self.params = {k: v for k, v in attack.settings.items() if k != "attack"}


class SharedClip(nn.Module):
    """The clip's detector as a function of one shared perturbation, carried by a mid-grey image.

    Input ``d`` (``1 x 3 x H x W``, in [0, 1]) stands for the perturbation ``d - 0.5``; the output
    is the mean logits of ``model`` over every frame plus that perturbation (clipped to [0, 1]), so
    any registered attack run from ``d = 0.5`` finds one perturbation for the whole clip within its budget.
    """

    def __init__(self, model: nn.Module, frames: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.frames = frames

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        """Mean logits over the frames, one row per perturbation in ``d``."""
        rows = [self.model((self.frames + (di - 0.5)).clamp(0, 1)).mean(0) for di in d]  # d holds one row in an attack
        return torch.stack(rows)


def attack_clip(model: nn.Module, frames: torch.Tensor, label: int, cfg: VideoAttackConfig, seed: int) -> torch.Tensor:
    """The attacked frames of one clip (float, [0, 1]), per frame or with one shared perturbation."""
    params = dict(cfg.params)
    if "seed" in params:
        params["seed"] = int(params["seed"]) + seed  # a fresh stream per clip, independent of the others
    attack = make_attack(cfg.attack, **params)
    target = RobustModel(model, parse_chain(cfg.robust_to), cfg.eot, seed) if cfg.robust_to else model
    if not cfg.shared:
        return attack(target, frames, torch.full((len(frames),), label, dtype=torch.long)).x_adv
    grey = torch.full((1, *frames.shape[1:]), 0.5)
    d = attack(SharedClip(target, frames), grey, torch.tensor([label])).x_adv
    return (frames + (d - 0.5)).clamp(0, 1)


def _rate(hits: list[bool]) -> dict[str, Any]:
    k, n = int(sum(hits)), len(hits)
    lo, hi = wilson_interval(k, n)
    return {"rate": k / n if n else None, "k": k, "n": n, "ci": [lo, hi]}


def run_video_attack(data: Path, source: Path, cfg: VideoAttackConfig, out_dir: Path, batch_size: int = 64) -> dict[str, Any]:
    """Attack the chosen clips of the video folder ``data`` on ``source``; write videos, CSV and summary (module docstring)."""
    videos = scan_videos(data)
    out = require_own_folder(out_dir, "attack-videos")
    device = resolve_device(cfg.device)
    model, meta = load_model_arg(source, device)
    size = meta.get("input_size")
    if size is None:
        raise DfrobustError(f"{source} has no input_size, so video frames cannot be sized for it; add input_size to the card")
    size = (int(size[0]), int(size[1]))
    if size[0] % 2 or size[1] % 2:
        raise DfrobustError(f"H.264 needs even frame sides; {source} takes {size[0]} x {size[1]}")
    chosen = {0 if c == "fake" else 1 for c in CLASS_CHOICES[cfg.classes]}
    claim_own_folder(out, "attack-videos")
    write_json(out / RECORD, {"config": asdict(cfg), "data": str(data), "source": str(source), "complete": False})
    rows: list[dict[str, Any]] = []
    frame_scores: dict[str, list[float]] = {c: [] for c in ("clean", *CONDITIONS)}
    frame_ids: list[int] = []
    for v, video in enumerate(progress(videos, desc=f"{cfg.attack} on videos", unit="video")):
        clip = read_frames(video.path, cfg.fps, cfg.max_frames, size)
        frame_ids += [v] * len(clip)
        scores = {"clean": p_real(model, clip, batch_size, device)}
        row: dict[str, Any] = {"video": video.rel, "label": video.label, "frames": len(clip), "attacked": int(video.label in chosen)}
        if video.label in chosen:
            adv = quantize(attack_clip(model, clip.to(device), video.label, cfg, seed=cfg.seed + v).cpu())
            write_video(out / "videos" / Path(video.rel).with_suffix(".mp4"), adv, cfg.fps, cfg.crf)
            decoded = read_frames(out / "videos" / Path(video.rel).with_suffix(".mp4"), None, None, None)[..., : size[0], : size[1]]
            heldout = decode_video_bytes(encode_video(adv, cfg.fps, cfg.heldout_crf), size)
            scores.update(lossless=p_real(model, adv, batch_size, device), decoded=p_real(model, decoded, batch_size, device),
                          heldout=p_real(model, heldout, batch_size, device))  # fmt: skip
            row["linf"] = float((adv - clip).abs().amax())
        else:
            scores.update({c: scores["clean"] for c in CONDITIONS})  # an unattacked clip is scored as it is
        for name, s in scores.items():
            frame_scores[name] += s.tolist()
            mean = float(s.mean())
            row[f"{name}_p_real"] = mean
            row[f"{name}_success"] = int((mean >= 0.5) != bool(video.label))  # the video's mean score misclassifies it
            row[f"{name}_frame_success"] = float(((s >= 0.5).long() != video.label).float().mean())
        rows.append(row)
    labels = [v.label for v in videos]
    attacked = [r for r in rows if r["attacked"]]
    summary = {
        "complete": True,
        "config": asdict(cfg),
        "data": {
            "path": str(data),
            "videos": len(videos),
            "attacked": len(attacked),
            "frames_per_video": float(np.mean([r["frames"] for r in rows])),
        },
        "source": {model_display_name(source): {"path": str(source), "sha256": meta.get("sha256")}},
        "codec": {"written": "libx264 (H.264, yuv420p, mp4)", "crf": cfg.crf, "heldout_crf": cfg.heldout_crf},
        "success": {c: _rate([bool(r[f"{c}_success"]) for r in attacked]) for c in ("clean", *CONDITIONS)},
        "metrics": {c: video_metrics(frame_scores[c], frame_ids, labels) for c in ("clean", *CONDITIONS)},
        "versions": versions(),
    }
    write_csv(out / "videos.csv", rows)
    write_json(out / "summary.json", summary)
    write_json(out / RECORD, {"config": asdict(cfg), "data": str(data), "source": str(source), "complete": True})
    return summary
