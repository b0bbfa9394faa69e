"""The integer entropy model (models/integer_entropy.py): exact coding, close to the float model, its
parameters stored and rebuilt to the same integers, hostile parameters refused in one line."""

from __future__ import annotations

import io

import pytest
import torch

from layers.integer import IntegerBoundError
from models import CheckpointError, load_model
from models.coding import Coder
from models.integer_entropy import (CHECKPOINT_KEY, IntegerEntropyModel, IntegerParameterError, Parameters,
                                    calibration_latents, sample_images)
from models.release import write_release
from tests.helpers import entropy_fitted_checkpoint


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """(model, image tensor, integer entropy model calibrated on the built-in photographs)."""
    from datasets import to_tensor
    from utils.padding import pad

    path, img = entropy_fitted_checkpoint(tmp_path_factory.mktemp("integer"))
    net = load_model(path)
    integer = IntegerEntropyModel.calibrated(net.entropy_model, calibration_latents(net, sample_images()))
    return net, pad(to_tensor(img))[0], integer


def test_an_integer_model_decodes_its_own_streams_exactly_and_codes_close_to_the_float_one(fitted):
    net, x, integer = fitted
    with torch.no_grad():
        y, z = net.analyse(x)
        enc = net.encode_latents(y, z, integer)
        dec = net.decode_latents(enc["strings"], enc["shape"], integer)
        ref = net.encode_latents(y, z)
    assert torch.equal(dec["symbols"]["y"], enc["symbols"]["y"]) and torch.equal(dec["y_hat"], enc["y_hat"])
    assert integer.arithmetic == "int8" and integer.dtype == torch.float32
    # means, scales and the refinement are multiples of 2**-12, exact in float32
    kept = net.decode_latents(enc["strings"], enc["shape"], integer, keep_parameters=True)
    for t in (*kept["means"], *kept["scales"]):
        assert torch.equal(t * 2**12, torch.round(t * 2**12))
    bits = lambda out: sum(len(s) for s in out["strings"][0])  # noqa: E731
    assert abs(bits(enc) / bits(ref) - 1) < 0.03  # the same model, quantised: within 3 % of its rate here
    assert (enc["y_hat"] - ref["y_hat"]).abs().mean() < 0.2


def test_a_coder_in_int8_codes_and_decodes_through_the_model(fitted):
    net, x, _ = fitted
    net.integer_parameters = None  # calibrates on the built-in photographs
    coder = Coder(net, "int8/float32")
    enc = coder.compress(x)
    out = coder.decompress(enc["strings"], enc["shape"])
    assert torch.equal(out["symbols"]["y"], enc["symbols"]["y"])
    assert (out["x_hat"] - net.synthesize(enc["y_hat"])).abs().max() < 1e-4  # the coder's synthesis copy
    assert isinstance(coder.entropy_model, IntegerEntropyModel) and not coder.stale


def test_stored_parameters_rebuild_the_same_integers(fitted, tmp_path):
    net, x, integer = fitted
    buffer = io.BytesIO()
    torch.save(integer.integer_parameters.values, buffer)
    stored = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    rebuilt = IntegerEntropyModel(net.entropy_model, Parameters(stored))
    assert rebuilt.integer_parameters.digest() == integer.integer_parameters.digest()
    with torch.no_grad():
        y, z = net.analyse(x)
        assert net.encode_latents(y, z, rebuilt)["strings"] == net.encode_latents(y, z, integer)["strings"]
    # and through a release file: load_model hands them to the model, a coder uses them
    path = write_release(net, tmp_path, "with-integers", integer_parameters=stored)
    loaded = load_model(path)
    assert set(loaded.integer_parameters) == set(stored)
    assert Coder(loaded, "int8/float32").compress(x)["strings"] == net.encode_latents(
        *net.analyse(x), integer)["strings"]


def _damaged(values: dict, name: str, value) -> dict:
    out = dict(values)
    if value is None:
        del out[name]
    else:
        out[name] = value
    return out


@pytest.mark.parametrize("case", ["version", "missing", "zero scale", "nan scale", "shape", "exponent", "float exponent",
                                  "overflowing bias"])
def test_hostile_parameters_are_refused_in_one_line(fitted, case):
    net, _, integer = fitted
    values = integer.integer_parameters.values
    scale = next(k for k in values if k.endswith(".1.scale") and k.startswith("cc_mean"))
    exponent = next(k for k in values if k.endswith(".in_exp"))
    damaged = {
        "version": _damaged(values, "version", torch.tensor(99)),
        "missing": _damaged(values, scale, None),
        "zero scale": _damaged(values, scale, torch.zeros_like(values[scale])),
        "nan scale": _damaged(values, scale, torch.full_like(values[scale], float("nan"))),
        "shape": _damaged(values, scale, values[scale][:1]),
        "exponent": _damaged(values, exponent, torch.full_like(values[exponent], 99)),
        "float exponent": _damaged(values, exponent, values[exponent].double()),
        # within the exponents' range, but the biases of its first layer leave int32 on so fine a grid
        "overflowing bias": _damaged(values, exponent, torch.full_like(values[exponent], 60)),
    }[case]
    with pytest.raises((IntegerParameterError, IntegerBoundError)) as e:
        IntegerEntropyModel(net.entropy_model, Parameters(damaged))
    assert "\n" not in str(e.value) and str(e.value)


def test_a_release_with_damaged_parameters_is_a_checkpoint_error(fitted, tmp_path):
    net, _, integer = fitted
    values = dict(integer.integer_parameters.values)
    values["version"] = torch.tensor(7)
    path = tmp_path / "damaged.pth.tar"
    torch.save({"state_dict": net.state_dict(), CHECKPOINT_KEY: values}, path)
    with pytest.raises(CheckpointError, match="integer parameters of format"):
        load_model(path)
    torch.save({"state_dict": net.state_dict(), CHECKPOINT_KEY: [1, 2]}, path)
    with pytest.raises(CheckpointError, match="not a dict of tensors"):
        load_model(path)
