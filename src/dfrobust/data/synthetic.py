"""The built-in dataset: procedural faces (real) and face swaps between them (fake).

Reals are rendered faces; fakes put the inner face of identity A onto a photo of identity B
with :func:`dfrobust.data.swap.swap_faces`. Both then get the same publication processing
(:func:`dfrobust.data.photo.finish`), so no global cue (colour, overall sharpness, noise,
compression) gives the class away: a detector has to find the swap itself.

Identities are split between train and test (no identity appears in both), and the test
fraction is the same for both classes (a stratified split).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfrobust.constants import FAKE, MAX_IMAGE_SIDE, REAL
from dfrobust.data import photo
from dfrobust.data.faces import render_faces, sample_identities, sample_scenes
from dfrobust.data.knobs import SynthKnobs
from dfrobust.data.manifest import DatasetWriter, stratified_split
from dfrobust.data.provenance import finished_dataset, library_versions
from dfrobust.data.swap import SWAP_PARAMS, as_tensor_images, sample_swap_params, swap_faces
from dfrobust.data.threads import single_threaded_torch
from dfrobust.errors import DfrobustError
from dfrobust.utils.runtime import progress

CHUNK = 32  # images generated together; fixed so that the output never depends on it


def _round(values: np.ndarray) -> list:
    return np.round(values.astype(np.float64), 4).tolist()


def plan_synthetic(n: int, seed: int, test_fraction: float, knobs: SynthKnobs) -> dict[str, Any]:
    """Decide every image's label, split, identities, scene and processing parameters (no pixels).

    Everything random about the dataset except pixel noise is drawn here, from ``seed``.
    """
    if n < 8:
        raise DfrobustError(f"--n must be at least 8 (a real and a fake in each split), got {n}")
    rng = np.random.default_rng(seed)
    labels = np.array([FAKE] * (n // 2) + [REAL] * (n - n // 2))
    rng.shuffle(labels)  # mixes classes within each chunk of work
    splits = np.array(stratified_split(labels.tolist(), test_fraction, seed))
    n_ids = max(8, knobs.identities or n // 8)
    n_test_ids = min(n_ids - 2, max(2, round(n_ids * test_fraction)))
    ids = rng.permutation(n_ids)
    pools = {"test": ids[:n_test_ids], "train": ids[n_test_ids:]}
    target, source = np.zeros(n, np.int64), np.full(n, -1, np.int64)
    for split, pool in pools.items():
        sel = np.flatnonzero(splits == split)
        k = rng.integers(0, len(pool), len(sel))
        target[sel] = pool[k]
        # a different identity of the same pool as the face source of each fake
        source[sel] = pool[(k + rng.integers(1, len(pool), len(sel))) % len(pool)]
    source[labels == REAL] = -1
    n_fake = int((labels == FAKE).sum())
    return {
        "labels": labels,
        "splits": splits,
        "identities": sample_identities(rng, n_ids),
        "target": target,
        "source": source,
        "scene": sample_scenes(rng, n),
        "source_scene": sample_scenes(rng, n_fake),
        "capture": photo.sample_capture(rng, n),
        "source_capture": photo.sample_capture(rng, n_fake),
        "finish": photo.sample_finish(rng, n),
        **sample_swap_params(rng, n_fake, knobs),
    }


def _take(params: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in params.items()}


def _concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def render_chunk(plan: dict[str, Any], idx: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Pixels of the planned images ``idx``: ``uint8 len(idx) x size x size x 3``."""
    fake_rank = np.cumsum(plan["labels"] == FAKE) - 1  # position of each fake among the fakes
    is_fake = plan["labels"][idx] == FAKE
    fidx, frank = idx[is_fake], fake_rank[idx[is_fake]]
    ident = _take(plan["identities"], np.concatenate([plan["target"][idx], plan["source"][fidx]]))
    scene = _concat(_take(plan["scene"], idx), _take(plan["source_scene"], frank))
    cam = _concat(_take(plan["capture"], idx), _take(plan["source_capture"], frank))
    images, landmarks = render_faces(ident, scene, size, rng)
    images = photo.capture(images, cam, rng)
    if len(fidx):
        m = len(idx)
        x = as_tensor_images(images)
        lm = torch.from_numpy(landmarks)
        pos = np.flatnonzero(is_fake)
        params = {k: torch.from_numpy(plan[k][frank]) for k in SWAP_PARAMS}
        fakes, _ = swap_faces(x[pos], lm[pos], x[m:], lm[m:], **params)
        images[pos] = fakes.permute(0, 2, 3, 1).numpy()
    return photo.finish(images[: len(idx)], _take(plan["finish"], idx))


def _record(plan: dict[str, Any], i: int, fake_rank: int) -> dict[str, Any]:
    """Manifest fields of image ``i``: identities and generation parameters."""
    sc, cam, fin = plan["scene"], plan["capture"], plan["finish"]
    rec: dict[str, Any] = {
        "identity": int(plan["target"][i]),
        "pose": {k: round(float(sc[k][i]), 4) for k in ("yaw", "pitch", "roll", "scale")},
        "light": round(float(sc["light"][i]), 4),
        "camera_noise": round(float(cam["noise"][i]), 4),
        "blur": round(float(fin["blur"][i]), 4),
        "jpeg_quality": int(fin["jpeg"][i]),
    }
    if plan["labels"][i] == FAKE:
        rec["source_identity"] = int(plan["source"][i])
        rec["swap"] = {k: round(float(plan[k][fake_rank]), 4) for k in SWAP_PARAMS}
    return rec


def generate_synthetic(
    out_dir: str | Path,
    n: int = 2000,
    size: int = 64,
    seed: int = 0,
    test_fraction: float = 0.25,
    overwrite: bool = False,
    **knobs: Any,
) -> Path:
    """Write a synthetic real/fake face dataset folder and return its path.

    Args:
        out_dir: the dataset folder to create.
        n: number of images (half real, half fake; an odd extra one is real).
        size: image side in pixels.
        seed: seed of everything; the same arguments give byte-identical folders.
        test_fraction: fraction of each class in the test split.
        overwrite: replace an existing folder made with other settings.
        **knobs: :class:`SynthKnobs` fields (``feather``, ``resample``, ``color_mismatch``, ``artifacts``, ``identities``).

    A folder already made with the same arguments is kept as it is (the stage is skipped).

    >>> generate_synthetic("data/synth", n=200, size=64, seed=0)  # doctest: +SKIP
    PosixPath('data/synth')
    """
    unknown = set(knobs) - {f.name for f in dataclasses.fields(SynthKnobs)}
    if unknown:
        raise TypeError(f"unknown knob(s) {sorted(unknown)}; see SynthKnobs")
    kn = SynthKnobs(**knobs)
    kn.validate()
    if not 16 <= size <= MAX_IMAGE_SIDE:
        raise DfrobustError(f"--size must be between 16 and {MAX_IMAGE_SIDE} pixels, got {size}")
    args = {"n": n, "size": size, "seed": seed, "test_fraction": test_fraction, **dataclasses.asdict(kn)}
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in args.items() if v is not None)
    created_by = {"command": f"dfrobust data synth {flags}", "generator": "synthetic", "args": args, "versions": library_versions()}
    done = finished_dataset(out_dir, created_by)
    if done is not None:
        return done
    plan = plan_synthetic(n, seed, test_fraction, kn)
    fake_rank = np.cumsum(plan["labels"] == FAKE) - 1
    writer = DatasetWriter(out_dir, created_by=created_by, overwrite=overwrite)
    try:
        with single_threaded_torch(), progress(total=n, desc="synth", unit="img") as bar:
            for c, start in enumerate(range(0, n, CHUNK)):
                idx = np.arange(start, min(n, start + CHUNK))
                pixels = render_chunk(plan, idx, size, np.random.default_rng([seed, c]))
                for i, img in zip(idx, pixels):
                    writer.add(img, int(plan["labels"][i]), str(plan["splits"][i]), **_record(plan, int(i), int(fake_rank[i])))
                bar.update(len(idx))
        ids = plan["identities"]
        table = [{k: _round(v[j]) for k, v in ids.items()} for j in range(len(ids["aspect"]))]
        return writer.close(identities=table)
    except BaseException:
        writer.abort()
        raise
