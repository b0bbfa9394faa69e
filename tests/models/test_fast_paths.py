"""The fast paths compute what the straightforward ones do.

The reference is the same model with every window attention replaced by the
step-by-step implementation of tests/layers/reference.py (materialised logits,
gathered bias, rule-5 mask).  Rates must agree within 0.1 %, reconstructions
within 1e-4; the encoder and decoder of the fast model must agree exactly.
"""

from __future__ import annotations

import pytest
import torch

from layers import GemmConv2d, KernelPolicy, WindowAttention, apply_kernel_policy, kernels_of
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
    off in the model's kernel policy (``layers.config``), restored after.
    """
    rebuilt = []

    def use(net) -> None:
        monkeypatch.setattr(WindowAttention, "forward", reference_window_attention)
        (previous,) = kernels_of(net)
        rebuilt.append((net, previous))
        apply_kernel_policy(net, previous.replace(window_chunks=False))

    yield use
    for net, previous in rebuilt:
        apply_kernel_policy(net, previous)


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
        reference_attention(trained_like)
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
        support = net.entropy_model.atten_mean[1](torch.cat([y, y[:, : net.slice_channels]], dim=1))
        loss = (net.g_s(y) - x).square().mean() + net.h_a(y).square().mean() + support.square().mean()
        loss.backward()
        return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    fast = grads()
    reference_attention(net)
    ref = grads()
    assert fast.keys() == ref.keys() and any("atten_mean.1" in n for n in ref)
    largest = max(g.abs().max().item() for g in ref.values())
    for name in ref:  # float rounding, measured against the model's largest gradient
        torch.testing.assert_close(fast[name], ref[name], rtol=1e-3, atol=1e-5 * largest, msg=name)


def test_encoder_and_decoder_agree_exactly(trained_like):
    x = _image(2, 128, 256, seed=4)
    enc = trained_like.compress(x)
    dec = trained_like.decode_latents(enc["strings"], enc["shape"])
    assert torch.equal(enc["y_hat"], dec["y_hat"]) and torch.equal(enc["symbols"]["y"], dec["symbols"]["y"])
    x_hat = trained_like.decompress(enc["strings"], enc["shape"])["x_hat"]
    with torch.no_grad():
        assert torch.equal(x_hat, trained_like.g_s(dec["y_hat"]).clamp(0, 1))


@pytest.mark.parametrize("entropy", ["float32", "float64"])
def test_bfloat16_transforms_keep_encoder_and_decoder_exact(entropy):
    """The transforms' arithmetic changes g_a, h_a and g_s only: the coding parameters are the entropy's."""
    net = tiny_tcm(seed=5)
    net.update(force=True)
    net.eval()
    x = _image(1, 128, 128, seed=6)
    coder = Coder(net, CodingMode(entropy, "bfloat16"))
    copies = coder.transforms  # a bfloat16 copy of the transforms, made once (with the coder) for both calls
    enc = coder.compress(x)
    dec = coder.decode_latents(enc["strings"], enc["shape"])
    assert torch.equal(enc["y_hat"], dec["y_hat"]) and torch.equal(enc["symbols"]["y"], dec["symbols"]["y"])
    assert coder.entropy_model.dtype == (torch.float64 if entropy == "float64" else torch.float32)
    x_hat = coder.decompress(enc["strings"], enc["shape"])["x_hat"]
    assert x_hat.dtype == torch.float32
    assert coder.transforms is copies and next(copies.g_s.parameters()).dtype == torch.bfloat16
    with torch.no_grad():  # and close to the float32 transforms
        assert (x_hat - net.synthesize(dec["y_hat"])).abs().max() < 0.05


def _first_slice_parameters(coder: Coder, enc: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Slice 0's means and scales as ``coder`` decodes ``enc``: they depend on z alone."""
    out = coder.decode_latents(enc["strings"], enc["shape"], keep_parameters=True)
    return out["means"][0].double(), out["scales"][0].double()


def test_the_float64_entropy_computes_the_published_function_in_float64(trained_like):
    """Its means and scales are torch's float64 computation of the published networks (to float64 rounding),
    which float32 matches only to float32 rounding; its symbols are the published ones up to rounding."""
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
    # torch's own float64 convolutions (no per-tap products) as the reference of the same networks
    reference = Coder(trained_like, CodingMode.PORTABLE)
    reference.entropy_model = trained_like.entropy_model.converted("float64", KernelPolicy(gemm_float64=False))
    assert not any(isinstance(m, GemmConv2d) for m in reference.entropy_model.modules())
    want = _first_slice_parameters(reference, float64)
    for got, tolerance in ((_first_slice_parameters(coder, float64), 1e-12),
                           (_first_slice_parameters(Coder(trained_like), float64), 1e-4)):
        for g, w in zip(got, want):
            assert ((g - w).abs() / w.abs().clamp_min(1e-3)).max() < tolerance
    float32_error = max(((g - w).abs() / w.abs().clamp_min(1e-3)).max().item()
                        for g, w in zip(_first_slice_parameters(Coder(trained_like), float64), want))
    assert float32_error > 1e-9  # float32 really is coarser: the comparison above can tell them apart
    copy64 = coder.entropy_model
    assert copy64 is not trained_like.entropy_model and copy64.dtype == torch.float64  # converted once
    convs = [m for m in copy64.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(type(m) is GemmConv2d for m in convs)  # per-tap products in float64
    assert not any(isinstance(m, GemmConv2d) for m in trained_like.modules())  # the model's own stay
    weights = trained_like.entropy_model.cc_mean_transforms[0][0].weight
    with torch.no_grad():
        weights.add_(1e-3)
    try:  # and again when the weights change, on request: stale copies are never used
        assert coder.stale
        with pytest.raises(StaleCoderError, match="refresh"):
            coder.compress(x)
        coder.refresh()
        assert coder.entropy_model is not copy64 and not coder.stale
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
    nets = coder.transforms if coder.transforms is not None else coder.entropy_model
    assert nets is not net.entropy_model
    weights = [m.weight for m in nets.modules() if isinstance(m, torch.nn.Conv2d)]
    assert weights and not any(w.is_inference() for w in weights)
    coder.compress(_image(1, 128, 128))  # outside inference mode
