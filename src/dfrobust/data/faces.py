"""Procedural faces: random identities and scenes, and a batched renderer with 68 landmarks.

Everything is drawn with implicit shapes (``F(x, y) < 0`` inside) evaluated on the pixel grid
for a whole batch at once, in a per-image *face frame*: origin between the cheeks, x to the
image right, y down, face half-width = 1. Anti-aliasing divides ``F`` by its pixel-grid
gradient, which gives a signed distance in pixels at any image size.

Landmarks follow dlib's 68-point layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
mouth 48-67), so the face-swap code treats rendered faces and real photos alike.

>>> rng = np.random.default_rng(0)
>>> ident, scene = sample_identities(rng, 4), sample_scenes(rng, 4)
>>> images, landmarks = render_faces(ident, scene, 64, rng)
>>> images.shape, landmarks.shape
((4, 64, 64, 3), (4, 68, 2))
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

Params = dict[str, np.ndarray]

# Colour palettes (linear-ish RGB in [0, 1]).
_SKIN_DARK = np.array([0.30, 0.18, 0.12], np.float32)
_SKIN_MID = np.array([0.72, 0.50, 0.36], np.float32)
_SKIN_LIGHT = np.array([0.96, 0.80, 0.70], np.float32)
_HAIR = np.array(
    [[0.05, 0.04, 0.04], [0.16, 0.10, 0.06], [0.33, 0.21, 0.12], [0.48, 0.22, 0.10],
     [0.78, 0.63, 0.38], [0.62, 0.60, 0.58], [0.25, 0.22, 0.20]], np.float32)  # fmt: skip
_HAIR_P = np.array([0.28, 0.24, 0.18, 0.07, 0.12, 0.07, 0.04])
_IRIS = np.array([[0.25, 0.14, 0.07], [0.12, 0.07, 0.04], [0.30, 0.45, 0.62], [0.32, 0.42, 0.25], [0.45, 0.45, 0.45]], np.float32)
_IRIS_P = np.array([0.40, 0.25, 0.15, 0.12, 0.08])


def _u(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.uniform(lo, hi, n).astype(np.float32)


def _pick(rng: np.random.Generator, palette: np.ndarray, p: np.ndarray, n: int, jitter: float) -> np.ndarray:
    idx = rng.choice(len(palette), size=n, p=p)
    return np.clip(palette[idx] + rng.normal(0, jitter, (n, 3)), 0, 1).astype(np.float32)


def sample_identities(rng: np.random.Generator, n: int) -> Params:
    """Draw ``n`` identities: face shape, skin, eyes, brows, nose, mouth, hair, ears, beard.

    Returns a dict of arrays whose first axis is the identity; index it with an array of
    identity ids to get per-image parameters for :func:`render_faces`.
    """
    tone = rng.beta(1.6, 1.4, n).astype(np.float32)
    skin = np.where(tone[:, None] < 0.5, _SKIN_DARK + (_SKIN_MID - _SKIN_DARK) * (2 * tone[:, None]),
                    _SKIN_MID + (_SKIN_LIGHT - _SKIN_MID) * (2 * tone[:, None] - 1))  # fmt: skip
    skin = np.clip(skin * (1 + rng.normal(0, 0.04, (n, 3))), 0, 1).astype(np.float32)
    hair = _pick(rng, _HAIR, _HAIR_P, n, 0.03)
    lip_mix = _u(rng, 0.25, 0.55, n)[:, None]
    lips = (skin * (1 - lip_mix) + np.array([0.62, 0.22, 0.24], np.float32) * lip_mix) * _u(rng, 0.75, 0.95, n)[:, None]
    return {
        "aspect": _u(rng, 1.22, 1.42, n),  # face half-height / half-width
        "chin": _u(rng, 0.12, 0.38, n),  # narrowing of the jaw towards the chin
        "chin_power": _u(rng, 1.2, 2.6, n),  # low: pointed chin, high: square jaw
        "skin": skin,
        "blush": _u(rng, 0.0, 0.10, n),
        "eye_x": _u(rng, 0.34, 0.43, n),
        "eye_y": _u(rng, -0.14, 0.0, n),
        "eye_w": _u(rng, 0.14, 0.19, n),
        "eye_h": _u(rng, 0.36, 0.52, n),  # eye height / width
        "eye_tilt": _u(rng, -0.04, 0.08, n),
        "iris": _pick(rng, _IRIS, _IRIS_P, n, 0.03),
        "iris_r": _u(rng, 0.42, 0.58, n),  # iris radius / eye half-width
        "brow_gap": _u(rng, 0.14, 0.22, n),
        "brow_thick": _u(rng, 0.035, 0.07, n),
        "brow_arch": _u(rng, 0.0, 0.07, n),
        "brow_len": _u(rng, 1.05, 1.35, n),
        "brow_alpha": _u(rng, 0.55, 0.95, n),
        "nose_y": _u(rng, 0.30, 0.42, n),
        "nose_w": _u(rng, 0.11, 0.17, n),
        "nose_shade": _u(rng, 0.06, 0.16, n),
        "mouth_y": _u(rng, 0.64, 0.78, n),
        "mouth_w": _u(rng, 0.24, 0.34, n),
        "lip_top": _u(rng, 0.03, 0.055, n),
        "lip_bottom": _u(rng, 0.04, 0.075, n),
        "smile": _u(rng, -0.02, 0.05, n),
        "mouth_open": np.where(rng.random(n) < 0.2, _u(rng, 0.015, 0.05, n), 0).astype(np.float32),
        "lips": np.clip(lips, 0, 1).astype(np.float32),
        "hair": hair,
        "hairline": _u(rng, -0.95, -0.55, n),  # y of the hairline at the centre
        "hair_curve": _u(rng, 0.15, 0.55, n),  # how far the hairline drops at the temples
        "hair_volume": _u(rng, 1.04, 1.22, n),
        "hair_length": np.where(rng.random(n) < 0.45, _u(rng, 0.6, 2.4, n), _u(rng, -0.6, 0.1, n)).astype(np.float32),
        "bald": (rng.random(n) < 0.07).astype(np.float32),
        "ear_size": _u(rng, 0.16, 0.24, n),
        "beard": np.where(rng.random(n) < 0.15, _u(rng, 0.25, 0.7, n), 0).astype(np.float32),
    }


def sample_scenes(rng: np.random.Generator, n: int) -> Params:
    """Draw ``n`` photo settings: framing, pose, gaze, lighting, background and clothes."""
    bg = rng.uniform(0.05, 0.95, (n, 2, 3))
    grey = bg.mean(-1, keepdims=True)
    bg = (grey + (bg - grey) * rng.uniform(0.1, 0.7, (n, 1, 1))).astype(np.float32)  # muted colours
    return {
        "cx": rng.normal(0, 0.04, n).astype(np.float32),
        "cy": (0.0 + rng.normal(0, 0.04, n)).astype(np.float32),
        "scale": _u(rng, 0.44, 0.54, n),  # face half-width in image half-widths
        "roll": np.clip(rng.normal(0, 0.09, n), -0.25, 0.25).astype(np.float32),  # radians
        "yaw": _u(rng, -0.6, 0.6, n),
        "pitch": np.clip(rng.normal(0, 0.3, n), -0.7, 0.7).astype(np.float32),
        "gaze": rng.normal(0, 0.2, (n, 2)).astype(np.float32),
        "light_dir": rng.uniform(0, 2 * np.pi, n).astype(np.float32),
        "light": _u(rng, 0.08, 0.45, n),
        "bg": bg,
        "bg_angle": rng.uniform(0, 2 * np.pi, n).astype(np.float32),
        "bg_texture": _u(rng, 0.0, 0.25, n),
        "clothes": rng.uniform(0.05, 0.9, (n, 3)).astype(np.float32),
    }


def _geometry(ident: Params, scene: Params) -> dict[str, np.ndarray]:
    """Feature positions in the face frame (shape ``N``), shifted by yaw and pitch."""
    yaw, pitch = scene["yaw"], scene["pitch"]
    dy = pitch * 0.08
    g = {
        "eye_lx": -ident["eye_x"] + yaw * 0.13, "eye_rx": ident["eye_x"] + yaw * 0.13,
        "eye_y": ident["eye_y"] + dy,
        "eye_lw": ident["eye_w"] * (1 + 0.25 * yaw), "eye_rw": ident["eye_w"] * (1 - 0.25 * yaw),
        "brow_lx": -ident["eye_x"] - 0.02 + yaw * 0.12, "brow_rx": ident["eye_x"] + 0.02 + yaw * 0.12,
        "brow_y": ident["eye_y"] + dy - ident["brow_gap"],
        "bridge_x": yaw * 0.16, "tip_x": yaw * 0.30,
        "nose_y": ident["nose_y"] + dy * 1.3,
        "mouth_x": yaw * 0.14, "mouth_y": ident["mouth_y"] + dy,
        "ear_x": -yaw * 0.08,
    }  # fmt: skip
    g["brow_lw"] = ident["eye_w"] * ident["brow_len"] * (1 + 0.25 * yaw)
    g["brow_rw"] = ident["eye_w"] * ident["brow_len"] * (1 - 0.25 * yaw)
    return g


def _jaw_halfwidth(t: np.ndarray, chin: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Face half-width at normalised height ``t = y / aspect`` (in ``[-1, 1]``)."""
    narrowing = 1 - chin * np.maximum(t, 0) ** power
    return narrowing * np.sqrt(np.clip(1 - t**2, 0, None))


def _eye_curves(t: np.ndarray, cy, hw, h_ratio, tilt):
    """Upper and lower lid heights of an almond eye at ``t`` (-1 outer .. 1 inner, signed by side)."""
    base = cy - tilt * hw * t
    return base - h_ratio * hw * (1 - t**2), base + 0.8 * h_ratio * hw * (1 - t**2)


def _lip_curves(t: np.ndarray, ident: Params, my) -> tuple:
    """Mouth line, upper-lip top and lower-lip bottom at ``t`` in ``[-1, 1]`` across the mouth."""
    line = my - ident["smile"] * t**2 + ident["smile"] * 0.3
    body = np.sqrt(np.clip(1 - t**2, 0, None))
    top = line - ident["lip_top"] * body * (1 - 0.35 * np.exp(-((t / 0.18) ** 2)))  # cupid's bow
    bottom = line + ident["lip_bottom"] * body**1.2
    return line, top, bottom


def landmarks_face_frame(ident: Params, scene: Params) -> np.ndarray:
    """The 68 landmarks in the face frame, ``N x 68 x 2``."""
    n = len(scene["yaw"])
    g = _geometry(ident, scene)
    a = ident["aspect"]
    pts = np.zeros((n, 68, 2), np.float32)
    # jaw: from the left temple at eye level, round the chin, to the right temple
    t0 = np.clip((g["eye_y"] + 0.04) / a, -0.5, 0.5)
    th0 = np.arcsin(t0)
    theta = th0[:, None] + (np.pi - 2 * th0[:, None]) * np.linspace(0, 1, 17)[None]
    t = np.sin(theta)
    hw = _jaw_halfwidth(t, ident["chin"][:, None], ident["chin_power"][:, None])
    pts[:, 0:17, 0] = -np.sign(np.cos(theta)) * hw
    pts[:, 0:17, 1] = a[:, None] * t
    # brows: left to right in the image
    tb = np.linspace(-1, 1, 5)[None]
    for sl, bx, bw, outer_sign in ((slice(17, 22), "brow_lx", "brow_lw", -1), (slice(22, 27), "brow_rx", "brow_rw", 1)):
        pts[:, sl, 0] = g[bx][:, None] + g[bw][:, None] * tb
        pts[:, sl, 1] = _brow_center(tb * outer_sign, g["brow_y"][:, None], ident["brow_arch"][:, None])
    # nose bridge (27-30) and base (31-35)
    f = np.linspace(0, 1, 4)[None]
    pts[:, 27:31, 0] = g["bridge_x"][:, None] * (1 - f) + g["tip_x"][:, None] * f
    pts[:, 27:31, 1] = (g["eye_y"] - 0.02)[:, None] * (1 - f) + (g["nose_y"] - 0.04)[:, None] * f
    pts[:, 31:36, 0] = g["tip_x"][:, None] * 0.85 + ident["nose_w"][:, None] * np.array([-1, -0.5, 0, 0.5, 1])
    pts[:, 31:36, 1] = g["nose_y"][:, None] + np.array([0.0, 0.025, 0.035, 0.025, 0.0])
    # eyes: clockwise from the leftmost point (36-41 image-left eye, 42-47 image-right eye)
    te = np.array([-1, -1 / 3, 1 / 3, 1, 1 / 3, -1 / 3])
    upper = np.array([False, True, True, False, False, False])
    for start, ex, ew, side in ((36, "eye_lx", "eye_lw", -1), (42, "eye_rx", "eye_rw", 1)):
        hw_e = g[ew][:, None]
        up, lo = _eye_curves(te[None] * side, g["eye_y"][:, None], hw_e, ident["eye_h"][:, None], ident["eye_tilt"][:, None])
        pts[:, start : start + 6, 0] = g[ex][:, None] + hw_e * te[None]
        pts[:, start : start + 6, 1] = np.where(upper[None], up, lo)
        pts[:, [start, start + 3], 1] = up[:, [0, 3]]
    # mouth: outer 48-59 clockwise from the left corner, inner 60-67
    mw, mx = ident["mouth_w"][:, None], g["mouth_x"][:, None]
    to = np.array([-1, -0.6, -0.25, 0, 0.25, 0.6, 1, 0.6, 0.25, 0, -0.25, -0.6])
    cols = {k: v[:, None] for k, v in ident.items() if v.ndim == 1}
    line, top, bottom = _lip_curves(to[None], cols, g["mouth_y"][:, None])
    pts[:, 48:60, 0] = mx + mw * to[None]
    pts[:, 48:60, 1] = np.where(np.arange(12)[None] <= 6, top, bottom)
    pts[:, [48, 54], 1] = line[:, [0, 6]]
    ti = np.array([-0.9, -0.33, 0, 0.33, 0.9, 0.33, 0, -0.33])
    line_i, _, _ = _lip_curves(ti[None], cols, g["mouth_y"][:, None])
    half_open = ident["mouth_open"][:, None] / 2 * np.sqrt(np.clip(1 - ti**2, 0, None))[None]
    pts[:, 60:68, 0] = mx + mw * ti[None]
    pts[:, 60:68, 1] = line_i + np.where(np.arange(8)[None] <= 4, -half_open, half_open)
    return pts


def _brow_center(t_out: np.ndarray, by, arch) -> np.ndarray:
    """Brow centre-line height at ``t_out`` (-1 inner end .. 1 outer end)."""
    return by - arch * (1 - t_out**2) + 0.02 * t_out


def to_pixels(points: np.ndarray, scene: Params, size: int) -> np.ndarray:
    """Face-frame points ``N x K x 2`` -> pixel coordinates (x, y), pixel centres at integers."""
    c, s = np.cos(scene["roll"])[:, None], np.sin(scene["roll"])[:, None]
    sc = scene["scale"][:, None]
    u = scene["cx"][:, None] + sc * (c * points[..., 0] - s * points[..., 1])
    v = scene["cy"][:, None] + sc * (s * points[..., 0] + c * points[..., 1])
    return np.stack([(u + 1) * size / 2 - 0.5, (v + 1) * size / 2 - 0.5], -1).astype(np.float32)


class _Canvas:
    """The image being painted plus face-frame coordinates of every pixel."""

    def __init__(self, scene: Params, size: int) -> None:
        n = len(scene["yaw"])
        grid = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        u, v = grid[None, None, :], grid[None, :, None]
        c, s = np.cos(scene["roll"])[:, None, None], np.sin(scene["roll"])[:, None, None]
        sc = scene["scale"][:, None, None]
        du, dv = u - scene["cx"][:, None, None], v - scene["cy"][:, None, None]
        self.x = ((c * du + s * dv) / sc).astype(np.float32)
        self.y = ((-s * du + c * dv) / sc).astype(np.float32)
        self.u, self.v = np.broadcast_to(u, (n, size, size)), np.broadcast_to(v, (n, size, size))
        # channels first: numpy's inner loops then run along image rows, several times faster
        self.img = np.zeros((3, n, size, size), np.float32)

    def paint(self, cover: np.ndarray, color: np.ndarray, alpha: np.ndarray | float = 1.0) -> None:
        """Alpha-blend ``color`` (``3``, ``N x 3`` or ``3 x N x H x W``) where ``cover`` (``N x H x W``) is set."""
        col = color.reshape(3, 1, 1, 1) if color.ndim == 1 else _col(color) if color.ndim == 2 else color
        diff = col - self.img
        diff *= cover * alpha
        self.img += diff


def coverage(f: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of the shape ``f < 0`` (``N x H x W``), from ``f`` over its pixel gradient."""
    gy, gx = np.gradient(f, axis=(1, 2))
    dist = f / (np.sqrt(gx * gx + gy * gy) + 1e-6)
    return np.clip(0.5 - dist, 0, 1)


def _ellipse(x, y, cx, cy, rx, ry) -> np.ndarray:
    return np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) - 1


def _lowfreq(rng: np.random.Generator, n: int, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Smooth random fields ``C x N x H x W`` (bicubic upsampling of a coarse Gaussian grid)."""
    coarse = torch.from_numpy(rng.standard_normal((channels, n, cells, cells)).astype(np.float32))
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).numpy()


def render_faces(ident: Params, scene: Params, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render one face per row of ``ident``/``scene`` (per-image parameters, same length ``N``).

    Returns ``(images, landmarks)``: float32 ``N x size x size x 3`` in ``[0, 1]`` and
    float32 ``N x 68 x 2`` pixel coordinates ``(x, y)``. Pixel noise (skin texture, hair
    strands, background texture) comes from ``rng``.
    """
    n = len(scene["yaw"])
    cv = _Canvas(scene, size)
    x, y = cv.x, cv.y
    g = {k: v[:, None, None] for k, v in _geometry(ident, scene).items()}
    p = {k: v[:, None, None] if v.ndim == 1 else v for k, v in ident.items()}
    a = p["aspect"]

    _background(cv, scene, rng)
    strands = 1 + 0.14 * np.sin(x * 38 + 2.5 * _lowfreq(rng, n, size, 6)[0]) + 0.08 * _lowfreq(rng, n, size, 10)[0]
    hair_col = _col(ident["hair"]) * strands
    hair_col = np.clip(hair_col, 0, 1)
    hair_on = 1 - p["bald"] * 0.85
    # back hair: the volume behind the head, optionally long down to the shoulders
    long_hair = np.maximum(np.maximum(np.abs(x) - 1.08 * p["hair_volume"], y - p["hair_length"] - a * 0.5), -0.25 - y)
    back = np.minimum(_ellipse(x, y, 0, -0.25, 1.12 * p["hair_volume"], a * 1.02 * p["hair_volume"]), long_hair)
    cv.paint(coverage(back), hair_col, hair_on)
    # clothes and neck
    shoulder = a + 0.28 + 0.22 * np.maximum(np.abs(x) - 0.55, 0) ** 1.5 - 0.12
    cv.paint(coverage(shoulder - y), _col(scene["clothes"]) * (0.8 + 0.2 * np.clip(1.2 - np.abs(x) / 2, 0, 1)))
    skin = _col(ident["skin"])
    neck = np.maximum(np.abs(x) - 0.55, np.maximum(0.2 - y, y - (a + 0.45 - 0.25 * np.abs(x))))
    cv.paint(coverage(neck), skin * 0.72)
    # ears, behind the face outline
    for side in (-1, 1):
        ear = _ellipse(
            x, y, side * (0.97 + g["ear_x"] * side * 0.5) + g["ear_x"], g["eye_y"] + 0.2, p["ear_size"] * 0.6, p["ear_size"] * 1.25
        )
        cv.paint(coverage(ear), skin * _col(np.array([[0.92, 0.82, 0.80]], np.float32)))
        inner = _ellipse(x, y, side * 1.0 + g["ear_x"], g["eye_y"] + 0.2, p["ear_size"] * 0.3, p["ear_size"] * 0.8)
        cv.paint(coverage(inner) * coverage(ear), skin * 0.7, 0.5)
    # face with skin texture and blush
    t = y / a
    face_f = np.maximum(np.abs(x) - _jaw_halfwidth(t, p["chin"], p["chin_power"]), np.abs(t) - 1)
    face_cov = coverage(face_f)
    texture = 1 + 0.02 * rng.standard_normal((1, n, size, size), np.float32) + 0.03 * _lowfreq(rng, n, size, 8)
    blush = p["blush"] * np.exp(-(((np.abs(x) - 0.55) / 0.22) ** 2 + ((y - g["nose_y"]) / 0.2) ** 2))
    face_col = skin * texture * (1 - blush * _col(np.array([[0.0, 0.6, 0.5]], np.float32)))
    cv.paint(face_cov, np.clip(face_col, 0, 1))
    _beard(cv, p, g, face_cov, rng)
    _eyes(cv, p, g, ident, scene)
    _brows(cv, p, g, ident)
    _nose(cv, p, g)
    _mouth(cv, p, g, ident)
    # front hair: inside the hair volume and above a hairline that drops at the temples
    hairline = p["hairline"] + p["hair_curve"] * x**2 + 0.04 * np.sin(x * 7 + p["hair_curve"] * 20)
    front = np.maximum(_ellipse(x, y, 0, -0.22, 1.06 * p["hair_volume"], a * 1.0 * p["hair_volume"]), y - hairline)
    cv.paint(coverage(front), hair_col, hair_on)
    # lighting: directional shading and roll-off towards the face outline, on head and hair
    head = np.clip(face_cov + coverage(back) * hair_on + coverage(neck), 0, 1)
    lx, ly = np.cos(scene["light_dir"])[:, None, None], np.sin(scene["light_dir"])[:, None, None]
    light = scene["light"][:, None, None]
    shade = 1 + light * 0.6 * (lx * x + ly * y / a) - 0.22 * np.clip(x**2 + (y / a) ** 2, 0, 1.5) ** 2
    cv.img *= 1 + (shade - 1) * head
    landmarks = to_pixels(landmarks_face_frame(ident, scene), scene, size)
    return np.ascontiguousarray(np.clip(cv.img, 0, 1).transpose(1, 2, 3, 0)), landmarks


def _col(colors: np.ndarray) -> np.ndarray:
    """``N x 3`` colours -> ``3 x N x 1 x 1``, to broadcast against the channels-first canvas."""
    return colors.T[:, :, None, None]


def _background(cv: _Canvas, scene: Params, rng: np.random.Generator) -> None:
    n, size = cv.img.shape[1:3]
    ang = scene["bg_angle"][:, None, None]
    ramp = np.clip((np.cos(ang) * cv.u + np.sin(ang) * cv.v) * 0.5 + 0.5, 0, 1)
    c0, c1 = _col(scene["bg"][:, 0]), _col(scene["bg"][:, 1])
    tex = scene["bg_texture"][:, None, None] * (_lowfreq(rng, n, size, 5) + 0.3 * _lowfreq(rng, n, size, 12, 3))
    cv.img[:] = np.clip(c0 + (c1 - c0) * ramp + tex * 0.5, 0, 1)


def _eyes(cv: _Canvas, p: dict, g: dict, ident: Params, scene: Params) -> None:
    x, y = cv.x, cv.y
    for ex, ew, side in ((g["eye_lx"], g["eye_lw"], -1), (g["eye_rx"], g["eye_rw"], 1)):
        t = (x - ex) / ew
        up, lo = _eye_curves(t * side, g["eye_y"], ew, p["eye_h"], p["eye_tilt"])
        eye_f = np.maximum(np.abs(t) - 1, np.maximum(up - y, y - lo))
        eye = coverage(eye_f)
        # socket shadow around the eye, then the white, iris, pupil, catch-light and upper lid
        socket = np.exp(-((t / 1.4) ** 2 + ((y - g["eye_y"] + 0.02) / (ew * 0.9)) ** 2))
        cv.paint(socket, np.zeros(3, np.float32), 0.16)
        cv.paint(eye, np.array([0.93, 0.91, 0.88], np.float32) * 0.92)
        ir = p["iris_r"] * ew
        ix = ex + scene["gaze"][:, 0][:, None, None] * ew * 0.35
        iy = g["eye_y"] + scene["gaze"][:, 1][:, None, None] * ew * 0.12
        iris = coverage(_ellipse(x, y, ix, iy, ir, ir)) * eye
        cv.paint(iris, _col(ident["iris"]) * (0.8 + 0.4 * np.clip(1 - np.hypot(x - ix, y - iy) / ir, 0, 1)))
        cv.paint(coverage(_ellipse(x, y, ix, iy, ir * 0.45, ir * 0.45)) * eye, np.full(3, 0.03, np.float32))
        cv.paint(coverage(_ellipse(x, y, ix + ir * 0.3, iy - ir * 0.3, ir * 0.2, ir * 0.2)) * eye, np.ones(3, np.float32), 0.7)
        lid = np.maximum(np.abs(t) - 1.08, np.abs(y - up + ew * 0.03) - ew * 0.09)
        cv.paint(coverage(lid), np.full(3, 0.06, np.float32), 0.8)


def _brows(cv: _Canvas, p: dict, g: dict, ident: Params) -> None:
    x, y = cv.x, cv.y
    color = ident["hair"] * 0.7
    for bx, bw, side in ((g["brow_lx"], g["brow_lw"], -1), (g["brow_rx"], g["brow_rw"], 1)):
        t = (x - bx) / bw
        t_out = t * side
        center = _brow_center(t_out, g["brow_y"], p["brow_arch"])
        half = p["brow_thick"] * (1 - 0.45 * (t_out + 1) / 2) * 0.5
        brow = np.maximum(np.abs(t) - 1, np.abs(y - center) - half)
        cv.paint(coverage(brow), color, p["brow_alpha"])


def _nose(cv: _Canvas, p: dict, g: dict) -> None:
    x, y = cv.x, cv.y
    dark = np.zeros(3, np.float32)
    span = np.clip((y - g["eye_y"]) / (g["nose_y"] - g["eye_y"]), 0, 1)
    nose_x = g["bridge_x"] + (g["tip_x"] - g["bridge_x"]) * span
    side = np.where(g["tip_x"] >= 0, -1.0, 1.0)  # shadow on the side the nose turns away from
    ridge = np.exp(-(((x - nose_x - side * p["nose_w"] * 0.55) / 0.045) ** 2)) * ((y > g["eye_y"]) & (y < g["nose_y"]))
    cv.paint(ridge.astype(np.float32), dark, p["nose_shade"])
    under = np.exp(-(((x - g["tip_x"]) / (p["nose_w"] * 1.3)) ** 2 + ((y - g["nose_y"] - 0.06) / 0.035) ** 2))
    cv.paint(under, dark, p["nose_shade"] * 1.2)
    for s in (-1, 1):
        nostril = _ellipse(x, y, g["tip_x"] * 0.9 + s * p["nose_w"] * 0.5, g["nose_y"] + 0.015, p["nose_w"] * 0.32, 0.022)
        cv.paint(coverage(nostril), np.full(3, 0.12, np.float32), 0.75)
    tip = np.exp(-(((x - g["tip_x"]) / (p["nose_w"] * 0.6)) ** 2 + ((y - g["nose_y"] + 0.04) / 0.05) ** 2))
    cv.paint(tip, np.ones(3, np.float32), 0.10)


def _mouth(cv: _Canvas, p: dict, g: dict, ident: Params) -> None:
    x, y = cv.x, cv.y
    t = (x - g["mouth_x"]) / p["mouth_w"]
    line, top, bottom = _lip_curves(t, p, g["mouth_y"])
    body = np.sqrt(np.clip(1 - t**2, 0, None))
    gap = p["mouth_open"] / 2 * body
    inside = np.abs(t) - 1
    lips = _col(ident["lips"]) * (1 + 0.12 * np.clip((y - line) / p["lip_bottom"], -1, 1))
    cv.paint(coverage(np.maximum(inside, np.maximum(top - y, y - line + gap))), lips * 0.92)
    cv.paint(coverage(np.maximum(inside, np.maximum(line + gap - y, y - bottom))), lips)
    opening = coverage(np.maximum(inside + 0.1, np.abs(y - line) - gap)) * (p["mouth_open"] > 0)
    cv.paint(opening, np.array([0.25, 0.08, 0.08], np.float32))
    teeth = opening * coverage(np.abs(y - line + gap * 0.4) - gap * 0.45)
    cv.paint(teeth, np.array([0.85, 0.82, 0.75], np.float32), 0.8)
    seam = np.maximum(inside - 0.02, np.abs(y - line) - 0.008)
    cv.paint(coverage(seam), np.full(3, 0.1, np.float32), 0.5)


def _beard(cv: _Canvas, p: dict, g: dict, face_cov: np.ndarray, rng: np.random.Generator) -> None:
    x, y = cv.x, cv.y
    n, size = x.shape[:2]
    region = np.clip((y - (g["nose_y"] + 0.12)) / 0.15, 0, 1) * np.clip(0.9 - np.abs(x) / 1.1, 0, 1) * 2
    stubble = np.clip(region, 0, 1) * face_cov * p["beard"] * (0.7 + 0.3 * rng.random((n, size, size)).astype(np.float32))
    cv.paint(stubble, p["hair"].reshape(n, 3) * 0.8)
