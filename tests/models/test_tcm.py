"""The TCM model: published state_dict layout, shapes, and real entropy coding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from datasets import open_rgb, to_tensor
from models import TCM, tcm, tcm_small
from tests.helpers import KODAK, REFERENCE, require, tiny_tcm
from utils.padding import crop, pad

PUBLISHED = Path(__file__).resolve().parents[1] / "data" / "published_state_dict.txt"
SIZES = (64, 96, 128)


def published_entries() -> tuple[dict[int, int], list[tuple[str, str, dict[int, list[int]]]]]:
    """tests/data's list of the published state_dict: (parameter counts, [(key, dtype, {N: shape})])."""
    counts, entries = {}, []
    for line in PUBLISHED.read_text().splitlines():
        if line.startswith("# num_parameters"):
            counts = dict(zip(SIZES, map(int, line.split()[2:])))
        elif line and not line.startswith("#"):
            key, dtype, *shapes = line.split()
            shape = {N: [] if s == "scalar" else [int(v) for v in s.split("x")] for N, s in zip(SIZES, shapes)}
            entries.append((key, dtype, shape))
    return counts, entries


@pytest.mark.parametrize("N", SIZES)
def test_state_dict_equals_the_published_one(N):
    """Every entry of the published checkpoints, in order, with its shape and dtype: loads with strict=True.
    TCM-Large is what the constructor builds with no arguments."""
    counts, entries = published_entries()
    model = TCM() if N == 128 else TCM(N=N)
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    assert got == [(key, shape[N], dtype) for key, dtype, shape in entries]
    assert sum(p.numel() for p in model.parameters()) == counts[N]


@pytest.mark.parametrize("N", SIZES)
def test_tests_data_is_the_reference_manifest(N):
    """The compact list in tests/data says what ../shared/reference says."""
    manifest = json.loads(require(REFERENCE / f"tcm_state_dict_N{N}.json").read_text())
    counts, entries = published_entries()
    assert [(key, shape[N], dtype) for key, dtype, shape in entries] == \
        [(e["key"], e["shape"], e["dtype"]) for e in manifest["state_dict"]]
    assert counts[N] == manifest["num_parameters"]


def test_presets():
    assert tcm("s").N == 64 and tcm("Middle").N == 96 and tcm("l").N == 128
    with pytest.raises(ValueError, match="unknown preset"):
        tcm("huge")


def test_unknown_or_impossible_arguments_are_refused():
    with pytest.raises(TypeError, match="hyper_chanels"):
        TCM(hyper_chanels=32)  # misspelt: no silent default
    with pytest.raises(ValueError, match="N=48"):
        TCM(N=48)
    with pytest.raises(ValueError, match="num_slices"):
        TCM(M=100, num_slices=3)


def test_forward_outputs_and_shapes():
    model = tiny_tcm().eval()
    x = torch.rand(2, 3, 128, 256)
    out = model(x)
    assert set(out) == {"x_hat", "likelihoods"} and set(out["likelihoods"]) == {"y", "z"}
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 80, 8, 16)
    assert out["likelihoods"]["z"].shape == (2, 32, 2, 4)
    lik = torch.cat([out["likelihoods"]["y"].flatten(), out["likelihoods"]["z"].flatten()])
    assert ((lik > 0) & (lik <= 1)).all()


def test_unpadded_input_is_refused_with_a_pointer_to_pad():
    with pytest.raises(ValueError, match="utils.padding.pad"):
        tiny_tcm()(torch.rand(1, 3, 100, 128))


def test_training_mode_backpropagates_through_everything():
    model = tiny_tcm().train()
    out = model(torch.rand(1, 3, 128, 128))
    loss = out["x_hat"].square().mean() + sum(-l.log2().sum() for l in out["likelihoods"].values())
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None and not n.endswith("quantiles")]
    assert no_grad == []


def test_update_builds_the_paper_scale_table():
    model = tiny_tcm()
    assert model.update(force=True)
    table = model.gaussian_conditional.scale_table
    assert len(table) == 64
    assert table[0].item() == pytest.approx(0.11) and table[-1].item() == pytest.approx(256.0)


def _round_trip(model: TCM, x: torch.Tensor):
    xp, padding = pad(x, 128)
    with torch.no_grad():
        ref = model(xp)["x_hat"].clamp(0, 1)
        enc = model.compress(xp)
        dec = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    return xp, padding, ref, enc, dec


@pytest.fixture(scope="module")
def tiny_model():
    model = tiny_tcm(seed=1).eval()
    model.update(force=True)
    return model


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(1)
    model = tcm_small().eval()
    model.update(force=True)
    return model


@pytest.mark.parametrize("size", [(1, 1), (100, 37), (128, 128), (130, 257)])
def test_round_trip_any_size(tiny_model, size):
    torch.manual_seed(0)
    x = torch.rand(1, 3, *size)
    xp, padding, ref, enc, dec = _round_trip(tiny_model, x)
    y_strings, z_strings = enc["strings"]
    assert len(y_strings) == 1 and len(z_strings) == 1  # published layout: one y stream
    assert tuple(enc["shape"]) == (xp.shape[-2] // 64, xp.shape[-1] // 64)
    assert dec.shape == xp.shape
    assert (dec - ref).abs().max().item() <= 1e-4
    assert crop(dec, padding).shape == x.shape
    again = tiny_model.compress(xp)
    assert again["strings"] == enc["strings"]


@pytest.mark.slow
def test_round_trip_kodak_photo_with_tcm_s(small_model):
    x = to_tensor(open_rgb(require(KODAK / "kodim01.png")))
    assert x.shape[-2:] == (512, 768)
    xp, padding, ref, enc, dec = _round_trip(small_model, x)
    assert (dec - ref).abs().max().item() <= 1e-4
    assert crop(dec, padding).shape == x.shape
    assert small_model.compress(xp)["strings"] == enc["strings"]


def test_batched_compress_codes_each_image_on_its_own():
    model = tiny_tcm().eval()
    model.update(force=True)
    x = torch.rand(2, 3, 128, 128)
    enc = model.compress(x)
    assert len(enc["strings"][0]) == 2
    # Another first image, the same second one: its stream does not change.  (Batches of one
    # size, so that both run the same kernels: a batch of 1 may take others, with other last bits.)
    other = model.compress(torch.cat([torch.rand(1, 3, 128, 128), x[1:]]))
    assert other["strings"][0][0] != enc["strings"][0][0]
    assert other["strings"][0][1] == enc["strings"][0][1]
    dec = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    with torch.no_grad():
        ref = model(x)["x_hat"].clamp(0, 1)
    assert (dec - ref).abs().max().item() <= 1e-4


def test_compress_returns_what_the_encoder_committed_to():
    model = tiny_tcm(seed=4).eval()
    model.update(force=True)
    x = torch.rand(1, 3, 128, 256)
    enc = model.compress(x)
    dec = model.decompress(enc["strings"], enc["shape"])
    assert torch.equal(enc["symbols"]["y"], dec["symbols"]["y"])
    assert torch.equal(enc["symbols"]["z"], dec["symbols"]["z"])
    assert enc["symbols"]["y"].shape == (1, 80 * 8 * 16) and enc["symbols"]["z"].shape == (1, 32 * 2 * 4)
    with torch.no_grad():  # (with autograd on, attention may take another kernel)
        assert torch.equal(model.g_s(enc["y_hat"]).clamp(0, 1), dec["x_hat"])
        fwd = model(x)
    for k in ("y", "z"):
        assert torch.allclose(enc["likelihoods"][k], fwd["likelihoods"][k], rtol=1e-4, atol=1e-6)
