"""The kernel policy (layers/config.py): its choices per device, dtype and grad mode, and the layers follow it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from layers import ConvTransBlock, GemmConv2d, SwinBlock, WindowAttention, config
from layers.config import (MATMUL, SDPA, SOFTMAX, KernelPolicy, get_kernel_policy, inference_layout, kernel_policy,
                           set_kernel_policy)
from tests.helpers import tiny_tcm
from tests.layers.reference import assert_float_close, randomise, reference_swin_block, reference_window_attention

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(autouse=True)
def default_policy():
    """Every test starts and ends with the default policy."""
    previous = set_kernel_policy(KernelPolicy())
    yield
    set_kernel_policy(previous)


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
    assert get_kernel_policy().attention_kernel(dtype, device, bias_needs_grad) == kernel


@pytest.mark.parametrize("device, grad, random_drop_path, chunks", [
    (CPU, False, False, True), (CUDA, False, False, False), (CPU, True, False, False), (CPU, False, True, False),
])
def test_default_window_chunks_only_for_cpu_inference(device, grad, random_drop_path, chunks):
    assert get_kernel_policy().chunks_windows(device, grad, random_drop_path) is chunks


@pytest.mark.parametrize("dtype, grad, layout", [
    (torch.float32, False, torch.channels_last), (torch.bfloat16, False, torch.channels_last),
    (torch.float64, False, torch.contiguous_format), (torch.float32, True, None), (torch.float64, True, None),
])
def test_default_memory_layout(dtype, grad, layout):
    assert get_kernel_policy().memory_format(dtype, grad) == layout


def test_default_gemm_convolutions_for_float64_on_the_cpu_only():
    policy = get_kernel_policy()
    assert policy.gemm_convolution(torch.float64, CPU)
    assert not policy.gemm_convolution(torch.float32, CPU) and not policy.gemm_convolution(torch.float64, CUDA)


# ------------------------------------------------------------------ setting it
def test_set_and_with_change_the_policy_and_restore_it():
    default = get_kernel_policy()
    assert default == KernelPolicy()
    with kernel_policy(channels_last=False, attention="softmax") as inside:
        assert get_kernel_policy() is inside and not inside.channels_last and inside.window_chunks
    assert get_kernel_policy() == default
    with pytest.raises(RuntimeError), kernel_policy(window_chunks=False):
        raise RuntimeError("a failure inside the block")
    assert get_kernel_policy() == default
    previous = set_kernel_policy(gemm_float64=False)
    assert previous == default and not get_kernel_policy().gemm_float64
    set_kernel_policy(previous)
    assert get_kernel_policy() == default


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="attention 'fused': choose from auto, sdpa, matmul, softmax"):
        KernelPolicy(attention="fused")
    with pytest.raises(TypeError):
        set_kernel_policy(channel_last=False)  # misspelt
    assert get_kernel_policy() == KernelPolicy()


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
        with kernel_policy(attention=attention), torch.inference_mode():
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
        with kernel_policy(window_chunks=False):
            assert not m.uses_window_chunks(CPU)
            assert_float_close(m(x), want)
    assert chunked == []
    block = ConvTransBlock(16, 32, 16, 8, 0.0, "W").eval()
    with torch.no_grad(), kernel_policy(window_chunks=False):
        block(torch.randn(1, 48, 16, 16))
    assert chunked == []
    with torch.no_grad():
        block(torch.randn(1, 48, 16, 16))
    assert chunked == ["forward_windows"]


def test_the_layout_is_the_policys(monkeypatch):
    x = torch.randn(1, 8, 4, 6)
    with torch.no_grad():
        assert inference_layout(x).is_contiguous(memory_format=torch.channels_last)
        assert inference_layout(x.double()).is_contiguous()
        with kernel_policy(channels_last=False):
            assert inference_layout(x.contiguous(memory_format=torch.channels_last)).is_contiguous()
    assert inference_layout(x) is x  # autograd: left alone
    # the model's convolutions get what the policy says
    net = tiny_tcm(seed=1).eval()
    seen = []
    net.g_a[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(
        memory_format=torch.channels_last)))
    image = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        net.analyse(image)
        with kernel_policy(channels_last=False):
            net.analyse(image)
    assert seen == [True, False]


def test_float64_convolutions_run_as_the_policy_says():
    conv = GemmConv2d(4, 6, 3, padding=1).double()
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    assert conv._uses_gemm(x)
    with kernel_policy(gemm_float64=False):
        assert not conv._uses_gemm(x)
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))  # torch's own convolution
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), rtol=1e-12, atol=1e-12)


def test_nothing_else_holds_a_switch():
    """The policy is the one setting: the old module-level layout switch is gone."""
    import models.tcm

    assert not hasattr(models.tcm, "set_inference_layout") and not hasattr(models.tcm, "_CHANNELS_LAST")
    assert config.inference_layout is inference_layout
