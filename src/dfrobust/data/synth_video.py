"""Built-in synthetic videos: a procedural face that moves and blinks (real) and its per-frame face swap (fake).

Each clip has one identity and one scene; over its frames the head drifts, turns (yaw, roll)
and blinks (the eyes close for two frames at random times). A fake clip swaps, frame by frame,
the inner face of another identity that makes the same motion onto the real clip's frames
(:func:`dfrobust.data.swap.swap_faces`, per-clip swap parameters), as face-swap deepfake videos
are made. Output, in the video layout that ``dfrobust evaluate`` and ``attack`` read::

    OUT/real/clip-000.mp4 ...  OUT/fake/clip-000.mp4 ...  OUT/videos.json (the record of this command)

>>> generate_videos("data/videos", n=4, size=32, frames=8)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfrobust.data.faces import render_faces, sample_identities, sample_scenes
from dfrobust.data.knobs import SwapKnobs
from dfrobust.data.swap import SWAP_PARAMS, as_tensor_images, sample_swap_params, swap_faces
from dfrobust.data.video import DEFAULT_CRF, require_av, write_video
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import claim_own_folder, read_json, require_own_folder, write_json
from dfrobust.utils.runtime import progress

#: The record ``generate_videos`` writes first into its folder (what makes the folder its own).
RECORD = "videos.json"
#: The command kind that marks the folder as its own (:func:`dfrobust.utils.io.claim_own_folder`).
KIND = "data synth --videos"
#: Eye-height factor of a closed eye (a blink), against the identity's own.
BLINK = 0.08


def clip_scenes(base: dict[str, np.ndarray], frames: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-frame scenes of one clip (``frames`` rows) moving smoothly from ``base`` (one row), and the blink mask."""
    t = np.linspace(0, 1, frames, dtype=np.float32)
    phase = rng.uniform(0, 2 * np.pi, 4).astype(np.float32)
    scene = {k: np.repeat(v[:1], frames, 0) for k, v in base.items()}
    scene["cx"] = scene["cx"] + 0.05 * np.sin(2 * np.pi * t + phase[0])
    scene["cy"] = scene["cy"] + 0.03 * np.sin(2 * np.pi * t + phase[1])
    scene["yaw"] = np.clip(scene["yaw"] + 0.25 * np.sin(2 * np.pi * t + phase[2]), -0.7, 0.7).astype(np.float32)
    scene["roll"] = scene["roll"] + 0.06 * np.sin(2 * np.pi * t + phase[3])
    blink = np.zeros(frames, bool)
    for start in rng.integers(0, frames, max(1, frames // 12)):
        blink[start : start + 2] = True  # a blink lasts two frames
    return scene, blink


def _identity_frames(ident: dict[str, np.ndarray], j: int, blink: np.ndarray) -> dict[str, np.ndarray]:
    """Identity ``j`` repeated per frame, eyes closed on blink frames."""
    rows = {k: np.repeat(v[j : j + 1], len(blink), 0) for k, v in ident.items()}
    rows["eye_h"] = np.where(blink, rows["eye_h"] * BLINK, rows["eye_h"]).astype(np.float32)
    return rows


def render_clip(
    ident: dict[str, np.ndarray],
    target: int,
    source: int | None,
    scene: dict[str, np.ndarray],
    blink: np.ndarray,
    size: int,
    rng: np.random.Generator,
    swap: dict[str, np.ndarray] | None = None,
) -> torch.Tensor:
    """One clip ``T x 3 x size x size``: identity ``target`` in the moving ``scene``; with ``source``, its face swapped in."""
    frames = len(blink)
    images, lm = render_faces(_identity_frames(ident, target, blink), scene, size, rng)
    x = as_tensor_images(images)
    if source is None or swap is None:
        return x
    src_images, src_lm = render_faces(_identity_frames(ident, source, blink), scene, size, rng)
    params = {k: torch.from_numpy(np.repeat(swap[k][:1], frames, 0)) for k in SWAP_PARAMS}
    fakes, _ = swap_faces(x, torch.from_numpy(lm), as_tensor_images(src_images), torch.from_numpy(src_lm), **params)
    return fakes.clamp(0, 1)


def generate_videos(
    out_dir: str | Path,
    n: int = 8,
    size: int = 64,
    frames: int = 16,
    fps: float = 8.0,
    crf: int = DEFAULT_CRF,
    seed: int = 0,
    overwrite: bool = False,
    **knobs: Any,
) -> Path:
    """Write ``n`` real and ``n`` fake clips of ``frames`` frames (``size`` px, even) as H.264 MP4 at ``crf``.

    A folder made with the same arguments is kept as it is; one made by this command with other
    arguments is replaced only with ``overwrite`` (its own clips, by its record); any other
    non-empty folder is an error. ``knobs``: :class:`~dfrobust.data.knobs.SwapKnobs` fields.
    """
    require_av("dfrobust data synth --videos")
    kn = SwapKnobs(**knobs)
    if n < 1:
        raise DfrobustError(f"--videos must be >= 1, got {n}")
    if size < 16 or size % 2:
        raise DfrobustError(f"--size must be an even number of at least 16 pixels for H.264 clips, got {size}")
    if frames < 2:
        raise DfrobustError(f"--frames must be >= 2, got {frames}")
    if not fps > 0:
        raise DfrobustError(f"--fps must be positive, got {fps}")
    out = require_own_folder(out_dir, KIND)
    args = {"n": n, "size": size, "frames": frames, "fps": fps, "crf": crf, "seed": seed, **dataclasses.asdict(kn)}
    record_path = out / RECORD
    if record_path.is_file():
        old = read_json(record_path)
        if old.get("args") == args and old.get("complete"):
            return out
        if not overwrite:
            raise DfrobustError(f"{out} holds synthetic videos made with other settings; pass --overwrite to replace them")
        for rel in old.get("files", []):
            (out / rel).unlink(missing_ok=True)
    files = [f"{cls}/clip-{i:03d}.mp4" for cls in ("real", "fake") for i in range(n)]
    claim_own_folder(out, KIND)
    write_json(record_path, {"generator": "synthetic-video", "args": args, "files": files, "complete": False})
    rng = np.random.default_rng(seed)
    ident = sample_identities(rng, 2 * n)
    scenes = sample_scenes(rng, 2 * n)
    swaps = sample_swap_params(rng, n, kn)
    with progress(total=2 * n, desc="synth videos", unit="clip") as bar:
        for i in range(n):
            base = {k: v[i : i + 1] for k, v in scenes.items()}
            for cls in ("real", "fake"):
                clip_rng = np.random.default_rng([seed, i, cls == "fake"])
                scene, blink = clip_scenes(base, frames, clip_rng)
                # a fake clip: clip i's own frames (another draw of the same motion) with identity n + i's face in them
                swap = {k: v[i : i + 1] for k, v in swaps.items()} if cls == "fake" else None
                clip = render_clip(ident, i, n + i if cls == "fake" else None, scene, blink, size, clip_rng, swap)
                write_video(out / f"{cls}/clip-{i:03d}.mp4", clip, fps, crf)
                bar.update(1)
    write_json(record_path, {"generator": "synthetic-video", "args": args, "files": files, "complete": True})
    return out
