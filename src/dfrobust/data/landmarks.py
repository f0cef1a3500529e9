"""The 68-point landmark layout (dlib's) shared by the renderer and real photos.

Two landmark sources feed one face-swap implementation: the procedural renderer
(:func:`dfrobust.data.faces.render_faces`) and dlib's 68-point shape predictor on photos
(:class:`DlibLandmarker`, optional extra ``faceswap``).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from dfrobust.errors import DfrobustError

JAW = list(range(0, 17))
BROWS = list(range(17, 27))
NOSE = list(range(27, 36))
EYES = list(range(36, 48))
MOUTH_OUTER = list(range(48, 60))
MOUTH_INNER = list(range(60, 68))
#: Points used for the piecewise-affine warp (inner lips are left out: they coincide when the mouth is closed).
WARP_POINTS = JAW + BROWS + NOSE + EYES + MOUTH_OUTER
#: Outline of the swapped region: the jaw, then the brows from right to left.
MASK_OUTLINE = JAW + BROWS[::-1]

INSTALL_HINT = "pip install 'dfrobust[faceswap]'"


@functools.cache
def template() -> np.ndarray:
    """A frontal mean face (68 x 2, face frame) from the renderer's identity distribution."""
    from dfrobust.data.faces import landmarks_face_frame, sample_identities, sample_scenes

    rng = np.random.default_rng(0)
    ident = {k: v.mean(0, keepdims=True) for k, v in sample_identities(rng, 512).items()}
    scene = {k: np.zeros_like(v[:1]) for k, v in sample_scenes(rng, 1).items()}
    return landmarks_face_frame(ident, scene)[0]


@functools.cache
def triangles() -> np.ndarray:
    """Delaunay triangles over :data:`WARP_POINTS` of the template, as ``T x 3`` indices into the 68 points."""
    from scipy.spatial import Delaunay

    pts = template()[WARP_POINTS]
    tri = Delaunay(pts.astype(np.float64)).simplices
    return np.asarray(WARP_POINTS)[tri].astype(np.int64)


def _predictor_path() -> Path:
    # face_recognition_models' own __init__ imports pkg_resources (gone from recent setuptools),
    # so find its data folder without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DfrobustError(f"the 68-point landmark model is missing (package face-recognition-models); {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise DfrobustError(f"{path} is missing; reinstall the extra: {INSTALL_HINT}")
    return path


def faceswap_extra_available() -> bool:
    """Whether dlib and its 68-point model are installed (the ``faceswap`` extra)."""
    try:
        _import_dlib()
        _predictor_path()
    except DfrobustError:
        return False
    return True


def _import_dlib():  # noqa: ANN202 - dlib has no type information
    try:
        import dlib
    except ImportError as exc:
        raise DfrobustError(f"face swap on photos needs dlib, which is not installed; {INSTALL_HINT}") from exc
    return dlib


@functools.cache
def _dlib_models():  # noqa: ANN202
    """dlib's detector and 68-point predictor, loaded once per process (the model file is 99 MB)."""
    dlib = _import_dlib()
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(_predictor_path()))


class DlibLandmarker:
    """dlib's frontal face detector + 68-point shape predictor, fully offline.

    >>> find = DlibLandmarker()  # doctest: +SKIP
    >>> points = find(image_uint8_hwc)  # 68 x 2 (x, y) pixel coordinates, or None without a face
    """

    def __init__(self) -> None:
        _import_dlib()  # fails with the install hint even when models were cached before
        self._detector, self._predictor = _dlib_models()

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """Landmarks of the largest face in a ``uint8 H x W x 3`` image, or ``None`` when no face is found."""
        image = np.ascontiguousarray(image)
        for upsample in (0, 1):  # upsampling finds small faces, at four times the cost
            rects = self._detector(image, upsample)
            if len(rects):
                break
        else:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        shape = self._predictor(image, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
