"""The fast paths compute what the straightforward ones do.

The reference is the same model with every window attention replaced by the
step-by-step implementation of tests/layers/reference.py (materialised logits,
gathered bias, rule-5 mask).  Rates must agree within 0.1 %, reconstructions
within 1e-4; the encoder and decoder of the fast model must agree exactly.
"""

from __future__ import annotations

import pytest
import torch

from layers import GemmConv2d, WindowAttention
from layers.config import get_kernel_policy, set_kernel_policy
from models.coding import Coder, CodingMode, StaleCoderError
from tests.helpers import tiny_tcm
from tests.layers.reference import reference_window_attention


def _image(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth, image-like input (pure noise makes every latent huge)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, h // 16, w // 16, generator=g)
    x = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    return (x + 0.05 * torch.rand(b, 3, h, w, generator=g)).clamp(0, 1)


def _bits(likelihoods: dict) -> torch.Tensor:
    return sum(-torch.log2(lk).sum() for lk in likelihoods.values())


@pytest.fixture
def reference_attention(monkeypatch):
    """Swap every WindowAttention for the step-by-step reference while the test runs.

    Inference would otherwise run Swin blocks window chunk by window chunk
    through ``attend``, which the swap does not touch: that path is switched
    off through the kernel policy (``layers.config``).
    """
    previous = get_kernel_policy()

    def use() -> None:
        monkeypatch.setattr(WindowAttention, "forward", reference_window_attention)
        set_kernel_policy(window_chunks=False)

    yield use
    set_kernel_policy(previous)


@pytest.fixture(scope="module")
def trained_like():
    """A tiny TCM whose parameters are not at their (near-trivial) initial values."""
    net = tiny_tcm(seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "relative_position_params" in name:
                p.copy_(torch.randn(p.shape, generator=g))  # the bias must matter
    net.update(force=True)
    return net.eval()


def test_forward_matches_the_straightforward_model(trained_like, reference_attention):
    x = _image(1, 128, 256)
    with torch.no_grad():
        fast = trained_like(x)
        reference_attention()
        ref = trained_like(x)
    fast_bits, ref_bits = _bits(fast["likelihoods"]), _bits(ref["likelihoods"])
    assert abs(fast_bits - ref_bits) <= 1e-3 * ref_bits
    assert (fast["x_hat"] - ref["x_hat"]).abs().max() <= 1e-4


def test_training_gradients_match_the_straightforward_model(reference_attention):
    """Gradients through every kind of Swin stage (g_a, h_a, g_s, SWAtten).

    The loss skips quantisation: a rounding that flips on float noise would
    change gradients by far more than rounding error.
    """
    net = tiny_tcm(seed=3).train()
    x = _image(1, 128, 128, seed=1)

    def grads() -> dict[str, torch.Tensor]:
        net.zero_grad(set_to_none=True)
        y = net.g_a(x)
        support = net.atten_mean[1](torch.cat([y, y[:, : net.slice_channels]], dim=1))
        loss = (net.g_s(y) - x).square().mean() + net.h_a(y).square().mean() + support.square().mean()
        loss.backward()
        return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    fast = grads()
    reference_attention()
    ref = grads()
    assert fast.keys() == ref.keys() and any("atten_mean.1" in n for n in ref)
    largest = max(g.abs().max().item() for g in ref.values())
    for name in ref:  # float rounding, measured against the model's largest gradient
        torch.testing.assert_close(fast[name], ref[name], rtol=1e-3, atol=1e-5 * largest, msg=name)


def _record_decoded(net, monkeypatch) -> list[torch.Tensor]:
    """Capture y_hat each time the per-slice loop finishes (in compress and in decompress)."""
    seen: list[torch.Tensor] = []
    original = net.code_slices

    def recording(z_hat, code_slice, nets=None):
        y_hat, results = original(z_hat, code_slice, nets)
        seen.append(y_hat.clone())
        return y_hat, results

    monkeypatch.setattr(net, "code_slices", recording)
    return seen


def test_encoder_and_decoder_agree_exactly(trained_like, monkeypatch):
    x = _image(2, 128, 256, seed=4)
    seen = _record_decoded(trained_like, monkeypatch)
    enc = trained_like.compress(x)
    dec = trained_like.decompress(enc["strings"], enc["shape"])
    enc_y, dec_y = seen
    assert torch.equal(enc_y, dec_y)
    with torch.no_grad():
        assert torch.equal(dec["x_hat"], trained_like.g_s(dec_y).clamp(0, 1))


@pytest.mark.parametrize("entropy", ["float32", "float64"])
def test_bfloat16_transforms_keep_encoder_and_decoder_exact(monkeypatch, entropy):
    """The transforms' arithmetic changes g_a, h_a and g_s only: the coding parameters are the entropy's."""
    net = tiny_tcm(seed=5)
    net.update(force=True)
    net.eval()
    x = _image(1, 128, 128, seed=6)
    seen = _record_decoded(net, monkeypatch)
    coder = Coder(net, CodingMode(entropy, "bfloat16"))
    copies = coder.transform_nets  # a bfloat16 copy of the transforms, made once (with the coder) for both calls
    enc = coder.compress(x)
    dec = coder.decompress(enc["strings"], enc["shape"])
    assert torch.equal(seen[0], seen[1]) and torch.equal(enc["symbols"]["y"], dec["symbols"]["y"])
    assert seen[0].dtype == (torch.float64 if entropy == "float64" else torch.float32)
    assert dec["x_hat"].dtype == torch.float32
    assert coder.transform_nets is copies and next(copies.g_s.parameters()).dtype == torch.bfloat16
    with torch.no_grad():  # and close to the float32 transforms
        assert (coder.synthesize(seen[0]) - net.synthesize(seen[0])).abs().max() < 0.05


def test_the_float64_entropy_computes_the_published_function_in_float64(trained_like):
    """The same symbols up to rounding, means and scales within float32's rounding of float64's."""
    x = _image(1, 128, 256, seed=7)
    published = trained_like.compress(x)
    coder = Coder(trained_like, CodingMode.PORTABLE)
    float64 = coder.compress(x)
    assert (float64["y_hat"] - published["y_hat"]).abs().max() < 1e-4
    differ = (float64["symbols"]["y"] != published["symbols"]["y"]).float().mean().item()
    assert differ < 1e-3  # only latents within float32 noise of a rounding boundary
    assert (float64["likelihoods"]["y"] - published["likelihoods"]["y"]).abs().max() < 1e-4
    decoded = coder.decompress(float64["strings"], float64["shape"])
    assert torch.equal(decoded["symbols"]["y"], float64["symbols"]["y"])
    weights = trained_like.cc_mean_transforms[0][0].weight
    nets = coder.entropy_nets
    assert coder.entropy_nets is nets and next(nets.parameters()).dtype == torch.float64  # upcast once
    convs = [m for m in nets.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(type(m) is GemmConv2d for m in convs)  # per-tap products in float64
    assert not any(isinstance(m, GemmConv2d) for m in trained_like.modules())  # the model's own stay
    with torch.no_grad():
        weights.add_(1e-3)
    try:  # and again when the weights change, on request: stale copies are never used
        assert coder.stale
        with pytest.raises(StaleCoderError, match="refresh"):
            coder.compress(x)
        coder.refresh()
        assert coder.entropy_nets is not nets and not coder.stale
    finally:
        with torch.no_grad():
            weights.sub_(1e-3)


@pytest.mark.parametrize("mode", ["float64/float32", "float32/bfloat16"])
def test_copies_made_under_inference_mode_hold_ordinary_tensors(mode):
    """Whatever mode the coder is made in, its copies can be used in any other."""
    net = tiny_tcm(seed=2)
    net.update(force=True)
    with torch.inference_mode():
        coder = Coder(net, mode)
    nets = coder.entropy_nets or coder.transform_nets
    weights = [m.weight for m in nets.modules() if isinstance(m, torch.nn.Conv2d)]
    assert weights and not any(w.is_inference() for w in weights)
    coder.compress(_image(1, 128, 128))  # outside inference mode
