"""Deep Image Prior purification: fit a fresh generator to each (possibly adversarial) image.

Each image ``x`` gets its own network ``f(theta, z)``, trained with Adam to minimise
``MSE(f(theta, z + noise), x)``; the image generated at an intermediate iteration ``T`` is
what the classifier sees (the paper: 10,000 iterations, classify at 6,000). Many images are
purified at once (:class:`~dfrobust.defenses.dip_net.DipNet` holds one network per image), and
a batch follows the same trajectory as separate runs with the same seeds: the loss is the sum
of per-image MSEs, so each image's gradients, and Adam's elementwise updates, are its own.

With ``DipConfig(early_stop=True)`` each image is instead classified at its own stopping point,
found by ES-WMV (Wang et al., "Early stopping for deep image prior": the windowed moving
variance of the outputs, :class:`WindowedVarianceStop`); a batch runs until every image has
stopped or ``iterations`` are done. The stopping point depends on the data, so exact and
unrolled gradients through the fit (:mod:`~dfrobust.defenses.dip_exact`) refuse it.

>>> traj = purify_batch(torch.rand(2, 3, 32, 32), seeds=[0, 1], cfg=DipConfig(iterations=20))  # doctest: +SKIP
>>> traj.final.shape  # doctest: +SKIP
torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from dfrobust.defenses.dip_early_stop import ES_CHECK_EVERY, WindowedVarianceStop
from dfrobust.defenses.dip_record import DipTrajectory, record_sample, recorded_iterations
from dfrobust.defenses.base import Purifier, register_purifier
from dfrobust.defenses.dip_net import DipNet, crop_back, padded_size, reflect_pad_to
from dfrobust.errors import DfrobustError
from dfrobust.evaluate.image_metrics import mse, psnr_from_mse
from dfrobust.models.inference import p_real
from dfrobust.utils.params import Boolean, Interval, StrOptions, check_params
from dfrobust.utils.runtime import progress

#: Derived-seed offset of the per-iteration noise stream (kept apart from the init stream).
_NOISE_STREAM = 0x5EED_0D1B
#: Where in the optimisation the output is classified by default (the paper: 6,000 of 10,000 iterations).
CLASSIFY_FRACTION = 0.6
#: DipConfig fields of ES-WMV early stopping: left out of config keys while ``early_stop`` is off (:func:`config_key`).
EARLY_STOP_FIELDS = ("early_stop", "es_window", "es_patience")
#: The constraints of DIP's options, declared once: :class:`DipConfig` checks its fields by them and
#: :class:`Dip` (the purifier) declares them as its ``params`` (plus ``classify_at``).
DIP_PARAMS = {
    "iterations": Interval(1, integer=True),
    "lr": Interval(0, lo_open=True),
    "input_noise": StrOptions("uniform", "normal"),
    "ema_weight": Interval(0, 1, hi_open=True),
    "record_every": Interval(1, integer=True),
    "dtype": StrOptions("float32", "float64"),
    "amp": StrOptions("none", "bf16"),
    "early_stop": Boolean(),
    "es_window": Interval(2, integer=True),  # outputs in the variance window
    "es_patience": Interval(1, integer=True),  # iterations
}


def default_classify_at(iterations: int) -> int:
    """The iteration T whose output is classified when none is given: ``CLASSIFY_FRACTION`` of ``iterations``."""
    return max(1, round(CLASSIFY_FRACTION * iterations))


@dataclass
class DipConfig:
    """Every option of the DIP purifier; the defaults are the paper authors' settings.

    JSON-serialisable with :func:`dataclasses.asdict`.
    """

    iterations: int = 10_000  #: optimisation steps (the paper: 10,000)
    lr: float = 0.01  #: Adam learning rate
    input_channels: int = 32  #: channels of the noise input z
    input_noise: str = "uniform"  #: distribution of z: "uniform" or "normal"
    input_scale: float = 0.1  #: z = U[0, 1) * input_scale
    reg_noise_std: float = 1.0 / 30.0  #: fresh N(0, 1) * std added to z every iteration
    channels_down: tuple[int, ...] = (8, 16, 32, 64, 128)
    channels_up: tuple[int, ...] = (8, 16, 32, 64, 128)
    channels_skip: tuple[int, ...] = (0, 0, 0, 4, 4)
    kernel_down: int = 3
    kernel_up: int = 3
    kernel_skip: int = 1
    upsample: str = "bilinear"
    pad: str = "reflect"
    act_slope: float = 0.2
    need1x1_up: bool = True
    ema_weight: float = 0.99  #: exponential average of outputs: avg = w * avg + (1 - w) * out
    record_every: int = 10  #: record P(real), MSE and PSNR every k iterations
    dtype: str = "float32"  #: generator precision ("float64" for exactness checks)
    amp: str = "none"  #: "bf16" runs the generator under bfloat16 autocast (CUDA)
    channels_last: bool = False  #: channels-last memory format for the generator (CUDA)
    early_stop: bool = False  #: ES-WMV (Wang et al.): each image's output at its own detected stopping point
    es_window: int = 100  #: outputs in ES-WMV's moving-variance window (the paper: 100)
    es_patience: int = 1000  #: iterations without a new variance minimum before an image stops (the paper: 1,000)

    def __post_init__(self) -> None:
        for name in ("channels_down", "channels_up", "channels_skip"):
            setattr(self, name, tuple(int(c) for c in getattr(self, name)))
        check_params("dip", DIP_PARAMS, asdict(self))


def level_widths(levels: int) -> dict[str, tuple[int, ...]]:
    """The channel widths of the paper's generator cut to its first ``levels`` levels (5: the paper's).

    Each level halves the side, so the network runs at a multiple of ``2 ** levels`` pixels, at
    least twice that (:func:`~dfrobust.defenses.dip_net.padded_size`): 5 levels pad a 32 px image
    to 64 px (four times the pixels), 4 levels fit it as it is.
    """
    full = {name: getattr(DipConfig, name) for name in ("channels_down", "channels_up", "channels_skip")}
    if not 1 <= levels <= len(DipConfig.channels_down):
        raise DfrobustError(f"DIP levels must lie in 1..{len(DipConfig.channels_down)}, got {levels}")
    return {name: widths[:levels] for name, widths in full.items()}


def config_key(cfg: DipConfig) -> dict[str, Any]:
    """``cfg`` as a dict for stage keys and fingerprints: the early-stopping fields only when ``early_stop`` is on.

    Runs made before early stopping existed keep their keys.
    """
    key = asdict(cfg)
    if not cfg.early_stop:
        for name in EARLY_STOP_FIELDS:
            key.pop(name)
    return key


def build_dip_net(cfg: DipConfig, groups: int) -> DipNet:
    """The generator of ``cfg`` holding ``groups`` independent networks (weights not yet seeded)."""
    return DipNet(
        groups=groups,
        in_channels=cfg.input_channels,
        channels_down=cfg.channels_down,
        channels_up=cfg.channels_up,
        channels_skip=cfg.channels_skip,
        kernel_down=cfg.kernel_down,
        kernel_up=cfg.kernel_up,
        kernel_skip=cfg.kernel_skip,
        upsample=cfg.upsample,
        pad=cfg.pad,
        act_slope=cfg.act_slope,
        need1x1_up=cfg.need1x1_up,
    )


def _generators(seeds: Sequence[int], offset: int, device: torch.device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed((int(s) + offset) % (2**63)) for s in seeds]


def _draw_input(cfg: DipConfig, gens: Sequence[torch.Generator], h: int, w: int) -> torch.Tensor:
    z = torch.empty(len(gens), cfg.input_channels, h, w)
    for b, gen in enumerate(gens):  # draws only: each image has its own random stream
        (z[b].uniform_(generator=gen) if cfg.input_noise == "uniform" else z[b].normal_(generator=gen))
    return z * cfg.input_scale


class DipRun:
    """The optimisation state of one batch: B seeded networks, their inputs, Adam, the running average.

    :meth:`step` runs one iteration for every image and returns the outputs (cropped back to
    the images' size). :func:`purify_batch` drives it and records the trajectory; benchmarks
    time :meth:`step` directly.
    """

    def __init__(self, images: torch.Tensor, seeds: Sequence[int], cfg: DipConfig, device: str | torch.device | None = None) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be B x 3 x H x W, got {tuple(images.shape)}")
        if len(seeds) != len(images):
            raise ValueError(f"need one seed per image: {len(seeds)} seeds for {len(images)} images")
        self.cfg = cfg
        self.device = dev = torch.device(device) if device is not None else images.device
        self.dtype = dtype = getattr(torch, cfg.dtype)
        bsz, _, h, w = images.shape
        net = build_dip_net(cfg, bsz)
        hp, wp = padded_size(h, net.divisor), padded_size(w, net.divisor)
        init_gens = _generators(seeds, 0, torch.device("cpu"))
        net.init_(init_gens)  # on the CPU: the same init whatever the device
        self.z = _draw_input(cfg, init_gens, hp, wp).to(dev, dtype)
        self.net = net.to(dev, dtype)
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
            self.net.memory_format = torch.channels_last
        self.noise_gens = _generators(seeds, _NOISE_STREAM, dev)
        self.noise = torch.empty(self.z.shape, device=dev)
        self.x = images.to(dev, dtype)
        self.target, self.pads = reflect_pad_to(self.x, hp, wp)
        # fused Adam: one kernel over all parameters, the same elementwise update as per-image Adams
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, fused=dev.type in ("cpu", "cuda"))
        self.autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16")
        self.avg: torch.Tensor | None = None
        self.t = 0

    def step(self) -> torch.Tensor:
        """One iteration: fresh input noise, forward, sum of per-image MSEs, Adam step; returns the output."""
        cfg = self.cfg
        for b, gen in enumerate(self.noise_gens):  # draws only: per-image random streams
            self.noise[b].normal_(generator=gen)
        net_in = self.z + self.noise.to(self.dtype) * cfg.reg_noise_std
        with torch.enable_grad():  # fitting is training: it needs gradients even when the caller is in no_grad
            with self.autocast:
                out_p = self.net(net_in)
            loss = (out_p.to(self.dtype) - self.target).pow(2).flatten(1).mean(1).sum()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        self.opt.step()
        out = crop_back(out_p.detach().to(self.dtype), self.pads)
        self.avg = out if self.avg is None else self.avg * cfg.ema_weight + out * (1.0 - cfg.ema_weight)
        self.t += 1
        return out


def purify_batch(
    images: torch.Tensor,
    seeds: Sequence[int],
    cfg: DipConfig | None = None,
    classifier: nn.Module | None = None,
    clean: torch.Tensor | None = None,
    keep: Sequence[int] = (),
    stop_at: int | None = None,
    device: str | torch.device | None = None,
    on_iteration: Callable[[int], None] | None = None,
    show_progress: bool = True,
    desc: str = "DIP",
    run_to_end: bool = False,
) -> DipTrajectory:
    """Run DIP on ``B`` images at once, each with its own network seeded by ``seeds[b]``.

    Args:
        images: ``B x 3 x H x W`` in ``[0, 1]``, the images to fit (adversarial or clean). Sides
            that the downsamplings cannot divide are reflection-padded and cropped back.
        seeds: one seed per image; it fixes the image's network init, input ``z`` and noise
            stream, so the image's trajectory does not depend on its batch.
        cfg: the purifier's options (paper defaults).
        classifier: a detector (eval mode) whose P(real) is recorded for the raw and the
            averaged output every ``cfg.record_every`` iterations.
        clean: the clean images ``B x 3 x H x W`` when known (PSNR to clean is recorded).
        keep: iterations whose outputs are kept in ``snapshots`` (Fig 5); also recorded.
        stop_at: stop after this iteration (default: ``cfg.iterations``). With
            ``cfg.early_stop`` the run also ends once every image has stopped
            (:class:`WindowedVarianceStop`); the trajectory's ``es_*`` fields say where.
        device: where to run (default: the images' device).
        on_iteration: called with the iteration number after each step (progress bars).
        show_progress: show a tqdm bar with iterations/s.
        desc: the progress bar's label.
        run_to_end: with ``cfg.early_stop``, keep iterating after every image has stopped: the
            detector only observes (the DIP study compares the stopping points with a fixed T
            on the same trajectories).

    Returns:
        A :class:`DipTrajectory` with everything on the CPU.
    """
    cfg = cfg or DipConfig()
    run = DipRun(images, seeds, cfg, device)
    end = min(cfg.iterations, stop_at) if stop_at is not None else cfg.iterations
    record = recorded_iterations(end, cfg.record_every, keep)
    record_set, keep_set = set(record), {int(t) for t in keep}
    bsz = len(images)
    clean_d = clean.to(run.device, run.dtype) if clean is not None else None

    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("raw", "avg", "mse", "psnr_clean")}
    snapshots: dict[int, torch.Tensor] = {}
    out = run.x
    es = WindowedVarianceStop(bsz, cfg.es_window, cfg.es_patience) if cfg.early_stop else None
    bar = progress(total=end, desc=f"{desc} ({bsz} images)", unit="it", disable=not show_progress or None)
    start = time.perf_counter()
    steps = 0
    for t in range(1, end + 1):
        out = run.step()
        steps = t
        if t in record_set:
            record_sample(rows, out, run.avg, run.x, clean_d, classifier)
        if t in keep_set:
            snapshots[t] = out.cpu()
        bar.update(1)
        if on_iteration is not None:
            on_iteration(t)
        if es is not None:
            es.update(out, t)
            if not run_to_end and t % ES_CHECK_EVERY == 0 and bool(es.stopped.all()):
                break
    bar.close()
    seconds = time.perf_counter() - start
    avg = run.avg
    record = [t for t in record if t <= steps]
    es_fields: dict[str, Any] = {}
    if es is not None:
        its, outs = es.result(out, steps)
        es_fields = {"es_iteration": its, "es_stopped_at": es.stopped_at.cpu(), "es_output": outs}
        with torch.no_grad():
            if classifier is not None:
                es_fields["es_p_real"] = p_real(classifier, outs.to(run.device), batch_size=bsz).cpu()
            if clean is not None:
                es_fields["es_psnr_clean"] = psnr_from_mse(mse(outs, clean.cpu()))

    def stack(key: str) -> torch.Tensor:
        return torch.stack(rows[key], 1) if rows[key] else torch.empty(bsz, 0)

    mse_input = stack("mse")
    return DipTrajectory(
        iterations=record,
        p_real_raw=stack("raw"),
        p_real_avg=stack("avg"),
        mse_input=mse_input,
        psnr_input=psnr_from_mse(mse_input),
        psnr_clean=stack("psnr_clean") if clean is not None else None,
        snapshots=snapshots,
        final=out.cpu(),
        final_avg=avg.cpu() if avg is not None else None,
        seconds=seconds,
        steps=steps,
        **es_fields,
    )


def dip_purify(
    images: torch.Tensor,
    cfg: DipConfig | None = None,
    seed: int = 0,
    iteration: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Purify images with DIP and return the outputs at ``iteration`` (default: :func:`default_classify_at`).

    The same call shape as the input-transform purifiers (images in, images out); image ``i``
    uses seed ``seed + i``. With ``cfg.early_stop`` each image's output is the one at its own
    detected stopping point (ES-WMV), within ``iteration`` iterations (default: ``cfg.iterations``).

    >>> dip_purify(torch.rand(2, 3, 32, 32), DipConfig(iterations=10)).shape  # doctest: +SKIP
    torch.Size([2, 3, 32, 32])
    """
    cfg = cfg or DipConfig()
    at = iteration if iteration is not None else (cfg.iterations if cfg.early_stop else default_classify_at(cfg.iterations))
    traj = purify_batch(images, [seed + i for i in range(len(images))], cfg, stop_at=at, device=device, show_progress=False)
    return traj.es_output if cfg.early_stop else traj.final


@register_purifier
class Dip(Purifier):
    """Deep Image Prior: fit a fresh seeded generator to each image and return its output at ``classify_at``.

    Random: the draw (network init, input ``z``, noise stream) of image ``i`` comes from seed
    ``seed + i`` (:func:`dip_purify`), so two seeds are two draws and the same seed repeats the
    output exactly. All images of a call are fitted at once (one network each). With
    ``early_stop`` each image's output is the one at its own ES-WMV stopping point instead
    (within ``iterations``; ``classify_at`` is then unused), a data-dependent iteration that
    exact and unrolled gradients through the fit do not support.

    Args:
        classify_at: the iteration whose output is returned; when not given, ``CLASSIFY_FRACTION`` of ``iterations``.
        iterations: length of the optimisation the default ``classify_at`` is a fraction of.
        lr: Adam learning rate.
        input_channels: channels of the noise input z.
        input_noise: distribution of z: uniform or normal.
        input_scale: scale of z.
        reg_noise_std: standard deviation of the fresh noise added to z every iteration.
        channels_down: channels of each downsampling level.
        channels_up: channels of each upsampling level.
        channels_skip: channels of each skip connection (0: none).
        kernel_down: kernel size of the downsampling convolutions.
        kernel_up: kernel size of the upsampling convolutions.
        kernel_skip: kernel size of the skip convolutions.
        upsample: upsampling mode (``bilinear`` or ``nearest``).
        pad: padding of the convolutions (``reflect`` or ``zero``).
        act_slope: negative slope of the LeakyReLUs.
        need1x1_up: a 1x1 convolution after each upsampling block.
        dtype: precision of the generator (``float32`` or ``float64``).
        amp: ``bf16`` runs the generator under bfloat16 autocast (CUDA), ``none`` does not.
        early_stop: ES-WMV early stopping: classify each image at its own detected stopping point.
        es_window: outputs in ES-WMV's moving-variance window.
        es_patience: iterations without a new variance minimum before an image stops.
    """

    name = "dip"
    random = True
    params = {"classify_at": Interval(1, integer=True, optional=True), **DIP_PARAMS}

    def __init__(
        self,
        classify_at: int | None = None,
        iterations: int = DipConfig.iterations,
        lr: float = DipConfig.lr,
        input_channels: int = DipConfig.input_channels,
        input_noise: str = DipConfig.input_noise,
        input_scale: float = DipConfig.input_scale,
        reg_noise_std: float = DipConfig.reg_noise_std,
        channels_down: tuple[int, ...] = DipConfig.channels_down,
        channels_up: tuple[int, ...] = DipConfig.channels_up,
        channels_skip: tuple[int, ...] = DipConfig.channels_skip,
        kernel_down: int = DipConfig.kernel_down,
        kernel_up: int = DipConfig.kernel_up,
        kernel_skip: int = DipConfig.kernel_skip,
        upsample: str = DipConfig.upsample,
        pad: str = DipConfig.pad,
        act_slope: float = DipConfig.act_slope,
        need1x1_up: bool = DipConfig.need1x1_up,
        dtype: str = DipConfig.dtype,
        amp: str = DipConfig.amp,
        early_stop: bool = DipConfig.early_stop,
        es_window: int = DipConfig.es_window,
        es_patience: int = DipConfig.es_patience,
    ) -> None:
        # every parameter but classify_at is a DipConfig field: the config validates them
        fields = {k: v for k, v in locals().items() if k not in ("self", "classify_at", "__class__")}
        self.config = DipConfig(**fields)
        for k in fields:
            setattr(self, k, getattr(self.config, k))
        self.classify_at = default_classify_at(self.iterations) if classify_at is None else int(classify_at)
        if not 1 <= self.classify_at <= self.iterations:
            raise DfrobustError(f"DIP classify_at must lie in 1..{self.iterations} (iterations), got {self.classify_at}")

    def purify_seeded(self, x: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """Row ``i`` with its own seed ``seeds[i]``, all fitted as one batch (many draws of many images at once)."""
        if len(seeds) != len(x):
            raise ValueError(f"need one seed per image: {len(seeds)} seeds for {len(x)} images")
        at = self.iterations if self.early_stop else self.classify_at
        with torch.no_grad():
            traj = purify_batch(x.detach(), [int(s) for s in seeds], self.config, stop_at=at, show_progress=False)
        out = traj.es_output if self.config.early_stop else traj.final
        return out.clamp(0, 1).to(x.device, x.dtype)

    def purify(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The generators' outputs at ``classify_at``, or at each image's stopping point with ``early_stop``."""
        at = self.iterations if self.early_stop else self.classify_at
        return dip_purify(x, self.config, seed=seed, iteration=at)
