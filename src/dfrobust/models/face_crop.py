"""A face crop inside the model (a card's ``face_crop = true``): DeepfakeBench's aligned crop, differentiable in the pixels.

Deployed detectors classify an aligned crop around the face, not the whole photo. :class:`FaceCrop`
finds each image's landmarks (dlib, offline; on the image as 8-bit pixels, outside the graph),
fits DeepfakeBench's similarity transform (:mod:`dfrobust.data.crop`) and samples the crop with
``grid_sample``, so gradients reach the input pixels through the crop: attacks see the same
model a user deploys. An image where no face is found is used whole (resized), and counted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dfrobust.data.crop import DFB_SCALE, KEYPOINTS, template_points


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3 x 3 matrix of the least-squares similarity transform taking ``src`` points onto ``dst`` (Umeyama)."""
    from skimage.transform import SimilarityTransform

    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(src, dst)
    else:
        tform = SimilarityTransform()
        tform.estimate(src, dst)
    return np.asarray(tform.params, dtype=np.float64)


class FaceCrop(nn.Module):
    """Images ``N x 3 x H x W`` in ``[0, 1]`` -> aligned face crops ``N x 3 x size x size``.

    Args:
        size: the crop's side (the detector's input size).
        scale: DeepfakeBench's margin (1.3).
        landmarker: ``uint8 H x W x 3 -> 68 x 2 landmarks or None``; default dlib's (the ``faceswap`` extra).
    """

    def __init__(self, size: int, scale: float = DFB_SCALE, landmarker: Callable[[np.ndarray], np.ndarray | None] | None = None) -> None:
        super().__init__()
        if landmarker is None:
            from dfrobust.data.landmarks import DlibLandmarker

            landmarker = DlibLandmarker()
        self.size, self.scale, self.landmarker = int(size), float(scale), landmarker
        self.no_face = 0  # images used whole because no face was found (over the module's life)

    def thetas(self, x: torch.Tensor) -> torch.Tensor:
        """``N x 2 x 3`` sampling matrices (normalised coordinates, ``align_corners=False``) of each image's crop."""
        h, w = x.shape[-2:]
        s = self.size
        pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        # crop pixel centres -> normalised crop coordinates, and source pixels -> normalised source coordinates
        from_crop = np.array([[s / 2, 0, s / 2 - 0.5], [0, s / 2, s / 2 - 0.5], [0, 0, 1]])
        to_source = np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])
        dst = template_points(s, self.scale)
        out = []
        for img in pixels:
            points = self.landmarker(img)
            if points is None:
                self.no_face += 1
                out.append(np.array([[1.0, 0, 0], [0, 1.0, 0]]))  # the whole image
                continue
            crop_to_source = np.linalg.inv(_similarity(np.asarray(points, np.float64)[list(KEYPOINTS)], dst))
            out.append((to_source @ crop_to_source @ from_crop)[:2])
        return torch.tensor(np.stack(out), dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The crops, differentiable in ``x`` (the crop's geometry is held fixed within one call)."""
        grid = F.affine_grid(self.thetas(x), [x.shape[0], x.shape[1], self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}"
