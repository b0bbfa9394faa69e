"""BD-rate / BD-PSNR between RD curves (evaluation/bd.py)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.bd import FEW_OVERLAP, bd_metrics, describe
from evaluation.results import read_results
from tests.helpers import ANCHORS, rd_doc

KODAK_ANCHORS = ANCHORS / "kodak"


def test_published_tcm_large_against_vtm_is_minus_11_7_percent():
    vtm = read_results(KODAK_ANCHORS / "vtm.json")
    tcm = read_results(KODAK_ANCHORS / "paper-tcm-large.json")
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


def test_repeated_baseline_rates_are_one_point():
    """Pillow's AVIF gives the same file at q=3 and q=5: the fit must still see increasing rates."""
    avif = rd_doc("AVIF", [0.1, 0.1, 0.2, 0.4, 0.8], [27.0, 27.0, 29.5, 32.0, 35.0])
    mine = rd_doc("mine", [0.12, 0.25, 0.5], [28.0, 31.0, 33.5])
    fig = bd_metrics(avif, mine)
    assert fig["bd-rate"] is not None and "note" not in fig


def test_curves_apart_in_quality_still_get_their_gap_at_the_models_rates():
    jpeg = rd_doc("JPEG", [0.15, 0.3, 0.6, 1.2], [22.0, 26.0, 29.0, 32.0])
    mine = rd_doc("mine", [0.17, 0.29], [26.2, 26.8])  # 26.2-26.8 dB: inside JPEG's, rates too
    webp = rd_doc("WebP", [0.16, 0.3, 0.6], [27.2, 29.2, 32.0])
    fig = bd_metrics(webp, mine)
    assert fig["bd-rate"] is None and "overlap" in fig["note"]
    assert fig["gap-points"] == 2 and fig["gap"] == pytest.approx(
        ((26.2 - (27.2 + 2.0 * np.log(0.17 / 0.16) / np.log(0.3 / 0.16))) + (26.8 - (27.2 + 2.0 * np.log(0.29 / 0.16) / np.log(0.3 / 0.16)))) / 2)
    assert bd_metrics(jpeg, mine)["gap"] > 0
    assert bd_metrics(rd_doc("far", [1.0, 2.0], [40.0, 45.0]), mine)["gap"] is None  # no rate in common


def test_a_quality_that_falls_with_rate_gives_no_bd_rate_and_says_where():
    """A higher-rate checkpoint with a lower PSNR: the fit of rate over PSNR is impossible, not an exception."""
    anchor = rd_doc("VTM", [0.1, 0.2, 0.4, 0.8], [28.0, 30.0, 32.5, 35.0])
    sweep = rd_doc("sweep", [0.12, 0.25, 0.5], [30.0, 31.0, 29.5])  # last point: more bits, less PSNR
    for fig in (bd_metrics(anchor, sweep), bd_metrics(sweep, anchor)):
        assert fig["bd-rate"] is None
        assert "must rise with rate" in fig["note"] and "29.500 at 0.500 bpp" in fig["note"]
        assert fig["bd-psnr"] is not None  # PSNR over rate needs only rising rates
    flat = rd_doc("flat", [0.12, 0.25, 0.5], [30.0, 31.0, 31.0])
    assert bd_metrics(anchor, flat)["bd-rate"] is None


def test_a_comparison_over_a_wide_overlap_reads_as_its_bd_figures():
    """BPG's published Kodak points against VTM's share 95% of the PSNR range: the BD figures lead."""
    vtm = read_results(KODAK_ANCHORS / "vtm.json")
    bpg = read_results(KODAK_ANCHORS / "bpg.json")
    line = describe(bd_metrics(vtm, bpg))
    assert line == "BD-rate +22.0 %, BD-PSNR -0.98 dB over 95% of the joint PSNR range"


def test_tcm_large_against_vtm_leads_with_the_gap_its_bd_rate_rests_on_39_percent():
    """TCM-Large's published Kodak points share 39% of the PSNR range with VTM's (below FEW_OVERLAP)."""
    vtm = read_results(KODAK_ANCHORS / "vtm.json")
    tcm = read_results(KODAK_ANCHORS / "paper-tcm-large.json")
    line = describe(bd_metrics(vtm, tcm))
    assert line == ("+0.52 dB PSNR at matched rate (6 of the model's rates inside the anchor's); "
                    "BD-rate -11.7 %, BD-PSNR +0.58 dB, resting on only 39% of the joint PSNR range")


def test_a_comparison_over_a_small_overlap_leads_with_the_gap_at_matched_rate():
    """The demo models against JPEG: a BD-rate over a few % of the PSNR range must not be the headline."""
    jpeg = rd_doc("JPEG", [0.15, 0.3, 0.6, 1.2], [22.0, 26.5, 29.0, 45.0])
    mine = rd_doc("mine", [0.17, 0.29], [26.2, 26.8])
    fig = bd_metrics(jpeg, mine)
    assert fig["bd-rate"] is not None and fig["overlap"] < FEW_OVERLAP
    line = describe(fig)
    assert line.startswith(f"{fig['gap']:+.2f} dB PSNR at matched rate (2 of the model's rates")
    assert f"resting on only {fig['overlap']:.0%} of the joint PSNR range" in line


def test_a_comparison_without_bd_figures_still_gives_the_gap_or_says_why_not():
    webp = rd_doc("WebP", [0.16, 0.3, 0.6], [27.2, 29.2, 32.0])
    mine = rd_doc("mine", [0.17, 0.29], [26.2, 26.8])
    line = describe(bd_metrics(webp, mine))
    assert line.startswith("-") and "dB PSNR at matched rate" in line and "no BD-rate (the curves do not overlap" in line
    far = describe(bd_metrics(rd_doc("far", [1.0, 2.0], [40.0, 45.0]), mine))
    assert far.startswith("no BD-rate (") and far.endswith("the curves share no rate for a gap")
