"""One image through a model: estimated and real rates, and a decoder checked against its encoder."""

from __future__ import annotations

import pytest
import torch

from evaluation.evaluate import evaluate_image
from models import load_model
from tests.helpers import entropy_fitted_checkpoint

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return entropy_fitted_checkpoint(tmp_path_factory.mktemp("ck"))


def test_estimated_and_real_rates_agree_and_decoding_matches_the_encoder(trained):
    path, img = trained
    model = load_model(path)
    real = evaluate_image(model, img, CPU, real=True)
    est = evaluate_image(model, img, CPU, real=False)
    assert real["bpp-real"] == real["bytes"] * 8 / (256 * 256)
    # Within 3 %, plus what no likelihood accounts for: CompressAI's rANS writes
    # 32-bit words and flushes its state, a few bytes for each of the two streams.
    est_bytes = real["bpp-estimated"] * 256 * 256 / 8
    assert 0.97 * est_bytes <= real["bytes"] <= 1.03 * est_bytes + 24, real
    # The encoder-side pass quantises like compress; its estimate is the forward's.
    assert real["bpp-estimated"] == pytest.approx(est["bpp-estimated"], rel=1e-3)
    assert real["decoded-size-ok"] and real["matches-encoder"] and real["max-abs-diff"] == 0.0
    # The decoded image is the forward's reconstruction up to float rounding.
    assert real["psnr-rgb"] == pytest.approx(est["psnr-rgb"], abs=0.01)
    assert real["encoding_time"] > 0 and real["decoding_time"] > 0


def test_the_largest_decoder_difference_of_a_point_is_nan_if_any_is():
    import math

    from evaluation.evaluate import mean_point

    row = {"bpp": 0.5, "bpp-real": 0.5, "bpp-estimated": 0.5, "psnr-rgb": 30.0, "matches-encoder": True,
           "max-abs-diff": 0.0}
    rows = [dict(row), dict(row, **{"max-abs-diff": float("nan"), "matches-encoder": False}),
            dict(row, **{"max-abs-diff": 0.25})]
    for order in (rows, rows[::-1], rows[1:] + rows[:1]):
        point = mean_point(order)
        assert math.isnan(point["max-abs-diff"]) and point["mismatches"] == 1
    assert mean_point([rows[0], rows[2]])["max-abs-diff"] == 0.25
