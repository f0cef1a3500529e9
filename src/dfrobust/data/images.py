"""Reading arbitrary image files robustly: any format Pillow reads, any mode, to 8-bit RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: File extensions taken as images (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden files skipped), sorted for a stable order."""
    folder = Path(folder)
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )  # fmt: skip


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow image to RGB: EXIF rotation applied, transparency composited on white,
    16-bit and float greyscale scaled to 8 bits."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        scale = 1 / 257 if im.mode.startswith("I;16") or arr.max() > 255 else 1.0
        im = Image.fromarray(np.clip(arr * scale, 0, 255).round().astype(np.uint8), mode="L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file fully into ``uint8 H x W x 3``.

    Raises ``OSError``/``ValueError`` (Pillow's errors) for unreadable or truncated files; the
    callers skip and list those files.
    """
    with Image.open(path) as im:
        im.load()  # decode everything now, so a truncated file fails here
        return np.asarray(to_rgb(im), dtype=np.uint8)


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size x size`` (Lanczos), ``uint8 H x W x 3`` in and out."""
    im = Image.fromarray(image)
    return np.asarray(ImageOps.fit(im, (size, size), method=Image.LANCZOS, centering=(0.5, 0.5)))


def read_error(exc: BaseException) -> str:
    """A one-line reason for a file that could not be read."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text}"
