"""The Deep Image Prior generator: Ulyanov et al.'s "skip" encoder-decoder, B independent copies at once.

The structure follows the DIP reference code (``models/skip.py``) with the paper authors'
settings (the defaults of :class:`dfrobust.defenses.dip.DipConfig`). For each level ``i``
(outermost first)::

    x -> [skip_i: conv1x1 -> BN -> act]                       (when skip channels > 0)
      -> [down_i: conv3x3/2 -> BN -> act -> conv3x3 -> BN -> act -> level i+1 -> upsample x2]
    concat(skip, down) -> BN -> conv3x3 -> BN -> act -> conv1x1 -> BN -> act

then a final 1x1 conv to 3 channels and a sigmoid. Convolutions pad by reflection.

Batching: one :class:`DipNet` holds ``groups`` independent networks. Activations travel as a
batch-of-one tensor ``1 x (B*C) x H x W`` and every convolution is grouped (``groups=B``), so
image ``b`` only ever sees its own weights, and BatchNorm over ``(N=1, H, W)`` gives each image
its own statistics. ``groups=1`` is exactly the single-image reference network. Grouped
convolutions rather than ``torch.func.vmap``: vmap lowers batched-weight convolutions to
grouped ones anyway (the comparison: ``benchmarks/bench_dip.py --compare-vmap``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class GroupedBlock(nn.Sequential):
    """``groups`` independent (conv -> BatchNorm -> LeakyReLU) blocks in the grouped layout."""

    def __init__(self, groups: int, cin: int, cout: int, kernel: int, stride: int = 1, pad: str = "reflect", slope: float = 0.2) -> None:
        super().__init__(
            grouped_conv(groups, cin, cout, kernel, stride, pad),
            nn.BatchNorm2d(groups * cout),
            nn.LeakyReLU(slope),
        )


class GroupedConv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``groups`` independent filters, with two CPU fast paths.

    - 1x1 kernels run as one batched matmul: PyTorch's CPU backend sends grouped 1x1
      convolutions to a slow path that loops over the groups.
    - Wide kernels on small maps (the deep levels: ``cin * k * k >= 1024`` per group and at most
      64 output pixels) run as pad -> unfold -> batched matmul. There the work is all weights,
      and oneDNN's grouped kernel is slower than one batched matmul (benchmarks/RESULTS.md).

    Both are the same arithmetic as the grouped convolution (tested against it).
    """

    #: the unfold path is taken when a group's ``cin * k * k`` reaches this ...
    UNFOLD_MIN_FAN_IN = 1024
    #: ... and the output has at most this many pixels
    UNFOLD_MAX_PIXELS = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1 or x.device.type != "cpu":
            return super().forward(x)
        if self.kernel_size == (1, 1) and self.stride == (1, 1):
            return self._bmm_1x1(x)
        if self.weight[0].numel() >= self.UNFOLD_MIN_FAN_IN and self.dilation == (1, 1):
            h, w = x.shape[-2:]
            (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
            out_h, out_w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            if out_h * out_w <= self.UNFOLD_MAX_PIXELS:
                return self._unfold_bmm(x, out_h, out_w)
        return super().forward(x)

    def _bmm(self, cols: torch.Tensor) -> torch.Tensor:
        """Per-group ``weight @ cols`` (+ bias) for ``cols`` of shape ``groups x fan_in x pixels``."""
        g = self.groups
        weight = self.weight.reshape(g, self.out_channels // g, -1)
        if self.bias is None:
            return torch.bmm(weight, cols)
        return torch.baddbmm(self.bias.view(g, -1, 1), weight, cols)

    def _bmm_1x1(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self._bmm(x.reshape(self.groups, self.in_channels // self.groups, h * w))
        return y.reshape(1, self.out_channels, h, w)

    def _unfold_bmm(self, x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
        ph, pw = self.padding
        if self.padding_mode != "zeros":
            x = F.pad(x, (pw, pw, ph, ph), mode=self.padding_mode)
            ph = pw = 0
        cols = F.unfold(x, self.kernel_size, padding=(ph, pw), stride=self.stride)
        y = self._bmm(cols.view(self.groups, -1, out_h * out_w))
        return y.reshape(1, self.out_channels, out_h, out_w)


def grouped_conv(groups: int, cin: int, cout: int, kernel: int, stride: int = 1, pad: str = "reflect") -> nn.Conv2d:
    """A convolution holding ``groups`` independent ``cin -> cout`` filters (weight ``groups*cout x cin x k x k``)."""
    padding_mode = pad if kernel > 1 else "zeros"  # a 1x1 conv pads nothing
    return GroupedConv2d(groups * cin, groups * cout, kernel, stride, padding=kernel // 2, padding_mode=padding_mode, groups=groups)


def cat_groups(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """Concatenate two grouped tensors channel-wise *per image*: ``[a_0, b_0, a_1, b_1, ...]``."""
    return torch.cat([a.unflatten(1, (groups, -1)), b.unflatten(1, (groups, -1))], 2).flatten(1, 2)


class SkipLevel(nn.Module):
    """One level of the skip network (and, recursively, every deeper level)."""

    def __init__(
        self,
        groups: int,
        level: int,
        cin: int,
        down: Sequence[int],
        up: Sequence[int],
        skip: Sequence[int],
        kernel_down: int,
        kernel_up: int,
        kernel_skip: int,
        upsample: str,
        pad: str,
        slope: float,
        need1x1_up: bool,
    ) -> None:
        super().__init__()
        self.groups = groups
        self.upsample = upsample
        d, u, s = down[level], up[level], skip[level]
        self.skip = GroupedBlock(groups, cin, s, kernel_skip, 1, pad, slope) if s else None
        self.down = nn.Sequential(
            GroupedBlock(groups, cin, d, kernel_down, 2, pad, slope),
            GroupedBlock(groups, d, d, kernel_down, 1, pad, slope),
        )
        deepest = level == len(down) - 1
        self.deeper = (
            None
            if deepest
            else SkipLevel(groups, level + 1, d, down, up, skip, kernel_down, kernel_up, kernel_skip, upsample, pad, slope, need1x1_up)
        )
        k = d if deepest else up[level + 1]
        self.bn = nn.BatchNorm2d(groups * (s + k))
        blocks = [GroupedBlock(groups, s + k, u, kernel_up, 1, pad, slope)]
        if need1x1_up:
            blocks.append(GroupedBlock(groups, u, u, 1, 1, pad, slope))
        self.up = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.deeper is not None:
            y = self.deeper(y)
        y = self._upsample(y)
        if self.skip is not None:
            y = cat_groups(self.skip(x), y, self.groups)
        return self.up(self.bn(y))

    def _upsample(self, y: torch.Tensor) -> torch.Tensor:
        # per image as B x C x h x w: on a 1 x (B*C) tensor the CPU kernel detours through two copies
        h, w = y.shape[-2:]
        align = False if self.upsample in ("bilinear", "bicubic") else None
        y = F.interpolate(y.reshape(self.groups, -1, h, w), scale_factor=2, mode=self.upsample, align_corners=align)
        return y.reshape(1, -1, 2 * h, 2 * w)


class DipNet(nn.Module):
    """``groups`` independent DIP skip networks evaluated together.

    Args:
        groups: how many independent networks (one per image).
        in_channels: channels of the noise input ``z`` (32 in the paper's code).
        out_channels: 3 (RGB).
        channels_down, channels_up, channels_skip: per-level widths (paper: [8,16,32,64,128] x2, [0,0,0,4,4]).
        kernel_down, kernel_up, kernel_skip: kernel sizes (3, 3, 1).
        upsample: ``bilinear`` (paper) or ``nearest``.
        pad: ``reflect`` (paper) or ``zeros``.
        act_slope: LeakyReLU slope (0.2).
        need1x1_up: the 1x1 conv block after each up block (True).
        sigmoid: squash the output into ``(0, 1)`` (True).

    ``forward`` takes ``z`` of shape ``B x in_channels x H x W`` (``B = groups``, ``H`` and ``W``
    divisible by ``2**levels``) and returns ``B x out_channels x H x W``.

    >>> net = DipNet(groups=2)
    >>> net(torch.rand(2, 32, 64, 64)).shape
    torch.Size([2, 3, 64, 64])
    """

    def __init__(
        self,
        groups: int = 1,
        in_channels: int = 32,
        out_channels: int = 3,
        channels_down: Sequence[int] = (8, 16, 32, 64, 128),
        channels_up: Sequence[int] = (8, 16, 32, 64, 128),
        channels_skip: Sequence[int] = (0, 0, 0, 4, 4),
        kernel_down: int = 3,
        kernel_up: int = 3,
        kernel_skip: int = 1,
        upsample: str = "bilinear",
        pad: str = "reflect",
        act_slope: float = 0.2,
        need1x1_up: bool = True,
        sigmoid: bool = True,
    ) -> None:
        super().__init__()
        if not len(channels_down) == len(channels_up) == len(channels_skip):
            raise ValueError("channels_down, channels_up and channels_skip need one entry per level")
        self.groups = groups
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.levels = len(channels_down)
        self.body = SkipLevel(
            groups, 0, in_channels, channels_down, channels_up, channels_skip,
            kernel_down, kernel_up, kernel_skip, upsample, pad, act_slope, need1x1_up,
        )  # fmt: skip
        self.head = grouped_conv(groups, channels_up[0], out_channels, 1)
        self.sigmoid = sigmoid
        #: memory format of the grouped activations (``torch.channels_last`` can help cuDNN)
        self.memory_format = torch.contiguous_format

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``B x out_channels x H x W`` for noise ``z`` of shape ``B x in_channels x H x W``."""
        b = z.shape[0]
        if b != self.groups:
            raise ValueError(f"this DipNet holds {self.groups} networks but got {b} inputs")
        z = z.reshape(1, b * self.in_channels, *z.shape[-2:]).contiguous(memory_format=self.memory_format)
        y = self.head(self.body(z))
        if self.sigmoid:
            y = torch.sigmoid(y)
        return y.reshape(b, self.out_channels, *y.shape[-2:])

    @property
    def divisor(self) -> int:
        """Input sides must be multiples of this (``2**levels``)."""
        return 2**self.levels

    @torch.no_grad()
    def init_(self, generators: Sequence[torch.Generator]) -> DipNet:
        """Initialise network ``b`` from ``generators[b]`` (PyTorch's default init, drawn per image).

        Convolution weights and biases are ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (what
        ``nn.Conv2d.reset_parameters`` draws), BatchNorm starts at weight 1, bias 0. Image
        ``b``'s parameters depend only on its own generator, so a batch initialises exactly
        like separate single-image networks with the same seeds.
        """
        if len(generators) != self.groups:
            raise ValueError(f"need {self.groups} generators, got {len(generators)}")
        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d)]
        # one pass per image over its parameters: this loop only draws initial values
        for b, gen in enumerate(generators):
            for conv in convs:
                cout = conv.out_channels // self.groups
                bound = 1.0 / math.sqrt(conv.weight[0].numel())
                rows = slice(b * cout, (b + 1) * cout)
                w = torch.empty(conv.weight[rows].shape).uniform_(-bound, bound, generator=gen)
                conv.weight[rows] = w.to(conv.weight.device)
                if conv.bias is not None:
                    conv.bias[rows] = torch.empty(cout).uniform_(-bound, bound, generator=gen).to(conv.bias.device)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
        return self


def padded_size(size: int, divisor: int) -> int:
    """The side the network runs at: the next multiple of ``divisor``, at least ``2 * divisor``.

    At least ``2 * divisor`` so the deepest feature map is 2x2 or larger (reflection padding of a
    1x1 map is undefined).
    """
    return max(2 * divisor, -(-size // divisor) * divisor)


def reflect_pad_to(x: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Reflection-pad images ``N x C x H x W`` (centred) to ``height x width``; returns (padded, (left, right, top, bottom)).

    Pads wider than the image are applied in steps (reflection needs pad < side).
    """
    h, w = x.shape[-2:]
    top, left = (height - h) // 2, (width - w) // 2
    pads = (left, width - w - left, top, height - h - top)
    remaining = list(pads)
    while any(remaining):
        cur_h, cur_w = x.shape[-2:]
        step = [min(remaining[0], cur_w - 1), min(remaining[1], cur_w - 1), min(remaining[2], cur_h - 1), min(remaining[3], cur_h - 1)]
        x = F.pad(x, step, mode="reflect")
        remaining = [r - s for r, s in zip(remaining, step)]
    return x, pads


def crop_back(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`reflect_pad_to`: crop ``(left, right, top, bottom)`` off the images."""
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
