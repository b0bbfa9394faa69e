"""Coding modes and coders (models/coding.py): one spelling, copies made once, stale copies refused."""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest
import torch

from models import TCM
from models.coding import Coder, CodingMode, StaleCoderError, coding_argument
from tests.helpers import tiny_tcm

TEXTS = ["float32/float32", "float32/bfloat16", "float64/float32", "float64/bfloat16", "int8/float32", "int8/bfloat16"]


@pytest.fixture(scope="module")
def net():
    model = tiny_tcm(seed=8).eval()
    model.update(force=True)
    return model


def _image(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(128, 128), mode="bilinear", align_corners=False)


# ------------------------------------------------------------------ the mode and its one spelling
def test_every_mode_prints_as_it_parses():
    assert [str(m) for m in CodingMode.all()] == TEXTS
    for text in TEXTS:
        mode = CodingMode.parse(text)
        assert str(mode) == text and CodingMode.parse(str(mode)) == mode
        assert (mode.entropy, mode.transforms) == tuple(text.split("/"))
    assert CodingMode() == CodingMode.PUBLISHED == CodingMode("float32", "float32")
    assert CodingMode.PORTABLE == CodingMode.parse("float64/float32")
    assert CodingMode.INTEGER == CodingMode.parse("int8/float32")
    assert CodingMode.parse("float64/bfloat16").entropy_dtype == torch.float64
    assert CodingMode.parse("float64/bfloat16").transforms_dtype == torch.bfloat16


@pytest.mark.parametrize("text", ["", "float32", "float32/", "/float32", "float32/float33",
                                  "float16/float32", "float32/float16", "float64/bfloat16/x",
                                  " float32/float32", "Float32/float32", "float64-bfloat16", "float64 bfloat16"])
def test_every_other_text_is_one_line_naming_the_four(text):
    with pytest.raises(ValueError) as e:
        CodingMode.parse(text)
    message = str(e.value)
    assert "\n" not in message and repr(text) in message and all(t in message for t in TEXTS)


def test_a_mode_of_other_names_is_refused_and_modes_are_frozen():
    for entropy, transforms in (("float16", "float32"), ("float32", "float16"), ("float32", "fp32")):
        with pytest.raises(ValueError, match="choose from float32/float32, .*int8/bfloat16$"):
            CodingMode(entropy, transforms)
    with pytest.raises(dataclasses.FrozenInstanceError):
        CodingMode.PUBLISHED.entropy = "float64"


def test_the_command_line_type_gives_argparses_one_line_error(capsys):
    p = argparse.ArgumentParser(prog="tool")
    p.add_argument("--coding", type=coding_argument)
    assert p.parse_args(["--coding", "float64/bfloat16"]).coding == CodingMode("float64", "bfloat16")
    with pytest.raises(SystemExit):
        p.parse_args(["--coding", "fp32"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("tool: error: argument --coding: coding mode 'fp32': choose from " + ", ".join(TEXTS))


def test_tcm_compress_and_decompress_are_compressais_signatures():
    """The published function takes no mode: the other arithmetics are a Coder's."""
    assert list(inspect.signature(TCM.compress).parameters) == ["self", "x"]
    assert list(inspect.signature(TCM.decompress).parameters) == ["self", "strings", "shape"]


# ------------------------------------------------------------------ the coder
def test_the_published_coder_is_tcm_compress(net):
    x = _image(1)
    coder = Coder(net)
    assert coder.mode == CodingMode.PUBLISHED and coder.entropy_model is net.entropy_model and coder.transforms is None
    enc, ref = coder.compress(x), net.compress(x)
    assert enc["strings"] == ref["strings"] and torch.equal(enc["y_hat"], ref["y_hat"])
    assert torch.equal(coder.decompress(enc["strings"], enc["shape"])["x_hat"],
                       net.decompress(ref["strings"], ref["shape"])["x_hat"])


def test_copies_are_made_once_at_creation_and_never_stored_in_the_model(net):
    keys, count = list(net.state_dict()), sum(1 for _ in net.modules())
    coder = Coder(net, "float64/bfloat16")
    assert coder.mode == CodingMode("float64", "bfloat16")
    entropy, transforms = coder.entropy_model, coder.transforms
    assert entropy.dtype == torch.float64 and next(transforms.parameters()).dtype == torch.bfloat16
    enc = coder.compress(_image(2))
    coder.decompress(enc["strings"], enc["shape"])
    assert coder.entropy_model is entropy and coder.transforms is transforms  # not made again per call
    copies = {id(m) for m in (*entropy.modules(), *transforms.modules())}
    assert not copies & {id(m) for m in net.modules()}  # the model holds none of them
    assert list(net.state_dict()) == keys and sum(1 for _ in net.modules()) == count
    assert net.entropy_model.dtype == torch.float32 and next(net.g_s.parameters()).dtype == torch.float32


def test_a_changed_weight_makes_the_coder_stale_until_refreshed():
    net = tiny_tcm(seed=9).eval()
    net.update(force=True)
    x = _image(3)
    mode = "float32/bfloat16"
    coder = Coder(net, mode)
    enc = coder.compress(x)
    y_hat = enc["y_hat"]
    target = net.g_s[0].conv.weight

    def in_place() -> None:
        with torch.no_grad():
            target.mul_(1.5)

    def load_state_dict() -> None:
        state = net.state_dict()
        state["g_s.0.conv.weight"] = state["g_s.0.conv.weight"] * 1.5
        net.load_state_dict(state)

    def optimizer_step() -> None:
        target.grad = torch.ones_like(target)
        torch.optim.SGD([target], lr=0.5).step()

    for change in (in_place, load_state_dict, optimizer_step):
        before = coder.synthesize(y_hat)
        assert not coder.stale
        change()
        assert coder.stale, change.__name__
        for call in (lambda: coder.compress(x), lambda: coder.decompress(enc["strings"], enc["shape"]),
                     lambda: coder.synthesize(y_hat), lambda: coder.analyse(x)):
            with pytest.raises(StaleCoderError, match="weights changed .* call refresh"):
                call()
        coder.refresh()
        assert not coder.stale
        after = coder.synthesize(y_hat)
        assert torch.equal(after, Coder(net, mode).synthesize(y_hat))  # the new weights' function
        assert not torch.equal(after, before), change.__name__


def test_the_entropy_copies_follow_the_entropy_weights(net):
    """A change to an entropy network makes a float64 coder stale, and refresh codes with the new weights;
    a coder without copies reads the model's weights directly and is never stale."""
    model = tiny_tcm(seed=8).eval()
    model.load_state_dict(net.state_dict())
    x = _image(4)
    float64, published = Coder(model, CodingMode.PORTABLE), Coder(model)
    with torch.no_grad():
        model.entropy_model.cc_scale_transforms[0][-1].bias.add_(2.0)
    assert float64.stale and not published.stale
    float64.refresh()
    assert float64.compress(x)["strings"] == Coder(model, CodingMode.PORTABLE).compress(x)["strings"]
    assert published.compress(x)["strings"] == model.compress(x)["strings"]
