"""The DIP generator: structure of the authors' skip network, per-image independence, padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dfrobust.defenses.dip_net import DipNet, GroupedConv2d, crop_back, grouped_conv, padded_size, reflect_pad_to


def _convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def test_skip_network_structure_matches_the_paper_settings() -> None:
    net = DipNet(groups=1)
    convs = _convs(net)
    # per level: 2 down convs + 3x3 up + 1x1 up (5 levels), skip convs on the 2 deepest, 1 head
    assert len(convs) == 5 * 4 + 2 + 1
    strided = [c for c in convs if c.stride == (2, 2)]
    assert [c.out_channels for c in strided] == [8, 16, 32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding_mode == "reflect" for c in strided)
    skips = [c for c in convs if c.kernel_size == (1, 1) and c.out_channels == 4]
    assert [c.in_channels for c in skips] == [32, 64]  # skip branches of levels 3 and 4
    assert convs[0].in_channels == 32 and convs[-1].out_channels == 3 and convs[-1].kernel_size == (1, 1)
    # the BN after the concat of level 3 sees 4 skip + 128 upsampled channels; level 0 sees 0 + 16
    bns = [m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert 4 + 128 in bns and 4 + 128 == net.body.deeper.deeper.deeper.bn.num_features
    assert net.body.bn.num_features == 16
    assert all(m.negative_slope == 0.2 for m in net.modules() if isinstance(m, nn.LeakyReLU))


def test_shape_contract_and_sigmoid_range() -> None:
    net = DipNet(groups=2).init_([torch.Generator().manual_seed(s) for s in range(2)])
    with torch.no_grad():
        out = net(torch.rand(2, 32, 64, 96) * 0.1)
    assert out.shape == (2, 3, 64, 96)
    assert 0 < out.min() and out.max() < 1
    n1 = sum(p.numel() for p in DipNet(groups=1).parameters())
    assert sum(p.numel() for p in net.parameters()) == 2 * n1


@pytest.mark.parametrize(
    ("cin", "cout", "kernel", "stride", "side", "pad"),
    [
        (128, 16, 3, 1, 2, "reflect"),
        (132, 8, 3, 1, 4, "zeros"),
        (120, 4, 3, 2, 8, "reflect"),
        (16, 8, 1, 1, 8, "reflect"),
        (8, 4, 3, 1, 8, "reflect"),
    ],
)
def test_grouped_conv_fast_paths_equal_the_grouped_convolution(
    cin: int, cout: int, kernel: int, stride: int, side: int, pad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unfold and 1x1 matmul paths give the grouped convolution's outputs and gradients."""
    taken: list[str] = []
    for path in ("_unfold_bmm", "_bmm_1x1"):
        original = getattr(GroupedConv2d, path)
        monkeypatch.setattr(GroupedConv2d, path, lambda self, *a, _f=original, _p=path: taken.append(_p) or _f(self, *a))
    torch.manual_seed(0)
    conv = grouped_conv(3, cin, cout, kernel, stride, pad).double()
    x = torch.randn(1, 3 * cin, side, side, dtype=torch.float64, requires_grad=True)
    fan_in, pixels = cin * kernel * kernel, (-(-side // stride)) ** 2
    unfolds = kernel > 1 and fan_in >= GroupedConv2d.UNFOLD_MIN_FAN_IN and pixels <= GroupedConv2d.UNFOLD_MAX_PIXELS
    out = conv(x)
    assert taken == (["_unfold_bmm"] if unfolds else ["_bmm_1x1"] if kernel == 1 else [])
    assert unfolds == (cin >= 120)  # the cases above cover the unfold path and both others
    ref = nn.Conv2d.forward(conv, x)  # PyTorch's own grouped convolution
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, conv.weight, conv.bias), g)
    ref_grads = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


#: a 2-level network with the same structure, small enough for exact float64 checks
SMALL = {"channels_down": (4, 8), "channels_up": (4, 8), "channels_skip": (0, 2), "in_channels": 6}


def test_grouped_networks_are_independent_and_equal_single_networks() -> None:
    torch.manual_seed(0)
    seeds = [11, 12, 13]
    batch = DipNet(groups=3, **SMALL).init_([torch.Generator().manual_seed(s) for s in seeds]).double()
    z = torch.rand(3, 6, 16, 16, dtype=torch.float64) * 0.1
    out = batch(z)
    for b, s in enumerate(seeds):
        single = DipNet(groups=1, **SMALL).init_([torch.Generator().manual_seed(s)]).double()
        torch.testing.assert_close(single(z[b : b + 1]), out[b : b + 1], rtol=0, atol=1e-12)
    # changing image 2's input leaves images 0 and 1 untouched (own weights, own BatchNorm statistics)
    z2 = z.clone()
    z2[2] = torch.rand(6, 16, 16, dtype=torch.float64)
    out2 = batch(z2)
    assert torch.equal(out2[:2], out[:2]) and not torch.allclose(out2[2], out[2])


def test_padded_size_divides_and_keeps_the_deepest_map_at_least_2x2() -> None:
    assert padded_size(32, 32) == 64  # 1x1 at the deepest level would break reflection padding
    assert padded_size(64, 32) == 64
    assert padded_size(65, 32) == 96
    assert padded_size(300, 32) == 320 and padded_size(368, 32) == 384


def test_reflection_padding_is_cropped_back_exactly_not_resized() -> None:
    x = torch.rand(2, 3, 20, 27)
    padded, pads = reflect_pad_to(x, 64, 64)
    assert padded.shape == (2, 3, 64, 64)
    left, right, top, bottom = pads
    assert torch.equal(padded[..., top : top + 20, left : left + 27], x)
    assert torch.equal(crop_back(padded, pads), x)
    # the border mirrors the image (reflection, not zeros or replication)
    assert torch.equal(padded[..., top, left - 1], x[..., 0, 1])
