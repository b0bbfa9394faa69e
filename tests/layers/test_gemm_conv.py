"""Per-tap matrix-product convolutions of the float64 entropy arithmetic (layers/gemm_conv.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from layers import DEFAULT_KERNELS, GemmConv2d, apply_kernel_policy


def gemm_copy(conv: nn.Conv2d) -> GemmConv2d:
    out = GemmConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None, dtype=conv.weight.dtype)
    out.load_state_dict(conv.state_dict())
    return out


@pytest.mark.parametrize("cin,cout,k,bias,batch,h,w", [
    (16, 16, 3, True, 1, 8, 12), (80, 32, 3, True, 2, 16, 8), (7, 5, 3, False, 1, 5, 3),
    (32, 48, 1, True, 3, 4, 4), (6, 4, 5, True, 1, 9, 7), (3, 2, 3, True, 1, 1, 1),
])
def test_float64_matches_torchs_convolution(cin, cout, k, bias, batch, h, w):
    torch.manual_seed(cin + k)
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias).double()
    x = torch.randn(batch, cin, h, w, dtype=torch.float64)
    fast = gemm_copy(conv)
    assert fast._uses_gemm(x)
    want = conv(x)
    for inp in (x, x.contiguous(memory_format=torch.channels_last)):
        got = fast(inp)
        assert got.shape == want.shape
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    assert not torch.equal(fast(x), torch.zeros_like(want))


def test_other_dtypes_and_shapes_take_torchs_convolution():
    conv = GemmConv2d(4, 4, 3, padding=1)
    assert not conv._uses_gemm(torch.randn(1, 4, 8, 8))  # float32: oneDNN is faster
    strided = GemmConv2d(4, 4, 3, stride=2, padding=1).double()
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    assert not strided._uses_gemm(x)
    assert torch.equal(strided(x), F.conv2d(x, strided.weight, strided.bias, stride=2, padding=1))


def test_a_weight_changed_in_place_is_used():
    conv = GemmConv2d(3, 3, 3, padding=1).double()
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    conv(x)
    with torch.no_grad():
        conv.weight.mul_(2)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), rtol=1e-12, atol=1e-12)


def test_the_policy_swaps_plain_float64_convolutions_only_and_keeps_the_state():
    class Sub(nn.Conv2d):
        pass

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GELU(), Sub(4, 4, 1), nn.ConvTranspose2d(4, 4, 2)).double()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    apply_kernel_policy(net, DEFAULT_KERNELS)
    assert type(net[0]) is GemmConv2d and type(net[2]) is Sub and type(net[3]) is nn.ConvTranspose2d
    after = net.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_tap_major_storage_keeps_the_weight_and_makes_the_taps_views():
    conv = nn.Conv2d(5, 7, 3, padding=1).double()
    before = conv.weight.detach().clone()
    apply_kernel_policy(conv, DEFAULT_KERNELS)
    assert conv.weight.shape == before.shape and torch.equal(conv.weight, before)
    assert conv._taps().data_ptr() == conv.weight.data_ptr()  # a view, not a second copy
    x = torch.randn(2, 5, 6, 4, dtype=torch.float64)
    assert torch.allclose(conv(x), F.conv2d(x, before, conv.bias, padding=1), rtol=1e-12, atol=1e-12)
    want = F.conv2d(x.float(), before.float(), conv.bias.float(), padding=1)
    assert torch.allclose(conv.float()(x.float()), want, rtol=1e-5, atol=1e-5)  # other dtypes: torch's conv
