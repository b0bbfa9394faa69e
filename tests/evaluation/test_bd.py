"""BD-rate / BD-PSNR between RD curves (evaluation/bd.py)."""

from __future__ import annotations

import pytest

from evaluation.bd import bd_metrics
from evaluation.results import read_results
from tests.helpers import REFERENCE, rd_doc, require

ANCHORS = REFERENCE / "anchors" / "kodak"


def test_published_tcm_large_against_vtm_is_minus_11_7_percent():
    vtm = read_results(require(ANCHORS / "vtm.json"))
    tcm = read_results(require(ANCHORS / "paper-tcm-large_mse.json"))
    fig = bd_metrics(vtm, tcm)
    assert round(fig["bd-rate"], 1) == -11.7
    assert fig["bd-psnr"] > 0  # fewer bits at equal quality <=> more quality at equal rate
    assert fig["anchor"] == "VTM"
    # Swapping the roles flips the sign.
    assert bd_metrics(tcm, vtm)["bd-rate"] > 0


def test_bd_of_a_curve_against_itself_is_zero_and_a_shifted_curve_is_exact():
    a = rd_doc("a", [0.1, 0.2, 0.4, 0.8], [28.0, 30.0, 32.5, 35.0])
    b = rd_doc("b", [0.09, 0.18, 0.36, 0.72], [28.0, 30.0, 32.5, 35.0])  # 10 % fewer bits everywhere
    assert abs(bd_metrics(a, a)["bd-rate"]) < 1e-9
    assert bd_metrics(a, b)["bd-rate"] == pytest.approx(-10.0, abs=1e-6)


def test_bd_is_none_with_a_reason_for_one_point_or_no_overlap():
    a = rd_doc("a", [0.1, 0.2, 0.4], [28.0, 30.0, 32.0])
    one = bd_metrics(a, rd_doc("one", [0.3], [31.0]))
    assert one["bd-rate"] is None and "two" in one["note"]
    apart = bd_metrics(a, rd_doc("far", [1.0, 2.0], [40.0, 45.0]))
    assert apart["bd-rate"] is None and "overlap" in apart["note"]
