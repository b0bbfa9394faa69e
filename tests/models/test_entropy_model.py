"""The entropy model as one object (models/entropy_model.py): one submodule of TCM, three methods, readers,
conversion of the whole module, and the published entry names and order kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from layers import GemmConv2d, KernelPolicy, kernels_of
from models import TCM
from models.entropy_model import ChannelEntropyModel, rans_reader
from models.state_dict import published_key
from tests.helpers import tiny_tcm

PUBLISHED = Path(__file__).resolve().parents[1] / "data" / "published_state_dict.txt"


@pytest.fixture(scope="module")
def net():
    model = tiny_tcm(seed=11).eval()
    model.update(force=True)
    return model


def _image(seed: int = 0, h: int = 128, w: int = 128) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


def test_the_entropy_model_is_one_submodule_with_the_published_names_outside(net):
    assert isinstance(net.entropy_model, ChannelEntropyModel)
    children = dict(net.named_children())
    assert list(children) == ["entropy_bottleneck", "g_a", "g_s", "h_a", "entropy_model"]
    inner = set(net.entropy_model._modules)
    assert inner == {"h_mean_s", "h_scale_s", "atten_mean", "atten_scale", "cc_mean_transforms",
                     "cc_scale_transforms", "lrp_transforms", "gaussian_conditional"}
    keys = list(net.state_dict())
    assert not any(k.startswith("entropy_model.") for k in keys) and "atten_mean.0.0.in_conv.weight" in keys
    assert net.gaussian_conditional is net.entropy_model.gaussian_conditional


def test_parameters_keep_the_published_order(net):
    """Optimizer states index parameters by position: a training checkpoint of the published layout resumes."""
    published = [line.split()[0] for line in PUBLISHED.read_text().splitlines() if line and not line.startswith("#")]
    names = [published_key(n) for n, _ in TCM(N=64).named_parameters()]
    assert names == [k for k in published if k in set(names)]


def test_a_wrapped_model_loads_published_names_through_its_hook(net):
    """DataParallel-style wrappers load children directly, past TCM.load_state_dict: the pre-hook maps the names."""
    wrapper = nn.Module()
    wrapper.module = tiny_tcm(seed=12)
    wrapper.module.update(force=True)  # tables of the checkpoint's shapes (CompressAI resizes them only in its own load)
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    missing, unexpected = wrapper.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    assert torch.equal(wrapper.module.entropy_model.atten_mean[0][0].in_conv.weight,
                       net.entropy_model.atten_mean[0][0].in_conv.weight)
    assert list(wrapper.state_dict()) == list(state)  # saved back under the same names, in order


def test_forward_is_the_bottleneck_and_the_entropy_model(net):
    x = _image(1)
    with torch.no_grad():
        out = net(x)
        y = net.g_a(x)
        z = net.h_a(y)
        _, z_lik = net.entropy_bottleneck(z)
        medians = net.entropy_bottleneck._get_medians()
        z_hat = torch.round(z - medians) + medians
        em = net.entropy_model(y, z_hat)
    assert torch.equal(out["likelihoods"]["y"], em["likelihoods"]) and torch.equal(out["likelihoods"]["z"], z_lik)
    assert em["likelihoods"].shape == y.shape


class CountingReader:
    """A stream reader that counts the slices it is asked for."""

    def __init__(self, stream: bytes):
        self.inner, self.calls = rans_reader(stream), 0

    def decode_stream(self, *args):
        self.calls += 1
        return self.inner.decode_stream(*args)


def test_decompress_takes_readers_or_bytes(net):
    x = _image(2)
    with torch.no_grad():
        y, z = net.analyse(x)
        z_hat, _ = net.entropy_bottleneck(z, training=False)
        enc = net.entropy_model.compress(y, z_hat)
        reader = CountingReader(enc["strings"][0])
        from_reader = net.entropy_model.decompress([reader], z_hat)
        from_bytes = net.entropy_model.decompress(enc["strings"], z_hat, keep_parameters=True)
    assert reader.calls == net.num_slices  # one read per slice
    assert torch.equal(from_reader["symbols"], enc["symbols"]) and torch.equal(from_bytes["y_hat"], enc["y_hat"])
    assert len(from_bytes["means"]) == len(from_bytes["scales"]) == net.num_slices


def test_conversion_copies_the_whole_module_and_fixes_its_kernels(net):
    policy = KernelPolicy(gemm_float64=False, attention="softmax")
    copy64 = net.entropy_model.converted("float64", policy)
    assert copy64 is not net.entropy_model and copy64.arithmetic == "float64" and copy64.dtype == torch.float64
    assert kernels_of(copy64) == {policy} and kernels_of(net.entropy_model) == {KernelPolicy()}
    assert not any(isinstance(m, GemmConv2d) for m in copy64.modules())  # the policy said no per-tap products
    own = {t.data_ptr() for t in (*net.entropy_model.parameters(), *net.entropy_model.buffers())}
    assert not own & {t.data_ptr() for t in (*copy64.parameters(), *copy64.buffers())}
    assert copy64.gaussian_conditional.scale_table.dtype == torch.float32  # the coder's tables stay float32
    assert net.entropy_model.converted("float32") is net.entropy_model
    with pytest.raises(ValueError, match="entropy arithmetic 'float16'"):
        net.entropy_model.converted("float16")


def test_nothing_outside_models_calls_a_private_method_of_the_model():
    root = Path(__file__).resolve().parents[2]
    private = ("._checked_bottleneck", "._cdf_tables", "._z_symbols", "._run_slices", "._bottleneck_tables",
               ".code_slices", ".entropy_nets", ".entropy_decode", ".entropy_encode")
    for package in ("file_codec", "evaluation", "training"):
        for path in (root / package).glob("*.py"):
            text = path.read_text()
            assert not any(p in text for p in private), f"{path.name} calls into the model's internals"
