"""The kernel policy (layers/config.py): its choices per device, dtype and grad mode, stored on each layer when it is
built, changed by an explicit rebuild, and followed by the layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from layers import ConvTransBlock, GemmConv2d, SwinBlock, WindowAttention, config
from layers.config import (DEFAULT_KERNELS, MATMUL, SDPA, SOFTMAX, KernelPolicy, apply_kernel_policy, kernels_of)
from models.coding import Coder
from tests.helpers import tiny_tcm
from tests.layers.reference import assert_float_close, randomise, reference_swin_block, reference_window_attention

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


# ------------------------------------------------------------------ the default: the choices the layers made themselves
@pytest.mark.parametrize("dtype, device, bias_needs_grad, kernel", [
    (torch.float32, CPU, False, SDPA),
    (torch.bfloat16, CPU, False, MATMUL),  # the fused CPU kernel is slow on 64-token bfloat16 windows
    (torch.bfloat16, CUDA, False, SDPA),
    (torch.float16, CUDA, False, SDPA),
    (torch.float32, CPU, True, SOFTMAX),  # a learned bias that needs a gradient
    (torch.bfloat16, CPU, True, SOFTMAX),
    (torch.float32, CUDA, True, SOFTMAX),
])
def test_default_attention_kernel(dtype, device, bias_needs_grad, kernel):
    assert DEFAULT_KERNELS.attention_kernel(dtype, device, bias_needs_grad) == kernel


@pytest.mark.parametrize("device, grad, random_drop_path, chunks", [
    (CPU, False, False, True), (CUDA, False, False, False), (CPU, True, False, False), (CPU, False, True, False),
])
def test_default_window_chunks_only_for_cpu_inference(device, grad, random_drop_path, chunks):
    assert DEFAULT_KERNELS.chunks_windows(device, grad, random_drop_path) is chunks


@pytest.mark.parametrize("dtype, grad, layout", [
    (torch.float32, False, torch.channels_last), (torch.bfloat16, False, torch.channels_last),
    (torch.float64, False, torch.contiguous_format), (torch.float32, True, None), (torch.float64, True, None),
])
def test_default_memory_layout(dtype, grad, layout):
    assert DEFAULT_KERNELS.memory_format(dtype, grad) == layout


def test_default_gemm_convolutions_for_float64_on_the_cpu_only():
    policy = DEFAULT_KERNELS
    assert policy.gemm_convolution(torch.float64, CPU)
    assert not policy.gemm_convolution(torch.float32, CPU) and not policy.gemm_convolution(torch.float64, CUDA)


# ------------------------------------------------------------------ stored on the layers, changed by a rebuild
def test_every_layer_is_built_with_the_default_and_a_rebuild_changes_every_one():
    net = tiny_tcm(seed=2)
    holders = [m for m in net.modules() if "kernels" in m.__dict__]
    assert {type(m).__name__ for m in holders} >= {"TCM", "ChannelEntropyModel", "SwinBlock", "WindowAttention"}
    assert kernels_of(net) == {DEFAULT_KERNELS} == {KernelPolicy()}
    other = KernelPolicy(attention="softmax", channels_last=False)
    assert apply_kernel_policy(net, other) is net
    assert kernels_of(net) == {other} and all(m.kernels is other for m in holders)
    assert other.replace(window_chunks=False) == KernelPolicy("softmax", False, False, True)


def test_two_models_in_one_process_each_keep_their_own_policy():
    """No process-wide state decides a result: a float32 stream of one model's kernels decodes with them,
    whatever another model in the process was built or rebuilt with, before or after."""
    nchw = KernelPolicy(channels_last=False, window_chunks=False, attention="softmax")
    a, b = tiny_tcm(seed=4).eval(), tiny_tcm(seed=4).eval()
    a.update(force=True)
    b.load_state_dict(a.state_dict())
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5)),
                                        size=(128, 128), mode="bilinear", align_corners=False)
    first = a.compress(x)
    apply_kernel_policy(b, nchw)  # the other model, rebuilt
    coder_b = Coder(b, "float64/float32")
    assert kernels_of(a) == {DEFAULT_KERNELS} and kernels_of(b) == {nchw}
    assert kernels_of(coder_b.entropy_model) == {nchw}  # a coder's copy keeps the model's policy
    b.compress(x)
    again = a.compress(x)
    assert again["strings"] == first["strings"] and torch.equal(again["y_hat"], first["y_hat"])
    decoded = a.decode_latents(first["strings"], first["shape"])
    assert torch.equal(decoded["symbols"]["y"], first["symbols"]["y"]) and torch.equal(decoded["y_hat"], first["y_hat"])
    # each model computes with its own kernels: the layouts its convolutions get say which
    seen = []
    for net in (a, b):
        net.g_a[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(
            memory_format=torch.channels_last)))
    with torch.no_grad():
        a.analyse(x)
        b.analyse(x)
        a.analyse(x)
    assert seen == [True, False, True]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="attention 'fused': choose from auto, sdpa, matmul, softmax"):
        KernelPolicy(attention="fused")
    with pytest.raises(TypeError):
        DEFAULT_KERNELS.replace(channel_last=False)  # misspelt
    with pytest.raises(TypeError, match="a KernelPolicy, not dict"):
        apply_kernel_policy(tiny_tcm(), {"channels_last": False})


def test_the_forced_kernels_still_give_softmax_to_a_learned_bias():
    for attention in ("sdpa", "matmul", "softmax"):
        policy = KernelPolicy(attention=attention)
        assert policy.attention_kernel(torch.float32, CPU, False) == attention
        assert policy.attention_kernel(torch.float32, CPU, True) == SOFTMAX


# ------------------------------------------------------------------ the layers follow it
def _spy(monkeypatch, owner, name: str) -> list:
    calls = []
    original = getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_runs_the_policys_kernel(monkeypatch, dtype):
    m = WindowAttention(32, 8, 8, shifted=True)
    randomise(m, seed=3)
    x = torch.randn(1, 16, 24, 32)
    want = reference_window_attention(m, x)
    m = m.to(dtype).eval()
    sdpa = _spy(monkeypatch, F, "scaled_dot_product_attention")
    bmm = _spy(monkeypatch, WindowAttention, "_attend_bmm")
    default = MATMUL if dtype == torch.bfloat16 else SDPA
    for attention, kernel in (("auto", default), ("sdpa", SDPA), ("matmul", MATMUL), ("softmax", SOFTMAX)):
        sdpa.clear()
        bmm.clear()
        apply_kernel_policy(m, KernelPolicy(attention=attention))
        with torch.inference_mode():
            got = m(x.to(dtype)).float()
        assert (bool(sdpa), bool(bmm)) == (kernel == SDPA, kernel == MATMUL), attention
        if dtype == torch.float32:
            assert_float_close(got, want)
        else:
            assert (got - want).norm() / want.norm() < 2e-2, attention


def test_swin_blocks_chunk_windows_as_the_policy_says(monkeypatch):
    m = SwinBlock(32, 16, 8, kind="SW").eval()
    randomise(m, seed=7)
    x = torch.randn(2, 24, 32, 32)
    want = reference_swin_block(m, x)
    chunked = _spy(monkeypatch, SwinBlock, "forward_windows")
    with torch.no_grad():
        assert m.uses_window_chunks(CPU)
        assert_float_close(m(x), want)
        assert chunked == ["forward_windows"]
        chunked.clear()
        apply_kernel_policy(m, KernelPolicy(window_chunks=False))
        assert not m.uses_window_chunks(CPU)
        assert_float_close(m(x), want)
    assert chunked == []
    block = apply_kernel_policy(ConvTransBlock(16, 32, 16, 8, 0.0, "W").eval(), KernelPolicy(window_chunks=False))
    with torch.no_grad():
        block(torch.randn(1, 48, 16, 16))
    assert chunked == []
    apply_kernel_policy(block, DEFAULT_KERNELS)
    with torch.no_grad():
        block(torch.randn(1, 48, 16, 16))
    assert chunked == ["forward_windows"]


def test_the_layout_is_the_policys():
    x = torch.randn(1, 8, 4, 6)
    with torch.no_grad():
        assert DEFAULT_KERNELS.layout(x).is_contiguous(memory_format=torch.channels_last)
        assert DEFAULT_KERNELS.layout(x.double()).is_contiguous()
        nchw = KernelPolicy(channels_last=False)
        assert nchw.layout(x.contiguous(memory_format=torch.channels_last)).is_contiguous()
    assert DEFAULT_KERNELS.layout(x) is x  # autograd: left alone
    # the model's convolutions get what its policy says
    net = tiny_tcm(seed=1).eval()
    seen = []
    net.g_a[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(
        memory_format=torch.channels_last)))
    image = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        net.analyse(image)
        apply_kernel_policy(net, nchw)
        net.analyse(image)
    assert seen == [True, False]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_image_read_from_an_hwc_array_runs_every_layer_channels_last(dtype):
    """A permuted HWC array (batch stride 3) is channels-last contiguous, but convolutions read its strides as
    NCHW and stay NCHW after it (in bfloat16 with a slow conversion each): the layout gives it canonical strides."""
    hwc = torch.rand(128, 128, 3).to(dtype)
    image = hwc.permute(2, 0, 1).unsqueeze(0)
    assert image.stride()[0] == 3 and image.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        laid = DEFAULT_KERNELS.layout(image)
        assert laid.stride() == (128 * 128 * 3, 1, 128 * 3, 3) and laid.data_ptr() == image.data_ptr()
        assert torch.equal(laid, image)
        assert DEFAULT_KERNELS.layout(laid) is laid  # canonical already: no new view
        net = tiny_tcm(seed=1).eval().to(dtype)
        formats = []
        for module in net.g_a:
            module.register_forward_hook(lambda _, args, out: formats.append(
                out.is_contiguous(memory_format=torch.channels_last)))
        net.g_a(laid)
    assert formats and all(formats)


def test_float64_convolutions_are_gemm_convolutions_as_the_policy_says():
    net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.Conv2d(6, 6, 3, stride=2, padding=1)).double()
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    want = net(x)
    apply_kernel_policy(net, DEFAULT_KERNELS)
    assert type(net[0]) is GemmConv2d and type(net[1]) is nn.Conv2d  # a strided convolution has no per-tap form
    assert torch.allclose(net(x), want, rtol=1e-12, atol=1e-12)
    apply_kernel_policy(net, KernelPolicy(gemm_float64=False))
    assert type(net[0]) is nn.Conv2d
    assert torch.equal(net[0](x), F.conv2d(x, net[0].weight, net[0].bias, padding=1))  # torch's own convolution
    float32 = apply_kernel_policy(nn.Conv2d(4, 6, 3, padding=1), DEFAULT_KERNELS)
    assert type(float32) is nn.Conv2d  # only float64 weights


def test_nothing_else_holds_a_switch():
    """The policy lives on the layers: no process-wide setting is left in layers.config."""
    assert not any(hasattr(config, name) for name in
                   ("get_kernel_policy", "set_kernel_policy", "kernel_policy", "inference_layout", "_current"))
    import models.tcm

    assert not hasattr(models.tcm, "set_inference_layout") and not hasattr(models.tcm, "_CHANNELS_LAST")
