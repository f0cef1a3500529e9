"""Detectors on videos: frame-level and video-level metrics (DeepfakeBench's convention).

Every sampled frame of a clip gets the clip's label and the detector's ``P(real)``; a video's
score is the mean of its frames' scores. AUROC, AP and EER are reported at both levels (AP and
EER with fake as the positive class), the video-level ones under ``video_auroc``, ``video_ap``
and ``video_eer``.

>>> m = video_metrics([0.1, 0.3, 0.8, 0.6], [0, 0, 1, 1], [0, 1])
>>> m["frame_n"], m["video_n"], m["video_auroc"]
(4, 2, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from dfrobust.constants import DECISION_THRESHOLD, VIDEO_FPS, VIDEO_MAX_FRAMES
from dfrobust.data.video import Video, read_frames
from dfrobust.evaluate.metrics import detection_metrics
from dfrobust.models.inference import p_real
from dfrobust.utils.runtime import progress

#: Frames per second of video time sampled by default, and at most this many frames per clip.
DEFAULT_FPS, DEFAULT_MAX_FRAMES = VIDEO_FPS, VIDEO_MAX_FRAMES


def video_scores(frame_scores: Sequence[float], video_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The mean frame score per video (video ids ``0..V-1`` in order) and each video's frame count."""
    ids = np.asarray(video_ids, dtype=int)
    scores = np.asarray(frame_scores, dtype=float)
    counts = np.bincount(ids)
    return np.bincount(ids, weights=scores) / np.maximum(counts, 1), counts


def _level(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    m = detection_metrics(y, p, threshold)
    return {"n": m["n"], "accuracy": m["accuracy"], "auroc": m["auroc"], "ap": m["ap_fake_positive"], "eer": m["eer_fake_positive"]}


def video_metrics(
    frame_scores: Sequence[float], frame_video: Sequence[int], video_labels: Sequence[int], threshold: float = DECISION_THRESHOLD
) -> dict[str, Any]:
    """Frame-level and video-level accuracy, AUROC, AP and EER (``frame_*`` and ``video_*`` keys).

    Args:
        frame_scores: ``P(real)`` of every frame.
        frame_video: the video id (``0..V-1``) of every frame.
        video_labels: each video's label (fake = 0, real = 1).
    """
    labels = np.asarray(video_labels, dtype=int)
    ids = np.asarray(frame_video, dtype=int)
    frame = _level(labels[ids], np.asarray(frame_scores, dtype=float), threshold)
    per_video, _ = video_scores(frame_scores, ids)
    video = _level(labels, per_video, threshold)
    return {**{f"frame_{k}": v for k, v in frame.items()}, **{f"video_{k}": v for k, v in video.items()}, "threshold": threshold}


@torch.no_grad()
def score_videos(
    model: nn.Module,
    videos: Sequence[Video],
    size: tuple[int, int],
    fps: float | None = DEFAULT_FPS,
    max_frames: int | None = DEFAULT_MAX_FRAMES,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Decode each clip's sampled frames, score them; per-frame scores, video ids and per-video rows.

    Progress is one step per video.
    """
    scores: list[float] = []
    ids: list[int] = []
    rows: list[dict[str, Any]] = []
    for v, video in enumerate(progress(videos, desc="videos", unit="video")):
        clip = read_frames(video.path, fps, max_frames, size)
        s = p_real(model, clip, batch_size, device).tolist()
        scores += s
        ids += [v] * len(s)
        rows.append({"video": video.rel, "label": video.label, "frames": len(s), "p_real": float(np.mean(s))})
    return {"frame_scores": scores, "frame_video": ids, "videos": rows}


def evaluate_videos(
    model: nn.Module, videos: Sequence[Video], size: tuple[int, int], threshold: float = DECISION_THRESHOLD, **kwargs: Any
) -> dict[str, Any]:
    """:func:`score_videos` then :func:`video_metrics`: ``{"metrics": ..., "videos": per-video rows}``."""
    out = score_videos(model, videos, size, **kwargs)
    metrics = video_metrics(out["frame_scores"], out["frame_video"], [v.label for v in videos], threshold)
    return {"metrics": metrics, "videos": out["videos"]}
