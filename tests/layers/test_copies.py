"""converted_copy (layers/copies.py): what ``copy.deepcopy(module).to(dtype)`` gives, sharing nothing that changes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from layers.copies import converted_copy
from tests.helpers import tiny_tcm


def assert_same_tree(a: nn.Module, b: nn.Module) -> None:
    """Same module types, entry names, dtypes, strides, values and gradient flags."""
    assert [(n, type(m)) for n, m in a.named_modules()] == [(n, type(m)) for n, m in b.named_modules()]
    sa, sb = dict(a.named_parameters()), dict(b.named_parameters())
    ba, bb = dict(a.named_buffers()), dict(b.named_buffers())
    assert list(sa) == list(sb) and list(ba) == list(bb)
    for k in sa:
        assert type(sa[k]) is type(sb[k]) and sa[k].requires_grad == sb[k].requires_grad, k
    for k, x in {**sa, **ba}.items():
        y = {**sb, **bb}[k]
        assert (x.dtype, x.shape, x.stride()) == (y.dtype, y.shape, y.stride()) and torch.equal(x, y), k


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64, None])
def test_the_copy_is_deepcopy_then_to(dtype):
    net = tiny_tcm(seed=3).eval()
    net.g_s[0].conv.weight.requires_grad_(False)  # a flag that differs between parameters is kept
    for name in ("g_a", "h_a", "g_s"):
        source = getattr(net, name)
        expected = copy.deepcopy(source)
        expected = expected if dtype is None else expected.to(dtype)
        assert_same_tree(converted_copy(source, dtype), expected)


def test_the_copy_computes_what_deepcopy_does_and_shares_no_tensor():
    net = tiny_tcm(seed=4).eval()
    y = torch.rand(1, net.M, 4, 4)
    with torch.no_grad():
        expected = copy.deepcopy(net.g_s).to(torch.bfloat16)(y.bfloat16())
        copied = converted_copy(net.g_s, torch.bfloat16)
        assert torch.equal(copied(y.bfloat16()), expected)
        plain = converted_copy(net.g_s)
        source = {t.data_ptr() for t in (*net.g_s.parameters(), *net.g_s.buffers())}
        assert not source & {t.data_ptr() for t in (*plain.parameters(), *plain.buffers())}
        before = net.g_s(y)
        next(plain.parameters()).add_(1)  # changing the copy leaves the source alone
        assert torch.equal(net.g_s(y), before)


def test_containers_are_the_copy_s_own_and_shared_submodules_stay_shared():
    inner = nn.Linear(2, 2)
    outer = nn.Sequential(inner, inner)
    outer.cache = {"k": 1}
    outer.register_forward_hook(lambda *_: None)
    copied = converted_copy(outer, torch.float64)
    assert copied[0] is copied[1] and copied[0] is not inner and copied[0].weight.dtype == torch.float64
    copied.cache["k"] = 2
    copied._forward_hooks.clear()
    assert outer.cache == {"k": 1} and len(outer._forward_hooks) == 1
    assert inner.weight.dtype == torch.float32
