"""Face swap, batched: the inner face of a source image is put onto a target image's face.

The steps are those of graphics and autoencoder deepfakes: warp the source's inner face onto
the target's 68 landmarks (piecewise affine over a fixed triangulation), pass it through a
lossy "generator" (down- then up-sampling), transfer the target's colour statistics
imperfectly, add the decoder's checkerboard fingerprint, and blend it in under a feathered
mask. Landmarks may come from the renderer or
from dlib on photos; this module does not care which.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dfrobust.data.knobs import SwapKnobs
from dfrobust.data.landmarks import MASK_OUTLINE, triangles

#: Per-fake parameters of :func:`swap_faces` (besides the images and landmarks).
SWAP_PARAMS = ("feather", "resample", "color_match", "artifacts")


def sample_swap_params(rng: np.random.Generator, n: int, knobs: SwapKnobs) -> dict[str, np.ndarray]:
    """Per-fake ``feather``, ``resample``, ``color_match`` and ``artifacts`` (``N`` each) drawn around the knobs."""
    return {
        "feather": (knobs.feather * rng.uniform(0.5, 1.5, n)).astype(np.float32),
        "resample": (1 + (knobs.resample - 1) * rng.uniform(0.6, 1.4, n)).astype(np.float32),
        "color_match": np.clip(1 - knobs.color_mismatch * rng.uniform(0, 2, n), 0, 1).astype(np.float32),
        "artifacts": (knobs.artifacts * rng.uniform(0.5, 1.5, n)).astype(np.float32),
    }


def _stride(size: tuple[int, int]) -> int:
    """Sampling stride of the smooth fields below: about 32 samples across, whatever the image size."""
    return max(1, round(min(size) / 32))


def _coarse_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    return -(-size[0] // stride), -(-size[1] // stride)


def _pixel_grid(h: int, w: int, dtype: torch.dtype, stride: int = 1) -> torch.Tensor:
    """Homogeneous pixel coordinates ``3 x P`` (rows x, y, 1) of a grid ``stride`` times coarser.

    The samples sit where bilinear up-sampling (``align_corners=False``) expects them, so
    :func:`_upsample` brings the field back exactly for any image size.
    """
    hc, wc = _coarse_size((h, w), stride)
    ys = (torch.arange(hc, dtype=dtype) + 0.5) * (h / hc) - 0.5
    xs = (torch.arange(wc, dtype=dtype) + 0.5) * (w / wc) - 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1), torch.ones(xx.numel(), dtype=dtype)])


def _upsample(field: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A field sampled at block centres (``N x C x h x w``) -> full resolution ``N x C x H x W``.

    Bilinear interpolation is exact inside each affine piece, so computing these piecewise
    smooth fields on a coarse grid costs little accuracy and saves most of the time.
    """
    return field if field.shape[-2:] == size else F.interpolate(field, size=size, mode="bilinear", align_corners=False)


def piecewise_affine_coords(src_lm: torch.Tensor, dst_lm: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """For each target pixel, the source pixel it comes from: ``N x H x W x 2`` (x, y).

    Each pixel takes the affine map of the triangle (over the target's landmarks) it lies in;
    outside the landmark hull, that of the triangle it is closest to lying in, which extends
    the warp smoothly. Triangles that degenerate in the target are ignored.
    """
    h, w = size
    stride = _stride(size)
    tri = torch.from_numpy(triangles())
    d = dst_lm[:, tri]  # N x T x 3 x 2
    s = src_lm[:, tri]
    v0, v1 = d[:, :, 1] - d[:, :, 0], d[:, :, 2] - d[:, :, 0]
    det = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
    ok = det.abs() > 1e-6
    inv = torch.where(ok, 1 / torch.where(ok, det, torch.ones_like(det)), torch.zeros_like(det))
    d0x, d0y = d[:, :, 0, 0], d[:, :, 0, 1]
    # barycentric weights of vertices 1 and 2 as affine functions of the pixel: M @ (x, y, 1)
    m = torch.stack([
        torch.stack([v1[..., 1], -v1[..., 0], v1[..., 0] * d0y - v1[..., 1] * d0x], -1),
        torch.stack([-v0[..., 1], v0[..., 0], v0[..., 1] * d0x - v0[..., 0] * d0y], -1),
    ], -2) * inv[..., None, None]  # fmt: skip
    grid = _pixel_grid(h, w, dst_lm.dtype, stride)
    lam = m @ grid  # N x T x 2 x P
    l1, l2 = lam[:, :, 0], lam[:, :, 1]
    score = torch.minimum(torch.minimum(l1, l2), 1 - l1 - l2)
    score = torch.where(ok[..., None], score, torch.full_like(score, -torch.inf))
    best = score.argmax(1)  # N x P: the triangle each pixel lies deepest in
    l1 = torch.gather(l1, 1, best[:, None]).squeeze(1)
    l2 = torch.gather(l2, 1, best[:, None]).squeeze(1)
    sv = torch.gather(s, 1, best[..., None, None].expand(-1, -1, 3, 2))  # N x P x 3 x 2
    src = sv[:, :, 0] + l1[..., None] * (sv[:, :, 1] - sv[:, :, 0]) + l2[..., None] * (sv[:, :, 2] - sv[:, :, 0])
    src = src.reshape(len(dst_lm), *_coarse_size(size, stride), 2).permute(0, 3, 1, 2)
    return _upsample(src, size).permute(0, 2, 3, 1)


def warp_to_landmarks(source: torch.Tensor, src_lm: torch.Tensor, dst_lm: torch.Tensor, chunk_elems: int = 2**23) -> torch.Tensor:
    """Warp ``source`` images (``N x 3 x H x W``) so that their landmarks land on ``dst_lm``."""
    n, _, h, w = source.shape
    per = max(1, chunk_elems // (len(triangles()) * h * w // _stride((h, w)) ** 2))  # bounds the N x T x P tensors
    out = []
    for i in range(0, n, per):
        coords = piecewise_affine_coords(src_lm[i : i + per], dst_lm[i : i + per], (h, w))
        scale = torch.tensor([w, h], dtype=coords.dtype)
        grid = (coords + 0.5) / scale * 2 - 1  # pixel centres -> grid_sample's [-1, 1] (align_corners=False)
        out.append(F.grid_sample(source[i : i + per], grid, mode="bilinear", padding_mode="border", align_corners=False))
    return torch.cat(out)


def generator_resample(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """The lossy "generator": down-sample each image by its ``factor`` (antialiased) and up-sample
    it back (bilinear).

    Images are grouped by their low resolution: one call per distinct size, not per image.
    """
    h, w = x.shape[-2:]
    low = torch.clamp((h / factor).round().long(), 4, h)
    out = x.clone()
    for lh in torch.unique(low).tolist():
        idx = torch.nonzero(low == lh).squeeze(1)
        lw = max(4, round(w * lh / h))
        small = F.interpolate(x[idx], size=(lh, lw), mode="bilinear", antialias=True, align_corners=False)
        out[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out


def decoder_checkerboard(x: torch.Tensor, amplitude: torch.Tensor) -> torch.Tensor:
    """Add the period-2 checkerboard that a decoder's last transposed convolution leaves in its
    output (Odena et al., 2016), ``amplitude`` (``N``) in pixel units: the spectral fingerprint
    by which GAN and autoencoder images are often detected."""
    h, w = x.shape[-2:]
    checker = ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2 * 2 - 1).to(x.dtype)
    return (x + amplitude.to(x.dtype)[:, None, None, None] * checker).clamp(0, 1)


def polygon_inside_distance(poly: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Signed distance (pixels, positive inside) of each pixel to a closed polygon ``N x K x 2``."""
    h, w = size
    stride = _stride(size)
    grid = _pixel_grid(h, w, poly.dtype, stride)
    px, py = grid[0], grid[1]  # P
    a, b = poly, torch.roll(poly, -1, dims=1)  # edges a -> b, N x K x 2
    ax, ay = a[..., 0:1], a[..., 1:2]  # N x K x 1
    abx, aby = b[..., 0:1] - ax, b[..., 1:2] - ay
    dx, dy = px - ax, py - ay  # N x K x P
    t = ((dx * abx + dy * aby) / (abx * abx + aby * aby).clamp_min(1e-9)).clamp(0, 1)
    dist = ((dx - t * abx) ** 2 + (dy - t * aby) ** 2).amin(1).sqrt()  # N x P
    straddles = (ay > py) != (b[..., 1:2] > py)
    x_cross = ax + dy * abx / torch.where(aby == 0, torch.ones_like(aby), aby)
    inside = ((straddles & (px < x_cross)).sum(1) % 2) == 1  # even-odd rule
    signed = torch.where(inside, dist, -dist).reshape(len(poly), 1, *_coarse_size(size, stride))
    return _upsample(signed, size)[:, 0]


def face_mask(landmarks: torch.Tensor, size: tuple[int, int], feather: torch.Tensor, erode: float = 0.03) -> torch.Tensor:
    """Soft mask ``N x 1 x H x W`` of the inner face: jaw + brows outline, eroded, with a feathered edge.

    ``feather`` (``N``) and ``erode`` are fractions of the face width (jaw end to jaw end).
    """
    width = (landmarks[:, 16] - landmarks[:, 0]).norm(dim=-1).clamp_min(1.0)[:, None, None]
    inside = polygon_inside_distance(landmarks[:, MASK_OUTLINE], size)
    ramp = ((inside - erode * width) / (feather[:, None, None] * width).clamp_min(0.5)).clamp(0, 1)
    return (ramp * ramp * (3 - 2 * ramp))[:, None]  # smoothstep


def match_colors(source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Move ``source``'s per-channel mean and spread under ``weight`` towards ``target``'s.

    ``strength`` (``N``) is 1 for a full statistics transfer, 0 for none.
    """
    wsum = weight.sum((2, 3), keepdim=True).clamp_min(1e-6)

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = (x * weight).sum((2, 3), keepdim=True) / wsum
        sd = (((x - mu) ** 2 * weight).sum((2, 3), keepdim=True) / wsum).sqrt().clamp_min(1e-3)
        return mu, sd

    (mu_s, sd_s), (mu_t, sd_t) = stats(source), stats(target)
    k = strength.to(source.dtype)[:, None, None, None]
    return ((source - mu_s) * (sd_t / sd_s) ** k + mu_s + k * (mu_t - mu_s)).clamp(0, 1)


def swap_faces(
    target: torch.Tensor,
    target_lm: torch.Tensor,
    source: torch.Tensor,
    source_lm: torch.Tensor,
    feather: torch.Tensor,
    resample: torch.Tensor,
    color_match: torch.Tensor,
    artifacts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put each source's inner face onto its target; returns ``(fakes, masks)``.

    Args:
        target, source: float images ``N x 3 x H x W`` in ``[0, 1]`` (same size).
        target_lm, source_lm: their 68 landmarks, ``N x 68 x 2`` pixel coordinates ``(x, y)``.
        feather: blend-edge width as a fraction of the face width (``N``; e.g. 0.1).
        resample: generator down-sampling factor (``N``; 1 = lossless).
        color_match: strength of the colour transfer to the target (``N``; 1 = full).
        artifacts: amplitude of the generator's checkerboard texture (``N``; default none).
    """
    size = tuple(target.shape[-2:])
    warped = warp_to_landmarks(source, source_lm, target_lm)
    generated = generator_resample(warped, resample)
    mask = face_mask(target_lm, size, feather)
    matched = match_colors(generated, target, mask, color_match)
    if artifacts is not None:
        matched = decoder_checkerboard(matched, artifacts)
    return target + mask * (matched - target), mask


def as_tensor_images(images: np.ndarray) -> torch.Tensor:
    """``N x H x W x 3`` numpy images (float or uint8) -> float tensor ``N x 3 x H x W`` in ``[0, 1]``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
