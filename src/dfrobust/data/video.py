"""Videos: a folder layout of real and fake clips, decoding sampled frames, writing H.264 (PyAV, the ``video`` extra).

Layout (folder names case-insensitive, clips may sit in sub-folders of a class folder)::

    DIR/real/*.mp4  DIR/fake/*.mp4          or DIR/0_real/ DIR/1_fake/; one label per video

Frames are sampled at ``fps`` frames per second of video time (``None``: every frame), at most
``max_frames`` per clip, and resized to the detector's input size. Writing uses libx264 (H.264,
yuv420p) at a stated CRF, which the PyAV wheels on PyPI ship; :func:`h264_round_trip` passes
single images through that codec (the ``h264`` step of a platform chain).

>>> layout = scan_videos("data/videos")         # doctest: +SKIP
>>> clip = read_frames(layout[0].path, fps=4)   # doctest: +SKIP  (T x 3 x H x W in [0, 1])
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from dfrobust.constants import FAKE, REAL, VIDEO_CRF
from dfrobust.errors import DfrobustError
from dfrobust.utils.io import to_uint8

#: File suffixes read as videos.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
#: Class-folder names (lower case) and their labels (as image folders).
VIDEO_CLASS_FOLDERS = {"fake": FAKE, "real": REAL, "1_fake": FAKE, "0_real": REAL}
#: The codec written; ``libx264`` ships in PyAV's wheels.
CODEC = "libx264"
#: Default CRF of written videos (x264's own default; 0 is lossless, 51 the coarsest).
DEFAULT_CRF = VIDEO_CRF


def require_av(what: str = "video input") -> Any:
    """The ``av`` module, or a one-line error naming the extra to install."""
    try:
        import av
    except ImportError:
        raise DfrobustError(f"{what} needs PyAV: pip install 'dfrobust[video]'") from None
    return av


@dataclass(frozen=True)
class Video:
    """One clip of a video layout: its file, its id (path relative to the root) and its label."""

    path: Path
    rel: str
    label: int


def is_video(path: Path) -> bool:
    """Whether ``path`` is a file with a video suffix."""
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def has_videos(root: str | Path) -> bool:
    """Whether ``root`` is a video layout: a class folder (real/fake, 0_real/1_fake) holding a video file."""
    root = Path(root)
    if not root.is_dir():
        return False
    for sub in root.iterdir():
        if sub.is_dir() and sub.name.lower() in VIDEO_CLASS_FOLDERS and any(is_video(p) for p in sub.rglob("*")):
            return True
    return False


def scan_videos(root: str | Path) -> list[Video]:
    """The clips of a video layout, real and fake, in sorted order; a one-line error when a class is empty."""
    root = Path(root)
    if not root.is_dir():
        raise DfrobustError(f"video folder {root} does not exist")
    videos: list[Video] = []
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and sub.name.lower() in VIDEO_CLASS_FOLDERS:
            label = VIDEO_CLASS_FOLDERS[sub.name.lower()]
            videos += [Video(p, p.relative_to(root).as_posix(), label) for p in sorted(sub.rglob("*")) if is_video(p)]
    for label, name in ((REAL, "real"), (FAKE, "fake")):
        if not any(v.label == label for v in videos):
            raise DfrobustError(
                f"{root} has no {name} videos; expected real/ and fake/ (or 0_real/ and 1_fake/) folders of {', '.join(VIDEO_EXTENSIONS)} files"
            )
    return videos


def read_frames(
    path: str | Path, fps: float | None = None, max_frames: int | None = None, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Decode a clip's frames sampled at ``fps`` per second of video time, ``T x 3 x H x W`` float in [0, 1].

    ``fps=None`` keeps every frame; the first frame is always kept. ``size`` resizes (bilinear,
    antialiased) to ``(H, W)``. An unreadable or empty file is a one-line error naming it.
    """
    av = require_av()
    frames: list[np.ndarray] = []
    next_time = 0.0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else len(frames) / float(stream.average_rate or 1)
                if fps is not None and t + 1e-6 < next_time:
                    continue
                frames.append(frame.to_ndarray(format="rgb24"))
                next_time = (next_time + 1.0 / fps) if fps else 0.0
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, IndexError, OSError) as err:
        raise DfrobustError(f"cannot read video {path}: {err}") from None
    if not frames:
        raise DfrobustError(f"video {path} has no frames")
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    if size is not None and tuple(clip.shape[-2:]) != tuple(size):
        clip = F.interpolate(clip, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return clip


def video_fps(path: str | Path) -> float:
    """A clip's average frame rate (frames per second)."""
    av = require_av()
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else 25.0


def encode_video(frames: torch.Tensor, fps: float, crf: int = DEFAULT_CRF) -> bytes:
    """Encode ``T x 3 x H x W`` frames in [0, 1] as H.264 (libx264, yuv420p) MP4 bytes at ``crf``.

    H.264 in yuv420p needs even sides: an odd side is padded by repeating its last row/column.
    """
    av = require_av("writing video")
    if not 0 <= int(crf) <= 51:
        raise DfrobustError(f"--crf must lie in 0..51, got {crf}")
    u8 = to_uint8(frames.detach().cpu()).permute(0, 2, 3, 1).numpy()
    h, w = u8.shape[1:3]
    if h % 2 or w % 2:
        u8 = np.pad(u8, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream(CODEC, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = u8.shape[2], u8.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "medium"}
        for img in u8:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def decode_video_bytes(data: bytes, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Every frame of an encoded clip, ``T x 3 x H x W`` float in [0, 1], cropped/resized to ``size`` (H, W)."""
    av = require_av()
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    if size is not None:
        clip = clip[..., : size[0], : size[1]]  # undo encode_video's even-side padding
    return clip


def write_video(path: str | Path, frames: torch.Tensor, fps: float, crf: int = DEFAULT_CRF) -> Path:
    """Write frames as an H.264 MP4 at ``crf`` (atomically: a temporary name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encode_video(frames, fps, crf))
    tmp.replace(path)
    return path


def h264_round_trip(x: torch.Tensor, crf: int | Sequence[int]) -> torch.Tensor:
    """Each image through H.264 as a one-frame clip at its CRF (an intra frame), back as float in [0, 1]."""
    crfs = [int(c) for c in np.broadcast_to(np.asarray(crf), (len(x),))]
    h, w = x.shape[-2:]
    # the codec works image by image; the loop is over encoder calls, not pixels
    out = [decode_video_bytes(encode_video(img[None], 25.0, c), (h, w))[0] for img, c in zip(x.detach().cpu(), crfs)]
    return torch.stack(out).to(x.device, x.dtype) if out else x
